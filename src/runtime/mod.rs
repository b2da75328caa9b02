//! The actor runtime, below the storefront actors and knowing nothing of them: one live
//! instance per key (`registry`), persisted alarms, and passivation of idle actors.
//!
//! Turn-based means an actor does not begin its next message until the current one has fully
//! finished, including its commit: handlers that await (a commit on the blocking pool, the
//! store's snapshot) return `AtomicResponse`, which holds the mailbox until they complete.

pub mod alarms;
pub mod events;
pub mod registry;
pub mod traced;

use std::time::{Duration, Instant};

use actix::prelude::*;

use registry::{Lease, Registry};

/// Asks an actor to passivate now (its file is about to move to another node).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Passivate;

/// Handles [`Passivate`] for any passivating actor.
pub fn passivate_now<A: Passivating>(act: &mut A, ctx: &mut Context<A>) {
    if begin_passivation(act) {
        ctx.stop();
    }
}

/// Marks the actor's slot busy for its passivation; `false`: the slot is no longer its own.
fn begin_passivation<A: Passivating>(act: &mut A) -> bool {
    let (registry, lease) = act.registry_and_lease();
    registry.begin_passivation(lease)
}

/// What the registry needs from an actor to passivate it when idle.
pub trait Passivating: Actor<Context = Context<Self>> {
    /// The registry that holds the actor's slot, and the lease it gives back when it stops.
    fn registry_and_lease(&mut self) -> (&Registry, &mut Lease);
    fn last_active(&self) -> Instant;
    fn engine(&mut self) -> &mut crate::render::EngineSlot;
    /// The database an idle actor may close while keeping its state in memory (reopened by
    /// the next read or write). `None`: the actor keeps its connection while live.
    fn closable_db(&self) -> Option<crate::storage::ActorDb> {
        None
    }

    /// Drops the actor's V8 isolate (memory) while keeping its state; the next render makes a
    /// new one from the snapshot.
    fn drop_isolate(&mut self) {
        let engine = self.engine();
        if engine.is_live() {
            engine.drop_engine();
            crate::metrics::incr("vitrina_isolates_dropped_idle_total", &[]);
        }
    }
}

/// Drops an isolate the node's budget evicted; the actor keeps its state.
pub fn release_evicted_isolate<A: Passivating>(act: &mut A, ticket: u64) {
    act.engine().release_evicted(ticket);
}

/// Checks for idleness a few times per idle period: an actor idle for `isolate_idle` drops its
/// isolate (megabytes) and closes its file if it may (see `closable_db`) but keeps its state
/// (kilobytes); one idle for `idle` marks its slot busy and stops.
pub fn watch_idleness<A: Passivating>(ctx: &mut Context<A>, idle: Duration, isolate_idle: Duration) {
    let every = (idle.min(isolate_idle) / 4).clamp(Duration::from_millis(50), Duration::from_secs(15));
    ctx.run_interval(every, move |act, ctx| {
        let quiet = act.last_active().elapsed();
        if quiet >= isolate_idle {
            act.drop_isolate();
            if let Some(db) = act.closable_db().filter(|db| db.is_open()) {
                ctx.spawn(actix::fut::wrap_future(async move { db.close_idle().await }));
            }
        }
        if quiet >= idle && begin_passivation(act) {
            ctx.stop();
        }
    });
}
