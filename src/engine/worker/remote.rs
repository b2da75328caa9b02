//! [`RemoteEngine`]: an actor's engine whose isolate lives in its render thread's worker
//! process, and the supervision of one page there.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::process::WorkerProcess;
use super::recycle;
use super::wire::{FromWorker, RenderRequest, ToWorker};
use super::{config, WorkerConfig};
use crate::block_limits::RenderLimits;
use crate::engine::{BlockEngine, BlockFailure, BlockOutcome, BlockToRender, StoreRenderData};

/// How often the supervisor looks at the worker's CPU clock while a page runs.
const CHECK_EVERY: Duration = Duration::from_millis(5);
/// After a failed start, how long a thread renders placeholders before it tries again.
const RESTART_BACKOFF: Duration = Duration::from_millis(500);
/// How long a worker whose pipes closed is given to finish exiting, to learn how it ended.
const EXIT_WAIT: Duration = Duration::from_millis(100);

static NEXT_ENGINE: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This render thread's worker; `Err`: the last start failed at that instant.
    static WORKER: RefCell<Result<Option<WorkerProcess>, Instant>> = const { RefCell::new(Ok(None)) };
}

/// The handle an actor holds; the isolate is in the worker of the thread this is used on.
pub struct RemoteEngine {
    id: u64,
    store: String,
    measured: Option<usize>,
    cpu: Option<Duration>,
}

impl RemoteEngine {
    pub fn new(store: &str) -> RemoteEngine {
        RemoteEngine { id: NEXT_ENGINE.fetch_add(1, Ordering::Relaxed), store: store.to_string(), measured: None, cpu: None }
    }
}

impl BlockEngine for RemoteEngine {
    /// Runs the page in this thread's worker. When the worker is killed or dies under a block,
    /// that block fails and the blocks after it run in a new worker, within what is left of the
    /// page's budget: a hostile block costs its own place on the page, not its neighbours'.
    /// A worker killed from outside (SIGKILL: an operator, the OOM killer; often between
    /// pages, still dying when the page was sent) before it answered anything of the page costs
    /// no block: the page runs again in a new worker, once.
    fn render(&mut self, data: &StoreRenderData, ctx_json: &str, blocks: &[BlockToRender<'_>], limits: &RenderLimits) -> Vec<BlockOutcome> {
        let Some(config) = config() else {
            return unavailable(blocks, "render workers are not enabled");
        };
        let mut outcomes = Vec::with_capacity(blocks.len());
        let mut cpu = Duration::ZERO;
        let mut retried = false;
        self.measured = None;
        while outcomes.len() < blocks.len() {
            let left = limits.page_cpu().saturating_sub(cpu);
            if left.is_zero() {
                outcomes.resize_with(blocks.len(), || Err(BlockFailure::Skipped));
                break;
            }
            let Some(mut worker) = take_worker(config) else {
                outcomes.extend(unavailable(&blocks[outcomes.len()..], "no render worker"));
                break;
            };
            let limits = RenderLimits { page_cpu_ms: left.as_millis().max(1) as u64, ..*limits };
            let page = Page { engine: self.id, store: &self.store, data, ctx_json, blocks: &blocks[outcomes.len()..], limits };
            let mut run = supervise(&mut worker, config, &page);
            cpu += run.cpu;
            let killed_before_any = matches!(run.ending, Ending::Broken) && run.arrived == 0 && !retried;
            if killed_before_any && worker.killed_from_outside(EXIT_WAIT) {
                retried = true;
                run.outcomes.clear();
                crate::metrics::incr("vitrina_render_worker_kills_total", &[("reason", "exited")]);
                worker.kill();
                continue;
            }
            outcomes.extend(run.outcomes);
            match run.ending {
                Ending::Done => {
                    self.measured = run.measured.map(|m| m as usize);
                    recycle::hosts(self.id);
                    put_worker(worker);
                }
                ending => {
                    tracing::warn!(store = %self.store, pid = worker.pid(), reason = ending.reason(), "render worker killed; starting another");
                    crate::metrics::incr("vitrina_render_worker_kills_total", &[("reason", ending.reason())]);
                    worker.kill();
                    // The replacement's start (exec, V8, snapshot) is this page's cost too:
                    // the store's render budget pays for the kill it caused.
                    if let Some(mut worker) = take_worker(config) {
                        if worker.await_ready(config.io_timeout).is_ok() {
                            cpu += worker.cpu();
                        }
                        put_worker(worker);
                    }
                }
            }
        }
        self.cpu = Some(cpu);
        outcomes
    }

    fn take_measured_bytes(&mut self) -> Option<usize> {
        self.measured.take()
    }

    fn take_cpu_elsewhere(&mut self) -> Option<Duration> {
        self.cpu.take()
    }
}

impl Drop for RemoteEngine {
    fn drop(&mut self) {
        let Some(config) = config() else { return };
        WORKER.with_borrow_mut(|slot| {
            let Ok(Some(worker)) = slot else { return };
            // A worker that never got ready has no isolate of this engine.
            if worker.is_ready() && worker.send(&ToWorker::Drop { engine: self.id }.frame(), config.io_timeout).is_err() {
                *slot = Ok(None);
            }
        });
        recycle::dropped(self.id);
    }
}

struct Page<'a> {
    engine: u64,
    store: &'a str,
    data: &'a StoreRenderData,
    ctx_json: &'a str,
    blocks: &'a [BlockToRender<'a>],
    limits: RenderLimits,
}

enum Ending {
    Done,
    /// A block or the page ran past its budget and the grace.
    OverBudget,
    /// The page took longer than the wall limit.
    OverTime,
    /// The worker exited, or answered what it must not.
    Broken,
}

impl Ending {
    fn reason(&self) -> &'static str {
        match self {
            Ending::Done => "done",
            Ending::OverBudget => "cpu",
            Ending::OverTime => "wall",
            Ending::Broken => "broken",
        }
    }
}

struct Run {
    outcomes: Vec<BlockOutcome>,
    /// Of `outcomes`, those the worker sent (the last may be the cut-short block's failure).
    arrived: usize,
    cpu: Duration,
    measured: Option<u64>,
    ending: Ending,
}

/// Sends the page and collects its outcomes while watching the worker's CPU: a block may use
/// twice its budget and the grace, the page twice its own and the grace, before the worker is
/// killed. The first block, and one after a block that broke a limit, are bounded by the page's
/// budget only: the worker may make an isolate and load the store's catalog before them, which
/// the engine does not charge to the block (its own deadline, enforced inside the worker, starts
/// after), and this side cannot tell that work from the block's. Outcomes that arrived are kept;
/// the block that was running gets `timeout` (or `engine-crashed` if the worker died); the ones
/// after it get none.
fn supervise(worker: &mut WorkerProcess, config: &WorkerConfig, page: &Page<'_>) -> Run {
    let started = Instant::now();
    let mut run =
        Run { outcomes: Vec::with_capacity(page.blocks.len()), arrived: 0, cpu: Duration::ZERO, measured: None, ending: Ending::Done };
    if worker.await_ready(config.io_timeout).is_err() {
        run.ending = Ending::Broken;
        return finish(run, page.blocks.len());
    }
    let has_data = worker.sent.get(page.store) == Some(&page.data.version);
    let cpu_at_start = worker.cpu();
    if send_page(worker, config, page, !has_data).is_err() {
        run.ending = Ending::Broken;
        return finish(run, page.blocks.len());
    }
    let block_budget = page.limits.block_cpu().min(page.limits.page_cpu()) * 2 + config.kill_grace;
    let page_budget = page.limits.page_cpu() * 2 + config.kill_grace;
    let mut block_started = cpu_at_start;
    let mut may_set_up = true;
    loop {
        let now = worker.cpu();
        run.cpu = now.saturating_sub(cpu_at_start);
        if (!may_set_up && now.saturating_sub(block_started) > block_budget) || run.cpu > page_budget {
            run.ending = Ending::OverBudget;
            break;
        }
        if started.elapsed() > config.wall_limit {
            run.ending = Ending::OverTime;
            break;
        }
        match worker.receive(CHECK_EVERY, config.io_timeout) {
            Ok(None) => {}
            Ok(Some(FromWorker::NeedData)) if run.outcomes.is_empty() => {
                if send_page(worker, config, page, true).is_err() {
                    run.ending = Ending::Broken;
                    break;
                }
            }
            Ok(Some(FromWorker::Block { index, outcome }))
                if index as usize == run.outcomes.len() && run.outcomes.len() < page.blocks.len() =>
            {
                may_set_up = matches!(outcome, Err(BlockFailure::Timeout | BlockFailure::HeapLimit));
                run.outcomes.push(outcome);
                block_started = worker.cpu();
            }
            Ok(Some(FromWorker::Done { measured, prewarmed, reused })) if run.outcomes.len() == page.blocks.len() => {
                run.measured = measured;
                // Counted by the worker's pools; the node's metrics say them.
                crate::metrics::add("vitrina_isolates_prewarmed_total", &[], prewarmed.into());
                crate::metrics::add("vitrina_isolates_reused_total", &[], reused.into());
                run.cpu = worker.cpu().saturating_sub(cpu_at_start);
                run.arrived = run.outcomes.len();
                return run;
            }
            Ok(Some(_)) | Err(_) => {
                run.ending = Ending::Broken;
                break;
            }
        }
    }
    finish(run, page.blocks.len())
}

fn send_page(worker: &mut WorkerProcess, config: &WorkerConfig, page: &Page<'_>, with_data: bool) -> std::io::Result<()> {
    let request = ToWorker::Render(RenderRequest {
        engine: page.engine,
        store: page.store,
        version: page.data.version,
        data: with_data.then_some((&*page.data.storefront_json, &*page.data.products_json)),
        ctx_json: page.ctx_json,
        blocks: page.blocks,
        limits: page.limits,
    });
    worker.send(&request.frame(), config.io_timeout)?;
    if with_data {
        worker.sent.insert(page.store.to_string(), page.data.version);
    }
    Ok(())
}

/// The outcome of the block that was running when a page was cut short (the blocks after it
/// are the caller's to run elsewhere).
fn finish(mut run: Run, blocks: usize) -> Run {
    run.arrived = run.outcomes.len();
    let running = match run.ending {
        Ending::OverBudget | Ending::OverTime => BlockFailure::Timeout,
        _ => BlockFailure::Crashed,
    };
    if run.outcomes.len() < blocks {
        run.outcomes.push(Err(running));
    }
    run
}

fn unavailable(blocks: &[BlockToRender<'_>], why: &str) -> Vec<BlockOutcome> {
    blocks.iter().map(|_| Err(BlockFailure::Error(format!("engine unavailable: {why}")))).collect()
}

/// This thread's worker, started if there is none (or it exited); `None` while starting one
/// fails (retried after [`RESTART_BACKOFF`]).
fn take_worker(config: &WorkerConfig) -> Option<WorkerProcess> {
    WORKER.with_borrow_mut(|slot| {
        match std::mem::replace(slot, Ok(None)) {
            Ok(Some(mut worker)) => {
                if !worker.exited() {
                    return Some(worker);
                }
                crate::metrics::incr("vitrina_render_worker_kills_total", &[("reason", "exited")]);
            }
            Err(failed_at) if failed_at.elapsed() < RESTART_BACKOFF => {
                *slot = Err(failed_at);
                return None;
            }
            _ => {}
        }
        match WorkerProcess::spawn(config) {
            Ok(worker) => Some(worker),
            Err(error) => {
                tracing::error!(%error, program = %config.program.display(), "cannot start a render worker");
                *slot = Err(Instant::now());
                None
            }
        }
    })
}

/// Starts the calling render thread's worker now, so that its first page does not wait for it.
pub fn start_for_this_thread() {
    if let Some(config) = config() {
        if let Some(worker) = take_worker(config) {
            put_worker(worker);
        }
    }
}

/// Replaces this thread's worker by a fresh one if it hosts no engine and holds far more than
/// when it started (`recycle`). Called between jobs on the render thread: no page is in flight.
pub(super) fn recycle_idle() {
    let old = WORKER.with_borrow_mut(|slot| match slot {
        Ok(Some(worker)) if recycle::due(worker.pid(), worker.ready_kib) => std::mem::replace(slot, Ok(None)).ok().flatten(),
        _ => None,
    });
    let Some(old) = old else { return };
    tracing::debug!(pid = old.pid(), "recycling an idle render worker");
    crate::metrics::incr("vitrina_render_workers_recycled_total", &[]);
    old.kill();
    start_for_this_thread();
}

fn put_worker(worker: WorkerProcess) {
    WORKER.with_borrow_mut(|slot| *slot = Ok(Some(worker)));
}
