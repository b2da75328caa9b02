//! Bounded state and what the node's files expose, black-box: a per-store cap on shopper files,
//! idle shopper files deleted by the sweeper (local file, WAL and the object-storage copy), a
//! full disk answering 507 while reads go on, file modes, webhook secrets sealed at rest, and
//! admin token rotation. Each hostile case is a row of the `edge-security` table.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;
use test_support::table::{record, record_with};
use test_support::*;

const TABLE: &str = "edge-security";
const SECRET: &str = "whsec_state_0123456789abcdef";

/// Every `*.db` shopper file of `store` under the node's data directory.
fn shopper_files(data_dir: &Path, store: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let root = data_dir.join("stores").join(store).join("shoppers");
    for fanout in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(fanout.path()).into_iter().flatten().flatten() {
            let path = file.path();
            if path.extension().is_some_and(|e| e == "db") {
                out.push(path);
            }
        }
    }
    out
}

/// Every file and directory under `root`.
fn walk(root: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            }
            out.push((entry.path(), meta));
        }
    }
    out
}

fn cart_quantities(cart: &Value) -> Vec<(String, i64)> {
    cart["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["productId"].as_str().unwrap().to_string(), i["quantity"].as_i64().unwrap()))
        .collect()
}

#[tokio::test]
async fn shopper_files_are_capped_per_store_and_existing_shoppers_keep_working() {
    let node = TestNode::start_with(&[("VITRINA_SHOPPER__MAX_PER_STORE", "3")]);
    node.seed_store("capped", "Capped").await;
    node.seed_store("other", "Other").await;
    let base = node.base("capped");

    let shoppers: Vec<Shopper> = (0..3).map(|_| node.shopper("capped")).collect();
    for c in &shoppers {
        let (s, b) = c.add_to_cart("mug", 1).await.parts();
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    assert_eq!(shopper_files(&node.data_dir, "capped").len(), 3);

    // A fourth shopper's first write is refused with the uniform body, and makes no file.
    let late = node.shopper("capped");
    let (s, b) = late.add_to_cart("mug", 1).await.parts();
    assert_eq!(s, StatusCode::INSUFFICIENT_STORAGE, "{b}");
    assert_error_body(&b, "shopper_limit_reached");
    assert_eq!(b["error"]["details"]["limit"], 3, "{b}");
    let (s, b) = json_of(late.put(format!("{base}/preferences")).json(&json!({"region": "EU"})).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::INSUFFICIENT_STORAGE, "{b}");
    assert_eq!(shopper_files(&node.data_dir, "capped").len(), 3, "a refused shopper got a file");
    // Its reads go on: pages (a product view is not recorded) and an empty cart.
    let res = late.get(format!("{base}/products/mug")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("Enamel Mug"));
    assert_eq!(late.cart().await["items"], json!([]));
    assert_eq!(shopper_files(&node.data_dir, "capped").len(), 3);

    // Existing shoppers keep writing; another store is not affected.
    let (s, b) = shoppers[0].add_to_cart("socks", 2).await.parts();
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(cart_quantities(&shoppers[0].cart().await), vec![("mug".into(), 1), ("socks".into(), 2)]);
    let (s, b) = node.shopper("other").add_to_cart("mug", 1).await.parts();
    assert_eq!(s, StatusCode::CREATED, "{b}");
    record_with(TABLE, "bounded-state", "new shopper past the per-store file cap", "refused", "507 shopper_limit_reached, no file");

    // The count survives a restart (rebuilt from the directory).
    let node = node.kill_and_restart();
    let (s, b) = node.shopper("capped").add_to_cart("mug", 1).await.parts();
    assert_eq!(s, StatusCode::INSUFFICIENT_STORAGE, "{b}");
    let (s, b) = shoppers[1].add_to_cart("tent", 1).await.parts();
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(shopper_files(&node.data_dir, "capped").len(), 3);
    record_with(TABLE, "bounded-state", "per-store file cap after a restart", "bounded", "counted from the directory");
}

#[tokio::test]
async fn idle_shopper_files_are_deleted_but_not_undelivered_orders_or_live_shoppers() {
    let node = TestNode::start_with(&[
        ("VITRINA_SHOPPER__IDLE_TTL_SECS", "3"),
        ("VITRINA_ACTORS__IDLE_TIMEOUT_SECS", "1"),
        ("VITRINA_ACTORS__ISOLATE_IDLE_SECS", "1"),
    ]);
    node.seed_store("idle", "Idle").await;
    let base = node.base("idle");

    let idle = node.shopper("idle");
    let (s, b) = idle.add_to_cart("mug", 2).await.parts();
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // A shopper whose order is not delivered (no commerce backend): its file must stay.
    let ordering = node.shopper("idle");
    let (s, b) = ordering.add_to_cart("tent", 1).await.parts();
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) =
        json_of(ordering.post(format!("{base}/checkout")).header("idempotency-key", "order-1").json(&json!({})).send().await.unwrap())
            .await;
    assert!(s.is_success(), "{s} {b}");
    let order_id = b["order"]["id"].as_str().map(str::to_string).or_else(|| b["id"].as_str().map(str::to_string)).expect("order id");
    let files = shopper_files(&node.data_dir, "idle");
    assert_eq!(files.len(), 2);

    // A shopper that keeps writing stays (its file is written more often than the TTL).
    let busy = node.shopper("idle");
    let mut idle_file = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let (s, b) = busy.add_to_cart("socks", 1).await.parts();
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let now: Vec<PathBuf> = shopper_files(&node.data_dir, "idle");
        if now.len() == 2 && node.metric("vitrina_shoppers_expired_total").await >= 1 {
            idle_file = files.iter().find(|f| !now.contains(f)).cloned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let gone = idle_file.expect("the idle shopper's file was not deleted within 30 s");
    for suffix in ["", "-wal", "-shm"] {
        let mut p = gone.as_os_str().to_owned();
        p.push(suffix);
        assert!(!Path::new(&p).exists(), "{p:?} is still there");
    }
    record_with(TABLE, "bounded-state", "shopper file idle past its TTL", "deleted", "file, WAL and shared memory");

    // The order's shopper still has its order; the expired one starts empty, and reading its
    // session creates nothing.
    let (s, b) =
        json_of(ordering.get(format!("{base}/orders/{order_id}")).header("accept", "application/json").send().await.unwrap()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    record_with(TABLE, "bounded-state", "idle shopper with an undelivered order", "bounded", "kept until delivered");
    assert_eq!(idle.cart().await["items"], json!([]));
    assert_eq!(shopper_files(&node.data_dir, "idle").len(), 2);
    let (s, b) = busy.add_to_cart("socks", 1).await.parts();
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert!(cart_quantities(&busy.cart().await).iter().any(|(p, q)| p == "socks" && *q >= 2), "a shopper that kept writing lost its cart");
    record_with(TABLE, "bounded-state", "shopper writing more often than the TTL", "bounded", "kept");
}

#[tokio::test]
async fn an_expired_shoppers_copy_in_object_storage_is_deleted_too() {
    let Some(endpoint) = crate::objects::s3_endpoint() else { return };
    let bucket = crate::objects::new_bucket(&endpoint).await;
    let node = TestNode::start_with(&[
        ("VITRINA_REPLICATION__ENDPOINT", endpoint.as_str()),
        ("VITRINA_REPLICATION__BUCKET", bucket.name.as_str()),
        ("VITRINA_REPLICATION__REGION", crate::objects::REGION),
        ("VITRINA_REPLICATION__ACCESS_KEY", crate::objects::ACCESS_KEY),
        ("VITRINA_REPLICATION__SECRET_KEY", crate::objects::SECRET_KEY),
        ("VITRINA_REPLICATION__SNAPSHOT_INTERVAL_MS", "200"),
        ("VITRINA_SHOPPER__IDLE_TTL_SECS", "3"),
        ("VITRINA_ACTORS__IDLE_TIMEOUT_SECS", "1"),
        ("VITRINA_ACTORS__ISOLATE_IDLE_SECS", "1"),
    ]);
    node.seed_store("copies", "Copies").await;
    let c = node.shopper("copies");
    let (s, b) = c.add_to_cart("mug", 1).await.parts();
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let file = shopper_files(&node.data_dir, "copies").pop().expect("shopper file");
    let sid = file.file_stem().unwrap().to_str().unwrap().to_string();
    let pointer = format!("vitrina/stores/copies/shoppers/{sid}/current.json");
    let listed = |bucket: Box<s3::Bucket>| async move {
        let pages = bucket.list("vitrina/stores/copies/shoppers/".to_string(), None).await.expect("list objects");
        pages.into_iter().flat_map(|p| p.contents).map(|o| o.key).collect::<Vec<String>>()
    };
    wait_until("the shopper's copy to be uploaded", Duration::from_secs(20), || async {
        let keys = listed(bucket.clone()).await;
        keys.contains(&pointer) && keys.iter().any(|k| k.starts_with(&format!("vitrina/stores/copies/shoppers/{sid}/copies/")))
    })
    .await;
    wait_until("the idle shopper to expire", Duration::from_secs(30), || async {
        node.metric("vitrina_shoppers_expired_total").await >= 1
    })
    .await;
    assert!(!file.exists());
    let left = listed(bucket.clone()).await;
    assert!(left.is_empty(), "the object-storage copies of an expired shopper are still there: {left:?}");
    // And it is not restored: the session starts empty.
    assert_eq!(c.cart().await["items"], json!([]));
    record_with(TABLE, "bounded-state", "expired shopper's object-storage copy", "deleted", "");
}

/// A tmpfs of a few MiB mounted for one test, unmounted when dropped. `None` (with a message)
/// where this process may not mount; CI must be able to.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallDisk { dir }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                if std::env::var_os("CI").is_some() {
                    panic!("cannot mount a small tmpfs for the full-disk test ({why}); CI runs as root");
                }
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "SKIPPED: the full-disk test needs to mount a tmpfs (run as root): {why}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a filler file until the filesystem is full; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0xA5u8; 64 * 1024];
        loop {
            if f.write_all(&chunk).is_err() {
                break;
            }
        }
        let small = vec![0xA5u8; 512];
        while f.write_all(&small).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

#[tokio::test]
async fn a_full_disk_refuses_writes_with_507_serves_reads_and_loses_nothing() {
    let Some(disk) = SmallDisk::mount("24m") else { return };
    let data = disk.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let node = TestNode::start_in(&data, &[]);
    let token = node.seed_store("full", "Full").await;
    let base = node.base("full");
    let before = node.shopper("full");
    let (s, b) = before.add_to_cart("mug", 2).await.parts();
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = before.add_to_cart("socks", 1).await.parts();
    assert_eq!(s, StatusCode::CREATED, "{b}");

    let filler = disk.fill();

    // Writes that need room: a new shopper's first write, a large admin batch.
    let newcomer = node.shopper("full");
    let (s, b) = newcomer.add_to_cart("mug", 1).await.parts();
    assert_eq!(s, StatusCode::INSUFFICIENT_STORAGE, "{b}");
    assert_error_body(&b, "insufficient_storage");
    let big: Vec<Value> = (0..50)
        .map(|i| json!({"id": format!("big-{i}"), "handle": format!("big-{i}"), "title": format!("Big {i}"), "description": "x".repeat(3500), "price": "1.00", "stock": 1}))
        .collect();
    let (s, b) = node.admin(&token, Method::POST, "/stores/full/products", Some(json!({"products": big}))).await;
    assert_eq!(s, StatusCode::INSUFFICIENT_STORAGE, "{b}");
    assert_error_body(&b, "insufficient_storage");
    // An existing shopper's small write may fit in its kept WAL; if not, it is a 507 too.
    let (s, b) = before.add_to_cart("tent", 1).await.parts();
    assert!(s == StatusCode::CREATED || s == StatusCode::INSUFFICIENT_STORAGE, "{s} {b}");
    if s == StatusCode::INSUFFICIENT_STORAGE {
        assert_error_body(&b, "insufficient_storage");
    }
    let tent_added = s == StatusCode::CREATED;
    record_with(TABLE, "bounded-state", "writes on a full disk", "refused", "507 insufficient_storage");

    // Reads go on: pages, the cart, the admin API, a product page (its view is not recorded).
    let expected: Vec<(String, i64)> =
        [("mug", 2), ("socks", 1)].into_iter().chain(tent_added.then_some(("tent", 1))).map(|(p, q)| (p.to_string(), q)).collect();
    let mut sorted = expected.clone();
    sorted.sort();
    assert_eq!(cart_quantities(&before.cart().await), sorted);
    for path in ["/", "/products/mug", "/cart"] {
        let res = newcomer.get(format!("{base}{path}")).header("accept", "text/html").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "GET {path} on a full disk");
    }
    let res = before.get(format!("{base}/products/tent")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (s, b) = node.admin(&token, Method::GET, "/stores/full/products", None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(!b.to_string().contains("big-0"), "part of a refused batch was saved");
    record_with(TABLE, "bounded-state", "reads on a full disk", "bounded", "200");

    // Space comes back: writes succeed, and nothing written before is lost or corrupt.
    std::fs::remove_file(&filler).unwrap();
    let (s, b) = newcomer.add_to_cart("mug", 1).await.parts();
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = before.add_to_cart("tent", 2).await.parts();
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = node
        .admin(
            &token,
            Method::POST,
            "/stores/full/products",
            Some(json!({"products": [{"id": "after", "handle": "after", "title": "After", "price": "2.00", "stock": 1}]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let node = node.kill_and_restart();
    let mut after = vec![("mug".to_string(), 2), ("socks".to_string(), 1), ("tent".to_string(), 2)];
    after.sort();
    assert_eq!(cart_quantities(&before.cart().await), after);
    assert_eq!(cart_quantities(&newcomer.cart().await), vec![("mug".to_string(), 1)]);
    let (s, b) = node.admin(&token, Method::GET, "/stores/full/products/after", None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    for (path, meta) in walk(&data) {
        if meta.is_file() && path.extension().is_some_and(|e| e == "db") {
            let conn = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
            let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
            assert_eq!(check, "ok", "{path:?}");
        }
    }
    record_with(TABLE, "bounded-state", "full disk, then space freed", "bounded", "writes resume, no data lost, integrity ok");
    drop(node);
}

#[tokio::test]
async fn data_files_are_owner_only_and_older_modes_are_tightened() {
    let node = TestNode::start_with(&[]);
    let token = node.seed_store("modes", "Modes").await;
    let (s, b) = node.admin(&token, Method::PUT, "/stores/modes/webhooks", Some(json!({"secret": SECRET}))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let c = node.shopper("modes");
    let (s, b) = c.add_to_cart("mug", 1).await.parts();
    assert_eq!(s, StatusCode::CREATED, "{b}");

    let check = |data: &Path| {
        let entries = walk(data);
        let names: Vec<String> = entries.iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().to_string()).collect();
        for expected in ["catalog.db", "secret-key", "store.db", "store.db-wal", "store.db-shm"] {
            assert!(names.iter().any(|n| n == expected), "no {expected} among {names:?}");
        }
        assert!(names.iter().any(|n| n.ends_with(".db-wal")) && entries.len() > 8);
        for (path, meta) in &entries {
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_dir() {
                assert_eq!(mode, 0o700, "{path:?} is {mode:o}");
            } else {
                assert_eq!(mode, 0o600, "{path:?} is {mode:o}");
            }
        }
        entries.len()
    };
    let n = check(&node.data_dir);
    record_with(TABLE, "exposure", "data files and directories readable by other users", "refused", &format!("{n} files 0600, dirs 0700"));

    // Files an older version left readable are tightened at startup.
    let shopper = shopper_files(&node.data_dir, "modes").pop().unwrap();
    let node = {
        let data = node.data_dir.clone();
        let node = node.kill_and_restart();
        for p in [shopper.clone(), data.join("stores/modes/store.db"), data.join("node/catalog.db")] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::set_permissions(shopper.parent().unwrap(), std::fs::Permissions::from_mode(0o755)).unwrap();
        node.kill_and_restart()
    };
    assert_eq!(c.cart().await["items"][0]["productId"], "mug");
    check(&node.data_dir);
    record(TABLE, "exposure", "modes left open by an older version", "refused");
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Sends a generic webhook for `store` signed with `secret`.
async fn send_generic(node: &TestNode, store: &str, secret: &str, id: &str, price: &str) -> (StatusCode, Value) {
    let body = json!({"id": id, "store": store, "type": "product.upsert",
        "data": {"id": "mug", "title": "Enamel Mug", "price": price, "stock": 5, "updatedAt": format!("2030-01-01T00:00:{:02}Z", id.len() % 60)}})
    .to_string();
    json_of(node.generic_webhook(store, secret, unix_now(), &body).await).await
}

/// Whether `needle` occurs in the store's database file or its WAL.
fn store_files_contain(data: &Path, store: &str, needle: &str) -> bool {
    let db = data.join("stores").join(store).join("store.db");
    ["", "-wal"].iter().any(|suffix| {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        std::fs::read(PathBuf::from(p)).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
    })
}

#[tokio::test]
async fn webhook_secrets_are_sealed_at_rest_and_still_verify_after_a_restart() {
    let node = TestNode::start_with(&[]);
    let token = node.seed_store("sealed", "Sealed").await;
    let (s, b) = node.admin(&token, Method::PUT, "/stores/sealed/webhooks", Some(json!({"secret": SECRET}))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = send_generic(&node, "sealed", SECRET, "w-1", "3.00").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(!store_files_contain(&node.data_dir, "sealed", SECRET), "the webhook secret is readable in the store's files");
    let key = std::fs::read_to_string(node.data_dir.join("node/secret-key")).unwrap();
    assert!(!key.trim().is_empty());

    let node = node.kill_and_restart();
    let (s, b) = send_generic(&node, "sealed", SECRET, "w-22", "4.00").await;
    assert_eq!(s, StatusCode::OK, "a signed webhook no longer verifies after a restart: {b}");
    let (s, b) = send_generic(&node, "sealed", "whsec_wrong_0123456789abcdef", "w-333", "5.00").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert!(!store_files_contain(&node.data_dir, "sealed", SECRET));
    record_with(TABLE, "exposure", "webhook secret in the store's file", "refused", "sealed (ChaCha20-Poly1305), verifies after restart");

    // A secret stored in plaintext by an older version is sealed when its store opens.
    let data = node.data_dir.clone();
    let legacy = "whsec_legacy_plaintext_0123456789";
    let node = {
        let mut node = node;
        node.kill();
        let conn = rusqlite::Connection::open(data.join("stores/sealed/store.db")).unwrap();
        conn.execute("UPDATE webhook_config SET secret = ?1 WHERE id = 1", [legacy]).unwrap();
        drop(conn);
        assert!(store_files_contain(&data, "sealed", legacy));
        node.kill_and_restart()
    };
    let (s, b) = send_generic(&node, "sealed", legacy, "w-4444", "6.00").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(!store_files_contain(&data, "sealed", legacy), "the plaintext secret is still in the store's files after migration");
    record_with(TABLE, "exposure", "plaintext webhook secret from an older version", "refused", "sealed on open");
}

#[tokio::test]
async fn a_rotated_admin_token_is_refused_at_once() {
    let node = TestNode::start_with(&[]);
    let old = node.seed_store("rot", "Rot").await;
    let other = node.create_store("rot-other", "Other").await;

    let (s, b) = node.admin(&other, Method::POST, "/stores/rot/token/rotate", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "another store's token rotated this one: {b}");
    let (s, b) = node.admin("vt_made_up", Method::POST, "/stores/rot/token/rotate", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert_error_body(&b, "unauthorized");

    let (s, b) = node.admin(&old, Method::POST, "/stores/rot/token/rotate", None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let new = b["adminToken"].as_str().expect("new token").to_string();
    assert_ne!(new, old);
    let (s, b) = node.admin(&old, Method::GET, "/stores/rot/products", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the old token still works: {b}");
    assert_error_body(&b, "unauthorized");
    let (s, b) = node.admin(&new, Method::GET, "/stores/rot/products", None).await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // The operator can rotate a store's token it does not know (a leaked one).
    let (s, b) = node.admin("test-operator-token", Method::POST, "/stores/rot/token/rotate", None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let newest = b["adminToken"].as_str().unwrap().to_string();
    let (s, _) = node.admin(&new, Method::GET, "/stores/rot/products", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Across a restart too.
    let node = node.kill_and_restart();
    let (s, _) = node.admin(&old, Method::GET, "/stores/rot/products", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = node.admin(&newest, Method::GET, "/stores/rot/products", None).await;
    assert_eq!(s, StatusCode::OK);
    record_with(TABLE, "exposure", "admin token after rotation", "rotated", "old token 401 at once");
}

#[tokio::test]
async fn a_rotated_token_is_refused_on_every_node_of_a_cluster() {
    let mut nodes = test_support::start_cluster(2, &[]).await;
    let n2 = nodes.pop().unwrap();
    let n1 = nodes.pop().unwrap();
    let old = n1.create_store("clrot", "Cluster rot").await;
    wait_until("the store to reach n2", Duration::from_secs(10), || async {
        n2.admin(&old, Method::GET, "/stores/clrot/settings", None).await.0 == StatusCode::OK
    })
    .await;
    // The catalog as a node that has not heard of the rotation yet will push it.
    let (s, stale) = internal_call(&n2, Method::GET, "/internal/catalog", "").await;
    assert_eq!(s, StatusCode::OK, "{stale}");
    let (s, b) = n1.admin(&old, Method::POST, "/stores/clrot/token/rotate", None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let new = b["adminToken"].as_str().unwrap().to_string();
    // No wait: the rotation's answer comes after the change reached every member.
    for node in [&n2, &n1] {
        let (s, b) = node.admin(&old, Method::GET, "/stores/clrot/settings", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "old token on {}: {b}", node.addr);
        let (s, b) = node.admin(&new, Method::GET, "/stores/clrot/settings", None).await;
        assert_eq!(s, StatusCode::OK, "new token on {}: {b}", node.addr);
    }
    record_with(TABLE, "exposure", "admin token after rotation, on another cluster node", "rotated", "old token 401 at once");

    // A node pushing its catalog from before the rotation does not bring the old token back.
    for node in [&n1, &n2] {
        let (s, b) = internal_call(node, Method::POST, "/internal/catalog", &stale.to_string()).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (s, b) = node.admin(&old, Method::GET, "/stores/clrot/settings", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "a stale catalog push revived the old token on {}: {b}", node.addr);
        let (s, _) = node.admin(&new, Method::GET, "/stores/clrot/settings", None).await;
        assert_eq!(s, StatusCode::OK);
    }
    record_with(TABLE, "exposure", "admin token after a stale catalog push from a peer", "rotated", "old token stays 401");
}

/// An internal call signed with the test cluster's secret, as another node makes it.
async fn internal_call(node: &TestNode, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
    let ts = unix_now();
    let mut mac = Hmac::<Sha256>::new_from_slice(b"test-cluster-secret").unwrap();
    mac.update(format!("{method}\n{path}\n{ts}\n{}", hex::encode(<Sha256 as sha2::Digest>::digest(body.as_bytes()))).as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let res = node
        .plain()
        .request(method, format!("http://{}{path}", node.addr))
        .header("content-type", "application/json")
        .header("x-vitrina-ts", ts.to_string())
        .header("x-vitrina-auth", sig)
        .header("x-vitrina-node", "test")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    json_of(res).await
}
