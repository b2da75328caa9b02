//! Everything one node shares between requests and actors. Reaching the actors themselves
//! (asks, a store's snapshot or search wherever its actor lives) is added by the actors' layer,
//! `actors/access.rs`: this module knows nothing of them.

use std::sync::Arc;
use std::time::Duration;

use std::time::Instant;

use crate::runtime::registry::{ActorError, Registry};

use crate::catalog::NodeCatalog;
use crate::cluster::Cluster;
use crate::config::Settings;
use crate::ids::{ActorKey, StoreId};
use crate::render::cache::{AnonymousPages, PersonalPages};
use crate::render::snapshot::SharedSnapshot;
use crate::render::snapshot::{SnapshotParts, StoreSnapshot};
use crate::replication::{ReplicationError, ReplicationResult, Replicator};
use crate::sqlite::DataLayout;
use crate::storage::ActorDb;
use crate::store::model::Durability;

/// Why a committed write was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum AcknowledgeError {
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    /// This node no longer holds the key's shard (its lease lapsed, or the shard moved).
    #[error("this node no longer owns {0}; the change was not acknowledged")]
    NotOwner(String),
}

pub struct Node {
    pub settings: Settings,
    pub layout: DataLayout,
    pub catalog: NodeCatalog,
    pub registry: Registry,
    /// The latest published snapshot of each store seen on this node; shoppers render from it
    /// without a round trip to the store actor, which replaces it on every change.
    snapshots: moka::sync::Cache<StoreId, SharedSnapshot>,
    pub personal_pages: PersonalPages,
    pub anonymous_pages: AnonymousPages,
    /// Render threads, per-store render bounds, remembered failed pages, block failures.
    pub renderer: Arc<crate::render::Renderer>,
    operator_token: String,
    pub cluster: Cluster,
    /// When each remote store's snapshot was last confirmed current with its owner.
    remote_checked: moka::sync::Cache<StoreId, Instant>,
    /// Copies of actor files in object storage; `None` when not configured. Node-level hooks
    /// (restore on activation, commit tracking, passivation) live in `replication.rs`.
    pub replicator: Option<Arc<Replicator>>,
    /// Set while the node has startup work that requests depend on (seeding the demo store):
    /// `/healthz` answers 503 `starting` meanwhile, so "healthy" means ready to serve.
    starting: std::sync::atomic::AtomicBool,
    /// Seals and opens secrets kept in actor files (`secrets.rs`).
    pub secrets: crate::secrets::SecretBox,
    /// Shopper files per store on this node, for `shopper.max_per_store` (`storage::shopper_files`).
    pub shopper_files: Arc<crate::storage::ShopperFiles>,
    /// Live events actors publish after commits, for the open pages' sockets (`http/live.rs`).
    pub events: Arc<crate::runtime::events::EventHub>,
    /// Visitors, orders and revenue counted here, not yet handed to their store actors.
    pub day_tally: crate::store::day_stats::DayTally,
}

/// How long a snapshot of a store owned by another node is used without asking the owner for
/// its version. Owners also push new versions, so this bounds staleness only if a push is lost.
const REMOTE_REVALIDATE: Duration = Duration::from_millis(1000);

impl Node {
    pub fn new(
        settings: Settings,
        catalog: NodeCatalog,
        operator_token: String,
        cluster: Cluster,
        replicator: Option<Arc<Replicator>>,
        secrets: crate::secrets::SecretBox,
    ) -> Arc<Node> {
        let layout = DataLayout::new(settings.data_dir.clone());
        let shopper_files = Arc::new(crate::storage::ShopperFiles::new(settings.shopper.max_per_store));
        let registry = Registry::new(settings.arbiter_count(), Duration::from_secs(15));
        let day_tally = crate::store::day_stats::DayTally::new(settings.stats.max_visitors_remembered);
        Arc::new(Node {
            personal_pages: PersonalPages::new(&settings.cache),
            anonymous_pages: AnonymousPages::new(&settings.cache, settings.render.failed_page_ttl_secs),
            renderer: Arc::new(crate::render::Renderer::new(&settings.render)),
            snapshots: moka::sync::Cache::builder().max_capacity(10_000).build(),
            settings,
            layout,
            catalog,
            registry,
            operator_token,
            cluster,
            remote_checked: moka::sync::Cache::builder().max_capacity(10_000).build(),
            replicator,
            starting: std::sync::atomic::AtomicBool::new(false),
            secrets,
            shopper_files,
            events: crate::runtime::events::EventHub::new(),
            day_tally,
        })
    }

    /// Marks startup work under way (`true`) or done (`false`); see `/healthz`.
    pub fn set_starting(&self, starting: bool) {
        self.starting.store(starting, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_starting(&self) -> bool {
        self.starting.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The bearer token that may administer every store of this node and create new ones.
    pub fn operator_token(&self) -> &str {
        &self.operator_token
    }

    /// This node's copy of the snapshot of a store whose actor lives here; `None` when there is
    /// none or the copy came from another node (the store moved here since).
    pub fn cached_local_snapshot(&self, store: &StoreId) -> Option<SharedSnapshot> {
        let snap = self.snapshots.get(store)?;
        (!self.remote_checked.contains_key(store)).then_some(snap)
    }

    /// Keeps `snap`, just loaded from this node's store actor.
    pub fn keep_local_snapshot(&self, store: &StoreId, snap: SharedSnapshot) {
        self.remote_checked.invalidate(store);
        self.snapshots.insert(store.clone(), snap);
    }

    /// The snapshot of a store whose actor lives on the node at `addr`: this node's copy while
    /// it is fresh or the owner confirms its version, else fetched from the owner.
    pub async fn remote_snapshot(&self, store: &StoreId, addr: &str) -> Result<SharedSnapshot, ActorError> {
        let key = crate::ids::ActorKey::Store(store.clone());
        let cached = self.snapshots.get(store);
        let checked = self.remote_checked.get(store);
        if let (Some(snap), Some(at)) = (&cached, checked) {
            if at.elapsed() < REMOTE_REVALIDATE {
                return Ok(snap.clone());
            }
        }
        if let Some(snap) = &cached {
            let path = format!("/internal/stores/{store}/version");
            if let Ok(v) = self.cluster.call_json::<serde_json::Value>(addr, reqwest::Method::GET, &path, &()).await {
                if v["version"].as_u64() == Some(snap.version) {
                    self.remote_checked.insert(store.clone(), Instant::now());
                    return Ok(snap.clone());
                }
            }
        }
        let path = format!("/internal/stores/{store}/snapshot");
        let parts: SnapshotParts = self.cluster.call_json(addr, reqwest::Method::GET, &path, &()).await.map_err(|e| {
            tracing::warn!(%store, error = %e, "cannot fetch the store snapshot from its owner");
            ActorError::Unavailable(key.clone())
        })?;
        let snap = Arc::new(StoreSnapshot::from_parts(store.clone(), parts));
        tracing::debug!(%store, %addr, version = snap.version, products = snap.products.len(), "fetched the store snapshot from its owner");
        self.snapshots.insert(store.clone(), snap.clone());
        self.remote_checked.insert(store.clone(), Instant::now());
        crate::metrics::incr("vitrina_remote_snapshot_fetches_total", &[]);
        Ok(snap)
    }

    /// A store's owner announced `version`: forget an older copy so the next render fetches it.
    pub fn note_remote_version(&self, store: &StoreId, version: u64) {
        if self.snapshots.get(store).is_some_and(|s| s.version < version) {
            self.snapshots.invalidate(store);
            self.remote_checked.invalidate(store);
        }
    }

    /// Tells every other node that `store` is now at `version` (best effort; they also revalidate).
    pub fn announce_version(self: &Arc<Self>, store: &StoreId, version: u64) {
        if !self.cluster.enabled() {
            return;
        }
        let node = self.clone();
        let store = store.clone();
        actix_web::rt::spawn(async move {
            let body = serde_json::json!({"version": version});
            let path = format!("/internal/stores/{store}/published");
            let peers = node.cluster.peers();
            let calls =
                peers.iter().map(|(_, addr)| node.cluster.call_json::<serde_json::Value>(addr, reqwest::Method::POST, &path, &body));
            futures::future::join_all(calls).await;
        });
    }

    /// Installs a snapshot of a store owned here unless a newer one is already there.
    pub fn publish_snapshot(&self, snap: SharedSnapshot) {
        let store = snap.store.clone();
        tracing::debug!(%store, version = snap.version, products = snap.products.len(), "store snapshot published");
        let newer_present = self.snapshots.get(&store).is_some_and(|cur| cur.version > snap.version);
        if !newer_present {
            self.snapshots.insert(store, snap);
        }
    }

    /// Sends this node's catalog to every peer (after a store or host change).
    pub async fn push_catalog(&self) {
        if !self.cluster.enabled() {
            return;
        }
        let Ok(dump) = self.catalog.dump() else { return };
        let peers = self.cluster.peers();
        let calls = peers
            .iter()
            .map(|(_, addr)| self.cluster.call_json::<serde_json::Value>(addr, reqwest::Method::POST, "/internal/catalog", &dump));
        for r in futures::future::join_all(calls).await {
            if let Err(e) = r {
                tracing::warn!(error = %e, "catalog push failed");
            }
        }
    }

    /// Copies the catalog of the node at `addr` into this node's (a node joining a cluster).
    pub async fn pull_catalog(&self, addr: &str) -> anyhow::Result<()> {
        let dump: crate::catalog::CatalogDump = self.cluster.call_json(addr, reqwest::Method::GET, "/internal/catalog", &()).await?;
        self.catalog.apply(&dump)?;
        Ok(())
    }

    // Replication as the rest of the node sees it: each is a no-op (or `Ok(false)`) when
    // replication is not configured.

    /// Called by activation before the actor's file is opened: when the file is missing and a
    /// copy exists in object storage, the verified copy is installed first. `Ok(true)`: restored.
    /// An error must stop the activation (an empty actor would later overwrite the good copy).
    pub async fn restore_if_missing(&self, key: &ActorKey) -> ReplicationResult<bool> {
        let Some(replicator) = &self.replicator else { return Ok(false) };
        let path = self.layout.actor_db(key);
        if tokio::fs::try_exists(&path).await? {
            return Ok(false);
        }
        replicator.restore(key, &path).await
    }

    /// Called by activation when this node's file of `key` is stale (another node held its
    /// shard since this one wrote it under token `written_under`) and no later holder it could
    /// reach had the key: a copy in object storage uploaded under a greater token is a later
    /// holder's, newer than the local file, and replaces it. `Ok(true)`: replaced.
    pub async fn restore_if_newer(&self, key: &ActorKey, written_under: u64) -> ReplicationResult<bool> {
        let Some(replicator) = &self.replicator else { return Ok(false) };
        match replicator.current_token(key).await? {
            Some(token) if token > written_under => replicator.restore(key, &self.layout.actor_db(key)).await,
            _ => Ok(false),
        }
    }

    /// Makes `db` report its commits to replication.
    pub fn track_commits(&self, key: &ActorKey, db: ActorDb) -> ActorDb {
        match &self.replicator {
            Some(r) => r.track(key, db),
            None => db,
        }
    }

    /// Called from an actor's `stopped`, after its file is closed.
    pub fn actor_passivated(&self, key: ActorKey) {
        if let Some(r) = &self.replicator {
            r.passivated(key);
        }
    }

    /// The acknowledgement barrier, awaited within the writing actor's turn right after its
    /// commit: returns once the write is as durable as `durability` demands, and only while
    /// this node still owns the key's shard (on etcd: holds it under a live lease). Otherwise
    /// the commit stays in this node's file, unacknowledged.
    pub async fn acknowledge(&self, key: &ActorKey, durability: Durability) -> Result<(), AcknowledgeError> {
        match (durability, &self.replicator) {
            (Durability::Async, _) => {}
            (Durability::Sync, None) => return Err(ReplicationError::Disabled.into()),
            (Durability::Sync, Some(r)) => {
                r.replicate_now(key).await?;
            }
        }
        if !self.cluster.may_acknowledge(key) {
            crate::metrics::incr("vitrina_unacknowledged_writes_total", &[("why", "not_owner")]);
            return Err(AcknowledgeError::NotOwner(key.to_string()));
        }
        Ok(())
    }
}

impl crate::cluster::Host for Node {
    fn cluster(&self) -> &Cluster {
        &self.cluster
    }
    fn layout(&self) -> &DataLayout {
        &self.layout
    }
    fn registry(&self) -> &Registry {
        &self.registry
    }
    fn restorable(&self) -> bool {
        self.replicator.is_some()
    }
    fn pull_catalog<'a>(&'a self, addr: &'a str) -> futures::future::BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(Node::pull_catalog(self, addr))
    }
    fn keys_awaiting_their_shard(&self) -> Vec<ActorKey> {
        self.replicator.as_ref().map(|r| r.unheld_keys()).unwrap_or_default()
    }
    fn stop_awaiting_shard(&self, key: &ActorKey) {
        if let Some(replicator) = &self.replicator {
            replicator.forget_unheld(key);
        }
    }
}
