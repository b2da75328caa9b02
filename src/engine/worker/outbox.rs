//! A worker's answers to its render thread: batched, yet never held back for long.
//!
//! A page's block outcomes are buffered and written together when the page ends, so a fast
//! page costs one write and one wake-up of the render thread. An outcome is never held longer
//! than [`HOLD`], though: a block stuck in a builtin may get the worker killed, and the outcomes
//! of the blocks before it must have reached the node by then, or the node could not tell which
//! block was stuck. A small thread writes whatever has waited that long. It looks every
//! [`HOLD`] while pages come, rather than being woken for each (two thread switches a page),
//! and sleeps until woken once the worker has been idle for [`PARK_AFTER`].

use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Longest an answer waits in the buffer (far below any block budget the node kills at).
const HOLD: Duration = Duration::from_millis(5);
/// Idle time after which the flusher stops looking and waits to be woken.
const PARK_AFTER: Duration = Duration::from_secs(1);

pub(super) struct Outbox {
    shared: Arc<Shared>,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    /// Held while taking `pending` and writing it, so frames leave in the order they came.
    out: Mutex<File>,
}

#[derive(Default)]
struct Pending {
    /// Encoded frames not yet written.
    bytes: Vec<u8>,
    /// When the oldest of them was buffered.
    since: Option<Instant>,
    /// When anything was last buffered.
    last: Option<Instant>,
    /// The flusher waits to be woken.
    parked: bool,
}

impl Outbox {
    pub fn new(out: File) -> io::Result<Outbox> {
        let shared = Arc::new(Shared { pending: Mutex::new(Pending::default()), wake: Condvar::new(), out: Mutex::new(out) });
        let flusher = shared.clone();
        std::thread::Builder::new().name("worker-outbox".into()).spawn(move || flusher.flush_held())?;
        Ok(Outbox { shared })
    }

    /// Buffers one message; written within about [`HOLD`] or by the next [`Outbox::send`].
    pub fn buffer(&self, payload: &[u8]) {
        let mut pending = self.shared.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        pending.bytes.extend_from_slice(payload);
        let now = Instant::now();
        pending.since.get_or_insert(now);
        pending.last = Some(now);
        if pending.parked {
            pending.parked = false;
            self.shared.wake.notify_one();
        }
    }

    /// Buffers one message and writes it with everything before it now.
    pub fn send(&self, payload: &[u8]) -> io::Result<()> {
        self.buffer(payload);
        self.shared.write_pending()
    }
}

impl Shared {
    fn write_pending(&self) -> io::Result<()> {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.since = None;
            std::mem::take(&mut pending.bytes)
        };
        if bytes.is_empty() {
            return Ok(());
        }
        out.write_all(&bytes)
    }

    /// The flusher thread: writes what has waited [`HOLD`]. Ends, with the process, when the
    /// node's end of the pipe is gone.
    fn flush_held(&self) {
        loop {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let idle = pending.last.is_none_or(|last| last.elapsed() >= PARK_AFTER);
            if pending.since.is_none() && idle {
                pending.parked = true;
                while pending.parked {
                    pending = self.wake.wait(pending).unwrap_or_else(|e| e.into_inner());
                }
            }
            let due = pending.since.is_some_and(|since| since.elapsed() >= HOLD);
            drop(pending);
            if due {
                if self.write_pending().is_err() {
                    std::process::exit(0);
                }
            } else {
                std::thread::sleep(HOLD);
            }
        }
    }
}
