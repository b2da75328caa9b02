//! Moving actor files between nodes when the ring changes.
//!
//! The old owner *releases* a key: it passivates the live instance (after its in-flight turn),
//! checkpoints the WAL into the main file, and hands over the bytes with their sha256; it keeps
//! the file renamed `*.handoff` until the new owner acknowledges, so a transfer lost halfway
//! loses nothing (the rebalancer pushes it again). The new owner *installs* the bytes with an
//! atomic rename before it activates the actor. Pull (on first access at the new owner) and
//! push (the old owner's rebalancer, and a draining node) share these two steps.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::Host;
use super::{ClusterError, Placement};
use crate::coordination::MemberState;
use crate::ids::{ActorKey, SessionId, StoreId};
use crate::runtime::registry::PassivationReason;

pub const SHA_HEADER: &str = "x-vitrina-sha256";
const HANDOFF_SUFFIX: &str = "handoff";

fn handoff_path(path: &Path) -> PathBuf {
    path.with_extension(format!("db.{HANDOFF_SUFFIX}"))
}

/// One release at a time per key (a pull and a push can race for the same file).
fn release_lock(key: &ActorKey) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: std::sync::OnceLock<parking_lot::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>> =
        std::sync::OnceLock::new();
    let mut locks = LOCKS.get_or_init(Default::default).lock();
    locks.retain(|_, l| Arc::strong_count(l) > 1);
    locks.entry(key.to_string()).or_default().clone()
}

/// Old owner: passivates `key` and returns its file's bytes (None when this node has no file).
pub async fn release(node: &dyn Host, key: &ActorKey) -> Result<Option<Vec<u8>>, ClusterError> {
    let lock = release_lock(key);
    let _serialised = lock.lock().await;
    node.registry().evict_for(key, PassivationReason::Handoff).await;
    let path = node.layout().actor_db(key);
    let parked = handoff_path(&path);
    let result = tokio::task::spawn_blocking(move || -> std::io::Result<Option<Vec<u8>>> {
        if path.exists() {
            // Fold the WAL into the main file so one file carries every committed write; the
            // WAL (which holds the actor's latest commits: actors do not checkpoint on close)
            // is only removed once that succeeded.
            crate::sqlite::fold_wal_into_file(&path).map_err(std::io::Error::other)?;
            crate::sqlite::remove_sidecars(&path)?;
            std::fs::rename(&path, &parked)?;
        }
        if parked.exists() {
            return std::fs::read(&parked).map(Some);
        }
        Ok(None)
    })
    .await
    .map_err(|e| ClusterError::Refused(e.to_string()))?;
    result.map_err(|e| ClusterError::Refused(format!("cannot read actor file: {e}")))
}

/// This node owns `key` (again) while its file is still parked for a hand-off that did not
/// complete (a push refused, an acknowledgement lost): the parked file is its data; take it
/// back before the actor starts. `Ok(true)` if there was one.
///
/// Called by an activation, which holds the key's registry slot; a release holds the key's
/// release lock and waits for that slot (it passivates the actor first). Waiting for the lock
/// here would deadlock with it: while a release is under way, `Err` (the activation answers
/// 503 and the client retries once the file has gone, or been parked).
pub fn unpark(node: &dyn Host, key: &ActorKey) -> Result<bool, ClusterError> {
    let lock = release_lock(key);
    let Ok(_serialised) = lock.try_lock() else {
        return Err(ClusterError::Refused(format!("{key} is being handed off")));
    };
    let path = node.layout().actor_db(key);
    let parked = handoff_path(&path);
    Ok(!path.exists() && parked.exists() && std::fs::rename(&parked, &path).is_ok())
}

/// Old owner: the new owner has the file; forget ours.
pub fn acknowledge(node: &dyn Host, key: &ActorKey) {
    let _ = std::fs::remove_file(handoff_path(&node.layout().actor_db(key)));
    count("out", "ok");
}

/// One hand-off of a file, as `vitrina_handoffs_total{direction,outcome}` counts it: `out`
/// from this node (acknowledged `ok`, `deferred` by a new owner not ready, `failed`), `in`
/// to it (`ok`, `failed`).
fn count(direction: &'static str, outcome: &'static str) {
    crate::metrics::incr("vitrina_handoffs_total", &[("direction", direction), ("outcome", outcome)]);
}

/// How long a completed hand-off took, from release to acknowledgement (`out`) or from the
/// first call to the installed file (`in`).
fn observe(direction: &'static str, started: std::time::Instant) {
    crate::metrics::observe_seconds("vitrina_handoff_seconds", &[("direction", direction)], started.elapsed().as_secs_f64());
}

/// New owner: writes `bytes` as the actor's file, unless one is already there (with `replace`:
/// over it; the caller knows the local file is older). Verifies the checksum and that SQLite
/// accepts the file before it becomes visible.
pub async fn install(node: &dyn Host, key: &ActorKey, bytes: Vec<u8>, sha256: Option<&str>, replace: bool) -> Result<bool, ClusterError> {
    let installed = install_file(node, key, bytes, sha256, replace).await;
    match &installed {
        Ok(true) => count("in", "ok"),
        Ok(false) => {}
        Err(_) => count("in", "failed"),
    }
    installed
}

async fn install_file(node: &dyn Host, key: &ActorKey, bytes: Vec<u8>, sha256: Option<&str>, replace: bool) -> Result<bool, ClusterError> {
    let actual = hex::encode(Sha256::digest(&bytes));
    if sha256.is_some_and(|s| !s.eq_ignore_ascii_case(&actual)) {
        return Err(ClusterError::Refused(format!("checksum mismatch for {key}")));
    }
    let path = node.layout().actor_db(key);
    tokio::task::spawn_blocking(move || -> Result<bool, ClusterError> {
        if path.exists() && !replace {
            return Ok(false);
        }
        let dir = path.parent().ok_or_else(|| ClusterError::Refused("bad path".into()))?;
        std::fs::create_dir_all(dir).map_err(|e| ClusterError::Refused(e.to_string()))?;
        let tmp = path.with_extension("db.incoming");
        std::fs::write(&tmp, &bytes).map_err(|e| ClusterError::Refused(e.to_string()))?;
        {
            let conn = rusqlite::Connection::open(&tmp).map_err(|e| ClusterError::Refused(e.to_string()))?;
            let ok: String = conn
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .map_err(|e| ClusterError::Refused(format!("received file is not a database: {e}")))?;
            if ok != "ok" {
                return Err(ClusterError::Refused(format!("received file failed integrity_check: {ok}")));
            }
        }
        let file = std::fs::File::open(&tmp).map_err(|e| ClusterError::Refused(e.to_string()))?;
        file.sync_all().map_err(|e| ClusterError::Refused(e.to_string()))?;
        // A WAL left beside the path (actor files keep theirs across passivation) belongs to
        // an older database and would be replayed into this one.
        crate::sqlite::remove_sidecars(&path).map_err(|e| ClusterError::Refused(format!("cannot remove an old WAL: {e}")))?;
        std::fs::rename(&tmp, &path).map_err(|e| ClusterError::Refused(e.to_string()))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(true)
    })
    .await
    .map_err(|e| ClusterError::Refused(e.to_string()))?
}

/// New owner, before activating a key with no local file (or, with `replace`, one whose local
/// file may be older than a previous holder's): pull it from the nodes that owned it earlier.
/// `Err` when a node that may hold it cannot be asked: activating a fresh instance then could
/// fork the actor's state, so the caller answers 503 and the client retries. On etcd, a
/// previous holder that is no longer a member (lost, not removed by an operator) stops the
/// activation too, unless the key may be restored from object storage.
pub async fn pull(node: &dyn Host, key: &ActorKey, replace: bool) -> Result<bool, ClusterError> {
    let span = tracing::info_span!("handoff", direction = "in", kind = crate::runtime::registry::key_kind(key));
    let started = std::time::Instant::now();
    let pulled = tracing::Instrument::instrument(pull_file(node, key, replace), span).await;
    match &pulled {
        Ok(true) => observe("in", started),
        Ok(false) => {}
        // A failed install was counted by `install`.
        Err(Pull::Install(_)) => {}
        Err(Pull::Other(_)) => count("in", "failed"),
    }
    pulled.map_err(|(Pull::Install(e) | Pull::Other(e))| e)
}

/// Why a pull failed: installing the file (counted by `install`) or anything before it.
enum Pull {
    Install(ClusterError),
    Other(ClusterError),
}

impl From<ClusterError> for Pull {
    fn from(e: ClusterError) -> Self {
        Pull::Other(e)
    }
}

async fn pull_file(node: &dyn Host, key: &ActorKey, replace: bool) -> Result<bool, Pull> {
    for (holder, addr, alive) in node.cluster().previous_holders(key) {
        if !alive {
            if !node.restorable() {
                let shard = node.cluster().shard_of(key);
                if !super::ownership::refresh_previous(node, shard).await?.iter().any(|h| h == holder.as_str()) {
                    continue;
                }
                return Err(Pull::Other(ClusterError::Refused(format!(
                    "{key}: its last holder {holder} is gone; waiting for it to come back or for an operator to remove it"
                ))));
            }
            continue;
        }
        let path = format!("/internal/handoff?key={}", urlencode(&key.to_string()));
        let res = node.cluster().call(&addr, reqwest::Method::POST, &path, Vec::new()).await?;
        match res.status().as_u16() {
            200 => {
                let sha = res.headers().get(SHA_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
                let bytes = res.bytes().await.map_err(|e| ClusterError::Call(addr.clone(), e.to_string()))?;
                install(node, key, bytes.to_vec(), sha.as_deref(), replace).await.map_err(Pull::Install)?;
                let ack = format!("/internal/handoff/ack?key={}", urlencode(&key.to_string()));
                if let Err(e) = node.cluster().call(&addr, reqwest::Method::POST, &ack, Vec::new()).await {
                    tracing::warn!(%key, node = %holder, error = %e, "handoff ack failed; the holder will push again");
                }
                tracing::debug!(%key, from = %holder, "pulled actor file");
                return Ok(true);
            }
            404 => continue,
            status => return Err(ClusterError::Refused(format!("{holder} answered {status} to a handoff of {key}")).into()),
        }
    }
    Ok(false)
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every actor file on this node's disk (including ones parked for hand-off).
pub fn local_actor_keys(node: &dyn Host) -> Vec<ActorKey> {
    let mut keys = Vec::new();
    let stores = node.layout().root().join("stores");
    let Ok(entries) = std::fs::read_dir(&stores) else { return keys };
    for entry in entries.flatten() {
        let Some(store) = entry.file_name().to_str().and_then(|s| StoreId::parse(s).ok()) else { continue };
        let dir = entry.path();
        if dir.join("store.db").exists() || dir.join(format!("store.db.{HANDOFF_SUFFIX}")).exists() {
            keys.push(ActorKey::Store(store.clone()));
        }
        let Ok(fanouts) = std::fs::read_dir(dir.join("shoppers")) else { continue };
        for fanout in fanouts.flatten() {
            let Ok(files) = std::fs::read_dir(fanout.path()) else { continue };
            for file in files.flatten() {
                let name = file.file_name();
                let Some(name) = name.to_str() else { continue };
                let sid = name.strip_suffix(".db").or_else(|| name.strip_suffix(&format!(".db.{HANDOFF_SUFFIX}")));
                if let Some(sid) = sid.and_then(|s| SessionId::parse(s).ok()) {
                    let key = ActorKey::Shopper(store.clone(), sid);
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
            }
        }
    }
    keys
}

/// Old owner: pushes one key to its owner. Ok(true) when the owner has it now; Ok(false) when
/// it cannot take it yet (503: it does not hold the shard yet, or the key is changing there).
async fn push(node: &dyn Host, key: &ActorKey, addr: &str) -> Result<bool, ClusterError> {
    let span = tracing::info_span!("handoff", direction = "out", kind = crate::runtime::registry::key_kind(key));
    let started = std::time::Instant::now();
    let pushed = tracing::Instrument::instrument(push_file(node, key, addr), span).await;
    match &pushed {
        Ok(Some(true)) => observe("out", started),
        Ok(Some(false)) => count("out", "deferred"),
        Ok(None) => {}
        Err(_) => count("out", "failed"),
    }
    pushed.map(|moved| moved.unwrap_or(true))
}

/// `Ok(None)`: this node had no file of `key` to push.
async fn push_file(node: &dyn Host, key: &ActorKey, addr: &str) -> Result<Option<bool>, ClusterError> {
    let Some(bytes) = release(node, key).await? else { return Ok(None) };
    let sha = hex::encode(Sha256::digest(&bytes));
    let path = format!("/internal/adopt?key={}&sha256={sha}", urlencode(&key.to_string()));
    let res = node.cluster().call(addr, reqwest::Method::POST, &path, bytes).await?;
    if res.status().is_success() {
        acknowledge(node, key);
        Ok(Some(true))
    } else if res.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        Ok(Some(false))
    } else {
        Err(ClusterError::Refused(format!("{addr} refused {key}: {}", res.status())))
    }
}

/// After every view change (and periodically), moves actors this node no longer owns to their
/// owners. A draining node that has moved everything leaves the cluster.
pub async fn rebalance_loop(node: Arc<dyn Host>) {
    let mut pending = 0usize;
    loop {
        let notified = node.cluster().changed.notified();
        // A push refused (the new owner could not hold the shard yet: the old holder was still
        // passivating) is retried soon rather than at the next view change.
        let wait = if pending > 0 { Duration::from_millis(300) } else { Duration::from_secs(5) };
        let _ = tokio::time::timeout(wait, notified).await;
        let keys = local_actor_keys(&*node);
        pending = 0;
        let mut moved = 0usize;
        let jobs: Vec<(ActorKey, String)> = keys
            .into_iter()
            .filter_map(|key| match node.cluster().placement(&key) {
                Placement::Remote { addr, .. } => Some((key, addr)),
                _ => None,
            })
            .collect();
        for chunk in jobs.chunks(16) {
            let results = futures::future::join_all(chunk.iter().map(|(key, addr)| push(&*node, key, addr))).await;
            for ((key, _), result) in chunk.iter().zip(results) {
                match result {
                    Ok(true) => moved += 1,
                    Ok(false) => {
                        pending += 1;
                        tracing::debug!(%key, "the new owner cannot take the file yet; will push again");
                    }
                    Err(e) => {
                        pending += 1;
                        tracing::warn!(%key, error = %e, "hand-off push failed; will retry");
                    }
                }
            }
        }
        if moved > 0 {
            tracing::info!(moved, pending, "rebalanced actors to their new owners");
        }
        if node.cluster().my_state() == Some(MemberState::Draining) && pending == 0 && local_actor_keys(&*node).is_empty() {
            tracing::info!("drain complete; leaving the ring");
            let _ = node.cluster().leave().await;
        }
    }
}
