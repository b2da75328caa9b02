//! How the edge and the actors reach the store and shopper actors: asks through the registry
//! (activating them here), and a store's snapshot or search wherever its actor lives. These are
//! `Node` methods the actors' layer adds, so `node` itself knows nothing of the actors.

use std::sync::Arc;

use actix::dev::ToEnvelope;
use actix::prelude::*;

use super::shopper::{ShopperActor, ShopperPulse};
use super::store::{GetSnapshot, Search, StoreActor, StoreError};
use crate::cluster::Placement;
use crate::ids::{ActorKey, ProductId, SessionId, StoreId};
use crate::node::Node;
use crate::render::snapshot::SharedSnapshot;
use crate::runtime::registry::ActorError;
use crate::runtime::traced::Traced;

/// Why a search has no answer.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Actor(#[from] ActorError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store's actor lives on another node, which did not answer.
    #[error("the store's owner did not answer: {0}")]
    Owner(String),
}

impl Node {
    /// Sends `msg` to the store actor of `store`, activating it if needed.
    pub async fn ask_store<M>(self: &Arc<Self>, store: &StoreId, msg: M) -> Result<M::Result, ActorError>
    where
        M: Message + Send + Clone + 'static,
        M::Result: Send,
        StoreActor: Handler<Traced<M>>,
        <StoreActor as Actor>::Context: ToEnvelope<StoreActor, Traced<M>>,
    {
        self.registry.ask::<StoreActor, M>(self, &ActorKey::Store(store.clone()), msg).await
    }

    /// Sends `msg` to the shopper actor of (`store`, `sid`), activating it if needed.
    pub async fn ask_shopper<M>(self: &Arc<Self>, store: &StoreId, sid: &SessionId, msg: M) -> Result<M::Result, ActorError>
    where
        M: Message + Send + Clone + 'static,
        M::Result: Send,
        ShopperActor: Handler<Traced<M>>,
        <ShopperActor as Actor>::Context: ToEnvelope<ShopperActor, Traced<M>>,
    {
        self.registry.ask::<ShopperActor, M>(self, &ActorKey::Shopper(store.clone(), sid.clone()), msg).await
    }

    /// The published state of a live shopper actor (see `actors::shopper::pulse`); `None` when
    /// it is not live on this node, or is activating or passivating.
    pub fn shopper_pulse(&self, key: &ActorKey) -> Option<Arc<ShopperPulse>> {
        self.registry.published::<ShopperPulse>(key)
    }

    /// The store's current snapshot: this node's copy, or the store actor's (here or on the
    /// store's owner, fetched once per version).
    pub async fn snapshot(self: &Arc<Self>, store: &StoreId) -> Result<SharedSnapshot, ActorError> {
        match self.cluster.placement(&crate::ids::ActorKey::Store(store.clone())) {
            Placement::Local => self.local_store_snapshot(store).await,
            Placement::Remote { addr, .. } => self.remote_snapshot(store, &addr).await,
            Placement::Nowhere => Err(ActorError::Unavailable(crate::ids::ActorKey::Store(store.clone()))),
        }
    }

    /// The snapshot of a store whose actor lives on this node.
    pub async fn local_store_snapshot(self: &Arc<Self>, store: &StoreId) -> Result<SharedSnapshot, ActorError> {
        if let Some(snap) = self.cached_local_snapshot(store) {
            return Ok(snap);
        }
        let snap = self.ask_store(store, GetSnapshot).await?;
        self.keep_local_snapshot(store, snap.clone());
        Ok(snap)
    }

    /// Ranked product ids for a query, from the store's actor wherever it lives.
    pub async fn search(self: &Arc<Self>, store: &StoreId, query: &str, limit: usize) -> Result<Vec<ProductId>, SearchError> {
        match self.cluster.placement(&crate::ids::ActorKey::Store(store.clone())) {
            Placement::Remote { addr, .. } => {
                let path = format!("/internal/stores/{store}/search?q={}&limit={limit}", crate::cluster::handoff::urlencode(query));
                let v: serde_json::Value =
                    self.cluster.call_json(&addr, reqwest::Method::GET, &path, &()).await.map_err(|e| SearchError::Owner(e.to_string()))?;
                Ok(v["ids"].as_array().into_iter().flatten().filter_map(|i| i.as_str()).filter_map(|i| ProductId::parse(i).ok()).collect())
            }
            _ => self.search_local(store, query, limit).await,
        }
    }

    pub async fn search_local(self: &Arc<Self>, store: &StoreId, query: &str, limit: usize) -> Result<Vec<ProductId>, SearchError> {
        let msg = Search { query: query.to_string(), limit };
        Ok(self.ask_store(store, msg).await??)
    }
}
