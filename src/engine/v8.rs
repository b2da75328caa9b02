//! The V8 block engine: runs blocks in a V8 isolate started from a startup snapshot.
//!
//! One [`V8Engine`] belongs to one actor and lives on that actor's thread. It creates its
//! isolate lazily on the first render and keeps it (with the parsed store data and compiled
//! blocks) until a block breaks a limit, then discards it and starts a fresh one, so a block
//! that was terminated mid-way can never leave half-updated state behind. When an actor's
//! engine is dropped, a healthy isolate stays on the thread for a few seconds as a spare for the
//! next actor of the same store, which gets it with a new context ([`spares`]).
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
//! largest object V8 allocates at once ([`HEAP_GRANT`]), so V8 never aborts the process; a
//! merchant block that leaves the heap above its limit anyway (V8 lets a first large young
//! object through unchecked) is a `heap-limit` too. ArrayBuffer memory has a budget of the same
//! size per isolate (`external.rs`). Either way the isolate is discarded.
//!
//! ## Multiple isolates on one thread
//! `rusty_v8` enters an isolate when it is created and requires isolates to be dropped in
//! reverse creation order. Actors sharing an arbiter thread create and drop engines in any
//! order, so every isolate here is "parked" (exited) right after creation and entered only for
//! the duration of one call ([`ParkedIsolate`]).

use std::collections::HashMap;
use std::ffi::c_void;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Once, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::external::ExternalBudget;
use super::validate::{analyse_block, extract_block_function, BlockFunction};
use super::{BlockEngine, BlockFailure, BlockOutcome, BlockToRender, StoreRenderData};
use crate::render_limits::RenderLimits;

const PRELUDE_JS: &str = include_str!("../../actors/prelude.js");
const DISPATCH_JS: &str = include_str!("../../actors/dispatch.js");

/// Runs before the library. Resizable ArrayBuffers (`maxByteLength`) reserve and commit memory
/// through V8's page allocator, outside the isolate's ArrayBuffer budget (`external.rs`): the
/// constructor blocks see drops its options argument, so every ArrayBuffer a block makes is
/// fixed-length and allocated against the budget (`resize` then throws a TypeError). The
/// original constructor stays reachable only through the proxy, whose `construct` trap is the
/// only way into it; `ArrayBuffer.prototype.constructor` names the proxy too.
const CONTAINMENT_JS: &str = r#"(() => {
  const NativeArrayBuffer = ArrayBuffer;
  const construct = Reflect.construct;
  const FixedArrayBuffer = new Proxy(NativeArrayBuffer, {
    construct(target, args, newTarget) {
      return construct(target, [args[0]], newTarget === FixedArrayBuffer ? target : newTarget);
    },
  });
  Object.defineProperty(NativeArrayBuffer.prototype, 'constructor', { value: FixedArrayBuffer, writable: true, enumerable: false, configurable: true });
  Object.defineProperty(globalThis, 'ArrayBuffer', { value: FixedArrayBuffer, writable: true, enumerable: false, configurable: true });
})();"#;

/// The default block library: (block type, source). One function per file.
pub const DEFAULT_BLOCKS: &[(&str, &str)] = &[
    ("hero", include_str!("../../actors/blocks/hero.js")),
    ("product-grid", include_str!("../../actors/blocks/product-grid.js")),
    ("product-detail", include_str!("../../actors/blocks/product-detail.js")),
    ("text", include_str!("../../actors/blocks/text.js")),
    ("gallery", include_str!("../../actors/blocks/gallery.js")),
    ("blog-list", include_str!("../../actors/blocks/blog-list.js")),
    ("blog-post", include_str!("../../actors/blocks/blog-post.js")),
    ("cart-summary", include_str!("../../actors/blocks/cart-summary.js")),
    ("recently-viewed", include_str!("../../actors/blocks/recently-viewed.js")),
    ("cart", include_str!("../../actors/blocks/cart.js")),
    ("search-results", include_str!("../../actors/blocks/search-results.js")),
    ("order-confirmation", include_str!("../../actors/blocks/order-confirmation.js")),
];

/// What the near-heap-limit callback adds to the limit each time V8 reaches it: room for the
/// largest object V8 allocates in one piece (a FixedArray or a two-byte string of maximal
/// length, 1 GiB) and the allocation that triggered the GC besides. V8 aborts the process
/// when the callback cannot make the allocation in flight fit, so a grant must always fit it;
/// the block is terminated at the same time and its isolate discarded.
const HEAP_GRANT: usize = (1024 + 128) << 20;

/// Grants one block can receive. A grant lasts until V8 reaches the next interrupt check (a
/// loop back-edge, a call); past this many V8 aborts the process, which would take a builtin
/// allocating gigabytes without ever checking for termination.
const MAX_HEAP_GRANTS: u32 = 8;

/// The engine measures its isolate's memory after this many renders (and after the first).
const MEASURE_EVERY: u32 = 8;

/// Longest exception message kept in a `BlockFailure::Error`.
const MAX_ERROR_MESSAGE: usize = 500;

static V8_INIT: Once = Once::new();

/// V8 flags set before `VITRINA_V8_FLAGS`, which can undo them (`--maglev --turbofan`).
///
/// No optimising tiers: an isolate belongs to one shopper and renders a few pages per session,
/// so the feedback and the Maglev/TurboFan compiles each isolate pays for separately are
/// rarely paid back. Measured (loadtest/RESULTS.md, session 6): with 1,000 shoppers rendering
/// (W1b) throughput +10 to +60 % (median +25 %) in five alternating pairs; one isolate
/// rendering the same page over and over (the engine bench) 1.6 × slower (48 → 77 µs), which
/// is the case this gives up.
///
/// A 2 MiB initial old space: an isolate released by one actor hosts the next actor's context
/// (`spares`, the ready pool), and the dead contexts stay in its old space until a full GC,
/// which V8's default first limit (32 MiB) puts off for many contexts. With 10,000 shoppers
/// rendering under a 2,000-isolate budget the node's RSS was 10.5 GiB with the default and
/// 8.5 GiB with this, at the same throughput (session 7).
pub const DEFAULT_V8_FLAGS: &str = "--no-maglev --no-turbofan --initial-old-space-size=2";

/// Initialises the V8 platform for the process. Idempotent; [`V8Engine::new`] calls it too.
pub fn init() {
    V8_INIT.call_once(|| {
        // Set before the first isolate; the snapshot is built with them too. `--single-threaded`
        // (no V8 worker threads) cut W1b's CPU per render by 15-35 % and raised W2p by ~20 %,
        // but a node kept ~0.5 MiB per deleted isolate (W5 hibernated at 1k: 534 vs 24 KiB per
        // actor), so it is not a default (loadtest/RESULTS.md, session 4).
        ::v8::V8::set_flags_from_string(DEFAULT_V8_FLAGS);
        if let Ok(flags) = std::env::var("VITRINA_V8_FLAGS") {
            ::v8::V8::set_flags_from_string(&flags);
        }
        let platform = ::v8::new_default_platform(0, false).make_shared();
        ::v8::V8::initialize_platform(platform);
        ::v8::V8::initialize();
    });
}

/// The startup snapshot, built on first use. `Err` (logged once) makes engines fall back to
/// running the library scripts in every new isolate.
fn snapshot_blob() -> Option<&'static [u8]> {
    static SNAPSHOT: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();
    let built = SNAPSHOT.get_or_init(|| {
        init();
        let started = Instant::now();
        // A dedicated thread keeps the snapshot creator's isolate enter/exit away from the
        // isolates of the calling thread.
        let result = std::thread::Builder::new()
            .name("v8-snapshot".into())
            .spawn(build_snapshot)
            .map_err(|e| format!("cannot spawn snapshot thread: {e}"))
            .and_then(|handle| handle.join().unwrap_or_else(|_| Err("snapshot thread panicked".into())));
        match &result {
            Ok(blob) => tracing::info!(bytes = blob.len(), elapsed_ms = started.elapsed().as_millis() as u64, "built V8 startup snapshot"),
            Err(error) => tracing::error!(%error, "cannot build V8 startup snapshot; isolates will run the library scripts"),
        }
        result
    });
    built.as_ref().ok().map(Vec::as_slice)
}

fn build_snapshot() -> Result<Vec<u8>, String> {
    let mut creator = ::v8::Isolate::snapshot_creator(None, None);
    let loaded = {
        ::v8::scope!(let scope, &mut creator);
        let context = ::v8::Context::new(scope, Default::default());
        let scope = &mut ::v8::ContextScope::new(scope, context);
        let loaded = load_library(scope);
        scope.set_default_context(context);
        loaded
    };
    // create_blob must run even when loading failed: dropping a snapshot creator panics.
    let blob = creator.create_blob(::v8::FunctionCodeHandling::Keep);
    loaded?;
    blob.map(|b| b.to_vec()).ok_or_else(|| "V8 returned no snapshot blob".to_string())
}

/// Runs prelude, default blocks and dispatch in the current context.
fn load_library(scope: &mut ::v8::PinScope<'_, '_>) -> Result<(), String> {
    run_script(scope, "vitrina:containment.js", CONTAINMENT_JS)?;
    run_script(scope, "vitrina:prelude.js", PRELUDE_JS)?;
    for (block_type, source) in DEFAULT_BLOCKS {
        let function = extract_block_function(source).map_err(|v| format!("default block {block_type}: {}", v.error_summary()))?;
        let body = source.get(function.span.clone()).unwrap_or_default();
        let type_json = serde_json::to_string(block_type).unwrap_or_default();
        let script = format!("globalThis.__vitrina.blocks[{type_json}] = (\n{body}\n);");
        run_script(scope, &format!("vitrina:blocks/{block_type}.js"), &script)?;
    }
    run_script(scope, "vitrina:dispatch.js", DISPATCH_JS)?;
    Ok(())
}

fn run_script(scope: &mut ::v8::PinScope<'_, '_>, name: &str, source: &str) -> Result<(), String> {
    ::v8::tc_scope!(let tc, scope);
    let code = ::v8::String::new(tc, source).ok_or("script too large")?;
    let name_value = ::v8::String::new(tc, name).ok_or("name too large")?;
    let origin = script_origin(tc, name_value.into());
    let result = ::v8::Script::compile(tc, code, Some(&origin)).and_then(|script| script.run(tc));
    match result {
        Some(_) => Ok(()),
        None => Err(format!("{name}: {}", exception_message(tc))),
    }
}

fn script_origin<'s>(scope: &::v8::PinScope<'s, '_>, name: ::v8::Local<'s, ::v8::Value>) -> ::v8::ScriptOrigin<'s> {
    ::v8::ScriptOrigin::new(scope, name, 0, 0, false, 0, None, false, false, false, None)
}

/// The caught exception's message ("TypeError: x is not a function (line 3)").
fn exception_message(tc: &::v8::PinnedRef<'_, ::v8::TryCatch<'_, '_, ::v8::HandleScope<'_>>>) -> String {
    let Some(message) = tc.message() else {
        return "unknown error".to_string();
    };
    let text = message.get(tc).to_rust_string_lossy(tc);
    let text = text.strip_prefix("Uncaught ").unwrap_or(&text);
    let mut text: String = text.chars().take(MAX_ERROR_MESSAGE).collect();
    if let Some(line) = message.get_line_number(tc) {
        text.push_str(&format!(" (line {line})"));
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Watchdog

/// One process-wide thread that terminates isolates whose deadline has passed.
///
/// Arming a deadline does not wake the thread while it is ticking: every block arms one or two
/// deadlines, and a wake-up (futex, context switch) per arm cost more CPU than the blocks of a
/// small page (W1b profile). While deadlines come and go the thread checks them every [`TICK`],
/// so a timeout lands at most one tick late; after [`LINGER`] with nothing armed it sleeps until
/// the next arm wakes it.
struct Watchdog {
    armed: Mutex<ArmedSet>,
    wake: Condvar,
}

/// How often a busy watchdog checks the armed deadlines.
const TICK: Duration = Duration::from_millis(5);
/// How long the watchdog keeps ticking with nothing armed before it sleeps.
const LINGER: Duration = Duration::from_millis(200);

#[derive(Default)]
struct ArmedSet {
    deadlines: Vec<Armed>,
    /// The thread is asleep without a timeout: the next arm must wake it.
    sleeping: bool,
}

struct Armed {
    id: u64,
    deadline: CpuDeadline,
    isolate: ::v8::IsolateHandle,
    fired: Arc<AtomicBool>,
}

/// Disarms its deadline when dropped; after that the watchdog can no longer fire for it.
struct WatchGuard {
    id: u64,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        // Removing under the lock the watchdog fires under: once this returns, no late
        // TerminateExecution can hit the isolate for this deadline.
        watchdog().armed.lock().deadlines.retain(|a| a.id != self.id);
    }
}

fn watchdog() -> &'static Watchdog {
    static WATCHDOG: OnceLock<&'static Watchdog> = OnceLock::new();
    WATCHDOG.get_or_init(|| {
        let dog: &'static Watchdog = Box::leak(Box::new(Watchdog { armed: Mutex::new(ArmedSet::default()), wake: Condvar::new() }));
        let spawned = std::thread::Builder::new().name("v8-watchdog".into()).spawn(move || dog.run());
        if let Err(error) = spawned {
            // Without the watchdog CPU limits cannot be enforced; nothing else breaks.
            tracing::error!(%error, "cannot start the V8 watchdog thread; block CPU limits are not enforced");
        }
        dog
    })
}

impl Watchdog {
    fn arm(&self, isolate: ::v8::IsolateHandle, deadline: CpuDeadline, fired: Arc<AtomicBool>) -> WatchGuard {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut armed = self.armed.lock();
        armed.deadlines.push(Armed { id, deadline, isolate, fired });
        if armed.sleeping {
            armed.sleeping = false;
            self.wake.notify_one();
        }
        WatchGuard { id }
    }

    fn run(&self) {
        let mut armed = self.armed.lock();
        let mut last_armed = Instant::now();
        loop {
            let mut next_check = TICK;
            armed.deadlines.retain(|a| {
                let left = a.deadline.remaining();
                if !left.is_zero() {
                    next_check = next_check.min(left);
                    return true;
                }
                a.fired.store(true, Ordering::SeqCst);
                a.isolate.terminate_execution();
                false
            });
            if !armed.deadlines.is_empty() {
                last_armed = Instant::now();
            }
            if armed.deadlines.is_empty() && last_armed.elapsed() >= LINGER {
                armed.sleeping = true;
                self.wake.wait(&mut armed);
                last_armed = Instant::now();
            } else {
                // A thread uses at most one second of CPU per second of wall time, so sleeping
                // for the CPU time left never sleeps past the deadline.
                self.wake.wait_for(&mut armed, next_check.max(Duration::from_micros(200)));
            }
        }
    }
}

/// The CPU clock of one thread, readable from any thread of the process.
#[derive(Debug, Clone, Copy)]
struct ThreadClock(libc::clockid_t);

/// How long a reading of the calling thread's CPU clock stands in for a new one (see
/// [`ThreadClock::bounds`]): a block may use up to this much CPU time beyond its budget.
const CPU_READING_FRESH_FOR: Duration = Duration::from_micros(250);

thread_local! {
    /// The calling thread's last CPU clock reading: (clock, CPU time, wall time taken).
    static LAST_CPU_READING: std::cell::Cell<Option<(libc::clockid_t, Duration, Instant)>> = const { std::cell::Cell::new(None) };
}

/// Where a thread's CPU clock stands, known to within `high - low`.
#[derive(Debug, Clone, Copy)]
struct CpuBounds {
    low: Duration,
    high: Duration,
}

impl ThreadClock {
    /// The calling thread's CPU clock.
    fn current() -> ThreadClock {
        let mut id: libc::clockid_t = 0;
        // SAFETY: pthread_self() is always a valid thread of this process; `id` is a valid out pointer.
        let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) };
        if rc == 0 {
            ThreadClock(id)
        } else {
            // Without a per-thread clock, fall back to the process clock: coarser, still CPU time.
            ThreadClock(libc::CLOCK_PROCESS_CPUTIME_ID)
        }
    }

    fn now(self) -> Duration {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid out pointer; an invalid clock id only makes the call fail.
        let rc = unsafe { libc::clock_gettime(self.0, &mut ts) };
        if rc != 0 {
            return Duration::MAX;
        }
        Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
    }

    /// This clock, which must be the calling thread's ([`ThreadClock::current`]), without a
    /// system call when it was read less than [`CPU_READING_FRESH_FOR`] ago. Reading a running
    /// thread's CPU clock locks its CPU's run queue; one read per block was 4 % of the node's
    /// CPU under W1b. A thread's CPU time advances no faster than wall time, so the last reading
    /// bounds it from below and that reading plus the wall time since from above.
    fn bounds(self) -> CpuBounds {
        let wall = Instant::now();
        // The process clock counts every thread: only a thread's own clock is bounded so.
        if self.0 != libc::CLOCK_PROCESS_CPUTIME_ID {
            if let Some((clock, cpu, taken)) = LAST_CPU_READING.get() {
                let since = wall.saturating_duration_since(taken);
                if clock == self.0 && since < CPU_READING_FRESH_FOR {
                    return CpuBounds { low: cpu, high: cpu.saturating_add(since) };
                }
            }
        }
        let cpu = self.now();
        LAST_CPU_READING.set(Some((self.0, cpu, wall)));
        CpuBounds { low: cpu, high: cpu }
    }
}

/// A point on one thread's CPU clock.
#[derive(Debug, Clone, Copy)]
struct CpuDeadline {
    clock: ThreadClock,
    at: Duration,
}

impl CpuDeadline {
    /// `budget` after `now`, a reading of `clock` the caller already has.
    fn after_reading(clock: ThreadClock, now: Duration, budget: Duration) -> CpuDeadline {
        CpuDeadline { clock, at: now.saturating_add(budget) }
    }
    fn min(self, other: CpuDeadline) -> CpuDeadline {
        if other.at < self.at {
            other
        } else {
            self
        }
    }
    fn remaining(&self) -> Duration {
        self.at.saturating_sub(self.clock.now())
    }
}

// ---------------------------------------------------------------------------------------------
// Heap guard

/// State shared with the near-heap-limit callback; boxed so its address is stable.
struct HeapGuard {
    isolate: ::v8::IsolateHandle,
    hit: AtomicBool,
    grants: AtomicU32,
}

/// Called by V8 inside a GC when the heap nears its limit: terminate the running block and
/// raise the limit so the allocation in flight succeeds instead of aborting the process.
unsafe extern "C" fn near_heap_limit(data: *mut c_void, current_heap_limit: usize, _initial: usize) -> usize {
    // SAFETY: `data` is the `HeapGuard` boxed in `LiveIsolate`, which outlives its isolate.
    let guard = unsafe { &*(data as *const HeapGuard) };
    guard.hit.store(true, Ordering::SeqCst);
    guard.isolate.terminate_execution();
    let grants = guard.grants.fetch_add(1, Ordering::SeqCst);
    if grants < MAX_HEAP_GRANTS {
        current_heap_limit.saturating_add(HEAP_GRANT)
    } else {
        tracing::error!(grants, "a block kept allocating past its heap limit after termination; V8 will abort");
        current_heap_limit
    }
}

// ---------------------------------------------------------------------------------------------
// Isolates

/// An isolate that is not entered on the thread between calls (see the module docs).
struct ParkedIsolate(::v8::OwnedIsolate);

impl ParkedIsolate {
    fn new(isolate: ::v8::OwnedIsolate) -> Self {
        // SAFETY: a freshly created OwnedIsolate is the current (entered) isolate.
        unsafe { isolate.exit() };
        Self(isolate)
    }

    fn enter(&mut self) -> EnteredIsolate<'_> {
        // SAFETY: paired with the exit in `EnteredIsolate::drop`; all scopes created from it
        // are dropped before it, so enter/exit nest properly.
        unsafe { self.0.enter() };
        EnteredIsolate(&mut self.0)
    }
}

impl Drop for ParkedIsolate {
    fn drop(&mut self) {
        // OwnedIsolate's drop exits the isolate and asserts it is the current one.
        // SAFETY: balanced by that exit.
        unsafe { self.0.enter() };
    }
}

struct EnteredIsolate<'a>(&'a mut ::v8::OwnedIsolate);

impl Drop for EnteredIsolate<'_> {
    fn drop(&mut self) {
        // SAFETY: entered in `ParkedIsolate::enter`, and it is the current isolate again.
        unsafe { self.0.exit() };
    }
}

struct CompiledBlock {
    code_version: u64,
    function: ::v8::Global<::v8::Function>,
    /// JS array of argument names for by-name binding, or `null` for positional.
    arg_names: ::v8::Global<::v8::Value>,
}

/// What one block is called with, kept between renders while its type and config stay the
/// same: the V8 strings of its id and type, its config parsed and deep-frozen, and for a library
/// block its function. Making these again for every block of every page (strings, a JSON
/// string compared and looked up in JavaScript, the block type internalised to find the
/// function) was ~5 % of the node's CPU under W1b.
struct BlockInputs {
    block_type: String,
    config_json: String,
    id: ::v8::Global<::v8::String>,
    type_name: ::v8::Global<::v8::String>,
    config: ::v8::Global<::v8::Value>,
    library_function: Option<::v8::Global<::v8::Function>>,
}

/// Blocks whose inputs one isolate keeps; past it they are all made again (a store has a few
/// dozen blocks; previews of drafts add some).
const MAX_KEPT_BLOCK_INPUTS: usize = 256;

/// An isolate and what its callbacks point to, without a context. Field order is drop order:
/// the isolate goes before the heap guard its callback points to.
struct IsolateCore {
    isolate: ParkedIsolate,
    heap_guard: Box<HeapGuard>,
    timed_out: Arc<AtomicBool>,
    /// ArrayBuffer memory, allocated against a budget the size of the heap limit.
    external: Arc<ExternalBudget>,
    heap_mb: usize,
}

impl IsolateCore {
    fn create(snapshot: Option<&'static [u8]>, heap_mb: usize) -> Self {
        let heap_bytes = heap_mb.max(1).saturating_mul(1024 * 1024);
        let external = ExternalBudget::new(heap_bytes);
        let mut params =
            ::v8::CreateParams::default().heap_limits(0, heap_bytes).array_buffer_allocator(super::external::allocator(&external));
        if let Some(blob) = snapshot {
            params = params.snapshot_blob(::v8::StartupData::from(blob));
        }
        let mut isolate = ParkedIsolate::new(::v8::Isolate::new(params));
        let heap_guard =
            Box::new(HeapGuard { isolate: isolate.0.thread_safe_handle(), hit: AtomicBool::new(false), grants: AtomicU32::new(0) });
        isolate.0.add_near_heap_limit_callback(near_heap_limit, &*heap_guard as *const HeapGuard as *mut c_void);
        Self { isolate, heap_guard, timed_out: Arc::new(AtomicBool::new(false)), external, heap_mb }
    }

    /// Bytes the isolate holds: its heap's committed pages, V8's own malloc'd memory and the
    /// ArrayBuffers' backing stores.
    fn measure(&mut self) -> usize {
        let entered = self.isolate.enter();
        let stats = entered.0.get_heap_statistics();
        stats.total_physical_size().saturating_add(stats.malloced_memory()).saturating_add(self.external.used())
    }

    /// Never terminated and never near its heap limit: nothing of a limit break can linger.
    fn is_healthy(&self) -> bool {
        !self.timed_out.load(Ordering::SeqCst)
            && !self.heap_guard.hit.load(Ordering::SeqCst)
            && self.heap_guard.grants.load(Ordering::SeqCst) == 0
            && !self.external.refused()
            && !self.isolate.0.is_execution_terminating()
    }
}

/// A live isolate with the library loaded in a context of its own. Field order is drop order:
/// V8 handles go first, then the isolate.
struct LiveIsolate {
    context: ::v8::Global<::v8::Context>,
    set_data: ::v8::Global<::v8::Function>,
    prepare_ctx: ::v8::Global<::v8::Function>,
    render_block: ::v8::Global<::v8::Function>,
    parse_config: ::v8::Global<::v8::Function>,
    default_blocks: ::v8::Global<::v8::Object>,
    /// Compiled merchant blocks by block id; one version per id.
    compiled: HashMap<String, CompiledBlock>,
    /// What each block was last called with, by block id.
    block_inputs: HashMap<String, BlockInputs>,
    /// Store data version loaded into the isolate.
    data_version: Option<u64>,
    /// The parsed, frozen ctx of the last render and the JSON it was parsed from. A shopper's
    /// ctx is the same from page to page until its state or the store changes, so a render
    /// with the same JSON reuses it instead of parsing, resolving and freezing it again.
    base_ctx: Option<::v8::Global<::v8::Value>>,
    base_ctx_json: String,
    core: IsolateCore,
}

impl LiveIsolate {
    fn create(snapshot: Option<&'static [u8]>, heap_mb: usize) -> Result<Self, String> {
        Self::in_new_context(IsolateCore::create(snapshot, heap_mb), snapshot.is_none())
    }

    /// Creates a fresh context in `core` (from the snapshot's, or by running the library when
    /// `load` is set) and looks up the library's entry points.
    fn in_new_context(mut core: IsolateCore, load: bool) -> Result<Self, String> {
        let (context, set_data, prepare_ctx, render_block, parse_config, default_blocks) = {
            let entered = core.isolate.enter();
            ::v8::scope!(let scope, &mut *entered.0);
            let context = ::v8::Context::new(scope, Default::default());
            let scope = &mut ::v8::ContextScope::new(scope, context);
            if load {
                load_library(scope)?;
            }
            // eval / new Function / string timers throw EvalError from now on.
            context.set_allow_generation_from_strings(false);
            let global = context.global(scope);
            let key = ::v8::String::new(scope, "__vitrina").ok_or("cannot allocate key")?;
            let vitrina: ::v8::Local<::v8::Object> =
                global.get(scope, key.into()).and_then(|v| v.try_into().ok()).ok_or("library did not define __vitrina")?;
            let function = |scope: &mut ::v8::PinScope<'_, '_>, name: &str| -> Result<::v8::Global<::v8::Function>, String> {
                let key = ::v8::String::new(scope, name).ok_or("cannot allocate key")?;
                let value: ::v8::Local<::v8::Function> = vitrina
                    .get(scope, key.into())
                    .and_then(|v| v.try_into().ok())
                    .ok_or_else(|| format!("__vitrina.{name} is not a function"))?;
                Ok(::v8::Global::new(scope, value))
            };
            let warm_up = function(scope, "warmUp")?;
            let warm_up = ::v8::Local::new(scope, &warm_up);
            let undefined = ::v8::undefined(scope).into();
            warm_up.call(scope, undefined, &[]).ok_or("library warm-up failed")?;
            let set_data = function(scope, "setData")?;
            let prepare_ctx = function(scope, "prepareCtx")?;
            let render_block = function(scope, "renderBlock")?;
            let parse_config = function(scope, "parseConfig")?;
            let blocks_key = ::v8::String::new(scope, "blocks").ok_or("cannot allocate key")?;
            let blocks: ::v8::Local<::v8::Object> =
                vitrina.get(scope, blocks_key.into()).and_then(|v| v.try_into().ok()).ok_or("__vitrina.blocks is missing")?;
            // Blocks must not reach the dispatcher's entry points, nor capabilities beyond plain
            // ECMAScript: WebAssembly compiles machine code outside the code cache, and
            // SharedArrayBuffer/Atomics could block the thread. V8 installs these while
            // creating a context, even from a snapshot, so they are removed here.
            for name in ["__vitrina", "WebAssembly", "SharedArrayBuffer", "Atomics"] {
                let name = ::v8::String::new(scope, name).ok_or("cannot allocate key")?;
                global.delete(scope, name.into());
            }
            (::v8::Global::new(scope, context), set_data, prepare_ctx, render_block, parse_config, ::v8::Global::new(scope, blocks))
        };

        Ok(Self {
            context,
            set_data,
            prepare_ctx,
            render_block,
            parse_config,
            default_blocks,
            compiled: HashMap::new(),
            block_inputs: HashMap::new(),
            data_version: None,
            base_ctx: None,
            base_ctx_json: String::new(),
            core,
        })
    }

    /// Drops the context and every handle into it, keeping the isolate.
    fn into_core(self) -> IsolateCore {
        let LiveIsolate {
            context,
            set_data,
            prepare_ctx,
            render_block,
            parse_config,
            default_blocks,
            compiled,
            block_inputs,
            base_ctx,
            core,
            ..
        } = self;
        drop((context, set_data, prepare_ctx, render_block, parse_config, default_blocks, compiled, block_inputs, base_ctx));
        core
    }
}

/// Isolates left by released engines, kept briefly per thread for the next engine of the same
/// store.
///
/// Creating an isolate from the snapshot and deleting it are most of what a new shopper's first
/// render costs (W2p profile: ~25 % of the node's CPU). A spare keeps only the isolate: its
/// context, and with it every object a block or a shopper's data ever reached, is dropped
/// before it is kept, and the next engine creates a fresh context from the snapshot, so no
/// JavaScript state crosses from one actor to the next. What the isolate shares across its
/// contexts is V8's own (compilation cache, feedback-free bytecode, the heap's garbage until
/// collected, the `Symbol.for` registry, which holds no values); its microtask queue is empty
/// between calls, since microtasks run as each call returns. Spares are never handed across stores, never kept after a block broke a limit,
/// and are deleted after [`SPARE_MAX_AGE`], so an idle node returns their memory.
mod spares {
    use super::IsolateCore;
    use std::cell::{Cell, RefCell};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// Most spares one thread keeps (each is a few MiB).
    pub const SPARES_PER_THREAD: usize = 4;
    /// Largest isolate kept as a spare. A reused isolate keeps the garbage of every context it
    /// hosted until a full collection, which V8 puts off, so without a bound it grows with each
    /// actor it served. Past the bound (about two fresh isolates) it is deleted and the next
    /// engine takes a fresh one: cheaper than the full collection (loadtest/RESULTS.md).
    pub const SPARE_MAX_BYTES: usize = 4 << 20;
    /// How long a spare waits for an engine of its store before it is deleted.
    pub const SPARE_MAX_AGE: Duration = Duration::from_secs(3);

    struct Spare {
        store: Arc<str>,
        since: Instant,
        core: IsolateCore,
        /// What the isolate measured when it became a spare (counted in `pooled`).
        bytes: usize,
    }

    thread_local! {
        static SPARES: RefCell<Vec<Spare>> = const { RefCell::new(Vec::new()) };
        static SWEEPING: Cell<bool> = const { Cell::new(false) };
    }

    pub fn take(store: &str, heap_mb: usize) -> Option<IsolateCore> {
        let taken = SPARES.with_borrow_mut(|spares| {
            // Newest first: its memory is the likeliest to be warm.
            let at = spares.iter().rposition(|s| &*s.store == store && s.core.heap_mb == heap_mb)?;
            let spare = spares.remove(at);
            crate::engine::pooled::remove(spare.bytes);
            Some(spare.core)
        });
        if taken.is_some() {
            crate::metrics::incr("vitrina_isolates_reused_total", &[]);
        }
        taken
    }

    /// Keeps `core` for the next engine of `store`, unless it is over [`SPARE_MAX_BYTES`] or
    /// the pools have no room left in the node's isolate budget; then it is deleted.
    pub fn put(store: Arc<str>, mut core: IsolateCore) {
        let bytes = core.measure();
        if bytes > SPARE_MAX_BYTES || !crate::engine::pooled::try_add(bytes) {
            drop(core);
            crate::memory::note_released();
            return;
        }
        let evicted = SPARES.with_borrow_mut(|spares| {
            spares.push(Spare { store, since: Instant::now(), core, bytes });
            (spares.len() > SPARES_PER_THREAD).then(|| spares.remove(0))
        });
        // Deleted outside the borrow: deleting an isolate can take a millisecond.
        if let Some(evicted) = evicted {
            crate::engine::pooled::remove(evicted.bytes);
            drop(evicted);
            crate::memory::note_released();
        }
        crate::engine::pooled::grew();
        ensure_sweeping();
    }

    pub fn count() -> usize {
        SPARES.with_borrow(Vec::len)
    }

    /// Deletes spares older than [`SPARE_MAX_AGE`]; returns how many are left.
    pub fn sweep() -> usize {
        let (expired, left) = SPARES.with_borrow_mut(|spares| {
            let now = Instant::now();
            let (expired, kept): (Vec<Spare>, Vec<Spare>) =
                std::mem::take(spares).into_iter().partition(|s| now.duration_since(s.since) >= SPARE_MAX_AGE);
            *spares = kept;
            (expired, spares.len())
        });
        if !expired.is_empty() {
            for spare in &expired {
                crate::engine::pooled::remove(spare.bytes);
            }
            drop(expired);
            crate::memory::note_released();
        }
        left
    }

    /// Starts a sweep loop on this thread's arbiter while it holds spares. Outside an arbiter
    /// (benchmarks, unit tests) spares are only bounded by [`SPARES_PER_THREAD`].
    fn ensure_sweeping() {
        if SWEEPING.get() {
            return;
        }
        let Some(arbiter) = actix_rt::Arbiter::try_current() else { return };
        SWEEPING.set(true);
        // The future is polled on this same arbiter thread, so it sees this thread's spares.
        let spawned = arbiter.spawn(async {
            loop {
                actix_rt::time::sleep(SPARE_MAX_AGE / 2).await;
                if sweep() == 0 {
                    SWEEPING.set(false);
                    break;
                }
            }
        });
        if !spawned {
            SWEEPING.set(false);
        }
    }
}

/// Isolates made ahead of need on each actor thread, with a fresh context that has run nothing
/// but the library's warm-up, so a new actor's first render does not wait ~2 ms for V8.
///
/// Spares (above) save creating an isolate; they exist only where an engine of the same store
/// was released moments before. A new shopper usually finds none (W2p profile: isolate and
/// context creation 40 % of the node's CPU, all of it on the request's path). A pooled isolate
/// has never seen a store's data or a block, so any engine may take it; the pool refills in a
/// task spawned on the arbiter a few milliseconds later: the work is the same, but on a node
/// that is not saturated it happens between requests instead of inside one. Each thread keeps
/// [`READY_PER_THREAD`] once it has rendered, and keeps them while idle: a node that sees a new
/// shopper now and then is where waiting for V8 shows most. Outside an arbiter (benchmarks,
/// unit tests) the pool stays empty.
mod ready {
    use super::LiveIsolate;
    use std::cell::{Cell, RefCell};

    /// Isolates a thread keeps ready (each is ~1.6 MiB).
    pub const READY_PER_THREAD: usize = 2;
    /// About what a ready isolate measures (heap pages of the snapshot's context after warm-up).
    const FRESH_BYTES: usize = 2 << 20;
    /// Pause before making each one.
    const REFILL_DELAY: std::time::Duration = std::time::Duration::from_millis(5);

    /// A ready isolate and what it measured when made (counted in `pooled`).
    struct Ready {
        live: LiveIsolate,
        bytes: usize,
    }

    thread_local! {
        static READY: RefCell<Vec<Ready>> = const { RefCell::new(Vec::new()) };
        static REFILLING: Cell<bool> = const { Cell::new(false) };
    }

    /// A ready isolate with this heap limit, if the thread has one; asks for a refill either way.
    pub fn take(snapshot: &'static [u8], heap_mb: usize) -> Option<LiveIsolate> {
        let (taken, other_limit) = READY.with_borrow_mut(|ready| match ready.iter().position(|r| r.live.core.heap_mb == heap_mb) {
            Some(at) => (Some(ready.remove(at)), None),
            // Made for a store with another heap limit: make room for this one's.
            None if !ready.is_empty() => (None, Some(ready.remove(0))),
            None => (None, None),
        });
        for left in [&taken, &other_limit].into_iter().flatten() {
            crate::engine::pooled::remove(left.bytes);
        }
        if taken.is_some() {
            crate::metrics::incr("vitrina_isolates_prewarmed_total", &[]);
        }
        if other_limit.is_some() {
            // Deleted outside the borrow: deleting an isolate can take a millisecond.
            drop(other_limit);
            crate::memory::note_released();
        }
        refill(snapshot, heap_mb);
        taken.map(|r| r.live)
    }

    pub fn count() -> usize {
        READY.with_borrow(Vec::len)
    }

    /// Fills this thread's pool up to [`READY_PER_THREAD`] isolates of `heap_mb`, each made
    /// [`REFILL_DELAY`] after the last.
    fn refill(snapshot: &'static [u8], heap_mb: usize) {
        if REFILLING.get() || count() >= READY_PER_THREAD {
            return;
        }
        let Some(arbiter) = actix_rt::Arbiter::try_current() else { return };
        REFILLING.set(true);
        let spawned = arbiter.spawn(async move {
            // About what a fresh isolate measures: no room for one, no point making it.
            while count() < READY_PER_THREAD && crate::engine::pooled::room() >= FRESH_BYTES {
                // Not at the next await of the turn that took the isolate (a shopper awaiting
                // its commit would then wait for this too): after it has had time to answer.
                actix_rt::time::sleep(REFILL_DELAY).await;
                match LiveIsolate::create(Some(snapshot), heap_mb) {
                    Ok(mut live) => {
                        let bytes = live.core.measure();
                        // No room in the node's isolate budget: a new actor creates its own.
                        if !crate::engine::pooled::try_add(bytes) {
                            drop(live);
                            break;
                        }
                        READY.with_borrow_mut(|ready| ready.push(Ready { live, bytes }));
                        crate::engine::pooled::grew();
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot prepare a V8 isolate ahead of need");
                        break;
                    }
                }
            }
            REFILLING.set(false);
        });
        if !spawned {
            REFILLING.set(false);
        }
    }
}

/// What happened to one block, before it becomes a `BlockOutcome`.
struct BlockRun {
    outcome: BlockOutcome,
    /// The isolate was terminated or is near its heap limit and must not be reused.
    discard: bool,
}

/// Counters for tests, benchmarks and debugging.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub isolates_created: u64,
    /// Isolates taken over from an engine of the same store released on this thread.
    pub isolates_reused: u64,
    /// Isolates taken ready-made from this thread's pool (see [`ready`]).
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
    /// (see [`spares`]); `None`: its isolates are created fresh and deleted with it.
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
        init();
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
            outcomes.push(outcome);
        }
        self.measure_now_and_then();
        outcomes
    }

    fn take_measured_bytes(&mut self) -> Option<usize> {
        self.measured.take()
    }
}

impl V8Engine {
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

/// Runs one block in `live`: loads data and ctx if needed, compiles, calls, classifies.
/// `deadline` bounds the block's own code; `page_deadline` bounds the whole page.
#[allow(clippy::too_many_arguments)]
fn run_block(
    live: &mut LiveIsolate,
    data: &StoreRenderData,
    ctx_json: &str,
    block: &BlockToRender<'_>,
    limits: &RenderLimits,
    deadline: CpuDeadline,
    page_deadline: CpuDeadline,
    validate: bool,
    stats: &mut EngineStats,
) -> BlockRun {
    let LiveIsolate {
        context,
        set_data,
        prepare_ctx,
        render_block,
        parse_config,
        default_blocks,
        compiled,
        block_inputs,
        data_version,
        base_ctx,
        base_ctx_json,
        core: IsolateCore { isolate, heap_guard, timed_out, external, .. },
    } = live;

    // Merchant code is parsed before any JS runs, so a validation failure costs no isolate time.
    let mut new_function: Option<BlockFunction> = None;
    if let Some(code) = block.code {
        let cached = compiled.get(block.id).is_some_and(|c| c.code_version == block.code_version);
        if cached {
            stats.compile_hits += 1;
        } else {
            stats.compile_misses += 1;
            let extracted = if validate {
                match analyse_block(code) {
                    (_, Some(function)) => Ok(function),
                    (validation, None) => Err(validation),
                }
            } else {
                extract_block_function(code)
            };
            match extracted {
                Ok(function) => new_function = Some(function),
                Err(validation) => {
                    return BlockRun {
                        outcome: Err(BlockFailure::Error(format!("invalid block: {}", validation.error_summary()))),
                        discard: false,
                    }
                }
            }
        }
    }

    let handle = isolate.0.thread_safe_handle();
    let entered = isolate.enter();
    ::v8::scope!(let scope, &mut *entered.0);
    let local_context = ::v8::Local::new(scope, &*context);
    let scope = &mut ::v8::ContextScope::new(scope, local_context);
    ::v8::tc_scope!(let tc, scope);

    timed_out.store(false, Ordering::SeqCst);
    // Loading store data and the shopper ctx is the engine's work, not the block's: it runs
    // against the page budget only, so a large catalog cannot make the first block time out.
    // Only the first block of a page (or of a new store version) has anything to load.
    let loads = *data_version != Some(data.version) || base_ctx.is_none();
    let mut guard = loads.then(|| watchdog().arm(handle.clone(), page_deadline, timed_out.clone()));

    let result: Result<::v8::Local<::v8::Value>, Option<String>> = (|| {
        let undefined: ::v8::Local<::v8::Value> = ::v8::undefined(tc).into();

        if *data_version != Some(data.version) {
            *base_ctx = None;
            let storefront = ::v8::String::new(tc, &data.storefront_json).ok_or(Some("storefront data too large".to_string()))?;
            let products = ::v8::String::new(tc, &data.products_json).ok_or(Some("product data too large".to_string()))?;
            let set_data = ::v8::Local::new(tc, &*set_data);
            set_data.call(tc, undefined, &[storefront.into(), products.into()]).ok_or(None)?;
            *data_version = Some(data.version);
        }

        let ctx = match base_ctx.as_ref() {
            Some(ctx) => ::v8::Local::new(tc, ctx),
            None => {
                let json = ::v8::String::new(tc, ctx_json).ok_or(Some("ctx too large".to_string()))?;
                let prepare_ctx = ::v8::Local::new(tc, &*prepare_ctx);
                let ctx = prepare_ctx.call(tc, undefined, &[json.into()]).ok_or(None)?;
                *base_ctx = Some(::v8::Global::new(tc, ctx));
                base_ctx_json.clear();
                base_ctx_json.push_str(ctx_json);
                ctx
            }
        };

        drop(guard.take());
        guard = Some(watchdog().arm(handle.clone(), deadline, timed_out.clone()));

        // A merchant block's own function; a library block's is found below.
        let (merchant_function, arg_names): (Option<::v8::Local<::v8::Function>>, ::v8::Local<::v8::Value>) =
            match (block.code, new_function.take()) {
                (Some(code), Some(extracted)) => {
                    let body = code.get(extracted.span.clone()).ok_or(Some("function span out of range".to_string()))?;
                    let source = ::v8::String::new(tc, &format!("(\n{body}\n)")).ok_or(Some("block code too large".to_string()))?;
                    let name = ::v8::String::new(tc, &format!("block:{}", block.id)).ok_or(Some("block id too large".to_string()))?;
                    let origin = script_origin(tc, name.into());
                    let value = ::v8::Script::compile(tc, source, Some(&origin)).and_then(|s| s.run(tc)).ok_or(None)?;
                    let function: ::v8::Local<::v8::Function> =
                        value.try_into().map_err(|_| Some("block code did not evaluate to a function".to_string()))?;
                    let arg_names: ::v8::Local<::v8::Value> = match extracted.argument_binding() {
                        Some(args) => {
                            let names: Vec<::v8::Local<::v8::Value>> =
                                args.iter().filter_map(|a| ::v8::String::new(tc, a.js_name()).map(Into::into)).collect();
                            ::v8::Array::new_with_elements(tc, &names).into()
                        }
                        None => ::v8::null(tc).into(),
                    };
                    compiled.insert(
                        block.id.to_string(),
                        CompiledBlock {
                            code_version: block.code_version,
                            function: ::v8::Global::new(tc, function),
                            arg_names: ::v8::Global::new(tc, arg_names),
                        },
                    );
                    (Some(function), arg_names)
                }
                (Some(_), None) => {
                    let cached = compiled.get(block.id).ok_or(Some("compiled block missing".to_string()))?;
                    (Some(::v8::Local::new(tc, &cached.function)), ::v8::Local::new(tc, &cached.arg_names))
                }
                (None, _) => (None, ::v8::null(tc).into()),
            };

        let kept = block_inputs.get(block.id).is_some_and(|k| k.block_type == block.block_type && k.config_json == block.config_json);
        if !kept {
            if block_inputs.len() >= MAX_KEPT_BLOCK_INPUTS {
                block_inputs.clear();
            }
            let config_json = ::v8::String::new(tc, block.config_json).ok_or(Some("config too large".to_string()))?;
            let parse_config = ::v8::Local::new(tc, &*parse_config);
            let config = parse_config.call(tc, undefined, &[config_json.into()]).ok_or(None)?;
            let id = ::v8::String::new(tc, block.id).ok_or(Some("block id too long".to_string()))?;
            let type_name = ::v8::String::new(tc, block.block_type).ok_or(Some("block type too long".to_string()))?;
            let inputs = BlockInputs {
                block_type: block.block_type.to_string(),
                config_json: block.config_json.to_string(),
                id: ::v8::Global::new(tc, id),
                type_name: ::v8::Global::new(tc, type_name),
                config: ::v8::Global::new(tc, config),
                library_function: None,
            };
            block_inputs.insert(block.id.to_string(), inputs);
        }
        let inputs = block_inputs.get_mut(block.id).ok_or(Some("block inputs missing".to_string()))?;
        let function = match (merchant_function, &inputs.library_function) {
            (Some(function), _) => function,
            (None, Some(kept)) => ::v8::Local::new(tc, kept),
            (None, None) => {
                let blocks = ::v8::Local::new(tc, &*default_blocks);
                let key = ::v8::Local::new(tc, &inputs.type_name);
                let value = blocks.get(tc, key.into()).ok_or(None)?;
                let found: ::v8::Local<::v8::Function> =
                    value.try_into().map_err(|_| Some(format!("unknown block type {:?}", block.block_type)))?;
                inputs.library_function = Some(::v8::Global::new(tc, found));
                found
            }
        };

        let config = ::v8::Local::new(tc, &inputs.config);
        let id = ::v8::Local::new(tc, &inputs.id);
        let block_type = ::v8::Local::new(tc, &inputs.type_name);
        let render_block = ::v8::Local::new(tc, &*render_block);
        render_block.call(tc, undefined, &[function.into(), arg_names, ctx, config, id.into(), block_type.into()]).ok_or(None)
    })();

    drop(guard);
    let timed_out = timed_out.load(Ordering::SeqCst);
    // Over the limit also when V8 let a single large object through without reaching its
    // near-heap-limit callback (a first young large object always fits), or when the block
    // was refused ArrayBuffer memory (even if it caught the RangeError). Library blocks are
    // trusted not to, and are not measured.
    let heap_hit = heap_guard.hit.load(Ordering::SeqCst)
        || external.refused()
        || (block.code.is_some() && tc.get_heap_statistics().used_heap_size() > limits.heap_bytes());
    let terminated = tc.has_terminated();
    let discard = timed_out || heap_hit || terminated;
    if discard {
        // The isolate is dropped right after, but leave it in a callable state regardless.
        tc.cancel_terminate_execution();
    }

    // A block can return and still be terminated afterwards, in the microtasks it queued (they
    // run as its call returns, under its deadline): what it returned does not count then.
    let outcome = match result {
        _ if heap_hit => Err(BlockFailure::HeapLimit),
        _ if timed_out || terminated => Err(BlockFailure::Timeout),
        Ok(value) => classify_return(tc, value, limits.output_bytes()),
        Err(Some(message)) => Err(BlockFailure::Error(message)),
        Err(None) => Err(BlockFailure::Error(exception_message(tc))),
    };
    BlockRun { outcome, discard }
}

/// Turns the block's return value into HTML, checking the size before copying it out of V8.
fn classify_return(scope: &::v8::PinScope<'_, '_>, value: ::v8::Local<::v8::Value>, max_bytes: usize) -> BlockOutcome {
    let Ok(html) = ::v8::Local::<::v8::String>::try_from(value) else {
        let kind = value.type_of(scope).to_rust_string_lossy(scope);
        return Err(BlockFailure::Error(format!("block returned {kind} instead of a string")));
    };
    // UTF-8 needs at least one byte per UTF-16 unit and at most three, so the length alone
    // decides most cases without walking the string.
    let units = html.length();
    if units > max_bytes || (units.saturating_mul(3) > max_bytes && html.utf8_length(scope) > max_bytes) {
        return Err(BlockFailure::OutputTooLarge);
    }
    Ok(copy_out(scope, html))
}

/// The string as UTF-8. A block's HTML is usually a tree of `+`-joined pieces; `to_rust_string_lossy`
/// flattens such a tree into a new string on the isolate's heap first (a copy of every page's
/// HTML in garbage, 2.2 % of the node's CPU under W1b, and more scavenges). One-byte strings are
/// instead copied piece by piece straight into Rust's buffer.
fn copy_out(scope: &::v8::PinScope<'_, '_>, html: ::v8::Local<::v8::String>) -> String {
    if !html.is_onebyte() {
        return html.to_rust_string_lossy(scope);
    }
    let mut latin1: Vec<u8> = Vec::with_capacity(html.length());
    html.write_one_byte_uninit_v2(scope, 0, latin1.spare_capacity_mut(), ::v8::WriteFlags::empty());
    // SAFETY: V8 wrote exactly `length()` bytes (the buffer holds that many).
    unsafe { latin1.set_len(html.length()) };
    if latin1.is_ascii() {
        String::from_utf8(latin1).unwrap_or_default()
    } else {
        // Latin-1 bytes 0x80..=0xFF are the code points U+0080..=U+00FF.
        latin1.into_iter().map(char::from).collect()
    }
}
