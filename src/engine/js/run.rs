//! Running one block in a live isolate, in steps: check and parse merchant code (before any
//! JavaScript runs), load the store's data and the shopper's ctx (under the page's deadline:
//! that is the engine's work, not the block's), find or compile the block's function and its
//! inputs (under the block's own deadline), call it, and classify what came back or why
//! nothing did. A block that broke a limit leaves its isolate to be discarded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use super::isolate::{BlockInputs, CompiledBlock, IsolateCore, LiveIsolate};
use super::limits::{watchdog, CpuDeadline, HeapGuard};
use super::platform::{exception_message, script_origin};
use super::EngineStats;
use crate::block_limits::RenderLimits;
use crate::engine::external::ExternalBudget;
use crate::engine::validate::{analyse_block, extract_block_function, BlockFunction};
use crate::engine::{BlockFailure, BlockOutcome, BlockToRender, StoreRenderData};

/// Blocks whose inputs one isolate keeps; past it they are all made again (a store has a few
/// dozen blocks; previews of drafts add some).
const MAX_KEPT_BLOCK_INPUTS: usize = 256;

/// What happened to one block, before it becomes a `BlockOutcome`.
pub(super) struct BlockRun {
    pub(super) outcome: BlockOutcome,
    /// The isolate was terminated or is near its heap limit and must not be reused.
    pub(super) discard: bool,
}

/// A step that runs JavaScript: `Err(Some(message))` is the engine's own failure (a string too
/// large for V8, a missing entry point), `Err(None)` an exception now held by the TryCatch.
type Step<T> = Result<T, Option<String>>;

/// Runs one block in `live`: loads data and ctx if needed, compiles, calls, classifies.
/// `deadline` bounds the block's own code (from the end of any loading); `page_deadline`
/// bounds the whole page.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_block(
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
    let mut new_function = match parse_merchant_code(compiled, block, validate, stats) {
        Ok(function) => function,
        Err(failure) => return BlockRun { outcome: Err(failure), discard: false },
    };

    let handle = isolate.0.thread_safe_handle();
    let entered = isolate.enter();
    v8::scope!(let scope, &mut *entered.0);
    let local_context = v8::Local::new(scope, &*context);
    let scope = &mut v8::ContextScope::new(scope, local_context);
    v8::tc_scope!(let tc, scope);

    timed_out.store(false, Ordering::SeqCst);
    // Loading store data and the shopper ctx is the engine's work, not the block's: it runs
    // against the page budget only, so a large catalog cannot make the first block time out.
    // Only the first block of a page (or of a new store version) has anything to load.
    let loads = *data_version != Some(data.version) || base_ctx.is_none();
    let mut guard = loads.then(|| watchdog().arm(handle.clone(), page_deadline, timed_out.clone()));

    let result: Step<v8::Local<v8::Value>> = (|| {
        let undefined: v8::Local<v8::Value> = v8::undefined(tc).into();
        load_store_data(tc, undefined, data, set_data, data_version, base_ctx)?;
        let ctx = shopper_ctx(tc, undefined, ctx_json, prepare_ctx, base_ctx, base_ctx_json)?;

        // The block's own budget starts once the engine's work is done: making the isolate
        // (before this call) and loading count against the page only.
        let deadline = if loads { page_deadline.min(deadline.restarted(limits.block_cpu())) } else { deadline };
        drop(guard.take());
        guard = Some(watchdog().arm(handle.clone(), deadline, timed_out.clone()));

        let (merchant_function, arg_names) = merchant_function(tc, block, new_function.take(), compiled)?;
        let inputs = kept_inputs(tc, undefined, block, parse_config, block_inputs)?;
        let function = match merchant_function {
            Some(function) => function,
            None => library_function(tc, block, default_blocks, inputs)?,
        };

        let config = v8::Local::new(tc, &inputs.config);
        let id = v8::Local::new(tc, &inputs.id);
        let block_type = v8::Local::new(tc, &inputs.type_name);
        let render_block = v8::Local::new(tc, &*render_block);
        render_block.call(tc, undefined, &[function.into(), arg_names, ctx, config, id.into(), block_type.into()]).ok_or(None)
    })();

    drop(guard);
    settle(tc, result, block, limits, timed_out, heap_guard, external)
}

/// The function of a merchant block whose code is not compiled yet (or changed), extracted and
/// (with `validate`) checked; `None` for a library block or code already compiled.
fn parse_merchant_code(
    compiled: &HashMap<String, CompiledBlock>,
    block: &BlockToRender<'_>,
    validate: bool,
    stats: &mut EngineStats,
) -> Result<Option<BlockFunction>, BlockFailure> {
    let Some(code) = block.code else { return Ok(None) };
    let cached = compiled.get(block.id).is_some_and(|c| c.code_version == block.code_version);
    if cached {
        stats.compile_hits += 1;
        return Ok(None);
    }
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
        Ok(function) => Ok(Some(function)),
        Err(validation) => Err(BlockFailure::Error(format!("invalid block: {}", validation.error_summary()))),
    }
}

/// Hands the store's data to the library when the isolate has an older version (or none); the
/// shopper's ctx was resolved against the old data, so it is dropped too.
fn load_store_data<'s>(
    tc: &v8::PinScope<'s, '_>,
    undefined: v8::Local<'s, v8::Value>,
    data: &StoreRenderData,
    set_data: &v8::Global<v8::Function>,
    data_version: &mut Option<u64>,
    base_ctx: &mut Option<v8::Global<v8::Value>>,
) -> Step<()> {
    if *data_version != Some(data.version) {
        *base_ctx = None;
        let storefront = v8::String::new(tc, &data.storefront_json).ok_or(Some("storefront data too large".to_string()))?;
        let products = v8::String::new(tc, &data.products_json).ok_or(Some("product data too large".to_string()))?;
        let set_data = v8::Local::new(tc, set_data);
        set_data.call(tc, undefined, &[storefront.into(), products.into()]).ok_or(None)?;
        *data_version = Some(data.version);
    }
    Ok(())
}

/// The shopper's ctx, parsed, resolved and frozen by the library once and kept while the
/// page's `ctx_json` stays the same.
fn shopper_ctx<'s>(
    tc: &v8::PinScope<'s, '_>,
    undefined: v8::Local<'s, v8::Value>,
    ctx_json: &str,
    prepare_ctx: &v8::Global<v8::Function>,
    base_ctx: &mut Option<v8::Global<v8::Value>>,
    base_ctx_json: &mut String,
) -> Step<v8::Local<'s, v8::Value>> {
    match base_ctx.as_ref() {
        Some(ctx) => Ok(v8::Local::new(tc, ctx)),
        None => {
            let json = v8::String::new(tc, ctx_json).ok_or(Some("ctx too large".to_string()))?;
            let prepare_ctx = v8::Local::new(tc, prepare_ctx);
            let ctx = prepare_ctx.call(tc, undefined, &[json.into()]).ok_or(None)?;
            *base_ctx = Some(v8::Global::new(tc, ctx));
            base_ctx_json.clear();
            base_ctx_json.push_str(ctx_json);
            Ok(ctx)
        }
    }
}

/// A merchant block's own function and the names its arguments bind by (`null`: positional),
/// compiled now from `extracted` or taken from `compiled`; `None` for a library block, whose
/// function is [`library_function`].
fn merchant_function<'s>(
    tc: &v8::PinScope<'s, '_>,
    block: &BlockToRender<'_>,
    extracted: Option<BlockFunction>,
    compiled: &mut HashMap<String, CompiledBlock>,
) -> Step<(Option<v8::Local<'s, v8::Function>>, v8::Local<'s, v8::Value>)> {
    match (block.code, extracted) {
        (Some(code), Some(extracted)) => {
            let body = code.get(extracted.span.clone()).ok_or(Some("function span out of range".to_string()))?;
            let source = v8::String::new(tc, &format!("(\n{body}\n)")).ok_or(Some("block code too large".to_string()))?;
            let name = v8::String::new(tc, &format!("block:{}", block.id)).ok_or(Some("block id too large".to_string()))?;
            let origin = script_origin(tc, name.into());
            let value = v8::Script::compile(tc, source, Some(&origin)).and_then(|s| s.run(tc)).ok_or(None)?;
            let function: v8::Local<v8::Function> =
                value.try_into().map_err(|_| Some("block code did not evaluate to a function".to_string()))?;
            let arg_names: v8::Local<v8::Value> = match extracted.argument_binding() {
                Some(args) => {
                    let names: Vec<v8::Local<v8::Value>> =
                        args.iter().filter_map(|a| v8::String::new(tc, a.js_name()).map(Into::into)).collect();
                    v8::Array::new_with_elements(tc, &names).into()
                }
                None => v8::null(tc).into(),
            };
            compiled.insert(
                block.id.to_string(),
                CompiledBlock {
                    code_version: block.code_version,
                    function: v8::Global::new(tc, function),
                    arg_names: v8::Global::new(tc, arg_names),
                },
            );
            Ok((Some(function), arg_names))
        }
        (Some(_), None) => {
            let cached = compiled.get(block.id).ok_or(Some("compiled block missing".to_string()))?;
            Ok((Some(v8::Local::new(tc, &cached.function)), v8::Local::new(tc, &cached.arg_names)))
        }
        (None, _) => Ok((None, v8::null(tc).into())),
    }
}

/// What the block is called with (see [`BlockInputs`]), made again only when its type or
/// config changed.
fn kept_inputs<'a>(
    tc: &v8::PinScope<'_, '_>,
    undefined: v8::Local<'_, v8::Value>,
    block: &BlockToRender<'_>,
    parse_config: &v8::Global<v8::Function>,
    block_inputs: &'a mut HashMap<String, BlockInputs>,
) -> Step<&'a mut BlockInputs> {
    let kept = block_inputs.get(block.id).is_some_and(|k| k.block_type == block.block_type && k.config_json == block.config_json);
    if !kept {
        if block_inputs.len() >= MAX_KEPT_BLOCK_INPUTS {
            block_inputs.clear();
        }
        let config_json = v8::String::new(tc, block.config_json).ok_or(Some("config too large".to_string()))?;
        let parse_config = v8::Local::new(tc, parse_config);
        let config = parse_config.call(tc, undefined, &[config_json.into()]).ok_or(None)?;
        let id = v8::String::new(tc, block.id).ok_or(Some("block id too long".to_string()))?;
        let type_name = v8::String::new(tc, block.block_type).ok_or(Some("block type too long".to_string()))?;
        let inputs = BlockInputs {
            block_type: block.block_type.to_string(),
            config_json: block.config_json.to_string(),
            id: v8::Global::new(tc, id),
            type_name: v8::Global::new(tc, type_name),
            config: v8::Global::new(tc, config),
            library_function: None,
        };
        block_inputs.insert(block.id.to_string(), inputs);
    }
    block_inputs.get_mut(block.id).ok_or(Some("block inputs missing".to_string()))
}

/// A library block's function, looked up by its type once and then kept in its inputs.
fn library_function<'s>(
    tc: &v8::PinScope<'s, '_>,
    block: &BlockToRender<'_>,
    default_blocks: &v8::Global<v8::Object>,
    inputs: &mut BlockInputs,
) -> Step<v8::Local<'s, v8::Function>> {
    if let Some(kept) = &inputs.library_function {
        return Ok(v8::Local::new(tc, kept));
    }
    let blocks = v8::Local::new(tc, default_blocks);
    let key = v8::Local::new(tc, &inputs.type_name);
    let value = blocks.get(tc, key.into()).ok_or(None)?;
    let found: v8::Local<v8::Function> = value.try_into().map_err(|_| Some(format!("unknown block type {:?}", block.block_type)))?;
    inputs.library_function = Some(v8::Global::new(tc, found));
    Ok(found)
}

/// The block's outcome, and whether its isolate must be discarded: a limit broken anywhere in
/// the run outweighs whatever the block returned.
fn settle(
    tc: &mut v8::PinnedRef<'_, v8::TryCatch<'_, '_, v8::HandleScope<'_>>>,
    result: Step<v8::Local<v8::Value>>,
    block: &BlockToRender<'_>,
    limits: &RenderLimits,
    timed_out: &AtomicBool,
    heap_guard: &HeapGuard,
    external: &ExternalBudget,
) -> BlockRun {
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
fn classify_return(scope: &v8::PinScope<'_, '_>, value: v8::Local<v8::Value>, max_bytes: usize) -> BlockOutcome {
    let Ok(html) = v8::Local::<v8::String>::try_from(value) else {
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
/// HTML in garbage, a visible share of a busy node's CPU, and more scavenges; see
/// `docs/decisions/v8-engine.md`). One-byte strings are instead copied piece by piece straight
/// into Rust's buffer.
fn copy_out(scope: &v8::PinScope<'_, '_>, html: v8::Local<v8::String>) -> String {
    if !html.is_onebyte() {
        return html.to_rust_string_lossy(scope);
    }
    let mut latin1: Vec<u8> = Vec::with_capacity(html.length());
    html.write_one_byte_uninit_v2(scope, 0, latin1.spare_capacity_mut(), v8::WriteFlags::empty());
    // SAFETY: V8 wrote exactly `length()` bytes (the buffer holds that many).
    unsafe { latin1.set_len(html.length()) };
    if latin1.is_ascii() {
        String::from_utf8(latin1).unwrap_or_default()
    } else {
        // Latin-1 bytes 0x80..=0xFF are the code points U+0080..=U+00FF.
        latin1.into_iter().map(char::from).collect()
    }
}
