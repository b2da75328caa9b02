//! Render threads: where blocks run, apart from the threads that run actor turns.
//!
//! A page of looping blocks runs for up to its CPU budget. On an actor thread that time is taken
//! from every actor placed there (other stores' cart writes included); here it is taken only
//! from renders queued on the same render thread. An actor's engine (its V8 isolate) is placed
//! on one render thread when it is created and stays there until the actor drops it: isolates
//! never change threads. The actor keeps an [`EngineSlot`] naming where its engine lives; the
//! engine itself is in that thread's table.
//!
//! A block can hold its thread far past its CPU budget: some builtins run to their end before
//! V8 looks at a termination request. A thread whose current job has run longer than any page
//! may is *stuck*: renders queued behind it move to another thread on a throwaway engine, and
//! the actors whose engines live there get new ones elsewhere. While it is stuck, a watcher
//! gives the thread a low scheduling priority (`render.stuck_nice`), so that the CPU it burns
//! goes to whatever else wants a core first, and gives the priority back when the job ends
//! (only where the node may raise a thread's priority again: see [`Watch`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::block_limits::RenderLimits;
use crate::engine::isolate_budget;
use crate::engine::{self, BlockEngine, BlockOutcome, BlockToRender};
use crate::ids::StoreId;
use crate::render::snapshot::SharedSnapshot;

/// One block of a job, owned so that it can travel to the render thread.
#[derive(Debug, Clone)]
pub struct JobBlock {
    pub id: String,
    pub block_type: String,
    pub code: Option<String>,
    pub code_version: u64,
    pub config_json: String,
}

/// What an engine runs for one page.
pub struct EngineJob {
    pub snapshot: SharedSnapshot,
    pub ctx_json: String,
    pub blocks: Vec<JobBlock>,
    pub limits: RenderLimits,
}

/// The outcomes, one per block, and the render thread's CPU time they took.
pub struct EngineResult {
    pub outcomes: Vec<BlockOutcome>,
    pub cpu: Duration,
}

/// A page's outcomes once a render thread ran it; an error if the render threads are gone.
pub type PendingResult = futures::future::BoxFuture<'static, Result<EngineResult, futures::channel::oneshot::Canceled>>;

pub struct RenderThreads {
    arbiters: Vec<ArbiterHandle>,
    /// Jobs queued or running per thread, for placing new engines on the least busy one.
    queued: Vec<Arc<AtomicUsize>>,
    /// When each thread's current job started (milliseconds since `epoch`, plus one); 0: idle.
    busy_since: Vec<Arc<AtomicU64>>,
    epoch: Instant,
    /// A job running longer than this holds its thread stuck.
    stuck_after: Duration,
    /// The stuck-thread watcher runs while this lives.
    _watching: Arc<()>,
    _owned: Vec<Arbiter>,
}

/// How often a render waiting in a thread's queue looks whether that thread is stuck.
const STUCK_CHECK: Duration = Duration::from_millis(100);

/// A queued job's state: whoever moves it out of `QUEUED` first runs it (the thread) or takes
/// it elsewhere (the waiting render).
const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const MOVED: u8 = 2;

thread_local! {
    /// The engines placed on this render thread, by placement id.
    static ENGINES: RefCell<HashMap<u64, Box<dyn BlockEngine>>> = RefCell::new(HashMap::new());
}

static NEXT_PLACEMENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Engines currently held by actors on this node (each owns at most one isolate).
static LIVE_ENGINES: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

pub fn live_engines() -> i64 {
    LIVE_ENGINES.load(Ordering::Relaxed)
}

impl RenderThreads {
    /// `stuck_after`: longer than any page may take, with room for a busy machine. `nice`: the
    /// threads' niceness; `stuck_nice`: theirs while stuck (not above `nice`: never changed).
    pub fn new(count: usize, nice: i32, stuck_nice: i32, stuck_after: Duration) -> RenderThreads {
        let owned: Vec<Arbiter> = (0..count.max(1)).map(|_| Arbiter::new()).collect();
        let tids: Vec<Arc<AtomicI32>> = (0..owned.len()).map(|_| Arc::new(AtomicI32::new(0))).collect();
        for (arbiter, tid) in owned.iter().zip(&tids) {
            let tid = tid.clone();
            arbiter.spawn_fn(move || {
                tid.store(current_tid(), Ordering::Relaxed);
                lower_priority(nice);
                engine::prepare_render_thread();
            });
        }
        let threads = RenderThreads {
            arbiters: owned.iter().map(|a| a.handle()).collect(),
            queued: (0..owned.len()).map(|_| Arc::new(AtomicUsize::new(0))).collect(),
            busy_since: (0..owned.len()).map(|_| Arc::new(AtomicU64::new(0))).collect(),
            epoch: Instant::now(),
            stuck_after,
            _watching: Arc::new(()),
            _owned: owned,
        };
        let (nice, stuck_nice) = (nice.clamp(0, 19), stuck_nice.clamp(0, 19));
        if stuck_nice > nice {
            let watch = Watch {
                alive: Arc::downgrade(&threads._watching),
                busy_since: threads.busy_since.clone(),
                tids,
                epoch: threads.epoch,
                stuck_after,
                nice,
                stuck_nice,
            };
            if let Err(e) = std::thread::Builder::new().name("render-watch".into()).spawn(move || watch.run()) {
                tracing::warn!(error = %e, "cannot start the stuck render thread watcher");
            }
        }
        threads
    }

    fn stuck(&self, thread: usize) -> bool {
        match self.busy_since[thread].load(Ordering::Relaxed) {
            0 => false,
            since => self.now_ms().saturating_sub(since - 1) > self.stuck_after.as_millis() as u64,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Runs `job` on `thread`; `run` gets the job unless the waiting render moved it first.
    fn spawn(
        self: &Arc<Self>,
        thread: usize,
        state: Arc<AtomicU8>,
        job: Arc<EngineJob>,
        run: impl FnOnce(&EngineJob) -> EngineResult + Send + 'static,
    ) -> futures::channel::oneshot::Receiver<EngineResult> {
        let (tx, rx) = futures::channel::oneshot::channel();
        let (queued, busy_since, threads) = (self.queued[thread].clone(), self.busy_since[thread].clone(), self.clone());
        queued.fetch_add(1, Ordering::Relaxed);
        let spawned = self.arbiters[thread].spawn_fn(move || {
            if state.compare_exchange(QUEUED, STARTED, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                busy_since.store(threads.now_ms() + 1, Ordering::Relaxed);
                let result = run(&job);
                busy_since.store(0, Ordering::Relaxed);
                let _ = tx.send(result);
            }
            queued.fetch_sub(1, Ordering::Relaxed);
        });
        if !spawned {
            self.queued[thread].fetch_sub(1, Ordering::Relaxed);
            tracing::error!("a render thread is gone");
        }
        rx
    }

    /// Waits for a job queued on `thread`; if that thread gets stuck before the job started,
    /// runs it on another thread with a throwaway engine instead.
    fn await_or_move(
        self: Arc<Self>,
        thread: usize,
        state: Arc<AtomicU8>,
        store: StoreId,
        job: Arc<EngineJob>,
        mut rx: futures::channel::oneshot::Receiver<EngineResult>,
    ) -> PendingResult {
        Box::pin(async move {
            loop {
                match tokio::time::timeout(STUCK_CHECK, &mut rx).await {
                    Ok(result) => return result,
                    Err(_) if self.stuck(thread) && state.compare_exchange(QUEUED, MOVED, Ordering::SeqCst, Ordering::SeqCst).is_ok() => {
                        crate::metrics::incr("vitrina_render_moved_total", &[]);
                        let elsewhere = self.place(&store);
                        let throwaway = Arc::new(AtomicBool::new(false));
                        let run = move |job: &EngineJob| run_job(0, &throwaway, &store, None, job);
                        return self.spawn(elsewhere, Arc::new(AtomicU8::new(QUEUED)), job, run).await;
                    }
                    Err(_) => {}
                }
            }
        })
    }

    pub fn count(&self) -> usize {
        self.arbiters.len()
    }

    /// A thread for a new engine of `store`: the store's own thread while it is idle (a released
    /// isolate waits there for the store's next engine), else the least busy.
    fn place(&self, store: &StoreId) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        store.hash(&mut h);
        let preferred = (h.finish() % self.arbiters.len() as u64) as usize;
        if self.queued[preferred].load(Ordering::Relaxed) == 0 {
            return preferred;
        }
        (0..self.arbiters.len()).min_by_key(|&i| (self.stuck(i), self.queued[i].load(Ordering::Relaxed))).unwrap_or(preferred)
    }
}

/// Where an actor's engine lives.
struct Placement {
    threads: Arc<RenderThreads>,
    thread: usize,
    id: u64,
    /// Cleared when the actor lets go of the engine: a job still queued then renders with a
    /// throwaway engine instead of creating one nobody would drop.
    held: Arc<AtomicBool>,
}

/// An actor's engine, created on first use on a render thread. An actor that names itself as
/// the owner ([`EngineSlot::owned_by`]) counts against the node's isolate budget
/// (`engine::isolate_budget`).
#[derive(Default)]
pub struct EngineSlot {
    placed: Option<Placement>,
    owner: Option<isolate_budget::Owner>,
    ticket: Option<u64>,
}

impl EngineSlot {
    /// A slot whose engines are admitted to the node's isolate budget, evicted through `owner`.
    pub fn owned_by(owner: isolate_budget::Owner) -> Self {
        EngineSlot { placed: None, owner: Some(owner), ticket: None }
    }

    /// Runs `job` on this actor's engine (placing one on a render thread first if it has none,
    /// or if its thread is stuck). Fails if the render threads are gone.
    pub fn run(&mut self, threads: &Arc<RenderThreads>, store: &StoreId, job: EngineJob) -> PendingResult {
        if self.placed.as_ref().is_some_and(|p| p.threads.stuck(p.thread)) {
            self.drop_engine();
        }
        match (&self.placed, self.ticket) {
            (Some(_), Some(ticket)) => isolate_budget::touch(ticket),
            (Some(_), None) => {}
            (None, _) => {
                LIVE_ENGINES.fetch_add(1, Ordering::Relaxed);
                self.ticket = self.owner.clone().map(isolate_budget::admit);
                let thread = threads.place(store);
                let id = NEXT_PLACEMENT.fetch_add(1, Ordering::Relaxed);
                self.placed = Some(Placement { threads: threads.clone(), thread, id, held: Arc::new(AtomicBool::new(true)) });
            }
        }
        let Some(placed) = &self.placed else {
            return Box::pin(futures::future::ready(Err(futures::channel::oneshot::Canceled)));
        };
        let (id, held, ticket) = (placed.id, placed.held.clone(), self.ticket);
        let (job, state) = (Arc::new(job), Arc::new(AtomicU8::new(QUEUED)));
        let run = {
            let store = store.clone();
            move |job: &EngineJob| run_job(id, &held, &store, ticket, job)
        };
        let rx = placed.threads.spawn(placed.thread, state.clone(), job.clone(), run);
        placed.threads.clone().await_or_move(placed.thread, state, store.clone(), job, rx)
    }

    /// Drops the isolate (the actor keeps its state); the next render creates a fresh one.
    pub fn drop_engine(&mut self) {
        if let Some(placed) = self.placed.take() {
            LIVE_ENGINES.fetch_sub(1, Ordering::Relaxed);
            placed.held.store(false, Ordering::SeqCst);
            let id = placed.id;
            placed.threads.arbiters[placed.thread].spawn_fn(move || {
                let engine = ENGINES.with_borrow_mut(|engines| engines.remove(&id));
                if engine.is_some() {
                    drop(engine);
                    crate::memory::note_released();
                }
            });
        }
        if let Some(ticket) = self.ticket.take() {
            isolate_budget::forget(ticket);
        }
    }

    /// Drops the engine the budget evicted, unless it has already been replaced.
    pub fn release_evicted(&mut self, ticket: u64) {
        if self.ticket == Some(ticket) {
            self.drop_engine();
        }
    }

    pub fn is_live(&self) -> bool {
        self.placed.is_some()
    }
}

impl Drop for EngineSlot {
    fn drop(&mut self) {
        self.drop_engine();
    }
}

/// Gives a stuck render thread a low priority and its own back once its job ended. It starts
/// only if it may give the priority back: raising a thread's priority again needs
/// `CAP_SYS_NICE` or an `RLIMIT_NICE` that allows it (systemd's `LimitNICE=`); without either,
/// a demoted thread would stay slow for good, so nothing is demoted.
struct Watch {
    alive: std::sync::Weak<()>,
    busy_since: Vec<Arc<AtomicU64>>,
    tids: Vec<Arc<AtomicI32>>,
    epoch: Instant,
    stuck_after: Duration,
    nice: i32,
    stuck_nice: i32,
}

/// How often the watcher looks at the render threads.
const WATCH_EVERY: Duration = Duration::from_millis(50);

impl Watch {
    fn run(self) {
        // Probe on this thread: down to the stuck priority, then back.
        let me = current_tid();
        if !(set_nice(me, self.stuck_nice) && set_nice(me, self.nice)) {
            tracing::info!(
                "stuck render threads keep their priority: this process may not raise a thread's priority again (CAP_SYS_NICE or RLIMIT_NICE)"
            );
            return;
        }
        let _ = set_nice(me, 0);
        let mut demoted: Vec<Option<u64>> = vec![None; self.tids.len()];
        while self.alive.upgrade().is_some() {
            std::thread::sleep(WATCH_EVERY);
            let now = self.epoch.elapsed().as_millis() as u64;
            for (i, since) in self.busy_since.iter().enumerate() {
                let tid = self.tids[i].load(Ordering::Relaxed);
                if tid == 0 {
                    continue;
                }
                // The job (by its start) that is stuck, if any.
                let stuck = match since.load(Ordering::Relaxed) {
                    0 => None,
                    since => (now.saturating_sub(since - 1) > self.stuck_after.as_millis() as u64).then_some(since),
                };
                match (demoted[i], stuck) {
                    (None, Some(job)) if set_nice(tid, self.stuck_nice) => {
                        crate::metrics::incr("vitrina_render_thread_demoted_total", &[]);
                        demoted[i] = Some(job);
                    }
                    (Some(job), current) if current != Some(job) && set_nice(tid, self.nice) => demoted[i] = None,
                    _ => {}
                }
            }
        }
    }
}

fn current_tid() -> i32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Sets thread `tid`'s niceness; false if the process may not.
fn set_nice(tid: i32, nice: i32) -> bool {
    // SAFETY: setpriority with PRIO_PROCESS and a thread id changes only that thread's niceness.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) == 0 }
}

/// Sets the calling thread's niceness (Linux schedules threads one by one: this leaves the
/// process's other threads as they are). Raising one's own niceness needs no privilege.
fn lower_priority(nice: i32) {
    let nice = nice.clamp(0, 19);
    if nice == 0 {
        return;
    }
    if !set_nice(current_tid(), nice) {
        tracing::warn!(nice, error = %std::io::Error::last_os_error(), "cannot lower the render thread's priority");
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec; CLOCK_THREAD_CPUTIME_ID is always available on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// Runs one job on the render thread, on the placement's engine; hands the engine's measurement
/// of its isolate, when it took one, to the isolate budget under the slot's `ticket`.
fn run_job(id: u64, held: &AtomicBool, store: &StoreId, ticket: Option<u64>, job: &EngineJob) -> EngineResult {
    let started = thread_cpu();
    let blocks: Vec<BlockToRender<'_>> = job
        .blocks
        .iter()
        .map(|b| BlockToRender {
            id: &b.id,
            block_type: &b.block_type,
            code: b.code.as_deref(),
            code_version: b.code_version,
            config_json: &b.config_json,
        })
        .collect();
    // The engine leaves the table while it renders, so nothing it does can find the table borrowed.
    let mut engine = match ENGINES.with_borrow_mut(|engines| engines.remove(&id)) {
        Some(engine) => engine,
        None => engine::new_engine(store.as_str()),
    };
    let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        engine.render(&job.snapshot.render_data, &job.ctx_json, &blocks, &job.limits)
    }));
    let mut cpu_elsewhere = Duration::ZERO;
    let outcomes = match rendered {
        Ok(outcomes) => {
            cpu_elsewhere = engine.take_cpu_elsewhere().unwrap_or_default();
            if held.load(Ordering::SeqCst) {
                if let (Some(ticket), Some(bytes)) = (ticket, engine.take_measured_bytes()) {
                    isolate_budget::measured(ticket, bytes);
                }
                ENGINES.with_borrow_mut(|engines| engines.insert(id, engine));
            }
            outcomes
        }
        Err(_) => {
            // The engine's state is unknown after a panic: it is not kept.
            tracing::error!(%store, "the block engine panicked; its isolate is dropped");
            blocks.iter().map(|_| Err(engine::BlockFailure::Error("engine failure".into()))).collect()
        }
    };
    EngineResult { outcomes, cpu: thread_cpu().saturating_sub(started) + cpu_elsewhere }
}
