//! Staff users with roles and the audit log, black-box: owners add members through the admin
//! API; each member logs in to the console with their own name and password; the server
//! refuses what a role may not do (a viewer's write, an editor's staff or token change) with
//! the uniform 403; every change and login is in the store's audit log under the actor's
//! name; a logout survives a restart; a removed or changed member is locked out at once; and
//! hostile names and passwords get a clear 4xx. Hostile cases are rows of `edge-security`.

use std::time::Duration;

use reqwest::header::{COOKIE, ORIGIN, SET_COOKIE};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use test_support::table::record_with;
use test_support::*;

const TABLE: &str = "edge-security";
const CLASS: &str = "staff and roles";

/// A logged-in console: its cookie (`name=value`) and CSRF token.
struct Login {
    cookie: String,
    csrf: String,
}

async fn parts(res: reqwest::Response) -> (StatusCode, Option<String>, Value) {
    let status = res.status();
    let cookie = res.headers().get(SET_COOKIE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let text = res.text().await.unwrap_or_default();
    (status, cookie, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The session an answer issued: its cookie and CSRF token, on a 200 that set one.
fn issued(status: StatusCode, set_cookie: Option<String>, body: &Value) -> Option<Login> {
    set_cookie.filter(|_| status == StatusCode::OK).map(|sc| Login {
        cookie: sc.split(';').next().unwrap().trim().to_string(),
        csrf: body["csrfToken"].as_str().unwrap_or_default().to_string(),
    })
}

fn retry_after(res: &reqwest::Response) -> Option<String> {
    res.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string)
}

async fn try_login(c: &Client, base: &str, body: Value) -> (StatusCode, Option<Login>, Value) {
    let res = c.post(format!("{base}/admin/session")).header(ORIGIN, base).json(&body).send().await.unwrap();
    let (status, set_cookie, body) = parts(res).await;
    (status, issued(status, set_cookie, &body), body)
}

async fn login(c: &Client, base: &str, name: &str, password: &str) -> Login {
    let (status, login, body) = try_login(c, base, json!({"name": name, "password": password})).await;
    assert_eq!(status, StatusCode::OK, "{name} logs in: {body}");
    assert_eq!(body["user"], name, "{body}");
    login.expect("a session cookie")
}

/// A console request on the store's host, with the session's cookie (and CSRF token and
/// Origin on writes).
async fn call(c: &Client, base: &str, login: &Login, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let write = !matches!(method, Method::GET | Method::HEAD);
    let mut req = c.request(method, format!("{base}/admin/api/v1/stores/shop{path}")).header(COOKIE, &login.cookie);
    if write {
        req = req.header("x-csrf-token", &login.csrf).header(ORIGIN, base);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let (status, _, body) = parts(req.send().await.unwrap()).await;
    (status, body)
}

async fn add_member(node: &TestNode, token: &str, name: &str, role: &str, password: &str) {
    let (status, body) =
        node.admin(token, Method::POST, "/stores/shop/staff", Some(json!({"name": name, "role": role, "password": password}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.get("passwordHash").is_none() && !body.to_string().contains(password), "no secret in the answer: {body}");
}

/// The newest audit entries, as (actor, action) pairs.
async fn audit(node: &TestNode, token: &str) -> Vec<(String, String)> {
    let (status, body) = node.admin(token, Method::GET, "/stores/shop/audit?limit=200", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| (e["actor"].as_str().unwrap_or("").to_string(), e["action"].as_str().unwrap_or("").to_string()))
        .collect()
}

fn has(entries: &[(String, String)], actor: &str, action: &str) -> bool {
    entries.iter().any(|(a, b)| a == actor && b == action)
}

#[tokio::test]
async fn roles_are_enforced_on_the_server_and_every_change_is_audited_by_name() {
    let node = TestNode::start();
    let token = node.seed_store("shop", "Shop").await;
    let (base, c) = (node.base("shop"), node.bare_client("shop"));
    add_member(&node, &token, "olga", "owner", "olga's long password").await;
    add_member(&node, &token, "eddie", "editor", "eddie's long password").await;
    add_member(&node, &token, "vera", "viewer", "vera's long password").await;
    let (status, body) = node.admin(&token, Method::GET, "/stores/shop/staff", None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = body["staff"].as_array().unwrap().iter().filter_map(|m| m["name"].as_str()).collect();
    assert_eq!(names, ["eddie", "olga", "vera"]);
    assert!(!body.to_string().contains("argon2"), "no hash is ever answered: {body}");

    let vera = login(&c, &base, "vera", "vera's long password").await;
    let eddie = login(&c, &base, "eddie", "eddie's long password").await;
    let olga = login(&c, &base, "olga", "olga's long password").await;
    let (_, _, me) = parts(c.get(format!("{base}/admin/session")).header(COOKIE, &vera.cookie).send().await.unwrap()).await;
    assert_eq!((me["user"].as_str(), me["role"].as_str()), (Some("vera"), Some("viewer")), "{me}");

    // A viewer reads everything and changes nothing.
    for path in ["", "/pages", "/pages/home", "/theme", "/staff", "/audit", "/settings"] {
        let (status, body) = call(&c, &base, &vera, Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "viewer reads {path}: {body}");
    }
    let writes: [(Method, &str, Option<Value>); 5] = [
        (Method::POST, "/pages/home/publish", None),
        (Method::PUT, "/pages/home", Some(json!({"title": "Mine"}))),
        (Method::PUT, "/theme", Some(json!({}))),
        (Method::PATCH, "/settings", Some(json!({"name": "Mine"}))),
        (Method::POST, "/staff", Some(json!({"name": "mallory", "role": "owner", "password": "a long password"}))),
    ];
    for (method, path, body) in writes {
        let (status, answer) = call(&c, &base, &vera, method.clone(), path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "viewer {method} {path}: {answer}");
        assert_error_body(&answer, "forbidden");
        assert_eq!(answer["error"]["details"]["role"], "viewer", "{answer}");
    }
    record_with(TABLE, CLASS, "a viewer's publish, draft, theme, settings and staff writes", "refused", "403");

    // An editor drafts and publishes; staff, tokens, settings and domains stay the owner's.
    let (status, body) = call(&c, &base, &eddie, Method::PUT, "/pages/home", Some(json!({"title": "Home by Eddie"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(&c, &base, &eddie, Method::POST, "/pages/home/publish", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let owner_only: [(Method, &str, Option<Value>); 5] = [
        (Method::POST, "/staff", Some(json!({"name": "mallory", "role": "owner", "password": "a long password"}))),
        (Method::DELETE, "/staff/vera", None),
        (Method::POST, "/token/rotate", None),
        (Method::PATCH, "/settings", Some(json!({"name": "Eddie's"}))),
        (Method::POST, "/domains", Some(json!({"host": "eddie.example.com"}))),
    ];
    for (method, path, body) in owner_only {
        let (status, answer) = call(&c, &base, &eddie, method.clone(), path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "editor {method} {path}: {answer}");
        assert_error_body(&answer, "forbidden");
        assert_eq!(answer["error"]["details"]["required"], "owner", "{answer}");
    }
    record_with(TABLE, CLASS, "an editor's staff, token, settings and domain changes", "refused", "403");

    // A staff owner manages staff from the console.
    let (status, body) = call(&c, &base, &olga, Method::PATCH, "/settings", Some(json!({"tagline": "Olga was here"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) =
        call(&c, &base, &olga, Method::POST, "/staff", Some(json!({"name": "wes", "role": "viewer", "password": "wes's long password"})))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = call(&c, &base, &olga, Method::PATCH, "/staff/wes", Some(json!({"role": "editor"}))).await;
    assert_eq!((status, body["role"].as_str()), (StatusCode::OK, Some("editor")), "{body}");

    // Everything above is in the audit log, newest first, under who did it.
    let entries = audit(&node, &token).await;
    for (actor, action) in [
        ("admin token", "staff.add"),
        ("vera", "login"),
        ("eddie", "login"),
        ("eddie", "page.save"),
        ("eddie", "page.publish"),
        ("olga", "settings.update"),
        ("olga", "staff.add"),
        ("olga", "staff.update"),
    ] {
        assert!(has(&entries, actor, action), "{actor} {action} in {entries:?}");
    }
    assert_eq!(entries.iter().filter(|(a, _)| a == "vera").count(), 1, "vera only logged in: {entries:?}");
    assert_eq!(entries.first().map(|e| e.1.as_str()), Some("staff.update"), "newest first: {entries:?}");
    let (_, body) = node.admin(&token, Method::GET, "/stores/shop/audit?limit=200", None).await;
    assert!(!body.to_string().contains("long password"), "no secrets in the audit log");

    // Paged: two at a time, no entry twice, the same order.
    let mut seen = Vec::new();
    let mut before: Option<i64> = None;
    for _ in 0..100 {
        let q = before.map(|b| format!("&before={b}")).unwrap_or_default();
        let (status, page) = call(&c, &base, &vera, Method::GET, &format!("/audit?limit=2{q}"), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let ids: Vec<i64> = page["entries"].as_array().unwrap().iter().filter_map(|e| e["id"].as_i64()).collect();
        assert!(ids.len() <= 2);
        seen.extend(ids);
        match page["next"].as_i64() {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    assert_eq!(seen.len(), entries.len(), "every entry once");
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "newest first across pages: {seen:?}");
    let (status, body) = call(&c, &base, &vera, Method::GET, "/audit?limit=0", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_error_body(&body, "invalid_query");
}

#[tokio::test]
async fn logouts_survive_a_restart_and_changed_or_removed_members_are_locked_out_at_once() {
    let node = TestNode::start();
    let token = node.seed_store("shop", "Shop").await;
    add_member(&node, &token, "eddie", "editor", "eddie's long password").await;
    add_member(&node, &token, "rita", "editor", "rita's long password").await;
    let (base, c) = (node.base("shop"), node.bare_client("shop"));
    let gone = login(&c, &base, "eddie", "eddie's long password").await;
    let kept = login(&c, &base, "eddie", "eddie's long password").await;
    let rita = login(&c, &base, "rita", "rita's long password").await;
    let (status, _, _) =
        parts(c.delete(format!("{base}/admin/session")).header(COOKIE, &gone.cookie).header(ORIGIN, &base).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&c, &base, &gone, Method::GET, "/pages", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let node = node.terminate_and_restart(Duration::from_secs(30));
    let (base, c) = (node.base("shop"), node.bare_client("shop"));
    let (status, body) = call(&c, &base, &gone, Method::GET, "/pages", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the logout outlives the restart: {body}");
    assert_error_body(&body, "unauthorized");
    record_with(TABLE, CLASS, "a logged-out console cookie replayed after a node restart", "refused", "401");
    let (status, body) = call(&c, &base, &kept, Method::GET, "/pages", None).await;
    assert_eq!(status, StatusCode::OK, "a session not logged out outlives the restart: {body}");

    // Demoted: the member's sessions end at once (the new role needs a new login).
    let (status, body) = node.admin(&token, Method::PATCH, "/stores/shop/staff/rita", Some(json!({"role": "viewer"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = call(&c, &base, &rita, Method::POST, "/pages/home/publish", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a demoted editor's old session cannot publish");
    let rita = login(&c, &base, "rita", "rita's long password").await;
    let (status, _) = call(&c, &base, &rita, Method::POST, "/pages/home/publish", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    record_with(TABLE, CLASS, "a demoted member's earlier session", "refused", "401 at once");

    // Removed: the session stops working at once and the password no longer logs in.
    let (status, body) = node.admin(&token, Method::DELETE, "/stores/shop/staff/eddie", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(&c, &base, &kept, Method::GET, "/pages", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _, body) = try_login(&c, &base, json!({"name": "eddie", "password": "eddie's long password"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_error_body(&body, "unauthorized");
    // Added again under the same name: the old cookies stay dead.
    add_member(&node, &token, "eddie", "owner", "a new long password").await;
    let (status, _) = call(&c, &base, &kept, Method::GET, "/pages", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a re-added name does not revive old sessions");
    record_with(TABLE, CLASS, "a removed member's session and password", "refused", "401 at once");
    let entries = audit(&node, &token).await;
    assert!(has(&entries, "eddie", "logout") && has(&entries, "admin token", "staff.remove"), "{entries:?}");
}

#[tokio::test]
async fn hostile_staff_names_and_passwords_get_a_clear_4xx() {
    let node = TestNode::start();
    let token = node.seed_store("shop", "Shop").await;
    let cases: [(&str, Value, StatusCode, &str); 8] = [
        (
            "a staff name with HTML",
            json!({"name": "<img src=x onerror=alert(1)>", "role": "editor", "password": "a long password"}),
            StatusCode::BAD_REQUEST,
            "validation_failed",
        ),
        (
            "a 10,000-character staff name",
            json!({"name": "a".repeat(10_000), "role": "editor", "password": "a long password"}),
            StatusCode::BAD_REQUEST,
            "validation_failed",
        ),
        (
            "a staff name with a dot (the cookie's separator)",
            json!({"name": "a.b", "role": "editor", "password": "a long password"}),
            StatusCode::BAD_REQUEST,
            "validation_failed",
        ),
        (
            "the admin token's own principal as a name",
            json!({"name": "~", "role": "owner", "password": "a long password"}),
            StatusCode::BAD_REQUEST,
            "validation_failed",
        ),
        (
            "an unknown role",
            json!({"name": "x", "role": "admin", "password": "a long password"}),
            StatusCode::BAD_REQUEST,
            "validation_failed",
        ),
        ("a short password", json!({"name": "x", "role": "viewer", "password": "short"}), StatusCode::BAD_REQUEST, "validation_failed"),
        (
            "a 100,000-character password",
            json!({"name": "x", "role": "viewer", "password": "p".repeat(100_000)}),
            StatusCode::BAD_REQUEST,
            "validation_failed",
        ),
        (
            "an unknown field",
            json!({"name": "x", "role": "viewer", "password": "a long password", "isAdmin": true}),
            StatusCode::BAD_REQUEST,
            "validation_failed",
        ),
    ];
    for (case, body, status, code) in cases {
        let (got, answer) = node.admin(&token, Method::POST, "/stores/shop/staff", Some(body)).await;
        assert_eq!(got, status, "{case}: {answer}");
        assert_error_body(&answer, code);
        record_with(TABLE, CLASS, case, "refused", &got.as_u16().to_string());
    }
    add_member(&node, &token, "x", "viewer", "a long password").await;
    let (status, body) = node
        .admin(&token, Method::POST, "/stores/shop/staff", Some(json!({"name": "x", "role": "owner", "password": "a long password"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_error_body(&body, "conflict");
    record_with(TABLE, CLASS, "a second member under a taken name", "refused", "409");
    let (status, body) = node.admin(&token, Method::DELETE, "/stores/shop/staff/%3Cb%3E", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_error_body(&body, "not_found");

    // Logins with hostile or wrong credentials: the same 401, nothing echoed.
    let (base, c) = (node.base("shop"), node.bare_client("shop"));
    for body in [
        json!({"name": "<script>alert(1)</script>", "password": "a long password"}),
        json!({"name": "x", "password": "the wrong password"}),
        json!({"name": "nobody", "password": "a long password"}),
    ] {
        let (status, login, answer) = try_login(&c, &base, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        assert!(login.is_none());
        assert_error_body(&answer, "unauthorized");
        assert!(!answer.to_string().contains("<script>"), "{answer}");
    }
    let (status, _, answer) = try_login(&c, &base, json!({"name": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_error_body(&answer, "invalid_request");
    record_with(TABLE, CLASS, "logins with a hostile name, a wrong password or an unknown name", "refused", "401, same message");
}

#[tokio::test]
async fn a_removed_member_is_locked_out_on_every_node_of_a_cluster() {
    let nodes = start_cluster(2, &[]).await;
    let token = nodes[0].seed_store("shop", "Shop").await;
    let (status, body) = nodes[0]
        .admin(
            &token,
            Method::POST,
            "/stores/shop/staff",
            Some(json!({"name": "eddie", "role": "editor", "password": "eddie's long password"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let clients: Vec<(String, Client)> = nodes.iter().map(|n| (n.base("shop"), n.bare_client("shop"))).collect();
    let sessions = [
        login(&clients[0].1, &clients[0].0, "eddie", "eddie's long password").await,
        login(&clients[1].1, &clients[1].0, "eddie", "eddie's long password").await,
    ];
    for session in &sessions {
        for (base, c) in &clients {
            let (status, body) = call(c, base, session, Method::GET, "/pages", None).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    // Removed through the second node: both sessions end on both nodes.
    let (status, body) = nodes[1].admin(&token, Method::DELETE, "/stores/shop/staff/eddie", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for session in &sessions {
        for (base, c) in &clients {
            let (status, body) = call(c, base, session, Method::GET, "/pages", None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{base}: {body}");
        }
    }
    record_with(TABLE, CLASS, "a removed member's sessions, through another node", "refused", "401 on every node");
}

#[tokio::test]
async fn the_audit_log_keeps_the_newest_entries_only() {
    let node = TestNode::start_with(&[("VITRINA_HTTP__AUDIT_ENTRIES_KEPT", "3")]);
    let token = node.seed_store("shop", "Shop").await;
    for tagline in ["one", "two", "three", "four", "five"] {
        let (status, body) = node.admin(&token, Method::PATCH, "/stores/shop/settings", Some(json!({"tagline": tagline}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    add_member(&node, &token, "last", "viewer", "a long password").await;
    let entries = audit(&node, &token).await;
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert_eq!(entries[0], ("admin token".to_string(), "staff.add".to_string()));
    assert!(entries[1..].iter().all(|(_, action)| action == "settings.update"), "{entries:?}");
    record_with(TABLE, CLASS, "an audit log growing past its configured size", "bounded", "newest 3 of 6+ kept");
}

/// `PUT /admin/session/password` from `login`'s session: its status, the re-issued session (if
/// any), the body and `Retry-After`.
async fn change_password(
    c: &Client,
    base: &str,
    login: &Login,
    body: Value,
    csrf: bool,
) -> (StatusCode, Option<Login>, Value, Option<String>) {
    let mut req = c.put(format!("{base}/admin/session/password")).header(COOKIE, &login.cookie).header(ORIGIN, base).json(&body);
    if csrf {
        req = req.header("x-csrf-token", &login.csrf);
    }
    let res = req.send().await.unwrap();
    let retry_after = retry_after(&res);
    let (status, set_cookie, body) = parts(res).await;
    (status, issued(status, set_cookie, &body), body, retry_after)
}

#[tokio::test]
async fn staff_change_their_own_password_and_their_other_sessions_end() {
    let node = TestNode::start_with(&[
        ("VITRINA_LIMITS__LOGIN_FAILURES_PER_NAME_BEFORE_LOCKOUT", "3"),
        ("VITRINA_LIMITS__NAME_LOCKOUT_BASE_SECS", "60"),
    ]);
    let token = node.seed_store("shop", "Shop").await;
    add_member(&node, &token, "vera", "viewer", "vera's long password").await;
    add_member(&node, &token, "eddie", "editor", "eddie's long password").await;
    let (base, c) = (node.base("shop"), node.bare_client("shop"));

    // Any role, even a viewer: with the current password. This session goes on (re-issued);
    // the member's other sessions end at once.
    let here = login(&c, &base, "vera", "vera's long password").await;
    let other = login(&c, &base, "vera", "vera's long password").await;
    let new = json!({"currentPassword": "vera's long password", "newPassword": "vera's newer long password"});
    let (status, _, body, _) = change_password(&c, &base, &here, new.clone(), false).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token: {body}");
    assert_error_body(&body, "csrf_rejected");
    let (status, renewed, body, _) = change_password(&c, &base, &here, new, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["user"].as_str(), body["role"].as_str(), body["staff"].as_bool()), (Some("vera"), Some("viewer"), Some(true)));
    assert!(!body.to_string().contains("newer long password"), "no secret in the answer: {body}");
    let renewed = renewed.expect("the session is re-issued");
    let (status, body) = call(&c, &base, &renewed, Method::GET, "/pages", None).await;
    assert_eq!(status, StatusCode::OK, "the re-issued session works: {body}");
    for (which, session) in [("another session", &other), ("the cookie before the change", &here)] {
        let (status, body) = call(&c, &base, session, Method::GET, "/pages", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{which}: {body}");
        assert_error_body(&body, "unauthorized");
    }
    let (status, _, _) = try_login(&c, &base, json!({"name": "vera", "password": "vera's long password"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old password no longer logs in");
    login(&c, &base, "vera", "vera's newer long password").await;
    assert!(has(&audit(&node, &token).await, "vera", "staff.password"), "the change is audited under vera's name");
    record_with(
        TABLE,
        CLASS,
        "a member's other sessions after they changed their own password",
        "refused",
        "401 at once; this one re-issued",
    );

    // Bad input: a clear 400, nothing changed; the admin token has no password of its own.
    let eddie = login(&c, &base, "eddie", "eddie's long password").await;
    for (body, code) in [
        (json!({"currentPassword": "eddie's long password", "newPassword": "short"}), "validation_failed"),
        (json!({"currentPassword": "eddie's long password"}), "validation_failed"),
        (json!({"currentPassword": "eddie's long password", "newPassword": "a long password", "role": "owner"}), "validation_failed"),
    ] {
        let (status, renewed, answer, _) = change_password(&c, &base, &eddie, body, true).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_error_body(&answer, code);
        assert!(renewed.is_none());
    }
    let (status, body) = call(&c, &base, &eddie, Method::GET, "/pages", None).await;
    assert_eq!(status, StatusCode::OK, "refused changes end no session: {body}");
    let (status, body, _) = {
        let res = c.post(format!("{base}/admin/session")).header(ORIGIN, &base).json(&json!({"token": token})).send().await.unwrap();
        parts(res).await
    };
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let owner = Login { cookie: body.unwrap().split(';').next().unwrap().trim().to_string(), csrf: String::new() };
    let (_, _, me) = parts(c.get(format!("{base}/admin/session")).header(COOKIE, &owner.cookie).send().await.unwrap()).await;
    let owner = Login { csrf: me["csrfToken"].as_str().unwrap_or_default().to_string(), ..owner };
    assert_eq!(me["staff"], false, "{me}");
    let (status, _, answer, _) =
        change_password(&c, &base, &owner, json!({"currentPassword": "x", "newPassword": "a long password"}), true).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_error_body(&answer, "no_password");

    // A wrong current password (a stolen session guessing it): the uniform 403, counted like a
    // failed login of that name; past the allowance 429 with Retry-After, even for the right one.
    let guess = json!({"currentPassword": "a guessed password", "newPassword": "eddie's stolen password"});
    for _ in 0..3 {
        let (status, renewed, answer, _) = change_password(&c, &base, &eddie, guess.clone(), true).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_error_body(&answer, "forbidden");
        assert_eq!(answer["error"]["details"]["field"], "currentPassword", "{answer}");
        assert!(renewed.is_none());
    }
    let right = json!({"currentPassword": "eddie's long password", "newPassword": "eddie's newer long password"});
    let (status, renewed, answer, retry_after) = change_password(&c, &base, &eddie, right, true).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert_error_body(&answer, "rate_limited");
    assert!(retry_after.and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s >= 1), "Retry-After");
    assert!(renewed.is_none());
    let (status, _, _) = try_login(&c, &base, json!({"name": "eddie", "password": "eddie's long password"})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the name's login is locked out too");
    login(&c, &base, "vera", "vera's newer long password").await;
    assert!(has(&audit(&node, &token).await, "eddie", "password.refused"), "the wrong guesses are audited");
    record_with(TABLE, CLASS, "a session guessing its member's current password", "refused", "403, then 429 for the name after 3");
}

/// A login from `ip` (the node trusts 127.0.0.1 as a proxy and reads `X-Forwarded-For`).
async fn login_from(c: &Client, base: &str, ip: &str, name: &str, password: &str) -> (StatusCode, Option<String>, Value, Option<String>) {
    let res = c
        .post(format!("{base}/admin/session"))
        .header(ORIGIN, base)
        .header("x-forwarded-for", ip)
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .unwrap();
    let retry_after = retry_after(&res);
    let (status, cookie, body) = parts(res).await;
    (status, cookie, body, retry_after)
}

#[tokio::test]
async fn failed_logins_for_one_name_from_many_ips_lock_out_that_name_only() {
    let node = TestNode::start_with(&[
        ("VITRINA_HTTP__TRUSTED_PROXIES", "[\"127.0.0.1/32\"]"),
        ("VITRINA_LIMITS__LOGIN_FAILURES_PER_NAME_BEFORE_LOCKOUT", "4"),
        ("VITRINA_LIMITS__NAME_LOCKOUT_BASE_SECS", "60"),
    ]);
    let token = node.seed_store("shop", "Shop").await;
    add_member(&node, &token, "alice", "owner", "alice's long password").await;
    add_member(&node, &token, "bob", "editor", "bob's long password").await;
    let (base, c) = (node.base("shop"), node.bare_client("shop"));
    // One wrong guess from each of four IPs: no IP is near its own lockout (10).
    for i in 1..=4 {
        let (status, cookie, body, _) = login_from(&c, &base, &format!("198.51.100.{i}"), "alice", "a guessed password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(cookie.is_none());
    }
    // The name is locked out from everywhere, the right password included.
    let (status, cookie, body, retry_after) = login_from(&c, &base, "203.0.113.9", "alice", "alice's long password").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_error_body(&body, "rate_limited");
    assert_eq!(body["error"]["details"]["scope"], "login_name", "{body}");
    let wait = retry_after.and_then(|s| s.parse::<u64>().ok()).expect("Retry-After");
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert!(cookie.is_none());
    record_with(TABLE, CLASS, "wrong passwords for one staff name from many IPs", "refused", "429 + Retry-After after 4, from any IP");
    // Another member logs in, even from an IP that guessed alice's password.
    let (status, cookie, body, _) = login_from(&c, &base, "198.51.100.1", "bob", "bob's long password").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(cookie.is_some());
    // The admin token is not a name: it still logs in.
    let res = c.post(format!("{base}/admin/session")).header(ORIGIN, &base).json(&json!({"token": token})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    record_with(
        TABLE,
        CLASS,
        "another member's right password while one name is locked out",
        "contained",
        "200: the lockout stays on the one name",
    );
}

#[tokio::test]
async fn the_per_name_login_count_is_the_stores_across_a_cluster() {
    let nodes = start_cluster(
        2,
        &[
            ("VITRINA_LIMITS__ENABLED", "true"),
            ("VITRINA_LIMITS__LOGIN_FAILURES_PER_NAME_BEFORE_LOCKOUT", "4"),
            ("VITRINA_LIMITS__NAME_LOCKOUT_BASE_SECS", "60"),
        ],
    )
    .await;
    let token = nodes[0].seed_store("shop", "Shop").await;
    let (status, body) = nodes[0]
        .admin(
            &token,
            Method::POST,
            "/stores/shop/staff",
            Some(json!({"name": "alice", "role": "owner", "password": "alice's long password"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let clients: Vec<(String, Client)> = nodes.iter().map(|n| (n.base("shop"), n.bare_client("shop"))).collect();
    // Two wrong guesses through each node: the store's owner counts all four.
    let answered_by =
        |res: &reqwest::Response| res.headers().get("x-vitrina-node").and_then(|v| v.to_str().ok()).unwrap_or("?").to_string();
    let mut seen = Vec::new();
    for (base, c) in clients.iter().chain(clients.iter()) {
        let res = c
            .post(format!("{base}/admin/session"))
            .header(ORIGIN, base)
            .json(&json!({"name": "alice", "password": "a guessed password"}))
            .send()
            .await
            .unwrap();
        seen.push(answered_by(&res));
        let (status, _, body) = parts(res).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{base}: {body}");
    }
    for (base, c) in &clients {
        let res = c
            .post(format!("{base}/admin/session"))
            .header(ORIGIN, base)
            .json(&json!({"name": "alice", "password": "alice's long password"}))
            .send()
            .await
            .unwrap();
        seen.push(answered_by(&res));
        let (status, _, body) = parts(res).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{base}: {body}; answered by {seen:?}");
        assert_error_body(&body, "rate_limited");
    }
    assert!(seen.iter().all(|n| n == &seen[0]), "every login is answered by the store's owner: {seen:?}");
    record_with(
        TABLE,
        CLASS,
        "wrong passwords for one staff name spread over the nodes of a cluster",
        "refused",
        "counted by the store's owner: 429 on every node",
    );
}

#[tokio::test]
async fn wrong_current_passwords_through_a_node_that_does_not_own_the_store_lock_out_the_ip() {
    let nodes = start_cluster(
        2,
        &[
            ("VITRINA_LIMITS__ENABLED", "true"),
            ("VITRINA_HTTP__TRUSTED_PROXIES", "[\"127.0.0.1/32\"]"),
            ("VITRINA_LIMITS__AUTH_FAILURES_BEFORE_LOCKOUT", "3"),
            ("VITRINA_LIMITS__LOCKOUT_BASE_SECS", "60"),
            ("VITRINA_LIMITS__LOGIN_FAILURES_PER_NAME_BEFORE_LOCKOUT", "100"),
        ],
    )
    .await;
    let token = nodes[0].seed_store("shop", "Shop").await;
    add_member(&nodes[0], &token, "alice", "owner", "alice's long password").await;
    // The node the store's requests are forwarded from: the one that does not answer them.
    let res = nodes[0].bare_client("shop").get(format!("{}/admin/session", nodes[0].base("shop"))).send().await.unwrap();
    let owner = res.headers().get("x-vitrina-node").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let mut entry = None;
    for node in &nodes {
        if node.cluster_status().await["node"] != owner.as_str() {
            entry = Some(node);
        }
    }
    let entry = entry.expect("a node that does not own the store");
    let (base, c) = (entry.base("shop"), entry.bare_client("shop"));
    let alice = login(&c, &base, "alice", "alice's long password").await;

    // A stolen session guessing the password from one IP, through the entry node.
    let attacker = "198.51.100.7";
    let guess = json!({"currentPassword": "a guessed password", "newPassword": "alice's stolen password"});
    for _ in 0..3 {
        let res = c
            .put(format!("{base}/admin/session/password"))
            .header(COOKIE, &alice.cookie)
            .header("x-csrf-token", &alice.csrf)
            .header(ORIGIN, &base)
            .header("x-forwarded-for", attacker)
            .json(&guess)
            .send()
            .await
            .unwrap();
        assert!(res.headers().get("x-vitrina-auth-failed").is_none(), "the owner's mark stays between nodes");
        assert_eq!(res.headers().get("x-vitrina-node").and_then(|v| v.to_str().ok()), Some(owner.as_str()), "answered by the owner");
        let (status, _, body) = parts(res).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    // That IP is locked out where it enters; the same session from another IP is not.
    let from = |ip: Option<&str>| {
        let mut req = c.get(format!("{base}/admin/api/v1/stores/shop/pages")).header(COOKIE, &alice.cookie);
        if let Some(ip) = ip {
            req = req.header("x-forwarded-for", ip);
        }
        req.send()
    };
    let (status, _, body) = parts(from(Some(attacker)).await.unwrap()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["details"]["scope"], "auth", "{body}");
    let (status, _, body) = parts(from(None).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    record_with(
        TABLE,
        CLASS,
        "a session guessing its member's current password through a node that does not own the store",
        "refused",
        "the IP locked out after 3 where it enters the cluster",
    );
}
