//! Replacing a render worker that hosts no isolate but still holds the memory of those it did.
//!
//! A worker's RSS follows the isolates it has hosted, not the ones it hosts: after a burst of
//! shoppers has passivated, the allocators and V8 of the process keep much of what their
//! isolates used (`loadtest/RESULTS.md`, W5's hibernated row). The one way to hand all of it
//! back is to end the process. This thread is the only one that talks to its worker, so it
//! knows when that costs nothing: no engine has an isolate there and no page is in flight.
//! Once that has lasted [`IDLE`] and the worker's RSS is more than [`SLACK_KIB`] above what it
//! was when it became ready, the worker is replaced by a fresh one (`remote::recycle_idle`).
//! Under load a thread always hosts engines, so a busy worker is never recycled.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// How long a worker must have hosted no engine before it may be recycled.
pub(super) const IDLE: Duration = Duration::from_secs(10);
/// How far above its RSS when ready an idle worker may stay (its pools of ready isolates and
/// the store data it was sent are about this much).
pub(super) const SLACK_KIB: u64 = 8 << 10;

thread_local! {
    /// The engines with an isolate in this thread's worker.
    static HOSTED: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
    /// Since when the worker has hosted none; `None` while it hosts one.
    static EMPTY_SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
    static CHECK_PENDING: Cell<bool> = const { Cell::new(false) };
}

/// `engine` rendered in this thread's worker, which now holds its isolate.
pub(super) fn hosts(engine: u64) {
    HOSTED.with_borrow_mut(|hosted| hosted.insert(engine));
    EMPTY_SINCE.set(None);
}

/// `engine` was dropped: its isolate leaves the worker.
pub(super) fn dropped(engine: u64) {
    let empty = HOSTED.with_borrow_mut(|hosted| hosted.remove(&engine) && hosted.is_empty());
    if empty {
        EMPTY_SINCE.set(Some(Instant::now()));
        schedule_check(IDLE);
    }
}

/// The worker ended (killed, exited, replaced): every isolate went with it.
pub(super) fn worker_gone() {
    HOSTED.with_borrow_mut(HashSet::clear);
    EMPTY_SINCE.set(None);
}

/// Whether the worker (process `pid`, `ready_kib` when it became ready) should be replaced now.
pub(super) fn due(pid: u32, ready_kib: u64) -> bool {
    let idle = EMPTY_SINCE.get().is_some_and(|since| since.elapsed() >= IDLE);
    idle && rss_kib(pid).is_some_and(|rss| rss > ready_kib.saturating_add(SLACK_KIB))
}

/// Resident memory of `pid` (`VmRSS`), in KiB.
pub(super) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
}

/// Looks at the worker after `delay` on this thread's arbiter (render threads are arbiters;
/// elsewhere nothing is recycled), and again while it went empty later than that.
fn schedule_check(delay: Duration) {
    if CHECK_PENDING.get() {
        return;
    }
    let Some(arbiter) = actix_rt::Arbiter::try_current() else { return };
    CHECK_PENDING.set(true);
    let spawned = arbiter.spawn(async move {
        actix_rt::time::sleep(delay).await;
        CHECK_PENDING.set(false);
        match EMPTY_SINCE.get() {
            None => {}
            Some(since) if since.elapsed() < IDLE => schedule_check(IDLE - since.elapsed()),
            Some(_) => super::remote::recycle_idle(),
        }
    });
    if !spawned {
        CHECK_PENDING.set(false);
    }
}
