//! The threads actors' commits run on: a set of the node's own, fed from one queue, the thread
//! that went idle last woken first.
//!
//! A commit blocks in `fdatasync`, so it cannot run on the actor's arbiter, and commits of
//! different actors must sync in parallel. Tokio's blocking pool did this for every commit at
//! the cost of its shared state: a condition variable that wakes the longest-idle of dozens of
//! threads (cold caches), and a spinning mutex every spawn and every finishing thread takes.
//! Here a commit is queued under a short lock and handed to the most recently idle thread
//! (warm caches, few threads in use), which takes the next queued commit before it parks.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;

use parking_lot::Mutex;

/// Threads at most: commits beyond this many in flight wait in the queue. Above the number of
/// concurrent fsyncs a disk rewards.
const MAX_THREADS: usize = 128;

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    /// Parked threads, the one parked last at the end.
    idle: Vec<Arc<Waiter>>,
    threads: usize,
}

struct Waiter {
    thread: Thread,
    /// Set by whoever takes this waiter off the idle list: a park that returns without it is
    /// spurious.
    woken: AtomicBool,
}

/// The job panicked on its commit thread.
#[derive(Debug)]
pub struct Panicked;

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool { state: Mutex::new(State::default()) })
}

/// Runs `job` on a commit thread now; the future resolves with its result. The job runs to the
/// end even if the future is dropped.
pub fn run<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> impl Future<Output = Result<T, Panicked>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    pool().submit(Box::new(move || {
        // The receiver may be gone (the caller stopped waiting): the result is dropped.
        let _ = tx.send(job());
    }));
    async move { rx.await.map_err(|_| Panicked) }
}

impl Pool {
    fn submit(&'static self, job: Job) {
        let mut state = self.state.lock();
        state.queue.push_back(job);
        if let Some(waiter) = state.idle.pop() {
            drop(state);
            waiter.woken.store(true, Ordering::Release);
            waiter.thread.unpark();
        } else if state.threads < MAX_THREADS {
            state.threads += 1;
            drop(state);
            let spawned = std::thread::Builder::new().name("vitrina-commit".into()).spawn(move || self.work());
            if let Err(e) = spawned {
                // The queued job waits for a running thread; with none, for the next spawn.
                self.state.lock().threads -= 1;
                tracing::error!(error = %e, "could not start a commit thread");
            }
        }
    }

    fn work(&'static self) {
        let waiter = Arc::new(Waiter { thread: std::thread::current(), woken: AtomicBool::new(false) });
        loop {
            let job = {
                let mut state = self.state.lock();
                match state.queue.pop_front() {
                    Some(job) => job,
                    None => {
                        waiter.woken.store(false, Ordering::Relaxed);
                        state.idle.push(waiter.clone());
                        drop(state);
                        while !waiter.woken.load(Ordering::Acquire) {
                            std::thread::park();
                        }
                        continue;
                    }
                }
            };
            // A panicking job drops its sender (its caller sees `Panicked`); the thread stays.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        }
    }
}
