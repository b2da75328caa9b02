//! The actor registry: at most one live instance per actor key on this node.
//!
//! A key's slot is either `Live` (messages go to its address) or `Busy` (the actor is being
//! activated or is closing its file). Callers that find a key busy wait for the transition to
//! finish and look again, so a new instance never opens a file an old one still holds.
//!
//! Actors are pinned to one of a fixed set of arbiters (threads) by a hash of their key: an
//! actor's V8 isolate is created, used and dropped on that one thread.
//!
//! The registry knows no actor kind: an [`Activator`] from the layer above decides whether a
//! key may live here and brings it to life (its file fetched, opened, its actor started), and
//! callers name the actor type they expect when they [`ask`](Registry::ask).

use std::any::Any;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::prelude::*;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::traced::Traced;
use super::Passivate;
use crate::ids::{ActorKey, StoreId};
use crate::sqlite::StorageError;

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

/// A live instance as the registry keeps it: its typed address (checked against the type a
/// caller asks for), how to ask it to passivate, and what it publishes for callers to read
/// without a message (see [`Registry::published`]).
#[derive(Clone)]
pub struct LiveActor {
    addr: Arc<dyn Any + Send + Sync>,
    passivate: Recipient<Passivate>,
    published: Option<Arc<dyn Any + Send + Sync>>,
}

impl LiveActor {
    pub fn new<A>(addr: Addr<A>) -> LiveActor
    where
        A: Actor + Handler<Passivate>,
        A::Context: ToEnvelope<A, Passivate>,
    {
        LiveActor { passivate: addr.clone().recipient(), addr: Arc::new(addr), published: None }
    }

    /// Something the actor updates and callers read without a message while it is live.
    pub fn publishing(mut self, published: Arc<dyn Any + Send + Sync>) -> LiveActor {
        self.published = Some(published);
        self
    }
}

/// What the registry needs from the layer above it.
pub trait Activator: Send + Sync {
    /// Whether `key` may be activated on this node now (its owner under the cluster's view).
    fn owns(&self, key: &ActorKey) -> bool;

    /// Brings `key` to life: its state made ready and its actor started on `arbiter`, holding
    /// `lease` until it passivates. Runs in a task of its own, so it must own what it uses.
    fn activate(&self, key: ActorKey, lease: Lease, arbiter: ArbiterHandle) -> BoxFuture<'static, Result<LiveActor, ActorError>>;
}

enum Slot {
    Live {
        actor: LiveActor,
        generation: u64,
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

/// Removes `key`'s slot, and gives back most of the map's room once a burst of actors has
/// gone: a map keeps the capacity of its largest moment, and one slot per actor of a burst of
/// many thousands is megabytes (kept in the node's heap, where it pins pages nothing else uses).
fn remove_slot<K: std::hash::Hash + Eq, V>(slots: &mut HashMap<K, V>, key: &K) {
    slots.remove(key);
    // Shrinking to twice what is left keeps the cost of rehashing proportional to the removals
    // that led to it.
    if slots.capacity() > MIN_SHRUNK_SLOTS && slots.len() < slots.capacity() / 8 {
        slots.shrink_to((slots.len() * 2).max(MIN_SHRUNK_SLOTS));
    }
}

/// Below this the slot map keeps its room.
const MIN_SHRUNK_SLOTS: usize = 1024;

/// A key held busy with no instance (see [`Registry::try_reserve`]).
pub struct Reservation<'a> {
    registry: &'a Registry,
    key: ActorKey,
    busy: Option<watch::Sender<()>>,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        // The slot goes first: waiters woken by the sender's drop must find it free.
        remove_slot(&mut self.registry.slots.lock(), &self.key);
        self.busy.take();
    }
}

pub struct Registry {
    arbiters: Vec<ArbiterHandle>,
    slots: Arc<Mutex<HashMap<ActorKey, Slot>>>,
    generations: AtomicU64,
    ask_timeout: Duration,
    /// Why keys being evicted are asked to passivate (absent: the actor went idle).
    reasons: Mutex<HashMap<ActorKey, PassivationReason>>,
    _owned_arbiters: Vec<Arbiter>,
}

/// Why an actor passivated, as `vitrina_actor_passivations_total{reason}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassivationReason {
    /// Nothing asked it for its idle period.
    Idle,
    /// Stopped by this node (an erase, an operator, a test).
    Evicted,
    /// Its file moves to another node (a hand-off, a shard lost or given up).
    Handoff,
    /// The node stops.
    Shutdown,
}

impl PassivationReason {
    pub fn label(self) -> &'static str {
        match self {
            PassivationReason::Idle => "idle",
            PassivationReason::Evicted => "evicted",
            PassivationReason::Handoff => "handoff",
            PassivationReason::Shutdown => "shutdown",
        }
    }
}

enum Next {
    Ready(LiveActor),
    Wait(watch::Receiver<()>),
    Activate(watch::Sender<()>, u64),
}

impl Registry {
    pub fn new(arbiter_count: usize, ask_timeout: Duration) -> Registry {
        let owned: Vec<Arbiter> = (0..arbiter_count.max(1)).map(|_| Arbiter::new()).collect();
        Registry {
            arbiters: owned.iter().map(|a| a.handle()).collect(),
            slots: Arc::new(Mutex::new(HashMap::new())),
            generations: AtomicU64::new(1),
            ask_timeout,
            reasons: Mutex::new(HashMap::new()),
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

    /// Keys being activated or passivated (or reserved) now: an actor counted here has not
    /// closed its file yet.
    pub fn changing_count(&self) -> usize {
        self.slots.lock().values().filter(|s| matches!(s, Slot::Busy(_))).count()
    }

    /// The keys live here now.
    pub fn live_keys(&self) -> Vec<ActorKey> {
        self.slots.lock().iter().filter(|(_, s)| matches!(s, Slot::Live { .. })).map(|(k, _)| k.clone()).collect()
    }

    /// Passivates `key` if it is live here and returns once its file is closed (its current turn
    /// and the messages already in its mailbox finish first).
    pub async fn evict(&self, key: &ActorKey) {
        self.evict_for(key, PassivationReason::Evicted).await
    }

    /// [`evict`](Self::evict), counted under `reason` in `vitrina_actor_passivations_total`.
    pub async fn evict_for(&self, key: &ActorKey, reason: PassivationReason) {
        self.evict_counted(key, reason).await;
        self.reasons.lock().remove(key);
    }

    async fn evict_counted(&self, key: &ActorKey, reason: PassivationReason) {
        for _ in 0..200 {
            let next = {
                let slots = self.slots.lock();
                match slots.get(key) {
                    None => return,
                    Some(Slot::Live { actor, .. }) => Ok(actor.passivate.clone()),
                    Some(Slot::Busy(rx)) => Err(rx.clone()),
                }
            };
            match next {
                Ok(passivate) => {
                    self.reasons.lock().insert(key.clone(), reason);
                    let _ = passivate.send(Passivate).await;
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

    async fn resolve(&self, activator: &dyn Activator, key: &ActorKey) -> Result<LiveActor, ActorError> {
        loop {
            let next = {
                let mut slots = self.slots.lock();
                match slots.get(key) {
                    Some(Slot::Live { actor, .. }) => Next::Ready(actor.clone()),
                    Some(Slot::Busy(rx)) => Next::Wait(rx.clone()),
                    None if !activator.owns(key) => return Err(ActorError::NotOwner(key.clone())),
                    None => {
                        let (tx, rx) = watch::channel(());
                        slots.insert(key.clone(), Slot::Busy(rx));
                        Next::Activate(tx, self.generations.fetch_add(1, Ordering::Relaxed))
                    }
                }
            };
            match next {
                Next::Ready(actor) => return Ok(actor),
                Next::Wait(mut rx) => {
                    // Resolves with Err once the sender is dropped: the transition is over.
                    let _ = tokio::time::timeout(self.ask_timeout, rx.changed()).await;
                }
                Next::Activate(busy, generation) => {
                    // Activation runs in its own task, slot updates included, so a caller that
                    // goes away (client disconnect) cannot leave the slot busy forever.
                    let lease = Lease { key: key.clone(), generation, closing: None };
                    // A child of the caller's span (the request's): the store id only, never
                    // a session id.
                    let span = tracing::info_span!("activation", kind = key_kind(key), store = %key_store(key));
                    let starting =
                        tracing::Instrument::instrument(activator.activate(key.clone(), lease, self.arbiter_for(key).clone()), span);
                    let (slots, key2) = (self.slots.clone(), key.clone());
                    let task = tokio::spawn(async move {
                        let result = starting.await;
                        {
                            let mut slots = slots.lock();
                            match &result {
                                Ok(actor) => {
                                    slots.insert(key2.clone(), Slot::Live { actor: actor.clone(), generation });
                                }
                                Err(_) => {
                                    remove_slot(&mut slots, &key2);
                                }
                            }
                        }
                        if result.is_ok() {
                            crate::metrics::incr("vitrina_actor_activations_total", &[("kind", key_kind(&key2))]);
                        }
                        drop(busy);
                        result
                    });
                    return match task.await {
                        Ok(result) => result,
                        Err(e) => {
                            // The activation panicked before it could settle the slot: free the
                            // key, or its waiters would find it busy with no one to finish it.
                            remove_slot(&mut self.slots.lock(), key);
                            Err(ActorError::Activation(key.clone(), StorageError::Join(e.to_string())))
                        }
                    };
                }
            }
        }
    }

    /// What the live actor of `key` publishes (see [`LiveActor::publishing`]), if it is live
    /// here and publishes a `T`; `None` while it is activating or passivating.
    pub fn published<T: Any + Send + Sync>(&self, key: &ActorKey) -> Option<Arc<T>> {
        match self.slots.lock().get(key) {
            Some(Slot::Live { actor, .. }) => actor.published.clone()?.downcast::<T>().ok(),
            _ => None,
        }
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
        // An actor nobody asked to passivate went idle.
        let reason = self.reasons.lock().remove(&lease.key).unwrap_or(PassivationReason::Idle);
        crate::metrics::incr("vitrina_actor_passivations_total", &[("kind", key_kind(&lease.key)), ("reason", reason.label())]);
        let mut slots = self.slots.lock();
        let ours = match slots.get(&lease.key) {
            Some(Slot::Live { generation, .. }) => *generation == lease.generation,
            Some(Slot::Busy(_)) => lease.closing.is_some(),
            None => false,
        };
        if ours {
            remove_slot(&mut slots, &lease.key);
        }
        drop(slots);
        lease.closing.take();
    }

    /// Sends `msg` to the actor of `key`, an `A`, activating it through `activator` if needed.
    /// The message carries the caller's trace (see [`Traced`]).
    pub async fn ask<A, M>(&self, activator: &dyn Activator, key: &ActorKey, msg: M) -> Result<M::Result, ActorError>
    where
        A: Actor + Handler<Traced<M>>,
        A::Context: ToEnvelope<A, Traced<M>>,
        M: Message + Send + Clone + 'static,
        M::Result: Send,
    {
        let msg = Traced { parent: crate::trace_context::current_parent(), msg };
        // A closed mailbox means the actor passivated before taking the message: the message
        // was not processed, so sending it to the next instance is safe.
        for _ in 0..5 {
            let live = self.resolve(activator, key).await?;
            let addr = live.addr.downcast_ref::<Addr<A>>().cloned().ok_or_else(|| ActorError::Unavailable(key.clone()))?;
            match addr.send(msg.clone()).timeout(self.ask_timeout).await {
                Ok(result) => return Ok(result),
                Err(MailboxError::Closed) => continue,
                Err(MailboxError::Timeout) => return Err(ActorError::Timeout(key.clone(), self.ask_timeout)),
            }
        }
        Err(ActorError::Unavailable(key.clone()))
    }
}

/// The store an actor belongs to (a shopper's session id stays out of spans and labels).
fn key_store(key: &ActorKey) -> &crate::ids::StoreId {
    match key {
        ActorKey::Store(store) | ActorKey::Shopper(store, _) => store,
    }
}

pub fn key_kind(key: &ActorKey) -> &'static str {
    match key {
        ActorKey::Store(_) => "store",
        ActorKey::Shopper(..) => "shopper",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_map_gives_back_its_room_after_a_burst_and_keeps_what_is_left() {
        let mut slots: HashMap<u32, u32> = (0..20_000).map(|k| (k, k)).collect();
        let peak = slots.capacity();
        for k in 0..19_990 {
            remove_slot(&mut slots, &k);
        }
        assert!(slots.capacity() <= 2 * MIN_SHRUNK_SLOTS, "capacity {} after the burst (peak {peak})", slots.capacity());
        assert_eq!(slots.len(), 10);
        assert!((19_990..20_000).all(|k| slots.get(&k) == Some(&k)));
    }
}
