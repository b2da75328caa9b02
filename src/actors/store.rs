//! The store actor: one per storefront. Owns the store's database (settings, theme, pages and
//! their versions, posts, product cache) and publishes an immutable snapshot after every change.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde_json::{json, Value};

mod feed;
pub mod limits;
mod live;
mod staff;
mod stats;
mod sync;
mod writes;
pub use feed::{ApplyCatalogChanges, FeedAdmin, FeedAdminOp, GetWebhookSecret};
pub use live::is_console_event;
pub use staff::{Staff, StaffOp};
pub use stats::{GetDayStats, RecordDayStats};
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
use crate::store::repo;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Invalid(String),
    /// A block's setting refused by its declaration (`store::block_settings`), with its path.
    #[error("{0}")]
    InvalidSetting(crate::store::block_settings::SettingError),
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
    /// Committed on this node, not acknowledged: the node no longer owns the store.
    #[error("{0}")]
    NotOwner(String),
}

impl From<crate::node::AcknowledgeError> for StoreError {
    fn from(e: crate::node::AcknowledgeError) -> Self {
        match e {
            crate::node::AcknowledgeError::Replication(e) => StoreError::Replication(e),
            e @ crate::node::AcknowledgeError::NotOwner(_) => StoreError::NotOwner(e.to_string()),
        }
    }
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

/// An admin operation. `save`: the id a console gave a draft save, echoed in its `draft`
/// event so that console knows the event is its own (another editor's save has another id).
#[derive(Message, Clone)]
#[rtype(result = "Result<Value, StoreError>")]
pub struct Admin {
    pub op: AdminOp,
    pub save: Option<String>,
}

impl Admin {
    pub fn op(op: AdminOp) -> Admin {
        Admin { op, save: None }
    }
}

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
        let purge = std::sync::Arc::new(crate::cdn::StorePurge::default());
        purge.set_url(feed::load_purge_url(&store, &db));
        let feed = feed::FeedState { webhook_secret: feed::load_webhook_secret(&node, &store, &db), sync_running: None, purge };
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
        let previous = std::mem::replace(&mut self.snapshot, Arc::new(snapshot));
        self.node.publish_snapshot(self.snapshot.clone());
        self.node.announce_version(&self.store, self.snapshot.version);
        if previous.version != self.snapshot.version {
            let cache = &self.node.settings.cache;
            let retry =
                crate::cdn::Retry { attempts: cache.purge_attempts, backoff: std::time::Duration::from_millis(cache.purge_backoff_ms) };
            self.feed.purge.changed(&self.store, previous.version, retry);
        }
        live::publish_product_changes(&self.node, &previous, &self.snapshot);
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

impl crate::runtime::traced::TracedTurns for StoreActor {
    fn turn_trace(&self) -> Option<crate::trace_context::TurnTrace> {
        self.db.as_ref().map(ActorDb::turn_trace)
    }
}

crate::traced_turns!(StoreActor);

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

impl Handler<Admin> for StoreActor {
    type Result = AtomicResponse<Self, Result<Value, StoreError>>;

    fn handle(&mut self, Admin { op, save }: Admin, _: &mut Context<Self>) -> Self::Result {
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
                let fut = async move { db.write(move |tx| writes::apply(tx, write_op, &settings, &currency, &bounds)).await };
                AtomicResponse::new(Box::pin(
                    fut::wrap_future::<_, Self>(fut)
                        .map(move |result, act, _ctx| {
                            let written: writes::Written = result?;
                            if let Some(snapshot) = written.published {
                                act.install_snapshot(snapshot);
                            }
                            if let Some(page) = &written.drafts {
                                live::publish_drafts_saved(&act.node, &act.store, page, act.snapshot.version, save.as_deref());
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
                                node.acknowledge(&key, durability).await?;
                                Ok(body)
                            })
                        }),
                ))
            }
        }
    }
}

/// Warnings for draft blocks whose code would be refused at publish.
pub(crate) fn draft_warnings(blocks: &[Block]) -> Vec<Value> {
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
    pub(crate) fn check_block_limits(&self, limits: &crate::block_limits::RenderLimits) -> Result<(), StoreError> {
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
