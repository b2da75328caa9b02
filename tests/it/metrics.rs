//! `GET /metrics` (issue 21, item 1): typed families from the Prometheus exporter, request
//! latency histograms by route pattern and status, per-store request counts.

use std::time::Duration;

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

#[tokio::test]
async fn metrics_count_activations_passivations_page_cache_and_webhooks() {
    let node = TestNode::start_with(&[("VITRINA_ACTORS__IDLE_TIMEOUT_SECS", "1")]);
    node.seed_store("shop", "Shop").await;
    // Two first visits to the same page: the second is served from the anonymous cache.
    for _ in 0..2 {
        let res = node.bare_client("shop").get(node.base("shop")).header(ACCEPT, "text/html").send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    let shopper = node.shopper("shop");
    assert_eq!(shopper.add_to_cart("mug", 1).await.status, 201);
    for _ in 0..2 {
        assert_eq!(shopper.get(node.base("shop")).header(ACCEPT, "text/html").send().await.unwrap().status(), 200);
    }
    let text = node.metrics_text().await;
    assert!(node.metric("vitrina_page_cache_total{kind=\"anonymous\",result=\"miss\"}").await >= 1, "{text}");
    assert!(node.metric("vitrina_page_cache_total{kind=\"anonymous\",result=\"hit\"}").await >= 1, "{text}");
    assert!(text.contains("vitrina_page_cache_total{kind=\"personal\""), "{text}");
    assert_eq!(node.metric("vitrina_actor_activations_total{kind=\"shopper\"}").await, 1, "{text}");
    assert!(node.metric("vitrina_actor_activations_total{kind=\"store\"}").await >= 1, "{text}");
    // The idle shopper passivates and is counted by kind and reason; no session id becomes a label.
    wait_until("the shopper to passivate", Duration::from_secs(15), || async {
        node.metric("vitrina_actor_passivations_total{kind=\"shopper\",reason=\"idle\"}").await >= 1
    })
    .await;
    // An unsigned webhook is rejected and counted.
    let res = node
        .plain()
        .post(format!("http://{}/webhooks/generic", node.addr))
        .header("vitrina-store", "shop")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(node.metric("vitrina_webhooks_total{format=\"generic\",outcome=\"rejected\"}").await, 1);
}

/// The sum of one series over `nodes`.
async fn summed(nodes: &[TestNode], series: &str) -> u64 {
    let mut sum = 0;
    for node in nodes {
        sum += node.metric(series).await;
    }
    sum
}

#[tokio::test]
async fn a_join_counts_handoffs_coordination_events_and_handoff_passivations() {
    let mut nodes = start_cluster(2, &[]).await;
    nodes[0].seed_store("shop", "Shop").await;
    for node in &nodes {
        let text = node.metrics_text().await;
        assert!(node.metric("vitrina_coordination_events_total{event=\"lease_granted\"}").await >= 1, "{text}");
    }
    // Live shoppers on both nodes, then a third node joins: the keys the ring gives it move.
    let mut shoppers = Vec::new();
    for i in 0..24 {
        let shopper = nodes[i % 2].shopper("shop");
        assert_eq!(shopper.add_to_cart("mug", 1).await.status, 201);
        shoppers.push(shopper);
    }
    assert!(summed(&nodes, "vitrina_coordination_events_total{event=\"shard_acquired\"}").await >= 1);
    nodes.push(nodes[0].join("n3"));
    wait_for_active(&nodes.iter().collect::<Vec<_>>(), 3).await;
    wait_until("hand-offs out and in, and shards given up", Duration::from_secs(60), || async {
        summed(&nodes, "vitrina_handoffs_total{direction=\"out\",outcome=\"ok\"}").await >= 1
            && summed(&nodes, "vitrina_handoffs_total{direction=\"in\",outcome=\"ok\"}").await >= 1
            && summed(&nodes, "vitrina_coordination_events_total{event=\"shard_released\"}").await >= 1
    })
    .await;
    let completed = summed(&nodes, "vitrina_handoff_seconds_count{direction=\"out\"}").await
        + summed(&nodes, "vitrina_handoff_seconds_count{direction=\"in\"}").await;
    assert!(completed >= 1, "no hand-off latency observed");
    // The moved shoppers were live: they passivated for the hand-off, not for being idle.
    assert!(summed(&nodes[..2], "vitrina_actor_passivations_total{kind=\"shopper\",reason=\"handoff\"}").await >= 1);
    assert_eq!(summed(&nodes, "vitrina_actor_passivations_total{kind=\"shopper\",reason=\"idle\"}").await, 0);
    // Every cart is still there, wherever it lives now.
    for shopper in &shoppers {
        let (status, body) = shopper.cart_answer().await.parts();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["cart"]["count"], 1, "{body}");
    }
}
