//! Each store's daily visitors, orders and revenue, black-box: shoppers browse and order over
//! HTTP, and the admin API's `…/stats` (what the console's overview shows) counts each session
//! once a day, every order with its amount, only for its own store, kept across a restart and
//! gathered from every node of a cluster.

use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, USER_AGENT};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use test_support::*;

const FAST: &[(&str, &str)] = &[("VITRINA_STATS__FLUSH_MS", "200")];

async fn stats(node: &TestNode, token: &str, store: &str) -> Value {
    let (s, body) = node.admin(token, Method::GET, &format!("/stores/{store}/stats"), None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body
}

/// Polls `…/stats` until `done` holds for today's counts (generously bounded: counts arrive in
/// batches every 200 ms here).
async fn stats_until(node: &TestNode, token: &str, store: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let body = stats(node, token, store).await;
        if done(&body["today"]) {
            return body;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "the counts never arrived: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn view(c: &Shopper, path: &str) {
    let res = c.get(c.url(path)).header(ACCEPT, "text/html").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{path}");
}

#[tokio::test]
async fn visitors_orders_and_revenue_are_counted_per_store_and_day() {
    let node = TestNode::start_with(FAST);
    let token = node.seed_store("daily", "Daily").await;
    let other = node.seed_store("quietday", "Quiet").await;
    let empty = stats(&node, &token, "daily").await;
    assert_eq!((empty["today"]["visitors"].as_u64(), empty["today"]["orders"].as_u64()), (Some(0), Some(0)), "{empty}");

    // Three sessions: one browses three pages, one views one, one orders two mugs.
    let a = node.shopper("daily");
    for path in ["/", "/products/mug", "/"] {
        view(&a, path).await;
    }
    let b = node.shopper("daily");
    view(&b, "/").await;
    let head = b.head(b.url("/")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    let c = node.shopper("daily");
    c.add_to_cart("mug", 2).await;
    view(&c, "/cart").await;
    let res = c.post(c.url("/checkout")).header("idempotency-key", "daily-1").json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    // The same order again (a retried request) is not a second order.
    let res = c.post(c.url("/checkout")).header("idempotency-key", "daily-1").json(&json!({})).send().await.unwrap();
    assert!(res.status().is_success());

    // A client that never keeps its cookie (a bot, a script): a new session each view, one
    // visitor a day.
    for _ in 0..5 {
        let res = node
            .bare_client("daily")
            .get(format!("{}/", node.base("daily")))
            .header(ACCEPT, "text/html")
            .header(USER_AGENT, "curl/8")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }

    let body = stats_until(&node, &token, "daily", |t| t["visitors"] == 4 && t["orders"] == 1).await;
    let today = &body["today"];
    assert_eq!(today["revenueMinor"], 2500, "{body}");
    assert_eq!(today["revenue"], "25.00", "{body}");
    assert_eq!(body["currency"], "USD");
    let date = today["date"].as_str().unwrap_or("");
    assert!(date.len() == 10 && date.starts_with("20"), "a UTC date: {date}");
    assert_eq!(body["days"][0]["date"], date, "today is the first of the days listed: {body}");
    // Nothing more arrives: every session counted once.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let again = stats(&node, &token, "daily").await;
    assert_eq!(again["today"]["visitors"], 4, "{again}");
    assert_eq!(stats(&node, &other, "quietday").await["today"]["visitors"], 0, "another store counts nothing");

    // The counts are the store's, in its file: a restart keeps them.
    let node = node.kill_and_restart();
    let kept = stats(&node, &token, "daily").await;
    assert_eq!((kept["today"]["visitors"].as_u64(), kept["today"]["orders"].as_u64()), (Some(4), Some(1)), "{kept}");
}

#[tokio::test]
async fn counts_not_yet_handed_over_reach_the_store_when_the_node_shuts_down() {
    // Batches every 10 minutes: only the shutdown's hand-over can carry these.
    let node = TestNode::start_with(&[("VITRINA_STATS__FLUSH_MS", "600000")]);
    let token = node.seed_store("lastday", "Last day").await;
    for _ in 0..2 {
        view(&node.shopper("lastday"), "/").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stats(&node, &token, "lastday").await["today"]["visitors"], 0, "not handed over yet");
    let node = node.terminate_and_restart(Duration::from_secs(20));
    let kept = stats(&node, &token, "lastday").await;
    assert_eq!(kept["today"]["visitors"], 2, "{kept}");
}

#[tokio::test]
async fn visitors_served_by_any_node_of_a_cluster_reach_the_stores_counts() {
    let nodes = start_cluster(2, FAST).await;
    let token = nodes[0].seed_store("dailyc", "Daily cluster").await;
    // A first view is served by the store's owner (no session yet), the next by the node that
    // owns the new session's actor: one visitor each, whichever nodes noted it.
    let mut served = [0usize; 2];
    for i in 0..10 {
        let c = nodes[i % 2].shopper("dailyc");
        for path in ["/", "/products/mug"] {
            let res = c.get(c.url(path)).header(ACCEPT, "text/html").send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let by = res.headers().get("x-vitrina-node").and_then(|v| v.to_str().ok()).unwrap_or("n1").to_string();
            served[by.trim_start_matches('n').parse::<usize>().unwrap_or(1) - 1] += 1;
        }
    }
    assert!(served.iter().all(|n| *n > 0), "both nodes served views: {served:?}");
    for node in &nodes {
        let body = stats_until(node, &token, "dailyc", |t| t["visitors"] == 10).await;
        assert_eq!(body["today"]["orders"], 0);
    }
}
