//! Isolates made ahead of need on each actor thread, with a fresh context that has run nothing
//! but the library's warm-up, so a new actor's first render does not wait for V8.
//!
//! Spares (`spares.rs`) save creating an isolate; they exist only where an engine of the same
//! store was released moments before. A new shopper usually finds none, and then isolate and
//! context creation is a large share of a busy node's CPU, all of it on the request's path
//! (`docs/decisions/v8-engine.md`). A pooled isolate has never seen a store's data or a block,
//! so any engine may take it; the pool refills in a task spawned on the arbiter a few
//! milliseconds later: the work is the same, but on a node that is not saturated it happens
//! between requests instead of inside one. Each thread keeps
//! [`READY_PER_THREAD`] once it has rendered, and keeps them while idle: a node that sees a new
//! shopper now and then is where waiting for V8 shows most. Outside an arbiter (benchmarks,
//! unit tests) the pool stays empty.

use super::isolate::LiveIsolate;
use std::cell::{Cell, RefCell};

/// Isolates a thread keeps ready (each is ~1.6 MiB).
pub const READY_PER_THREAD: usize = 2;
/// About what a ready isolate measures (heap pages of the snapshot's context after warm-up).
const FRESH_BYTES: usize = 2 << 20;
/// Pause before making each one.
const REFILL_DELAY: std::time::Duration = std::time::Duration::from_millis(5);

/// A ready isolate and what it measured when made (counted in `pooled`).
struct Ready {
    live: LiveIsolate,
    bytes: usize,
}

thread_local! {
    static READY: RefCell<Vec<Ready>> = const { RefCell::new(Vec::new()) };
    static REFILLING: Cell<bool> = const { Cell::new(false) };
}

/// A ready isolate with this heap limit, if the thread has one; asks for a refill either way.
pub fn take(snapshot: &'static [u8], heap_mb: usize) -> Option<LiveIsolate> {
    let (taken, other_limit) = READY.with_borrow_mut(|ready| match ready.iter().position(|r| r.live.core.heap_mb == heap_mb) {
        Some(at) => (Some(ready.remove(at)), None),
        // Made for a store with another heap limit: make room for this one's.
        None if !ready.is_empty() => (None, Some(ready.remove(0))),
        None => (None, None),
    });
    for left in [&taken, &other_limit].into_iter().flatten() {
        crate::engine::pooled::remove(left.bytes);
    }
    if taken.is_some() {
        crate::metrics::incr("vitrina_isolates_prewarmed_total", &[]);
    }
    if other_limit.is_some() {
        // Deleted outside the borrow: deleting an isolate can take a millisecond.
        drop(other_limit);
        crate::memory::note_released();
    }
    refill(snapshot, heap_mb);
    taken.map(|r| r.live)
}

pub fn count() -> usize {
    READY.with_borrow(Vec::len)
}

/// Fills this thread's pool up to [`READY_PER_THREAD`] isolates of `heap_mb`, each made
/// [`REFILL_DELAY`] after the last.
fn refill(snapshot: &'static [u8], heap_mb: usize) {
    if REFILLING.get() || count() >= READY_PER_THREAD {
        return;
    }
    let Some(arbiter) = actix_rt::Arbiter::try_current() else { return };
    REFILLING.set(true);
    let spawned = arbiter.spawn(async move {
        // About what a fresh isolate measures: no room for one, no point making it.
        while count() < READY_PER_THREAD && crate::engine::pooled::room() >= FRESH_BYTES {
            // Not at the next await of the turn that took the isolate (a shopper awaiting
            // its commit would then wait for this too): after it has had time to answer.
            actix_rt::time::sleep(REFILL_DELAY).await;
            match LiveIsolate::create(Some(snapshot), heap_mb) {
                Ok(mut live) => {
                    let bytes = live.core.measure();
                    // No room in the node's isolate budget: a new actor creates its own.
                    if !crate::engine::pooled::try_add(bytes) {
                        drop(live);
                        break;
                    }
                    READY.with_borrow_mut(|ready| ready.push(Ready { live, bytes }));
                    crate::engine::pooled::grew();
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot prepare a V8 isolate ahead of need");
                    break;
                }
            }
        }
        REFILLING.set(false);
    });
    if !spawned {
        REFILLING.set(false);
    }
}
