//! `GET /metrics` (issue 21, item 1): typed families from the Prometheus exporter, request
//! latency histograms by route pattern and status, per-store request counts.

use reqwest::header::ACCEPT;
use test_support::*;

#[tokio::test]
async fn metrics_carry_request_histograms_and_per_store_usage() {
    let node = TestNode::start();
    node.seed_store("shop", "Shop").await;
    let c = node.bare_client("shop");
    for path in ["/", "/products/mug", "/products/tent", "/products/nope"] {
        c.get(format!("{}{path}", node.base("shop"))).header(ACCEPT, "text/html").send().await.unwrap();
    }
    assert_eq!(node.shopper("shop").add_to_cart("mug", 1).await.status, 201);
    let text = node.metrics_text().await;
    assert!(text.contains("# TYPE vitrina_http_request_duration_seconds histogram"), "{text}");
    // The route label is the pattern, never the path a client chose.
    let product_buckets =
        text.lines().filter(|l| l.starts_with("vitrina_http_request_duration_seconds_bucket{route=\"/products/{handle}\"")).count();
    assert!(product_buckets > 5, "{text}");
    assert!(!text.contains("/products/nope"), "a client's path became a label: {text}");
    assert!(
        text.lines()
            .any(|l| l
                .starts_with("vitrina_http_request_duration_seconds_count{route=\"/products/{handle}\",method=\"GET\",status=\"200\"} 2")),
        "{text}"
    );
    assert!(node.metric("vitrina_store_requests_total{store=\"shop\"}").await >= 4, "{text}");
    assert!(text.contains("# TYPE vitrina_live_actors gauge"), "{text}");
    // Render CPU (histogram and per-store usage) and durable commit latency.
    assert!(node.metric("vitrina_render_cpu_seconds_count").await >= 1, "{text}");
    assert!(text.contains("vitrina_store_render_cpu_ms_total{store=\"shop\"}"), "{text}");
    assert!(node.metric("vitrina_sqlite_commit_seconds_count{durability=\"durable\"}").await >= 1, "{text}");
    // Only the operator reads them.
    let anonymous = node.plain().get(format!("http://{}/metrics", node.addr)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}
