//! The sweeper: deletes shopper files idle for `shopper.idle_ttl_secs`, and re-counts the
//! shopper files of each store for `shopper.max_per_store`.
//!
//! Idle means no commit: the newest modification time of the file and its WAL (every commit
//! writes the WAL; reads write nothing). A file is deleted only
//! - while the registry holds its key reserved (no instance live or changing, and requests for
//!   it wait until the deletion is over, then start an empty shopper), so no turn is mid-write;
//! - if it is still idle when re-checked under that reservation;
//! - if its order outbox has no undelivered order (those wait for their delivery);
//! - on the node that owns the key;
//! - its copy in object storage first: if that fails the local file stays (a later restore
//!   would otherwise bring it back), and the next sweep tries again.
//!
//! Then the WAL and shared memory beside it, the alarm hint in the catalog (a woken alarm
//! would find no file and write nothing), and the per-store count.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::ids::{ActorKey, SessionId, StoreId};
use crate::node::Node;
use crate::sqlite;

/// A shopper file the walk found.
struct Found {
    store: StoreId,
    sid: SessionId,
    path: PathBuf,
}

/// How often the sweeper runs: a tenth of the TTL, between 1 s and 1 h.
fn interval(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// Counts every store's shopper files (tightening modes on the way), for the limit to hold
/// from the first request; called once at startup, before the node serves.
pub fn count_at_startup(node: &Node) {
    if let Err(e) = walk(node, None) {
        tracing::warn!(error = %e, "shopper files could not be counted; the per-store limit starts from zero");
    }
}

/// Starts the periodic sweep on the current runtime.
pub fn spawn(node: Arc<Node>) {
    let ttl = Duration::from_secs(node.settings.shopper.idle_ttl_secs);
    let every = interval(if ttl.is_zero() { Duration::from_secs(3600 * 10) } else { ttl });
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let expired = sweep(&node).await;
            if expired > 0 {
                tracing::info!(expired, "idle shopper files deleted");
            }
        }
    });
}

/// One sweep: re-counts the files and deletes those idle past the TTL. Returns how many it deleted.
pub async fn sweep(node: &Arc<Node>) -> usize {
    let ttl = Duration::from_secs(node.settings.shopper.idle_ttl_secs);
    let cutoff = (!ttl.is_zero()).then(|| SystemTime::now().checked_sub(ttl)).flatten();
    let n = node.clone();
    let candidates = match tokio::task::spawn_blocking(move || walk(&n, cutoff)).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the data directory could not be swept");
            return 0;
        }
        Err(_) => return 0,
    };
    let Some(cutoff) = cutoff else { return 0 };
    let mut expired = 0;
    for found in candidates {
        match expire(node, found, cutoff).await {
            Ok(true) => expired += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "an idle shopper file could not be deleted; the next sweep retries"),
        }
    }
    expired
}

/// Walks `stores/*/shoppers/*/*.db`: re-counts the files per store and returns those last
/// written before `cutoff`.
fn walk(node: &Node, cutoff: Option<SystemTime>) -> std::io::Result<Vec<Found>> {
    let root = node.layout.root().join("stores");
    let mut counts: HashMap<StoreId, usize> = HashMap::new();
    let mut idle = Vec::new();
    node.shopper_files.begin_recount();
    let walked = crate::private_files::walk_private(&root, &mut |path, meta| {
        let Some((store, sid)) = shopper_of(&root, path) else { return };
        *counts.entry(store.clone()).or_default() += 1;
        if let (Some(cutoff), Ok(modified)) = (cutoff, meta.modified()) {
            if modified < cutoff && last_write(path).is_some_and(|t| t < cutoff) {
                idle.push(Found { store, sid, path: path.to_path_buf() });
            }
        }
    });
    node.shopper_files.finish_recount(counts);
    walked.map(|()| idle)
}

/// (store, session) of a path `{root}/{store}/shoppers/{xx}/{sid}.db`.
fn shopper_of(root: &Path, path: &Path) -> Option<(StoreId, SessionId)> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Vec<&str> = rel.iter().filter_map(|p| p.to_str()).collect();
    match parts.as_slice() {
        [store, "shoppers", _, file] => {
            let sid = file.strip_suffix(".db")?;
            Some((StoreId::parse(store).ok()?, SessionId::parse(sid).ok()?))
        }
        _ => None,
    }
}

/// The newest modification time of a database and its WAL.
fn last_write(db: &Path) -> Option<SystemTime> {
    let file = std::fs::metadata(db).and_then(|m| m.modified()).ok()?;
    let wal = std::fs::metadata(sidecar(db, "-wal")).and_then(|m| m.modified()).ok();
    Some(wal.map_or(file, |w| w.max(file)))
}

fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Whether the shopper database at `path` has an order its backend has not acknowledged.
fn has_undelivered_orders(path: &Path) -> Result<bool, sqlite::StorageError> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    let has_outbox: bool =
        conn.query_row("SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'order_outbox'", [], |r| r.get(0))?;
    if !has_outbox {
        return Ok(false);
    }
    Ok(conn.query_row("SELECT count(*) > 0 FROM order_outbox WHERE delivered_ms IS NULL", [], |r| r.get(0))?)
}

/// Deletes one idle shopper's file, copy and sidecars if it may (see the module comment).
async fn expire(node: &Arc<Node>, found: Found, cutoff: SystemTime) -> anyhow::Result<bool> {
    let key = ActorKey::Shopper(found.store.clone(), found.sid.clone());
    if !node.cluster.owns(&key) {
        return Ok(false);
    }
    let Some(_reserved) = node.registry.try_reserve(&key) else { return Ok(false) };
    let path = found.path.clone();
    let deletable = tokio::task::spawn_blocking(move || -> Result<bool, sqlite::StorageError> {
        if last_write(&path).is_none_or(|t| t >= cutoff) {
            return Ok(false);
        }
        Ok(!has_undelivered_orders(&path)?)
    })
    .await??;
    if !deletable {
        return Ok(false);
    }
    delete_shopper(node, &key).await?;
    crate::metrics::incr("vitrina_shoppers_expired_total", &[]);
    tracing::debug!(%key, "idle shopper file deleted");
    Ok(true)
}

/// Deletes a shopper's copies in object storage, its file and sidecars (the directory synced),
/// and its alarm hint. The caller holds the key reserved (no instance live). `true` if a file
/// was there.
pub async fn delete_shopper(node: &Arc<Node>, key: &ActorKey) -> anyhow::Result<bool> {
    if let Some(replicator) = &node.replicator {
        replicator.delete(key).await?;
    }
    let path = node.layout.actor_db(key);
    let existed = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
        let existed = match std::fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        sqlite::remove_sidecars(&path)?;
        if let Some(dir) = path.parent().filter(|d| d.exists()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(existed)
    })
    .await??;
    if existed {
        node.shopper_files.release(key.store());
    }
    if let Err(e) = node.catalog.reset_alarm_hint(key, None) {
        tracing::warn!(%key, error = %e, "the deleted shopper's alarm hint stays; its alarm will find no file");
    }
    Ok(existed)
}

/// Erases a shopper on this node (its owner): stops its live instance, keeps the key reserved
/// so nothing reactivates it meanwhile, and deletes everything of it (`delete_shopper`).
/// `Ok(false)`: it had no file here.
pub async fn erase_shopper(node: &Arc<Node>, key: &ActorKey) -> anyhow::Result<bool> {
    for _ in 0..50 {
        node.registry.evict(key).await;
        if let Some(_reserved) = node.registry.try_reserve(key) {
            return delete_shopper(node, key).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    anyhow::bail!("{key} kept being activated; try again")
}
