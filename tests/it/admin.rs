//! The admin API over HTTP: auth, drafts and publishing, validation, error bodies.

use reqwest::header::ACCEPT;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use test_support::*;

const HTML: &str = "text/html";

#[tokio::test]
async fn admin_auth_missing_wrong_and_other_stores_tokens() {
    let node = TestNode::start();
    let alpha = node.create_store("alpha", "Alpha").await;
    let _beta = node.create_store("beta", "Beta").await;
    let url = node.admin_url("/stores/beta/settings");

    let (s, body) = json_of(node.plain().get(&url).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_error_body(&body, "unauthorized");
    let (s, body) = json_of(node.plain().get(&url).bearer_auth("vt_wrong").send().await.unwrap()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_error_body(&body, "unauthorized");
    let (s, body) = json_of(node.plain().get(&url).bearer_auth(&alpha).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_error_body(&body, "forbidden");
    // A store token cannot create stores; the operator token can administer any store.
    let (s, _) = node.admin(&alpha, Method::POST, "/stores", Some(json!({"id": "gamma"}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, body) = node.admin("test-operator-token", Method::GET, "/stores/beta/settings", None).await;
    assert_eq!(s, 200);
    assert_eq!(body["name"], "Beta");
    let (s, body) = node.admin(&alpha, Method::GET, "/stores/alpha/settings", None).await;
    assert_eq!(s, 200);
    assert_eq!(body["name"], "Alpha");
    // Creating a store twice is a conflict.
    let (s, body) = node.admin("test-operator-token", Method::POST, "/stores", Some(json!({"id": "alpha"}))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error_body(&body, "store_exists");
}

#[tokio::test]
async fn bad_ids_and_bodies_get_4xx_with_the_error_body() {
    let node = TestNode::start();
    let token = node.create_store("shop", "Shop").await;

    let (s, body) = node.admin("test-operator-token", Method::POST, "/stores", Some(json!({"id": "../evil"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error_body(&body, "invalid_id");
    assert!(!node.data_dir.join("evil").exists() && !node.data_dir.parent().unwrap().join("evil").exists());

    let (s, body) = node.admin(&token, Method::PUT, "/stores/shop/products/bad.id", Some(json!({"title": "x", "price": "1.00"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error_body(&body, "invalid_id");

    let too_long = "x".repeat(65);
    let (s, body) = node.admin(&token, Method::GET, &format!("/stores/{too_long}/settings"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error_body(&body, "invalid_id");

    // Malformed JSON, wrong content type, invalid values, oversized body.
    let res = node
        .plain()
        .put(node.admin_url("/stores/shop/products/p1"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"title\": ")
        .send()
        .await
        .unwrap();
    let (s, body) = json_of(res).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error_body(&body, "invalid_json");
    let res = node
        .plain()
        .put(node.admin_url("/stores/shop/products/p1"))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    let (s, body) = json_of(res).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_error_body(&body, "unsupported_media_type");
    let (s, body) = node.store_admin("shop", &token).put_product("p1", json!({"title": "Mug", "price": "1.005"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error_body(&body, "validation_failed");
    let (s, body) = node
        .admin(
            &token,
            Method::PUT,
            "/stores/shop/products/p1",
            Some(json!({"title": "Mug", "price": "2.00", "images": ["javascript:alert(1)"]})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error_body(&body, "validation_failed");
    let big = json!({"title": "Mug", "price": "1.00", "description": "x".repeat(300 * 1024)});
    let (s, body) = node.store_admin("shop", &token).put_product("p1", big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error_body(&body, "payload_too_large");
    let (s, body) = node.store_admin("shop", &token).patch_settings(json!({"currency": "dollars"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error_body(&body, "validation_failed");

    // None of it changed anything.
    let (_, body) = node.admin(&token, Method::GET, "/stores/shop/products", None).await;
    assert_eq!(body["products"].as_array().unwrap().len(), 0);
    let (_, body) = node.admin(&token, Method::GET, "/stores/shop/settings", None).await;
    assert_eq!(body["currency"], "USD");

    // Unknown routes and methods use the same body.
    let (s, body) = json_of(node.plain().get(format!("http://{}/no/such/route", node.addr)).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error_body(&body, "not_found");
}

#[tokio::test]
async fn a_batch_with_one_bad_product_changes_nothing() {
    let node = TestNode::start();
    let token = node.create_store("batch", "Batch").await;
    let batch = json!({"products": [
        {"id": "a", "handle": "same", "title": "A", "price": "1.00"},
        {"id": "b", "handle": "same", "title": "B", "price": "2.00"},
    ]});
    let (s, body) = node.admin(&token, Method::POST, "/stores/batch/products", Some(batch)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    let (_, body) = node.admin(&token, Method::GET, "/stores/batch/products", None).await;
    assert_eq!(body["products"], json!([]));
}

async fn home_html(node: &TestNode, store: &str) -> String {
    let res = node.shopper(store).get(node.base(store)).header(ACCEPT, HTML).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

#[tokio::test]
async fn drafts_are_invisible_until_publish_and_rollback_restores_the_old_page() {
    let node = TestNode::start();
    let token = node.seed_store("pages", "Pages").await;
    assert!(home_html(&node, "pages").await.contains("Welcome to Pages"));

    // Edit the hero as a draft: shoppers still see version 1, the admin preview shows the draft.
    let (_, page) = node.admin(&token, Method::GET, "/stores/pages/pages/home", None).await;
    let hero_id = page["draft"]["blocks"][0]["id"].as_str().unwrap().to_string();
    let (s, body) = node
        .admin(
            &token,
            Method::PATCH,
            &format!("/stores/pages/pages/home/blocks/{hero_id}"),
            Some(json!({"config": {"heading": "Autumn sale"}})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = node
        .admin(
            &token,
            Method::POST,
            "/stores/pages/pages/home/blocks",
            Some(json!({"type": "text", "config": {"heading": "Draft-only text", "body": "soon"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let live = home_html(&node, "pages").await;
    assert!(live.contains("Welcome to Pages") && !live.contains("Autumn sale") && !live.contains("Draft-only text"));
    let preview = node.plain().get(node.admin_url("/stores/pages/pages/home/preview")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(preview.status(), 200);
    let preview = preview.text().await.unwrap();
    assert!(preview.contains("Autumn sale") && preview.contains("Draft-only text"));
    let (s, _) = json_of(node.plain().get(node.admin_url("/stores/pages/pages/home/preview")).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "preview is admin-only");

    // Publish: version 2 is live.
    let (s, body) = node.store_admin("pages", &token).publish_page("home").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["version"], 2);
    let live = home_html(&node, "pages").await;
    assert!(live.contains("Autumn sale") && live.contains("Draft-only text") && !live.contains("Welcome to Pages"));

    // Roll back to version 1: published as version 3, old content back, drafts reset.
    let (s, body) = node.admin(&token, Method::POST, "/stores/pages/pages/home/rollback", Some(json!({"version": 1}))).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["version"], 3);
    let live = home_html(&node, "pages").await;
    assert!(live.contains("Welcome to Pages") && !live.contains("Autumn sale"));
    let (_, versions) = node.admin(&token, Method::GET, "/stores/pages/pages/home/versions", None).await;
    let versions = versions["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[2]["source"], "rollback:1");
    assert_eq!(versions[2]["live"], true);
    let (s, body) = node.admin(&token, Method::POST, "/stores/pages/pages/home/rollback", Some(json!({"version": 9}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error_body(&body, "not_found");
}

#[tokio::test]
async fn a_draft_preview_carries_no_script_the_published_page_runs() {
    // The console shows previews in a frame sandboxed without scripts: a script there is only
    // refused (and logged), and the store's analytics must not count the merchant's previews.
    let node = TestNode::start();
    let token = node.seed_store("quiet", "Quiet").await;
    let (s, body) = node.store_admin("quiet", &token).patch_settings(json!({"analytics": {"clarityProjectId": "abc123"}})).await;
    assert_eq!(s, 200, "{body}");
    let live = home_html(&node, "quiet").await;
    assert!(live.contains("<script") && live.contains("/live.js") && live.contains("abc123"), "{live}");

    let preview = node.plain().get(node.admin_url("/stores/quiet/pages/home/preview")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(preview.status(), 200);
    let preview = preview.text().await.unwrap();
    assert!(preview.contains("Welcome to Quiet") && preview.contains("</html>"), "{preview}");
    assert!(!preview.contains("<script") && !preview.contains("abc123"), "{preview}");
}

#[tokio::test]
async fn settings_theme_and_posts_reach_the_pages() {
    let node = TestNode::start();
    let token = node.seed_store("themed", "Themed").await;
    let (s, _) = node
        .admin(
            &token,
            Method::PATCH,
            "/stores/themed/settings",
            Some(json!({
                "name": "Themed & Co <b>", "seo": {"title": "Best <shop>", "description": "Fine things"},
                "analytics": {"clarityProjectId": "abc123"}
            })),
        )
        .await;
    assert_eq!(s, 200);
    let (s, body) = node
        .admin(
            &token,
            Method::PUT,
            "/stores/themed/theme",
            Some(json!({
                "template": "bold", "tokens": {"color-primary": "#123456"}, "regions": {"EU": {"color-primary": "#654321"}}
            })),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = node.store_admin("themed", &token).put_theme(json!({"tokens": {"color-primary": "red;}</style><script>"}})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, _) = node
        .admin(
            &token,
            Method::PUT,
            "/stores/themed/posts/first-light",
            Some(json!({
                "title": "First light", "excerpt": "Dawn", "body": "Para one.\n\nPara <two>.", "publishedAt": "2026-10-01T08:00:00Z"
            })),
        )
        .await;
    assert_eq!(s, 200);

    let html = home_html(&node, "themed").await;
    assert!(html.contains("<title>Best &lt;shop&gt;</title>"), "SEO title escaped");
    assert!(html.contains("--v-color-primary:#123456"));
    assert!(html.contains("--v-radius:0px"), "template default applies");
    assert!(html.contains("Themed &amp; Co &lt;b&gt;"));
    assert!(html.contains("clarity.ms/tag/"), "analytics enabled and not declined");

    // The EU region override and declined analytics.
    let c = node.shopper("themed");
    let res = c.put(format!("{}/preferences", node.base("themed"))).json(&json!({"region": "EU"})).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = c.post(format!("{}/consent", node.base("themed"))).json(&json!({"analytics": "declined"})).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let html = c.get(node.base("themed")).header(ACCEPT, HTML).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("--v-color-primary:#654321"));
    assert!(!html.contains("clarity.ms"));

    let post = c.get(format!("{}/blog/first-light", node.base("themed"))).header(ACCEPT, HTML).send().await.unwrap();
    assert_eq!(post.status(), 200);
    let post = post.text().await.unwrap();
    assert!(post.contains("First light") && post.contains("Para &lt;two&gt;."));
}

#[tokio::test]
async fn hostile_blocks_cost_only_their_own_placeholder() {
    // The operator allows this store's long budgets (the default maxima are 200 ms / 1 s).
    let node = TestNode::start_with(&[("VITRINA_RENDER__MAX_BLOCK_CPU_MS", "1000"), ("VITRINA_RENDER__MAX_PAGE_CPU_MS", "10000")]);
    let token = node.seed_store("hostile", "Hostile").await;
    let blocks = json!([
        {"type": "text", "config": {"heading": "Before", "body": "first"}},
        {"type": "custom", "code": "function spin(storefront) { while (true) {} }"},
        {"type": "custom", "code": "function bomb() { const a = []; while (true) { a.push(new Array(100000).fill(1)); } }"},
        {"type": "custom", "code": "function huge() { return 'x'.repeat(10 * 1024 * 1024); }"},
        {"type": "custom", "code": "function renderHero(storefront, helpers) { return '<h1>' + helpers.escapeHtml(storefront.name) + '</h1>'; }"},
        {"type": "text", "config": {"heading": "After", "body": "last"}},
    ]);
    let (s, body) = node.store_admin("hostile", &token).put_page("home", json!({"title": "Home", "blocks": blocks})).await;
    assert_eq!(s, 200, "{body}");
    // A CPU budget the heap bomb cannot outlast before it reaches the 32 MB heap (on a busy
    // machine a 50 ms budget sometimes ended it as a timeout first).
    let (s, body) = node
        .admin(
            &token,
            Method::PATCH,
            "/stores/hostile/settings",
            Some(json!({"limits": {"heapMb": 32, "blockCpuMs": 1000, "pageCpuMs": 10000}})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = node.store_admin("hostile", &token).publish_page("home").await;
    assert_eq!(s, 200, "{body}");

    for _ in 0..2 {
        let html = home_html(&node, "hostile").await;
        assert!(html.contains("Before") && html.contains("After") && html.contains("<h1>Hostile</h1>"), "{html}");
        assert!(html.contains("(custom) failed: timeout"), "{html}");
        assert!(html.contains("(custom) failed: heap-limit"), "{html}");
        assert!(html.contains("(custom) failed: output-too-large"), "{html}");
    }
    let metrics = node.metrics_text().await;
    assert!(metrics.contains("vitrina_block_failures_total{store=\"hostile\",reason=\"timeout\"}"), "{metrics}");
}

#[tokio::test]
async fn block_code_is_validated_with_positions_and_refused_at_publish() {
    let node = TestNode::start();
    let token = node.seed_store("valid", "Valid").await;
    let (s, body) = node
        .admin(&token, Method::POST, "/stores/valid/blocks/validate", Some(json!({"code": "function f(s) {\n  return eval('1');\n}"})))
        .await;
    assert_eq!(s, 200);
    assert_eq!(body["valid"], false);
    let err = &body["errors"][0];
    assert_eq!((err["line"].as_u64(), err["column"].as_u64()), (Some(2), Some(10)), "{body}");

    // Saving a bad draft is allowed with warnings; publishing it is refused and nothing changes.
    let (s, body) = node
        .admin(
            &token,
            Method::POST,
            "/stores/valid/pages/home/blocks",
            Some(json!({"type": "custom", "code": "function g() { return globalThis.x; }"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(!body["warnings"].as_array().unwrap().is_empty(), "{body}");
    let (s, body) = node.store_admin("valid", &token).publish_page("home").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error_body(&body, "validation_failed");
    let (_, versions) = node.admin(&token, Method::GET, "/stores/valid/pages/home/versions", None).await;
    assert_eq!(versions["versions"].as_array().unwrap().len(), 1);
    let _: Value = body;
}
