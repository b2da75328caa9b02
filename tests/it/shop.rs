//! Shopper-facing behaviour over HTTP: tenant routing, pages, cart, search, sessions.

use reqwest::header::{ACCEPT, CONTENT_TYPE, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;
use test_support::*;

const HTML: &str = "text/html,application/xhtml+xml";

#[tokio::test]
async fn each_host_serves_its_own_store_and_unknown_hosts_get_404() {
    let node = TestNode::start();
    node.seed_store("alpha", "Alpha Outfitters").await;
    node.seed_store("beta", "Beta Kitchen").await;

    let alpha = node.shopper("alpha").get(node.base("alpha")).header(ACCEPT, HTML).send().await.unwrap();
    assert_eq!(alpha.status(), 200);
    assert!(alpha.headers().get("x-request-id").is_some());
    let alpha = alpha.text().await.unwrap();
    assert!(alpha.contains("Welcome to Alpha Outfitters"), "{alpha}");
    assert!(!alpha.contains("Beta Kitchen"));

    let beta = node.shopper("beta").get(node.base("beta")).header(ACCEPT, HTML).send().await.unwrap().text().await.unwrap();
    assert!(beta.contains("Welcome to Beta Kitchen"));

    // Unknown store: JSON error body for API clients, an HTML page for browsers.
    let (status, body) = json_of(node.shopper("nosuch").get(node.base("nosuch")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error_body(&body, "unknown_host");
    let page = node.shopper("nosuch").get(node.base("nosuch")).header(ACCEPT, HTML).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    assert!(page.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    assert!(page.text().await.unwrap().contains("request id"));
}

#[tokio::test]
async fn a_demo_node_is_healthy_only_once_its_demo_store_answers() {
    let node = TestNode::start_demo_listening();
    let client = node.plain();
    let health = format!("http://{}/healthz", node.addr);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = json_of(client.get(&health).send().await.expect("healthz")).await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_error_body(&body, "starting");
        assert!(std::time::Instant::now() < deadline, "never healthy");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Healthy means ready: the demo store answers at once.
    let res = node.shopper("demo").get(node.base("demo")).header(ACCEPT, "text/html").send().await.expect("demo page");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.expect("body").contains("Northwind Provisions"));
}

#[tokio::test]
async fn custom_domains_map_to_their_store() {
    let node = TestNode::start();
    let token = node.seed_store("gamma", "Gamma Goods").await;
    let client = reqwest::Client::builder().resolve("shop.gamma-goods.test", node.addr).build().unwrap();
    let home = || client.get(format!("http://shop.gamma-goods.test:{}/", node.addr.port())).header(ACCEPT, HTML).send();
    // A store's own claim is pending until verified (tests/it/hosts.rs); the operator assigns at once.
    let (s, b) = node.admin(&token, reqwest::Method::POST, "/stores/gamma/domains", Some(json!({"host": "shop.gamma-goods.test"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["status"], "pending", "{b}");
    assert_eq!(home().await.unwrap().status(), 404);
    let (s, b) =
        node.admin("test-operator-token", reqwest::Method::PUT, "/hosts/shop.gamma-goods.test", Some(json!({"store": "gamma"}))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let res = home().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Welcome to Gamma Goods"));
}

#[tokio::test]
async fn cart_add_set_remove_with_totals_in_minor_units_and_stock_checks() {
    let node = TestNode::start();
    node.seed_store("shop", "Shop").await;
    let c = node.shopper("shop");
    let base = node.base("shop");

    let res = c.add_to_cart("mug", 2).await;
    assert_eq!(res.status, StatusCode::CREATED);
    let set_cookie = res.headers.get(SET_COOKIE).expect("session cookie").to_str().unwrap().to_string();
    assert!(set_cookie.starts_with("sid="), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"), "{set_cookie}");

    c.add_to_cart("wool-socks-not-an-id", 1).await;
    let res = c.add_to_cart("socks", 3).await;
    assert_eq!(res.status, StatusCode::CREATED);
    let cart1 = c.cart().await;
    assert_eq!(cart1["count"], 5);
    assert_eq!(cart1["subtotalMinor"], 2 * 1250 + 3 * 1800);
    assert_eq!(cart1["subtotal"], "79.00");
    assert_eq!(cart1["currency"], "USD");

    // Set a quantity, then remove a line.
    let (s, body) = c.set_quantity("mug", 4).await.parts();
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["cart"]["subtotalMinor"], 4 * 1250 + 3 * 1800);
    let (s, body) = c.remove_from_cart("socks").await.parts();
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["cart"]["count"], 4);
    assert_eq!(body["cart"]["items"].as_array().unwrap().len(), 1);

    // Stock: 5 mugs exist; 4 in the cart + 2 is too many. Nothing changes.
    let (s, body) = c.add_to_cart("mug", 2).await.parts();
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error_body(&body, "insufficient_stock");
    assert_eq!(body["error"]["details"]["available"], 5);
    assert_eq!(c.cart().await["count"], 4);

    // Unknown product, bad quantity, bad id.
    let (s, body) = json_of(c.post(format!("{base}/cart/items")).json(&json!({"productId": "ghost"})).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error_body(&body, "product_not_found");
    let (s, body) = c.add_to_cart("mug", 0).await.parts();
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error_body(&body, "invalid_request");
    let (s, body) = json_of(c.patch(format!("{base}/cart/items/..%2Fetc")).json(&json!({"quantity": 1})).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error_body(&body, "invalid_id");
    assert_eq!(c.cart().await["count"], 4);
}

#[tokio::test]
async fn concurrent_adds_to_one_cart_all_land() {
    let node = TestNode::start();
    node.seed_store("busy", "Busy").await;
    let c = node.shopper("busy");
    // Establish the session first so every request goes to the same shopper actor.
    c.cart_answer().await;
    let adds = (0..20).map(|_| {
        let c = c.clone();
        async move { c.add_to_cart("socks", 1).await.status }
    });
    let statuses = futures::future::join_all(adds).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED), "{statuses:?}");
    let cart = c.cart().await;
    assert_eq!(cart["count"], 20);
    assert_eq!(cart["items"][0]["quantity"], 20);
}

#[tokio::test]
async fn the_shop_works_with_plain_html_forms() {
    let node = TestNode::start();
    node.seed_store("forms", "Forms").await;
    let c = node.shopper("forms");
    let base = node.base("forms");

    let res = c
        .post(format!("{base}/cart/items"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        // A browser names the page a form was posted from.
        .header("origin", &base)
        .header(ACCEPT, HTML)
        .body("product_id=tent&quantity=1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/cart");

    let page = c.get(format!("{base}/cart")).header(ACCEPT, HTML).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Two-person Tent"), "{page}");
    assert!(page.contains("id=\"v-cart-count\">1<"), "nav shows the live cart count");

    // Quantity change and removal through form posts.
    let res = c
        .post(format!("{base}/cart/items/tent"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        // A browser names the page a form was posted from.
        .header("origin", &base)
        .body("quantity=2")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(c.cart().await["count"], 2);
    let res = c
        .post(format!("{base}/cart/items/tent"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        // A browser names the page a form was posted from.
        .header("origin", &base)
        .body("_method=DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(c.cart().await["count"], 0);
}

#[tokio::test]
async fn first_visit_gets_the_shared_page_and_a_cookie_later_visits_are_personal() {
    let node = TestNode::start();
    node.seed_store("anon", "Anon").await;
    let base = node.base("anon");

    let first = node.shopper("anon").get(&base).header(ACCEPT, HTML).send().await.unwrap();
    assert_eq!(first.headers()["x-vitrina-cache"], "anonymous-miss");
    assert!(first.headers().get(SET_COOKIE).is_some());
    let second_visitor = node.shopper("anon").get(&base).header(ACCEPT, HTML).send().await.unwrap();
    assert_eq!(second_visitor.headers()["x-vitrina-cache"], "anonymous-hit");

    let c = node.shopper("anon");
    c.get(&base).header(ACCEPT, HTML).send().await.unwrap();
    c.add_to_cart("mug", 1).await;
    let mine = c.get(&base).header(ACCEPT, HTML).send().await.unwrap();
    assert_eq!(mine.headers()["x-vitrina-cache"], "personal");
    assert!(mine.text().await.unwrap().contains("id=\"v-cart-count\">1<"));
    // The shared page still shows an empty cart: personal pages never enter the shared cache.
    let other = node.shopper("anon").get(&base).header(ACCEPT, HTML).send().await.unwrap().text().await.unwrap();
    assert!(other.contains("id=\"v-cart-count\">0<"));
}

#[tokio::test]
async fn product_pages_record_views_and_search_ranks_products() {
    let node = TestNode::start();
    node.seed_store("find", "Find").await;
    let c = node.shopper("find");
    let base = node.base("find");

    let page = c.get(format!("{base}/products/tent")).header(ACCEPT, HTML).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("Two-person Tent") && page.contains("<title>Two-person Tent · Find</title>"), "{page}");
    let missing = c.get(format!("{base}/products/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    let (s, body) = json_of(c.get(format!("{base}/search?q=tent")).send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(body["results"][0]["id"], "tent", "{body}");
    let (_, body) = json_of(c.get(format!("{base}/search?q=warm%20merino")).send().await.unwrap()).await;
    assert_eq!(body["results"][0]["id"], "socks", "{body}");
    let (_, body) = json_of(c.get(format!("{base}/search?q=%22%20OR%20*")).send().await.unwrap()).await;
    assert!(body["results"].is_array(), "FTS syntax in the query is not an error: {body}");
}

#[tokio::test]
async fn a_malformed_session_cookie_is_no_session_and_is_replaced() {
    let node = TestNode::start();
    node.seed_store("cookie", "Cookie").await;
    let res = node
        .plain()
        .get(format!("http://{}/cart", node.addr))
        .header("host", format!("cookie.localhost:{}", node.addr.port()))
        .header("cookie", "sid=../../etc/passwd")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let replaced = res.headers().get(SET_COOKIE).unwrap().to_str().unwrap().to_string();
    assert!(replaced.starts_with("sid=") && !replaced.contains("etc") && replaced.contains("HttpOnly"), "{replaced}");
    let (_, body) = json_of(res).await;
    assert_eq!(body["cart"]["count"], 0, "{body}");
}

#[tokio::test]
async fn a_shopper_who_ordered_sees_customer_only_blocks() {
    let node = TestNode::start();
    let token = node.seed_store("loyal", "Loyal").await;
    let page = json!({"title": "Home", "blocks": [
        {"type": "text", "config": {"heading": "Hello everyone", "body": "."}},
        {"type": "text", "config": {"heading": "Welcome back, customer", "body": "."}, "visibility": {"userTypes": ["customer"]}},
        {"type": "text", "config": {"heading": "First time here?", "body": "."}, "visibility": {"userTypes": ["guest"]}},
    ]});
    let (s, b) = node.store_admin("loyal", &token).put_page("home", page).await;
    assert_eq!(s, 200, "{b}");
    node.store_admin("loyal", &token).publish_page("home").await;
    let c = node.shopper("loyal");
    let base = node.base("loyal");
    c.add_to_cart("mug", 1).await;
    let before = c.get(&base).header(ACCEPT, HTML).send().await.unwrap().text().await.unwrap();
    assert!(before.contains("First time here?") && !before.contains("Welcome back, customer"));
    let res = c.post(format!("{base}/checkout")).header("idempotency-key", "order-1").json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED, "{}", res.text().await.unwrap_or_default());
    let after = c.get(&base).header(ACCEPT, HTML).send().await.unwrap().text().await.unwrap();
    assert!(after.contains("Welcome back, customer") && !after.contains("First time here?"), "{after}");
    assert!(after.contains("id=\"v-cart-count\">0<"), "the order emptied the cart");
}

#[tokio::test]
async fn a_session_with_nothing_in_it_gets_the_stores_page_and_no_isolate() {
    let node = TestNode::start();
    node.seed_store("empty", "Empty").await;
    let base = node.base("empty");
    let c = node.shopper("empty");

    let first = c.get(&base).header(ACCEPT, HTML).send().await.unwrap();
    assert_eq!(first.headers()["x-vitrina-cache"], "anonymous-miss");
    let first = first.text().await.unwrap();
    // The session cookie is set now, and its actor has nothing to show: the same page.
    let again = c.get(&base).header(ACCEPT, HTML).send().await.unwrap();
    assert_eq!(again.headers()["x-vitrina-cache"], "anonymous-hit");
    assert_eq!(again.text().await.unwrap(), first);
    assert_eq!(node.metric("vitrina_live_isolates").await, 1, "only the store actor rendered");

    let added = c.add_to_cart("mug", 1).await;
    assert_eq!(added.status, StatusCode::CREATED);
    let mine = c.get(&base).header(ACCEPT, HTML).send().await.unwrap();
    assert_eq!(mine.headers()["x-vitrina-cache"], "personal");
    assert!(mine.text().await.unwrap().contains("id=\"v-cart-count\">1<"));
    assert_eq!(node.metric("vitrina_live_isolates").await, 2);

    // Emptied again, with nothing viewed: the store's page once more.
    let removed = c.remove_from_cart("mug").await;
    assert!(removed.status.is_success(), "{}", removed.status);
    let emptied = c.get(&base).header(ACCEPT, HTML).send().await.unwrap();
    assert_eq!(emptied.headers()["x-vitrina-cache"], "anonymous-hit");
    assert_eq!(emptied.text().await.unwrap(), first);
}

#[tokio::test]
async fn a_cached_personal_page_never_outlives_a_cart_change() {
    let node = TestNode::start();
    node.seed_store("fresh", "Fresh").await;
    let base = node.base("fresh");
    let c = node.shopper("fresh");
    for n in 1..=25 {
        let added = c.add_to_cart("socks", 1).await;
        assert_eq!(added.status, StatusCode::CREATED);
        // The first GET renders, the second is served from the personal cache; both must show
        // the change acknowledged just before.
        for _ in 0..2 {
            let page = c.get(&base).header(ACCEPT, HTML).send().await.unwrap();
            assert_eq!(page.headers()["x-vitrina-cache"], "personal");
            let html = page.text().await.unwrap();
            assert!(html.contains(&format!("id=\"v-cart-count\">{n}<")), "after {n} adds the page shows another count");
        }
    }
}

#[tokio::test]
async fn an_idle_shopper_closes_its_file_and_reopens_it_for_the_next_write() {
    let node = TestNode::start_with(&[("VITRINA_ACTORS__ISOLATE_IDLE_SECS", "1")]);
    node.seed_store("idle", "Idle").await;
    let base = node.base("idle");
    let c = node.shopper("idle");
    // A fixed session: the same shopper after the restart.
    let cookie = session_cookie("idle-shopper-1");
    let sid = ("cookie", cookie.as_str());
    let add = |product: &'static str| {
        c.post(format!("{base}/cart/items")).header(sid.0, sid.1).json(&json!({"productId": product, "quantity": 1})).send()
    };
    assert_eq!(add("mug").await.unwrap().status(), StatusCode::CREATED);
    let shopper_files = || node.open_data_files().into_iter().filter(|f| f.contains("/shoppers/")).count();
    assert!(shopper_files() > 0, "the shopper's file is open while it is busy");

    wait_until("the idle shopper to close its file", Duration::from_secs(15), || async { shopper_files() == 0 }).await;
    // Its state stayed in memory, and the next write reopens the file.
    let (_, body) = json_of(c.get(format!("{base}/cart")).header(sid.0, sid.1).send().await.unwrap()).await;
    assert_eq!(body["cart"]["count"], 1, "{body}");
    assert_eq!(add("socks").await.unwrap().status(), StatusCode::CREATED);

    let node = node.kill_and_restart();
    let c = node.shopper("idle");
    let (_, body) = json_of(c.get(format!("{}/cart", node.base("idle"))).header(sid.0, sid.1).send().await.unwrap()).await;
    assert_eq!(body["cart"]["count"], 2, "both acknowledged writes survive a crash: {body}");
}

#[tokio::test]
async fn past_the_open_file_budget_the_oldest_files_close_and_nothing_is_lost() {
    let node = TestNode::start_with(&[("VITRINA_ACTORS__MAX_OPEN_FILES", "3")]);
    node.seed_store("many", "Many").await;
    let base = node.base("many");
    let c = node.shopper("many");
    let add = |i: usize| {
        c.post(format!("{base}/cart/items"))
            .header("cookie", session_cookie(&format!("budget-shopper-{i}")))
            .json(&json!({"productId": "socks", "quantity": 1}))
            .send()
    };
    let open_shopper_dbs = || node.open_data_files().into_iter().filter(|f| f.contains("/shoppers/") && f.ends_with(".db")).count();
    for i in 0..12 {
        assert_eq!(add(i).await.unwrap().status(), StatusCode::CREATED);
        assert!(open_shopper_dbs() <= 3, "{} shopper files open after {} shoppers", open_shopper_dbs(), i + 1);
    }
    // Every shopper writes again: closed files reopen.
    for i in 0..12 {
        assert_eq!(add(i).await.unwrap().status(), StatusCode::CREATED);
    }
    let node = node.kill_and_restart();
    let c = node.shopper("many");
    for i in 0..12 {
        let res = c
            .get(format!("{}/cart", node.base("many")))
            .header("cookie", session_cookie(&format!("budget-shopper-{i}")))
            .send()
            .await
            .unwrap();
        let (_, body) = json_of(res).await;
        assert_eq!(body["cart"]["count"], 2, "shopper {i}: {body}");
    }
}
