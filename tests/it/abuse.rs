//! Abuse is bounded, black-box: cross-site form posts are refused (CSRF), and rates are limited
//! per IP, per session, per admin token, per webhook source and on failed authentication (with
//! a lockout that grows). Nodes run with the default `[limits]`. Each hostile case is a row of
//! the `edge-security` table.

use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::json;
use test_support::table::record_with;
use test_support::*;

const TABLE: &str = "edge-security";

fn retry_after(res: &reqwest::Response) -> Option<u64> {
    res.headers().get(RETRY_AFTER)?.to_str().ok()?.parse().ok()
}

#[tokio::test]
async fn cross_site_form_posts_are_refused_and_change_nothing() {
    let node = TestNode::start();
    node.seed_store("shop", "Shop").await;
    node.seed_store("other", "Other").await;
    let base = node.base("shop");
    let c = node.bare_client("shop");
    // A shopper with a cart.
    let res = c.post(format!("{base}/cart/items")).json(&json!({"productId": "mug", "quantity": 1})).send().await.unwrap();
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("sid="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let count = || {
        let (c, base, cookie) = (c.clone(), base.clone(), cookie.clone());
        async move { json_of(c.get(format!("{base}/cart")).header("cookie", cookie).send().await.unwrap()).await.1["cart"]["count"].as_u64() }
    };
    let other = node.base("other");
    let form = |path: &str, body: &'static str| {
        c.post(format!("{base}{path}")).header("cookie", &cookie).header(CONTENT_TYPE, "application/x-www-form-urlencoded").body(body)
    };
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("form add, Origin of another site", form("/cart/items", "product_id=tent&quantity=1").header("origin", "https://evil.example")),
        ("form add, Origin of another store on the node", form("/cart/items", "product_id=tent&quantity=1").header("origin", &other)),
        ("form add, Origin null", form("/cart/items", "product_id=tent&quantity=1").header("origin", "null")),
        (
            "form add, foreign Referer and no Origin",
            form("/cart/items", "product_id=tent&quantity=1").header("referer", "https://evil.example/page"),
        ),
        ("form add, neither Origin nor Referer", form("/cart/items", "product_id=tent&quantity=1")),
        ("form quantity change, foreign Origin", form("/cart/items/mug", "quantity=9").header("origin", "https://evil.example")),
        ("form removal, foreign Origin", form("/cart/items/mug", "_method=DELETE").header("origin", "https://evil.example")),
        ("form checkout, foreign Origin", form("/checkout", "").header("origin", "https://evil.example")),
        ("form consent, foreign Origin", form("/consent", "analytics=granted").header("origin", "https://evil.example")),
        (
            "JSON add, foreign Origin",
            c.post(format!("{base}/cart/items"))
                .header("cookie", &cookie)
                .header("origin", "https://evil.example")
                .json(&json!({"productId": "tent", "quantity": 1})),
        ),
        (
            "DELETE line, foreign Origin",
            c.delete(format!("{base}/cart/items/mug")).header("cookie", &cookie).header("origin", "https://evil.example"),
        ),
    ];
    for (case, req) in cases {
        let (s, body) = json_of(req.header(ACCEPT, "application/json").send().await.unwrap()).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{case}: {body}");
        assert_error_body(&body, "csrf_rejected");
        assert_eq!(count().await, Some(1), "{case}: the cart is unchanged");
        record_with(TABLE, "csrf", case, "refused", "403 csrf_rejected, cart unchanged");
    }
    // The store's own pages, and scripts' JSON without Origin, go through.
    let res = form("/cart/items", "product_id=socks&quantity=1").header("origin", &base).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res =
        form("/cart/items", "product_id=socks&quantity=1").header("referer", format!("{base}/products/wool-socks")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = c
        .post(format!("{base}/cart/items"))
        .header("cookie", &cookie)
        .json(&json!({"productId": "socks", "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(count().await, Some(4));
    // JSON routes take JSON only.
    for (case, req) in [
        (
            "PUT /preferences as text/plain",
            c.put(format!("{base}/preferences")).header("cookie", &cookie).header(CONTENT_TYPE, "text/plain").body(r#"{"locale":"de-DE"}"#),
        ),
        (
            "PUT /preferences as a form",
            c.put(format!("{base}/preferences"))
                .header("cookie", &cookie)
                .header("origin", &base)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body("locale=de-DE"),
        ),
        (
            "PATCH a cart line as a form",
            c.patch(format!("{base}/cart/items/mug"))
                .header("cookie", &cookie)
                .header("origin", &base)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body("quantity=5"),
        ),
    ] {
        let (s, body) = json_of(req.send().await.unwrap()).await;
        assert!(s == StatusCode::UNSUPPORTED_MEDIA_TYPE || s == StatusCode::FORBIDDEN, "{case}: {s} {body}");
        assert_eq!(count().await, Some(4), "{case}");
        record_with(TABLE, "csrf", case, "refused", &s.as_u16().to_string());
    }
}

#[tokio::test]
async fn cookie_less_cart_writes_from_one_ip_are_limited_and_bounded() {
    let node = TestNode::start();
    node.seed_store("flood", "Flood").await;
    let base = node.base("flood");
    let c = node.bare_client("flood");
    let started = Instant::now();
    let (mut created, mut limited) = (0usize, 0usize);
    for _ in 0..40 {
        let writes = (0..50).map(|_| c.post(format!("{base}/cart/items")).json(&json!({"productId": "mug", "quantity": 1})).send());
        for res in futures::future::join_all(writes).await {
            let res = res.unwrap();
            match res.status() {
                StatusCode::CREATED => created += 1,
                StatusCode::TOO_MANY_REQUESTS => {
                    assert!(retry_after(&res).is_some_and(|s| s >= 1), "Retry-After on a 429");
                    let (_, body) = json_of(res).await;
                    assert_error_body(&body, "rate_limited");
                    limited += 1;
                }
                other => panic!("unexpected {other}"),
            }
        }
    }
    let secs = started.elapsed().as_secs() + 1;
    let files = node.shopper_files("flood");
    // Default: 60 new sessions at once, then 2 a second per IP.
    assert!(limited > 1_500, "most of 2,000 cookie-less writes are refused: {limited} refused, {created} created");
    assert!(files <= 60 + 2 * secs as usize + 5 && files == created, "{files} files in {secs} s");
    let counted = node.metric("vitrina_rate_limited_total{scope=\"session\"}").await
        + node.metric("vitrina_rate_limited_total{scope=\"write_ip\"}").await;
    assert_eq!(counted, limited as u64, "every 429 is counted");
    record_with(TABLE, "rate-limits", "2,000 cookie-less cart writes from one IP", "bounded", &format!("{limited} × 429, {files} files"));
}

#[tokio::test]
async fn one_session_writing_fast_is_limited() {
    let node = TestNode::start();
    node.seed_store("busy", "Busy").await;
    let base = node.base("busy");
    let c = node.shopper("busy");
    let res = c.post(format!("{base}/cart/items")).json(&json!({"productId": "socks", "quantity": 1})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let mut limited = 0;
    let started = std::time::Instant::now();
    for _ in 0..4 {
        let writes = (0..25).map(|_| c.patch(format!("{base}/cart/items/socks")).json(&json!({"quantity": 2})).send());
        for res in futures::future::join_all(writes).await {
            let res = res.unwrap();
            if res.status() == StatusCode::TOO_MANY_REQUESTS {
                assert!(retry_after(&res).is_some());
                limited += 1;
            } else {
                assert_eq!(res.status(), StatusCode::OK);
            }
        }
    }
    // A session may write 40 at once and 10 more each second (the defaults): whatever the
    // burst's 100 took on a loaded machine, the rest must have been refused.
    let refilled = (10.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    let allowed = 40 + refilled;
    assert!(limited > 0 && limited + allowed >= 100, "100 writes of one session in a burst: {limited} refused, {allowed} allowed");
    assert!(node.metric("vitrina_rate_limited_total{scope=\"write_session\"}").await > 0);
    record_with(TABLE, "rate-limits", "100 writes of one session at once", "bounded", &format!("{limited} × 429"));
}

#[tokio::test]
async fn wrong_admin_tokens_lock_the_ip_out_for_growing_times() {
    let node = TestNode::start();
    let token = node.create_store("vault", "Vault").await;
    let url = node.admin_url("/stores/vault");
    let c = node.plain();
    let mut waits = Vec::new();
    let mut sent = 0;
    while waits.len() < 3 && sent < 200 {
        sent += 1;
        let res = c.get(&url).bearer_auth(format!("wrong-{sent}")).send().await.unwrap();
        match res.status() {
            StatusCode::UNAUTHORIZED => continue,
            StatusCode::TOO_MANY_REQUESTS => {
                let wait = retry_after(&res).expect("Retry-After");
                let (_, body) = json_of(res).await;
                assert_error_body(&body, "rate_limited");
                // Locked: even the right token is refused.
                let res = c.get(&url).bearer_auth(&token).send().await.unwrap();
                assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "the right token during a lockout");
                waits.push(wait);
                tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(100)).await;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(waits.len(), 3, "lockouts within 200 wrong tokens: {waits:?}");
    assert!(waits.windows(2).all(|w| w[1] > w[0]), "each lockout is longer: {waits:?}");
    assert!(node.metric("vitrina_rate_limited_total{scope=\"auth\"}").await >= 3);
    record_with(
        TABLE,
        "rate-limits",
        "wrong admin tokens from one IP",
        "refused",
        &format!("locked out for {waits:?} s; right token refused while locked"),
    );

    // /metrics guesses count the same way (the IP is still locked or locks again).
    let res = c.get(format!("http://{}/metrics", node.addr)).bearer_auth("guess").send().await.unwrap();
    assert!(res.status() == StatusCode::UNAUTHORIZED || res.status() == StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn webhook_floods_from_one_source_are_limited() {
    let node = TestNode::start();
    node.create_store("hooked", "Hooked").await;
    let c = node.plain();
    let mut limited = 0;
    for _ in 0..10 {
        let posts = (0..50).map(|_| {
            c.post(format!("http://{}/webhooks/generic", node.addr))
                .header("vitrina-store", "hooked")
                .header("x-vitrina-signature", "sha256=00")
                .header(CONTENT_TYPE, "application/json")
                .body("{}")
                .send()
        });
        for res in futures::future::join_all(posts).await {
            let res = res.unwrap();
            if res.status() == StatusCode::TOO_MANY_REQUESTS {
                assert!(retry_after(&res).is_some());
                limited += 1;
            } else {
                assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            }
        }
    }
    assert!(limited >= 100, "500 webhooks from one source at once: {limited} refused");
    record_with(TABLE, "rate-limits", "500 webhook deliveries from one source", "bounded", &format!("{limited} × 429"));
}
