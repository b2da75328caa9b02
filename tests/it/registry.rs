//! The registry with an actor kind of the test's own (a counter): what the runtime promises to
//! any kind — one live instance per key under concurrent asks, asks refused for keys the
//! activator does not own, a failed activation leaving the key free for the next ask, and an
//! evicted actor replaced by a fresh instance — without a store, a shopper or a `Node`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::future::BoxFuture;
use vitrina::ids::{ActorKey, SessionId, StoreId};
use vitrina::runtime::registry::{Activator, ActorError, Lease, LiveActor, Registry};
use vitrina::runtime::Passivate;

/// Counts the messages it was sent; gives its key back to the registry when it stops.
struct Counter {
    registry: Arc<Registry>,
    lease: Lease,
    count: u64,
}

impl Actor for Counter {
    type Context = Context<Self>;
    fn stopped(&mut self, _: &mut Context<Self>) {
        self.registry.finish_passivation(&mut self.lease);
    }
}

#[derive(Message, Clone)]
#[rtype(result = "u64")]
struct Bump;

impl Handler<Bump> for Counter {
    type Result = u64;
    fn handle(&mut self, _: Bump, _: &mut Context<Self>) -> u64 {
        self.count += 1;
        self.count
    }
}

impl vitrina::runtime::traced::TracedTurns for Counter {
    fn turn_trace(&self) -> Option<vitrina::trace_context::TurnTrace> {
        None
    }
}

vitrina::traced_turns!(Counter);

impl Handler<Passivate> for Counter {
    type Result = ();
    fn handle(&mut self, _: Passivate, ctx: &mut Context<Self>) {
        if self.registry.begin_passivation(&mut self.lease) {
            ctx.stop();
        }
    }
}

/// Activates counters for stores other than `elsewhere`; the first `failures` activations fail.
struct Counters {
    registry: Arc<Registry>,
    activations: AtomicUsize,
    failures: AtomicUsize,
}

impl Activator for Counters {
    fn owns(&self, key: &ActorKey) -> bool {
        key.store().as_str() != "elsewhere"
    }

    fn activate(&self, key: ActorKey, lease: Lease, arbiter: ArbiterHandle) -> BoxFuture<'static, Result<LiveActor, ActorError>> {
        let failing = self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        self.activations.fetch_add(1, Ordering::SeqCst);
        let registry = self.registry.clone();
        Box::pin(async move {
            // Long enough for concurrent asks to find the key busy rather than free.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if failing {
                return Err(ActorError::Unavailable(key));
            }
            let addr = Counter::start_in_arbiter(&arbiter, move |_| Counter { registry, lease, count: 0 });
            Ok(LiveActor::new(addr))
        })
    }
}

fn counters(failures: usize) -> Arc<Counters> {
    let registry = Arc::new(Registry::new(2, Duration::from_secs(5)));
    Arc::new(Counters { registry, activations: AtomicUsize::new(0), failures: AtomicUsize::new(failures) })
}

fn key(store: &str) -> ActorKey {
    ActorKey::Shopper(StoreId::parse(store).unwrap(), SessionId::parse("s-counter-0001").unwrap())
}

#[actix_rt::test]
async fn concurrent_asks_for_a_new_key_meet_one_instance_of_any_kind() {
    let kind = counters(0);
    let k = key("counting");
    let asks = (0..50).map(|_| kind.registry.ask::<Counter, _>(kind.as_ref(), &k, Bump));
    let mut counts: Vec<u64> = futures::future::join_all(asks).await.into_iter().map(|r| r.expect("answered")).collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=50).collect::<Vec<u64>>(), "every bump reached the same counter once");
    assert_eq!(kind.activations.load(Ordering::SeqCst), 1);
    assert!(kind.registry.is_live(&k));
}

#[actix_rt::test]
async fn a_key_the_activator_does_not_own_is_refused_without_activation() {
    let kind = counters(0);
    let err = kind.registry.ask::<Counter, _>(kind.as_ref(), &key("elsewhere"), Bump).await.unwrap_err();
    assert!(matches!(err, ActorError::NotOwner(_)), "{err}");
    assert_eq!(kind.activations.load(Ordering::SeqCst), 0);
}

#[actix_rt::test]
async fn a_failed_activation_frees_the_key_for_the_next_ask() {
    let kind = counters(1);
    let k = key("flaky");
    assert!(kind.registry.ask::<Counter, _>(kind.as_ref(), &k, Bump).await.is_err());
    assert!(!kind.registry.is_live(&k));
    assert_eq!(kind.registry.ask::<Counter, _>(kind.as_ref(), &k, Bump).await.expect("second activation"), 1);
    assert_eq!(kind.activations.load(Ordering::SeqCst), 2);
}

#[actix_rt::test]
async fn an_evicted_actor_is_replaced_by_a_fresh_instance() {
    let kind = counters(0);
    let k = key("evicted");
    for _ in 0..3 {
        kind.registry.ask::<Counter, _>(kind.as_ref(), &k, Bump).await.unwrap();
    }
    kind.registry.evict(&k).await;
    assert!(!kind.registry.is_live(&k));
    assert_eq!(kind.registry.ask::<Counter, _>(kind.as_ref(), &k, Bump).await.unwrap(), 1, "a new instance starts from zero");
    assert_eq!(kind.activations.load(Ordering::SeqCst), 2);
}

#[actix_rt::test]
async fn asking_for_the_wrong_kind_is_refused_not_misrouted() {
    struct Other;
    impl Actor for Other {
        type Context = Context<Self>;
    }
    impl Handler<Bump> for Other {
        type Result = u64;
        fn handle(&mut self, _: Bump, _: &mut Context<Self>) -> u64 {
            unreachable!("a counter's key never reaches another kind")
        }
    }
    impl vitrina::runtime::traced::TracedTurns for Other {
        fn turn_trace(&self) -> Option<vitrina::trace_context::TurnTrace> {
            None
        }
    }
    vitrina::traced_turns!(Other);
    let kind = counters(0);
    let k = key("typed");
    kind.registry.ask::<Counter, _>(kind.as_ref(), &k, Bump).await.unwrap();
    let err = kind.registry.ask::<Other, _>(kind.as_ref(), &k, Bump).await.unwrap_err();
    assert!(matches!(err, ActorError::Unavailable(_)), "{err}");
}

/// Activates by panicking the first time, then as `Counters` does.
struct PanicsOnce(Arc<Counters>, AtomicUsize);

impl Activator for PanicsOnce {
    fn owns(&self, key: &ActorKey) -> bool {
        self.0.owns(key)
    }

    fn activate(&self, key: ActorKey, lease: Lease, arbiter: ArbiterHandle) -> BoxFuture<'static, Result<LiveActor, ActorError>> {
        let first = self.1.fetch_add(1, Ordering::SeqCst) == 0;
        let normal = self.0.activate(key, lease, arbiter);
        Box::pin(async move {
            assert!(!first, "an activation that panics");
            normal.await
        })
    }
}

#[actix_rt::test]
async fn a_panicking_activation_frees_the_key_for_the_next_ask() {
    let kind = PanicsOnce(counters(0), AtomicUsize::new(0));
    let k = key("panicky");
    let err = kind.0.registry.ask::<Counter, _>(&kind, &k, Bump).await.unwrap_err();
    assert!(matches!(err, ActorError::Activation(..)), "{err}");
    let next = tokio::time::timeout(Duration::from_secs(5), kind.0.registry.ask::<Counter, _>(&kind, &k, Bump)).await;
    assert_eq!(next.expect("the key is not left busy").expect("activated"), 1);
}
