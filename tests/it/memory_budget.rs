//! The node's V8 isolates stay within their byte budget (`actors.isolate_memory_mb`) while many
//! more shoppers render than fit in it: by what the node counts (live, spare and ready isolates)
//! and by what the operating system sees (the process's resident memory).

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use test_support::*;

const BUDGET_MIB: u64 = 48;
const SHOPPERS: usize = 240;
const PARALLEL: usize = 8;

/// The node's resident memory with its render workers', in KiB.
fn vm_rss_kib(pid: u32) -> u64 {
    test_support::procfs::rss_kib(pid).expect("node status")
}

/// One shopper: a cart line (so the page is personal) and two renders of the home page.
async fn shop(node: &TestNode, store: &str, i: usize) {
    let shopper = node.shopper(store);
    let added = shopper.add_to_cart("mug", 1).await;
    assert_eq!(added.status, StatusCode::CREATED, "shopper {i}");
    for round in 0..2 {
        let page = shopper.page("/").await;
        assert_eq!(page.status, StatusCode::OK, "shopper {i}, render {round}");
        assert!(page.text().contains("id=\"v-cart-count\">1<"), "shopper {i}, render {round}: not its own page");
    }
}

/// 240 shoppers render (each would keep ~2 MiB of isolate, ~450 MiB in all) on a node whose
/// isolates may hold 48 MiB. The node must count no more than its budget, and its RSS may grow
/// by the budget plus what each actor keeps outside its isolate (its cart, its open SQLite
/// connection, its cached page: ~160 KiB in a debug build, allowed 256) plus a fixed margin for
/// allocator slack. Bounds are generous on purpose: this catches a budget that is not
/// enforced, not a regression of a few percent.
#[tokio::test]
async fn many_shoppers_rendering_stay_within_the_isolate_memory_budget() {
    let node = Arc::new(TestNode::start_with(&[
        ("VITRINA_ACTORS__ISOLATE_MEMORY_MB", "48"),
        ("VITRINA_ACTORS__ISOLATE_IDLE_SECS", "600"),
        ("VITRINA_ACTORS__IDLE_TIMEOUT_SECS", "600"),
        // One client address opens all these sessions.
        ("VITRINA_LIMITS__ENABLED", "false"),
    ]));
    let store = "budgeted";
    node.seed_store(store, "Budgeted").await;
    let health = node.health().await;
    assert_eq!(health["isolateByteBudget"], BUDGET_MIB << 20, "{health}");

    // Baseline: V8 initialised, the snapshot built, the render threads' pools filled.
    shop(&node, store, 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = vm_rss_kib(node.pid());

    let mut tasks = Vec::new();
    for lane in 0..PARALLEL {
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            for i in (1 + lane..=SHOPPERS).step_by(PARALLEL) {
                shop(&node, store, i).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("shoppers");
    }
    assert_eq!(node.live_shoppers().await, SHOPPERS as u64 + 1, "evicting isolates passivates nobody");
    assert!(node.metric("vitrina_isolates_evicted_total").await >= 100, "240 shoppers cannot all fit 48 MiB");

    let health = node.health().await;
    let counted = health["isolateBytes"].as_u64().expect("isolateBytes");
    let pooled = health["pooledIsolateBytes"].as_u64().expect("pooledIsolateBytes");
    // Evictions are messages: allow the isolates of the renders in flight at the end.
    assert!(counted <= (BUDGET_MIB + 8) << 20, "the node counts more than its budget: {health}");
    assert!(pooled <= (BUDGET_MIB << 20) / 4, "spare and ready isolates hold more than their share: {health}");
    assert!(counted >= 8 << 20, "the live isolates should be counted: {health}");

    // Evicted isolates are deleted on their render thread shortly after their message.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let grown_kib = vm_rss_kib(node.pid()).saturating_sub(baseline);
    let allowed_kib = (BUDGET_MIB << 10) + SHOPPERS as u64 * 256 + (32 << 10);
    eprintln!(
        "RSS +{} MiB (allowed {} MiB), counted {} MiB, pooled {} MiB",
        grown_kib >> 10,
        allowed_kib >> 10,
        counted >> 20,
        pooled >> 20
    );
    assert!(
        grown_kib <= allowed_kib,
        "RSS grew by {} MiB for {SHOPPERS} shoppers under a {BUDGET_MIB} MiB isolate budget (allowed {} MiB)",
        grown_kib >> 10,
        allowed_kib >> 10
    );
}

/// Once every shopper of a burst has passivated, the node and its render workers give back what
/// their isolates held: the workers trim their allocator when idle and are recycled once they
/// host no isolate, so the process tree comes back near where it started (without either, a
/// release build went from 87 MiB to 263 MiB). A new shopper then renders as before, in
/// whichever worker its thread has.
#[tokio::test]
async fn a_burst_of_shoppers_that_passivated_leaves_no_memory_behind() {
    const BURST: usize = 120;
    let node = Arc::new(TestNode::start_with(&[
        ("VITRINA_ACTORS__ISOLATE_IDLE_SECS", "1"),
        ("VITRINA_ACTORS__IDLE_TIMEOUT_SECS", "3"),
        ("VITRINA_LIMITS__ENABLED", "false"),
    ]));
    let store = "bursty";
    node.seed_store(store, "Bursty").await;
    shop(&node, store, 0).await;
    // Past the probe's passivation and its worker's idle recycling (10 s without an isolate).
    wait_for_no_shoppers(&node).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let baseline = vm_rss_kib(node.pid());

    let mut tasks = Vec::new();
    for lane in 0..PARALLEL {
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            for i in (1 + lane..=BURST).step_by(PARALLEL) {
                shop(&node, store, i).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("shoppers");
    }
    let peak = vm_rss_kib(node.pid());
    wait_for_no_shoppers(&node).await;
    let allowed = baseline + (16 << 10);
    let mut rss = vm_rss_kib(node.pid());
    for _ in 0..40 {
        if rss <= allowed {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss = vm_rss_kib(node.pid());
    }
    eprintln!("RSS {} MiB at the start, {} MiB after the burst, {} MiB once it passivated", baseline >> 10, peak >> 10, rss >> 10);
    assert!(rss <= allowed, "RSS {} MiB once {BURST} shoppers passivated, {} MiB before them", rss >> 10, baseline >> 10);
    shop(&node, store, BURST + 1).await;
}

async fn wait_for_no_shoppers(node: &TestNode) {
    for _ in 0..600 {
        if node.live_shoppers().await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("shoppers did not passivate");
}
