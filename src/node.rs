//! Everything one node shares between requests and actors.

use std::sync::Arc;
use std::time::Duration;

use crate::actors::registry::{ActorError, Registry};
use crate::actors::store::GetSnapshot;
use crate::catalog::NodeCatalog;
use crate::config::Settings;
use crate::ids::StoreId;
use crate::render::cache::{AnonymousPages, PersonalPages};
use crate::replication::Replicator;
use crate::store::snapshot::SharedSnapshot;
use crate::storage::DataLayout;

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
    operator_token: String,
    /// Copies of actor files in object storage; `None` when not configured. Node-level hooks
    /// (restore on activation, commit tracking, passivation) live in `replication.rs`.
    pub replicator: Option<Arc<Replicator>>,
}

impl Node {
    pub fn new(settings: Settings, catalog: NodeCatalog, operator_token: String, replicator: Option<Arc<Replicator>>) -> Arc<Node> {
        let layout = DataLayout::new(settings.data_dir.clone());
        let registry = Registry::new(settings.arbiter_count(), Duration::from_secs(15));
        Arc::new(Node {
            personal_pages: PersonalPages::new(&settings.cache),
            anonymous_pages: AnonymousPages::new(&settings.cache),
            snapshots: moka::sync::Cache::builder().max_capacity(10_000).build(),
            settings,
            layout,
            catalog,
            registry,
            operator_token,
            replicator,
        })
    }

    /// The bearer token that may administer every store of this node and create new ones.
    pub fn operator_token(&self) -> &str {
        &self.operator_token
    }

    /// The store's current snapshot: from this node's copy, or from the store actor.
    pub async fn snapshot(self: &Arc<Self>, store: &StoreId) -> Result<SharedSnapshot, ActorError> {
        if let Some(snap) = self.snapshots.get(store) {
            return Ok(snap);
        }
        let snap = self.registry.ask_store(self, store, GetSnapshot).await?;
        self.publish_snapshot(snap.clone());
        Ok(snap)
    }

    /// Installs a snapshot unless a newer one is already there.
    pub fn publish_snapshot(&self, snap: SharedSnapshot) {
        let store = snap.store.clone();
        let newer_present = self.snapshots.get(&store).is_some_and(|cur| cur.version > snap.version);
        if !newer_present {
            self.snapshots.insert(store, snap);
        }
    }
}
