//! Outbound requests to merchant-configured URLs cannot reach the node's own network (issue 17,
//! SSRF), black-box: a store's sync URL and orders URL in every spelling of loopback, private,
//! link-local and metadata addresses are refused when configured; redirects, names resolving to
//! loopback and oversized answers are refused when fetched; and a merchant learns "refused by
//! policy" or "unreachable", never which ports are open.

use std::sync::Arc;
use std::time::Duration;

use crate::fake_http::{self, Reply};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use test_support::table::{record, record_with};
use test_support::*;

const TABLE: &str = "edge-security";

fn products_page() -> String {
    let product = json!({
        "id": 7001, "title": "Allowed Item", "handle": "allowed-item", "body_html": "<p>ok</p>", "tags": "",
        "updated_at": "2024-05-01T10:00:00Z",
        "variants": [{"id": 70010, "price": "3.00", "compare_at_price": null, "inventory_quantity": 4, "inventory_item_id": 700100}],
        "images": []
    });
    json!({"products": [product]}).to_string()
}

#[tokio::test]
async fn urls_into_the_nodes_network_are_refused_when_configured() {
    let upstream = fake_http::serve("127.0.0.1:0", Arc::new(|_, _| Reply::ok(products_page()))).await;
    let node = TestNode::start();
    let token = node.seed_store("merchant", "Merchant").await;
    let p = upstream.addr.port();
    let own = node.addr;
    let mut cases: Vec<(String, String)> = vec![
        ("loopback 127.0.0.1".into(), format!("http://127.0.0.1:{p}/products.json")),
        ("loopback 127.1 (short form)".into(), format!("http://127.1:{p}/products.json")),
        ("loopback 0x7f.1 (hex)".into(), format!("http://0x7f.1:{p}/products.json")),
        ("loopback 0x7f000001 (hex integer)".into(), format!("http://0x7f000001:{p}/products.json")),
        ("loopback 2130706433 (decimal integer)".into(), format!("http://2130706433:{p}/products.json")),
        ("loopback 0177.0.0.1 (octal)".into(), format!("http://0177.0.0.1:{p}/products.json")),
        ("loopback 127.0.0.1 with trailing dot".into(), format!("http://127.0.0.1.:{p}/products.json")),
        ("loopback [::1]".into(), format!("http://[::1]:{p}/products.json")),
        ("loopback [::ffff:127.0.0.1] (IPv4-mapped)".into(), format!("http://[::ffff:127.0.0.1]:{p}/products.json")),
        ("loopback [::127.0.0.1] (IPv4-compatible)".into(), format!("http://[::127.0.0.1]:{p}/products.json")),
        ("loopback [64:ff9b::7f00:1] (NAT64)".into(), format!("http://[64:ff9b::7f00:1]:{p}/products.json")),
        ("loopback [2002:7f00:1::] (6to4)".into(), format!("http://[2002:7f00:1::]:{p}/products.json")),
        ("unspecified 0.0.0.0".into(), format!("http://0.0.0.0:{p}/products.json")),
        ("unspecified 0 (integer)".into(), format!("http://0:{p}/products.json")),
        ("name localhost".into(), format!("http://localhost:{p}/products.json")),
        ("name *.localhost".into(), format!("http://merchant.localhost:{p}/products.json")),
        ("private 10/8".into(), "http://10.0.0.1/products.json".into()),
        ("private 172.16/12".into(), "http://172.16.5.4/products.json".into()),
        ("private 192.168/16".into(), "http://192.168.1.1/products.json".into()),
        ("CGNAT 100.64/10".into(), "http://100.64.0.1/products.json".into()),
        ("link-local 169.254/16".into(), "http://169.254.10.10/products.json".into()),
        ("link-local [fe80::1]".into(), "http://[fe80::1]/products.json".into()),
        ("unique-local [fd12::1]".into(), "http://[fd12::1]/products.json".into()),
        ("metadata 169.254.169.254".into(), "http://169.254.169.254/latest/meta-data/".into()),
        ("metadata [fd00:ec2::254]".into(), "http://[fd00:ec2::254]/latest/meta-data/".into()),
        ("multicast 224.0.0.1".into(), "http://224.0.0.1/".into()),
        ("broadcast 255.255.255.255".into(), "http://255.255.255.255/".into()),
        ("documentation 192.0.2.1".into(), "http://192.0.2.1/".into()),
        ("benchmarking 198.18.0.1".into(), "http://198.18.0.1/".into()),
        ("node's own admin API".into(), format!("http://{own}/admin/api/v1/stores/merchant/products")),
        ("node's own /metrics".into(), format!("http://{own}/metrics")),
        ("node's own /internal/catalog".into(), format!("http://{own}/internal/catalog")),
        ("public name on a non-web port (22)".into(), "http://example.com:22/".into()),
        ("credentials in the URL".into(), "http://user:secret@example.com/products.json".into()),
    ];
    for name in fake_http::loopback_names_from_etc_hosts() {
        // Port 80: refused for the address its name resolves to, not for the port.
        cases.push((format!("/etc/hosts name {name:?} (loopback)"), format!("http://{name}/products.json")));
    }
    for (case, url) in &cases {
        let (s, b) = node.admin(&token, Method::PUT, "/stores/merchant/sync", Some(json!({"url": url, "intervalSecs": 3600}))).await;
        let expected = if case.starts_with("credentials") { StatusCode::BAD_REQUEST } else { StatusCode::UNPROCESSABLE_ENTITY };
        assert_eq!(s, expected, "{case}: {url}: {b}");
        if s == StatusCode::UNPROCESSABLE_ENTITY {
            assert_error_body(&b, "egress_refused");
            let message = b["error"]["message"].as_str().unwrap_or("");
            assert!(!message.contains(&p.to_string()), "no port detail: {message}");
        }
        record(TABLE, "ssrf", &format!("sync URL: {case}"), "refused");
    }
    for (case, url) in cases.iter().filter(|(c, _)| c.starts_with("loopback") || c.starts_with("metadata") || c.starts_with("node's")) {
        let (s, b) = node.admin(&token, Method::PUT, "/stores/merchant/backend", Some(json!({"ordersUrl": url}))).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{case}: {url}: {b}");
        assert_error_body(&b, "egress_refused");
        record(TABLE, "ssrf", &format!("orders URL: {case}"), "refused");
    }
    let (_, status) = node.admin(&token, Method::GET, "/stores/merchant/sync", None).await;
    assert!(status["config"].is_null(), "no refused URL was saved: {status}");
    assert_eq!(upstream.hits(), 0, "nothing reached the loopback upstream");
}

async fn sync_status(node: &TestNode, token: &str) -> Value {
    node.admin(token, Method::GET, "/stores/merchant/sync", None).await.1
}

/// Configures `url` as the sync URL, runs a sync and returns its status once finished.
async fn run_sync(node: &TestNode, token: &str, url: &str) -> Value {
    let (s, b) = node.admin(token, Method::PUT, "/stores/merchant/sync", Some(json!({"url": url, "intervalSecs": 3600}))).await;
    assert_eq!(s, 200, "{url}: {b}");
    let before = sync_status(node, token).await;
    let (failures, successes) = (before["consecutiveFailures"].as_i64().unwrap_or(0), before["lastSuccess"].clone());
    let (s, b) = node.admin(token, Method::POST, "/stores/merchant/sync/run", None).await;
    assert_eq!(s, 202, "{b}");
    wait_until("the sync run to finish", Duration::from_secs(20), || async {
        let st = sync_status(node, token).await;
        st["running"] == false && (st["consecutiveFailures"].as_i64() != Some(failures) || st["lastSuccess"] != successes)
    })
    .await;
    sync_status(node, token).await
}

#[tokio::test]
async fn redirects_names_and_answers_are_checked_when_fetched() {
    let node_port = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(0));
    let names = fake_http::loopback_names_from_etc_hosts();
    let handler: fake_http::Handler = {
        let node_port = node_port.clone();
        Arc::new(move |_method, target| {
            let np = node_port.load(std::sync::atomic::Ordering::SeqCst);
            let path = target.split('?').next().unwrap_or("");
            match path {
                "/products.json" => Reply::ok(products_page()),
                "/to-node-admin" => Reply::redirect(format!("http://127.0.0.1:{np}/admin/api/v1/stores/merchant")),
                "/to-ipv6-loopback" => Reply::redirect(format!("http://[::1]:{np}/metrics")),
                "/to-mapped-loopback" => Reply::redirect(format!("http://[::ffff:127.0.0.1]:{np}/metrics")),
                "/to-decimal-loopback" => Reply::redirect(format!("http://2130706433:{np}/metrics")),
                "/to-localhost" => Reply::redirect(format!("http://localhost:{np}/metrics")),
                "/to-metadata" => Reply::redirect("http://169.254.169.254/latest/meta-data/"),
                "/to-rebind-name" => Reply::redirect(format!("http://rebind.test:{np}/internal/catalog")),
                "/to-file" => Reply::redirect("file:///etc/passwd"),
                "/loop" => Reply::redirect("/loop"),
                "/big" => Reply::ok(format!("{{\"products\": [], \"pad\": \"{}\"}}", "x".repeat(64 * 1024))),
                "/unauthorized" => Reply::status(401),
                p if p.starts_with("/to-etc-hosts/") => Reply::redirect(format!("http://{}/metrics", &p["/to-etc-hosts/".len()..])),
                _ => Reply::status(404),
            }
        })
    };
    let upstream = fake_http::serve("127.0.0.2:0", handler).await;
    // An upstream that accepts and never answers, and a port nobody listens on.
    let silent = tokio::net::TcpListener::bind("127.0.0.2:0").await.expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let closed_port = std::net::TcpListener::bind("127.0.0.2:0").expect("bind").local_addr().expect("addr").port();

    let node = TestNode::start_with(&[
        // Only the fake upstream's address is opened; the node itself listens on 127.0.0.1.
        ("VITRINA_EGRESS__ALLOW", "127.0.0.2/32"),
        ("VITRINA_EGRESS__RESOLVE", "rebind.test=127.0.0.1"),
        ("VITRINA_EGRESS__MAX_RESPONSE_BYTES", "16384"),
        ("VITRINA_FEED__RETRIES", "0"),
        ("VITRINA_FEED__REQUEST_TIMEOUT_MS", "1500"),
    ]);
    node_port.store(node.addr.port(), std::sync::atomic::Ordering::SeqCst);
    let token = node.seed_store("merchant", "Merchant").await;
    let base = format!("http://{}", upstream.addr);

    // The operator's allowed range still works: products are imported.
    let st = run_sync(&node, &token, &format!("{base}/products.json")).await;
    assert!(!st["lastSuccess"].is_null(), "{st}");
    let (s, p) = node.admin(&token, Method::GET, "/stores/merchant/products/7001", None).await;
    assert_eq!(s, 200, "{p}");
    record(TABLE, "ssrf", "allowed upstream (egress.allow 127.0.0.2/32) still syncs", "allowed-by-config");

    let (_, before) = node.admin(&token, Method::GET, "/stores/merchant/products", None).await;
    let mut refused = vec![
        ("redirect to the node's admin API (other port)", "/to-node-admin".to_string()),
        ("redirect to [::1]", "/to-ipv6-loopback".into()),
        ("redirect to [::ffff:127.0.0.1]", "/to-mapped-loopback".into()),
        ("redirect to 2130706433 (decimal loopback)", "/to-decimal-loopback".into()),
        ("redirect to localhost", "/to-localhost".into()),
        ("redirect to 169.254.169.254 (metadata)", "/to-metadata".into()),
        ("redirect to a name resolving to 127.0.0.1 (rebinding)", "/to-rebind-name".into()),
        ("redirect loop (hop limit)", "/loop".into()),
    ];
    for name in &names {
        refused.push(("redirect to an /etc/hosts loopback name", format!("/to-etc-hosts/{name}")));
    }
    for (case, path) in &refused {
        let st = run_sync(&node, &token, &format!("{base}{path}")).await;
        assert_eq!(st["lastError"], "page 1: refused by policy", "{case}: {st}");
        record(TABLE, "ssrf", case, "refused");
    }
    // reqwest never follows a non-HTTP Location: the redirect itself is the answer.
    let st = run_sync(&node, &token, &format!("{base}/to-file")).await;
    assert_eq!(st["lastError"], "page 1: upstream answered 302 Found", "{st}");
    record(TABLE, "ssrf", "redirect to file:///etc/passwd", "refused");
    let (_, after) = node.admin(&token, Method::GET, "/stores/merchant/products", None).await;
    assert_eq!(before, after, "no refused answer was imported");

    let st = run_sync(&node, &token, &format!("{base}/big")).await;
    let error = st["lastError"].as_str().unwrap_or("");
    assert!(error.contains("response larger than 16384 bytes"), "{st}");
    record_with(TABLE, "ssrf", "oversized upstream answer (64 KiB, cap 16 KiB)", "bounded", "16384 bytes");

    // What a merchant learns: a closed port and a silent one look the same; a reached upstream
    // shows its status, nothing about connections.
    let closed = run_sync(&node, &token, &format!("http://127.0.0.2:{closed_port}/products.json")).await;
    assert_eq!(closed["lastError"], "page 1: unreachable", "{closed}");
    let hung = run_sync(&node, &token, &format!("http://{silent_addr}/products.json")).await;
    assert_eq!(hung["lastError"], "page 1: unreachable", "{hung}");
    record(TABLE, "ssrf", "lastError of a closed port vs a silent one (port oracle)", "refused");
    let reached = run_sync(&node, &token, &format!("{base}/unauthorized")).await;
    assert!(reached["lastError"].as_str().is_some_and(|e| e.contains("401")), "{reached}");
    drop(silent);

    // Order delivery goes through the same client: a backend that redirects inside is refused,
    // and the order's status says only that.
    let (s, b) =
        node.admin(&token, Method::PUT, "/stores/merchant/backend", Some(json!({"ordersUrl": format!("{base}/to-node-admin")}))).await;
    assert_eq!(s, 200, "{b}");
    let shopper = node.shopper("merchant");
    let shop = node.base("merchant");
    assert_eq!(shopper.add_to_cart("mug", 1).await.status, 201);
    let (s, order) = json_of(
        shopper.post(format!("{shop}/checkout")).header("idempotency-key", "egress-1").json(&json!({})).send().await.expect("checkout"),
    )
    .await;
    assert_eq!(s, 201, "{order}");
    let order_id = order["order"]["id"].as_str().expect("order id").to_string();
    let delivery = || async {
        json_of(shopper.get(format!("{shop}/orders/{order_id}")).send().await.expect("order")).await.1["order"]["delivery"].clone()
    };
    wait_until("a delivery attempt", Duration::from_secs(15), || async { !delivery().await["lastError"].is_null() }).await;
    let d = delivery().await;
    assert_eq!(d["lastError"], "refused by policy", "{d}");
    assert_eq!(d["status"], "pending", "{d}");
    record(TABLE, "ssrf", "order delivery redirected to the node's admin API", "refused");
}
