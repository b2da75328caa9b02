//! State survives restarts and passivation; alarms fire, also after a restart.

use std::time::Duration;

use serde_json::Value;
use test_support::*;

async fn cart_count(c: &Shopper) -> Value {
    c.cart().await["count"].clone()
}

#[tokio::test]
async fn acknowledged_cart_writes_survive_a_kill_9() {
    let node = TestNode::start();
    node.seed_store("durable", "Durable").await;
    let c = node.shopper("durable");
    for (product, quantity) in [("mug", 2), ("tent", 1), ("socks", 7)] {
        let res = c.add_to_cart(product, quantity).await;
        assert_eq!(res.status, 201);
    }
    let node = node.kill_and_restart();
    let (status, body) = c.cart_answer().await.parts();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cart"]["count"], 10, "{body}");
    assert_eq!(body["cart"]["subtotalMinor"], 2 * 1250 + 19900 + 7 * 1800);
    // The store's own state came back too.
    let page = c.get(node.base("durable")).header("accept", "text/html").send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Welcome to Durable"));
}

#[tokio::test]
async fn an_idle_actor_is_passivated_and_comes_back_with_its_state() {
    let node = TestNode::start_with(&[("VITRINA_ACTORS__IDLE_TIMEOUT_SECS", "1")]);
    node.seed_store("sleepy", "Sleepy").await;
    let c = node.shopper("sleepy");
    c.add_to_cart("mug", 3).await;
    assert_eq!(node.live_shoppers().await, 1);
    wait_until("the shopper to passivate", Duration::from_secs(10), || async { node.live_shoppers().await == 0 }).await;
    assert_eq!(cart_count(&c).await, 3);
    assert_eq!(node.live_shoppers().await, 1, "the next message reactivated it");
}

/// A passivating shopper keeps the page it rendered last in its own file, and its next visit
/// is served that page without a render.
#[tokio::test]
async fn a_passivated_shopper_keeps_its_page_in_its_file_and_is_served_it_when_it_wakes() {
    let node = TestNode::start_with(&[("VITRINA_ACTORS__IDLE_TIMEOUT_SECS", "1")]);
    node.seed_store("asleep", "Asleep").await;
    let c = node.shopper("asleep");
    c.add_to_cart("mug", 2).await;
    let page = c.page("/").await;
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    assert!(html.contains("Enamel Mug"), "the cart shows on the page: {html}");

    wait_until("the shopper to passivate and close its file", Duration::from_secs(10), || async {
        node.live_shoppers().await == 0 && !node.open_data_files().iter().any(|f| f.contains("/shoppers/"))
    })
    .await;
    let dir = node.data_dir.join("stores/asleep/shoppers");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .flat_map(|fanout| std::fs::read_dir(fanout.path()).unwrap().flatten())
        .map(|f| f.path())
        .find(|p| p.extension().is_some_and(|e| e == "db"))
        .expect("the shopper's file");
    let conn = rusqlite::Connection::open_with_flags(&file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let saved: Vec<(String, String)> = conn
        .prepare("SELECT cache_key, html FROM html_cache")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    drop(conn);
    assert_eq!(saved.len(), 1, "{:?}", saved.iter().map(|(k, _)| k).collect::<Vec<_>>());
    assert_eq!(saved[0].1, html, "the saved page is the page served");

    let hits = "vitrina_page_cache_total{kind=\"personal\",result=\"hit\"}";
    let before = node.metric(hits).await;
    let again = c.page("/").await;
    assert_eq!(again.status, 200);
    assert_eq!(again.text(), html, "the woken shopper is served its saved page");
    assert_eq!(node.metric(hits).await, before + 1, "served from the saved page, not rendered");
    assert_eq!(node.live_shoppers().await, 1);
}

#[tokio::test]
async fn idle_carts_expire_by_alarm_even_across_a_restart() {
    let env = [
        ("VITRINA_SHOPPER__CART_IDLE_TTL_SECS", "4"),
        ("VITRINA_ACTORS__ALARM_POLL_MS", "100"),
        ("VITRINA_ACTORS__IDLE_TIMEOUT_SECS", "1"),
    ];
    let node = TestNode::start_with(&env);
    node.seed_store("expiry", "Expiry").await;
    let (a, b) = (node.shopper("expiry"), node.shopper("expiry"));
    a.add_to_cart("mug", 1).await;

    // Shopper a: expires while the node runs (and after it passivated: the alarm wakes it).
    wait_until("cart a to expire", Duration::from_secs(15), || async { cart_count(&a).await == 0 }).await;

    // Shopper b: kill the node now, restart later; the persisted alarm still fires.
    b.add_to_cart("socks", 2).await;
    let _node = node.kill_and_restart();
    assert_eq!(cart_count(&b).await, 2, "not expired yet");
    wait_until("cart b to expire after restart", Duration::from_secs(15), || async { cart_count(&b).await == 0 }).await;
}

/// A cart change does not rewrite an expiry alarm that is already due earlier: the alarm that
/// fires before the cart has been idle long enough re-arms itself instead of emptying it.
#[tokio::test]
async fn a_cart_changed_after_its_alarm_was_set_expires_only_once_idle_long_enough() {
    let env = [
        ("VITRINA_SHOPPER__CART_IDLE_TTL_SECS", "4"),
        ("VITRINA_ACTORS__ALARM_POLL_MS", "100"),
        ("VITRINA_ACTORS__IDLE_TIMEOUT_SECS", "600"),
    ];
    let node = TestNode::start_with(&env);
    node.seed_store("rearm", "Rearm").await;
    let c = node.shopper("rearm");
    let first = std::time::Instant::now();
    c.add_to_cart("mug", 1).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    c.add_to_cart("mug", 1).await;
    let second = std::time::Instant::now();
    // Past the first change's expiry (its alarm has fired), well before the second's.
    tokio::time::sleep((first + Duration::from_millis(5000)).saturating_duration_since(std::time::Instant::now())).await;
    let count = cart_count(&c).await;
    if second.elapsed() < Duration::from_millis(3500) {
        assert_eq!(count, 2, "the cart was emptied less than its idle time after its last change");
    }
    wait_until("the cart to expire", Duration::from_secs(15), || async { cart_count(&c).await == 0 }).await;
    assert!(second.elapsed() >= Duration::from_secs(4), "expired {:?} after the last change", second.elapsed());
}

#[tokio::test]
async fn an_idle_actor_drops_its_isolate_but_keeps_its_state() {
    let node = TestNode::start_with(&[("VITRINA_ACTORS__ISOLATE_IDLE_SECS", "1"), ("VITRINA_ACTORS__IDLE_TIMEOUT_SECS", "600")]);
    node.seed_store("lean", "Lean").await;
    let c = node.shopper("lean");
    let base = node.base("lean");
    c.add_to_cart("mug", 2).await;
    let page = c.get(&base).header("accept", "text/html").send().await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"v-cart-count\">2<"));
    assert!(node.live_isolates().await >= 1);
    wait_until("isolates to be dropped", Duration::from_secs(10), || async { node.live_isolates().await == 0 }).await;
    assert_eq!(node.live_shoppers().await, 1, "the actor itself stays live");
    // A render after the drop builds a new isolate; the personal cache must not hide it, so
    // change the cart first.
    c.add_to_cart("mug", 1).await;
    let page = c.get(&base).header("accept", "text/html").send().await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"v-cart-count\">3<") && page.contains("Welcome to Lean"));
}

#[tokio::test]
async fn a_node_keeps_no_more_isolates_than_its_budget_and_evicted_actors_keep_their_state() {
    let node = TestNode::start_with(&[
        ("VITRINA_ACTORS__MAX_LIVE_ISOLATES", "3"),
        ("VITRINA_ACTORS__ISOLATE_IDLE_SECS", "600"),
        ("VITRINA_ACTORS__IDLE_TIMEOUT_SECS", "600"),
    ]);
    node.seed_store("tight", "Tight").await;
    let base = node.base("tight");
    assert_eq!(node.health().await["isolateBudget"], 3);
    let shoppers: Vec<Shopper> = (0..7).map(|_| node.shopper("tight")).collect();
    for (i, c) in shoppers.iter().enumerate() {
        let added = c.add_to_cart("mug", 1).await;
        assert!(added.status.is_success(), "shopper {i}: {}", added.status);
        let page = c.get(&base).header("accept", "text/html").send().await.unwrap().text().await.unwrap();
        assert!(page.contains("id=\"v-cart-count\">1<"), "shopper {i}: {page}");
    }
    wait_until("evicted isolates to be dropped", Duration::from_secs(10), || async { node.live_isolates().await <= 3 }).await;
    assert!(node.metric("vitrina_isolates_evicted_total").await >= 4, "seven personal renders under a budget of three");
    assert_eq!(node.live_shoppers().await, 7, "evicting an isolate passivates nothing");
    // The first shopper's isolate was evicted long ago: its state is intact and it renders again.
    let first = &shoppers[0];
    first.add_to_cart("mug", 1).await;
    let page = first.get(&base).header("accept", "text/html").send().await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"v-cart-count\">2<") && page.contains("Welcome to Tight"), "{page}");
    assert!(node.live_isolates().await <= 4, "at most one isolate beyond the budget, briefly");
}

#[tokio::test]
async fn new_shoppers_render_in_isolates_prepared_ahead_and_see_only_their_own_state() {
    let node = TestNode::start_with(&[("VITRINA_ACTORS__ISOLATE_IDLE_SECS", "600"), ("VITRINA_ACTORS__IDLE_TIMEOUT_SECS", "600")]);
    node.seed_store("ahead", "Ahead").await;
    let base = node.base("ahead");
    // More shoppers than actor threads, one at a time: some land on a thread that has already
    // rendered and has had time to prepare the next isolate.
    for i in 0..6 {
        let quantity = 1 + i % 4;
        let shopper = node.shopper("ahead");
        let added = shopper.add_to_cart("mug", quantity).await;
        assert!(added.status.is_success(), "shopper {quantity}: {}", added.status);
        let page = shopper.get(&base).header("accept", "text/html").send().await.unwrap().text().await.unwrap();
        assert!(page.contains(&format!("id=\"v-cart-count\">{quantity}<")), "shopper {quantity}: {page}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(node.metric("vitrina_isolates_prewarmed_total").await >= 1, "no render took a prepared isolate");
}

#[tokio::test]
async fn product_views_show_on_the_next_pages_in_order_and_survive_a_kill() {
    let node = TestNode::start();
    node.seed_store("views", "Views").await;
    let base = node.base("views");
    let shopper = node.shopper("views");
    let product_page = |handle: &'static str| {
        let (shopper, base) = (&shopper, &base);
        async move {
            let page = shopper.get(format!("{base}/products/{handle}")).header("accept", "text/html").send().await.unwrap();
            assert_eq!(page.status(), 200, "{handle}");
            page.text().await.unwrap()
        }
    };
    // The store's page hands out the session cookie; the first view then creates the shopper's
    // file while its page renders.
    let home = shopper.get(&base).header("accept", "text/html").send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert_eq!(node.shopper_files("views"), 0, "a visit creates nothing");
    let first = product_page("tent").await;
    assert!(first.contains("Two-person Tent") && !first.contains("Recently viewed"), "{first}");
    assert_eq!(node.shopper_files("views"), 1, "a product view is a write: the shopper has a file");
    let second = product_page("mug").await;
    let recently = &second[second.find("Recently viewed").expect("the tent, viewed before")..];
    assert!(recently.contains("Two-person Tent") && !recently.contains("Enamel Mug"), "{second}");
    let third = product_page("wool-socks").await;
    let recently = &third[third.find("Recently viewed").expect("mug and tent")..];
    let (mug, tent) = (recently.find("Enamel Mug").expect("mug"), recently.find("Two-person Tent").expect("tent"));
    assert!(mug < tent, "most recent first: {recently}");

    // Views commit without waiting for the disk, but a killed process loses nothing the OS has.
    let node = node.kill_and_restart();
    let again = product_page("tent").await;
    let recently = &again[again.find("Recently viewed").expect("socks and mug, from the file")..];
    let (socks, mug) = (recently.find("Wool Socks").expect("socks"), recently.find("Enamel Mug").expect("mug"));
    assert!(socks < mug && !recently.contains("Two-person Tent"), "{recently}");
    drop(node);
}

#[tokio::test]
async fn the_product_a_visitor_lands_on_before_it_has_a_session_becomes_its_first_view_when_it_comes_back() {
    let node = TestNode::start();
    node.seed_store("landing", "Landing").await;
    let base = node.base("landing");
    let shopper = node.shopper("landing");
    let set_cookies = |res: &reqwest::Response| -> Vec<String> {
        res.headers().get_all(reqwest::header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_string()).collect()
    };
    let recently_viewed = |page: &str| -> String { page.find("Recently viewed").map(|at| page[at..].to_string()).unwrap_or_default() };
    // Arriving on a product page without a session: the store's page, a session, and the
    // landing product in a cookie; no shopper file for a visitor who may never come back.
    let landed = shopper.get(format!("{base}/products/tent")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(landed.status(), 200);
    let cookies = set_cookies(&landed);
    assert!(cookies.iter().any(|c| c.starts_with("vitrina_landing=tent;")), "{cookies:?}");
    let sid = cookies.iter().find_map(|c| c.strip_prefix("sid=")).and_then(|c| c.split(';').next()).expect("a session").to_string();
    assert_eq!(node.shopper_files("landing"), 0, "a first page creates nothing");

    // Back, on another product: the tent is its first view, and the cookie is cleared.
    let back = shopper.get(format!("{base}/products/mug")).header("accept", "text/html").send().await.unwrap();
    assert!(set_cookies(&back).iter().any(|c| c.starts_with("vitrina_landing=;")), "{:?}", set_cookies(&back));
    let page = back.text().await.unwrap();
    let recently = recently_viewed(&page);
    assert!(recently.contains("Two-person Tent") && !recently.contains("Enamel Mug"), "{page}");
    assert_eq!(node.shopper_files("landing"), 1);
    let page = shopper.get(format!("{base}/products/wool-socks")).header("accept", "text/html").send().await.unwrap().text().await.unwrap();
    let recently = recently_viewed(&page);
    let (mug, tent) = (recently.find("Enamel Mug").expect("mug"), recently.find("Two-person Tent").expect("tent, once"));
    assert!(mug < tent && recently.matches("Two-person Tent").count() == 1, "{recently}");

    // A landing cookie that comes again (a client that kept it) adds nothing to a history.
    let plain = reqwest::Client::builder().resolve("landing.localhost", node.addr).build().unwrap();
    let page = plain
        .get(format!("{base}/products/tent"))
        .header("accept", "text/html")
        .header("cookie", format!("sid={sid}; vitrina_landing=mug"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let recently = recently_viewed(&page);
    let (socks, mug) = (recently.find("Wool Socks").expect("socks"), recently.find("Enamel Mug").expect("mug"));
    assert!(socks < mug && !recently.contains("Two-person Tent"), "{recently}");
    // A landing cookie naming no product (or no valid handle) is ignored.
    let res = plain
        .get(format!("{base}/products/mug"))
        .header("accept", "text/html")
        .header("cookie", "sid=fresh-visitor-1; vitrina_landing=../../etc")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_visit_that_changes_nothing_creates_no_file() {
    let node = TestNode::start();
    node.seed_store("quiet", "Quiet").await;
    let base = node.base("quiet");
    // Made-up but well-formed session ids, as a crawler or a scripted client would send.
    for i in 0..20 {
        let res =
            node.shopper("quiet").get(&base).header("accept", "text/html").header("cookie", format!("sid=madeup{i}")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let res = node.shopper("quiet").get(format!("{base}/cart")).header("cookie", format!("sid=madeup{i}")).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(node.shopper_files("quiet"), 0, "reads alone create no shopper file");
    let c = node.shopper("quiet");
    c.add_to_cart("mug", 1).await;
    assert_eq!(node.shopper_files("quiet"), 1, "the first write creates the file");
    let _node = node.kill_and_restart();
    assert_eq!(cart_count(&c).await, 1);
}
