//! A worker's answers to its render thread: batched, yet never held back for long.
//!
//! A page's block outcomes are buffered and written together when the page ends, so a fast
//! page costs one write and one wake-up of the render thread. An outcome is never held longer
//! than [`HOLD`], though: a block stuck in a builtin may get the worker killed, and the outcomes
//! of the blocks before it must have reached the node by then, or the node could not tell which
//! block was stuck. A small thread writes whatever has waited that long.

use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Longest an answer waits in the buffer (far below any block budget the node kills at).
const HOLD: Duration = Duration::from_millis(5);

pub(super) struct Outbox {
    shared: Arc<Shared>,
}

struct Shared {
    /// Encoded frames not yet written, and when the oldest of them was buffered.
    pending: Mutex<(Vec<u8>, Option<Instant>)>,
    wake: Condvar,
    /// Held while taking `pending` and writing it, so frames leave in the order they came.
    out: Mutex<File>,
}

impl Outbox {
    pub fn new(out: File) -> io::Result<Outbox> {
        let shared = Arc::new(Shared { pending: Mutex::new((Vec::new(), None)), wake: Condvar::new(), out: Mutex::new(out) });
        let flusher = shared.clone();
        std::thread::Builder::new().name("worker-outbox".into()).spawn(move || flusher.flush_held())?;
        Ok(Outbox { shared })
    }

    /// Buffers one message; written within [`HOLD`] or by the next [`Outbox::send`].
    pub fn buffer(&self, payload: &[u8]) {
        let mut pending = self.shared.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.0.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        pending.0.extend_from_slice(payload);
        if pending.1.is_none() {
            pending.1 = Some(Instant::now());
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
            pending.1 = None;
            std::mem::take(&mut pending.0)
        };
        if bytes.is_empty() {
            return Ok(());
        }
        out.write_all(&bytes)
    }

    /// The flusher thread: waits for a buffered answer, gives it [`HOLD`] to be joined by
    /// others (or written by the page's end), then writes what is still there. Ends, with the
    /// process, when the node's end of the pipe is gone.
    fn flush_held(&self) {
        loop {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let since = loop {
                match pending.1 {
                    Some(since) => break since,
                    None => pending = self.wake.wait(pending).unwrap_or_else(|e| e.into_inner()),
                }
            };
            let left = HOLD.saturating_sub(since.elapsed());
            drop(pending);
            std::thread::sleep(left);
            let due = self.pending.lock().unwrap_or_else(|e| e.into_inner()).1.is_some_and(|s| s.elapsed() >= HOLD);
            if due && self.write_pending().is_err() {
                std::process::exit(0);
            }
        }
    }
}
