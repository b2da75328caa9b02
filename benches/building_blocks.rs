//! Building blocks of a request, measured alone: creating and opening a shopper's SQLite file
//! (the storage part of an activation; reopening one alone and beside a full node's open
//! files), verifying an HMAC-SHA256 signature over a 4 KiB body (webhook-sized), and finding a
//! key's owner on the consistent-hash ring (every request on a cluster node does, often twice).
//! The isolate and block render benchmarks are in `engine.rs`.
//!
//! Run: `cargo bench --bench building_blocks -- --warm-up-time 1 --measurement-time 3`

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use vitrina::cluster::Ring;
use vitrina::ids::{ActorKey, SessionId, StoreId};
use vitrina::sqlite::{create_from_template, open, SchemaKind};

fn storage(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let n = AtomicU64::new(0);
    let mut group = c.benchmark_group("actor_db");
    // A new shopper: directory entry, file, WAL, schema migration committed with synchronous=FULL
    // (so this includes fsyncs and is bounded by the disk).
    group.bench_function("create_and_migrate", |b| {
        b.iter_batched(
            || dir.path().join(format!("s{}", n.fetch_add(1, Ordering::Relaxed))).join("shopper.db"),
            |path| open(&path, SchemaKind::Shopper).expect("open"),
            BatchSize::PerIteration,
        )
    });
    // A new shopper as the node makes it: a copy of the migrated template written, fdatasynced
    // and renamed into place, directories fsynced; then opened.
    group.bench_function("create_from_template_and_open", |b| {
        b.iter_batched(
            || dir.path().join(format!("t{}", n.fetch_add(1, Ordering::Relaxed))).join("shopper.db"),
            |path| {
                create_from_template(&path).expect("create");
                open(&path, SchemaKind::Shopper).expect("open")
            },
            BatchSize::PerIteration,
        )
    });
    // A waking shopper: the file exists and is migrated; open, set pragmas, check the version.
    let existing = dir.path().join("existing.db");
    drop(open(&existing, SchemaKind::Shopper).expect("open"));
    group.bench_function("open_existing", |b| b.iter(|| open(&existing, SchemaKind::Shopper).expect("open")));
    // The same with its WAL checkpointed and truncated (as a checkpoint on close would leave
    // it): the open finds no frames to index.
    let checkpointed = dir.path().join("checkpointed.db");
    let conn = open(&checkpointed, SchemaKind::Shopper).expect("open");
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).expect("checkpoint");
    drop(conn);
    group.bench_function("open_existing_checkpointed", |b| b.iter(|| open(&checkpointed, SchemaKind::Shopper).expect("open")));
    // The same beside the 1,024 shopper files a node keeps open at most (`actors.max_open_files`):
    // SQLite's unix VFS looks each new file up in a list of every file the process has open.
    // Made on the first call only, so that a run filtered to other benchmarks makes none.
    let mut others = None;
    group.bench_function("open_existing_beside_1024_open", |b| {
        others.get_or_insert_with(|| {
            (0..1024)
                .map(|i| {
                    let path = dir.path().join(format!("o{i}")).join("shopper.db");
                    create_from_template(&path).expect("create");
                    open(&path, SchemaKind::Shopper).expect("open")
                })
                .collect::<Vec<_>>()
        });
        b.iter(|| open(&existing, SchemaKind::Shopper).expect("open"))
    });
    drop(others);
    group.finish();
}

fn hmac_verify(c: &mut Criterion) {
    type HmacSha256 = Hmac<Sha256>;
    let key = b"whsec_0123456789abcdef0123456789abcdef";
    let body: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(&body);
    let tag = mac.finalize().into_bytes();
    let mut group = c.benchmark_group("hmac_sha256");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("verify_4KiB", |b| {
        b.iter(|| {
            let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
            mac.update(&body);
            // Constant-time comparison, as a webhook check must do.
            mac.verify_slice(&tag).expect("valid tag")
        })
    });
    group.finish();
}

/// The owner of a shopper key on rings of 3 and 100 nodes at the node's 128 virtual nodes each
/// (`cluster.vnodes`), key formatting and hashing into its shard included, as the routing
/// middleware does it.
fn ring_lookup(c: &mut Criterion) {
    let store = StoreId::parse("demo").expect("valid id");
    let keys: Vec<ActorKey> = (0..1024).map(|_| ActorKey::Shopper(store.clone(), SessionId::generate())).collect();
    let mut group = c.benchmark_group("ring");
    for nodes in [3, 100] {
        let ring = Ring::from_nodes((0..nodes).map(|i| format!("node-{i}")), 128);
        let mut next = 0usize;
        group.bench_function(format!("owner_of_shopper_key/{nodes}_nodes"), |b| {
            b.iter(|| {
                next = (next + 1) % keys.len();
                ring.owner_of_shard(vitrina::coordination::shard_of(&keys[next].to_string(), 256)).map(str::len)
            })
        });
    }
    group.finish();
}

criterion_group!(building_blocks, storage, hmac_verify, ring_lookup);
criterion_main!(building_blocks);
