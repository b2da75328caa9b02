//! HTTP conventions caches and tools rely on (issue 21, item 6): `HEAD` on every `GET` route,
//! weak `ETag`s with `304 Not Modified`, and anonymous pages a CDN may keep (public, surrogate
//! keys of store and version) only when `cache.public_page_secs` allows and nothing personal
//! is in the response.

use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, SET_COOKIE, VARY};
use reqwest::{Method, StatusCode};
use serde_json::json;
use test_support::*;

const HTML: &str = "text/html,application/xhtml+xml";

fn header(res: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> String {
    res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

#[tokio::test]
async fn head_answers_every_get_route_with_its_headers_and_no_body() {
    let node = TestNode::start();
    let token = node.seed_store("shop", "Shop").await;
    let base = node.base("shop");
    let c = node.bare_client("shop");
    let admin = node.admin_url("/stores/shop/pages");
    let cases: Vec<(&str, String, Option<&str>, Option<&str>)> = vec![
        ("home page", base.clone(), Some(HTML), None),
        ("product page", format!("{base}/products/mug"), Some(HTML), None),
        ("blog", format!("{base}/blog"), Some(HTML), None),
        ("cart JSON", format!("{base}/cart"), None, None),
        ("search JSON", format!("{base}/search?q=mug"), None, None),
        ("admin API read", admin, None, Some(token.as_str())),
        ("health", format!("http://{}/healthz", node.addr), None, None),
    ];
    for (what, url, accept, bearer) in cases {
        let send = |method: Method| {
            let mut req = c.request(method, &url);
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            if let Some(t) = bearer {
                req = req.bearer_auth(t);
            }
            req.send()
        };
        let get = send(Method::GET).await.unwrap();
        let head = send(Method::HEAD).await.unwrap();
        assert_eq!(get.status(), StatusCode::OK, "{what}: GET");
        assert_eq!(head.status(), StatusCode::OK, "{what}: HEAD");
        assert_eq!(header(&head, CONTENT_TYPE), header(&get, CONTENT_TYPE), "{what}: content type");
        assert!(!header(&head, ETAG).is_empty(), "{what}: HEAD carries the validator");
        assert!(head.bytes().await.unwrap().is_empty(), "{what}: HEAD has no body");
        assert!(!get.bytes().await.unwrap().is_empty(), "{what}: GET has a body");
    }
    // A route without GET refuses HEAD as it refuses GET.
    let head = c.head(format!("{base}/checkout")).send().await.unwrap();
    assert!(head.status().is_client_error(), "{}", head.status());
}

#[tokio::test]
async fn a_matching_if_none_match_gets_304_until_the_resource_changes() {
    let node = TestNode::start();
    node.seed_store("shop", "Shop").await;
    let base = node.base("shop");
    let c = node.bare_client("shop");

    // A page: the same bytes, the same tag; a matching request gets 304 without a body.
    let first = c.get(&base).header(ACCEPT, HTML).send().await.unwrap();
    let tag = header(&first, ETAG);
    assert!(tag.starts_with("W/\""), "{tag}");
    let again = c.get(&base).header(ACCEPT, HTML).header(IF_NONE_MATCH, &tag).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&again, ETAG), tag);
    assert!(!header(&again, CACHE_CONTROL).is_empty(), "a 304 repeats Cache-Control");
    assert!(again.bytes().await.unwrap().is_empty());
    let other = c.get(&base).header(ACCEPT, HTML).header(IF_NONE_MATCH, "W/\"0000\"").send().await.unwrap();
    assert_eq!(other.status(), StatusCode::OK);

    // A cart: its tag changes with its contents.
    let shopper = node.shopper("shop");
    assert_eq!(shopper.add_to_cart("mug", 1).await.status, StatusCode::CREATED);
    let cart = shopper.get(format!("{base}/cart")).send().await.unwrap();
    let cart_tag = header(&cart, ETAG);
    let unchanged = shopper.get(format!("{base}/cart")).header(IF_NONE_MATCH, &cart_tag).send().await.unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(shopper.add_to_cart("tent", 1).await.status, StatusCode::CREATED);
    let changed = shopper.get(format!("{base}/cart")).header(IF_NONE_MATCH, &cart_tag).send().await.unwrap();
    assert_eq!(changed.status(), StatusCode::OK, "a changed cart is sent again");
    assert_ne!(header(&changed, ETAG), cart_tag);
}

#[tokio::test]
async fn anonymous_pages_are_private_by_default_and_carry_surrogate_keys() {
    let node = TestNode::start();
    node.seed_store("shop", "Shop").await;
    let first = node.bare_client("shop").get(node.base("shop")).header(ACCEPT, HTML).send().await.unwrap();
    assert_eq!(header(&first, CACHE_CONTROL), "private, no-store");
    assert!(first.headers().get(SET_COOKIE).is_some(), "a first visit starts a session by default");
    let keys = header(&first, "surrogate-key");
    assert!(keys.split(' ').any(|k| k == "vitrina-store-shop"), "{keys}");
}

#[tokio::test]
async fn with_public_pages_a_cdn_may_keep_anonymous_pages_and_nothing_personal() {
    let node = TestNode::start_with(&[("VITRINA_CACHE__PUBLIC_PAGE_SECS", "60"), ("VITRINA_CACHE__STALE_WHILE_REVALIDATE_SECS", "300")]);
    let token = node.seed_store("shop", "Shop").await;
    let base = node.base("shop");
    let c = node.bare_client("shop");

    let first = c.get(&base).header(ACCEPT, HTML).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(header(&first, CACHE_CONTROL), "public, max-age=0, s-maxage=60, stale-while-revalidate=300");
    assert!(first.headers().get(SET_COOKIE).is_none(), "a shared page sets no cookie");
    assert!(first.headers().get_all(VARY).iter().any(|v| v.to_str().unwrap_or("").contains("User-Agent")), "varies by device");
    let keys = header(&first, "surrogate-key");
    let version_key = keys.split(' ').find(|k| k.starts_with("vitrina-store-shop-v")).expect("a version key").to_string();
    assert!(header(&first, "cache-tag").split(',').any(|k| k == version_key), "Cache-Tag names the same keys");

    // Publishing moves the version key.
    let admin = node.store_admin("shop", &token);
    admin.publish_new_page("home", json!({"title": "Home", "blocks": [{"type": "hero", "config": {"heading": "New home"}}]})).await;
    let after = c.get(&base).header(ACCEPT, HTML).send().await.unwrap();
    assert_ne!(header(&after, "surrogate-key"), keys, "a new store version, a new key");

    // A visitor with its own state cookies gets a private page.
    let consented = c.get(&base).header(ACCEPT, HTML).header("cookie", "vitrina_consent=declined").send().await.unwrap();
    assert_eq!(header(&consented, CACHE_CONTROL), "private, no-store");

    // A write still starts a session; that shopper's pages are private.
    let shopper = node.shopper("shop");
    let added = shopper.add_to_cart("mug", 1).await;
    assert_eq!(added.status, StatusCode::CREATED);
    assert!(added.headers.get(SET_COOKIE).is_some(), "the first write mints the session");
    let mine = shopper.page("/").await;
    assert_eq!(mine.headers.get(CACHE_CONTROL).and_then(|v| v.to_str().ok()), Some("private, no-store"));
    assert!(mine.text().contains("id=\"v-cart-count\">1<"));
}

#[tokio::test]
async fn a_method_a_path_does_not_answer_gets_405_naming_those_it_does() {
    let node = TestNode::start();
    let token = node.seed_store("shop", "Shop").await;
    let base = node.base("shop");
    let c = node.bare_client("shop");
    let cases: Vec<(&str, Method, String, Option<&str>, &str)> = vec![
        ("PUT on the cart", Method::PUT, format!("{base}/cart"), None, "GET, HEAD"),
        ("GET on the add-to-cart form's target", Method::GET, format!("{base}/cart/items"), None, "POST"),
        ("GET on a cart line", Method::GET, format!("{base}/cart/items/mug"), None, "PATCH, DELETE, POST"),
        ("GET on checkout", Method::GET, format!("{base}/checkout"), None, "POST"),
        (
            "DELETE on a store's settings",
            Method::DELETE,
            node.admin_url("/stores/shop/settings"),
            Some(token.as_str()),
            "GET, HEAD, PATCH, PUT",
        ),
        ("POST on the health check", Method::POST, format!("http://{}/healthz", node.addr), None, "GET, HEAD"),
    ];
    for (what, method, url, bearer, allow) in cases {
        let mut req = c.request(method, &url).header("origin", &base);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.expect(what);
        let allowed = header(&res, "allow");
        let (status, body) = json_of(res).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{what}: {body}");
        assert_error_body(&body, "method_not_allowed");
        let mut allowed: Vec<&str> = allowed.split(", ").collect();
        let mut expected: Vec<&str> = allow.split(", ").collect();
        allowed.sort_unstable();
        expected.sort_unstable();
        assert_eq!(allowed, expected, "{what}: Allow");
        assert!(body["error"]["message"].as_str().unwrap_or("").contains(allow.split(", ").next().unwrap_or("")), "{what}: {body}");
    }
    // A browser gets a page saying the same, with the request id.
    let res = c.get(format!("{base}/checkout")).header(ACCEPT, HTML).send().await.expect("page");
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&res, "allow"), "POST");
    assert!(header(&res, CONTENT_TYPE).starts_with("text/html"));
    let request_id = header(&res, "x-request-id");
    let page = res.text().await.expect("body");
    assert!(page.contains("GET is not allowed at /checkout") && page.contains(&request_id), "{page}");
    // A path nothing answers is still 404.
    let (status, body) = json_of(c.put(format!("{base}/no-such-thing")).header("origin", &base).send().await.expect("put")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_error_body(&body, "not_found");
}

#[tokio::test]
async fn a_json_body_may_start_with_a_byte_order_mark() {
    let node = TestNode::start();
    let token = node.seed_store("shop", "Shop").await;
    let base = node.base("shop");
    let c = node.bare_client("shop");
    let mut add = b"\xEF\xBB\xBF".to_vec();
    add.extend_from_slice(br#"{"productId":"mug","quantity":2}"#);
    let res = c.post(format!("{base}/cart/items")).header("origin", &base).header(CONTENT_TYPE, "application/json").body(add).send().await;
    let (status, body) = json_of(res.expect("add")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["cart"]["count"], 2, "{body}");
    let mut patch = b"\xEF\xBB\xBF".to_vec();
    patch.extend_from_slice(br#"{"tagline":"read past the mark"}"#);
    let res = c
        .patch(node.admin_url("/stores/shop/settings"))
        .bearer_auth(&token)
        .header(CONTENT_TYPE, "application/json")
        .body(patch)
        .send()
        .await;
    let (status, body) = json_of(res.expect("patch")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A mark anywhere else is still not JSON.
    let res = c
        .post(format!("{base}/cart/items"))
        .header("origin", &base)
        .header(CONTENT_TYPE, "application/json")
        .body(b"{\xEF\xBB\xBF}".to_vec())
        .send()
        .await;
    let (status, body) = json_of(res.expect("bad")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_error_body(&body, "invalid_json");
}
