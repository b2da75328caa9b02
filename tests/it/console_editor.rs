//! The console's page editor, black-box: the settings each library block declares (served at
//! `…/block-types`, checked on every draft write with the refused field's path, hostile
//! values refused or rendered escaped: rows of the `edge-security` table), and the console's
//! draft events at `GET /admin/live` (another editor's save reaches an open console, on any
//! node of a cluster; shoppers' sockets never hear of drafts).

use std::time::Duration;

use reqwest::header::{COOKIE, ORIGIN, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use test_support::live::{self, LiveSocket};
use test_support::table::record;
use test_support::*;

const TABLE: &str = "edge-security";
const CLASS: &str = "block settings";

/// The id of the first block of `type` in `page`'s drafts.
async fn block_id(admin: &Admin, page: &str, ty: &str) -> String {
    let (s, body) = admin.request(Method::GET, &format!("/pages/{page}"), None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let blocks = body["draft"]["blocks"].as_array().expect("draft blocks");
    blocks.iter().find(|b| b["type"] == ty).and_then(|b| b["id"].as_str()).expect("a block of that type").to_string()
}

async fn patch_block(admin: &Admin, page: &str, id: &str, body: Value) -> (StatusCode, Value) {
    admin.request(Method::PATCH, &format!("/pages/{page}/blocks/{id}"), Some(body)).await
}

/// Asserts a 400 naming `field`, with nothing saved.
fn assert_refused_at(status: StatusCode, body: &Value, field: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_error_body(body, "validation_failed");
    assert_eq!(body["error"]["details"]["field"], field, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or("").starts_with(field), "the message names the field: {body}");
}

#[tokio::test]
async fn every_library_block_declares_its_settings_and_drafts_are_checked_against_them() {
    let node = TestNode::start();
    let token = node.seed_store("settings", "Settings").await;
    let admin = node.store_admin("settings", &token);

    let (s, types) = admin.request(Method::GET, "/block-types", None).await;
    assert_eq!(s, StatusCode::OK, "{types}");
    let list = types["blockTypes"].as_array().expect("blockTypes");
    for ty in ["hero", "product-grid", "text", "gallery", "blog-list", "product-detail"] {
        assert!(list.iter().any(|t| t["type"] == ty), "{ty} declares its settings: {types}");
    }
    let hero = list.iter().find(|t| t["type"] == "hero").unwrap();
    let field = |name: &str| hero["fields"].as_array().unwrap().iter().find(|f| f["name"] == name).cloned().unwrap_or(Value::Null);
    assert_eq!(field("heading")["type"], "text");
    assert_eq!(field("image")["type"], "image");
    assert_eq!(field("background")["type"], "colour");
    assert_eq!(field("showCta")["default"], true);
    assert_eq!(field("align")["options"], json!(["center", "left"]));
    let grid = list.iter().find(|t| t["type"] == "product-grid").unwrap();
    let columns = grid["fields"].as_array().unwrap().iter().find(|f| f["name"] == "columns").unwrap();
    assert_eq!((columns["min"].as_f64(), columns["max"].as_f64()), (Some(1.0), Some(6.0)));

    // Valid settings of every kind are saved and rendered by the preview.
    let hero_id = block_id(&admin, "home", "hero").await;
    let (s, b) = patch_block(
        &admin,
        "home",
        &hero_id,
        json!({"config": {"heading": "Autumn <script>alert(1)</script>", "align": "left", "background": "#1e40af", "showCta": false, "image": "/img/a.png"}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let preview = node.plain().get(node.admin_url("/stores/settings/pages/home/preview")).bearer_auth(&token).send().await.unwrap();
    let html = preview.text().await.unwrap();
    assert!(html.contains("Autumn &lt;script&gt;alert(1)&lt;/script&gt;"), "markup in a text setting is shown as text");
    assert!(!html.contains("<script>alert(1)"));
    assert!(html.contains("v-hero--left") && html.contains("style=\"background:#1e40af\""), "select and colour render");
    assert!(!html.contains("Shop now"), "showCta=false hides the button");
    record(TABLE, CLASS, "HTML in a text setting", "escaped");

    // Hostile or malformed settings are refused with the field's path; nothing is saved.
    let cases: [(&str, Value, &str); 7] = [
        ("javascript: image URL", json!({"image": "javascript:alert(1)"}), "config.image"),
        ("javascript: link", json!({"ctaHref": "JavaScript:alert(1)"}), "config.ctaHref"),
        ("CSS injection in a colour", json!({"background": "red;}</style><script>"}), "config.background"),
        ("option not offered", json!({"align": "right\" onload=\"x"}), "config.align"),
        ("undeclared setting", json!({"onclick": "x"}), "config.onclick"),
        ("text of the wrong type", json!({"heading": {"html": "<b>"}}), "config.heading"),
        ("text past its length", json!({"ctaText": "x".repeat(81)}), "config.ctaText"),
    ];
    for (case, config, field) in cases {
        let (s, b) = patch_block(&admin, "home", &hero_id, json!({"config": config})).await;
        assert_refused_at(s, &b, field);
        record(TABLE, CLASS, case, "refused");
    }
    let grid_id = block_id(&admin, "home", "product-grid").await;
    let (s, b) = patch_block(&admin, "home", &grid_id, json!({"config": {"columns": 7}})).await;
    assert_refused_at(s, &b, "config.columns");
    let (s, b) = patch_block(&admin, "home", &grid_id, json!({"config": {"limit": 2.5}})).await;
    assert_refused_at(s, &b, "config.limit");
    let (s, b) = patch_block(&admin, "home", &grid_id, json!({"config": {"productIds": ["tent", "../etc/passwd"]}})).await;
    assert_refused_at(s, &b, "config.productIds[1]");
    record(TABLE, CLASS, "number out of bounds, path in a product id list", "refused");
    let (s, b) = admin
        .request(
            Method::POST,
            "/pages/home/blocks",
            Some(json!({"type": "gallery", "config": {"images": [{"src": "/a.png"}, {"src": "data:text/html,<script>", "alt": "x"}]}})),
        )
        .await;
    assert_refused_at(s, &b, "config.images[1].src");
    record(TABLE, CLASS, "non-image data: URL in a gallery", "refused");
    let (s, b) = admin
        .request(Method::PUT, "/pages/other", Some(json!({"title": "Other", "blocks": [{"type": "text", "config": {}}, {"type": "hero", "config": {"image": "javascript:x"}}]})))
        .await;
    assert_refused_at(s, &b, "blocks[1].config.image");
    let (s, _) = admin.request(Method::GET, "/pages/other", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a refused page is not created");

    // Nothing refused was saved: the draft still has the valid settings.
    let (_, page) = admin.request(Method::GET, "/pages/home", None).await;
    let hero = page["draft"]["blocks"].as_array().unwrap().iter().find(|b| b["id"] == hero_id.as_str()).unwrap().clone();
    assert_eq!(hero["config"]["background"], "#1e40af", "{hero}");
    assert_eq!(hero["config"]["image"], "/img/a.png", "{hero}");

    // Chosen products render in the merchant's order.
    let (s, b) = patch_block(&admin, "home", &grid_id, json!({"config": {"productIds": ["tent", "mug"]}})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let html = node
        .plain()
        .get(node.admin_url("/stores/settings/pages/home/preview"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (tent, mug) = (html.find("Two-person Tent").expect("tent shown"), html.find("Enamel Mug").expect("mug shown"));
    assert!(tent < mug && !html.contains("Wool Socks"), "only the chosen products, in order");

    // A block with its own code reads its settings itself: any object is taken.
    let code = "function render(storefront, helpers, ctx) { return '<p>' + helpers.escapeHtml(String(ctx.config.anything)) + '</p>'; }";
    let (s, b) = patch_block(&admin, "home", &hero_id, json!({"code": code, "config": {"anything": "goes"}})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

/// A console login of `store` on `node`: the `Cookie` header value.
async fn console_cookie(node: &TestNode, store: &str, token: &str) -> String {
    let base = node.base(store);
    let res = node
        .bare_client(store)
        .post(format!("{base}/admin/session"))
        .header(ORIGIN, &base)
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let set = res.headers().get(SET_COOKIE).and_then(|v| v.to_str().ok()).expect("a session cookie").to_string();
    set.split(';').next().unwrap().trim().to_string()
}

async fn console_socket(node: &TestNode, store: &str, cookie: &str) -> LiveSocket {
    let mut s = live::open_at(node.addr, store, "/admin/live", Some(&live::origin(node.addr, store)), Some(cookie))
        .await
        .expect("console socket opens");
    s.hello().await;
    s
}

#[tokio::test]
async fn another_editors_save_reaches_open_consoles_and_never_shoppers() {
    let node = TestNode::start();
    let token = node.seed_store("drafts", "Drafts").await;
    let admin = node.store_admin("drafts", &token);
    let cookie = console_cookie(&node, "drafts", &token).await;
    let mut console = console_socket(&node, "drafts", &cookie).await;
    let mut shopper = live::open(node.addr, "drafts", Some(&live::origin(node.addr, "drafts")), None).await.expect("page socket");
    shopper.hello().await;

    let hero = block_id(&admin, "home", "hero").await;
    let (s, b) = patch_block(&admin, "home", &hero, json!({"config": {"heading": "Saved by the other editor"}})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let event = console.next_of("draft", Duration::from_secs(3)).await.expect("the console hears of the save");
    assert_eq!(event["page"], "home", "{event}");
    assert!(event.get("saveId").is_none(), "a save without an id: {event}");
    // A console names its saves: the event echoes the name, so that console knows its own.
    let url = node.admin_url(&format!("/stores/drafts/pages/home/blocks/{hero}"));
    let named = |id: &str| {
        node.plain().patch(&url).bearer_auth(&token).header("x-vitrina-save", id).json(&json!({"config": {"heading": "Named"}})).send()
    };
    let res = named("c0ffee-save_1").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let event = console.next_of("draft", Duration::from_secs(3)).await.expect("the named save's event");
    assert_eq!(event["saveId"], "c0ffee-save_1", "{event}");
    for bad in ["", "<script>", &"x".repeat(65)] {
        let res = named(bad).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        assert_error_body(&res.json().await.unwrap(), "invalid_save_id");
    }
    assert!(console.next_of("draft", Duration::from_millis(500)).await.is_none(), "a refused save id saves nothing");
    record(TABLE, "console events", "hostile save ids echoed into draft events", "refused");
    // Adding and deleting blocks, and a rollback, are draft changes too.
    let (s, b) = admin.request(Method::POST, "/pages/home/blocks", Some(json!({"type": "text", "config": {"body": "x"}}))).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert!(console.next_of("draft", Duration::from_secs(3)).await.is_some());
    // A refused save says nothing.
    let (s, _) = patch_block(&admin, "home", &hero, json!({"config": {"image": "javascript:x"}})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(console.next_of("draft", Duration::from_millis(700)).await.is_none(), "no event for a refused save");
    assert!(shopper.next_of("draft", Duration::from_millis(300)).await.is_none(), "drafts are not for shoppers");
    record(TABLE, "console events", "draft event on a shopper's socket", "refused");

    // Without a console session, or from another site, the socket is refused before the upgrade.
    let origin = live::origin(node.addr, "drafts");
    let refused = live::open_at(node.addr, "drafts", "/admin/live", Some(&origin), None).await.err().expect("refused without a session");
    assert_eq!(refused.status, 401, "{:?}", refused.body);
    assert_error_body(&refused.body, "unauthorized");
    record(TABLE, "console events", "console socket without a session", "refused");
    let refused =
        live::open_at(node.addr, "drafts", "/admin/live", Some("http://evil.example"), Some(&cookie)).await.err().expect("refused");
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    record(TABLE, "console events", "console socket from another site's page", "refused");
    let other = node.seed_store("elsewhere", "Elsewhere").await;
    let other_cookie = console_cookie(&node, "elsewhere", &other).await;
    let refused = live::open_at(node.addr, "drafts", "/admin/live", Some(&origin), Some(&other_cookie)).await.err();
    assert!(refused.is_some_and(|r| r.status == 401 || r.status == 403), "another store's session does not listen here");
    record(TABLE, "console events", "another store's console session", "refused");
}

#[tokio::test]
async fn a_save_reaches_a_console_on_a_node_that_does_not_own_the_store() {
    let nodes = start_cluster(2, &[]).await;
    let token = nodes[0].seed_store("cdrafts", "Cluster drafts").await;
    let res = nodes[0].plain().get(nodes[0].admin_url("/stores/cdrafts")).bearer_auth(&token).send().await.unwrap();
    let owner = res.headers().get("x-vitrina-node").and_then(|v| v.to_str().ok()).expect("x-vitrina-node");
    let owner = owner.trim_start_matches('n').parse::<usize>().expect("node id") - 1;
    let far = 1 - owner;
    let cookie = console_cookie(&nodes[far], "cdrafts", &token).await;
    let mut console = console_socket(&nodes[far], "cdrafts", &cookie).await;
    let admin = nodes[owner].store_admin("cdrafts", &token);
    let hero = block_id(&admin, "home", "hero").await;
    let (s, b) = patch_block(&admin, "home", &hero, json!({"config": {"heading": "From the owner"}})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let event = console.next_of("draft", Duration::from_secs(5)).await.expect("the draft event crosses nodes");
    assert_eq!(event["page"], "home");

    // Logged out (at the owner, where /admin/session is answered), the session opens no socket
    // on the node that does not own the store either: it asks the owner.
    let base = nodes[far].base("cdrafts");
    let res = nodes[far]
        .bare_client("cdrafts")
        .delete(format!("{base}/admin/session"))
        .header(COOKIE, &cookie)
        .header(ORIGIN, &base)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let origin = live::origin(nodes[far].addr, "cdrafts");
    let refused = live::open_at(nodes[far].addr, "cdrafts", "/admin/live", Some(&origin), Some(&cookie)).await.err();
    assert_eq!(refused.map(|r| r.status), Some(401), "a logged-out session listens nowhere");
    record(TABLE, "console events", "logged-out console session on a node that does not own the store", "refused");
}
