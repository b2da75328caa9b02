//! The shopper actor: one per (store, session). Owns the session's database — cart,
//! preferences, browsing history, and its personalised HTML while asleep — and renders the
//! shopper's pages in its own isolate.
//!
//! This file holds the actor's state, its loading, and the write path every handler uses
//! (commit with the state version, then acknowledge as durably as the store demands). The
//! handlers are grouped by concern:
//! - `cart`: reading and changing the cart, and its expiry alarm;
//! - `pages`: rendering this shopper's pages (recording product views), its page cache;
//! - `preferences`: preferences and the session-token generation;
//! - `lifecycle`: alarms, passivation, isolate eviction, saving pages when going to sleep;
//! - `orders`: checkout and order delivery;
//! - `repo`: the SQL over the shopper's database; `pulse`: what the HTTP workers read lock-free.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use rusqlite::Connection;

mod cart;
mod export;
mod lifecycle;
mod orders;
mod pages;
mod preferences;
mod pulse;
mod repo;
pub use cart::{CartJson, CartOp, ChangeCart, GetCart};
pub use export::ExportShopper;
pub use lifecycle::FireAlarms;
pub use orders::{Checkout, DeliverOrders, GetOrder, IdempotencyKey};
pub use pages::{RenderForShopper, ShopperPage};
pub use preferences::{RotateSession, SessionGeneration, SetPreferences};
pub use pulse::ShopperPulse;

use crate::clock::now_ms;
use crate::ids::{ActorKey, ProductId, SessionId, StoreId};
use crate::node::Node;
use crate::render::cache::{CachedPage, PersonalPages};
use crate::render::snapshot::SharedSnapshot;
use crate::render::{self, RenderError};
use crate::replication::ReplicationError;
use crate::runtime::registry::{Lease, Registry};
use crate::runtime::Passivating;
use crate::sqlite::StorageError;
use crate::storage::{ActorDb, Commit};
use crate::store::model::Durability;
use cart::BlocksCart;
use repo::CartLine;

#[derive(Debug, thiserror::Error)]
pub enum ShopperError {
    #[error("product {0} does not exist in this store")]
    NoSuchProduct(ProductId),
    #[error("only {available} of {product} in stock")]
    InsufficientStock { product: ProductId, available: i64, requested: i64 },
    #[error("{0}")]
    Invalid(String),
    #[error("the store is unavailable: {0}")]
    Store(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The write is committed on this node but its store demands `durability = "sync"` and the
    /// upload to object storage failed: not acknowledged, though it will be retried.
    #[error("the change was saved on this node but could not be replicated: {0}")]
    Replication(#[from] ReplicationError),
    /// Committed on this node, not acknowledged: the node no longer owns the actor.
    #[error("{0}")]
    NotOwner(String),
}

impl From<crate::node::AcknowledgeError> for ShopperError {
    fn from(e: crate::node::AcknowledgeError) -> Self {
        match e {
            crate::node::AcknowledgeError::Replication(e) => ShopperError::Replication(e),
            e @ crate::node::AcknowledgeError::NotOwner(_) => ShopperError::NotOwner(e.to_string()),
        }
    }
}

pub struct ShopperActor {
    node: Arc<Node>,
    store: StoreId,
    sid: SessionId,
    db: Option<ActorDb>,
    lease: Lease,
    engine: render::EngineSlot,
    last_active: Instant,
    cart: BTreeMap<ProductId, CartLine>,
    /// Most recent first, no duplicates.
    history: VecDeque<ProductId>,
    preferences: BTreeMap<String, String>,
    /// Bumped (durably) by every change that alters what this shopper's pages show.
    state_version: u64,
    /// The session-token generation that reaches this shopper (bumped by `RotateSession`).
    generation: u64,
    /// Where `state_version` is published for pages served without a message (see `pulse`).
    pulse: Arc<ShopperPulse>,
    /// Request keys of this shopper's pages in the node cache, saved at passivation.
    cached_pages: Vec<String>,
    /// Orders with a delivery attempt in flight (never two attempts of one order at once).
    delivering: std::collections::HashSet<String>,
    /// The due time this instance last wrote to the catalog's alarm index (see
    /// `schedule_cart_expiry`). Only this actor changes its own hint, except FireAlarms.
    alarm_hint_ms: Option<i64>,
    /// The due time of the cart-expiry alarm this instance last wrote to its own file (see
    /// `schedule_cart_expiry`); forgotten whenever alarms fire.
    cart_alarm_ms: Option<i64>,
    /// The state version the file's saved pages (`html_cache`) were rendered for, and whether
    /// pages were rendered since: passivation rewrites them only when something changed, so a
    /// wake that only reads costs no commit when the actor sleeps again.
    saved_pages_version: u64,
    rendered_since_save: bool,
    /// The cart as blocks see it, for the state and store versions it was serialised at.
    blocks_cart: Option<BlocksCart>,
}

impl ShopperActor {
    pub fn new(node: Arc<Node>, store: StoreId, sid: SessionId, db: ActorDb, lease: Lease, pulse: Arc<ShopperPulse>) -> ShopperActor {
        let mut actor = ShopperActor {
            node,
            store,
            sid,
            db: None,
            lease,
            engine: Default::default(),
            last_active: Instant::now(),
            cart: BTreeMap::new(),
            history: VecDeque::new(),
            preferences: BTreeMap::new(),
            state_version: 0,
            generation: 0,
            pulse,
            cached_pages: Vec::new(),
            delivering: Default::default(),
            alarm_hint_ms: None,
            cart_alarm_ms: None,
            saved_pages_version: 0,
            rendered_since_save: false,
            blocks_cart: None,
        };
        // No file: nothing was ever written, the state is empty.
        if db.exists() {
            if let Err(e) = db.read(|c| actor.load(c)) {
                tracing::error!(store = %actor.store, error = %e, "shopper state failed to load");
            }
        }
        actor.saved_pages_version = actor.state_version;
        actor.pulse.publish(actor.state_version);
        actor.pulse.publish_generation(actor.generation);
        actor.db = Some(db);
        actor
    }

    fn key(&self) -> ActorKey {
        ActorKey::Shopper(self.store.clone(), self.sid.clone())
    }

    fn load(&mut self, c: &Connection) -> Result<(), StorageError> {
        self.cart = repo::cart(c)?;
        let limit = self.node.settings.shopper.history_limit;
        for id in repo::recent_views(c, limit as i64)? {
            if !self.history.contains(&id) {
                self.history.push_back(id);
            }
        }
        self.preferences = repo::preferences(c)?;
        self.state_version = repo::counter(c, repo::STATE_VERSION);
        self.generation = repo::counter(c, repo::SESSION_GENERATION);
        // Pages rendered before the last passivation are still good if nothing changed since.
        let ttl = self.node.settings.cache.personal_html_ttl_secs as i64 * 1000;
        let shopper = self.key();
        for saved in repo::saved_pages(c)? {
            if now_ms() - saved.rendered_ms >= ttl {
                continue;
            }
            let Some((versions, request_key)) = saved.cache_key.split_once('#') else { continue };
            let Some((store_v, state_v)) = versions.split_once('.') else { continue };
            if let (Ok(store_version), Ok(state_version)) = (store_v.parse(), state_v.parse()) {
                let html = saved.html.into_bytes().into();
                let page = CachedPage { html, store_version, state_version, rendered_ms: saved.rendered_ms };
                self.node.personal_pages.insert(PersonalPages::key(&shopper, request_key), page);
                self.cached_pages.push(request_key.to_string());
            }
        }
        Ok(())
    }

    fn touch(&mut self) {
        self.last_active = Instant::now();
    }

    /// Records a change of what this shopper's pages show; called in the turn that applies
    /// the change, before it is acknowledged.
    fn state_changed(&mut self) {
        self.state_version += 1;
        self.pulse.publish(self.state_version);
    }

    /// Nothing this shopper did shows on a page yet (see [`ShopperPage::SameAsAnonymous`]).
    fn is_pristine(&self) -> bool {
        self.cart.is_empty() && self.history.is_empty() && self.preferences.is_empty()
    }

    /// Runs a durable write for this shopper: `f` runs in one transaction with the state
    /// version bump; the turn waits for the commit.
    fn write<T, F>(&self, f: F) -> futures::future::LocalBoxFuture<'static, Result<T, ShopperError>>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, ShopperError> + Send + 'static,
    {
        self.start_write_as(Commit::Durable, f)
    }

    /// A write with the given durability, started now: the commit runs on a commit thread
    /// while the turn goes on (see [`ActorDb::start_write_as`]). Without a connection (the
    /// actor is closing) the future fails and nothing is written.
    fn start_write_as<T, F>(&self, kind: Commit, f: F) -> futures::future::LocalBoxFuture<'static, Result<T, ShopperError>>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, ShopperError> + Send + 'static,
    {
        let Some(db) = self.db.clone() else {
            return Box::pin(async { Err(ShopperError::Store("shopper actor is closing".into())) });
        };
        Box::pin(db.start_write_as(kind, with_state_version(self.state_version + 1, f)))
    }

    fn snapshot_future(&self) -> impl std::future::Future<Output = Result<SharedSnapshot, ShopperError>> + 'static {
        let node = self.node.clone();
        let store = self.store.clone();
        async move { node.snapshot(&store).await.map_err(|e| ShopperError::Store(e.to_string())) }
    }

    /// Holds the turn after a committed write until it is as durable as the store demands
    /// (`durability = "sync"`: its snapshot is in object storage). Memory has already been
    /// updated to match the local commit, which stands even when this fails. `durability` is
    /// looked up from the store's snapshot when not given; if that fails, replication (when
    /// configured) is the safe assumption.
    fn acknowledged<T: 'static>(
        &self,
        result: Result<T, ShopperError>,
        durability: Option<Durability>,
    ) -> impl ActorFuture<Self, Output = Result<T, ShopperError>> + 'static {
        let node = self.node.clone();
        let key = self.key();
        let store = self.store.clone();
        fut::wrap_future::<_, Self>(async move {
            let value = result?;
            let durability = match durability {
                Some(d) => d,
                None => match node.snapshot(&store).await {
                    Ok(snap) => snap.settings.durability,
                    Err(_) if node.replicator.is_some() => Durability::Sync,
                    Err(_) => Durability::Async,
                },
            };
            node.acknowledge(&key, durability).await?;
            Ok(value)
        })
    }
}

/// `f`, then the shopper's state version recorded as `next_version` in the same transaction.
fn with_state_version<T, F>(next_version: u64, f: F) -> impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, ShopperError> + Send + 'static
where
    T: Send + 'static,
    F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, ShopperError> + Send + 'static,
{
    move |tx| {
        let value = f(tx)?;
        repo::set_counter(tx, repo::STATE_VERSION, next_version)?;
        Ok(value)
    }
}

/// What the runtime needs of a shopper to passivate it and to evict its isolate.
impl Passivating for ShopperActor {
    fn registry_and_lease(&mut self) -> (&Registry, &mut Lease) {
        (&self.node.registry, &mut self.lease)
    }
    fn last_active(&self) -> Instant {
        self.pulse.last_hit().map_or(self.last_active, |hit| hit.max(self.last_active))
    }
    fn engine(&mut self) -> &mut render::EngineSlot {
        &mut self.engine
    }
    /// A shopper's state is all in memory; only writes (and order pages) need the file.
    fn closable_db(&self) -> Option<ActorDb> {
        self.db.clone()
    }
}

impl crate::runtime::traced::TracedTurns for ShopperActor {
    fn turn_trace(&self) -> Option<crate::trace_context::TurnTrace> {
        self.db.as_ref().map(ActorDb::turn_trace)
    }
}

crate::traced_turns!(ShopperActor);
