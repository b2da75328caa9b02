//! The store actor: one per storefront. Owns the store's database (settings, theme, pages and
//! their versions, posts, product cache) and publishes an immutable snapshot after every change.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde_json::{json, Value};

mod feed;
pub mod limits;
mod sync;
pub use feed::{ApplyCatalogChanges, FeedAdmin, FeedAdminOp, GetWebhookSecret};
pub use sync::{SyncAdmin, SyncAdminOp};

use crate::clock::now_ms;
use crate::ids::{BlockId, ProductId, Slug, StoreId};
use crate::node::Node;
use crate::render::snapshot::{SharedSnapshot, StoreSnapshot};
use crate::render::{self, PageRequest, RenderError, ShopperView};
use crate::runtime::registry::{Lease, Registry};
use crate::runtime::{watch_idleness, Passivating};
use crate::sqlite::StorageError;
use crate::storage::ActorDb;
use crate::store::model::*;
use crate::store::repo::{self, UpsertOutcome};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The change would pass an operator limit (products, snapshot bytes, render limits); the
    /// whole change is refused.
    #[error("{code}: {message}")]
    Limit { code: &'static str, message: String, details: Value },
    /// Committed on this node, not acknowledged: the store is `durability = "sync"` and the
    /// upload to object storage failed.
    #[error("the change was saved on this node but could not be replicated: {0}")]
    Replication(#[from] crate::replication::ReplicationError),
}

/// Admin operations, already parsed and validated as far as possible at the edge.
#[derive(Debug, Clone)]
pub enum AdminOp {
    Describe,
    GetSettings,
    PatchSettings(SettingsPatchInput),
    GetTheme,
    PutTheme(Theme),
    ListProducts,
    GetProduct(ProductId),
    UpsertProducts(Vec<(Option<ProductId>, ProductInputClone)>),
    DeleteProduct(ProductId),
    ListPages,
    GetPage(Slug),
    PutPage { slug: Slug, title: String, description: String, blocks: Option<Vec<BlockInputClone>> },
    DeletePage(Slug),
    AddBlock { page: Slug, block: BlockInputClone },
    UpdateBlock { page: Slug, block_id: BlockId, block: BlockInputClone },
    DeleteBlock { page: Slug, block_id: BlockId },
    Publish(Slug),
    ListVersions(Slug),
    Rollback { page: Slug, version: i64 },
    ListPosts,
    PutPost { slug: Slug, post: PostInputClone },
    DeletePost(Slug),
}

/// Inputs travel as JSON values (cheap to clone for a retried send) and are deserialised into
/// their validated domain types inside the actor's turn.
pub type SettingsPatchInput = Value;
pub type ProductInputClone = Value;
pub type BlockInputClone = Value;
pub type PostInputClone = Value;

#[derive(Message, Clone)]
#[rtype(result = "Result<Value, StoreError>")]
pub struct Admin(pub AdminOp);

#[derive(Message, Clone)]
#[rtype(result = "SharedSnapshot")]
pub struct GetSnapshot;

#[derive(Message, Clone)]
#[rtype(result = "Result<Vec<ProductId>, StoreError>")]
pub struct Search {
    pub query: String,
    pub limit: usize,
}

/// Renders a page for an anonymous first visit (guest, empty cart), or an admin preview of a
/// page's drafts.
#[derive(Message, Clone)]
#[rtype(result = "Result<render::RenderedPage, RenderError>")]
pub struct RenderForStore {
    pub request: PageRequest,
    pub preview_drafts: bool,
    /// Ranked product ids, for the search route.
    pub search_results: Option<Vec<ProductId>>,
}

pub struct StoreActor {
    node: Arc<Node>,
    store: StoreId,
    db: Option<ActorDb>,
    lease: Lease,
    snapshot: SharedSnapshot,
    engine: render::EngineSlot,
    last_active: Instant,
    feed: feed::FeedState,
}

impl StoreActor {
    pub fn new(node: Arc<Node>, store: StoreId, db: ActorDb, lease: Lease) -> StoreActor {
        let snapshot = match db.read(|c| StoreSnapshot::load(&store, c)) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::error!(%store, error = %e, "store snapshot failed to load; serving an empty store");
                Arc::new(StoreSnapshot::empty(&store))
            }
        };
        node.publish_snapshot(snapshot.clone());
        let feed = feed::FeedState { webhook_secret: feed::load_webhook_secret(&node, &store, &db), sync_running: None };
        StoreActor { node, store, db: Some(db), lease, snapshot, engine: Default::default(), last_active: Instant::now(), feed }
    }

    fn db(&self) -> Result<ActorDb, StoreError> {
        self.db.clone().ok_or_else(|| StoreError::Storage(StorageError::Join("store actor is closing".into())))
    }

    fn touch(&mut self) {
        self.last_active = Instant::now();
    }

    /// Reloads the snapshot after a committed change and hands it to this node's shoppers.
    fn refresh_snapshot(&mut self) {
        let Some(db) = &self.db else { return };
        match db.read(|c| StoreSnapshot::load(&self.store, c)) {
            Ok(s) => self.install_snapshot(s),
            Err(e) => tracing::error!(store = %self.store, error = %e, "snapshot reload failed"),
        }
    }

    /// Hands a snapshot of a committed state to this node's shoppers.
    fn install_snapshot(&mut self, snapshot: StoreSnapshot) {
        self.snapshot = Arc::new(snapshot);
        self.node.publish_snapshot(self.snapshot.clone());
        self.node.announce_version(&self.store, self.snapshot.version);
    }
}

impl Handler<crate::runtime::Passivate> for StoreActor {
    type Result = ();
    fn handle(&mut self, _: crate::runtime::Passivate, ctx: &mut Context<Self>) {
        crate::runtime::passivate_now(self, ctx);
    }
}

impl Handler<crate::engine::isolate_budget::ReleaseIsolate> for StoreActor {
    type Result = ();
    fn handle(&mut self, msg: crate::engine::isolate_budget::ReleaseIsolate, _: &mut Context<Self>) {
        crate::runtime::release_evicted_isolate(self, msg.ticket);
    }
}

impl Passivating for StoreActor {
    fn registry_and_lease(&mut self) -> (&Registry, &mut Lease) {
        (&self.node.registry, &mut self.lease)
    }
    fn last_active(&self) -> Instant {
        self.last_active
    }
    fn engine(&mut self) -> &mut render::EngineSlot {
        &mut self.engine
    }
}

impl Actor for StoreActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.engine = render::EngineSlot::owned_by(ctx.address().downgrade().recipient());
        let actors = &self.node.settings.actors;
        watch_idleness(ctx, Duration::from_secs(actors.idle_timeout_secs), Duration::from_secs(actors.isolate_idle_secs));
        ctx.notify(FireAlarms);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.engine.drop_engine();
        self.db = None;
        let node = self.node.clone();
        // The file is closed: upload it now if it has unreplicated commits.
        node.actor_passivated(crate::ids::ActorKey::Store(self.store.clone()));
        node.registry.finish_passivation(&mut self.lease);
        tracing::debug!(store = %self.store, "store actor passivated");
    }
}

impl Handler<GetSnapshot> for StoreActor {
    type Result = SharedSnapshot;
    fn handle(&mut self, _: GetSnapshot, _: &mut Context<Self>) -> SharedSnapshot {
        self.touch();
        self.snapshot.clone()
    }
}

impl Handler<Search> for StoreActor {
    type Result = Result<Vec<ProductId>, StoreError>;
    fn handle(&mut self, msg: Search, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        let db = self.db()?;
        Ok(db.read(|c| repo::search_products(c, &msg.query, msg.limit))?)
    }
}

/// Not a turn of its own: the render runs on a render thread while the actor goes on with
/// other messages (admin writes, snapshots, searches), against the snapshot it started with.
impl Handler<RenderForStore> for StoreActor {
    type Result = ResponseActFuture<Self, Result<render::RenderedPage, RenderError>>;
    fn handle(&mut self, msg: RenderForStore, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        match self.render_for_store(&msg) {
            Ok(pending) => pending,
            Err(e) => Box::pin(fut::ready(Err(e))),
        }
    }
}

impl StoreActor {
    fn render_for_store(&mut self, msg: &RenderForStore) -> Result<render::PendingPage<Self>, RenderError> {
        let empty_cart = render::cart::empty_cart_for_blocks(&self.snapshot).map_err(|e| RenderError::Internal(e.to_string()))?;
        let view = ShopperView { search_results: msg.search_results.clone(), ..ShopperView::guest(empty_cart) };
        let renderer = self.node.renderer.clone();
        let slot = <Self as Passivating>::engine;
        if !msg.preview_drafts {
            return Ok(render::render_page(&renderer, slot, &self.snapshot, &msg.request, &view, None));
        }
        let render::Route::Page(slug) = &msg.request.route else {
            return Err(RenderError::NotFound("only pages can be previewed".into()));
        };
        let db = self.db.clone().ok_or_else(|| RenderError::NotFound("store is closing".into()))?;
        let drafts = db
            .read(|c| Ok((repo::page_summary(c, slug)?, repo::draft_blocks(c, slug)?)))
            .map_err(|e| RenderError::Internal(e.to_string()))?;
        let (Some(summary), blocks) = drafts else {
            return Err(RenderError::NotFound(format!("page {slug} does not exist")));
        };
        let draft = PageVersion {
            slug: slug.clone(),
            version: 0,
            title: summary.title,
            description: summary.description,
            blocks,
            published_at: now_ms(),
        };
        Ok(render::render_page(&renderer, slot, &self.snapshot, &msg.request, &view, Some(&draft)))
    }
}

#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct FireAlarms;

/// Due alarms: today the upstream sync's (see `sync.rs`). Also sent at activation, so an alarm
/// that fell due while the node was down fires.
impl Handler<FireAlarms> for StoreActor {
    type Result = AtomicResponse<Self, ()>;
    fn handle(&mut self, _: FireAlarms, ctx: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(self.fire_alarms(ctx))
    }
}

/// Outcome of an admin write: the response body, and for a change shoppers can see, the new
/// snapshot (built and checked inside the transaction) to publish once it has committed.
struct Written {
    body: Value,
    published: Option<StoreSnapshot>,
}

impl Handler<Admin> for StoreActor {
    type Result = AtomicResponse<Self, Result<Value, StoreError>>;

    fn handle(&mut self, Admin(op): Admin, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        let db = match self.db() {
            Ok(db) => db,
            Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(e)))),
        };
        // Reads answer from this turn; writes commit on the blocking pool while the turn waits.
        let read = |f: &dyn Fn(&rusqlite::Connection) -> Result<Value, StoreError>| -> Self::Result {
            let result = match db.read(|c| Ok(f(c))) {
                Ok(r) => r,
                Err(e) => Err(e.into()),
            };
            AtomicResponse::new(Box::pin(fut::ready(result)))
        };
        let snapshot = self.snapshot.clone();
        match op {
            AdminOp::Describe => {
                let s = snapshot.clone();
                read(&move |c| {
                    Ok(json!({
                        "id": s.store,
                        "version": s.version,
                        "settings": s.settings,
                        "theme": s.theme,
                        "productCount": s.products.len(),
                        "pages": repo::list_pages(c)?,
                        "postCount": s.posts.len(),
                    }))
                })
            }
            AdminOp::GetSettings => read(&move |_| Ok(json!(snapshot.settings))),
            AdminOp::GetTheme => read(&move |_| Ok(json!({"theme": snapshot.theme, "resolved": snapshot.theme.resolve(None)}))),
            AdminOp::ListProducts => read(&move |_| Ok(json!({"products": snapshot.products, "version": snapshot.version}))),
            AdminOp::GetProduct(id) => read(&move |_| {
                snapshot.product(&id).map(|p| json!(p)).ok_or_else(|| StoreError::NotFound(format!("product {id} not found")))
            }),
            AdminOp::ListPages => read(&|c| Ok(json!({"pages": repo::list_pages(c)?}))),
            AdminOp::GetPage(slug) => read(&move |c| {
                let summary = repo::page_summary(c, &slug)?.ok_or_else(|| StoreError::NotFound(format!("page {slug} not found")))?;
                let drafts = repo::draft_blocks(c, &slug)?;
                let warnings = draft_warnings(&drafts);
                let live = match summary.published_version {
                    Some(v) => repo::published_page(c, &slug, v)?,
                    None => None,
                };
                Ok(json!({"page": summary, "draft": {"blocks": drafts, "warnings": warnings}, "published": live}))
            }),
            AdminOp::ListVersions(slug) => read(&move |c| {
                repo::page_summary(c, &slug)?.ok_or_else(|| StoreError::NotFound(format!("page {slug} not found")))?;
                Ok(json!({"versions": repo::page_versions(c, &slug)?}))
            }),
            AdminOp::ListPosts => read(&move |_| Ok(json!({"posts": snapshot.posts}))),
            AdminOp::PatchSettings(patch) if patch.get("durability") == Some(&json!("sync")) && self.node.replicator.is_none() => {
                AtomicResponse::new(Box::pin(fut::ready(Err(StoreError::Invalid(
                    "durability \"sync\" needs [replication] configured on this node".into(),
                )))))
            }
            write_op => {
                let currency = snapshot.settings.currency.clone();
                let settings = snapshot.settings.clone();
                let bounds = Bounds::of(&self.node, &self.store);
                let fut = async move { db.write(move |tx| apply_write(tx, write_op, &settings, &currency, &bounds)).await };
                AtomicResponse::new(Box::pin(
                    fut::wrap_future::<_, Self>(fut)
                        .map(|result, act, _ctx| {
                            let written: Written = result?;
                            if let Some(snapshot) = written.published {
                                act.install_snapshot(snapshot);
                            }
                            let mut body = written.body;
                            if let Value::Object(map) = &mut body {
                                map.insert("storeVersion".into(), json!(act.snapshot.version));
                            }
                            Ok(body)
                        })
                        .then(|result: Result<Value, StoreError>, act, _ctx| {
                            // Acknowledged only once as durable as the store demands (settings as of
                            // this write: a store switching to "sync" has that very write uploaded).
                            let node = act.node.clone();
                            let key = crate::ids::ActorKey::Store(act.store.clone());
                            let durability = act.snapshot.settings.durability;
                            fut::wrap_future::<_, Self>(async move {
                                let body = result?;
                                crate::replication::acknowledge(&node, &key, durability).await?;
                                Ok(body)
                            })
                        }),
                ))
            }
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(v: Value, what: &str) -> Result<T, StoreError> {
    serde_json::from_value(v).map_err(|e| StoreError::Invalid(format!("invalid {what}: {e}")))
}

/// Warnings for draft blocks whose code would be refused at publish.
fn draft_warnings(blocks: &[Block]) -> Vec<Value> {
    blocks
        .iter()
        .filter_map(|b| {
            let code = b.code.as_deref()?;
            let report = crate::engine::validate::validate_block(code);
            (!report.errors.is_empty()).then(|| json!({"blockId": b.id, "errors": report.errors}))
        })
        .collect()
}

/// The operator's bounds a write is checked against, taken from the node's settings.
pub(crate) struct Bounds {
    store: StoreId,
    limits: crate::config::StoreLimitSettings,
    render: crate::config::RenderSettings,
}

impl Bounds {
    pub(crate) fn of(node: &Node, store: &StoreId) -> Bounds {
        Bounds { store: store.clone(), limits: node.settings.store_limits.clone(), render: node.settings.render.clone() }
    }

    /// Refuses the transaction's state if it passes the store limits (`store::limits`); else the
    /// snapshot of that state, to publish after the commit.
    pub(crate) fn check(&self, tx: &rusqlite::Connection) -> Result<StoreSnapshot, StoreError> {
        crate::actors::store::limits::check(tx, &self.store, &self.limits).map_err(|e| match e {
            crate::actors::store::limits::LimitError::Exceeded { code, message, details } => StoreError::Limit { code, message, details },
            crate::actors::store::limits::LimitError::Storage(e) => StoreError::Storage(e),
        })
    }

    /// Refuses render limits above the operator's maxima (never clamps silently on write: the
    /// merchant learns what the node allows).
    fn check_render_limits(&self, limits: &crate::render_limits::RenderLimits) -> Result<(), StoreError> {
        let max = self.render.maxima();
        let above = limits.block_cpu_ms > max.block_cpu_ms
            || limits.page_cpu_ms > max.page_cpu_ms
            || limits.heap_mb > max.heap_mb
            || limits.output_kb > max.output_kb;
        if above {
            return Err(StoreError::Limit {
                code: "limit_above_maximum",
                message: "settings.limits may not exceed this node's maxima (details.maximum)".into(),
                details: json!({"maximum": max, "requested": limits}),
            });
        }
        Ok(())
    }
}

/// Runs inside the write transaction; any `Err` rolls the whole transaction back.
fn apply_write(
    tx: &rusqlite::Transaction<'_>,
    op: AdminOp,
    settings: &StoreSettings,
    currency: &Currency,
    bounds: &Bounds,
) -> Result<Written, StoreError> {
    let now = now_ms();
    let visible = |tx: &rusqlite::Transaction<'_>, body: Value| -> Result<Written, StoreError> {
        repo::bump_version(tx)?;
        let snapshot = bounds.check(tx)?;
        Ok(Written { body, published: Some(snapshot) })
    };
    match op {
        AdminOp::PatchSettings(patch) => {
            let patch: SettingsPatch = parse(patch, "settings")?;
            if let Some(limits) = &patch.limits {
                bounds.check_render_limits(limits)?;
            }
            let next = patch.apply(settings.clone()).map_err(StoreError::Invalid)?;
            repo::save_settings(tx, &next, now)?;
            visible(tx, json!({"settings": next}))
        }
        AdminOp::PutTheme(theme) => {
            theme.validate().map_err(StoreError::Invalid)?;
            repo::save_theme(tx, &theme)?;
            visible(tx, json!({"theme": theme, "resolved": theme.resolve(None)}))
        }
        AdminOp::UpsertProducts(items) => {
            let mut products = Vec::with_capacity(items.len());
            for (i, (path_id, raw)) in items.into_iter().enumerate() {
                let input: ProductInput = parse(raw, &format!("product #{i}"))?;
                let p =
                    input.into_product(path_id.as_ref(), currency, now).map_err(|e| StoreError::Invalid(format!("product #{i}: {e}")))?;
                products.push(p);
            }
            let (mut created, mut updated) = (0, 0);
            for p in &products {
                match repo::upsert_product(tx, p)? {
                    UpsertOutcome::Created => created += 1,
                    UpsertOutcome::Updated => updated += 1,
                    UpsertOutcome::HandleTaken => {
                        return Err(StoreError::Conflict(format!("handle {} is used by another product", p.handle)));
                    }
                }
            }
            let body = if products.len() == 1 {
                json!({"product": products[0], "created": created == 1})
            } else {
                json!({"created": created, "updated": updated})
            };
            visible(tx, body)
        }
        AdminOp::DeleteProduct(id) => {
            if !repo::delete_product(tx, &id)? {
                return Err(StoreError::NotFound(format!("product {id} not found")));
            }
            visible(tx, json!({"deleted": id}))
        }
        AdminOp::PutPage { slug, title, description, blocks } => {
            if title.trim().is_empty() || title.chars().count() > 200 || description.chars().count() > 500 {
                return Err(StoreError::Invalid("title must be 1-200 characters, description at most 500".into()));
            }
            let new_blocks = match blocks {
                Some(raw) => {
                    let mut out = Vec::new();
                    for (i, b) in raw.into_iter().enumerate() {
                        let input: BlockInput = parse(b, &format!("block #{i}"))?;
                        out.push(new_block(tx, input).map_err(|e| StoreError::Invalid(format!("block #{i}: {e}")))?);
                    }
                    Some(out)
                }
                None => None,
            };
            repo::upsert_page(tx, &slug, title.trim(), &description, now)?;
            if let Some(blocks) = &new_blocks {
                repo::replace_draft_blocks(tx, &slug, blocks, now)?;
            }
            let page = repo::page_summary(tx, &slug)?;
            let drafts = repo::draft_blocks(tx, &slug)?;
            // Title/description of a published page are frozen per version: not yet visible.
            Ok(Written { body: json!({"page": page, "draft": {"blocks": drafts, "warnings": draft_warnings(&drafts)}}), published: None })
        }
        AdminOp::DeletePage(slug) => {
            let was_live = repo::page_summary(tx, &slug)?.is_some_and(|p| p.published_version.is_some());
            if !repo::delete_page(tx, &slug)? {
                return Err(StoreError::NotFound(format!("page {slug} not found")));
            }
            if was_live {
                visible(tx, json!({"deleted": slug}))
            } else {
                Ok(Written { body: json!({"deleted": slug}), published: None })
            }
        }
        AdminOp::AddBlock { page, block } => {
            require_page(tx, &page)?;
            let input: BlockInput = parse(block, "block")?;
            let position = input.position;
            let block = new_block(tx, input).map_err(StoreError::Invalid)?;
            let mut blocks = repo::draft_blocks(tx, &page)?;
            let at = position.unwrap_or(blocks.len()).min(blocks.len());
            blocks.insert(at, block.clone());
            repo::replace_draft_blocks(tx, &page, &blocks, now)?;
            let warnings = draft_warnings(std::slice::from_ref(&block));
            Ok(Written { body: json!({"block": block, "position": at, "warnings": warnings}), published: None })
        }
        AdminOp::UpdateBlock { page, block_id, block } => {
            require_page(tx, &page)?;
            let input: BlockInput = parse(block, "block")?;
            input.check().map_err(StoreError::Invalid)?;
            let mut blocks = repo::draft_blocks(tx, &page)?;
            let Some(index) = blocks.iter().position(|b| b.id == block_id) else {
                return Err(StoreError::NotFound(format!("block {block_id} not found on page {page}")));
            };
            let mut b = blocks.remove(index);
            if let Some(t) = input.block_type {
                b.block_type = t;
            }
            if let Some(code) = input.code {
                if code != b.code {
                    b.code = code;
                    b.code_version = repo::next_code_version(tx)?;
                }
            }
            if let Some(config) = input.config {
                b.config = config;
            }
            if let Some(v) = input.visibility {
                b.visibility = v;
            }
            if b.block_type == "custom" && b.code.is_none() {
                return Err(StoreError::Invalid("a custom block needs code".into()));
            }
            let at = input.position.unwrap_or(index).min(blocks.len());
            blocks.insert(at, b.clone());
            repo::replace_draft_blocks(tx, &page, &blocks, now)?;
            let warnings = draft_warnings(std::slice::from_ref(&b));
            Ok(Written { body: json!({"block": b, "position": at, "warnings": warnings}), published: None })
        }
        AdminOp::DeleteBlock { page, block_id } => {
            require_page(tx, &page)?;
            let mut blocks = repo::draft_blocks(tx, &page)?;
            let before = blocks.len();
            blocks.retain(|b| b.id != block_id);
            if blocks.len() == before {
                return Err(StoreError::NotFound(format!("block {block_id} not found on page {page}")));
            }
            repo::replace_draft_blocks(tx, &page, &blocks, now)?;
            Ok(Written { body: json!({"deleted": block_id}), published: None })
        }
        AdminOp::Publish(page) => {
            require_page(tx, &page)?;
            let blocks = repo::draft_blocks(tx, &page)?;
            let problems = draft_warnings(&blocks);
            if !problems.is_empty() {
                return Err(StoreError::Invalid(format!("page {page} has blocks that fail validation: {}", Value::Array(problems))));
            }
            let version = repo::publish_version(tx, &page, &blocks, "publish", now)?;
            visible(tx, json!({"page": page, "version": version}))
        }
        AdminOp::Rollback { page, version } => {
            require_page(tx, &page)?;
            let Some(old) = repo::published_page(tx, &page, version)? else {
                return Err(StoreError::NotFound(format!("page {page} has no version {version}")));
            };
            // Rollback publishes a copy as a new version (versions only grow, so caches keyed
            // by version never serve stale HTML) and resets the drafts to it.
            repo::replace_draft_blocks(tx, &page, &old.blocks, now)?;
            let new_version = repo::publish_version(tx, &page, &old.blocks, &format!("rollback:{version}"), now)?;
            visible(tx, json!({"page": page, "version": new_version, "restoredFrom": version}))
        }
        AdminOp::PutPost { slug, post } => {
            let input: PostInput = parse(post, "post")?;
            let post = input.into_post(slug, now).map_err(StoreError::Invalid)?;
            repo::upsert_post(tx, &post, now)?;
            visible(tx, json!({"post": post}))
        }
        AdminOp::DeletePost(slug) => {
            if !repo::delete_post(tx, &slug)? {
                return Err(StoreError::NotFound(format!("post {slug} not found")));
            }
            visible(tx, json!({"deleted": slug}))
        }
        AdminOp::Describe
        | AdminOp::GetSettings
        | AdminOp::GetTheme
        | AdminOp::ListProducts
        | AdminOp::GetProduct(_)
        | AdminOp::ListPages
        | AdminOp::GetPage(_)
        | AdminOp::ListVersions(_)
        | AdminOp::ListPosts => Err(StoreError::Invalid("not a write".into())),
    }
}

fn require_page(tx: &rusqlite::Transaction<'_>, slug: &Slug) -> Result<(), StoreError> {
    repo::page_summary(tx, slug)?.map(|_| ()).ok_or_else(|| StoreError::NotFound(format!("page {slug} not found")))
}

fn new_block(tx: &rusqlite::Transaction<'_>, input: BlockInput) -> Result<Block, String> {
    input.check()?;
    let block_type = input.block_type.ok_or("block type is required")?;
    let code = input.code.flatten();
    if block_type == "custom" && code.is_none() {
        return Err("a custom block needs code".into());
    }
    let code_version = repo::next_code_version(tx).map_err(|e| e.to_string())?;
    Ok(Block {
        id: BlockId::generate(),
        block_type,
        code,
        code_version,
        config: input.config.unwrap_or_else(|| json!({})),
        visibility: input.visibility.unwrap_or_default(),
    })
}
