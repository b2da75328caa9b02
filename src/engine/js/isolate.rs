//! One isolate and its context. Between calls an isolate is parked (not entered), so actors
//! sharing a thread can create and drop isolates in any order: `rusty_v8` enters an isolate
//! when it is created and requires isolates to be dropped in reverse creation order.
//!
//! [`IsolateCore`] is the isolate with what its callbacks point to (what the pools keep);
//! [`LiveIsolate`] adds a context with the library's entry points and what the engine keeps
//! between renders (store data, the shopper's ctx, compiled blocks, block inputs).

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use super::limits::{near_heap_limit, HeapGuard};
use super::platform::load_library;
use crate::engine::external::{self, ExternalBudget};

/// An isolate that is not entered on the thread between calls (see the module docs).
pub(super) struct ParkedIsolate(pub(super) v8::OwnedIsolate);

impl ParkedIsolate {
    fn new(isolate: v8::OwnedIsolate) -> Self {
        // SAFETY: a freshly created OwnedIsolate is the current (entered) isolate.
        unsafe { isolate.exit() };
        Self(isolate)
    }

    pub(super) fn enter(&mut self) -> EnteredIsolate<'_> {
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

pub(super) struct EnteredIsolate<'a>(pub(super) &'a mut v8::OwnedIsolate);

impl Drop for EnteredIsolate<'_> {
    fn drop(&mut self) {
        // SAFETY: entered in `ParkedIsolate::enter`, and it is the current isolate again.
        unsafe { self.0.exit() };
    }
}

pub(super) struct CompiledBlock {
    pub(super) code_version: u64,
    pub(super) function: v8::Global<v8::Function>,
    /// JS array of argument names for by-name binding, or `null` for positional.
    pub(super) arg_names: v8::Global<v8::Value>,
}

/// What one block is called with, kept between renders while its type and config stay the
/// same: the V8 strings of its id and type, its config parsed and deep-frozen, and for a library
/// block its function. Making these again for every block of every page (strings, a JSON
/// string compared and looked up in JavaScript, the block type internalised to find the
/// function) was a visible share of a busy node's CPU (`docs/decisions/v8-engine.md`).
pub(super) struct BlockInputs {
    pub(super) block_type: String,
    pub(super) config_json: String,
    pub(super) id: v8::Global<v8::String>,
    pub(super) type_name: v8::Global<v8::String>,
    pub(super) config: v8::Global<v8::Value>,
    pub(super) library_function: Option<v8::Global<v8::Function>>,
}

/// An isolate and what its callbacks point to, without a context. Field order is drop order:
/// the isolate goes before the heap guard its callback points to.
pub(super) struct IsolateCore {
    pub(super) isolate: ParkedIsolate,
    pub(super) heap_guard: Box<HeapGuard>,
    pub(super) timed_out: Arc<AtomicBool>,
    /// ArrayBuffer memory, allocated against a budget the size of the heap limit.
    pub(super) external: Arc<ExternalBudget>,
    pub(super) heap_mb: usize,
}

impl IsolateCore {
    pub(super) fn create(snapshot: Option<&'static [u8]>, heap_mb: usize) -> Self {
        let heap_bytes = heap_mb.max(1).saturating_mul(1024 * 1024);
        let external = ExternalBudget::new(heap_bytes);
        let mut params = v8::CreateParams::default().heap_limits(0, heap_bytes).array_buffer_allocator(external::allocator(&external));
        if let Some(blob) = snapshot {
            params = params.snapshot_blob(v8::StartupData::from(blob));
        }
        let mut isolate = ParkedIsolate::new(v8::Isolate::new(params));
        let heap_guard =
            Box::new(HeapGuard { isolate: isolate.0.thread_safe_handle(), hit: AtomicBool::new(false), grants: AtomicU32::new(0) });
        isolate.0.add_near_heap_limit_callback(near_heap_limit, &*heap_guard as *const HeapGuard as *mut c_void);
        Self { isolate, heap_guard, timed_out: Arc::new(AtomicBool::new(false)), external, heap_mb }
    }

    /// Bytes the isolate holds: its heap's committed pages, V8's own malloc'd memory and the
    /// ArrayBuffers' backing stores.
    pub(super) fn measure(&mut self) -> usize {
        let entered = self.isolate.enter();
        let stats = entered.0.get_heap_statistics();
        stats.total_physical_size().saturating_add(stats.malloced_memory()).saturating_add(self.external.used())
    }

    /// Never terminated and never near its heap limit: nothing of a limit break can linger.
    pub(super) fn is_healthy(&self) -> bool {
        !self.timed_out.load(Ordering::SeqCst)
            && !self.heap_guard.hit.load(Ordering::SeqCst)
            && self.heap_guard.grants.load(Ordering::SeqCst) == 0
            && !self.external.refused()
            && !self.isolate.0.is_execution_terminating()
    }
}

/// A live isolate with the library loaded in a context of its own. Field order is drop order:
/// V8 handles go first, then the isolate.
pub(super) struct LiveIsolate {
    pub(super) context: v8::Global<v8::Context>,
    pub(super) set_data: v8::Global<v8::Function>,
    pub(super) prepare_ctx: v8::Global<v8::Function>,
    pub(super) render_block: v8::Global<v8::Function>,
    pub(super) parse_config: v8::Global<v8::Function>,
    pub(super) default_blocks: v8::Global<v8::Object>,
    /// Compiled merchant blocks by block id; one version per id.
    pub(super) compiled: HashMap<String, CompiledBlock>,
    /// What each block was last called with, by block id.
    pub(super) block_inputs: HashMap<String, BlockInputs>,
    /// Store data version loaded into the isolate.
    pub(super) data_version: Option<u64>,
    /// The parsed, frozen ctx of the last render and the JSON it was parsed from. A shopper's
    /// ctx is the same from page to page until its state or the store changes, so a render
    /// with the same JSON reuses it instead of parsing, resolving and freezing it again.
    pub(super) base_ctx: Option<v8::Global<v8::Value>>,
    pub(super) base_ctx_json: String,
    pub(super) core: IsolateCore,
}

impl LiveIsolate {
    pub(super) fn create(snapshot: Option<&'static [u8]>, heap_mb: usize) -> Result<Self, String> {
        Self::in_new_context(IsolateCore::create(snapshot, heap_mb), snapshot.is_none())
    }

    /// Creates a fresh context in `core` (from the snapshot's, or by running the library when
    /// `load` is set) and looks up the library's entry points.
    pub(super) fn in_new_context(mut core: IsolateCore, load: bool) -> Result<Self, String> {
        let (context, set_data, prepare_ctx, render_block, parse_config, default_blocks) = {
            let entered = core.isolate.enter();
            v8::scope!(let scope, &mut *entered.0);
            let context = v8::Context::new(scope, Default::default());
            let scope = &mut v8::ContextScope::new(scope, context);
            if load {
                load_library(scope)?;
            }
            // eval / new Function / string timers throw EvalError from now on.
            context.set_allow_generation_from_strings(false);
            let global = context.global(scope);
            let key = v8::String::new(scope, "__vitrina").ok_or("cannot allocate key")?;
            let vitrina: v8::Local<v8::Object> =
                global.get(scope, key.into()).and_then(|v| v.try_into().ok()).ok_or("library did not define __vitrina")?;
            let function = |scope: &mut v8::PinScope<'_, '_>, name: &str| -> Result<v8::Global<v8::Function>, String> {
                let key = v8::String::new(scope, name).ok_or("cannot allocate key")?;
                let value: v8::Local<v8::Function> = vitrina
                    .get(scope, key.into())
                    .and_then(|v| v.try_into().ok())
                    .ok_or_else(|| format!("__vitrina.{name} is not a function"))?;
                Ok(v8::Global::new(scope, value))
            };
            let warm_up = function(scope, "warmUp")?;
            let warm_up = v8::Local::new(scope, &warm_up);
            let undefined = v8::undefined(scope).into();
            warm_up.call(scope, undefined, &[]).ok_or("library warm-up failed")?;
            let set_data = function(scope, "setData")?;
            let prepare_ctx = function(scope, "prepareCtx")?;
            let render_block = function(scope, "renderBlock")?;
            let parse_config = function(scope, "parseConfig")?;
            let blocks_key = v8::String::new(scope, "blocks").ok_or("cannot allocate key")?;
            let blocks: v8::Local<v8::Object> =
                vitrina.get(scope, blocks_key.into()).and_then(|v| v.try_into().ok()).ok_or("__vitrina.blocks is missing")?;
            // Blocks must not reach the dispatcher's entry points, nor capabilities beyond plain
            // ECMAScript: WebAssembly compiles machine code outside the code cache, and
            // SharedArrayBuffer/Atomics could block the thread. V8 installs these while
            // creating a context, even from a snapshot, so they are removed here.
            for name in ["__vitrina", "WebAssembly", "SharedArrayBuffer", "Atomics"] {
                let name = v8::String::new(scope, name).ok_or("cannot allocate key")?;
                global.delete(scope, name.into());
            }
            (v8::Global::new(scope, context), set_data, prepare_ctx, render_block, parse_config, v8::Global::new(scope, blocks))
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
    pub(super) fn into_core(self) -> IsolateCore {
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
