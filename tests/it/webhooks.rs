//! Webhooks, upstream catalog sync and checkout handoff, black-box: a real node, a webhook
//! sender that signs like Shopify and like our generic format, a fake upstream and a fake
//! commerce backend on 127.0.0.1:0.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;
use test_support::*;

const SECRET: &str = "whsec_test_0123456789abcdef";
const SHOP: &str = "hooks-test.myshopify.com";
const HTML: &str = "text/html";

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn hmac(secret: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Sends a Shopify-style webhook signed with `secret`.
async fn send_shopify(node: &TestNode, secret: &str, topic: &str, id: &str, body: &str) -> (StatusCode, Value) {
    let sig = base64::engine::general_purpose::STANDARD.encode(hmac(secret, &[body.as_bytes()]));
    send_shopify_signed(node, &sig, topic, id, body).await
}

async fn send_shopify_signed(node: &TestNode, sig: &str, topic: &str, id: &str, body: &str) -> (StatusCode, Value) {
    let res = node
        .plain()
        .post(format!("http://{}/webhooks/shopify", node.addr))
        .header("content-type", "application/json")
        .header("x-shopify-shop-domain", SHOP)
        .header("x-shopify-topic", topic)
        .header("x-shopify-webhook-id", id)
        .header("x-shopify-hmac-sha256", sig)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    json_of(res).await
}

/// Sends a generic webhook signed at unix time `t`.
async fn send_generic(node: &TestNode, store: &str, secret: &str, t: i64, body: &str) -> (StatusCode, Value) {
    json_of(node.generic_webhook(store, secret, t, body).await).await
}

fn shopify_product(id: u64, title: &str, price: &str, qty: i64, updated_at: &str) -> String {
    json!({
        "id": id, "title": title, "handle": title.to_lowercase().replace(' ', "-"),
        "body_html": format!("<p>The <strong>{title}</strong></p><script>alert(1)</script>"),
        "tags": "trail, camp", "updated_at": updated_at,
        "variants": [{"id": id * 10, "price": price, "compare_at_price": null, "inventory_quantity": qty, "inventory_item_id": id * 100}],
        "images": [{"src": "https://cdn.example.test/p.png"}]
    })
    .to_string()
}

async fn setup_store(node: &TestNode, store: &str) -> String {
    let token = node.seed_store(store, "Hooks").await;
    let (s, b) =
        node.admin(&token, Method::PUT, &format!("/stores/{store}/webhooks"), Some(json!({"secret": SECRET, "shopifyDomain": SHOP}))).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["secretConfigured"], true);
    token
}

async fn product(node: &TestNode, token: &str, store: &str, id: &str) -> (StatusCode, Value) {
    node.admin(token, Method::GET, &format!("/stores/{store}/products/{id}"), None).await
}

async fn home_html(node: &TestNode, store: &str) -> String {
    // A fresh client each time: a first visit, served from the store's current snapshot.
    node.shopper(store).get(node.base(store)).header("accept", HTML).send().await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn signed_webhooks_apply_and_forgeries_change_nothing() {
    let node = TestNode::start();
    let token = setup_store(&node, "hooks").await;

    // Shopify products/create, correctly signed: applied, and the next page shows the price.
    let body = shopify_product(1001, "Trail Lantern", "24.99", 7, "2024-05-01T10:00:00Z");
    let (s, b) = send_shopify(&node, SECRET, "products/create", "wh-1", &body).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "applied", "{b}");
    let page = home_html(&node, "hooks").await;
    assert!(page.contains("Trail Lantern") && page.contains("$24.99"), "{page}");
    let (_, p) = product(&node, &token, "hooks", "1001").await;
    assert_eq!(p["priceMinor"], 2499);
    assert_eq!(p["stock"], 7);
    assert_eq!(p["description"], "The Trail Lantern");
    assert_eq!(p["tags"], json!(["trail", "camp"]));

    // Forgeries: wrong secret, tampered body, garbage signature, unknown shop → 401, no change.
    let cheap = shopify_product(1001, "Trail Lantern", "1.00", 7, "2024-05-02T10:00:00Z");
    let (s, b) = send_shopify(&node, "not-the-right-secret-at-all", "products/update", "wh-2", &cheap).await;
    assert_eq!(s, 401, "{b}");
    assert_error_body(&b, "invalid_signature");
    let good_sig = base64::engine::general_purpose::STANDARD.encode(hmac(SECRET, &[body.as_bytes()]));
    let (s, b) = send_shopify_signed(&node, &good_sig, "products/update", "wh-3", &cheap).await;
    assert_eq!(s, 401, "tampered body accepted: {b}");
    assert_error_body(&b, "invalid_signature");
    let (s, _) = send_shopify_signed(&node, "!!notbase64", "products/update", "wh-4", &cheap).await;
    assert_eq!(s, 401);

    // Generic format: a stale timestamp is refused even with a valid MAC.
    let generic = |id: &str, price: &str, at: &str| {
        json!({"id": id, "store": "hooks", "type": "product.upsert",
               "data": {"id": "1001", "title": "Trail Lantern", "price": price, "stock": 3, "updatedAt": at}})
        .to_string()
    };
    let (s, b) = send_generic(&node, "hooks", SECRET, unix_now() - 600, &generic("g-1", "2.00", "2024-05-03T00:00:00Z")).await;
    assert_eq!(s, 401, "{b}");
    assert_error_body(&b, "invalid_signature");
    let (s, _) = send_generic(&node, "hooks", "wrong-secret-0123456789", unix_now(), &generic("g-2", "2.00", "2024-05-03T00:00:00Z")).await;
    assert_eq!(s, 401);
    let (_, p) = product(&node, &token, "hooks", "1001").await;
    assert_eq!(p["priceMinor"], 2499, "a refused webhook changed the product: {p}");

    // The same webhook id twice: applied once; the repeat is acknowledged and ignored even
    // though its body differs.
    let (s, b) = send_generic(&node, "hooks", SECRET, unix_now(), &generic("g-3", "30.00", "2024-05-03T00:00:00Z")).await;
    assert_eq!((s, b["status"].clone()), (StatusCode::OK, json!("applied")), "{b}");
    let version = b["storeVersion"].clone();
    let (s, b) = send_generic(&node, "hooks", SECRET, unix_now(), &generic("g-3", "31.00", "2024-05-04T00:00:00Z")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "duplicate", "{b}");
    assert_eq!(b["storeVersion"], version);
    // Counted by bounded outcome (the report's finer status stays in the answer).
    for (format, outcome, n) in [
        ("shopify", "accepted", 1),
        ("shopify", "rejected", 3),
        ("generic", "rejected", 2),
        ("generic", "accepted", 1),
        ("generic", "duplicate", 1),
    ] {
        let series = format!("vitrina_webhooks_total{{format=\"{format}\",outcome=\"{outcome}\"}}");
        assert_eq!(node.metric(&series).await, n, "{series}");
    }
    let (_, p) = product(&node, &token, "hooks", "1001").await;
    assert_eq!(p["priceMinor"], 3000);

    // An older update after a newer one is stale.
    let (s, b) =
        send_shopify(&node, SECRET, "products/update", "wh-5", &shopify_product(1001, "Trail Lantern", "5.00", 1, "2024-05-01T12:00:00Z"))
            .await;
    assert_eq!((s, b["status"].clone()), (StatusCode::OK, json!("stale")), "{b}");

    // inventory_levels/update sets the stock of the product owning the item; delete removes it.
    let (s, b) = send_shopify(
        &node,
        SECRET,
        "products/update",
        "wh-5b",
        &shopify_product(1001, "Trail Lantern", "29.00", 1, "2024-05-05T00:00:00Z"),
    )
    .await;
    assert_eq!((s, b["status"].clone()), (StatusCode::OK, json!("applied")), "{b}");
    let inv = json!({"inventory_item_id": 100100, "available": 42, "updated_at": "2024-06-01T00:00:00Z"}).to_string();
    let (s, b) = send_shopify(&node, SECRET, "inventory_levels/update", "wh-6", &inv).await;
    assert_eq!((s, b["status"].clone()), (StatusCode::OK, json!("applied")), "{b}");
    assert_eq!(product(&node, &token, "hooks", "1001").await.1["stock"], 42);
    let (s, b) = send_shopify(&node, SECRET, "products/delete", "wh-7", &json!({"id": 1001}).to_string()).await;
    assert_eq!((s, b["status"].clone()), (StatusCode::OK, json!("applied")), "{b}");
    assert_eq!(product(&node, &token, "hooks", "1001").await.0, 404);
    assert!(!home_html(&node, "hooks").await.contains("Trail Lantern"));

    // Too large a body: 413, before any signature work.
    let huge = "x".repeat(300 * 1024);
    let (s, _) = send_shopify(&node, SECRET, "products/update", "wh-8", &huge).await;
    assert_eq!(s, 413);
}

#[tokio::test]
async fn a_shuffled_burst_of_100_webhooks_applies_newest_per_product() {
    use rand::seq::SliceRandom;
    let node = TestNode::start();
    let token = setup_store(&node, "burst").await;
    let now = unix_now();
    let mut bodies = Vec::new();
    for product in 0..10 {
        for version in 0..10 {
            bodies.push(
                json!({"id": format!("evt-{product}-{version}"), "store": "burst", "type": "product.upsert",
                       "data": {"id": format!("bp-{product}"), "title": format!("Burst {product}"),
                                "price": format!("{}.{version}0", 10 + product), "stock": version,
                                "updatedAt": format!("2024-05-01T10:00:0{version}Z")}})
                .to_string(),
            );
        }
    }
    bodies.shuffle(&mut rand::thread_rng());
    let sends = bodies.iter().map(|b| send_generic(&node, "burst", SECRET, now, b));
    let answers = futures::future::join_all(sends).await;
    let mut applied = 0;
    for (s, b) in &answers {
        assert_eq!(*s, 200, "{b}");
        assert!(b["status"] == "applied" || b["status"] == "stale", "{b}");
        applied += (b["status"] == "applied") as usize;
    }
    assert!(applied >= 10, "at least the newest version of each product applies");
    for product in 0..10 {
        let (s, p) = product_of(&node, &token, product).await;
        assert_eq!(s, 200, "{p}");
        assert_eq!(p["priceMinor"], (10 + product) * 100 + 90, "product {product} is not at its newest version: {p}");
        assert_eq!(p["stock"], 9);
    }
}

async fn product_of(node: &TestNode, token: &str, n: i64) -> (StatusCode, Value) {
    product(node, token, "burst", &format!("bp-{n}")).await
}

/// A tiny HTTP/1.1 server for fakes: each request is answered by `respond(method, target,
/// headers, body) -> (status, json body)`, one request per connection.
mod fake {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    pub type Handler = Arc<dyn Fn(&str, &str, &[(String, String)], &[u8]) -> (u16, String) + Send + Sync>;

    pub async fn serve(handler: Handler) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let (head_end, content_length) = loop {
                        let Ok(n) = sock.read(&mut chunk).await else { return };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..pos]).to_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                                .unwrap_or(0);
                            break (pos + 4, len);
                        }
                    };
                    while buf.len() < head_end + content_length {
                        let Ok(n) = sock.read(&mut chunk).await else { return };
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let mut lines = head.lines();
                    let mut first = lines.next().unwrap_or("").split(' ');
                    let (method, target) = (first.next().unwrap_or("").to_string(), first.next().unwrap_or("").to_string());
                    let headers: Vec<(String, String)> =
                        lines.filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))).collect();
                    let body_end = (head_end + content_length).min(buf.len());
                    let (status, body) = handler(&method, &target, &headers, &buf[head_end..body_end]);
                    let res = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(res.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        addr
    }

    pub fn query<'a>(target: &'a str, key: &str) -> Option<&'a str> {
        target.split_once('?')?.1.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }
}

#[tokio::test]
async fn upstream_sync_pages_in_and_a_down_upstream_keeps_pages_served() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let down = Arc::new(AtomicBool::new(false));
    let products: Vec<String> = (1..=3)
        .map(|i| shopify_product(5000 + i, &format!("Synced Item {i}"), &format!("{i}.50"), i as i64, "2024-05-01T10:00:00Z"))
        .collect();
    let handler: fake::Handler = {
        let down = down.clone();
        Arc::new(move |_m, target, _h, _b| {
            if down.load(Ordering::SeqCst) {
                return (503, r#"{"error":"maintenance"}"#.to_string());
            }
            let page: usize = fake::query(target, "page").and_then(|p| p.parse().ok()).unwrap_or(1);
            let limit: usize = fake::query(target, "limit").and_then(|p| p.parse().ok()).unwrap_or(250);
            let slice: Vec<&String> = products.iter().skip((page - 1) * limit).take(limit).collect();
            let list = slice.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
            (200, format!(r#"{{"products":[{list}]}}"#))
        })
    };
    let upstream = fake::serve(handler).await;

    let node = TestNode::start_with(&[
        ("VITRINA_EGRESS__ALLOW", "127.0.0.0/8"),
        ("VITRINA_FEED__PAGE_LIMIT", "2"),
        ("VITRINA_FEED__RETRIES", "1"),
        ("VITRINA_FEED__BACKOFF_BASE_MS", "10"),
        ("VITRINA_FEED__BREAKER_THRESHOLD", "2"),
        ("VITRINA_FEED__BREAKER_COOLDOWN_SECS", "600"),
    ]);
    let token = node.seed_store("synced", "Synced").await;
    let config = json!({"url": format!("http://{upstream}/products.json"), "intervalSecs": 3600});
    let (s, b) = node.admin(&token, Method::PUT, "/stores/synced/sync", Some(config)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["circuit"], "closed");
    let (s, b) = node.admin(&token, Method::POST, "/stores/synced/sync/run", None).await;
    assert_eq!(s, 202, "{b}");

    let status = || async { node.admin(&token, Method::GET, "/stores/synced/sync", None).await.1 };
    wait_until("the first sync to succeed", std::time::Duration::from_secs(15), || async {
        let st = status().await;
        !st["lastSuccess"].is_null() && st["running"] == false
    })
    .await;
    let st = status().await;
    assert_eq!(st["productsSynced"], 3, "{st}");
    let (s, p) = node.admin(&token, Method::GET, "/stores/synced/products/5003", None).await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["priceMinor"], 350);
    assert!(home_html(&node, "synced").await.contains("Synced Item 2"));

    // The upstream goes down: runs fail (after their retries), the circuit opens after two,
    // and pages keep coming from the cached catalog.
    down.store(true, Ordering::SeqCst);
    for failures in 1..=2 {
        let (s, b) = node.admin(&token, Method::POST, "/stores/synced/sync/run", None).await;
        assert_eq!(s, 202, "{b}");
        wait_until("the sync run to fail", std::time::Duration::from_secs(15), || async {
            let st = status().await;
            st["consecutiveFailures"] == failures && st["running"] == false
        })
        .await;
    }
    let st = status().await;
    assert!(st["lastError"].as_str().is_some_and(|e| e.contains("503")), "{st}");
    assert_eq!(st["circuit"], "open", "{st}");
    assert!(!st["lastSuccess"].is_null());
    let res = node.shopper("synced").get(node.base("synced")).header("accept", HTML).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Synced Item 1"));
    let metrics = node.metrics_text().await;
    assert!(metrics.contains("vitrina_sync_runs_total{outcome=\"failure\"} 2"), "{metrics}");
}

#[tokio::test]
async fn checkout_with_the_backend_down_keeps_the_order_and_delivers_it_exactly_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let down = Arc::new(AtomicBool::new(true));
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handler: fake::Handler = {
        let (down, accepted, refused) = (down.clone(), accepted.clone(), refused.clone());
        Arc::new(move |method, _target, headers, body| {
            if down.load(Ordering::SeqCst) {
                refused.fetch_add(1, Ordering::SeqCst);
                return (503, "{}".into());
            }
            let key = headers.iter().find(|(k, _)| k == "idempotency-key").map(|(_, v)| v.clone()).unwrap_or_default();
            let order: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            assert_eq!(method, "POST");
            assert_eq!(order["id"], key.as_str(), "the order id travels as Idempotency-Key");
            // Every accepted request is recorded: exactly one means no redelivery after a 2xx.
            accepted.lock().unwrap().push(key);
            (200, r#"{"stock": {"mug": 3}}"#.into())
        })
    };
    let backend = fake::serve(handler).await;

    let node = TestNode::start_with(&[
        ("VITRINA_EGRESS__ALLOW", "127.0.0.0/8"),
        ("VITRINA_ACTORS__ALARM_POLL_MS", "100"),
        ("VITRINA_FEED__ORDER_RETRY_BASE_MS", "200"),
        ("VITRINA_FEED__ORDER_RETRY_MAX_MS", "800"),
    ]);
    let token = node.seed_store("orders", "Orders").await;
    let (s, b) =
        node.admin(&token, Method::PUT, "/stores/orders/backend", Some(json!({"ordersUrl": format!("http://{backend}/orders")}))).await;
    assert_eq!(s, 200, "{b}");

    let c = node.shopper("orders");
    let base = node.base("orders");
    let res = c.add_to_cart("mug", 2).await;
    assert_eq!(res.status, 201);

    // A double click: two checkouts with one key make one order.
    let checkout = || c.post(format!("{base}/checkout")).header("idempotency-key", "click-1").json(&json!({})).send();
    let (s1, first) = json_of(checkout().await.unwrap()).await;
    let (s2, second) = json_of(checkout().await.unwrap()).await;
    assert_eq!(s1, 201, "{first}");
    assert_eq!(s2, 200, "{second}");
    let order_id = first["order"]["id"].as_str().unwrap().to_string();
    assert_eq!(second["order"]["id"], order_id.as_str());
    assert_eq!(first["order"]["subtotalMinor"], 2 * 1250);
    let (_, cart) = c.cart_answer().await.parts();
    assert_eq!(cart["cart"]["count"], 0, "the order emptied the cart");
    let (s, _) =
        json_of(c.post(format!("{base}/checkout")).header("idempotency-key", "click-2").json(&json!({})).send().await.unwrap()).await;
    assert_eq!(s, 409, "an empty cart cannot be checked out");

    // The backend is down: the order is kept, retried, and its status says why.
    let order = || async { json_of(c.get(format!("{base}/orders/{order_id}")).send().await.unwrap()).await.1 };
    wait_until("a failed delivery attempt", std::time::Duration::from_secs(10), || async { refused.load(Ordering::SeqCst) >= 2 }).await;
    let o = order().await;
    assert_eq!(o["order"]["delivery"]["status"], "pending", "{o}");
    assert!(o["order"]["delivery"]["lastError"].as_str().is_some_and(|e| e.contains("503")), "{o}");

    // Back up: delivered, exactly once.
    down.store(false, Ordering::SeqCst);
    wait_until("the order to be delivered", std::time::Duration::from_secs(10), || async {
        order().await["order"]["delivery"]["status"] == "delivered"
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(*accepted.lock().unwrap(), vec![order_id.clone()], "the backend accepted exactly one order");
    // The backend's stock answer reached the catalog.
    wait_until("the backend's stock to apply", std::time::Duration::from_secs(5), || async {
        node.admin(&token, Method::GET, "/stores/orders/products/mug", None).await.1["stock"] == 3
    })
    .await;
    // Another session cannot see the order.
    let (s, b) = json_of(node.shopper("orders").get(format!("{base}/orders/{order_id}")).send().await.unwrap()).await;
    assert_eq!(s, 404, "{b}");
}
