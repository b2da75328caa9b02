//! Fenced copies in object storage: every upload is a new object, made current only through a
//! pointer (`current.json`) guarded by the uploader's fencing token; restore reads the pointer;
//! superseded copies are swept after a grace period.
//!
//! Needs an S3 endpoint in `VITRINA_TEST_S3_ENDPOINT`, like `replication.rs`. Two single nodes
//! on one bucket and prefix, with fencing tokens set through `VITRINA_REPLICATION__COPY_TOKEN`,
//! play a newer owner and a stale one.

use std::time::Duration;

use crate::objects::*;
use reqwest::header::{HeaderMap, HeaderValue, COOKIE};
use reqwest::{Client, StatusCode};
use s3::Bucket;
use serde_json::{json, Value};
use test_support::*;

fn start(env: &[(String, String)]) -> TestNode {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    TestNode::start_with(&env)
}

fn with(mut env: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// The keys of the objects under `prefix`.
async fn objects(bucket: &Bucket, prefix: &str) -> Vec<String> {
    let pages = bucket.list(prefix.to_string(), None).await.expect("list objects");
    pages.into_iter().flat_map(|p| p.contents).map(|o| o.key).collect()
}

/// The pointer of the actor whose directory is `dir`, if any.
async fn pointer(bucket: &Bucket, dir: &str) -> Option<Value> {
    let res = bucket.get_object(format!("/{dir}/current.json")).await.expect("get pointer");
    match res.status_code() {
        200 => Some(serde_json::from_slice(res.as_slice()).expect("the pointer is JSON")),
        404 => None,
        s => panic!("GET pointer: {s}"),
    }
}

/// The one shopper of `store` with copies in the bucket.
async fn only_shopper(bucket: &Bucket, store: &str) -> String {
    let keys = objects(bucket, &format!("it/v1/stores/{store}/shoppers/")).await;
    let mut sids: Vec<String> = keys
        .iter()
        .filter_map(|k| k.strip_prefix(&format!("it/v1/stores/{store}/shoppers/"))?.split('/').next().map(String::from))
        .collect();
    sids.dedup();
    assert_eq!(sids.len(), 1, "{keys:?}");
    sids.remove(0)
}

/// A shopper client for `node` that presents session `sid` (every test node signs with the
/// same session key).
fn shopper_as(node: &TestNode, store: &str, sid: &str) -> Shopper {
    let mut headers = HeaderMap::new();
    headers.insert(COOKIE, HeaderValue::from_str(&session_cookie(sid)).unwrap());
    let http = Client::builder()
        .resolve(&format!("{store}.localhost"), node.addr)
        .default_headers(headers)
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Shopper::new(http, node.base(store))
}

#[tokio::test]
async fn every_upload_is_a_new_object_made_current_by_its_pointer() {
    let Some(endpoint) = s3_endpoint() else { return };
    let bucket = new_bucket(&endpoint).await;
    let node = start(&with(replication_env(&endpoint, &bucket, 3_600_000), &[("VITRINA_REPLICATION__COPY_TOKEN", "7")]));
    let token = node.seed_store("layout", "Layout").await;
    let (status, body) = node.store_admin("layout", &token).patch_settings(json!({"durability": "sync"})).await;
    assert_eq!(status, 200, "{body}");
    let c = node.shopper("layout");
    assert_eq!(c.add_to_cart("mug", 1).await.status, StatusCode::CREATED);
    let sid = only_shopper(&bucket, "layout").await;
    let dir = format!("it/v1/stores/layout/shoppers/{sid}");
    let first = pointer(&bucket, &dir).await.expect("a pointer after a sync write");
    assert_eq!(c.add_to_cart("socks", 2).await.status, StatusCode::CREATED);
    let second = pointer(&bucket, &dir).await.expect("pointer");

    // Each write of a sync store uploaded a new object; the pointer names the latest.
    assert_ne!(first["object"], second["object"], "{first} {second}");
    assert_eq!(second["token"], 7, "{second}");
    assert!(second["seq"].as_u64() > first["seq"].as_u64(), "{first} {second}");
    let mut copies = objects(&bucket, &format!("{dir}/copies/")).await;
    copies.sort();
    assert_eq!(copies.len(), 2, "the superseded copy is kept for the grace period: {copies:?}");
    let latest = second["object"].as_str().unwrap();
    assert!(copies.contains(&latest.to_string()), "{copies:?}");
    let name = latest.rsplit('/').next().unwrap();
    assert!(name.starts_with("00000000000000000007-") && name.ends_with(".db"), "{name}");
    // The pointer's sha256 is the object's, also in its metadata.
    let object = bucket.get_object(format!("/{latest}")).await.unwrap();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(object.as_slice()))
    };
    assert_eq!(second["sha256"], sha.as_str());
    assert_eq!(object.headers().get("x-amz-meta-sha256"), Some(&sha));
    // The store actor has its own directory and pointer.
    assert!(pointer(&bucket, "it/v1/stores/layout/store").await.is_some());

    // A restore after losing the disk reads the pointer: the latest acknowledged write is back.
    let node = node.kill_and_lose_disk();
    node.create_store("layout", "Layout").await;
    let cart = c.cart().await;
    assert_eq!(cart["count"], 3, "{cart}");
}

#[tokio::test]
async fn a_stale_writer_cannot_make_its_copy_current_and_its_object_is_deleted() {
    let Some(endpoint) = s3_endpoint() else { return };
    let bucket = new_bucket(&endpoint).await;
    let env = replication_env(&endpoint, &bucket, 3_600_000);
    // The newer owner (token 5) writes through a sync store.
    let newer = start(&with(env.clone(), &[("VITRINA_REPLICATION__COPY_TOKEN", "5")]));
    let token = newer.seed_store("fence", "Fence").await;
    let (status, body) = newer.store_admin("fence", &token).patch_settings(json!({"durability": "sync"})).await;
    assert_eq!(status, 200, "{body}");
    let c = newer.shopper("fence");
    assert_eq!(c.add_to_cart("mug", 2).await.status, StatusCode::CREATED);
    let sid = only_shopper(&bucket, "fence").await;
    let dir = format!("it/v1/stores/fence/shoppers/{sid}");
    let current = pointer(&bucket, &dir).await.expect("pointer");
    assert_eq!(current["token"], 5, "{current}");

    // A stale node (token 3) on the same bucket restores the actors from their copies ...
    let stale = start(&with(env, &[("VITRINA_REPLICATION__COPY_TOKEN", "3")]));
    // Creating the store there is an admin write of a sync store: committed locally, fenced.
    let res = stale
        .plain()
        .post(stale.admin_url("/stores"))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"id": "fence", "name": "Fence", "currency": "USD"}))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(res).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_error_body(&body, "replication_fenced");
    let old = shopper_as(&stale, "fence", &sid);
    let cart = old.cart().await;
    assert_eq!(cart["count"], 2, "the stale node restored the current copy: {cart}");
    // ... and writes: committed on its disk, but its copy cannot become current.
    let (status, body) = old.add_to_cart("socks", 1).await.parts();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_error_body(&body, "replication_fenced");
    assert_eq!(body["error"]["details"]["committedLocally"], true, "{body}");
    assert_eq!(body["error"]["details"]["fenced"], true, "{body}");
    assert!(stale.metric("vitrina_replication_uploads_total{kind=\"shopper\",outcome=\"fenced\"}").await >= 1);
    assert!(stale.metric("vitrina_replication_uploads_total{kind=\"store\",outcome=\"fenced\"}").await >= 1);

    // The pointer still names the newer owner's copy, and the stale upload is gone.
    assert_eq!(pointer(&bucket, &dir).await.as_ref(), Some(&current));
    let copies = objects(&bucket, &format!("{dir}/copies/")).await;
    assert_eq!(copies, vec![current["object"].as_str().unwrap().to_string()], "the fenced object was deleted");
    let stale_copies = objects(&bucket, "it/v1/stores/fence/").await;
    assert!(!stale_copies.iter().any(|k| k.contains("/00000000000000000003-")), "{stale_copies:?}");

    // The newer owner keeps writing; a restore gets its writes, never the stale one's.
    assert_eq!(c.add_to_cart("tent", 1).await.status, StatusCode::CREATED);
    drop(stale);
    let newer = newer.kill_and_lose_disk();
    newer.create_store("fence", "Fence").await;
    let cart = c.cart().await;
    assert_eq!(cart["count"], 3, "{cart}");
    let items: Vec<&str> = cart["items"].as_array().unwrap().iter().filter_map(|i| i["productId"].as_str()).collect();
    assert!(!items.contains(&"socks"), "the stale node's write was restored: {cart}");
}

#[tokio::test]
async fn superseded_copies_are_swept_after_the_grace_period() {
    let Some(endpoint) = s3_endpoint() else { return };
    let bucket = new_bucket(&endpoint).await;
    let node = start(&with(replication_env(&endpoint, &bucket, 3_600_000), &[("VITRINA_REPLICATION__SWEEP_GRACE_MS", "1000")]));
    let token = node.seed_store("sweep", "Sweep").await;
    let (status, body) = node.store_admin("sweep", &token).patch_settings(json!({"durability": "sync"})).await;
    assert_eq!(status, 200, "{body}");
    let c = node.shopper("sweep");
    for _ in 0..4 {
        assert_eq!(c.add_to_cart("mug", 1).await.status, StatusCode::CREATED);
    }
    let sid = only_shopper(&bucket, "sweep").await;
    let dir = format!("it/v1/stores/sweep/shoppers/{sid}");
    // Four sync writes uploaded four copies; all but the current one are collected.
    wait_until("the superseded copies to be swept", Duration::from_secs(20), || async {
        node.metric("vitrina_replication_swept_total{kind=\"shopper\"}").await >= 3
    })
    .await;
    let current = pointer(&bucket, &dir).await.expect("pointer");
    let copies = objects(&bucket, &format!("{dir}/copies/")).await;
    assert_eq!(copies, vec![current["object"].as_str().unwrap().to_string()], "only the current copy is left");
    // Well past the grace period the current copy is still there, and restores.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(objects(&bucket, &format!("{dir}/copies/")).await, copies);
    let node = node.kill_and_lose_disk();
    node.create_store("sweep", "Sweep").await;
    assert_eq!(c.cart().await["count"], 4);
}

#[tokio::test]
async fn a_copy_in_the_old_layout_is_restored_then_replaced_by_a_pointer() {
    let Some(endpoint) = s3_endpoint() else { return };
    let bucket = new_bucket(&endpoint).await;
    let node = start(&with(replication_env(&endpoint, &bucket, 3_600_000), &[("VITRINA_REPLICATION__SWEEP_GRACE_MS", "1000")]));
    let token = node.seed_store("legacy", "Legacy").await;
    let (status, body) = node.store_admin("legacy", &token).patch_settings(json!({"durability": "sync"})).await;
    assert_eq!(status, 200, "{body}");
    let c = node.shopper("legacy");
    assert_eq!(c.add_to_cart("mug", 2).await.status, StatusCode::CREATED);
    let sid = only_shopper(&bucket, "legacy").await;
    let shopper_dir = format!("it/v1/stores/legacy/shoppers/{sid}");
    // Rewrite both actors' copies as earlier versions kept them: `{dir}.db`, sha256 in its
    // metadata, no pointer.
    for dir in ["it/v1/stores/legacy/store", shopper_dir.as_str()] {
        let current = pointer(&bucket, dir).await.expect("pointer");
        let copy = bucket.get_object(format!("/{}", current["object"].as_str().unwrap())).await.unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert("x-amz-meta-sha256", http::HeaderValue::from_str(current["sha256"].as_str().unwrap()).unwrap());
        let res = bucket
            .put_object_with_content_type_and_headers(format!("/{dir}.db"), copy.as_slice(), "application/vnd.sqlite3", Some(headers))
            .await
            .unwrap();
        assert_eq!(res.status_code(), 200);
        for key in objects(&bucket, &format!("{dir}/")).await {
            bucket.delete_object(format!("/{key}")).await.unwrap();
        }
    }

    let node = node.kill_and_lose_disk();
    node.create_store("legacy", "Legacy").await;
    let cart = c.cart().await;
    assert_eq!(cart["count"], 2, "restored from the old-layout copy: {cart}");
    // The next write makes a pointer; the old-layout copy is swept after the grace period.
    assert_eq!(c.add_to_cart("socks", 1).await.status, StatusCode::CREATED);
    assert!(pointer(&bucket, &shopper_dir).await.is_some());
    wait_until("the old-layout copy to be swept", Duration::from_secs(20), || async {
        !objects(&bucket, &format!("{shopper_dir}.db")).await.contains(&format!("{shopper_dir}.db"))
    })
    .await;
    let node = node.kill_and_lose_disk();
    node.create_store("legacy", "Legacy").await;
    assert_eq!(c.cart().await["count"], 3);
}

#[tokio::test]
async fn copies_a_restart_left_uncollected_are_swept_by_the_next_run() {
    let Some(endpoint) = s3_endpoint() else { return };
    let bucket = new_bucket(&endpoint).await;
    // The first run sweeps nothing: its grace period outlives it.
    let env = with(replication_env(&endpoint, &bucket, 3_600_000), &[("VITRINA_REPLICATION__SWEEP_GRACE_MS", "600000")]);
    let node = start(&env);
    let token = node.seed_store("leftover", "Leftover").await;
    let (status, body) = node.store_admin("leftover", &token).patch_settings(json!({"durability": "sync"})).await;
    assert_eq!(status, 200, "{body}");
    let c = node.shopper("leftover");
    for _ in 0..3 {
        assert_eq!(c.add_to_cart("mug", 1).await.status, StatusCode::CREATED);
    }
    let sid = only_shopper(&bucket, "leftover").await;
    let dir = format!("it/v1/stores/leftover/shoppers/{sid}");
    assert_eq!(objects(&bucket, &format!("{dir}/copies/")).await.len(), 3);
    drop(node);

    // A later node on the bucket (it restores nothing) collects what the first one scheduled.
    let node = start(&with(env, &[("VITRINA_REPLICATION__SWEEP_GRACE_MS", "1000")]));
    wait_until("the leftover copies to be swept", Duration::from_secs(30), || async {
        objects(&bucket, &format!("{dir}/copies/")).await.len() == 1
    })
    .await;
    let current = pointer(&bucket, &dir).await.expect("pointer");
    assert_eq!(objects(&bucket, &format!("{dir}/copies/")).await, vec![current["object"].as_str().unwrap().to_string()]);
    assert!(node.metric("vitrina_replication_swept_total{kind=\"shopper\"}").await >= 2);
}
