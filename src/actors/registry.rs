//! The actor registry: at most one live instance per actor key on this node.
//!
//! A key's slot is either `Live` (messages go to its address) or `Busy` (the actor is being
//! activated or is closing its file). Callers that find a key busy wait for the transition to
//! finish and look again, so a new instance never opens a file an old one still holds.
//!
//! Actors are pinned to one of a fixed set of arbiters (threads) by a hash of their key: an
//! actor's V8 isolate is created, used and dropped on that one thread.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::prelude::*;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::actors::shopper::{ShopperActor, ShopperPulse};
use crate::actors::store::StoreActor;
use crate::ids::{ActorKey, SessionId, StoreId};
use crate::node::Node;
use crate::sqlite::{SchemaKind, StorageError};
use crate::storage::ActorDb;

#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    #[error("actor {0} could not be activated: {1}")]
    Activation(ActorKey, StorageError),
    #[error("actor {0} did not answer within {1:?}")]
    Timeout(ActorKey, Duration),
    #[error("actor {0} is unavailable")]
    Unavailable(ActorKey),
    #[error("store {0} does not exist")]
    NoSuchStore(StoreId),
    #[error("actor {0} is owned by another node now")]
    NotOwner(ActorKey),
    #[error("actor {0} is moving between nodes: {1}")]
    Moving(ActorKey, String),
}

#[derive(Clone)]
enum LiveAddr {
    Store(Addr<StoreActor>),
    Shopper(Addr<ShopperActor>),
}

enum Slot {
    Live {
        addr: LiveAddr,
        generation: u64,
        pulse: Option<Arc<ShopperPulse>>,
    },
    /// Being activated or passivated; the sender is dropped when the transition ends.
    Busy(watch::Receiver<()>),
}

/// Handed to an actor at activation; it gives the key back when the actor passivates.
pub struct Lease {
    pub key: ActorKey,
    generation: u64,
    /// Held while the actor is closing, so waiters do not start a second instance meanwhile.
    closing: Option<watch::Sender<()>>,
}

/// A key held busy with no instance (see [`Registry::try_reserve`]).
pub struct Reservation<'a> {
    registry: &'a Registry,
    key: ActorKey,
    busy: Option<watch::Sender<()>>,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        // The slot goes first: waiters woken by the sender's drop must find it free.
        self.registry.slots.lock().remove(&self.key);
        self.busy.take();
    }
}

pub struct Registry {
    arbiters: Vec<ArbiterHandle>,
    slots: Mutex<HashMap<ActorKey, Slot>>,
    generations: AtomicU64,
    ask_timeout: Duration,
    _owned_arbiters: Vec<Arbiter>,
}

enum Next {
    Ready(LiveAddr),
    Wait(watch::Receiver<()>),
    Activate(watch::Sender<()>, u64),
}

impl Registry {
    pub fn new(arbiter_count: usize, ask_timeout: Duration) -> Registry {
        let owned: Vec<Arbiter> = (0..arbiter_count.max(1)).map(|_| Arbiter::new()).collect();
        Registry {
            arbiters: owned.iter().map(|a| a.handle()).collect(),
            slots: Mutex::new(HashMap::new()),
            generations: AtomicU64::new(1),
            ask_timeout,
            _owned_arbiters: owned,
        }
    }

    fn arbiter_for(&self, key: &ActorKey) -> &ArbiterHandle {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        &self.arbiters[(h.finish() % self.arbiters.len() as u64) as usize]
    }

    /// Number of live actors, by kind: (stores, shoppers).
    pub fn live_counts(&self) -> (usize, usize) {
        let slots = self.slots.lock();
        slots.iter().fold((0, 0), |(st, sh), (k, s)| match (k, s) {
            (ActorKey::Store(_), Slot::Live { .. }) => (st + 1, sh),
            (ActorKey::Shopper(..), Slot::Live { .. }) => (st, sh + 1),
            _ => (st, sh),
        })
    }

    /// Passivates `key` if it is live here and returns once its file is closed (its current turn
    /// and the messages already in its mailbox finish first).
    pub async fn evict(&self, key: &ActorKey) {
        for _ in 0..200 {
            let next = {
                let slots = self.slots.lock();
                match slots.get(key) {
                    None => return,
                    Some(Slot::Live { addr, .. }) => Ok(addr.clone()),
                    Some(Slot::Busy(rx)) => Err(rx.clone()),
                }
            };
            match next {
                Ok(LiveAddr::Store(a)) => {
                    let _ = a.send(super::Passivate).await;
                }
                Ok(LiveAddr::Shopper(a)) => {
                    let _ = a.send(super::Passivate).await;
                }
                Err(mut rx) => {
                    let _ = tokio::time::timeout(self.ask_timeout, rx.changed()).await;
                }
            }
            tokio::task::yield_now().await;
        }
        tracing::warn!(%key, "actor did not passivate for a hand-off");
    }

    /// Reserves `key` while no instance of it is live or changing: its slot is marked busy, so
    /// requests for it wait, until the reservation is dropped (then they activate it afresh).
    /// For work on an idle actor's file (the sweeper deleting it). `None`: live or busy.
    pub fn try_reserve(&self, key: &ActorKey) -> Option<Reservation<'_>> {
        let mut slots = self.slots.lock();
        if slots.contains_key(key) {
            return None;
        }
        let (tx, rx) = watch::channel(());
        slots.insert(key.clone(), Slot::Busy(rx));
        Some(Reservation { registry: self, key: key.clone(), busy: Some(tx) })
    }

    pub fn is_live(&self, key: &ActorKey) -> bool {
        matches!(self.slots.lock().get(key), Some(Slot::Live { .. }))
    }

    async fn resolve(&self, node: &Arc<Node>, key: &ActorKey) -> Result<LiveAddr, ActorError> {
        loop {
            let next = {
                let mut slots = self.slots.lock();
                match slots.get(key) {
                    Some(Slot::Live { addr, .. }) => Next::Ready(addr.clone()),
                    Some(Slot::Busy(rx)) => Next::Wait(rx.clone()),
                    None if !node.cluster.owns(key) => return Err(ActorError::NotOwner(key.clone())),
                    None => {
                        let (tx, rx) = watch::channel(());
                        slots.insert(key.clone(), Slot::Busy(rx));
                        Next::Activate(tx, self.generations.fetch_add(1, Ordering::Relaxed))
                    }
                }
            };
            match next {
                Next::Ready(addr) => return Ok(addr),
                Next::Wait(mut rx) => {
                    // Resolves with Err once the sender is dropped: the transition is over.
                    let _ = tokio::time::timeout(self.ask_timeout, rx.changed()).await;
                }
                Next::Activate(tx, generation) => {
                    // Activation runs in its own task so a caller that goes away (client
                    // disconnect) cannot leave the slot busy forever.
                    let task = tokio::spawn(activate(node.clone(), key.clone(), tx, generation));
                    return match task.await {
                        Ok(result) => result,
                        Err(e) => Err(ActorError::Activation(key.clone(), StorageError::Join(e.to_string()))),
                    };
                }
            }
        }
    }

    fn install(&self, key: &ActorKey, addr: LiveAddr, generation: u64, pulse: Option<Arc<ShopperPulse>>) {
        self.slots.lock().insert(key.clone(), Slot::Live { addr, generation, pulse });
    }

    /// The published state of a live shopper actor (see `actors::shopper::pulse`); `None` when
    /// it is not live on this node, or is activating or passivating.
    pub fn shopper_pulse(&self, key: &ActorKey) -> Option<Arc<ShopperPulse>> {
        match self.slots.lock().get(key) {
            Some(Slot::Live { pulse, .. }) => pulse.clone(),
            _ => None,
        }
    }

    fn abandon(&self, key: &ActorKey) {
        self.slots.lock().remove(key);
    }

    /// Called by an idle actor: marks its slot busy (so no second instance starts) and returns
    /// the lease it must release once its file is closed. `false`: the slot is no longer its own.
    pub fn begin_passivation(&self, lease: &mut Lease) -> bool {
        let mut slots = self.slots.lock();
        match slots.get(&lease.key) {
            Some(Slot::Live { generation, .. }) if *generation == lease.generation => {
                let (tx, rx) = watch::channel(());
                slots.insert(lease.key.clone(), Slot::Busy(rx));
                lease.closing = Some(tx);
                true
            }
            _ => false,
        }
    }

    /// Called from the actor's `stopped`, after its file is closed.
    pub fn finish_passivation(&self, lease: &mut Lease) {
        let mut slots = self.slots.lock();
        let ours = match slots.get(&lease.key) {
            Some(Slot::Live { generation, .. }) => *generation == lease.generation,
            Some(Slot::Busy(_)) => lease.closing.is_some(),
            None => false,
        };
        if ours {
            slots.remove(&lease.key);
        }
        drop(slots);
        lease.closing.take();
    }

    /// Sends `msg` to the store actor of `store`, activating it if needed.
    pub async fn ask_store<M>(&self, node: &Arc<Node>, store: &StoreId, msg: M) -> Result<M::Result, ActorError>
    where
        M: Message + Send + Clone + 'static,
        M::Result: Send,
        StoreActor: Handler<M>,
        <StoreActor as Actor>::Context: ToEnvelope<StoreActor, M>,
    {
        let key = ActorKey::Store(store.clone());
        self.ask(node, &key, msg, |a| match a {
            LiveAddr::Store(a) => Some(a),
            _ => None,
        })
        .await
    }

    /// Sends `msg` to the shopper actor of (`store`, `sid`), activating it if needed.
    pub async fn ask_shopper<M>(&self, node: &Arc<Node>, store: &StoreId, sid: &SessionId, msg: M) -> Result<M::Result, ActorError>
    where
        M: Message + Send + Clone + 'static,
        M::Result: Send,
        ShopperActor: Handler<M>,
        <ShopperActor as Actor>::Context: ToEnvelope<ShopperActor, M>,
    {
        let key = ActorKey::Shopper(store.clone(), sid.clone());
        self.ask(node, &key, msg, |a| match a {
            LiveAddr::Shopper(a) => Some(a),
            _ => None,
        })
        .await
    }

    async fn ask<A, M>(
        &self,
        node: &Arc<Node>,
        key: &ActorKey,
        msg: M,
        pick: impl Fn(LiveAddr) -> Option<Addr<A>>,
    ) -> Result<M::Result, ActorError>
    where
        A: Actor + Handler<M>,
        A::Context: ToEnvelope<A, M>,
        M: Message + Send + Clone + 'static,
        M::Result: Send,
    {
        // A closed mailbox means the actor passivated before taking the message: the message
        // was not processed, so sending it to the next instance is safe.
        for _ in 0..5 {
            let addr = pick(self.resolve(node, key).await?).ok_or_else(|| ActorError::Unavailable(key.clone()))?;
            match addr.send(msg.clone()).timeout(self.ask_timeout).await {
                Ok(result) => return Ok(result),
                Err(MailboxError::Closed) => continue,
                Err(MailboxError::Timeout) => return Err(ActorError::Timeout(key.clone(), self.ask_timeout)),
            }
        }
        Err(ActorError::Unavailable(key.clone()))
    }
}

async fn activate(node: Arc<Node>, key: ActorKey, busy: watch::Sender<()>, generation: u64) -> Result<LiveAddr, ActorError> {
    let registry = &node.registry;
    let store = key.store();
    if !node.catalog.store_exists(store).unwrap_or(false) {
        registry.abandon(&key);
        return Err(ActorError::NoSuchStore(store.clone()));
    }
    let path = node.layout.actor_db(&key);
    if node.cluster.enabled() && !path.exists() {
        // The file may still be with the key's owner under an earlier view (newest data): take
        // it over before anything opens a fresh one here.
        if let Err(e) = crate::cluster::handoff::pull(&node, &key).await {
            registry.abandon(&key);
            return Err(ActorError::Moving(key, e.to_string()));
        }
    }
    // Replication: a file still missing (its node was lost) may have a verified copy in object
    // storage; install it before opening.
    if let Err(e) = node.restore_if_missing(&key).await {
        registry.abandon(&key);
        return Err(ActorError::Activation(key, StorageError::Restore(e.to_string())));
    }
    let kind = match key {
        ActorKey::Store(_) => SchemaKind::Store,
        ActorKey::Shopper(..) => SchemaKind::Shopper,
    };
    // Shoppers get their file on their first write; a store's file always exists (created with
    // it). A shopper without a file opens nothing, so it skips the hop to the blocking pool
    // (most new sessions: W2).
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
        Ok(Err(e)) => {
            registry.abandon(&key);
            return Err(ActorError::Activation(key, e));
        }
        Err(e) => {
            registry.abandon(&key);
            return Err(ActorError::Activation(key, StorageError::Join(e.to_string())));
        }
    };
    let lease = Lease { key: key.clone(), generation, closing: None };
    let arbiter = registry.arbiter_for(&key);
    let pulse = matches!(key, ActorKey::Shopper(..)).then(|| Arc::new(ShopperPulse::default()));
    let addr = match &key {
        ActorKey::Store(store) => {
            let (store, node2) = (store.clone(), node.clone());
            LiveAddr::Store(StoreActor::start_in_arbiter(arbiter, move |_| StoreActor::new(node2, store, db, lease)))
        }
        ActorKey::Shopper(store, sid) => {
            let (store, sid, node2, pulse) = (store.clone(), sid.clone(), node.clone(), pulse.clone().unwrap_or_default());
            LiveAddr::Shopper(ShopperActor::start_in_arbiter(arbiter, move |_| ShopperActor::new(node2, store, sid, db, lease, pulse)))
        }
    };
    registry.install(&key, addr.clone(), generation, pulse);
    crate::metrics::incr("vitrina_actor_activations_total", &[("kind", key_kind(&key))]);
    drop(busy);
    Ok(addr)
}

pub fn key_kind(key: &ActorKey) -> &'static str {
    match key {
        ActorKey::Store(_) => "store",
        ActorKey::Shopper(..) => "shopper",
    }
}
