//! Render worker processes: where blocks run when the node is started as a server.
//!
//! Most of what a block can do is stopped inside V8 (CPU deadlines, heap and ArrayBuffer
//! limits, `js/limits.rs`), but not all of it: some builtins (`Array.prototype.fill` on a huge
//! array, a large `sort`) run to their end before V8 looks at a termination request, holding a
//! core for seconds, and a V8 failure no limit foresaw aborts the process that hosts the
//! isolate. So each render thread (`render/threads.rs`) has one worker process, a child running
//! `vitrina render-worker`, in which the isolates of the engines placed on that thread live.
//! The render thread hands it a page, reads each block's outcome as soon as the worker knows
//! it, and watches the worker's CPU clock meanwhile: a block or page that runs well past its
//! budget gets the worker killed (the page keeps the blocks it already had, the block
//! becomes a `timeout` placeholder), and a worker that dies costs only its one page in flight.
//! A new worker is started at once. Every engine on that thread then starts from a fresh
//! isolate, which is what a block breaking a limit costs its own engine anyway.
//!
//! The worker knows nothing of HTTP, actors or files: it gets store data, the shopper view and
//! blocks through its stdin and answers outcomes through its stdout (`wire`), with an empty
//! environment. `render.isolation = "thread"` runs isolates on the render threads themselves
//! (library use, in-process tests and benchmarks get that without asking).
//!
//! ## Files
//! - [`wire`]: the messages and their encoding.
//! - [`process`]: one worker process seen from its render thread: start, pipes with timeouts,
//!   CPU clock, kill.
//! - [`remote`]: [`RemoteEngine`], the [`crate::engine::BlockEngine`] an actor holds, and the
//!   supervision of one page.
//! - [`recycle`]: replacing a worker that hosts no isolate but kept their memory.
//! - [`serve`]: the worker's side; [`outbox`]: its answers, batched but never held long;
//!   [`trim`]: its malloc trim when idle.

mod outbox;
mod process;
mod recycle;
mod remote;
pub mod serve;
mod trim;
pub mod wire;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

pub use remote::{start_for_this_thread, RemoteEngine};

/// How the node starts and supervises its render workers.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The executable to run (the node's own binary) and the arguments that make it a worker,
    /// before the ones the node adds (`--pooled-limit`).
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Workers the node runs (one per render thread): each gets this share of the bytes the
    /// node's pools of spare and ready isolates may hold.
    pub workers: usize,
    /// CPU a block or page may run past twice its budget before its worker is killed: the
    /// worker's clock counts V8's helper threads too, and V8 normally stops a block itself.
    pub kill_grace: Duration,
    /// Wall time a page may take in all before its worker is killed, whatever its CPU.
    pub wall_limit: Duration,
    /// How long a new worker may take to get ready, or a pipe to accept or yield a message.
    pub io_timeout: Duration,
}

static CONFIG: OnceLock<WorkerConfig> = OnceLock::new();

/// Makes [`crate::engine::new_engine`] place engines in worker processes from now on. Once per
/// process; the node calls it at startup, before any render, on a thread at the default
/// priority (the one workers are started from: see `process::launcher`). A second call
/// changes nothing.
pub fn enable(config: WorkerConfig) {
    if CONFIG.set(config).is_ok() {
        process::start_launcher();
    }
}

pub fn enabled() -> bool {
    CONFIG.get().is_some()
}

fn config() -> Option<&'static WorkerConfig> {
    CONFIG.get()
}
