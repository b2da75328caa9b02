//! Sessions are the server's, black-box: made-up, malformed and forged `sid` cookies count as
//! no session and cost nothing; checkout rotates the token; cookies are HttpOnly, SameSite=Lax
//! and Secure behind an HTTPS proxy. Each hostile case is a row of the `edge-security` table.

use reqwest::header::{ACCEPT, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::json;
use test_support::table::record_with;
use test_support::*;

const HTML: &str = "text/html,application/xhtml+xml";
const TABLE: &str = "edge-security";

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

/// The `sid` value a response sets, if any.
fn set_sid(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("sid=").map(|r| r.split(';').next().unwrap_or("").to_string()))
}

fn set_cookie_line(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

#[tokio::test]
async fn made_up_session_ids_create_no_file_actor_or_memory() {
    let node = TestNode::start();
    node.seed_store("crawl", "Crawl").await;
    let base = node.base("crawl");
    let c = node.bare_client("crawl");
    // Warm the store's page first, so the baseline includes it.
    assert_eq!(c.get(format!("{base}/products/mug")).header(ACCEPT, HTML).send().await.unwrap().status(), 200);
    let before = rss_kib(node.pid());
    for chunk in 0..20 {
        let views = (0..50).map(|i| {
            let c = c.clone();
            let url = format!("{base}/products/mug");
            async move {
                let n = chunk * 50 + i;
                let res = c.get(url).header(ACCEPT, HTML).header("cookie", format!("sid=madeup-visitor-{n}")).send().await.unwrap();
                assert_eq!(res.status(), 200);
                if let Some(sid) = set_sid(&res) {
                    assert!(!sid.starts_with("madeup"), "a made-up id is replaced, never adopted: {sid}");
                }
            }
        });
        futures::future::join_all(views).await;
    }
    let grown_mib = rss_kib(node.pid()).saturating_sub(before) / 1024;
    assert_eq!(node.shopper_files("crawl"), 0, "no shopper file for made-up ids");
    assert_eq!(node.live_shoppers().await, 0, "no shopper actor for made-up ids");
    assert!(grown_mib < 100, "1,000 views with made-up ids grew the node by {grown_mib} MiB");
    record_with(TABLE, "sessions", "1,000 product views with made-up sids", "refused", &format!("0 files, 0 actors, +{grown_mib} MiB RSS"));

    // Malformed ones (path characters, oversized, empty) are no session either.
    for bad in ["../../etc/passwd", &"x".repeat(300), "", "a.b.c", "madeup.0.0123456789abcdef0123456789abcdef"] {
        let res = c.get(format!("{base}/cart")).header("cookie", format!("sid={bad}")).send().await.unwrap();
        assert_eq!(res.status(), 200, "{bad:?}");
        let (_, body) = json_of(res).await;
        assert_eq!(body["cart"]["count"], 0);
    }
    assert_eq!(node.shopper_files("crawl"), 0);
    record_with(TABLE, "sessions", "malformed sid cookies (path, oversized, empty, bad MAC)", "refused", "no session, nothing created");
}

#[tokio::test]
async fn a_forged_but_well_formed_token_is_replaced_and_reaches_nobody() {
    let node = TestNode::start();
    node.seed_store("forge", "Forge").await;
    let base = node.base("forge");
    let c = node.bare_client("forge");
    let res = c.post(format!("{base}/cart/items")).json(&json!({"productId": "tent", "quantity": 1})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let victim = set_sid(&res).expect("a minted session");
    let (id, rest) = victim.split_once('.').unwrap();
    let (generation, mac) = rest.split_once('.').unwrap();
    assert_eq!(generation, "0");
    let flipped_mac: String = mac.chars().rev().collect();
    let forgeries = [
        ("victim id, next generation, old MAC", format!("{id}.1.{mac}")),
        ("victim id, altered MAC", format!("{id}.0.{flipped_mac}")),
        ("victim id alone", id.to_string()),
        ("another id, victim's MAC", format!("0123456789abcdef0123456789abcdef.0.{mac}")),
    ];
    for (case, forged) in &forgeries {
        let res = c.get(format!("{base}/cart")).header("cookie", format!("sid={forged}")).send().await.unwrap();
        let replacement = set_sid(&res).expect("a new session for a forged cookie");
        assert!(!replacement.starts_with(id), "{case}: the forged id was kept");
        let (s, body) = json_of(res).await;
        assert_eq!((s, body["cart"]["count"].as_u64()), (StatusCode::OK, Some(0)), "{case}: {body}");
        // A write with the forgery lands in a new shopper, never the victim's cart.
        let res = c
            .post(format!("{base}/cart/items"))
            .header("cookie", format!("sid={forged}"))
            .json(&json!({"productId": "mug", "quantity": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED, "{case}");
        assert!(set_sid(&res).is_some_and(|s| !s.starts_with(id)), "{case}");
        record_with(TABLE, "sessions", &format!("forged sid: {case}"), "refused", "replaced by a new session");
    }
    let (_, body) = json_of(c.get(format!("{base}/cart")).header("cookie", format!("sid={victim}")).send().await.unwrap()).await;
    assert_eq!(body["cart"]["count"], 1, "the victim's cart is untouched: {body}");
    assert_eq!(body["cart"]["items"][0]["productId"], "tent");
}

#[tokio::test]
async fn checkout_rotates_the_session_and_the_old_token_reaches_nothing() {
    let node = TestNode::start();
    node.seed_store("rotate", "Rotate").await;
    let base = node.base("rotate");
    let c = node.bare_client("rotate");
    let res = c.post(format!("{base}/cart/items")).json(&json!({"productId": "mug", "quantity": 2})).send().await.unwrap();
    let old = set_sid(&res).expect("session");
    let old_cookie = format!("sid={old}");
    let res = c.put(format!("{base}/preferences")).header("cookie", &old_cookie).json(&json!({"locale": "de-DE"})).send().await.unwrap();
    assert_eq!(res.status(), 200);

    let res = c.post(format!("{base}/checkout")).header("cookie", &old_cookie).json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let line = set_cookie_line(&res, "sid").expect("checkout sets a new session cookie");
    assert!(line.contains("HttpOnly") && line.contains("SameSite=Lax"), "{line}");
    let new = set_sid(&res).unwrap();
    assert_ne!(new, old);
    let new_cookie = format!("sid={new}");
    let (_, body) = json_of(res).await;
    let order = body["order"]["id"].as_str().unwrap().to_string();

    // The new token reaches the order and the shopper's preferences; the old one nothing.
    let check = |node: &TestNode| {
        let (c, base, order, old_cookie, new_cookie) =
            (c.clone(), node.base("rotate"), order.clone(), old_cookie.clone(), new_cookie.clone());
        async move {
            let res = c.get(format!("{base}/orders/{order}")).header("cookie", &new_cookie).send().await.unwrap();
            assert_eq!(res.status(), 200, "the new token reaches the order");
            let html = c.get(&base).header(ACCEPT, HTML).header("cookie", &new_cookie).send().await.unwrap().text().await.unwrap();
            assert!(html.contains("lang=\"de-DE\""), "preferences follow the shopper");
            let (s, body) = json_of(c.get(format!("{base}/orders/{order}")).header("cookie", &old_cookie).send().await.unwrap()).await;
            assert_eq!(s, 404, "the old token no longer reaches the order: {body}");
            let res = c.get(format!("{base}/orders/{order}")).header(ACCEPT, HTML).header("cookie", &old_cookie).send().await.unwrap();
            let status = res.status();
            let html = res.text().await.unwrap();
            assert!(status == 404 || !html.contains(&order), "the order page is not shown to the old token");
            // A page's own fetch sent with the old cookie just before the checkout's answer must
            // not replace the new cookie the browser has stored: a read sets none.
            let res = c.get(&base).header(ACCEPT, HTML).header("cookie", &old_cookie).send().await.unwrap();
            assert_eq!(set_cookie_line(&res, "sid"), None, "a read with the old token replaces no cookie");
            let status = res.status();
            let html = res.text().await.unwrap();
            assert_eq!(status, 200, "{html}");
            assert!(!html.contains("lang=\"de-DE\""), "the old token sees a guest's page");
            let res = c.get(format!("{base}/cart")).header(ACCEPT, HTML).header("cookie", &old_cookie).send().await.unwrap();
            let cookie = set_cookie_line(&res, "sid");
            let status = res.status();
            assert_eq!(status, 200, "{}", res.text().await.unwrap());
            assert_eq!(cookie, None, "the cart page read with the old token replaces no cookie");
            let (s, body) = json_of(
                c.post(format!("{base}/cart/items"))
                    .header("cookie", &old_cookie)
                    .json(&json!({"productId": "mug", "quantity": 1}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(s, StatusCode::CONFLICT, "{body}");
            assert_error_body(&body, "session_expired");
        }
    };
    check(&node).await;
    record_with(
        TABLE,
        "sessions",
        "checkout: the pre-checkout sid reads the order",
        "rotated",
        "404; new sid reaches order and preferences",
    );
    // The rotation is durable: after a crash the old token is still refused.
    let node = node.kill_and_restart();
    check(&node).await;
    record_with(TABLE, "sessions", "checkout rotation after kill -9", "rotated", "old sid still refused");
}

#[tokio::test]
async fn cookies_are_http_only_lax_and_secure_only_when_served_over_https() {
    // A trusted proxy on loopback terminating TLS.
    let node = TestNode::start_with(&[("VITRINA_HTTP__TRUSTED_PROXIES", "[\"127.0.0.1/32\"]")]);
    node.seed_store("https", "Https").await;
    let base = node.base("https");
    let c = node.bare_client("https");
    let res = c.get(&base).header(ACCEPT, HTML).header("x-forwarded-proto", "https").send().await.unwrap();
    let line = set_cookie_line(&res, "sid").unwrap();
    assert!(line.contains("HttpOnly") && line.contains("SameSite=Lax") && line.contains("Secure"), "{line}");
    let res = c.get(&base).header(ACCEPT, HTML).send().await.unwrap();
    let line = set_cookie_line(&res, "sid").unwrap();
    assert!(!line.contains("Secure"), "plain HTTP through the proxy: {line}");
    record_with(TABLE, "sessions", "cookie flags behind a trusted HTTPS proxy", "verified", "HttpOnly; SameSite=Lax; Secure");

    // Anyone else's X-Forwarded-Proto is not believed.
    let node = TestNode::start();
    node.seed_store("plain", "Plain").await;
    let res =
        node.bare_client("plain").get(node.base("plain")).header(ACCEPT, HTML).header("x-forwarded-proto", "https").send().await.unwrap();
    let line = set_cookie_line(&res, "sid").unwrap();
    assert!(line.contains("HttpOnly") && !line.contains("Secure"), "{line}");
    record_with(TABLE, "sessions", "X-Forwarded-Proto from an untrusted peer", "refused", "ignored");

    let node = TestNode::start_with(&[("VITRINA_HTTP__SECURE_COOKIES", "always")]);
    node.seed_store("always", "Always").await;
    let res = node
        .bare_client("always")
        .post(format!("{}/cart/items", node.base("always")))
        .json(&json!({"productId": "mug", "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let line = set_cookie_line(&res, "sid").unwrap();
    assert!(line.contains("Secure") && line.contains("HttpOnly"), "{line}");
}
