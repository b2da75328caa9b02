//! V8 for the process: its flags and platform, the startup snapshot of the block library, and
//! running the library's scripts (into the snapshot, or into an isolate when there is none).
//!
//! The JavaScript in `actors/` (prelude, default block library, dispatch) is compiled into a V8
//! startup snapshot once per process, on first use, on a short-lived thread. Building it in
//! `build.rs` would need the `v8` crate as a build dependency as well, compiling it twice.

use std::sync::{Once, OnceLock};
use std::time::Instant;

use crate::engine::validate::extract_block_function;

const PRELUDE_JS: &str = include_str!("../../../actors/prelude.js");
const DISPATCH_JS: &str = include_str!("../../../actors/dispatch.js");

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
    ("hero", include_str!("../../../actors/blocks/hero.js")),
    ("product-grid", include_str!("../../../actors/blocks/product-grid.js")),
    ("product-detail", include_str!("../../../actors/blocks/product-detail.js")),
    ("text", include_str!("../../../actors/blocks/text.js")),
    ("gallery", include_str!("../../../actors/blocks/gallery.js")),
    ("blog-list", include_str!("../../../actors/blocks/blog-list.js")),
    ("blog-post", include_str!("../../../actors/blocks/blog-post.js")),
    ("cart-summary", include_str!("../../../actors/blocks/cart-summary.js")),
    ("recently-viewed", include_str!("../../../actors/blocks/recently-viewed.js")),
    ("cart", include_str!("../../../actors/blocks/cart.js")),
    ("search-results", include_str!("../../../actors/blocks/search-results.js")),
    ("order-confirmation", include_str!("../../../actors/blocks/order-confirmation.js")),
];

/// Longest exception message kept in a `BlockFailure::Error`.
const MAX_ERROR_MESSAGE: usize = 500;

static V8_INIT: Once = Once::new();

/// V8 flags set before the operator's (`v8_flags` in `Settings`), which can undo them
/// (`--maglev --turbofan`). Why each is a default, with the runs that decided it:
/// `docs/decisions/v8-engine.md`.
///
/// No optimising tiers: an isolate belongs to one shopper and renders a few pages per session,
/// so the feedback and the Maglev/TurboFan compiles each isolate pays for separately are
/// rarely paid back. An isolate rendering the same page over and over is slower without them;
/// that is the case this gives up.
///
/// A 2 MiB initial old space: an isolate released by one actor hosts the next actor's context
/// (`spares`, the ready pool), and the dead contexts stay in its old space until a full GC,
/// which V8's default first limit (32 MiB) puts off for many contexts.
///
/// No `Temporal`: V8 installs it lazily in every context, and freezing the built-ins before a
/// block runs (`lockdown` in `actors/dispatch.js`) has to build all of it, a sixth of a new
/// context's cost, for an API no block of ours uses (`--harmony-temporal` brings it back).
pub const DEFAULT_V8_FLAGS: &str = "--no-maglev --no-turbofan --initial-old-space-size=2 --no-harmony-temporal";

/// Initialises the V8 platform for the process with [`DEFAULT_V8_FLAGS`] and then `flags`
/// (the operator's, from `Settings`; may be empty). Idempotent: the first call decides, so
/// the node calls it at startup, before any engine; engines call [`ensure_init`].
pub fn init(flags: &str) {
    V8_INIT.call_once(|| {
        // Set before the first isolate; the snapshot is built with them too. Not a default:
        // `--single-threaded` (no V8 worker threads), which saves CPU per render but leaves
        // memory behind for every deleted isolate (`docs/decisions/v8-engine.md`).
        v8::V8::set_flags_from_string(DEFAULT_V8_FLAGS);
        if !flags.is_empty() {
            v8::V8::set_flags_from_string(flags);
        }
        let platform = v8::new_default_platform(0, false).make_shared();
        v8::V8::initialize_platform(platform);
        v8::V8::initialize();
        // Started here, not lazily on a render thread: it keeps the default scheduling priority
        // while render threads lower theirs (`render.nice`), so deadlines fire on time.
        super::limits::watchdog();
    });
}

/// Initialises V8 with the default flags only, unless [`init`] already ran.
pub(super) fn ensure_init() {
    init("");
}

/// The startup snapshot, built on first use. `Err` (logged once) makes engines fall back to
/// running the library scripts in every new isolate.
pub(super) fn snapshot_blob() -> Option<&'static [u8]> {
    static SNAPSHOT: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();
    let built = SNAPSHOT.get_or_init(|| {
        ensure_init();
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
    let mut creator = v8::Isolate::snapshot_creator(None, None);
    let loaded = {
        v8::scope!(let scope, &mut creator);
        let context = v8::Context::new(scope, Default::default());
        let scope = &mut v8::ContextScope::new(scope, context);
        let loaded = load_library(scope);
        scope.set_default_context(context);
        loaded
    };
    // create_blob must run even when loading failed: dropping a snapshot creator panics.
    let blob = creator.create_blob(v8::FunctionCodeHandling::Keep);
    loaded?;
    blob.map(|b| b.to_vec()).ok_or_else(|| "V8 returned no snapshot blob".to_string())
}

/// Runs prelude, default blocks and dispatch in the current context.
pub(super) fn load_library(scope: &mut v8::PinScope<'_, '_>) -> Result<(), String> {
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

fn run_script(scope: &mut v8::PinScope<'_, '_>, name: &str, source: &str) -> Result<(), String> {
    v8::tc_scope!(let tc, scope);
    let code = v8::String::new(tc, source).ok_or("script too large")?;
    let name_value = v8::String::new(tc, name).ok_or("name too large")?;
    let origin = script_origin(tc, name_value.into());
    let result = v8::Script::compile(tc, code, Some(&origin)).and_then(|script| script.run(tc));
    match result {
        Some(_) => Ok(()),
        None => Err(format!("{name}: {}", exception_message(tc))),
    }
}

pub(super) fn script_origin<'s>(scope: &v8::PinScope<'s, '_>, name: v8::Local<'s, v8::Value>) -> v8::ScriptOrigin<'s> {
    v8::ScriptOrigin::new(scope, name, 0, 0, false, 0, None, false, false, false, None)
}

/// The caught exception's message ("TypeError: x is not a function (line 3)").
pub(super) fn exception_message(tc: &v8::PinnedRef<'_, v8::TryCatch<'_, '_, v8::HandleScope<'_>>>) -> String {
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
