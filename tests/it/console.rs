//! The merchant console at `/admin/`, black-box: its page and embedded assets, and its login —
//! the admin token exchanged for an `HttpOnly` session cookie that the admin API accepts in
//! place of a bearer token, with a CSRF token and a same-origin `Origin` on every write. Each
//! hostile case (wrong token, lockout, another store's cookie, missing or wrong CSRF token,
//! cross-origin writes, logout, token rotation) is a row of the `edge-security` table.

use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, COOKIE, ETAG, IF_NONE_MATCH, ORIGIN, SET_COOKIE};
use reqwest::{Client, Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use test_support::table::record_with;
use test_support::*;

const TABLE: &str = "edge-security";
const CLASS: &str = "console sessions";

async fn parts(res: reqwest::Response) -> (StatusCode, Option<String>, Value) {
    let status = res.status();
    let cookie = res.headers().get(SET_COOKIE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let text = res.text().await.unwrap_or_default();
    (status, cookie, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A logged-in console: its cookie (`name=value`) and CSRF token.
struct Login {
    cookie: String,
    csrf: String,
}

async fn login(c: &Client, base: &str, token: &str) -> Login {
    let res = c.post(format!("{base}/admin/session")).header(ORIGIN, base).json(&json!({"token": token})).send().await.unwrap();
    let (status, set_cookie, body) = parts(res).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let set_cookie = set_cookie.expect("a session cookie");
    let cookie = set_cookie.split(';').next().unwrap().trim().to_string();
    Login { cookie, csrf: body["csrfToken"].as_str().expect("csrfToken").to_string() }
}

fn api(base: &str, store: &str, path: &str) -> String {
    format!("{base}/admin/api/v1/stores/{store}{path}")
}

fn with_cookie(req: RequestBuilder, login: &Login) -> RequestBuilder {
    req.header(COOKIE, &login.cookie)
}

#[tokio::test]
async fn the_console_page_runs_no_inline_script_and_its_assets_are_cached_by_content() {
    let node = TestNode::start();
    node.seed_store("shop", "Shop").await;
    let (base, c) = (node.base("shop"), node.bare_client("shop"));
    let res = c.get(format!("{base}/admin/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let csp = res.headers().get(CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap().to_string();
    assert_eq!(res.headers().get(CACHE_CONTROL).unwrap(), "no-store");
    let html = res.text().await.unwrap();
    let script_src = csp.split(';').find(|d| d.trim().starts_with("script-src")).expect("script-src").trim().to_string();
    assert_eq!(script_src, "script-src 'self'", "{csp}");
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"), "{csp}");
    assert!(!html.contains("<script>") && !html.contains("<script type=\"module\">"), "no inline script: {html}");
    assert!(!html.contains("http://") && !html.contains("https://"), "nothing from elsewhere: {html}");
    let js = html.split("src=\"").nth(1).and_then(|s| s.split('"').next()).expect("the script's URL").to_string();
    assert!(js.starts_with("/admin/assets/console.") && js.ends_with(".js"), "{js}");

    let res = c.get(format!("{base}{js}")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get(CACHE_CONTROL).unwrap().to_str().unwrap().contains("immutable"));
    let etag = res.headers().get(ETAG).unwrap().to_str().unwrap().to_string();
    assert!(res.text().await.unwrap().len() > 10_000, "the bundle holds the editor");
    let res = c.get(format!("{base}{js}")).header(IF_NONE_MATCH, &etag).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    let (status, _, body) = parts(c.get(format!("{base}/admin/assets/console.0000.js")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error_body(&body, "not_found");

    // `/admin/` on a host that serves no store: nothing to log in to.
    let (status, _, body) =
        parts(node.plain().get(format!("http://{}/admin/", node.addr)).header("host", "nobody.example").send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_error_body(&body, "unknown_host");
}

#[tokio::test]
async fn a_console_login_is_a_cookie_that_never_holds_the_token_and_writes_need_csrf_and_origin() {
    let node = TestNode::start();
    let token = node.seed_store("shop", "Shop").await;
    let other_token = node.seed_store("other", "Other").await;
    let (base, c) = (node.base("shop"), node.bare_client("shop"));

    // No session yet: 200 (opening the console is no failed login).
    let (status, _, body) = parts(c.get(format!("{base}/admin/session")).send().await.unwrap()).await;
    assert_eq!((status, &body["authenticated"]), (StatusCode::OK, &json!(false)), "{body}");

    // A wrong token, and another store's token: refused, no cookie.
    let (status, cookie, body) =
        parts(c.post(format!("{base}/admin/session")).header(ORIGIN, &base).json(&json!({"token": "guess"})).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error_body(&body, "unauthorized");
    assert!(cookie.is_none());
    record_with(TABLE, CLASS, "console login with a wrong token", "refused", "401, no cookie");
    let (status, cookie, body) =
        parts(c.post(format!("{base}/admin/session")).header(ORIGIN, &base).json(&json!({"token": other_token})).send().await.unwrap())
            .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error_body(&body, "forbidden");
    assert!(cookie.is_none());
    record_with(TABLE, CLASS, "console login with another store's token", "refused", "403, no cookie");
    // Login from another site's page (login CSRF).
    let (status, cookie, body) = parts(
        c.post(format!("{base}/admin/session")).header(ORIGIN, "http://evil.example").json(&json!({"token": token})).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error_body(&body, "csrf_rejected");
    assert!(cookie.is_none());
    record_with(TABLE, CLASS, "console login posted from another site", "refused", "403 csrf_rejected");

    // The right token: an HttpOnly, SameSite=Strict cookie for /admin that is not the token.
    let res = c.post(format!("{base}/admin/session")).header(ORIGIN, &base).json(&json!({"token": token})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let set_cookie = res.headers().get(SET_COOKIE).unwrap().to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age="] {
        assert!(set_cookie.contains(attr), "{attr} in {set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP without a proxy: {set_cookie}");
    assert!(!set_cookie.contains(&token), "the cookie holds no token");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["store"], "shop");
    assert!(!body.to_string().contains(&token));
    let login_a = Login { cookie: set_cookie.split(';').next().unwrap().to_string(), csrf: body["csrfToken"].as_str().unwrap().into() };
    let (status, _, body) = parts(with_cookie(c.get(format!("{base}/admin/session")), &login_a).send().await.unwrap()).await;
    assert_eq!((status, body["csrfToken"].as_str()), (StatusCode::OK, Some(login_a.csrf.as_str())), "{body}");

    // Reads work with the cookie alone.
    let (status, _, body) = parts(with_cookie(c.get(api(&base, "shop", "/pages")), &login_a).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Writes: the CSRF token and a same-origin Origin, or 403 and nothing changes.
    let page = json!({"title": "Changed", "blocks": [{"type": "text", "config": {"body": "x"}}]});
    let put = |login: &Login| with_cookie(c.request(Method::PUT, api(&base, "shop", "/pages/about")), login).json(&page);
    let cases: [(&str, RequestBuilder); 5] = [
        ("console write without a CSRF token", put(&login_a).header(ORIGIN, &base)),
        ("console write with a wrong CSRF token", put(&login_a).header(ORIGIN, &base).header("x-csrf-token", "0".repeat(32))),
        ("console write with a CSRF token but no Origin", put(&login_a).header("x-csrf-token", &login_a.csrf)),
        ("console write from another site", put(&login_a).header("x-csrf-token", &login_a.csrf).header(ORIGIN, "http://evil.example")),
        ("console write from another store's host", put(&login_a).header("x-csrf-token", &login_a.csrf).header(ORIGIN, node.base("other"))),
    ];
    for (case, req) in cases {
        let (status, _, body) = parts(req.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{case}: {body}");
        assert_error_body(&body, "csrf_rejected");
        record_with(TABLE, CLASS, case, "refused", "403 csrf_rejected");
    }
    let (status, _) = node.admin(&token, Method::GET, "/stores/shop/pages/about", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no refused write changed anything");
    let (status, _, body) = parts(put(&login_a).header("x-csrf-token", &login_a.csrf).header(ORIGIN, &base).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A second session's CSRF token does not fit the first one's cookie.
    let login_b = login(&c, &base, &token).await;
    assert_ne!(login_a.csrf, login_b.csrf);
    let (status, _, body) = parts(put(&login_a).header("x-csrf-token", &login_b.csrf).header(ORIGIN, &base).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error_body(&body, "csrf_rejected");
    record_with(TABLE, CLASS, "console write with another session's CSRF token", "refused", "403 csrf_rejected");

    // Store A's cookie on store B's host, for either store's API, and on the node's bare address.
    let (other_base, oc) = (node.base("other"), node.bare_client("other"));
    for store in ["other", "shop"] {
        let (status, _, body) = parts(with_cookie(oc.get(api(&other_base, store, "/pages")), &login_a).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{store}: {body}");
        assert_error_body(&body, "forbidden");
    }
    let (status, _, body) = parts(with_cookie(c.get(api(&base, "other", "/pages")), &login_a).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, _) =
        parts(node.plain().get(node.admin_url("/stores/shop/pages")).header(COOKIE, &login_a.cookie).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    record_with(TABLE, CLASS, "store A's console cookie on store B's host or API", "refused", "403");

    // A forged cookie: the session's token version changed by hand.
    let (name, value) = login_a.cookie.split_once('=').unwrap();
    let mut fields: Vec<String> = value.split('.').map(str::to_string).collect();
    fields[1] = format!("{}9", fields[1]);
    let forged = Login { cookie: format!("{name}={}", fields.join(".")), csrf: login_a.csrf.clone() };
    let (status, _, body) = parts(with_cookie(c.get(api(&base, "shop", "/pages")), &forged).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error_body(&body, "unauthorized");
    record_with(TABLE, CLASS, "forged console cookie", "refused", "401");

    // Logout: the cookie is removed and, replayed, refused.
    let (status, cookie, _) =
        parts(with_cookie(c.delete(format!("{base}/admin/session")), &login_a).header(ORIGIN, &base).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(cookie.is_some_and(|c| c.contains("Max-Age=0") || c.contains("expires=")), "the cookie is removed");
    let (status, _, body) = parts(with_cookie(c.get(api(&base, "shop", "/pages")), &login_a).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error_body(&body, "unauthorized");
    let (_, _, body) = parts(with_cookie(c.get(format!("{base}/admin/session")), &login_a).send().await.unwrap()).await;
    assert_eq!(body["authenticated"], false);
    record_with(TABLE, CLASS, "console cookie replayed after logout", "refused", "401");

    // Rotating the store's token ends every console session of the store.
    let (status, _, _) = parts(with_cookie(c.get(api(&base, "shop", "/pages")), &login_b).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "the other session is still in");
    let (status, rotated) = node.admin(&token, Method::POST, "/stores/shop/token/rotate", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = parts(with_cookie(c.get(api(&base, "shop", "/pages")), &login_b).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_error_body(&body, "unauthorized");
    let (_, _, body) = parts(with_cookie(c.get(format!("{base}/admin/session")), &login_b).send().await.unwrap()).await;
    assert_eq!(body["authenticated"], false);
    let login_c = login(&c, &base, rotated["adminToken"].as_str().unwrap()).await;
    let (status, _, _) = parts(with_cookie(c.get(api(&base, "shop", "/pages")), &login_c).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "the new token logs in");
    record_with(TABLE, CLASS, "console session after the store's token was rotated", "rotated", "401; the new token logs in");
}

#[tokio::test]
async fn wrong_console_logins_lock_the_ip_out_like_wrong_bearer_tokens() {
    let node = TestNode::start_with(&[("VITRINA_LIMITS__AUTH_FAILURES_BEFORE_LOCKOUT", "3"), ("VITRINA_LIMITS__LOCKOUT_BASE_SECS", "30")]);
    let token = node.seed_store("shop", "Shop").await;
    let (base, c) = (node.base("shop"), node.bare_client("shop"));
    let attempt = |t: &str| c.post(format!("{base}/admin/session")).header(ORIGIN, &base).json(&json!({"token": t})).send();
    for _ in 0..3 {
        let (status, _, _) = parts(attempt("guess").await.unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, cookie, body) = parts(attempt(&token).await.unwrap()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the right token during the lockout: {body}");
    assert_error_body(&body, "rate_limited");
    assert!(cookie.is_none());
    // The bearer API shares the lockout: the same IP.
    let (status, _) = node.admin(&token, Method::GET, "/stores/shop", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    record_with(TABLE, CLASS, "wrong console logins from one IP", "refused", "locked out after 3; the right token refused while locked");
}

#[tokio::test]
async fn a_console_session_is_rate_limited_like_a_token() {
    let node = TestNode::start_with(&[("VITRINA_LIMITS__ADMIN_PER_SEC_PER_TOKEN", "1"), ("VITRINA_LIMITS__ADMIN_BURST_PER_TOKEN", "5")]);
    let token = node.seed_store("shop", "Shop").await;
    let (base, c) = (node.base("shop"), node.bare_client("shop"));
    let session = login(&c, &base, &token).await;
    let mut limited = 0;
    for _ in 0..20 {
        let (status, _, body) = parts(with_cookie(c.get(api(&base, "shop", "/pages")), &session).send().await.unwrap()).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_error_body(&body, "rate_limited");
            limited += 1;
        }
    }
    assert!(limited >= 10, "a burst of 5 at 1/s: {limited} of 20 refused");
    record_with(TABLE, "rate-limits", "admin requests flooding from one console session", "bounded", &format!("{limited} of 20 refused"));
}

#[tokio::test]
async fn console_logins_and_logouts_hold_on_every_node_of_a_cluster() {
    let nodes = start_cluster(2, &[]).await;
    let token = nodes[0].seed_store("shop", "Shop").await;
    let clients: Vec<(String, Client)> = nodes.iter().map(|n| (n.base("shop"), n.bare_client("shop"))).collect();
    // Log in through one node, use the API through both, log out through the other: one of
    // the two rounds logs out through the node that does not own the store.
    for (via, out) in [(0, 1), (1, 0)] {
        let session = login(&clients[via].1, &clients[via].0, &token).await;
        for (base, c) in &clients {
            let (status, _, body) = parts(with_cookie(c.get(api(base, "shop", "/pages")), &session).send().await.unwrap()).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let (base, c) = &clients[out];
        let (status, _, _) =
            parts(with_cookie(c.delete(format!("{base}/admin/session")), &session).header(ORIGIN, base).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        for (base, c) in &clients {
            let (status, _, body) = parts(with_cookie(c.get(api(base, "shop", "/pages")), &session).send().await.unwrap()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "logged in via n{}, out via n{}: {body}", via + 1, out + 1);
        }
    }
    record_with(TABLE, CLASS, "console cookie replayed after logout, through another node", "refused", "401 on every node");
}
