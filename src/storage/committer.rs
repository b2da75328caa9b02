//! The threads actors' commits run on: a set of the node's own, fed from one queue, the thread
//! that went idle last woken first.
//!
//! A commit blocks in `fdatasync`, so it cannot run on the actor's arbiter, and commits of
//! different actors must sync in parallel. Tokio's blocking pool did this for every commit at
//! the cost of its shared state: a condition variable that wakes the longest-idle of dozens of
//! threads (cold caches), and a spinning mutex every spawn and every finishing thread takes.
//! Here a commit is queued under a short lock and handed to the most recently idle thread
//! (warm caches, few threads in use), which takes the next queued commit before it parks.
//! A thread left idle for [`KEEP_ALIVE`] exits (down to [`MIN_THREADS`]): a burst of
//! concurrent commits starts dozens, each holding a stack and its allocator caches, and a
//! steady load keeps busy only the few it needs, the most recently idle ones.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Threads at most: commits beyond this many in flight wait in the queue. Above the number of
/// concurrent fsyncs a disk rewards.
const MAX_THREADS: usize = 128;
/// How long a thread waits for a commit before it exits.
const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// Threads that stay however long they idle, so a quiet node's commits do not wait for a spawn.
const MIN_THREADS: usize = 2;

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    state: Mutex<State>,
    keep_alive: Duration,
    min_threads: usize,
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
    POOL.get_or_init(|| Pool::new(KEEP_ALIVE, MIN_THREADS))
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
    fn new(keep_alive: Duration, min_threads: usize) -> Pool {
        Pool { state: Mutex::new(State::default()), keep_alive, min_threads }
    }

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
                        if self.wait_for_work(&waiter) {
                            continue;
                        }
                        return;
                    }
                }
            };
            // A panicking job drops its sender (its caller sees `Panicked`); the thread stays.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        }
    }

    /// Parks an idle thread until a submitter wakes it (`true`), or until it idled for
    /// `keep_alive` while more than `min_threads` exist (`false`: it has left the pool).
    fn wait_for_work(&self, waiter: &Arc<Waiter>) -> bool {
        let mut deadline = Some(Instant::now() + self.keep_alive);
        loop {
            if waiter.woken.load(Ordering::Acquire) {
                return true;
            }
            match deadline {
                None => std::thread::park(),
                Some(at) => match at.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => std::thread::park_timeout(left),
                    _ => {
                        let mut state = self.state.lock();
                        // Not on the idle list: a submitter took this thread and is about to
                        // set `woken`, so it must wait for that and run the job.
                        if let Some(i) = state.idle.iter().position(|w| Arc::ptr_eq(w, waiter)) {
                            if state.threads > self.min_threads {
                                state.idle.remove(i);
                                state.threads -= 1;
                                return false;
                            }
                        }
                        deadline = None;
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn threads(pool: &Pool) -> usize {
        pool.state.lock().threads
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < Duration::from_secs(10), "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn threads_a_burst_started_leave_once_idle_and_the_pool_still_commits() {
        let pool: &'static Pool = Box::leak(Box::new(Pool::new(Duration::from_millis(100), 2)));
        // Eight jobs that wait for each other need eight threads at once.
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let (done_tx, done_rx) = mpsc::channel();
        for _ in 0..8 {
            let (barrier, done) = (barrier.clone(), done_tx.clone());
            pool.submit(Box::new(move || {
                barrier.wait();
                done.send(()).unwrap();
            }));
        }
        // The barrier let them finish: eight threads ran at once.
        for _ in 0..8 {
            done_rx.recv_timeout(Duration::from_secs(10)).expect("a burst job did not run");
        }
        wait_until("the idle threads beyond the minimum left", || threads(pool) == 2);
        assert_eq!(pool.state.lock().idle.len(), 2);
        // The two that stayed still take work, past their keep-alive too.
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..20 {
            let done = done_tx.clone();
            pool.submit(Box::new(move || done.send(()).unwrap()));
        }
        for _ in 0..20 {
            done_rx.recv_timeout(Duration::from_secs(10)).expect("a job after the burst did not run");
        }
    }

    #[test]
    fn a_thread_taken_at_its_deadline_runs_the_job_it_was_given() {
        // A keep-alive of zero puts every idle thread at its deadline as soon as it parks, so
        // submissions race the exits; every job must still run exactly once.
        let pool: &'static Pool = Box::leak(Box::new(Pool::new(Duration::ZERO, 0)));
        let (done_tx, done_rx) = mpsc::channel();
        for i in 0..2000 {
            let done = done_tx.clone();
            pool.submit(Box::new(move || done.send(i).unwrap()));
            if i % 50 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let mut seen: Vec<i32> = (0..2000).map(|_| done_rx.recv_timeout(Duration::from_secs(10)).expect("a job was lost")).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..2000).collect::<Vec<_>>());
        wait_until("every thread left", || threads(pool) == 0);
    }
}
