//! A store's CDN purge URL (issue 21, item 6): configured through the admin API, refused at
//! configuration time when the egress policy refuses it, and POSTed with the store's surrogate
//! keys after a webhook changes what its anonymous pages show, through the egress client,
//! retried with backoff, without holding up the webhook's answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use test_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "whsec_test_0123456789abcdef";

/// One purge as the receiver saw it: method, lower-cased headers, body.
#[derive(Clone)]
struct Seen {
    method: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }
}

/// A purge receiver on 127.0.0.1: the first request is held until `release` is notified, then
/// answered 503; later ones get 200.
async fn receiver() -> (String, Arc<Mutex<Vec<Seen>>>, Arc<tokio::sync::Notify>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let release = Arc::new(tokio::sync::Notify::new());
    let (seen2, release2) = (seen.clone(), release.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let (seen, release) = (seen2.clone(), release2.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let (end, length) = loop {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end, length);
                    }
                };
                while buf.len() < end + 4 + length {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let mut lines = head.lines();
                let method = lines.next().unwrap_or("").split(' ').next().unwrap_or("").to_string();
                let headers =
                    lines.filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))).collect();
                let body = String::from_utf8_lossy(&buf[end + 4..(end + 4 + length).min(buf.len())]).to_string();
                let first = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(Seen { method, headers, body });
                    seen.len() == 1
                };
                let status = if first {
                    release.notified().await;
                    "503 Unavailable"
                } else {
                    "200 OK"
                };
                let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}");
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}/purge"), seen, release)
}

async fn send_generic(node: &TestNode, store: &str, body: &str) -> StatusCode {
    node.generic_webhook(store, SECRET, test_support::webhook::unix_now(), body).await.status()
}

#[tokio::test]
async fn a_webhook_change_purges_the_store_from_its_cdn_without_waiting_for_it() {
    let node = TestNode::start_with(&[("VITRINA_EGRESS__ALLOW", "127.0.0.0/8"), ("VITRINA_CACHE__PURGE_BACKOFF_MS", "100")]);
    let token = node.seed_store("shop", "Shop").await;
    let (s, b) = node.admin(&token, Method::PUT, "/stores/shop/webhooks", Some(json!({"secret": SECRET}))).await;
    assert_eq!(s, 200, "{b}");
    let (url, seen, release) = receiver().await;
    let (s, b) = node.admin(&token, Method::PUT, "/stores/shop/cdn", Some(json!({"purgeUrl": url}))).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = node.admin(&token, Method::GET, "/stores/shop/cdn", None).await;
    assert_eq!((s, b["purgeUrl"].as_str()), (StatusCode::OK, Some(url.as_str())), "{b}");
    assert!(seen.lock().unwrap().is_empty(), "configuring purges nothing");

    // The webhook is answered while its purge is held unanswered by the CDN.
    let change = json!({"id": "evt-1", "store": "shop", "type": "product.upsert",
                        "data": {"id": "lantern", "title": "Lantern", "price": "9.00", "stock": 3, "updatedAt": "2024-05-03T00:00:00Z"}})
    .to_string();
    let answered = tokio::time::timeout(Duration::from_secs(20), send_generic(&node, "shop", &change)).await;
    assert_eq!(answered.expect("the webhook waited for its CDN purge"), StatusCode::OK);
    wait_until("the purge to reach the CDN", Duration::from_secs(15), || async { !seen.lock().unwrap().is_empty() }).await;
    // The CDN fails the first attempt; the node tries again.
    release.notify_one();
    wait_until("a second attempt", Duration::from_secs(15), || async { seen.lock().unwrap().len() >= 2 }).await;
    let purges = seen.lock().unwrap().clone();
    for purge in &purges {
        assert_eq!(purge.method, "POST");
        assert!(purge.header("surrogate-key").split(' ').any(|k| k == "vitrina-store-shop"), "{:?}", purge.headers);
        assert!(purge.header("cache-tag").split(',').any(|k| k == "vitrina-store-shop"), "{:?}", purge.headers);
        let body: Value = serde_json::from_str(&purge.body).unwrap();
        assert_eq!(body["store"], "shop", "{body}");
    }
    wait_until("the purge counted", Duration::from_secs(15), || async {
        node.metric("vitrina_cdn_purges_total{outcome=\"ok\"}").await >= 1
    })
    .await;
    assert!(node.metric("vitrina_cdn_purges_total{outcome=\"retried\"}").await >= 1);

    // Removed: further changes purge nothing.
    let (s, b) = node.admin(&token, Method::PUT, "/stores/shop/cdn", Some(json!({"purgeUrl": null}))).await;
    assert_eq!((s, &b["purgeUrl"]), (StatusCode::OK, &Value::Null), "{b}");
    let before = seen.lock().unwrap().len();
    let change = change.replace("evt-1", "evt-2").replace("2024-05-03", "2024-05-04");
    assert_eq!(send_generic(&node, "shop", &change).await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(seen.lock().unwrap().len(), before, "a purge after the URL was removed");
}

#[tokio::test]
async fn a_purge_url_the_egress_policy_refuses_is_refused_when_configured() {
    let node = TestNode::start();
    let token = node.seed_store("shop", "Shop").await;
    for url in ["http://127.0.0.1:8080/purge", "http://10.1.2.3/purge", "http://[::1]/purge", "http://169.254.169.254/latest"] {
        let (s, b) = node.admin(&token, Method::PUT, "/stores/shop/cdn", Some(json!({"purgeUrl": url}))).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {b}");
        assert_error_body(&b, "egress_refused");
        test_support::table::record("edge-security", "ssrf", &format!("CDN purge URL: {url}"), "refused");
    }
    for body in [json!({}), json!({"purgeUrl": 7}), json!({"purgeUrl": "ftp://cdn.example/purge"})] {
        let (s, b) = node.admin(&token, Method::PUT, "/stores/shop/cdn", Some(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {b}");
    }
    let (s, b) = node.admin(&token, Method::GET, "/stores/shop/cdn", None).await;
    assert_eq!((s, &b["purgeUrl"]), (StatusCode::OK, &Value::Null), "nothing was stored: {b}");
}

#[tokio::test]
async fn a_purge_the_egress_policy_refuses_at_call_time_is_not_sent() {
    // Configured while the node's policy allowed loopback; the node then restarts without
    // that allowance: every purge is checked again when it is made.
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start_in(dir.path(), &[("VITRINA_EGRESS__ALLOW", "127.0.0.0/8")]);
    let token = node.seed_store("shop", "Shop").await;
    let (s, b) = node.admin(&token, Method::PUT, "/stores/shop/webhooks", Some(json!({"secret": SECRET}))).await;
    assert_eq!(s, 200, "{b}");
    let (url, seen, _release) = receiver().await;
    let (s, b) = node.admin(&token, Method::PUT, "/stores/shop/cdn", Some(json!({"purgeUrl": url}))).await;
    assert_eq!(s, 200, "{b}");
    node.kill();
    let node = TestNode::start_in(dir.path(), &[]);
    let change = json!({"id": "evt-1", "store": "shop", "type": "product.upsert",
                        "data": {"id": "lantern", "title": "Lantern", "price": "9.00", "stock": 3, "updatedAt": "2024-05-03T00:00:00Z"}})
    .to_string();
    assert_eq!(send_generic(&node, "shop", &change).await, StatusCode::OK);
    wait_until("the refused purge counted", Duration::from_secs(15), || async {
        node.metric("vitrina_cdn_purges_total{outcome=\"refused\"}").await >= 1
    })
    .await;
    assert!(seen.lock().unwrap().is_empty(), "a refused purge reached its URL");
    test_support::table::record(
        "edge-security",
        "ssrf",
        "CDN purge URL at loopback, called after the policy stopped allowing it",
        "refused",
    );
}
