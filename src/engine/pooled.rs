//! Bytes held by isolates no actor owns: spares left by released engines and isolates made
//! ready ahead of need (both per render thread, in `js/spares.rs` and `js/ready.rs`).
//!
//! They are part of the node's memory like any live isolate, so the node's isolate budget
//! (`engine::isolate_budget`) counts them: it makes room for them by evicting live isolates,
//! through the hook it registers with [`on_growth`], and caps what the pools may hold with
//! [`set_limit`] so that a small budget is not taken by isolates nobody renders in.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

static BYTES: AtomicUsize = AtomicUsize::new(0);
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
static ON_GROWTH: OnceLock<fn()> = OnceLock::new();

/// Bytes the pools hold now, as measured when each isolate entered its pool.
pub fn bytes() -> usize {
    BYTES.load(Ordering::Relaxed)
}

/// Most bytes the pools may hold together.
pub fn limit() -> usize {
    LIMIT.load(Ordering::Relaxed)
}

/// Most bytes the pools may hold together (unlimited until set).
pub fn set_limit(bytes: usize) {
    LIMIT.store(bytes, Ordering::Relaxed);
}

/// Called after the pools grew (outside any pool's borrow, on the thread that grew them).
pub fn on_growth(hook: fn()) {
    let _ = ON_GROWTH.set(hook);
}

/// Counts an isolate of `bytes` entering a pool, if the pools' limit leaves room for it;
/// `false`: it must not be kept.
pub(crate) fn try_add(bytes: usize) -> bool {
    let limit = LIMIT.load(Ordering::Relaxed);
    let added = BYTES.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| held.checked_add(bytes).filter(|total| *total <= limit));
    added.is_ok()
}

/// Bytes the pools may still take.
pub(crate) fn room() -> usize {
    LIMIT.load(Ordering::Relaxed).saturating_sub(bytes())
}

/// Lets the budget make room for what [`try_add`] admitted. Separate so that callers can run
/// it outside their pool's borrow: the hook may send messages.
pub(crate) fn grew() {
    if let Some(hook) = ON_GROWTH.get() {
        hook();
    }
}

/// An isolate of `bytes` left its pool (taken by an engine, or deleted).
pub(crate) fn remove(bytes: usize) {
    let _ = BYTES.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| Some(held.saturating_sub(bytes)));
}
