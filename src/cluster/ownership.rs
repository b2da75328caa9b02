//! Shard ownership on etcd, as the node uses it.
//!
//! - Joining: the catalog is copied from a member etcd lists (or a seed) first, then the node
//!   takes its lease and member key; its view follows etcd's membership from then on.
//! - Activating a key: the node first holds the key's shard (`ensure_shard`: acquired on its
//!   lease if it does not hold it yet). When another node held the shard since this one last
//!   did, this node's own files of the shard may be older than that node's: each is pulled
//!   over from the previous holders at its key's first activation, kept if none has it.
//! - Losing a shard (the lease lapsed, or the ring moved it): its live actors are passivated;
//!   a shard the ring moved is released in etcd with its token once they are, and the
//!   rebalancer pushes the files to the new owner.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{Cluster, ClusterError, Host, NodeId, Placement};
use crate::coordination::{Coordination, ShardId, Token};
use crate::ids::ActorKey;

#[derive(Default)]
pub struct Shards {
    /// The shards this node acquired, with their tokens (still held or not: `holds` says).
    acquired: Mutex<HashMap<ShardId, Token>>,
    /// Per shard, the nodes that held it before this one (newest first): keys without a file
    /// here are pulled from them.
    previous: Mutex<HashMap<ShardId, Vec<String>>>,
    /// Keys whose local file may be older than a previous holder's, until their first pull.
    stale: Mutex<std::collections::HashSet<ActorKey>>,
    /// Per shard whose files here are stale: the token this node held it with before, under
    /// which those files were written (and this node's copies of them uploaded).
    stale_since: Mutex<HashMap<ShardId, Token>>,
    /// The token this node last acquired each shard with, kept on disk across restarts
    /// (`None` until read).
    last_tokens: Mutex<Option<std::collections::BTreeMap<ShardId, Token>>>,
    locks: Mutex<HashMap<ShardId, Arc<tokio::sync::Mutex<()>>>>,
}

/// Where a node keeps the token it last acquired each shard with.
fn last_tokens_path(root: &std::path::Path) -> std::path::PathBuf {
    root.join("node").join("shard-tokens.json")
}

impl Shards {
    fn lock_for(&self, shard: ShardId) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().entry(shard).or_default().clone()
    }

    /// The token `shard` is held with, once what its acquisition taught (previous holders,
    /// stale files) is recorded. The coordination holds the shard as soon as etcd's answer is
    /// in, a moment before that: a key activated in between would find no previous holder to
    /// pull from, start empty, and fork the actor from the copy the old owner still has.
    pub fn ready_token(&self, coordination: &dyn Coordination, shard: ShardId) -> Option<Token> {
        let token = coordination.token(shard)?;
        (self.acquired.lock().get(&shard) == Some(&token)).then_some(token)
    }

    /// The previous holders of `shard` with their addresses; `false`: no longer a member.
    pub fn previous_holders(&self, cluster: &Cluster, shard: ShardId) -> Vec<(NodeId, String, bool)> {
        let membership = cluster.membership();
        let previous = self.previous.lock().get(&shard).cloned().unwrap_or_default();
        previous
            .iter()
            .filter_map(|id| {
                let node = NodeId::parse(id).ok()?;
                Some(match membership.members.get(id) {
                    Some(m) => (node, m.addr.clone(), true),
                    None => (node, String::new(), false),
                })
            })
            .collect()
    }

    pub fn is_stale(&self, key: &ActorKey) -> bool {
        self.stale.lock().contains(key)
    }

    /// `key`'s file is the newest there is now (pulled, or no previous holder had one).
    pub fn verified(&self, key: &ActorKey) {
        self.stale.lock().remove(key);
    }

    /// The token this node's stale files of `shard` were written under (`None`: not stale, or
    /// not known).
    pub fn stale_since(&self, shard: ShardId) -> Option<Token> {
        self.stale_since.lock().get(&shard).copied()
    }

    /// Records that this node acquired `shard` with `token` (on disk, before any of its keys
    /// activates); returns the token it held the shard with before, if it ever did.
    fn record_acquired(&self, root: &std::path::Path, shard: ShardId, token: Token) -> Option<Token> {
        let path = last_tokens_path(root);
        let mut guard = self.last_tokens.lock();
        let tokens = guard
            .get_or_insert_with(|| std::fs::read(&path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default());
        let before = tokens.insert(shard, token);
        let text = serde_json::to_string(&*tokens).unwrap_or_default();
        let tmp = path.with_extension("json.tmp");
        // Lost (unknown) on a failed write: the stale files then stay preferred to a copy.
        if let Err(e) = crate::private_files::write_text(&tmp, &text).and_then(|()| Ok(std::fs::rename(&tmp, &path)?)) {
            tracing::warn!(error = %e, "cannot record the shard tokens");
        }
        before
    }
}

/// Joins through etcd and starts following membership and ownership.
pub async fn start(node: Arc<dyn Host>) -> anyhow::Result<()> {
    let cluster = node.cluster();
    let settings = &cluster.settings;
    // The catalog first: once this node is a member, others forward it requests for the
    // shards it owns, which it could not resolve to stores without the catalog.
    let mut contacts: Vec<String> = settings.seeds.iter().filter(|s| **s != cluster.addr).cloned().collect();
    match crate::coordination::etcd::Etcd::peek_members(&settings.etcd).await {
        Ok(members) => contacts.extend(members.into_iter().filter(|(id, _)| id != cluster.id.as_str()).map(|(_, m)| m.addr)),
        Err(e) => tracing::warn!(error = %e, "cannot list the members in etcd before joining"),
    }
    for addr in &contacts {
        match node.pull_catalog(addr).await {
            Ok(()) => break,
            Err(e) => tracing::warn!(%addr, error = %e, "catalog pull before joining failed"),
        }
    }
    // Without an advertised name, the address other nodes reach this one at is the one it
    // listens on.
    let bound_here = settings.advertise.as_deref().is_none_or(str::is_empty);
    let etcd = crate::coordination::etcd::Etcd::start(&settings.etcd, cluster.id.as_str(), &cluster.addr, bound_here).await?;
    let mut membership = etcd.membership();
    let current = membership.borrow_and_update().clone();
    cluster.join_with(Arc::new(etcd), current);
    let follower = node.clone();
    actix_web::rt::spawn(async move {
        while membership.changed().await.is_ok() {
            let current = membership.borrow_and_update().clone();
            follower.cluster().install_membership(current);
        }
    });
    actix_web::rt::spawn(ownership_loop(node.clone()));
    actix_web::rt::spawn(super::handoff::rebalance_loop(node.clone()));
    Ok(())
}

/// Before `key` activates here: hold its shard. `Err` (the caller answers 503) while another
/// node holds it or this node has no live lease.
pub async fn ensure_shard(node: &dyn Host, key: &ActorKey) -> Result<(), ClusterError> {
    let cluster = node.cluster();
    if !cluster.joined() {
        return Err(ClusterError::Refused(format!("{key}: this node has not joined the cluster yet")));
    }
    let shard = cluster.shard_of(key);
    let coordination = cluster.coordination();
    if cluster.shards.ready_token(&*coordination, shard).is_some() {
        return Ok(());
    }
    let lock = cluster.shards.lock_for(shard);
    let _one_at_a_time = lock.lock().await;
    if cluster.shards.ready_token(&*coordination, shard).is_some() {
        return Ok(());
    }
    let started = Instant::now();
    let acquired = coordination.acquire(shard).await.map_err(|e| ClusterError::Refused(format!("shard {shard} of {key}: {e}")))?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    crate::metrics::observe_ms("vitrina_shard_acquire_ms", &[], ms);
    tracing::info!(shard, token = acquired.token, ms, previous = ?acquired.previous_holders, "acquired shard");
    let before = cluster.shards.record_acquired(node.layout().root(), shard, acquired.token);
    if before == Some(acquired.token) && cluster.shards.previous.lock().contains_key(&shard) {
        // The same holding confirmed again (its bookkeeping was dropped while the lease
        // wavered): which files are stale, and whose to pull, has not changed.
        cluster.shards.acquired.lock().insert(shard, acquired.token);
        return Ok(());
    }
    match before.filter(|_| acquired.local_files_stale) {
        Some(token) => cluster.shards.stale_since.lock().insert(shard, token),
        None => cluster.shards.stale_since.lock().remove(&shard),
    };
    let local: Vec<ActorKey> = super::handoff::local_actor_keys(node).into_iter().filter(|k| cluster.shard_of(k) == shard).collect();
    {
        let mut stale = cluster.shards.stale.lock();
        for key in local {
            if acquired.local_files_stale {
                stale.insert(key);
            } else {
                stale.remove(&key);
            }
        }
    }
    cluster.shards.previous.lock().insert(shard, acquired.previous_holders);
    // Last: from here on `ready_token` lets this shard's keys activate without the lock.
    cluster.shards.acquired.lock().insert(shard, acquired.token);
    Ok(())
}

/// Reads `shard`'s previous holders from etcd again (an operator may have removed a lost one).
/// Returns them.
pub async fn refresh_previous(node: &dyn Host, shard: ShardId) -> Result<Vec<String>, ClusterError> {
    let cluster = node.cluster();
    let previous = cluster.coordination().previous_holders(shard).await.map_err(|e| ClusterError::Refused(e.to_string()))?;
    cluster.shards.previous.lock().insert(shard, previous.clone());
    Ok(previous)
}

/// Whether a file pushed for `key` replaces this node's own: while this node does not hold the
/// key's shard, or its file is not verified since it reacquired the shard, the pusher held the
/// shard after this node did, so its copy is the newer. Answering `true` counts it verified.
pub fn push_replaces(node: &dyn Host, key: &ActorKey) -> bool {
    let cluster = node.cluster();
    if !cluster.enabled() {
        return false;
    }
    let replaces = cluster.shards.ready_token(&*cluster.coordination(), cluster.shard_of(key)).is_none() || cluster.shards.is_stale(key);
    if replaces {
        cluster.shards.verified(key);
    }
    replaces
}

/// Passivates actors of shards this node does not hold (its lease lapsed) and gives up the
/// shards the ring moved elsewhere, after passivating their actors.
async fn ownership_loop(node: Arc<dyn Host>) {
    loop {
        let notified = node.cluster().changed.notified();
        let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        let cluster = node.cluster();
        let coordination = cluster.coordination();
        for key in node.registry().live_keys() {
            if coordination.token(cluster.shard_of(&key)).is_none() {
                tracing::info!(%key, "shard not held (any more): passivating");
                node.registry().evict_for(&key, crate::runtime::registry::PassivationReason::Handoff).await;
            }
        }
        hold_shards_of_uncopied_writes(&*node).await;
        let acquired: Vec<(ShardId, Token)> = cluster.shards.acquired.lock().iter().map(|(s, t)| (*s, *t)).collect();
        for (shard, token) in acquired {
            if !coordination.holds(shard, token) {
                // Lost with the lease; etcd already freed it.
                cluster.shards.acquired.lock().remove(&shard);
                continue;
            }
            let placed_here = matches!(cluster.placement_of_shard(shard), Placement::Local);
            if placed_here {
                continue;
            }
            release_shard(&*node, &*coordination, shard, token).await;
        }
    }
}

/// Writes acknowledged here whose copy-out was refused while the lease had lapsed wait for
/// their shard: hold it again if the ring still places it here (without waiting for one of
/// its keys to be asked for), or stop waiting if it now belongs to another node.
async fn hold_shards_of_uncopied_writes(node: &dyn Host) {
    let cluster = node.cluster();
    // Not a member (its lease lapsed): the ring it sees places nothing here, which says nothing
    // of where these keys belong once it is back.
    if !cluster.membership().members.contains_key(cluster.id.as_str()) {
        return;
    }
    for key in node.keys_awaiting_their_shard() {
        let shard = cluster.shard_of(&key);
        if !matches!(cluster.placement_of_shard(shard), Placement::Local) {
            node.stop_awaiting_shard(&key);
        } else if cluster.coordination().token(shard).is_none() {
            if let Err(e) = ensure_shard(node, &key).await {
                tracing::debug!(%key, error = %e, "cannot hold the shard of a write to copy out yet");
            }
        }
    }
}

/// The ring moved `shard` away: passivate its live actors (their files stay, for the new
/// owner to pull or the rebalancer to push), then delete the ownership key with the token.
async fn release_shard(node: &dyn Host, coordination: &dyn Coordination, shard: ShardId, token: Token) {
    let cluster = node.cluster();
    // Not under the shard's lock: an activation of one of its keys holds the key's slot while it
    // waits for that lock, and evicting that key waits for the slot. No new activation starts
    // here: the ring no longer places the shard on this node.
    for key in node.registry().live_keys().into_iter().filter(|k| cluster.shard_of(k) == shard) {
        node.registry().evict_for(&key, crate::runtime::registry::PassivationReason::Handoff).await;
    }
    let lock = cluster.shards.lock_for(shard);
    let _one_at_a_time = lock.lock().await;
    match coordination.release(shard, token).await {
        Ok(()) => {
            cluster.shards.acquired.lock().remove(&shard);
            tracing::info!(shard, token, "released shard");
        }
        Err(crate::coordination::CoordinationError::Fenced(_)) => {
            cluster.shards.acquired.lock().remove(&shard);
        }
        Err(e) => tracing::warn!(shard, error = %e, "cannot release shard; will retry"),
    }
}
