//! The worker's side of giving memory back: once it has had no page for [`IDLE`] after an
//! isolate was deleted, a `malloc_trim` hands the free pages of its arenas to the OS. It runs
//! on the worker's own thread between frames, so it never holds an arena lock a render waits
//! for (the node's trimmer, `memory.rs`, runs beside its requests instead).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How long the worker must have had no frame before it trims.
const IDLE: Duration = Duration::from_secs(1);

thread_local! {
    static LAST_FRAME: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// A frame arrived.
pub(super) fn busy() {
    LAST_FRAME.set(Some(Instant::now()));
}

/// Trims after each idle spell that followed a release. Spawned on the worker's only thread.
pub(super) async fn trim_when_idle() {
    let mut trimmed_at = crate::memory::released();
    loop {
        actix_rt::time::sleep(IDLE).await;
        let released = crate::memory::released();
        if released == trimmed_at || LAST_FRAME.get().is_some_and(|at| at.elapsed() < IDLE) {
            continue;
        }
        trimmed_at = released;
        crate::memory::trim_now();
    }
}
