//! [`V8Engine`]: the block engine of one actor. It decides which isolate to render in (its own,
//! a spare of its store, a ready one, or a new one), gives each block its CPU deadline within
//! the page's, drops an isolate after a block broke a limit, and measures its isolate now and
//! then for the node's isolate budget. Running one block is `run.rs`.

use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use super::isolate::LiveIsolate;
use super::limits::{CpuDeadline, ThreadClock};
use super::platform::{ensure_init, snapshot_blob};
use super::run::run_block;
use super::{ready, spares};
use crate::block_limits::RenderLimits;
use crate::engine::{BlockEngine, BlockFailure, BlockOutcome, BlockToRender, StoreRenderData};

/// The engine measures its isolate's memory after this many renders (and after the first).
const MEASURE_EVERY: u32 = 8;

/// Counters for tests, benchmarks and debugging.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub isolates_created: u64,
    /// Isolates taken over from an engine of the same store released on this thread.
    pub isolates_reused: u64,
    /// Isolates taken ready-made from this thread's pool (see `ready.rs`).
    pub isolates_prewarmed: u64,
    pub compile_hits: u64,
    pub compile_misses: u64,
}

/// Engine construction options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// Start isolates from the startup snapshot (default). `false` runs the library scripts in
    /// every new isolate; only for benchmarks and as the fallback when the snapshot fails.
    pub use_snapshot: bool,
    /// Validate merchant code before compiling it (default). `false` only for tests that prove
    /// the isolate's own protections.
    pub validate: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self { use_snapshot: true, validate: true }
    }
}

/// Runs blocks in one V8 isolate. Not `Send`: it belongs to one actor on one thread.
pub struct V8Engine {
    live: Option<LiveIsolate>,
    options: EngineOptions,
    /// The store whose spare isolates this engine may take and to which it leaves its own
    /// (see `spares.rs`); `None`: its isolates are created fresh and deleted with it.
    store: Option<Arc<str>>,
    stats: EngineStats,
    /// Renders since the isolate's memory was last measured; `None`: not measured yet.
    renders_unmeasured: Option<u32>,
    /// The last measurement not yet taken by [`BlockEngine::take_measured_bytes`].
    measured: Option<usize>,
    _not_send: PhantomData<Rc<()>>,
}

impl Default for V8Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl V8Engine {
    /// An engine whose isolate starts from the startup snapshot. Cheap: the isolate is created
    /// on the first render.
    pub fn new() -> Self {
        Self::with_options(EngineOptions::default())
    }

    /// An engine that runs the library scripts in each new isolate instead of using the
    /// snapshot (for the benchmark comparison).
    pub fn new_without_snapshot() -> Self {
        Self::with_options(EngineOptions { use_snapshot: false, ..EngineOptions::default() })
    }

    pub fn with_options(options: EngineOptions) -> Self {
        ensure_init();
        Self {
            live: None,
            options,
            store: None,
            stats: EngineStats::default(),
            renders_unmeasured: None,
            measured: None,
            _not_send: PhantomData,
        }
    }

    /// The engine of an actor of `store`: its isolate may be a spare left on this thread by
    /// another engine of the same store (in a fresh context), and is left as one when this
    /// engine is dropped.
    pub fn for_store(store: &str) -> Self {
        Self::new().with_store(store)
    }

    /// This engine, taking and leaving spare isolates of `store` (see [`V8Engine::for_store`]).
    pub fn with_store(mut self, store: &str) -> Self {
        self.store = Some(Arc::from(store));
        self
    }

    /// Spare isolates this thread holds (for tests and debugging).
    pub fn spares_on_this_thread() -> usize {
        spares::count()
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Whether an isolate is currently alive (false before the first render and after a
    /// block broke a limit).
    pub fn has_isolate(&self) -> bool {
        self.live.is_some()
    }

    /// Creates the isolate now instead of on the first render.
    pub fn warm_up(&mut self, limits: &RenderLimits) -> Result<(), String> {
        self.ensure_isolate(limits)
    }

    fn ensure_isolate(&mut self, limits: &RenderLimits) -> Result<(), String> {
        if self.live.as_ref().is_some_and(|live| live.core.heap_mb != limits.heap_mb) {
            self.release();
        }
        if self.live.is_some() {
            return Ok(());
        }
        let snapshot = if self.options.use_snapshot { snapshot_blob() } else { None };
        let spare = match (&self.store, snapshot) {
            (Some(store), Some(_)) => spares::take(store, limits.heap_mb),
            _ => None,
        };
        self.renders_unmeasured = None;
        if let Some(core) = spare {
            self.live = Some(LiveIsolate::in_new_context(core, false)?);
            self.stats.isolates_reused += 1;
        } else if let Some(live) = snapshot.and_then(|blob| ready::take(blob, limits.heap_mb)) {
            self.live = Some(live);
            self.stats.isolates_prewarmed += 1;
        } else {
            self.live = Some(LiveIsolate::create(snapshot, limits.heap_mb)?);
            self.stats.isolates_created += 1;
        }
        Ok(())
    }

    /// Lets go of the isolate: a healthy one becomes a spare for the store, any other is deleted.
    fn release(&mut self) {
        let Some(live) = self.live.take() else { return };
        let core = live.into_core();
        match &self.store {
            Some(store) if self.options.use_snapshot && core.is_healthy() => spares::put(store.clone(), core),
            _ => drop(core),
        }
    }

    fn render_one(
        &mut self,
        data: &StoreRenderData,
        ctx_json: &str,
        block: &BlockToRender<'_>,
        limits: &RenderLimits,
        deadline: CpuDeadline,
        page_deadline: CpuDeadline,
    ) -> BlockOutcome {
        let validate = self.options.validate;
        let ensured = self.ensure_isolate(limits);
        let Some(live) = self.live.as_mut() else {
            let error = ensured.err().unwrap_or_default();
            tracing::error!(%error, "cannot create a V8 isolate");
            return Err(BlockFailure::Error(format!("engine unavailable: {error}")));
        };
        let run = run_block(live, data, ctx_json, block, limits, deadline, page_deadline, validate, &mut self.stats);
        if run.discard {
            self.live = None;
        }
        run.outcome
    }
}

impl Drop for V8Engine {
    fn drop(&mut self) {
        self.release();
    }
}

impl BlockEngine for V8Engine {
    fn render(&mut self, data: &StoreRenderData, ctx_json: &str, blocks: &[BlockToRender<'_>], limits: &RenderLimits) -> Vec<BlockOutcome> {
        self.render_each(data, ctx_json, blocks, limits, &mut |_, _| {})
    }

    fn take_measured_bytes(&mut self) -> Option<usize> {
        self.measured.take()
    }
}

impl V8Engine {
    /// [`BlockEngine::render`], handing each block's outcome to `done` (with its index) as soon
    /// as it is known: a worker process sends it on before the next block starts, so that a
    /// page cut short by the worker's death keeps what was already rendered.
    pub fn render_each(
        &mut self,
        data: &StoreRenderData,
        ctx_json: &str,
        blocks: &[BlockToRender<'_>],
        limits: &RenderLimits,
        done: &mut dyn FnMut(usize, &BlockOutcome),
    ) -> Vec<BlockOutcome> {
        let clock = ThreadClock::current();
        // Deadlines start from the upper bound of the clock (a block gets its whole budget),
        // the page is over when the lower bound has passed its deadline (never skipped early).
        let page_deadline = CpuDeadline::after_reading(clock, clock.bounds().high, limits.page_cpu());
        if let Some(live) = &mut self.live {
            if live.base_ctx_json != ctx_json {
                live.base_ctx = None;
            }
        }
        let mut outcomes = Vec::with_capacity(blocks.len());
        for block in blocks {
            let now = clock.bounds();
            let outcome = if now.low >= page_deadline.at {
                Err(BlockFailure::Skipped)
            } else {
                let deadline = page_deadline.min(CpuDeadline::after_reading(clock, now.high, limits.block_cpu()));
                self.render_one(data, ctx_json, block, limits, deadline, page_deadline)
            };
            if let Err(failure) = &outcome {
                let message = match failure {
                    BlockFailure::Error(message) => message.as_str(),
                    _ => "",
                };
                tracing::warn!(block_id = block.id, block_type = block.block_type, reason = failure.code(), message, "block failed");
            }
            done(outcomes.len(), &outcome);
            outcomes.push(outcome);
        }
        self.measure_now_and_then();
        outcomes
    }

    /// Measures the isolate after its first render and every [`MEASURE_EVERY`] renders after.
    fn measure_now_and_then(&mut self) {
        let Some(live) = self.live.as_mut() else { return };
        let due = match self.renders_unmeasured {
            None => true,
            Some(n) => n + 1 >= MEASURE_EVERY,
        };
        if due {
            self.measured = Some(live.core.measure());
            self.renders_unmeasured = Some(0);
        } else {
            self.renders_unmeasured = self.renders_unmeasured.map(|n| n + 1);
        }
    }

    /// The isolate's memory now (heap pages, V8's malloc'd memory, ArrayBuffers); `None`
    /// without an isolate.
    pub fn memory_bytes(&mut self) -> Option<usize> {
        self.live.as_mut().map(|live| live.core.measure())
    }
}
