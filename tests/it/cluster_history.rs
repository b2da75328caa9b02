//! Issue 19 (b) and (d), issue 21 (4): histories of cart adds under faults. Clients add to carts through the
//! nodes that are up while the etcd leader is killed, or, round after round, a node is paused
//! past its lease, killed and restarted, paused briefly. At the end every add a client saw
//! acknowledged must be in its cart exactly once (`test_support::history`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use reqwest::Client;
use serde_json::json;
use test_support::history::{cart_lines, History, Outcome};
use test_support::*;

const SHOPPERS: usize = 24;
const WORKERS: usize = 6;
const PRODUCTS: usize = 400;

/// Where clients may send requests now: (client, base URL) per node that is up.
type Entries = Arc<RwLock<Vec<(Client, String)>>>;

fn entries_of(nodes: &[TestNode], except: Option<usize>) -> Vec<(Client, String)> {
    nodes.iter().enumerate().filter(|(i, _)| Some(*i) != except).map(|(_, n)| (n.bare_client("shop"), n.base("shop"))).collect()
}

async fn seed(node: &TestNode) {
    let token = node.create_store("shop", "History Shop").await;
    let products: Vec<_> = (0..PRODUCTS)
        .map(|i| json!({"id": format!("p{i:03}"), "title": format!("Item {i}"), "price": "1.00", "stock": 1_000_000}))
        .collect();
    let (s, b) = node.admin(&token, reqwest::Method::POST, "/stores/shop/products", Some(json!({ "products": products }))).await;
    assert!(s.is_success(), "{b}");
}

/// Each worker owns `SHOPPERS / WORKERS` shoppers and adds a new product to one of them per
/// request, through the entry nodes in turn, recording what it learnt.
fn start_load(entries: Entries, history: Arc<History>, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..WORKERS)
        .map(|w| {
            let (entries, history, stop) = (entries.clone(), history.clone(), stop.clone());
            tokio::spawn(async move {
                let shoppers: Vec<String> = (w..SHOPPERS).step_by(WORKERS).map(|i| format!("history-{i}")).collect();
                let mut next = vec![0usize; shoppers.len()];
                let mut round = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let s = round % shoppers.len();
                    if next[s] >= PRODUCTS {
                        break;
                    }
                    let product = format!("p{:03}", next[s]);
                    next[s] += 1;
                    let (client, base) = {
                        let e = entries.read();
                        e[(round + w) % e.len()].clone()
                    };
                    let sent = client
                        .post(format!("{base}/cart/items"))
                        .header("cookie", session_cookie(&shoppers[s]))
                        .json(&json!({"productId": product, "quantity": 1}))
                        .timeout(Duration::from_secs(3))
                        .send()
                        .await;
                    let outcome = Outcome::of(sent.as_ref().ok().map(|r| r.status()));
                    history.record(&shoppers[s], &product, outcome);
                    if outcome != Outcome::Acked {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    round += 1;
                }
            })
        })
        .collect()
}

/// Every shopper's cart, read through any node, retried while its actor is moving.
async fn final_carts(nodes: &[TestNode], shoppers: &[String]) -> BTreeMap<String, BTreeMap<String, i64>> {
    let mut carts = BTreeMap::new();
    for (i, sid) in shoppers.iter().enumerate() {
        let node = &nodes[i % nodes.len()];
        let client = node.bare_client("shop");
        let mut cart = None;
        for _ in 0..300 {
            let res = client.get(format!("{}/cart", node.base("shop"))).header("cookie", session_cookie(sid)).send().await;
            if let Ok(res) = res {
                if res.status().is_success() {
                    cart = Some(res.json::<serde_json::Value>().await.expect("cart json"));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let cart = cart.unwrap_or_else(|| panic!("{sid}'s cart unreadable for 60 s"));
        carts.insert(sid.clone(), cart_lines(&cart["cart"]));
    }
    carts
}

/// The store's products survived the faults: a new shopper adds the last one through every
/// node (a store actor restarted empty would answer 404 `product_not_found`).
async fn store_intact(nodes: &[TestNode]) {
    let last = format!("p{:03}", PRODUCTS - 1);
    for (i, node) in nodes.iter().enumerate() {
        let client = node.bare_client("shop");
        let mut status = None;
        for _ in 0..150 {
            let res = client
                .post(format!("{}/cart/items", node.base("shop")))
                .header("cookie", session_cookie(&format!("store-check-{i}")))
                .json(&json!({"productId": last, "quantity": 1}))
                .send()
                .await;
            status = res.ok().map(|r| r.status());
            if status.is_some_and(|s| s != reqwest::StatusCode::SERVICE_UNAVAILABLE) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(status, Some(reqwest::StatusCode::CREATED), "the store lost its products (added through node {i})");
    }
}

/// Runs `faults` under load on `nodes` and checks the history at the end; returns it.
async fn under_load<F, Fut>(nodes: Vec<TestNode>, faults: F) -> (Vec<TestNode>, test_support::history::Summary)
where
    F: FnOnce(Vec<TestNode>, Entries) -> Fut,
    Fut: std::future::Future<Output = Vec<TestNode>>,
{
    seed(&nodes[0]).await;
    let entries: Entries = Arc::new(RwLock::new(entries_of(&nodes, None)));
    let history = Arc::new(History::new());
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(entries.clone(), history.clone(), stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let nodes = faults(nodes, entries.clone()).await;
    *entries.write() = entries_of(&nodes, None);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }
    let carts = final_carts(&nodes, &history.shoppers()).await;
    store_intact(&nodes).await;
    match history.check(&carts) {
        Ok(summary) => {
            println!("history: {summary:?}");
            assert!(summary.acked >= 200, "too few acknowledged adds to mean anything: {summary:?}");
            (nodes, summary)
        }
        Err(violations) => panic!("{} violations:\n{}", violations.len(), violations.join("\n")),
    }
}

#[tokio::test]
async fn acknowledged_adds_survive_the_loss_of_the_etcd_leader() {
    let Some(etcd) = test_support::etcd::EtcdCluster::start(3).await else { return };
    let etcd = Arc::new(tokio::sync::Mutex::new(etcd));
    let endpoints = etcd.lock().await.endpoints_csv();
    let nodes = start_cluster_on(&endpoints, 3, &[]).await;
    let faulted = etcd.clone();
    under_load(nodes, |nodes, _entries| async move {
        let mut etcd = faulted.lock().await;
        let leader = etcd.leader().await.expect("an etcd leader");
        etcd.kill(leader);
        tokio::time::sleep(Duration::from_secs(4)).await;
        etcd.restart(leader).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        nodes
    })
    .await;
}

/// Issue 21 (4): every node restarted in turn with SIGTERM (hand-off, leave, exit 0) under load.
/// Each restart moves a third of the shards away and back within seconds: files pushed to
/// nodes that did not hold their shard yet, returning nodes answering before they joined, an
/// activation and a push of the same key at once (each once lost adds, emptied the store or
/// hung a key).
#[tokio::test]
async fn a_rolling_restart_loses_no_acknowledged_add() {
    let nodes = start_cluster(3, &[("VITRINA_HTTP__SHUTDOWN_DEADLINE_SECS", "20")]).await;
    let (_, summary) = under_load(nodes, |mut nodes, entries| async move {
        for i in 0..nodes.len() {
            *entries.write() = entries_of(&nodes, Some(i));
            let node = nodes.remove(i);
            let restarted = tokio::task::spawn_blocking(move || node.terminate_and_restart(Duration::from_secs(30))).await.unwrap();
            nodes.insert(i, restarted);
            wait_for_active(&nodes.iter().collect::<Vec<_>>(), 3).await;
            *entries.write() = entries_of(&nodes, None);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        nodes
    })
    .await;
    let failed = summary.unknown + summary.refused;
    println!("rolling restart: {failed} of {} adds not acknowledged", summary.acked + failed);
}
/// Issue 19 (d): node faults, round after round.
#[tokio::test]
async fn every_acknowledged_add_survives_pauses_kills_and_restarts_exactly_once() {
    let nodes = start_cluster(3, &[]).await;
    under_load(nodes, |mut nodes, entries| async move {
        // A node paused well past its lease, then resumed.
        *entries.write() = entries_of(&nodes, Some(1));
        nodes[1].pause();
        tokio::time::sleep(Duration::from_secs(8)).await;
        nodes[1].resume();
        tokio::time::sleep(Duration::from_secs(3)).await;
        *entries.write() = entries_of(&nodes, None);
        tokio::time::sleep(Duration::from_secs(2)).await;

        // A node killed (no shutdown hooks) and restarted on its data directory.
        *entries.write() = entries_of(&nodes, Some(2));
        let killed = nodes.remove(2);
        tokio::time::sleep(Duration::from_millis(500)).await;
        nodes.insert(2, killed.kill_and_restart());
        tokio::time::sleep(Duration::from_secs(3)).await;
        *entries.write() = entries_of(&nodes, None);
        tokio::time::sleep(Duration::from_secs(2)).await;

        // A node paused briefly (within its lease), then resumed.
        *entries.write() = entries_of(&nodes, Some(0));
        nodes[0].pause();
        tokio::time::sleep(Duration::from_secs(2)).await;
        nodes[0].resume();
        nodes
    })
    .await;
}
