//! The V8 block engine: runs blocks in a V8 isolate started from a startup snapshot.
//! (Named `js`, not `v8`, so that `v8::` means the crate everywhere below.)
//!
//! One [`V8Engine`] belongs to one actor and lives on that actor's thread. It creates its
//! isolate lazily on the first render and keeps it (with the parsed store data and compiled
//! blocks) until a block breaks a limit, then discards it and starts a fresh one, so a block
//! that was terminated mid-way can never leave half-updated state behind. When an actor's
//! engine is dropped, a healthy isolate stays on the thread for a few seconds as a spare for the
//! next actor of the same store, which gets it with a new context ([`spares`]); new actors take
//! isolates made ahead of need ([`ready`]).
//!
//! ## Startup snapshot
//! The JavaScript in `actors/` (prelude, default block library, dispatch) is compiled into a V8
//! startup snapshot once per process, on first use, on a short-lived thread. Building it in
//! `build.rs` would need the `v8` crate as a build dependency as well, compiling it twice.
//!
//! ## Limits
//! CPU limits are enforced by one process-wide watchdog thread holding deadlines and
//! [`v8::IsolateHandle`]s; when a deadline passes it calls `TerminateExecution`. Deadlines are
//! on the render thread's own CPU clock (`pthread_getcpuclockid`), not the wall clock: a
//! render thread that is descheduled because the machine is busy does not use up its blocks'
//! budgets, so load never turns healthy blocks into timeouts. The heap limit is V8's own, with a
//! near-heap-limit callback that terminates the block and raises the limit by enough for the
//! largest object V8 allocates at once (`limits::HEAP_GRANT`), so V8 never aborts the process; a
//! merchant block that leaves the heap above its limit anyway (V8 lets a first large young
//! object through unchecked) is a `heap-limit` too. ArrayBuffer memory has a budget of the same
//! size per isolate (`external.rs`). Either way the isolate is discarded.
//!
//! ## Multiple isolates on one thread
//! `rusty_v8` enters an isolate when it is created and requires isolates to be dropped in
//! reverse creation order. Actors sharing an arbiter thread create and drop engines in any
//! order, so every isolate here is "parked" (exited) right after creation and entered only for
//! the duration of one call (`isolate::ParkedIsolate`).
//!
//! ## Files
//! - [`platform`]: V8 flags, platform initialisation, the startup snapshot and the library scripts.
//! - [`limits`]: the watchdog, the render thread's CPU clock, the heap guard.
//! - [`isolate`]: an isolate (parked between calls) and its context with the library's entry points.
//! - [`spares`], [`ready`]: the per-thread pools of isolates no engine owns.
//! - [`engine`]: [`V8Engine`], one per actor: which isolate to use, per-page deadlines, measuring.
//! - [`run`]: one block in one isolate, step by step, and its outcome.

mod engine;
mod isolate;
mod limits;
mod platform;
mod ready;
mod run;
mod spares;

pub use engine::{EngineOptions, EngineStats, V8Engine};
pub use platform::{init, DEFAULT_BLOCKS, DEFAULT_V8_FLAGS};

/// Builds the startup snapshot now rather than on the first render (a render worker does this
/// before it says it is ready).
pub fn prepare_snapshot() {
    let _ = platform::snapshot_blob();
}
