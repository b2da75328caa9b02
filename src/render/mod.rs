//! Page rendering: the host-owned shell (head, SEO, theme tokens, navigation with the live cart
//! count, footer, analytics with consent) around the body the block engine renders.
//!
//! Which blocks a route shows and whether each is visible to this shopper (device, guest or
//! customer, date range) is decided here; the engine only ever runs visible blocks.

pub mod cache;
pub mod cart;
pub mod chrome;
pub mod failed;
pub mod failures;
pub mod gate;
pub mod snapshot;
pub mod threads;

use std::fmt::Write as _;

use serde_json::value::RawValue;
use serde_json::{json, Value};
use time::OffsetDateTime;

use std::sync::Arc;

use actix::prelude::*;

use crate::config::RenderSettings;
use crate::engine::BlockOutcome;
use crate::ids::{ProductId, Slug};
use crate::render::snapshot::{SharedSnapshot, StoreSnapshot};
use crate::store::model::{Block, Device, PageVersion, UserType, Visibility};
use chrome::{analytics_script, BLOCKS_CSS, SHELL_CSS, SHELL_JS};

/// The error page's stylesheet (inline; its hash is in the default policy).
pub const ERROR_PAGE_CSS: &str =
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#111}code{color:#555}";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    Home,
    Page(Slug),
    Product(Slug),
    Post(Slug),
    Blog,
    Cart,
    Search(String),
    /// An order of this shopper (the confirmation page after checkout).
    Order(String),
}

impl Route {
    pub fn path(&self) -> String {
        match self {
            Route::Home => "/".into(),
            Route::Page(s) => format!("/pages/{s}"),
            Route::Product(s) => format!("/products/{s}"),
            Route::Post(s) => format!("/blog/{s}"),
            Route::Blog => "/blog".into(),
            Route::Cart => "/cart".into(),
            Route::Search(q) => format!("/search?q={q}"),
            Route::Order(id) => format!("/orders/{id}"),
        }
    }
}

/// What the HTTP layer learned about a page request.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub route: Route,
    pub device: Device,
    /// Market region for theme overrides (e.g. `EU`), from the shopper's preference.
    pub region: Option<String>,
    /// The shopper declined analytics in the consent cookie.
    pub analytics_declined: bool,
}

impl PageRequest {
    /// Part of every HTML cache key: everything besides shopper state that changes the output.
    pub fn cache_key(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.device.as_str(),
            self.region.as_deref().unwrap_or("-"),
            u8::from(self.analytics_declined),
            self.route.path()
        )
    }
}

/// The shopper state a page shows.
#[derive(Debug, Clone)]
pub struct ShopperView {
    /// `{count, subtotal, subtotalMinor, currency, items: [...]}`, serialised.
    pub cart: Box<RawValue>,
    pub cart_count: u64,
    pub recently_viewed: Vec<ProductId>,
    pub customer: bool,
    pub locale: Option<String>,
    /// Search results, for the search route.
    pub search_results: Option<Vec<ProductId>>,
    /// The order shown on the order route, amounts in major units added.
    pub order: Option<Value>,
}

impl ShopperView {
    /// A visitor without a session. `empty_cart` must be what an empty shopper's cart renders
    /// as (`cart::empty_cart_for_blocks`): guests and empty shoppers see the same page.
    pub fn guest(empty_cart: Box<RawValue>) -> ShopperView {
        ShopperView {
            cart: empty_cart,
            cart_count: 0,
            recently_viewed: Vec::new(),
            customer: false,
            locale: None,
            search_results: None,
            order: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RenderedPage {
    /// Shared, immutable bytes: caches and responses hold the same buffer, never a copy.
    pub html: actix_web::web::Bytes,
    pub store_version: u64,
    pub failed_blocks: usize,
    /// A block hit a CPU or heap limit: the same inputs would hit it again, so the page may be
    /// served as it is for `render.failed_page_ttl_secs` (`failed`).
    pub hit_limit: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Internal(String),
    /// The store has used its share of the render threads (`gate`); it alone is refused.
    #[error("this store's pages are using all the render capacity it may use ({bound}); retry in {retry_after_secs} s")]
    Capacity { retry_after_secs: u64, bound: &'static str },
}

pub use threads::{live_engines, EngineSlot};

/// What renders share on a node: the render threads, each store's admission gate, remembered
/// failed pages and the record of block failures.
pub struct Renderer {
    pub threads: Arc<threads::RenderThreads>,
    pub gates: Arc<gate::StoreGates>,
    pub failed_pages: failed::FailedPages,
    pub failures: failures::FailureLog,
    settings: RenderSettings,
}

impl Renderer {
    pub fn new(settings: &RenderSettings) -> Renderer {
        Renderer {
            threads: Arc::new(threads::RenderThreads::new(
                settings.thread_count(),
                settings.nice,
                settings.stuck_nice,
                settings.stuck_after(),
            )),
            gates: Arc::new(gate::StoreGates::new(settings)),
            failed_pages: failed::FailedPages::new(settings.failed_page_ttl_secs),
            failures: failures::FailureLog::new(settings.failures_kept_per_store, settings.failure_metric_stores),
            settings: settings.clone(),
        }
    }
}

pub fn iso_from_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn default_block(block_type: &str) -> Block {
    Block {
        id: crate::ids::BlockId::parse(&format!("system-{block_type}")).unwrap_or_else(|_| crate::ids::BlockId::generate()),
        block_type: block_type.to_string(),
        code: None,
        code_version: 0,
        config: json!({}),
        visibility: Visibility::default(),
    }
}

struct PagePlan<'a> {
    title: String,
    description: String,
    page_slug: String,
    blocks: Vec<std::borrow::Cow<'a, Block>>,
    extra_ctx: serde_json::Map<String, Value>,
}

fn entries(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// Decides which page and blocks a route shows. A store can replace the built-in product, post,
/// cart and search layouts by publishing pages with the slugs `product`, `post`, `cart`, `search`.
fn plan<'a>(
    snap: &'a StoreSnapshot,
    route: &Route,
    draft: Option<&'a PageVersion>,
    view: &ShopperView,
) -> Result<PagePlan<'a>, RenderError> {
    use std::borrow::Cow;
    let name = &snap.settings.name;
    let from_page = |page: &'a PageVersion, title: String, description: String, extra: Value| PagePlan {
        title,
        description,
        page_slug: page.slug.as_str().to_string(),
        blocks: page.blocks.iter().map(Cow::Borrowed).collect(),
        extra_ctx: entries(extra),
    };
    let template = |slug: &str, fallback: &[&str], title: String, description: String, extra: Value| match snap.page(slug) {
        Some(page) => from_page(page, title, description, extra),
        None => PagePlan {
            title,
            description,
            page_slug: slug.to_string(),
            blocks: fallback.iter().map(|t| Cow::Owned(default_block(t))).collect(),
            extra_ctx: entries(extra),
        },
    };
    let site_title = snap.settings.seo.title.clone().unwrap_or_else(|| name.clone());
    let site_description = snap.settings.seo.description.clone().unwrap_or_else(|| snap.settings.tagline.clone());
    Ok(match route {
        Route::Home | Route::Page(_) => {
            let slug = match route {
                Route::Page(s) => s.as_str(),
                _ => "home",
            };
            let page = match draft {
                Some(d) if d.slug.as_str() == slug => d,
                _ => snap.page(slug).ok_or_else(|| RenderError::NotFound(format!("page {slug} not found")))?,
            };
            let title = if slug == "home" { site_title } else { format!("{} · {name}", page.title) };
            let description = if page.description.is_empty() { site_description } else { page.description.clone() };
            from_page(page, title, description, json!({}))
        }
        Route::Product(handle) => {
            let p = snap.product_by_handle(handle.as_str()).ok_or_else(|| RenderError::NotFound(format!("product {handle} not found")))?;
            let description: String = p.description.chars().take(160).collect();
            template(
                "product",
                &["product-detail", "recently-viewed"],
                format!("{} · {name}", p.title),
                description,
                json!({"productHandle": p.handle}),
            )
        }
        Route::Post(slug) => {
            let post = snap.post(slug.as_str()).ok_or_else(|| RenderError::NotFound(format!("post {slug} not found")))?;
            let post_json = json!({
                "slug": post.slug, "title": post.title, "excerpt": post.excerpt, "body": post.body,
                "author": post.author, "image": post.image, "publishedAt": iso_from_ms(post.published_at),
            });
            template("post", &["blog-post"], format!("{} · {name}", post.title), post.excerpt.clone(), json!({"post": post_json}))
        }
        Route::Blog => template("blog", &["blog-list"], format!("Journal · {name}"), site_description, json!({})),
        Route::Cart => template("cart", &["cart"], format!("Cart · {name}"), site_description, json!({})),
        Route::Order(_) => {
            let order = view.order.clone().ok_or_else(|| RenderError::NotFound("no such order in this session".into()))?;
            template("order", &["order-confirmation"], format!("Your order · {name}"), site_description, json!({"order": order}))
        }
        Route::Search(query) => {
            let ids = view.search_results.clone().unwrap_or_default();
            template(
                "search",
                &["search-results"],
                format!("Search: {query} · {name}"),
                site_description,
                json!({"search": {"query": query, "productIds": ids}}),
            )
        }
    })
}

/// A page rendered by an actor: its outcome, once the render thread is done.
pub type PendingPage<A> = actix::fut::future::LocalBoxActorFuture<A, Result<RenderedPage, RenderError>>;

/// Renders a full page for one shopper (or a guest). `draft` previews an unpublished page.
///
/// Everything but the blocks happens on the actor's thread; the blocks run on the engine of
/// `slot(actor)` on a render thread, once the store's gate admits the render. A page that hit a
/// limit on the same inputs moments ago is answered as it rendered then (`failed`).
pub fn render_page<A: Actor>(
    renderer: &Arc<Renderer>,
    slot: fn(&mut A) -> &mut EngineSlot,
    snap: &SharedSnapshot,
    req: &PageRequest,
    view: &ShopperView,
    draft: Option<&PageVersion>,
) -> PendingPage<A>
where
    A::Context: AsyncContext<A>,
{
    let (prepared, job) = match prepare(&renderer.settings, snap, req, view, draft) {
        Ok(p) => p,
        Err(e) => return fut::ready(Err(e)).boxed_local(),
    };
    let assemble_with = {
        let (snap, req, view) = (snap.clone(), req.clone(), view.clone());
        move |prepared: &Prepared, outcomes: &[BlockOutcome]| assemble(&snap, &req, &view, prepared, outcomes)
    };
    if job.blocks.is_empty() {
        return fut::ready(Ok(assemble_with(&prepared, &[]))).boxed_local();
    }
    let key = inputs_key(snap, &job);
    if let Some(outcomes) = renderer.failed_pages.get(&key) {
        return fut::ready(Ok(assemble_with(&prepared, &outcomes))).boxed_local();
    }
    let renderer = renderer.clone();
    let store = snap.store.clone();
    let gates = renderer.gates.clone();
    let admitted = {
        let store = store.clone();
        async move { gates.admit(&store).await }
    };
    fut::wrap_future::<_, A>(admitted)
        .then(move |admitted, act: &mut A, _ctx| {
            let permit = match admitted {
                Ok(permit) => permit,
                Err(refused) => {
                    crate::metrics::incr("vitrina_render_refused_total", &[("bound", refused.bound)]);
                    let refused = RenderError::Capacity { retry_after_secs: refused.retry_after_secs, bound: refused.bound };
                    return fut::ready(Err(refused)).boxed_local();
                }
            };
            // The render this one waited for may have run the same inputs into a limit.
            if let Some(outcomes) = renderer.failed_pages.get(&key) {
                drop(permit);
                return fut::ready(Ok(assemble_with(&prepared, &outcomes))).boxed_local();
            }
            let done = slot(act).run(&renderer.threads, &store, job);
            fut::wrap_future::<_, A>(done)
                .map(move |result, _act: &mut A, _ctx| {
                    let result = result.map_err(|_| RenderError::Internal("the render thread is gone".into()))?;
                    permit.charge(result.cpu);
                    drop(permit);
                    crate::metrics::observe_seconds("vitrina_render_cpu_seconds", &[], result.cpu.as_secs_f64());
                    crate::metrics::add(
                        "vitrina_store_render_cpu_ms_total",
                        &[("store", &crate::metrics::store_label(store.as_str()))],
                        result.cpu.as_millis() as u64,
                    );
                    for ((id, block_type), outcome) in prepared.blocks.iter().zip(&result.outcomes) {
                        if let Err(failure) = outcome {
                            renderer.failures.record(&store, &prepared.page_slug, id, block_type, failure);
                        }
                    }
                    if failed::FailedPages::worth_remembering(&result.outcomes) {
                        renderer.failed_pages.insert(key, result.outcomes.clone());
                    }
                    Ok(assemble_with(&prepared, &result.outcomes))
                })
                .boxed_local()
        })
        .boxed_local()
}

/// A page up to its blocks: what the shell needs around the engine's outcomes.
struct Prepared {
    title: String,
    description: String,
    page_slug: String,
    /// (id, type) of each visible block, in order.
    blocks: Vec<(String, String)>,
    /// A draft previewed in the console: shown, never run. Its frame is sandboxed without
    /// scripts, so the page carries none (no shell script, live updates or analytics, which
    /// would otherwise count the merchant's previews as visits).
    preview: bool,
}

/// Everything a page's block outcomes depend on (`failed`): the store version, the limits, each
/// block's id, code version (new for every code change), type and config, and the ctx.
fn inputs_key(snap: &StoreSnapshot, job: &threads::EngineJob) -> String {
    let l = &job.limits;
    let mut key = format!("{}|{}|{}.{}.{}.{}", snap.store, snap.version, l.block_cpu_ms, l.page_cpu_ms, l.heap_mb, l.output_kb);
    for b in &job.blocks {
        let _ = write!(key, "|{}:{}:{}:{}", b.id, b.code_version, b.block_type, b.config_json);
    }
    key.push('|');
    key.push_str(&job.ctx_json);
    key
}

fn prepare(
    settings: &RenderSettings,
    snap: &SharedSnapshot,
    req: &PageRequest,
    view: &ShopperView,
    draft: Option<&PageVersion>,
) -> Result<(Prepared, threads::EngineJob), RenderError> {
    let plan = plan(snap, &req.route, draft, view)?;
    let now = OffsetDateTime::now_utc();
    let user_type = if view.customer { UserType::Customer } else { UserType::Guest };
    let visible: Vec<&Block> = plan.blocks.iter().map(|b| b.as_ref()).filter(|b| b.visibility.allows(req.device, user_type, now)).collect();

    let ctx = PageCtx {
        cart: &view.cart,
        recently_viewed: &view.recently_viewed,
        device: req.device.as_str(),
        user_type: if view.customer { "customer" } else { "guest" },
        customer: view.customer,
        locale: view.locale.as_deref().unwrap_or(&snap.settings.locale),
        region: req.region.as_deref(),
        page: PageRef { slug: &plan.page_slug, title: &plan.title },
        extra: &plan.extra_ctx,
    };
    let ctx_json = serde_json::to_string(&ctx).map_err(|e| RenderError::Internal(format!("cannot serialise the page context: {e}")))?;
    let job_blocks = visible
        .iter()
        .map(|b| threads::JobBlock {
            id: b.id.as_str().to_string(),
            block_type: b.block_type.clone(),
            code: b.code.clone(),
            code_version: b.code_version,
            config_json: b.config.to_string(),
        })
        .collect();
    let prepared = Prepared {
        blocks: visible.iter().map(|b| (b.id.as_str().to_string(), b.block_type.clone())).collect(),
        title: plan.title,
        description: plan.description,
        page_slug: plan.page_slug,
        preview: draft.is_some(),
    };
    Ok((
        prepared,
        threads::EngineJob { snapshot: snap.clone(), ctx_json, blocks: job_blocks, limits: settings.clamp(&snap.settings.limits) },
    ))
}

/// The page around the blocks' outcomes.
fn assemble(snap: &StoreSnapshot, req: &PageRequest, view: &ShopperView, prepared: &Prepared, outcomes: &[BlockOutcome]) -> RenderedPage {
    let blocks_len: usize = outcomes.iter().map(|o| o.as_ref().map_or(128, |html| html.len() + 64)).sum();
    let mut html = String::with_capacity(blocks_len + SHELL_CSS.len() + BLOCKS_CSS.len() + SHELL_JS.len() + 4096);
    shell_top(&mut html, snap, req, view, prepared);
    let mut failed = 0;
    for ((id, block_type), outcome) in prepared.blocks.iter().zip(outcomes) {
        match outcome {
            Ok(block_html) => {
                let _ = writeln!(
                    html,
                    "<div class=\"v-block\" data-block=\"{}\" data-type=\"{}\">{block_html}</div>",
                    escape_html(id),
                    escape_html(block_type)
                );
            }
            Err(failure) => {
                failed += 1;
                // The comment names the block and the reason; `--` cannot appear in either.
                let _ = writeln!(
                    html,
                    "<div class=\"v-block v-block-failed\" data-block=\"{}\"><!-- block {} ({}) failed: {} --></div>",
                    escape_html(id),
                    id.replace("--", "- -"),
                    escape_html(block_type).replace("--", "- -"),
                    failure.code()
                );
            }
        }
    }
    shell_bottom(&mut html, snap, req, prepared.preview);
    let hit_limit = failed::FailedPages::worth_remembering(outcomes);
    RenderedPage { html: html.into(), store_version: snap.version, failed_blocks: failed, hit_limit }
}

/// The shopper context blocks see (`ctx`), serialised straight from borrowed state.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PageCtx<'a> {
    cart: &'a RawValue,
    recently_viewed: &'a [ProductId],
    device: &'a str,
    user_type: &'a str,
    customer: bool,
    locale: &'a str,
    region: Option<&'a str>,
    page: PageRef<'a>,
    /// The route's own entries (`productHandle`, `post`, `search`, `order`).
    #[serde(flatten)]
    extra: &'a serde_json::Map<String, Value>,
}

#[derive(serde::Serialize)]
struct PageRef<'a> {
    slug: &'a str,
    title: &'a str,
}

/// Everything of the page before its blocks: head, header with the live cart count, `<main>`.
fn shell_top(out: &mut String, snap: &StoreSnapshot, req: &PageRequest, view: &ShopperView, prepared: &Prepared) {
    let s = &snap.settings;
    let (title, description) = (&prepared.title, &prepared.description);
    let analytics = match &s.analytics.clarity_project_id {
        // Project ids are validated as alphanumeric on save.
        Some(id) if !req.analytics_declined && !prepared.preview => format!("<script>{}</script>", analytics_script(id)),
        _ => String::new(),
    };
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n<meta name=\"description\" content=\"{description}\">\n<meta property=\"og:title\" content=\"{title}\">\n<meta property=\"og:description\" content=\"{description}\">\n{style}{analytics}</head>\n<body>\n<header class=\"v-header\"><div class=\"v-header-inner\"><a class=\"v-brand\" href=\"/\">{name}</a><nav class=\"v-nav\">{nav}<a href=\"/blog\">Journal</a></nav><form class=\"v-search\" action=\"/search\" method=\"get\"><input type=\"search\" name=\"q\" placeholder=\"Search\" aria-label=\"Search products\"></form><a class=\"v-cart-link\" href=\"/cart\">Cart (<span id=\"v-cart-count\">{count}</span>)</a></div></header>\n<main class=\"v-main\">\n",
        lang = escape_html(view.locale.as_deref().unwrap_or(&s.locale)),
        title = escape_html(title),
        description = escape_html(description),
        style = snap.chrome.style(req.region.as_deref()),
        nav = snap.chrome.nav,
        name = escape_html(&s.name),
        count = view.cart_count,
    );
}

/// Everything of the page after its blocks: footer, consent form, the shell's scripts (none in
/// a preview).
fn shell_bottom(out: &mut String, snap: &StoreSnapshot, req: &PageRequest, preview: bool) {
    let s = &snap.settings;
    let consent = if s.analytics.clarity_project_id.is_some() {
        let (label, value) = if req.analytics_declined { ("Allow analytics", "granted") } else { ("Decline analytics", "declined") };
        format!("<form method=\"post\" action=\"/consent\" class=\"v-consent\"><input type=\"hidden\" name=\"analytics\" value=\"{value}\"><button type=\"submit\">{label}</button></form>")
    } else {
        String::new()
    };
    let _ = write!(
        out,
        "</main>\n<footer class=\"v-footer\"><p>&copy; {year} {name}. {tagline}</p>{consent}</footer>\n",
        year = OffsetDateTime::now_utc().year(),
        name = escape_html(&s.name),
        tagline = escape_html(&s.tagline),
    );
    if !preview {
        out.push_str("<script>");
        out.push_str(SHELL_JS);
        out.push_str("</script>\n<script src=\"/live.js\" defer></script>\n");
    }
    out.push_str("</body>\n</html>\n");
}

/// A plain HTML error page for shoppers' browsers (API clients get the JSON error body).
pub fn error_page(status: u16, title: &str, message: &str, request_id: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{status} {title}</title><style>{ERROR_PAGE_CSS}</style></head><body><h1>{title}</h1><p>{message}</p><p><a href=\"/\">Back to the shop</a></p><p><code>request id: {id}</code></p></body></html>\n",
        title = escape_html(title),
        message = escape_html(message),
        id = escape_html(request_id),
    )
}
