//! Durability beyond one node: actor files replicated to S3-compatible object storage.
//!
//! Needs an S3 endpoint in `VITRINA_TEST_S3_ENDPOINT` (`.ci/run` starts moto's server). Without
//! it these tests fail when `CI` is set and are skipped with a message otherwise.
//!
//! The node catalog (stores, hosts, tokens) is per node and not replicated yet, so after losing
//! a disk each test re-creates the store by id on the fresh node, as an operator would; the
//! store's own state (products, pages, settings) and its shoppers' state come back from the
//! bucket.

use std::time::Duration;

use crate::objects::*;
use reqwest::{Method, StatusCode};
use s3::Bucket;
use serde_json::json;
use test_support::*;

fn start(env: &[(String, String)]) -> TestNode {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    TestNode::start_with(&env)
}

/// The objects under `prefix` in the bucket.
async fn objects(bucket: &Bucket, prefix: &str) -> Vec<String> {
    let pages = bucket.list(prefix.to_string(), None).await.expect("list objects");
    pages.into_iter().flat_map(|p| p.contents).map(|o| o.key).collect()
}

#[tokio::test]
async fn async_copies_bring_back_carts_and_store_state_after_a_lost_disk() {
    let Some(endpoint) = s3_endpoint() else { return };
    let bucket = new_bucket(&endpoint).await;
    let node = start(&replication_env(&endpoint, &bucket, 200));
    node.seed_store("rep", "Replicated").await;
    let c = node.shopper("rep");
    for (product, quantity) in [("mug", 2), ("tent", 1), ("socks", 3)] {
        assert_eq!(c.add_to_cart(product, quantity).await.status, StatusCode::CREATED);
    }
    // Older than the snapshot interval: wait until both actors' copies are uploaded.
    wait_until("snapshots of the store and the shopper", Duration::from_secs(15), || async {
        node.metric("vitrina_replication_uploads_total{kind=\"shopper\",outcome=\"ok\"}").await >= 1
            && node.metric("vitrina_replication_uploads_total{kind=\"store\",outcome=\"ok\"}").await >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let keys = objects(&bucket, "it/v1/").await;
    assert!(keys.contains(&"it/v1/stores/rep/store/current.json".to_string()), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("it/v1/stores/rep/shoppers/") && k.ends_with("/current.json")), "{keys:?}");

    let node = node.kill_and_lose_disk();
    let base = node.base("rep");
    assert!(!node.data_dir.join("stores").exists(), "the disk really is empty");
    // The catalog is per node: re-create the store; its own state comes from the bucket.
    let token = node.create_store("rep", "Replicated").await;
    let (status, body) = c.cart_answer().await.parts();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cart"]["count"], 6, "{body}");
    assert_eq!(body["cart"]["subtotalMinor"], 2 * 1250 + 19900 + 3 * 1800, "{body}");
    let (status, products) = node.admin(&token, Method::GET, "/stores/rep/products", None).await;
    assert_eq!(status, 200);
    assert_eq!(products["products"].as_array().map(Vec::len), Some(3), "{products}");
    let page = c.get(&base).header("accept", "text/html").send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Welcome to Replicated"), "published pages came back");
    assert!(node.metric("vitrina_replication_restores_total{kind=\"shopper\"}").await >= 1);
    assert!(node.metric("vitrina_replication_restores_total{kind=\"store\"}").await >= 1);
}

#[tokio::test]
async fn a_passivated_actor_is_uploaded_without_waiting_for_the_interval() {
    let Some(endpoint) = s3_endpoint() else { return };
    let bucket = new_bucket(&endpoint).await;
    let mut env = replication_env(&endpoint, &bucket, 3_600_000);
    env.push(("VITRINA_ACTORS__IDLE_TIMEOUT_SECS".into(), "1".into()));
    let node = start(&env);
    node.seed_store("nap", "Nap").await;
    let c = node.shopper("nap");
    assert_eq!(c.add_to_cart("socks", 5).await.status, StatusCode::CREATED);
    // An hour's interval: the acknowledged cart is not in the bucket yet, and the node says so.
    let pending = node.replication_pending().await;
    assert!(pending.is_some_and(|n| n >= 1), "pending uploads right after a write: {pending:?}");
    // Both actors passivate after a second idle; each is uploaded as it closes its file.
    wait_until("the passivated actors' uploads", Duration::from_secs(15), || async {
        node.replication_pending().await == Some(0)
            && node.live_shoppers().await == 0
            && node.metric("vitrina_replication_uploads_total{kind=\"shopper\",outcome=\"ok\"}").await >= 1
            && node.metric("vitrina_replication_uploads_total{kind=\"store\",outcome=\"ok\"}").await >= 1
    })
    .await;
    let node = node.kill_and_lose_disk();
    node.create_store("nap", "Nap").await;
    let (status, body) = c.cart_answer().await.parts();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cart"]["count"], 5, "{body}");
}

#[tokio::test]
async fn sync_durability_keeps_every_acknowledged_write_even_when_killed_right_after_the_ack() {
    let Some(endpoint) = s3_endpoint() else { return };
    let bucket = new_bucket(&endpoint).await;
    // An interval far beyond the test: only the sync barrier can have uploaded anything.
    let node = start(&replication_env(&endpoint, &bucket, 3_600_000));
    let sync_token = node.seed_store("strict", "Strict").await;
    let (status, body) = node.store_admin("strict", &sync_token).patch_settings(json!({"durability": "sync"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["settings"]["durability"], "sync");
    // Control: a store left on async durability, on the same node.
    node.seed_store("relaxed", "Relaxed").await;

    let (strict, relaxed) = (node.shopper("strict"), node.shopper("relaxed"));
    assert_eq!(strict.add_to_cart("mug", 2).await.status, StatusCode::CREATED);
    assert_eq!(strict.add_to_cart("socks", 4).await.status, StatusCode::CREATED);
    let (status, body) = strict.set_quantity("mug", 3).await.parts();
    assert_eq!(status, 200, "{body}");
    // An admin write of the sync store, acknowledged last.
    let (status, body) = node
        .admin(
            &sync_token,
            Method::PUT,
            "/stores/strict/products/kettle",
            Some(json!({"title": "Camp Kettle", "price": "39.00", "stock": 4})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    assert_eq!(relaxed.add_to_cart("mug", 1).await.status, StatusCode::CREATED);

    // kill -9 right after the last acknowledgement, and lose the disk.
    let node = node.kill_and_lose_disk();
    let sync_token = node.create_store("strict", "Strict").await;
    node.create_store("relaxed", "Relaxed").await;
    let (status, body) = strict.cart_answer().await.parts();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cart"]["count"], 7, "every acknowledged cart write is back: {body}");
    assert_eq!(body["cart"]["subtotalMinor"], 3 * 1250 + 4 * 1800, "{body}");
    let (status, body) = node.admin(&sync_token, Method::GET, "/stores/strict/products/kettle", None).await;
    assert_eq!(status, 200, "the acknowledged admin write is back: {body}");
    assert_eq!(body["title"], "Camp Kettle", "{body}");
    // The async store had nothing uploaded yet (interval of an hour): its cart is gone. This is
    // the documented RPO of async durability, and shows the sync barrier is what saved the other.
    let (status, body) = relaxed.cart_answer().await.parts();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cart"]["count"], 0, "{body}");
}

#[tokio::test]
async fn sync_durability_reports_a_failed_upload_as_replication_failed() {
    let Some(endpoint) = s3_endpoint() else { return };
    let bucket = new_bucket(&endpoint).await;
    let node = start(&replication_env(&endpoint, &bucket, 3_600_000));
    let token = node.seed_store("flaky", "Flaky").await;
    let c = node.shopper("flaky");
    assert_eq!(c.add_to_cart("mug", 1).await.status, StatusCode::CREATED);
    // Nothing was uploaded yet (hour-long interval), so the bucket is empty and can go: from
    // now on every upload fails.
    let deleted = bucket.delete().await.expect("delete bucket");
    assert!((200..300).contains(&deleted), "delete bucket: {deleted}");

    let (status, body) = node.store_admin("flaky", &token).patch_settings(json!({"durability": "sync"})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_error_body(&body, "replication_failed");
    assert_eq!(body["error"]["details"]["committedLocally"], true, "{body}");
    let (status, body) = c.add_to_cart("mug", 1).await.parts();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_error_body(&body, "replication_failed");
    // The local commits stand: the setting and the cart line are there.
    let (status, body) = c.cart_answer().await.parts();
    assert_eq!(status, 200);
    assert_eq!(body["cart"]["count"], 2, "{body}");
    let (_, body) = node.admin(&token, Method::GET, "/stores/flaky/settings", None).await;
    assert_eq!(body["durability"], "sync", "{body}");
    assert!(node.metric("vitrina_replication_uploads_total{kind=\"shopper\",outcome=\"failed\"}").await >= 1);
    // The commits that could not be uploaded are still waiting: the age of the oldest grows.
    let oldest = || async {
        let text = node.metrics_text().await;
        text.lines().find_map(|l| l.strip_prefix("vitrina_replication_oldest_pending_seconds ")).and_then(|v| v.trim().parse::<f64>().ok())
    };
    let first = oldest().await.expect("the gauge is reported");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = oldest().await.expect("the gauge is reported");
    assert!(first > 0.0 && later >= first + 1.0, "oldest pending change: {first} s, then {later} s");
}

#[tokio::test]
async fn sync_durability_is_refused_on_a_node_without_replication() {
    let node = TestNode::start();
    let token = node.seed_store("solo", "Solo").await;
    let (status, body) = node.store_admin("solo", &token).patch_settings(json!({"durability": "sync"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = node.store_admin("solo", &token).patch_settings(json!({"durability": "eventually"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = node.admin(&token, Method::GET, "/stores/solo/settings", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["durability"], "async", "{body}");
}

#[tokio::test]
async fn a_tampered_copy_is_refused_on_restore_rather_than_served() {
    let Some(endpoint) = s3_endpoint() else { return };
    let bucket = new_bucket(&endpoint).await;
    let node = start(&replication_env(&endpoint, &bucket, 200));
    node.seed_store("tamper", "Tamper").await;
    let c = node.shopper("tamper");
    assert_eq!(c.add_to_cart("mug", 2).await.status, StatusCode::CREATED);
    wait_until("the shopper's snapshot", Duration::from_secs(15), || async {
        node.metric("vitrina_replication_uploads_total{kind=\"shopper\",outcome=\"ok\"}").await >= 1
    })
    .await;
    let node = node.kill_and_lose_disk();
    node.create_store("tamper", "Tamper").await;

    let keys = objects(&bucket, "it/v1/stores/tamper/shoppers/").await;
    let pointer_key = keys.iter().find(|k| k.ends_with("/current.json")).expect("the shopper's pointer");
    let pointer_key = format!("/{pointer_key}");
    let pointer = bucket.get_object(&pointer_key).await.expect("get pointer");
    let pointer: serde_json::Value = serde_json::from_slice(pointer.as_slice()).expect("pointer JSON");
    let object = format!("/{}", pointer["object"].as_str().expect("the pointer names its copy"));
    let original = bucket.get_object(&object).await.expect("get copy");
    assert_eq!(original.status_code(), 200);
    let sha = pointer["sha256"].as_str().expect("the pointer's checksum").to_string();

    // 1. Flip bytes in the middle, keep the pointer's checksum: refused by the checksum.
    let mut bytes = original.as_slice().to_vec();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    put_with_checksum(&bucket, &object, &bytes, &sha).await;
    let (status, body) = c.cart_answer().await.parts();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a tampered copy must not be served: {body}");
    assert_error_body(&body, "replication_failed");
    assert!(body["error"]["message"].as_str().unwrap().contains("checksum"), "{body}");

    // 2. Garbage with a matching checksum in the pointer: refused by the SQLite integrity check.
    let garbage = b"definitely not an SQLite database ".repeat(200);
    let garbage_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&garbage))
    };
    put_with_checksum(&bucket, &object, &garbage, &garbage_sha).await;
    put_pointer(&bucket, &pointer_key, &pointer, &garbage_sha).await;
    let (status, body) = c.cart_answer().await.parts();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("integrity"), "{body}");
    assert!(node.metric("vitrina_replication_restore_failures_total{kind=\"shopper\",reason=\"checksum\"}").await >= 1);
    assert!(node.metric("vitrina_replication_restore_failures_total{kind=\"shopper\",reason=\"integrity\"}").await >= 1);
    let shoppers_dir = node.data_dir.join("stores").join("tamper").join("shoppers");
    let installed = walk(&shoppers_dir);
    assert!(installed.is_empty(), "nothing was installed: {installed:?}");

    // 3. The genuine copy again: restored.
    put_with_checksum(&bucket, &object, original.as_slice(), &sha).await;
    put_pointer(&bucket, &pointer_key, &pointer, &sha).await;
    let (status, body) = c.cart_answer().await.parts();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cart"]["count"], 2, "{body}");
}

async fn put_with_checksum(bucket: &Bucket, object: &str, bytes: &[u8], sha: &str) {
    let mut headers = http::HeaderMap::new();
    headers.insert("x-amz-meta-sha256", http::HeaderValue::from_str(sha).unwrap());
    let res = bucket.put_object_with_content_type_and_headers(object, bytes, "application/vnd.sqlite3", Some(headers)).await.expect("put");
    assert_eq!(res.status_code(), 200);
}

/// Rewrites the pointer of a copy with another checksum.
async fn put_pointer(bucket: &Bucket, key: &str, pointer: &serde_json::Value, sha: &str) {
    let mut pointer = pointer.clone();
    pointer["sha256"] = json!(sha);
    let res = bucket.put_object_with_content_type(key, pointer.to_string().as_bytes(), "application/json").await.expect("put pointer");
    assert_eq!(res.status_code(), 200);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.filter_map(Result::ok).flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] }).collect()
}
