//! The block engine: runs merchants' JavaScript blocks and returns their HTML.
//!
//! The page renderer (`render/`) owns everything around the blocks — the page shell,
//! visibility rules, the HTML caches — and hands the engine only blocks that are visible to
//! this shopper. The engine never sees another store's data: an engine instance belongs to
//! exactly one actor, and every actor belongs to exactly one store.
//!
//! Engines are not `Send` (a V8 isolate lives and dies on one thread), so an actor's engine is
//! created lazily on the render thread it is placed on (`render/threads.rs`), used only
//! there, and dropped there when the actor passivates.

pub mod external;
pub mod isolate_budget;
pub mod js;
pub mod pooled;
pub mod validate;
pub mod worker;

use std::sync::Arc;

use crate::block_limits::RenderLimits;

/// The store's published data as blocks see it, serialised once per store version.
///
/// Every isolate that renders for this store parses these strings at most once per `version`
/// and keeps the parsed objects (frozen) until the version changes.
#[derive(Debug)]
pub struct StoreRenderData {
    /// Monotonic version of the store's published state (settings, theme, pages, catalog).
    pub version: u64,
    /// JSON object: `{id, name, tagline, currency, locale, theme: {...tokens}, pages, posts}`.
    pub storefront_json: Arc<str>,
    /// JSON array of products as blocks see them: `{id, handle, name, title, description,
    /// price (major units), priceMinor, compareAtPrice, currency, image, images, stock, tags, url}`.
    pub products_json: Arc<str>,
}

/// One block to run, already known to be visible for this request.
#[derive(Debug, Clone, Copy)]
pub struct BlockToRender<'a> {
    pub id: &'a str,
    /// Block type, e.g. `hero`, `product-grid`, `custom`.
    pub block_type: &'a str,
    /// Merchant code (a single function). `None` runs the default library block of `block_type`.
    pub code: Option<&'a str>,
    /// Version of `code`; (id, code_version) keys the compiled-code cache.
    pub code_version: u64,
    /// The block's `config`, a JSON object, handed to the block as `ctx.config`.
    pub config_json: &'a str,
}

/// Why a block produced no HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockFailure {
    /// Exceeded the per-block or per-page CPU budget.
    Timeout,
    /// The isolate hit its heap limit.
    HeapLimit,
    /// Returned more than the output limit.
    OutputTooLarge,
    /// Did not compile, threw, or did not return a string; the message is the exception's.
    Error(String),
    /// The page's CPU budget was spent before this block could start.
    Skipped,
    /// The process running the block died or was killed while it ran (`worker`): a builtin
    /// that ignored termination past its budget, or a V8 failure no limit caught.
    Crashed,
}

impl BlockFailure {
    /// Short machine-readable reason, used in placeholders, logs and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            BlockFailure::Timeout => "timeout",
            BlockFailure::HeapLimit => "heap-limit",
            BlockFailure::OutputTooLarge => "output-too-large",
            BlockFailure::Error(_) => "error",
            BlockFailure::Skipped => "page-budget-exhausted",
            BlockFailure::Crashed => "engine-crashed",
        }
    }
}

pub type BlockOutcome = Result<String, BlockFailure>;

/// What the page renderer needs from a block engine.
pub trait BlockEngine {
    /// Renders `blocks` in order. `ctx_json` is the shopper view shared by all blocks of the
    /// page (`{cart, recentlyViewed, device, userType, customer, locale, region, page, product?,
    /// post?}`); the engine adds each block's `config` and `block` ({id, type}) to it.
    /// Returns exactly one outcome per block, in order. Never panics on merchant code.
    fn render(&mut self, data: &StoreRenderData, ctx_json: &str, blocks: &[BlockToRender<'_>], limits: &RenderLimits) -> Vec<BlockOutcome>;

    /// Bytes the engine's isolate held when last measured, once per measurement: the engine
    /// measures after some renders (not every one), and `None` means no new measurement.
    fn take_measured_bytes(&mut self) -> Option<usize> {
        None
    }

    /// CPU the last render used outside the calling thread (in a worker process), if any; the
    /// caller counts it against the store as its render CPU.
    fn take_cpu_elsewhere(&mut self) -> Option<std::time::Duration> {
        None
    }
}

/// Process-wide V8 initialisation with the operator's extra V8 flags (`Settings::v8_flags`;
/// may be empty). Idempotent: the first call decides, so the node makes it at startup.
pub fn init(v8_flags: &str) {
    js::init(v8_flags);
}

/// Prepares the calling render thread: starts its worker process when blocks run in workers.
pub fn prepare_render_thread() {
    if worker::enabled() {
        worker::start_for_this_thread();
    }
}

/// The engine every actor of `store` uses: V8, isolate created lazily from the startup
/// snapshot or taken over from an engine of the same store released on this thread.
///
/// Once [`worker::enable`] ran (the node's default), that engine lives in the calling render
/// thread's worker process and this returns its handle.
pub fn new_engine(store: &str) -> Box<dyn BlockEngine> {
    match worker::enabled() {
        true => Box::new(worker::RemoteEngine::new(store)),
        false => Box::new(js::V8Engine::for_store(store)),
    }
}
