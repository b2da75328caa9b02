//! How a store or shopper actor comes to life on this node, for the registry (`Activator`):
//! its store must exist, its file is taken over from an earlier owner or restored from its
//! copy if missing, opened (a shopper without a file opens nothing), and its actor started.

use std::sync::Arc;

use actix::prelude::*;
use futures::future::BoxFuture;

use super::shopper::{ShopperActor, ShopperPulse};
use super::store::StoreActor;
use crate::ids::ActorKey;
use crate::node::Node;
use crate::runtime::registry::{Activator, ActorError, Lease, LiveActor};
use crate::sqlite::{SchemaKind, StorageError};
use crate::storage::ActorDb;

impl Activator for Arc<Node> {
    fn owns(&self, key: &ActorKey) -> bool {
        self.cluster.owns(key)
    }

    fn activate(&self, key: ActorKey, lease: Lease, arbiter: ArbiterHandle) -> BoxFuture<'static, Result<LiveActor, ActorError>> {
        Box::pin(activate(self.clone(), key, lease, arbiter))
    }
}

async fn activate(node: Arc<Node>, key: ActorKey, lease: Lease, arbiter: ArbiterHandle) -> Result<LiveActor, ActorError> {
    let store = key.store();
    if !node.catalog.store_exists(store).unwrap_or(false) {
        return Err(ActorError::NoSuchStore(store.clone()));
    }
    let path = node.layout.actor_db(&key);
    // In a cluster: hold the key's shard first. A local file of a shard another node held
    // since may be older than that node's copy: pulled over it, if a previous holder has one.
    if node.cluster.enabled() {
        if let Err(e) = crate::cluster::ownership::ensure_shard(&*node, &key).await {
            return Err(ActorError::Moving(key, e.to_string()));
        }
        match crate::cluster::handoff::unpark(&*node, &key) {
            Ok(true) => tracing::info!(%key, "took back a file parked for a hand-off that did not complete"),
            Ok(false) => {}
            Err(e) => return Err(ActorError::Moving(key, e.to_string())),
        }
        let replace = path.exists() && node.cluster.shards.is_stale(&key);
        if replace || !path.exists() {
            // The file may still be with a previous holder of the shard (newest data): take it
            // over before anything opens a fresh one here.
            let pulled = match crate::cluster::handoff::pull(&*node, &key, replace).await {
                Ok(pulled) => pulled,
                Err(e) => return Err(ActorError::Moving(key, e.to_string())),
            };
            // No later holder it could reach had the key (a lost one is skipped when copies
            // exist): a later holder's copy in object storage is still newer than this file.
            let since = node.cluster.shards.stale_since(node.cluster.shard_of(&key));
            if let (true, false, Some(since)) = (replace, pulled, since) {
                match node.restore_if_newer(&key, since).await {
                    Ok(true) => tracing::info!(%key, "replaced a stale local file with a later holder's copy"),
                    Ok(false) => {}
                    Err(e) => return Err(ActorError::Activation(key, StorageError::Restore(e.to_string()))),
                }
            }
            if replace {
                node.cluster.shards.verified(&key);
            }
        }
    }
    // Replication: a file still missing (its node was lost) may have a verified copy in object
    // storage; install it before opening.
    if let Err(e) = node.restore_if_missing(&key).await {
        return Err(ActorError::Activation(key, StorageError::Restore(e.to_string())));
    }
    if !path.exists() {
        tracing::debug!(%key, "activating with no file on this node");
    }
    let kind = match key {
        ActorKey::Store(_) => SchemaKind::Store,
        ActorKey::Shopper(..) => SchemaKind::Shopper,
    };
    // Shoppers get their file on their first write; a store's file always exists (created with
    // it). A shopper without a file opens nothing, so it skips the hop to the blocking pool
    // (most new sessions).
    let opened = if kind == SchemaKind::Shopper && !path.exists() {
        Ok(ActorDb::open_deferred(&path, kind))
    } else {
        tokio::task::spawn_blocking(move || match kind {
            SchemaKind::Shopper => ActorDb::open_deferred(&path, kind),
            _ => ActorDb::open(&path, kind),
        })
        .await
    };
    let db = match opened {
        Ok(Ok(db)) => {
            let db = node.track_commits(&key, db);
            match &key {
                ActorKey::Shopper(store, _) => db.with_file_quota(node.shopper_files.clone(), store.clone()),
                ActorKey::Store(_) => db,
            }
        }
        Ok(Err(e)) => return Err(ActorError::Activation(key, e)),
        Err(e) => return Err(ActorError::Activation(key, StorageError::Join(e.to_string()))),
    };
    Ok(match key {
        ActorKey::Store(store) => {
            let node2 = node.clone();
            LiveActor::new(StoreActor::start_in_arbiter(&arbiter, move |_| StoreActor::new(node2, store, db, lease)))
        }
        ActorKey::Shopper(store, sid) => {
            let pulse = Arc::new(ShopperPulse::default());
            let (node2, pulse2) = (node.clone(), pulse.clone());
            let addr = ShopperActor::start_in_arbiter(&arbiter, move |_| ShopperActor::new(node2, store, sid, db, lease, pulse2));
            LiveActor::new(addr).publishing(pulse)
        }
    })
}
