//! Isolates left by released engines, kept briefly per thread for the next engine of the same
//! store: creating an isolate from the snapshot and deleting it are most of what a new
//! shopper's first render costs (`docs/decisions/v8-engine.md`).
//!
//! A spare keeps only the isolate: its context, and with it every object a block or a
//! shopper's data ever reached, is dropped before it is kept, and the next engine creates a
//! fresh context from the snapshot, so no JavaScript state crosses from one actor to the next. What the isolate shares across its
//! contexts is V8's own (compilation cache, feedback-free bytecode, the heap's garbage until
//! collected, the `Symbol.for` registry, which holds no values); its microtask queue is empty
//! between calls, since microtasks run as each call returns. Spares are never handed across
//! stores, never kept after a block broke a limit, and are deleted after [`SPARE_MAX_AGE`], so
//! an idle node returns their memory.

use super::isolate::IsolateCore;
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most spares one thread keeps (each is a few MiB).
pub const SPARES_PER_THREAD: usize = 4;
/// Largest isolate kept as a spare. A reused isolate keeps the garbage of every context it
/// hosted until a full collection, which V8 puts off, so without a bound it grows with each
/// actor it served. Past the bound (about two fresh isolates) it is deleted and the next
/// engine takes a fresh one: cheaper than the full collection (`docs/decisions/v8-engine.md`).
pub const SPARE_MAX_BYTES: usize = 4 << 20;
/// How long a spare waits for an engine of its store before it is deleted.
pub const SPARE_MAX_AGE: Duration = Duration::from_secs(3);

struct Spare {
    store: Arc<str>,
    since: Instant,
    core: IsolateCore,
    /// What the isolate measured when it became a spare (counted in `pooled`).
    bytes: usize,
}

thread_local! {
    static SPARES: RefCell<Vec<Spare>> = const { RefCell::new(Vec::new()) };
    static SWEEPING: Cell<bool> = const { Cell::new(false) };
}

pub fn take(store: &str, heap_mb: usize) -> Option<IsolateCore> {
    let taken = SPARES.with_borrow_mut(|spares| {
        // Newest first: its memory is the likeliest to be warm.
        let at = spares.iter().rposition(|s| &*s.store == store && s.core.heap_mb == heap_mb)?;
        let spare = spares.remove(at);
        crate::engine::pooled::remove(spare.bytes);
        Some(spare.core)
    });
    if taken.is_some() {
        crate::metrics::incr("vitrina_isolates_reused_total", &[]);
    }
    taken
}

/// Keeps `core` for the next engine of `store`, unless it is over [`SPARE_MAX_BYTES`] or
/// the pools have no room left in the node's isolate budget; then it is deleted.
pub fn put(store: Arc<str>, mut core: IsolateCore) {
    let bytes = core.measure();
    if bytes > SPARE_MAX_BYTES || !crate::engine::pooled::try_add(bytes) {
        drop(core);
        crate::memory::note_released();
        return;
    }
    let evicted = SPARES.with_borrow_mut(|spares| {
        spares.push(Spare { store, since: Instant::now(), core, bytes });
        (spares.len() > SPARES_PER_THREAD).then(|| spares.remove(0))
    });
    // Deleted outside the borrow: deleting an isolate can take a millisecond.
    if let Some(evicted) = evicted {
        crate::engine::pooled::remove(evicted.bytes);
        drop(evicted);
        crate::memory::note_released();
    }
    crate::engine::pooled::grew();
    ensure_sweeping();
}

pub fn count() -> usize {
    SPARES.with_borrow(Vec::len)
}

/// Deletes spares older than [`SPARE_MAX_AGE`]; returns how many are left.
pub fn sweep() -> usize {
    let (expired, left) = SPARES.with_borrow_mut(|spares| {
        let now = Instant::now();
        let (expired, kept): (Vec<Spare>, Vec<Spare>) =
            std::mem::take(spares).into_iter().partition(|s| now.duration_since(s.since) >= SPARE_MAX_AGE);
        *spares = kept;
        (expired, spares.len())
    });
    if !expired.is_empty() {
        for spare in &expired {
            crate::engine::pooled::remove(spare.bytes);
        }
        drop(expired);
        crate::memory::note_released();
    }
    left
}

/// Starts a sweep loop on this thread's arbiter while it holds spares. Outside an arbiter
/// (benchmarks, unit tests) spares are only bounded by [`SPARES_PER_THREAD`].
fn ensure_sweeping() {
    if SWEEPING.get() {
        return;
    }
    let Some(arbiter) = actix_rt::Arbiter::try_current() else { return };
    SWEEPING.set(true);
    // The future is polled on this same arbiter thread, so it sees this thread's spares.
    let spawned = arbiter.spawn(async {
        loop {
            actix_rt::time::sleep(SPARE_MAX_AGE / 2).await;
            if sweep() == 0 {
                SWEEPING.set(false);
                break;
            }
        }
    });
    if !spawned {
        SWEEPING.set(false);
    }
}
