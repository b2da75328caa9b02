//! Containment between stores, black-box: a store whose pages are all looping blocks, hammered,
//! must not cost another store an error; a store's limits are the operator's to cap; catalog
//! writes past a store's limits are refused whole; block failures are attributed to their store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;
use test_support::*;

const LOOP: &str = "function spin() { while (true) {} }";
/// Filling a dictionary-mode array runs inside one builtin that does not look at V8's
/// termination request: the block holds its render thread long past its CPU budget (~27 s).
const FILL: &str = "function render(ctx) { new Array(2 ** 26).fill(0); return '<p>filled</p>'; }";

/// A page (and the search page) of 20 looping blocks, published.
async fn publish_loops(node: &TestNode, token: &str, store: &str) {
    let blocks: Vec<Value> = (0..20).map(|_| json!({"type": "custom", "code": LOOP})).collect();
    for slug in ["loop", "search"] {
        let (s, b) = node
            .admin(token, Method::PUT, &format!("/stores/{store}/pages/{slug}"), Some(json!({"title": "Loops", "blocks": blocks})))
            .await;
        assert_eq!(s, 200, "{b}");
        let (s, b) = node.admin(token, Method::POST, &format!("/stores/{store}/pages/{slug}/publish"), None).await;
        assert_eq!(s, 200, "{b}");
    }
}

/// Shoppers of `store` adding to their carts (durable writes) and reading their pages for
/// `secs`: every answer 2xx, none slower than 5 s, at least 8 cart writes through.
async fn calm_shoppers_get_no_error(node: &Arc<TestNode>, store: &'static str, secs: Duration) {
    let mut shoppers = Vec::new();
    for _ in 0..4 {
        let node = node.clone();
        shoppers.push(tokio::spawn(async move {
            let c = node.shopper(store);
            let mut outcomes = Vec::new();
            let until = Instant::now() + secs;
            let mut quantity = 0;
            while Instant::now() < until {
                quantity = quantity % 5 + 1;
                let started = Instant::now();
                let res =
                    c.patch(format!("{}/cart/items/socks", node.base(store))).json(&json!({"quantity": quantity})).send().await.unwrap();
                let res = if res.status() == StatusCode::BAD_REQUEST || res.status() == StatusCode::NOT_FOUND {
                    c.post(format!("{}/cart/items", node.base(store)))
                        .json(&json!({"productId": "socks", "quantity": quantity}))
                        .send()
                        .await
                        .unwrap()
                } else {
                    res
                };
                outcomes.push(("cart", res.status().as_u16(), started.elapsed()));
                let started = Instant::now();
                let res = c.get(node.base(store)).header("accept", "text/html").send().await.unwrap();
                outcomes.push(("page", res.status().as_u16(), started.elapsed()));
            }
            outcomes
        }));
    }
    let mut calm = Vec::new();
    for s in shoppers {
        calm.extend(s.await.unwrap());
    }
    let carts = calm.iter().filter(|o| o.0 == "cart").count();
    assert!(carts >= 8, "the other store's shoppers got {carts} cart writes through in {secs:?}");
    for (what, status, took) in &calm {
        assert!((200..300).contains(status), "the other store's {what} answered {status}");
        assert!(*took < Duration::from_secs(5), "the other store's {what} took {took:?}");
    }
}

/// Name and nice value of each of the node's threads, from `/proc` (field 19 of `stat`).
fn thread_nice(pid: u32) -> Vec<(String, i64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|stat| {
            // The command name is in parentheses and may contain spaces.
            let (open, close) = (stat.find('(')?, stat.rfind(')')?);
            let nice = stat[close + 2..].split(' ').nth(16)?.parse().ok()?;
            Some((stat[open + 1..close].to_string(), nice))
        })
        .collect()
}

fn thread_nice_values(pid: u32) -> Vec<i64> {
    thread_nice(pid).into_iter().map(|(_, n)| n).collect()
}

#[tokio::test]
async fn a_block_stuck_in_a_builtin_costs_other_stores_no_error() {
    let node = Arc::new(TestNode::start_with(&[
        ("VITRINA_LIMITS__ENABLED", "false"),
        ("VITRINA_RENDER__THREADS", "2"),
        ("VITRINA_RENDER__NICE", "10"),
    ]));
    wait_until("both render threads at niceness 10", Duration::from_secs(10), || async {
        thread_nice_values(node.pid()).iter().filter(|&&n| n == 10).count() >= 2
    })
    .await;
    let nice = thread_nice_values(node.pid());
    assert!(nice.iter().filter(|&&n| n == 0).count() >= 2, "HTTP and actor threads keep niceness 0: {nice:?}");
    // Blocks run in one worker process per render thread: its rendering thread at the render
    // niceness, the CPU-limit watchdog at 0.
    // Ready: V8 started (its watchdog runs) and the rendering thread lowered its priority.
    let ready = |worker: u32| {
        let threads = thread_nice(worker);
        threads.iter().any(|(name, _)| name == "v8-watchdog") && threads.first().is_some_and(|(_, n)| *n == 10)
    };
    wait_until("a render worker per render thread, V8 started", Duration::from_secs(10), || async {
        let workers = test_support::procfs::children(node.pid());
        workers.len() == 2 && workers.iter().all(|w| ready(*w))
    })
    .await;
    for worker in test_support::procfs::children(node.pid()) {
        let threads = thread_nice(worker);
        assert_eq!(threads.first().map(|(_, n)| *n), Some(10), "a worker renders at the render niceness: {threads:?}");
        let watchdog: Vec<_> = threads.iter().filter(|(name, _)| name == "v8-watchdog").collect();
        assert_eq!(watchdog, vec![&("v8-watchdog".to_string(), 0)], "the CPU-limit watchdog keeps niceness 0");
    }

    let hostile = node.seed_store("filler", "Filler").await;
    let (s, b) = node
        .admin(
            &hostile,
            Method::PUT,
            "/stores/filler/pages/fill",
            Some(json!({"title": "Fill", "blocks": [{"type": "custom", "code": FILL}]})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = node.admin(&hostile, Method::POST, "/stores/filler/pages/fill/publish", None).await;
    assert_eq!(s, 200, "{b}");
    node.seed_store("calm", "Calm").await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::new();
    for _ in 0..2 {
        let (node, stop) = (node.clone(), stop.clone());
        attackers.push(tokio::spawn(async move {
            // First visits: no cookie jar.
            let client = reqwest::Client::builder().resolve("filler.localhost", node.addr).build().unwrap();
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let res = client.get(format!("{}/pages/fill", node.base("filler"))).header("accept", "text/html").send().await;
                statuses.push(res.map(|r| r.status().as_u16()).unwrap_or(0));
            }
            statuses
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    calm_shoppers_get_no_error(&node, "calm", Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        for status in a.await.unwrap() {
            assert!([200, 503].contains(&status), "the hostile store answered {status}");
        }
    }
    assert!(node.metric("vitrina_render_worker_kills_total{reason=\"cpu\"}").await >= 1, "the stuck worker was killed");
    test_support::table::record(
        "containment",
        "cpu-fairness",
        "block stuck in a builtin (Array fill): other store's cart writes",
        "bounded",
    );
    test_support::table::record("containment", "cpu-fairness", "block stuck in a builtin (Array fill): other store's pages", "bounded");
}

#[tokio::test]
async fn a_render_thread_stuck_in_a_builtin_yields_until_its_job_ends() {
    // Default priorities (render threads at niceness 0, `render.stuck_nice` 19); a stuck job is
    // one past twice the page maximum, here 1 s.
    // Blocks on the node's own render threads: without worker processes, a stuck job holds
    // its thread until the builtin ends.
    let node = Arc::new(TestNode::start_with(&[
        ("VITRINA_LIMITS__ENABLED", "false"),
        ("VITRINA_RENDER__MAX_PAGE_CPU_MS", "200"),
        ("VITRINA_RENDER__ISOLATION", "thread"),
    ]));
    let token = node.seed_store("filler", "Filler").await;
    let (s, b) = node
        .admin(
            &token,
            Method::PUT,
            "/stores/filler/pages/fill",
            Some(json!({"title": "Fill", "blocks": [{"type": "custom", "code": FILL}]})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = node.admin(&token, Method::POST, "/stores/filler/pages/fill/publish", None).await;
    assert_eq!(s, 200, "{b}");
    let demoted = |pid: u32| thread_nice(pid).into_iter().filter(|(_, n)| *n == 19).count();
    assert_eq!(demoted(node.pid()), 0, "{:?}", thread_nice(node.pid()));

    let visit = {
        let node = node.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder().resolve("filler.localhost", node.addr).build().unwrap();
            client
                .get(format!("{}/pages/fill", node.base("filler")))
                .header("accept", "text/html")
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    wait_until("the stuck render thread at niceness 19", Duration::from_secs(20), || async { demoted(node.pid()) == 1 }).await;
    // Another store renders meanwhile, on the other render thread.
    node.seed_store("calm", "Calm").await;
    let res = node.shopper("calm").get(node.base("calm")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let status = visit.await.unwrap().unwrap_or(0);
    assert!([200, 503].contains(&status), "the hostile page answered {status}");
    wait_until("the render thread's priority given back", Duration::from_secs(120), || async { demoted(node.pid()) == 0 }).await;
    let nice = thread_nice(node.pid());
    assert!(nice.iter().all(|(_, n)| *n == 0), "{nice:?}");
    assert!(node.metric("vitrina_render_thread_demoted_total").await >= 1);
    test_support::table::record(
        "containment",
        "cpu-fairness",
        "block stuck in a builtin (Array fill): its render thread yields while stuck",
        "bounded",
    );
}

/// Publishes `blocks` as the page `slug` of `store`.
async fn publish_page(node: &TestNode, token: &str, store: &str, slug: &str, blocks: Value) {
    let path = format!("/stores/{store}/pages/{slug}");
    let (s, b) = node.admin(token, Method::PUT, &path, Some(json!({"title": slug, "blocks": blocks}))).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = node.admin(token, Method::POST, &format!("{path}/publish"), None).await;
    assert_eq!(s, 200, "{b}");
}

const GOOD: &str = "function render(ctx) { return '<p class=\"good\">still here</p>'; }";

#[tokio::test]
async fn a_block_stuck_in_a_builtin_has_its_worker_killed_near_its_budget() {
    let node = Arc::new(TestNode::start_with(&[("VITRINA_LIMITS__ENABLED", "false"), ("VITRINA_RENDER__THREADS", "1")]));
    let token = node.seed_store("filler", "Filler").await;
    let blocks = json!([{"type": "custom", "code": GOOD}, {"type": "custom", "code": FILL}, {"type": "custom", "code": GOOD}]);
    publish_page(&node, &token, "filler", "fill", blocks).await;
    wait_until("the render worker", Duration::from_secs(10), || async { test_support::procfs::children(node.pid()).len() == 1 }).await;
    let first_worker = test_support::procfs::children(node.pid());

    let started = Instant::now();
    let client = reqwest::Client::builder().resolve("filler.localhost", node.addr).build().unwrap();
    let res = client.get(format!("{}/pages/fill", node.base("filler"))).header("accept", "text/html").send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    // The block before the stuck one kept its HTML; the stuck one is a timeout placeholder; the
    // page budget was not spent, but the block after it is not run in the killed worker.
    assert!(html.contains("<p class=\"good\">still here</p>"), "{html}");
    assert!(html.contains("failed: timeout"), "{html}");
    // The fill runs for many seconds when left alone; the default budget is 50 ms a block.
    assert!(took < Duration::from_secs(5), "the stuck block held the page for {took:?}");
    assert_eq!(node.metric("vitrina_render_worker_kills_total{reason=\"cpu\"}").await, 1);
    wait_until("a new render worker", Duration::from_secs(10), || async {
        let now = test_support::procfs::children(node.pid());
        now.len() == 1 && now != first_worker
    })
    .await;
    // Other stores render in the new worker; the failed page is served as it rendered without
    // running the fill again.
    node.seed_store("calm", "Calm").await;
    let res = node.shopper("calm").get(node.base("calm")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let again = client.get(format!("{}/pages/fill", node.base("filler"))).header("accept", "text/html").send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(node.metric("vitrina_render_worker_kills_total{reason=\"cpu\"}").await, 1);
    test_support::table::record(
        "containment",
        "cpu-fairness",
        "block stuck in a builtin (Array fill): its render worker is killed near the block's budget",
        "contained",
    );
}

#[tokio::test]
async fn a_render_worker_that_dies_costs_only_its_page_in_flight() {
    let node = Arc::new(TestNode::start_with(&[
        ("VITRINA_LIMITS__ENABLED", "false"),
        ("VITRINA_RENDER__THREADS", "1"),
        ("VITRINA_RENDER__FAILED_PAGE_TTL_SECS", "0"),
    ]));
    let token = node.seed_store("spinner", "Spinner").await;
    // 1 s of looping blocks: long enough to kill the worker under it.
    let blocks: Vec<Value> =
        std::iter::once(json!({"type": "custom", "code": GOOD})).chain((0..20).map(|_| json!({"type": "custom", "code": LOOP}))).collect();
    publish_page(&node, &token, "spinner", "spin", Value::Array(blocks)).await;
    wait_until("the render worker", Duration::from_secs(10), || async { test_support::procfs::children(node.pid()).len() == 1 }).await;
    let worker = test_support::procfs::children(node.pid())[0];

    let visit = {
        let node = node.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder().resolve("spinner.localhost", node.addr).build().unwrap();
            let res = client.get(format!("{}/pages/spin", node.base("spinner"))).header("accept", "text/html").send().await.unwrap();
            (res.status(), res.text().await.unwrap())
        })
    };
    // Killed from outside while it runs the loops: as a V8 failure would end it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SAFETY: kill(2) on a pid this test just read as the node's child.
    assert_eq!(unsafe { libc::kill(worker as i32, libc::SIGKILL) }, 0);
    let (status, html) = visit.await.unwrap();
    assert_eq!(status, 200);
    assert!(html.contains("<p class=\"good\">still here</p>"), "{html}");
    assert!(html.contains("failed: engine-crashed"), "{html}");
    // The node goes on, with a new worker.
    node.seed_store("calm", "Calm").await;
    let res = node.shopper("calm").get(node.base("calm")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(!res.text().await.unwrap().contains("class=\"v-block v-block-failed\""));
    let now = test_support::procfs::children(node.pid());
    assert!(now.len() == 1 && now[0] != worker, "{now:?}");
    test_support::table::record("containment", "cpu-fairness", "render worker process killed mid-page", "contained");
}

#[tokio::test]
async fn a_store_of_looping_blocks_hammered_costs_other_stores_no_error() {
    // Edge rate limits off: every client here is one address, and what is measured is render
    // containment, not the per-IP and per-session write limits (tests/it/abuse.rs).
    let node = Arc::new(TestNode::start_with(&[("VITRINA_LIMITS__ENABLED", "false")]));
    let hostile = node.seed_store("hostile", "Hostile").await;
    publish_loops(&node, &hostile, "hostile").await;
    node.seed_store("calm", "Calm").await;

    let stop = Arc::new(AtomicBool::new(false));
    // Hostile traffic: first visits to the loop page (the same inputs: remembered as failed)
    // and searches with a new query each time (new inputs: bounded by the store's gate).
    let mut attackers = Vec::new();
    for a in 0..6 {
        let (node, stop) = (node.clone(), stop.clone());
        attackers.push(tokio::spawn(async move {
            let mut statuses: Vec<(u16, Option<String>, Option<String>)> = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let url = if a % 2 == 0 {
                    format!("{}/pages/loop", node.base("hostile"))
                } else {
                    format!("{}/search?q=x{a}-{i}", node.base("hostile"))
                };
                let res = node.shopper("hostile").get(url).header("accept", "application/json").send().await.unwrap();
                let status = res.status().as_u16();
                let retry_after = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
                let code = if status == 503 {
                    res.json::<Value>().await.ok().and_then(|b| b["error"]["code"].as_str().map(str::to_string))
                } else {
                    None
                };
                statuses.push((status, retry_after, code));
            }
            statuses
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    calm_shoppers_get_no_error(&node, "calm", Duration::from_secs(8)).await;
    stop.store(true, Ordering::Relaxed);
    let mut hostile_statuses = Vec::new();
    for a in attackers {
        hostile_statuses.extend(a.await.unwrap());
    }
    // The hostile store itself: pages with placeholders, or 503 render_capacity with Retry-After.
    assert!(!hostile_statuses.is_empty());
    for (status, retry_after, code) in &hostile_statuses {
        match status {
            200 => {}
            503 => {
                assert_eq!(code.as_deref(), Some("render_capacity"));
                assert!(
                    retry_after.as_deref().and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| (1..=60).contains(&s)),
                    "{retry_after:?}"
                );
            }
            other => panic!("the hostile store answered {other}"),
        }
    }
    // The loop page's failure is remembered: the same inputs again are not rendered again (on a
    // loaded machine the first failed render may only just have ended, so ask once more).
    let again = node.shopper("hostile").get(format!("{}/pages/loop", node.base("hostile"))).header("accept", "application/json");
    again.send().await.unwrap();
    assert!(node.metric("vitrina_failed_page_hits_total").await > 0, "a failed page was rendered again for the same inputs");
    test_support::table::record("containment", "cpu-fairness", "20 looping blocks hammered: other store's cart writes", "bounded");
    test_support::table::record("containment", "cpu-fairness", "20 looping blocks hammered: other store's pages", "bounded");
    test_support::table::record("containment", "cpu-fairness", "looping page, same inputs again: remembered as failed", "bounded");
    test_support::table::record("containment", "cpu-fairness", "looping search page, new inputs each time: per-store gate", "bounded");

    // Attribution: by store in /metrics, and listed for the store's admin.
    let metrics = node.metrics_text().await;
    assert!(metrics.contains("vitrina_block_failures_total{store=\"hostile\",reason=\"timeout\"}"), "{metrics}");
    assert!(!metrics.contains("vitrina_block_failures_total{store=\"calm\""), "{metrics}");
    let (s, body) = node.admin(&hostile, Method::GET, "/stores/hostile/block-failures", None).await;
    assert_eq!(s, 200, "{body}");
    let first = &body["failures"][0];
    assert!(first["blockId"].as_str().is_some_and(|b| !b.is_empty()), "{body}");
    assert!(["loop", "search"].contains(&first["page"].as_str().unwrap_or("")), "{body}");
    assert!(["timeout", "page-budget-exhausted"].contains(&first["reason"].as_str().unwrap_or("")), "{body}");
    assert!(first["at"].as_str().is_some(), "{body}");
    let (s, body) = node.admin(&hostile, Method::GET, "/stores/calm/block-failures", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn block_limits_above_the_operators_maxima_are_refused() {
    let node = TestNode::start_with(&[("VITRINA_RENDER__MAX_BLOCK_CPU_MS", "100")]);
    let token = node.seed_store("greedy", "Greedy").await;
    for limits in [json!({"blockCpuMs": 10000, "pageCpuMs": 1000}), json!({"blockCpuMs": 50, "pageCpuMs": 30000})] {
        let (s, body) = node.admin(&token, Method::PATCH, "/stores/greedy/settings", Some(json!({"limits": limits}))).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_error_body(&body, "limit_above_maximum");
        assert_eq!(body["error"]["details"]["maximum"]["blockCpuMs"], 100, "{body}");
        assert_eq!(body["error"]["details"]["maximum"]["pageCpuMs"], 1000, "{body}");
    }
    let (_, settings) = node.admin(&token, Method::GET, "/stores/greedy/settings", None).await;
    assert_eq!(settings["limits"]["blockCpuMs"], 50, "{settings}");
    let (s, body) =
        node.admin(&token, Method::PATCH, "/stores/greedy/settings", Some(json!({"limits": {"blockCpuMs": 100, "pageCpuMs": 1000}}))).await;
    assert_eq!(s, 200, "{body}");
    test_support::table::record("containment", "cpu-fairness", "merchant raises its own CPU limits past the operator maximum", "refused");
}

fn sign_generic(secret: &str, t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    for p in [t.to_string().as_bytes(), b".", body.as_bytes()] {
        mac.update(p);
    }
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn catalog_writes_past_a_store_limit_are_refused_whole() {
    let node = TestNode::start_with(&[
        ("VITRINA_STORE_LIMITS__MAX_PRODUCTS_PER_STORE", "4"),
        ("VITRINA_STORE_LIMITS__MAX_SNAPSHOT_BYTES", "20000"),
    ]);
    let token = node.seed_store("full", "Full").await; // 3 products
    let products = |n: usize| -> Value {
        json!({"products": (0..n).map(|i| json!({"id": format!("p{i}"), "handle": format!("p{i}"), "title": "P", "price": "1.00", "stock": 1})).collect::<Vec<_>>()})
    };
    let (s, body) = node.admin(&token, Method::POST, "/stores/full/products", Some(products(2))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_error_body(&body, "product_limit");
    assert_eq!(body["error"]["details"]["limit"], 4);
    let (_, listed) = node.admin(&token, Method::GET, "/stores/full/products", None).await;
    assert_eq!(listed["products"].as_array().unwrap().len(), 3, "nothing of the refused batch was applied");
    let (s, body) = node.admin(&token, Method::POST, "/stores/full/products", Some(products(1))).await;
    assert_eq!(s, 200, "{body}");
    test_support::table::record("containment", "store-limits", "admin product batch past max_products_per_store", "refused");

    // Snapshot bytes: one product with a description that would pass the store's budget.
    let big = json!({"title": "Big", "price": "1.00", "stock": 1, "description": "d".repeat(19_000)});
    let (s, body) = node.admin(&token, Method::PUT, "/stores/full/products/p0", Some(big)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_error_body(&body, "snapshot_limit");
    let (_, p0) = node.admin(&token, Method::GET, "/stores/full/products/p0", None).await;
    assert_eq!(p0["title"], "P", "{p0}");
    test_support::table::record("containment", "store-limits", "admin product past max_snapshot_bytes", "refused");

    // A webhook that would add a fifth product: 422, not applied; its id is not recorded, so a
    // delivery retried after room was made applies.
    let secret = "whsec_fair_0123456789abcdef";
    let (s, b) = node.admin(&token, Method::PUT, "/stores/full/webhooks", Some(json!({"secret": secret}))).await;
    assert_eq!(s, 200, "{b}");
    let t = SystemTimeNow::secs();
    let body = json!({"id": "wh-fifth", "store": "full", "type": "product.upsert",
        "data": {"id": "fifth", "handle": "fifth", "title": "Fifth", "price": "2.00", "stock": 1, "updatedAt": "2024-05-01T00:00:00Z"}})
    .to_string();
    let send = || {
        node.plain()
            .post(format!("http://{}/webhooks/generic", node.addr))
            .header("content-type", "application/json")
            .header("vitrina-store", "full")
            .header("vitrina-signature", sign_generic(secret, t, &body))
            .body(body.clone())
            .send()
    };
    let (s, b) = json_of(send().await.unwrap()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_error_body(&b, "product_limit");
    let (s, _) = node.admin(&token, Method::GET, "/stores/full/products/fifth", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = node.admin(&token, Method::DELETE, "/stores/full/products/p0", None).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = json_of(send().await.unwrap()).await;
    assert_eq!(s, 200, "{b}");
    test_support::table::record("containment", "store-limits", "webhook past max_products_per_store", "refused");
}

/// An upstream catalog answering every request with `body` (one page: fewer than the limit).
async fn upstream(body: String) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = sock.read(&mut buf).await;
                let res = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(res.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_sync_page_past_a_store_limit_is_refused_whole_and_says_why() {
    let node = TestNode::start_with(&[
        ("VITRINA_STORE_LIMITS__MAX_PRODUCTS_PER_STORE", "4"),
        ("VITRINA_EGRESS__ALLOW", "127.0.0.0/8"),
        ("VITRINA_FEED__RETRIES", "0"),
    ]);
    let token = node.seed_store("synced", "Synced").await; // 3 products
    let products: Vec<String> = (1..=2)
        .map(|i| {
            json!({"id": 7000 + i, "title": format!("Synced {i}"), "handle": format!("synced-{i}"), "body_html": "", "tags": "", "updated_at": "2024-05-01T10:00:00Z",
                "variants": [{"id": 70 + i, "price": "1.00", "inventory_quantity": 1, "inventory_item_id": 700 + i}], "images": []})
            .to_string()
        })
        .collect();
    let addr = upstream(format!(r#"{{"products":[{}]}}"#, products.join(","))).await;
    let config = json!({"url": format!("http://{addr}/products.json"), "intervalSecs": 3600});
    let (s, b) = node.admin(&token, Method::PUT, "/stores/synced/sync", Some(config)).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = node.admin(&token, Method::POST, "/stores/synced/sync/run", None).await;
    assert_eq!(s, 202, "{b}");
    let status = || async { node.admin(&token, Method::GET, "/stores/synced/sync", None).await.1 };
    wait_until("the sync run to fail", Duration::from_secs(15), || async {
        let st = status().await;
        st["running"] == false && !st["lastError"].is_null()
    })
    .await;
    let st = status().await;
    assert!(st["lastError"].as_str().is_some_and(|e| e.contains("product_limit")), "{st}");
    let (_, listed) = node.admin(&token, Method::GET, "/stores/synced/products", None).await;
    assert_eq!(listed["products"].as_array().unwrap().len(), 3, "nothing of the refused page was applied: {listed}");
    test_support::table::record("containment", "store-limits", "sync page past max_products_per_store", "refused");
}

struct SystemTimeNow;
impl SystemTimeNow {
    fn secs() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
    }
}

/// An upgrade in place replaces the node's executable while it runs. A worker started after
/// that (here: after one was killed) must still be the running node's own code: a new build
/// would speak another protocol, or none.
#[tokio::test]
async fn a_worker_started_after_the_executable_was_replaced_runs_the_nodes_own_code() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("vitrina");
    std::fs::copy(test_support::process::vitrina_bin(), &bin).unwrap();
    let mut cmd = test_support::process::serve_command(&bin, &dir.path().join("data"), "127.0.0.1:0", OPERATOR_TOKEN, SESSION_KEY);
    cmd.args(["--demo"]).env("VITRINA_RENDER__THREADS", "1");
    let mut started = test_support::process::start(cmd, "vitrina listening on ", Duration::from_secs(60)).expect("start");
    let client = reqwest::Client::builder().resolve("demo.localhost", started.addr).build().unwrap();
    let page = |path: &'static str| {
        let (client, addr) = (client.clone(), started.addr);
        async move {
            let url = format!("http://demo.localhost:{}{path}", addr.port());
            let res = client.get(url).header("accept", "text/html").send().await.unwrap();
            (res.status(), res.text().await.unwrap())
        }
    };
    wait_until("the demo store", Duration::from_secs(30), || async { page("/").await.0 == 200 }).await;
    // The upgrade: another file renamed over the executable's path.
    let replacement = dir.path().join("vitrina.new");
    std::fs::write(&replacement, "#!/bin/sh\nexit 3\n").unwrap();
    std::fs::set_permissions(&replacement, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&replacement, &bin).unwrap();
    let workers = test_support::procfs::children(started.child.id());
    assert_eq!(workers.len(), 1, "{workers:?}");
    // SAFETY: kill(2) on the node's child this test just read.
    assert_eq!(unsafe { libc::kill(workers[0] as i32, libc::SIGKILL) }, 0);
    // Dead before the next page (a loaded machine may run it later): a worker that dies while
    // a page is sent to it costs that block, which is another test's concern.
    let stat = format!("/proc/{}/stat", workers[0]);
    wait_until("the killed worker to die", Duration::from_secs(10), || {
        let stat = stat.clone();
        async move { std::fs::read_to_string(&stat).map_or(true, |s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z'))) }
    })
    .await;
    let (status, html) = page("/blog").await;
    assert_eq!(status, 200);
    assert!(!html.contains("class=\"v-block v-block-failed\""), "{html}");
    let now = test_support::procfs::children(started.child.id());
    assert!(now.len() == 1 && now != workers, "{now:?}");
    let _ = started.child.kill();
    let _ = started.child.wait();
}

/// A worker killed from outside between pages (an operator, the OOM killer) may still be
/// dying when the next page is sent to it. That page ran nothing there: it must run whole in
/// a new worker, not lose a block to `engine-crashed`.
#[tokio::test]
async fn a_worker_killed_between_pages_costs_the_next_page_nothing() {
    // Every page rendered: no cached first-visit or personal page stands in for one.
    let node = TestNode::start_with(&[
        ("VITRINA_RENDER__THREADS", "1"),
        ("VITRINA_CACHE__PERSONAL_HTML_TTL_SECS", "0"),
        ("VITRINA_CACHE__ANONYMOUS_PAGE_MAX_BYTES", "0"),
    ]);
    node.seed_store("steady", "Steady").await;
    let page = || async {
        let res = node.shopper("steady").get(node.base("steady")).header("accept", "text/html").send().await.unwrap();
        (res.status(), res.text().await.unwrap())
    };
    assert_eq!(page().await.0, 200);
    for round in 0..10 {
        let workers = test_support::procfs::children(node.pid());
        assert_eq!(workers.len(), 1, "round {round}: {workers:?}");
        // SAFETY: kill(2) on the node's child this test just read.
        assert_eq!(unsafe { libc::kill(workers[0] as i32, libc::SIGKILL) }, 0);
        let (status, html) = page().await;
        assert_eq!(status, 200, "round {round}");
        let failed = html.find("class=\"v-block v-block-failed\"").map(|at| &html[at..html.len().min(at + 400)]);
        assert_eq!(failed, None, "round {round}: a block failed");
        let now = test_support::procfs::children(node.pid());
        assert!(now.len() == 1 && now != workers, "round {round}: the page ran in a new worker: {now:?}");
    }
    test_support::table::record("containment", "cpu-fairness", "render worker killed between pages", "contained");
}
