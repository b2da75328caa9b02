//! Live events: small JSON messages an actor publishes after a commit (a shopper's cart, a
//! store's product), for whoever holds an open page of that key. Knows nothing of HTTP or
//! sockets: a subscriber is a bounded queue, and a node elsewhere that asked for a key's events
//! is an address handed to the [`Relay`] the layer above installs.
//!
//! Subscribers that fall a whole queue behind are dropped (their queue closes), never buffered
//! without bound. Interest of other nodes expires unless renewed, so a node that went away
//! costs nothing after one TTL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::ids::ActorKey;

/// One event as sent: a JSON text, shared by every subscriber it goes to.
pub type Event = Arc<str>;

/// Sends events to other nodes that registered interest in a key (the edge's peer calls).
pub trait Relay: Send + Sync {
    fn relay(&self, addr: &str, key: &ActorKey, event: Event);
}

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Event>,
}

#[derive(Default)]
struct Inner {
    local: HashMap<ActorKey, Vec<Subscriber>>,
    /// Key → (node address → when its interest lapses).
    remote: HashMap<ActorKey, HashMap<String, Instant>>,
}

#[derive(Default)]
pub struct EventHub {
    inner: Mutex<Inner>,
    relay: OnceLock<Arc<dyn Relay>>,
    next_id: AtomicU64,
    closed: AtomicBool,
}

/// A subscriber's end: events of its keys until it is dropped, falls behind, or the node closes.
pub struct Subscription {
    hub: Weak<EventHub>,
    id: u64,
    keys: Vec<ActorKey>,
    rx: mpsc::Receiver<Event>,
}

impl Subscription {
    /// The next event; `None` once the subscription ended (see [`Subscription::ended_by_close`]).
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    pub fn keys(&self) -> &[ActorKey] {
        &self.keys
    }

    /// Whether the subscription ended because the node is closing (else: it fell behind).
    pub fn ended_by_close(&self) -> bool {
        self.hub.upgrade().is_none_or(|hub| hub.closed.load(Ordering::SeqCst))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.remove(self.id, &self.keys);
        }
    }
}

impl EventHub {
    pub fn new() -> Arc<EventHub> {
        Arc::new(EventHub::default())
    }

    /// Installs how events reach other nodes (once; later calls are ignored).
    pub fn set_relay(&self, relay: Arc<dyn Relay>) {
        let _ = self.relay.set(relay);
    }

    /// Subscribes to the events of `keys` with a queue of `queue` events; `None` once closed.
    pub fn subscribe(self: &Arc<Self>, keys: Vec<ActorKey>, queue: usize) -> Option<Subscription> {
        if self.closed.load(Ordering::SeqCst) {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(queue.max(1));
        let mut inner = self.inner.lock();
        for key in &keys {
            inner.local.entry(key.clone()).or_default().push(Subscriber { id, tx: tx.clone() });
        }
        Some(Subscription { hub: Arc::downgrade(self), id, keys, rx })
    }

    fn remove(&self, id: u64, keys: &[ActorKey]) {
        let mut inner = self.inner.lock();
        for key in keys {
            if let Some(list) = inner.local.get_mut(key) {
                list.retain(|s| s.id != id);
                if list.is_empty() {
                    inner.local.remove(key);
                }
            }
        }
    }

    /// Publishes `event` of `key`: to this node's subscribers, and to the nodes that hold
    /// subscribers of it (their interest not lapsed).
    pub fn publish(&self, key: &ActorKey, event: Event) {
        let remote: Vec<String> = {
            let mut inner = self.inner.lock();
            let now = Instant::now();
            let addrs = match inner.remote.get_mut(key) {
                Some(addrs) => {
                    addrs.retain(|_, until| *until > now);
                    addrs.keys().cloned().collect()
                }
                None => Vec::new(),
            };
            if inner.remote.get(key).is_some_and(|a| a.is_empty()) {
                inner.remote.remove(key);
            }
            addrs
        };
        self.deliver(key, event.clone());
        if let Some(relay) = self.relay.get() {
            for addr in remote {
                relay.relay(&addr, key, event.clone());
            }
        }
    }

    /// [`publish`](Self::publish) of the event `make` builds, built only when a subscriber here
    /// or a node's interest in `key` would receive it.
    pub fn publish_with(&self, key: &ActorKey, make: impl FnOnce() -> Event) {
        let listened = {
            let inner = self.inner.lock();
            inner.local.contains_key(key) || inner.remote.contains_key(key)
        };
        if listened {
            self.publish(key, make());
        }
    }

    /// Hands `event` to this node's subscribers of `key` only (an event relayed from its owner).
    /// A subscriber whose queue is full is dropped from every key it had.
    pub fn deliver(&self, key: &ActorKey, event: Event) {
        let mut inner = self.inner.lock();
        let Some(list) = inner.local.get_mut(key) else { return };
        let mut slow = Vec::new();
        for s in list.iter() {
            if let Err(mpsc::error::TrySendError::Full(_)) = s.tx.try_send(event.clone()) {
                slow.push(s.id);
            }
        }
        if slow.is_empty() {
            return;
        }
        crate::metrics::add("vitrina_live_dropped_slow_total", &[], slow.len() as u64);
        // Its other keys' senders go too, so its queue closes once drained.
        for list in inner.local.values_mut() {
            list.retain(|s| !slow.contains(&s.id));
        }
        inner.local.retain(|_, list| !list.is_empty());
    }

    /// The node at `addr` holds subscribers of `keys`: relay their events there for `ttl`.
    pub fn note_interest(&self, addr: &str, keys: &[ActorKey], ttl: Duration) {
        let until = Instant::now() + ttl;
        let mut inner = self.inner.lock();
        for key in keys {
            inner.remote.entry(key.clone()).or_default().insert(addr.to_string(), until);
        }
    }

    /// Keys this node's subscribers listen to (for renewing interest at their owners).
    pub fn local_keys(&self) -> Vec<ActorKey> {
        self.inner.lock().local.keys().cloned().collect()
    }

    /// Ends every subscription (node shutdown) and refuses new ones.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let mut inner = self.inner.lock();
        inner.local.clear();
        inner.remote.clear();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{SessionId, StoreId};

    fn store(s: &str) -> ActorKey {
        ActorKey::Store(StoreId::parse(s).unwrap())
    }

    #[tokio::test]
    async fn events_reach_subscribers_of_their_key_only() {
        let hub = EventHub::new();
        let shopper = ActorKey::Shopper(StoreId::parse("a").unwrap(), SessionId::parse("s1").unwrap());
        let mut both = hub.subscribe(vec![store("a"), shopper.clone()], 4).unwrap();
        let mut other = hub.subscribe(vec![store("b")], 4).unwrap();
        hub.publish(&shopper, "cart".into());
        hub.publish(&store("a"), "product".into());
        assert_eq!(&*both.recv().await.unwrap(), "cart");
        assert_eq!(&*both.recv().await.unwrap(), "product");
        assert!(other.rx.try_recv().is_err());
        drop(both);
        assert_eq!(hub.local_keys(), vec![store("b")]);
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_dropped_not_buffered() {
        let hub = EventHub::new();
        let mut slow = hub.subscribe(vec![store("a"), store("b")], 2).unwrap();
        for i in 0..5 {
            hub.publish(&store("a"), format!("{i}").into());
        }
        assert_eq!(&*slow.recv().await.unwrap(), "0");
        assert_eq!(&*slow.recv().await.unwrap(), "1");
        assert!(slow.recv().await.is_none(), "the queue closes once drained");
        assert!(!slow.ended_by_close());
        assert!(hub.local_keys().is_empty());
    }

    #[tokio::test]
    async fn close_ends_subscriptions_and_refuses_new_ones() {
        let hub = EventHub::new();
        let mut sub = hub.subscribe(vec![store("a")], 2).unwrap();
        hub.close();
        assert!(sub.recv().await.is_none());
        assert!(sub.ended_by_close());
        assert!(hub.subscribe(vec![store("a")], 2).is_none());
    }

    struct Recorder(Mutex<Vec<(String, String)>>);
    impl Relay for Recorder {
        fn relay(&self, addr: &str, key: &ActorKey, _: Event) {
            self.0.lock().push((addr.to_string(), key.to_string()));
        }
    }

    #[test]
    fn interest_is_relayed_until_it_lapses() {
        let hub = EventHub::new();
        let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
        hub.set_relay(recorder.clone());
        hub.note_interest("n2:1", &[store("a")], Duration::from_secs(60));
        hub.note_interest("n3:1", &[store("a")], Duration::ZERO);
        hub.publish(&store("a"), "x".into());
        hub.publish(&store("b"), "y".into());
        assert_eq!(*recorder.0.lock(), vec![("n2:1".to_string(), store("a").to_string())]);
    }
}
