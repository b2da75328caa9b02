//! Live updates, black-box: pages' sockets at `GET /live` (a WebSocket client like a page's),
//! cart changes through HTTP, catalog changes through signed webhooks, on one node and through
//! a cluster whose socket lives on a node that does not own the actor. Refused sockets (another
//! site's Origin, past the caps) are rows of the `edge-security` table.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{json, Value};
use test_support::live::{self, LiveSocket};
use test_support::ws_wire::{self, Wire};
use test_support::*;

const TABLE: &str = "edge-security";
const SECRET: &str = "whsec_live_0123456789abcdef";
const QUIET: Duration = Duration::from_millis(700);

async fn socket(node: &TestNode, store: &str, cookie: Option<&str>) -> LiveSocket {
    let mut s = live::open(node.addr, store, Some(&live::origin(node.addr, store)), cookie).await.expect("socket opens");
    s.hello().await;
    s
}

/// `POST /cart/items` as the shopper whose `Cookie` is `cookie`, through `node`.
async fn add(node: &TestNode, store: &str, cookie: &str, product: &str) -> Value {
    let res = node
        .bare_client(store)
        .post(format!("{}/cart/items", node.base(store)))
        .header("cookie", cookie)
        .json(&json!({"productId": product, "quantity": 1}))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(res).await;
    assert_eq!(status, 201, "{body}");
    body
}

/// A generic webhook setting `product`'s price (signed with the store's secret), through `node`.
async fn set_price(node: &TestNode, store: &str, id: &str, product: &str, price: &str, stock: i64) {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    set_price_at(node, store, id, product, price, stock, &format!("2030-01-01T00:00:{:02}Z", t % 60)).await
}

/// [`set_price`] with the upstream's `updatedAt` (newest wins per product).
async fn set_price_at(node: &TestNode, store: &str, id: &str, product: &str, price: &str, stock: i64, at: &str) {
    let t = test_support::webhook::unix_now();
    let body = json!({"id": id, "store": store, "type": "product.upsert",
        "data": {"id": product, "handle": product, "title": "Enamel Mug", "price": price, "stock": stock, "updatedAt": at}})
    .to_string();
    let (status, b) = json_of(node.generic_webhook(store, SECRET, t, &body).await).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["status"], "applied", "{b}");
}

async fn with_webhooks(node: &TestNode, store: &str) -> String {
    let token = node.seed_store(store, "Live").await;
    let (s, b) = node.admin(&token, Method::PUT, &format!("/stores/{store}/webhooks"), Some(json!({"secret": SECRET}))).await;
    assert_eq!(s, 200, "{b}");
    token
}

#[tokio::test]
async fn a_cart_change_reaches_every_tab_of_its_shopper_and_no_one_else() {
    let node = TestNode::start_with(&[("VITRINA_ACTORS__IDLE_TIMEOUT_SECS", "1"), ("VITRINA_ACTORS__ISOLATE_IDLE_SECS", "1")]);
    node.seed_store("live", "Live").await;
    let (alice, bob) = (session_cookie("alice-live-1"), session_cookie("bob-live-1"));
    let mut tab1 = live::open(node.addr, "live", Some(&live::origin(node.addr, "live")), Some(&alice)).await.unwrap();
    assert_eq!(tab1.hello().await["shopper"], true, "a current session listens for its shopper");
    let mut tab2 = socket(&node, "live", Some(&alice)).await;
    let mut other = socket(&node, "live", Some(&bob)).await;
    let mut guest = live::open(node.addr, "live", Some(&live::origin(node.addr, "live")), None).await.unwrap();
    assert_eq!(guest.hello().await["shopper"], false);

    add(&node, "live", &alice, "mug").await;
    for tab in [&mut tab1, &mut tab2] {
        let event = tab.next_of("cart", Duration::from_secs(5)).await.expect("both tabs get the cart event");
        assert_eq!(event["count"], 1, "{event}");
        assert_eq!(event["cart"]["items"][0]["productId"], "mug", "{event}");
    }
    assert!(other.next_of("cart", QUIET).await.is_none(), "another shopper's socket hears nothing of it");
    assert!(guest.next_of("cart", QUIET).await.is_none(), "a guest's socket hears nothing of it");

    // Hibernation: with the sockets still open, the shopper's actor passivates (no isolate, no
    // open file); the next write wakes it, and its event still reaches both tabs.
    wait_until("the idle shopper to passivate under open sockets", Duration::from_secs(20), || async { node.live_shoppers().await == 0 })
        .await;
    assert!(node.open_data_files().iter().all(|f| !f.contains("/shoppers/")), "{:?}", node.open_data_files());
    add(&node, "live", &alice, "mug").await;
    for tab in [&mut tab1, &mut tab2] {
        let event = tab.next_of("cart", Duration::from_secs(5)).await.expect("the woken actor publishes");
        assert_eq!(event["count"], 2, "{event}");
    }
}

#[tokio::test]
async fn a_signed_webhook_price_change_reaches_open_pages_within_a_second() {
    let node = TestNode::start();
    with_webhooks(&node, "livehook").await;
    let mut page = socket(&node, "livehook", None).await;
    let mut shopper = socket(&node, "livehook", Some(&session_cookie("carol-live"))).await;
    let mut elsewhere = {
        node.seed_store("quiet", "Quiet").await;
        socket(&node, "quiet", None).await
    };
    let started = Instant::now();
    set_price(&node, "livehook", "w-1", "mug", "9.75", 4).await;
    for s in [&mut page, &mut shopper] {
        let event = s.next_of("product", Duration::from_secs(1).saturating_sub(started.elapsed())).await.expect("the price within 1 s");
        let p = &event["products"][0];
        assert_eq!((p["id"].as_str(), p["price"].as_str(), p["stock"].as_i64()), (Some("mug"), Some("9.75"), Some(4)), "{event}");
        assert_eq!(event["currency"], "USD");
    }
    assert!(elsewhere.next_of("product", QUIET).await.is_none(), "another store's page hears nothing");
}

#[tokio::test]
async fn catalog_changes_reach_open_pages_and_leave_no_log_behind() {
    let node = TestNode::start();
    with_webhooks(&node, "nolog").await;
    let mut page = socket(&node, "nolog", None).await;
    for i in 0..25 {
        let price = format!("{}.50", 10 + i);
        set_price_at(&node, "nolog", &format!("nl-{i}"), "mug", &price, 5, &format!("2030-01-01T00:01:{i:02}Z")).await;
        let event = page.next_of("product", Duration::from_secs(3)).await.expect("every change is an event");
        assert_eq!(event["products"][0]["price"], price.as_str(), "{event}");
    }
    // The live events are the only record of a change besides the catalog itself: the store's
    // file keeps no log of changes that could grow (the old catalog.changed outbox is dropped).
    let db = node.data_dir.join("stores/nolog/store.db");
    let conn = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!tables.iter().any(|t| t == "outbox"), "no outbox table: {tables:?}");
    assert!(tables.iter().any(|t| t == "products"), "the store's file was read: {tables:?}");
}

#[tokio::test]
async fn sockets_from_other_sites_and_past_the_caps_are_refused_before_the_upgrade() {
    let node = TestNode::start_with(&[("VITRINA_LIVE__MAX_SOCKETS_PER_SESSION", "2"), ("VITRINA_LIVE__MAX_SOCKETS_PER_IP", "3")]);
    node.seed_store("capped", "Capped").await;
    node.seed_store("neighbour", "Neighbour").await;
    let cookie = session_cookie("dave-live");
    let cases = [
        ("another site's Origin", Some("https://evil.example".to_string())),
        ("another store's Origin on this node", Some(live::origin(node.addr, "neighbour"))),
        ("Origin null", Some("null".to_string())),
        ("no Origin", None),
    ];
    for (case, origin) in cases {
        let refused =
            live::open(node.addr, "capped", origin.as_deref(), Some(&cookie)).await.err().unwrap_or_else(|| panic!("{case}: accepted"));
        assert_eq!(refused.status, 403, "{case}: {refused:?}");
        assert_error_body(&refused.body, "csrf_rejected");
        table::record(TABLE, "live-sockets", &format!("cross-site socket: {case}"), "refused");
    }

    let first = socket(&node, "capped", Some(&cookie)).await;
    let _second = socket(&node, "capped", Some(&cookie)).await;
    let refused =
        live::open(node.addr, "capped", Some(&live::origin(node.addr, "capped")), Some(&cookie)).await.err().expect("a third tab");
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_error_body(&refused.body, "too_many_sockets");
    assert_eq!(refused.body["error"]["details"]["scope"], "session");
    table::record(TABLE, "live-sockets", "sockets of one session past its cap", "bounded");

    let _guest = socket(&node, "capped", None).await;
    let refused = live::open(node.addr, "capped", Some(&live::origin(node.addr, "capped")), None).await.err().expect("a fourth socket");
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.body["error"]["details"]["scope"], "ip");
    table::record(TABLE, "live-sockets", "sockets of one IP past its cap", "bounded");

    // A closed socket gives its place back.
    first.close().await;
    let mut again = None;
    for _ in 0..50 {
        if let Ok(s) = live::open(node.addr, "capped", Some(&live::origin(node.addr, "capped")), Some(&cookie)).await {
            again = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    again.expect("a place freed by a closed socket").hello().await;
}

#[tokio::test]
async fn frames_sent_with_the_handshake_are_answered_and_hostile_frames_close_the_socket() {
    let node = TestNode::start();
    node.seed_store("wire", "Wire").await;
    // A ping in the same write as the handshake is read with the request: it must not be lost
    // when the connection passes from HTTP to the socket.
    let mut bytes = ws_wire::handshake(node.addr, "wire", "/live");
    bytes.extend(ws_wire::frame(ws_wire::PING, b"early", true));
    let mut wire = Wire::send(node.addr, &bytes).await;
    let head = wire.head(Duration::from_secs(10)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (mut hello, mut pong) = (None, None);
    while hello.is_none() || pong.is_none() {
        let (opcode, payload) = wire.next_frame(Duration::from_secs(5)).await.expect("the hello and the pong");
        match opcode {
            ws_wire::TEXT => hello = Some(serde_json::from_slice::<Value>(&payload).expect("JSON event")),
            ws_wire::PONG => pong = Some(payload),
            _ => {}
        }
    }
    assert_eq!(hello.expect("hello")["type"], "hello");
    assert_eq!(pong.as_deref(), Some(&b"early"[..]), "the early ping is answered");

    // Pages send pongs and nothing large; clients must mask their frames (RFC 6455 5.1).
    let cases = [
        ("a frame past the socket's size cap", ws_wire::frame(ws_wire::TEXT, &[b'x'; 64 * 1024], true)),
        ("an unmasked client frame", ws_wire::frame(ws_wire::TEXT, b"hi", false)),
    ];
    for (case, frame) in cases {
        let mut wire = Wire::send(node.addr, &ws_wire::handshake(node.addr, "wire", "/live")).await;
        assert!(wire.head(Duration::from_secs(10)).await.starts_with("HTTP/1.1 101"), "{case}");
        wire.write(&frame).await;
        assert_eq!(wire.close_code(Duration::from_secs(5)).await, Some(1002), "{case}: closed as a protocol error");
        table::record(TABLE, "live-sockets", case, "refused");
    }
    // The node still serves sockets.
    socket(&node, "wire", None).await;
}

#[tokio::test]
async fn a_request_asking_for_an_upgrade_elsewhere_gets_its_answer_and_a_closed_connection() {
    let node = TestNode::start();
    node.seed_store("wire", "Wire").await;
    // A page asked for with `Upgrade: websocket`: the page itself; the connection cannot go
    // back to serving HTTP after it, so it closes.
    let request = String::from_utf8(ws_wire::handshake(node.addr, "wire", "/")).expect("ascii");
    let mut wire = Wire::send(node.addr, request.as_bytes()).await;
    let head = wire.head(Duration::from_secs(10)).await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let body = String::from_utf8_lossy(&wire.rest(Duration::from_secs(10)).await).to_string();
    assert!(body.contains("Wire"), "the store's page: {body}");

    // A handshake without its key: refused with the uniform body, connection closed.
    let request = request.replace("/ HTTP/1.1", "/live HTTP/1.1").replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    let mut wire = Wire::send(node.addr, request.as_bytes()).await;
    let head = wire.head(Duration::from_secs(10)).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let body: Value = serde_json::from_slice(&wire.rest(Duration::from_secs(10)).await).expect("JSON error body");
    assert_error_body(&body, "not_websocket");
    table::record(TABLE, "live-sockets", "handshake without Sec-WebSocket-Key", "refused");
}

#[tokio::test]
async fn a_socket_closes_when_its_node_shuts_down() {
    let node = TestNode::start();
    node.seed_store("bye", "Bye").await;
    let mut s = socket(&node, "bye", None).await;
    // SAFETY: sends SIGTERM to the child process this test started.
    unsafe { libc::kill(node.pid() as i32, libc::SIGTERM) };
    assert_eq!(s.closed_with(Duration::from_secs(10)).await, Some(1001), "closed as going away");
}

#[tokio::test]
async fn a_page_that_stops_answering_pings_is_closed_and_one_that_answers_stays() {
    let node = TestNode::start_with(&[("VITRINA_LIVE__PING_SECS", "1"), ("VITRINA_LIVE__IDLE_TIMEOUT_SECS", "2")]);
    node.seed_store("pings", "Pings").await;
    let mut silent = socket(&node, "pings", None).await;
    let mut awake = socket(&node, "pings", None).await;
    // The awake page reads (and so answers every ping) for 5 s; the silent one reads nothing.
    assert_eq!(awake.closed_with(Duration::from_secs(5)).await, None, "a page that answers pings stays open");
    // Closed by the node: normally with its close frame (1000); a client that reads nothing
    // may instead see the connection end first (1006) — closed either way, never left open.
    let closed = silent.closed_with(Duration::from_secs(5)).await;
    assert!(matches!(closed, Some(1000) | Some(1006)), "a silent page is closed as idle: {closed:?}");
}

/// The node (index into `nodes`) that served a request, from `x-vitrina-node` (`n1`…).
fn served_by(res: &reqwest::Response) -> usize {
    let id = res.headers().get("x-vitrina-node").and_then(|v| v.to_str().ok()).expect("x-vitrina-node");
    id.trim_start_matches('n').parse::<usize>().expect("node id n{i}") - 1
}

#[tokio::test]
async fn events_reach_a_socket_on_a_node_that_does_not_own_the_actor() {
    let nodes = start_cluster(3, &[]).await;
    let token = with_webhooks(&nodes[0], "livec").await;

    // Which node owns the store and which one a shopper; the sockets go elsewhere.
    let res = nodes[0].plain().get(nodes[0].admin_url("/stores/livec")).bearer_auth(&token).send().await.unwrap();
    let store_owner = served_by(&res);
    let cookie = session_cookie("erin-live-cluster");
    let res = nodes[0].bare_client("livec").get(format!("{}/cart", nodes[0].base("livec"))).header("cookie", &cookie).send().await.unwrap();
    let shopper_owner = served_by(&res);
    let far = (0..3).find(|i| *i != shopper_owner).unwrap();
    let mut tab = socket(&nodes[far], "livec", Some(&cookie)).await;
    let mut other_tab = socket(&nodes[(far + 1) % 3], "livec", Some(&cookie)).await;

    // The write enters at yet another node (forwarded to the owner); both tabs hear of it.
    add(&nodes[(far + 2) % 3], "livec", &cookie, "mug").await;
    for t in [&mut tab, &mut other_tab] {
        let event = t.next_of("cart", Duration::from_secs(5)).await.expect("the cart event crosses nodes");
        assert_eq!(event["count"], 1, "{event}");
    }

    // A store's price change reaches a page held by a node that does not own the store.
    let far_from_store = (0..3).find(|i| *i != store_owner).unwrap();
    let mut page = socket(&nodes[far_from_store], "livec", None).await;
    let started = Instant::now();
    set_price(&nodes[store_owner], "livec", "wc-1", "mug", "8.25", 3).await;
    let event = page.next_of("product", Duration::from_secs(3)).await.expect("the price change crosses nodes");
    assert_eq!(event["products"][0]["price"], "8.25", "{event}");
    assert!(started.elapsed() < Duration::from_secs(3));
}
