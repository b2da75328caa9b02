//! The shopper actor: one per (store, session). Owns the session's database — cart,
//! preferences, browsing history, and its personalised HTML while asleep — and renders the
//! shopper's pages in its own isolate.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use rusqlite::{params, Connection};
use serde_json::{json, Value};

mod orders;
mod pulse;
pub use orders::{Checkout, DeliverOrders, GetOrder, IdempotencyKey};
pub use pulse::ShopperPulse;

use super::registry::Lease;
use super::{alarms, watch_idleness, Passivating};
use crate::clock::now_ms;
use crate::ids::{ActorKey, ProductId, SessionId, Slug, StoreId};
use crate::node::Node;
use crate::render::cache::{CachedPage, PersonalPages};
use crate::render::snapshot::{SharedSnapshot, StoreSnapshot};
use crate::render::{self, PageRequest, RenderError, RenderedPage, Route, ShopperView};
use crate::replication::{self, ReplicationError};
use crate::sqlite::StorageError;
use crate::storage::{ActorDb, Commit};
use crate::store::model::Durability;

const CART_EXPIRY_ALARM: &str = "cart-expiry";

#[derive(Debug, thiserror::Error)]
pub enum ShopperError {
    #[error("product {0} does not exist in this store")]
    NoSuchProduct(ProductId),
    #[error("only {available} of {product} in stock")]
    InsufficientStock { product: ProductId, available: i64, requested: i64 },
    #[error("{0}")]
    Invalid(String),
    #[error("the store is unavailable: {0}")]
    Store(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The write is committed on this node but its store demands `durability = "sync"` and the
    /// upload to object storage failed: not acknowledged, though it will be retried.
    #[error("the change was saved on this node but could not be replicated: {0}")]
    Replication(#[from] ReplicationError),
}

#[derive(Debug, Clone)]
pub enum CartOp {
    Add { product: ProductId, quantity: i64 },
    Set { product: ProductId, quantity: i64 },
    Remove { product: ProductId },
}

/// The cart as the API returns it, already serialised (see [`api_cart`]).
pub type CartJson = Box<serde_json::value::RawValue>;

#[derive(Message, Clone)]
#[rtype(result = "Result<CartJson, ShopperError>")]
pub struct GetCart;

#[derive(Message, Clone)]
#[rtype(result = "Result<CartJson, ShopperError>")]
pub struct ChangeCart(pub CartOp);

#[derive(Message, Clone)]
#[rtype(result = "Result<Value, ShopperError>")]
pub struct SetPreferences(pub BTreeMap<String, String>);

/// Renders a page for this shopper; a product page also records a view.
#[derive(Message, Clone)]
#[rtype(result = "Result<ShopperPage, ShopperError>")]
pub struct RenderForShopper {
    pub request: PageRequest,
    pub search_results: Option<Vec<ProductId>>,
    /// The caller can serve the store's anonymous page (the store's actor is on this node);
    /// otherwise an empty shopper's page is rendered like any other.
    pub anonymous_available: bool,
    /// The product (handle) this visitor's first page showed, before it had a session
    /// (`http::tenant::LANDING_COOKIE`). Recorded as its first view if its history is empty.
    pub landing_view: Option<Slug>,
}

/// What a shopper's page request gets.
#[derive(Debug)]
pub enum ShopperPage {
    Personal(RenderedPage),
    /// The shopper has no state (empty cart, no history, no preferences): the page is the
    /// store's anonymous page for this request, byte for byte — a guest's view is defined as an
    /// empty shopper's — so the caller serves it from the node's shared cache and no isolate
    /// starts for a session that has shown nothing personal yet (most first visits).
    SameAsAnonymous,
}

#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct FireAlarms;

#[derive(Debug, Clone, Copy)]
struct CartLine {
    quantity: i64,
    updated_at: i64,
}

pub struct ShopperActor {
    node: Arc<Node>,
    store: StoreId,
    sid: SessionId,
    db: Option<ActorDb>,
    lease: Lease,
    engine: render::EngineSlot,
    last_active: Instant,
    cart: BTreeMap<ProductId, CartLine>,
    /// Most recent first, no duplicates.
    history: VecDeque<ProductId>,
    preferences: BTreeMap<String, String>,
    /// Bumped (durably) by every change that alters what this shopper's pages show.
    state_version: u64,
    /// The session-token generation that reaches this shopper (bumped by `RotateSession`).
    generation: u64,
    /// Where `state_version` is published for pages served without a message (see `pulse`).
    pulse: Arc<ShopperPulse>,
    /// Request keys of this shopper's pages in the node cache, saved at passivation.
    cached_pages: Vec<String>,
    /// Orders with a delivery attempt in flight (never two attempts of one order at once).
    delivering: std::collections::HashSet<String>,
    /// The due time this instance last wrote to the catalog's alarm index (see
    /// `schedule_cart_expiry`). Only this actor changes its own hint, except FireAlarms.
    alarm_hint_ms: Option<i64>,
    /// The state version the file's saved pages (`html_cache`) were rendered for, and whether
    /// pages were rendered since: passivation rewrites them only when something changed, so a
    /// wake that only reads costs no commit when the actor sleeps again.
    saved_pages_version: u64,
    rendered_since_save: bool,
    /// The cart as blocks see it, for the state and store versions it was serialised at.
    blocks_cart: Option<BlocksCart>,
}

struct BlocksCart {
    /// (`state_version`, store version)
    versions: (u64, u64),
    json: CartJson,
    count: u64,
}

impl ShopperActor {
    pub fn new(node: Arc<Node>, store: StoreId, sid: SessionId, db: ActorDb, lease: Lease, pulse: Arc<ShopperPulse>) -> ShopperActor {
        let mut actor = ShopperActor {
            node,
            store,
            sid,
            db: None,
            lease,
            engine: Default::default(),
            last_active: Instant::now(),
            cart: BTreeMap::new(),
            history: VecDeque::new(),
            preferences: BTreeMap::new(),
            state_version: 0,
            generation: 0,
            pulse,
            cached_pages: Vec::new(),
            delivering: Default::default(),
            alarm_hint_ms: None,
            saved_pages_version: 0,
            rendered_since_save: false,
            blocks_cart: None,
        };
        // No file: nothing was ever written, the state is empty.
        if db.exists() {
            if let Err(e) = db.read(|c| actor.load(c)) {
                tracing::error!(store = %actor.store, error = %e, "shopper state failed to load");
            }
        }
        actor.saved_pages_version = actor.state_version;
        actor.pulse.publish(actor.state_version);
        actor.pulse.publish_generation(actor.generation);
        actor.db = Some(db);
        actor
    }

    fn key(&self) -> ActorKey {
        ActorKey::Shopper(self.store.clone(), self.sid.clone())
    }

    fn load(&mut self, c: &Connection) -> Result<(), StorageError> {
        let mut stmt = c.prepare("SELECT product_id, quantity, updated_at FROM cart_items")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))? {
            let (id, quantity, updated_at) = row?;
            if let Ok(id) = ProductId::parse(&id) {
                self.cart.insert(id, CartLine { quantity, updated_at });
            }
        }
        let limit = self.node.settings.shopper.history_limit as i64;
        let mut stmt = c.prepare("SELECT product_id FROM history ORDER BY seq DESC LIMIT ?1")?;
        for row in stmt.query_map([limit], |r| r.get::<_, String>(0))? {
            if let Ok(id) = ProductId::parse(&row?) {
                if !self.history.contains(&id) {
                    self.history.push_back(id);
                }
            }
        }
        let mut stmt = c.prepare("SELECT key, value FROM preferences")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (k, v) = row?;
            self.preferences.insert(k, v);
        }
        self.state_version = c
            .query_row("SELECT value FROM meta WHERE key = 'state_version'", [], |r| r.get::<_, String>(0))
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        self.generation = c
            .query_row("SELECT value FROM meta WHERE key = 'session_generation'", [], |r| r.get::<_, String>(0))
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        // Pages rendered before the last passivation are still good if nothing changed since.
        let ttl = self.node.settings.cache.personal_html_ttl_secs as i64 * 1000;
        let mut stmt = c.prepare("SELECT cache_key, html, rendered_ms FROM html_cache")?;
        let shopper = self.key();
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))? {
            let (key, html, rendered_ms) = row?;
            if now_ms() - rendered_ms < ttl {
                if let Some((versions, request_key)) = key.split_once('#') {
                    if let Some((store_v, state_v)) = versions.split_once('.') {
                        if let (Ok(store_version), Ok(state_version)) = (store_v.parse(), state_v.parse()) {
                            let page = CachedPage { html: html.into_bytes().into(), store_version, state_version, rendered_ms };
                            self.node.personal_pages.insert(PersonalPages::key(&shopper, request_key), page);
                            self.cached_pages.push(request_key.to_string());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn touch(&mut self) {
        self.last_active = Instant::now();
    }

    /// Records a change of what this shopper's pages show; called in the turn that applies
    /// the change, before it is acknowledged.
    fn state_changed(&mut self) {
        self.state_version += 1;
        self.pulse.publish(self.state_version);
    }

    /// Nothing this shopper did shows on a page yet (see [`ShopperPage::SameAsAnonymous`]).
    fn is_pristine(&self) -> bool {
        self.cart.is_empty() && self.history.is_empty() && self.preferences.is_empty()
    }

    /// The cart as the API returns it: amounts as decimal strings and integer minor units.
    fn cart_view(&self, snap: &StoreSnapshot) -> Result<CartJson, ShopperError> {
        api_cart(&self.cart, snap)
    }

    /// The cart as blocks see it, and its item count, kept between renders while neither this
    /// shopper's state nor the store changes (every change to the cart bumps `state_version`).
    fn cart_for_blocks(&mut self, snap: &StoreSnapshot) -> Result<(CartJson, u64), ShopperError> {
        let current = (self.state_version, snap.version);
        if let Some(kept) = self.blocks_cart.as_ref().filter(|kept| kept.versions == current) {
            return Ok((kept.json.clone(), kept.count));
        }
        // The checkout form's idempotency key: the same for every render of one cart state (a
        // double click places one order), new after any change (an order empties the cart).
        // An empty cart has nothing to check out, and no key: it renders like a guest's.
        let checkout_key = (!self.cart.is_empty()).then(|| {
            let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("{}#{}", self.key(), self.state_version));
            format!("co-{}", hex::encode(&digest[..12]))
        });
        let (json, count) = blocks_cart(&self.cart, snap, checkout_key)?;
        self.blocks_cart = Some(BlocksCart { versions: current, json: json.clone(), count });
        Ok((json, count))
    }

    /// One of this shopper's orders as the order page shows it (major units added for blocks).
    fn order_for_page(&self, id: &str, snap: &StoreSnapshot) -> Result<Option<Value>, ShopperError> {
        let Some(db) = &self.db else { return Ok(None) };
        let Some(mut order) = db.read(|c| orders::order_json(c, id))? else { return Ok(None) };
        let currency = &snap.settings.currency;
        let major = |v: &Value| json!(currency.to_major(v.as_i64().unwrap_or(0)));
        order["subtotal"] = major(&order["subtotalMinor"]);
        if let Some(lines) = order["lines"].as_array_mut() {
            for line in lines {
                line["unitPrice"] = major(&line["unitPriceMinor"]);
                line["lineTotal"] = major(&line["lineTotalMinor"]);
            }
        }
        Ok(Some(order))
    }

    fn view(&mut self, snap: &StoreSnapshot, search_results: Option<Vec<ProductId>>) -> Result<ShopperView, ShopperError> {
        let (cart, cart_count) = self.cart_for_blocks(snap)?;
        Ok(ShopperView {
            cart,
            cart_count,
            recently_viewed: self.history.iter().cloned().collect(),
            customer: self.preferences.get("customer").is_some_and(|v| v == "true"),
            locale: self.preferences.get("locale").cloned(),
            search_results,
            order: None,
        })
    }

    /// Runs a durable write for this shopper: `f` runs in one transaction with the state
    /// version bump; the turn waits for the commit.
    fn write<T, F>(&self, f: F) -> futures::future::LocalBoxFuture<'static, Result<T, ShopperError>>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, ShopperError> + Send + 'static,
    {
        self.start_write_as(Commit::Durable, f)
    }

    /// A write with the given durability, started now: the commit runs on the blocking pool
    /// while the turn goes on (see [`ActorDb::start_write_as`]). Without a connection (the
    /// actor is closing) the future fails and nothing is written.
    fn start_write_as<T, F>(&self, kind: Commit, f: F) -> futures::future::LocalBoxFuture<'static, Result<T, ShopperError>>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, ShopperError> + Send + 'static,
    {
        let Some(db) = self.db.clone() else {
            return Box::pin(async { Err(ShopperError::Store("shopper actor is closing".into())) });
        };
        Box::pin(db.start_write_as(kind, with_state_version(self.state_version + 1, f)))
    }

    fn snapshot_future(&self) -> impl std::future::Future<Output = Result<SharedSnapshot, ShopperError>> + 'static {
        let node = self.node.clone();
        let store = self.store.clone();
        async move { node.snapshot(&store).await.map_err(|e| ShopperError::Store(e.to_string())) }
    }

    /// Holds the turn after a committed write until it is as durable as the store demands
    /// (`durability = "sync"`: its snapshot is in object storage). Memory has already been
    /// updated to match the local commit, which stands even when this fails. `durability` is
    /// looked up from the store's snapshot when not given; if that fails, replication (when
    /// configured) is the safe assumption.
    fn acknowledged<T: 'static>(
        &self,
        result: Result<T, ShopperError>,
        durability: Option<Durability>,
    ) -> impl ActorFuture<Self, Output = Result<T, ShopperError>> + 'static {
        let node = self.node.clone();
        let key = self.key();
        let store = self.store.clone();
        fut::wrap_future::<_, Self>(async move {
            let value = result?;
            let durability = match durability {
                Some(d) => d,
                None => match node.snapshot(&store).await {
                    Ok(snap) => snap.settings.durability,
                    Err(_) if node.replicator.is_some() => Durability::Sync,
                    Err(_) => Durability::Async,
                },
            };
            replication::acknowledge(&node, &key, durability).await?;
            Ok(value)
        })
    }

    /// Persists the cart-expiry alarm: the node's hint first, then the actor's own row.
    /// `known_hint` is what this instance last wrote to the index. The index keeps the earliest
    /// time it is given and a cart change only moves expiry later, so the write is skipped when
    /// an earlier hint is known to be there: the catalog is one SQLite file for the whole node,
    /// and writing it on every cart change serialised all add-to-cart commits behind its write
    /// lock (found by the W3 profile). Returns the hint now in the index.
    fn schedule_cart_expiry(
        node: &Arc<Node>,
        key: &ActorKey,
        tx: &rusqlite::Transaction<'_>,
        known_hint: Option<i64>,
    ) -> Result<i64, StorageError> {
        let due = now_ms() + node.settings.shopper.cart_idle_ttl_secs as i64 * 1000;
        let hint = match known_hint {
            Some(hint) if hint <= due => hint,
            _ => {
                node.catalog.set_alarm_hint(key, due)?;
                due
            }
        };
        alarms::set(tx, CART_EXPIRY_ALARM, due)?;
        Ok(hint)
    }
}

/// A cart as JSON, with amounts as `M`: numbers in major units for blocks
/// (`helpers.formatPrice`), decimal strings for the API. Serialised straight from typed rows, no
/// `Value` tree built first (that tree was a fifth of W3's CPU with a 24-line cart, and ~3 % of
/// W1b's). Fields in alphabetical order, as the `Value` trees this replaced had them.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct CartBody<'a, M> {
    /// Blocks only: the checkout form's idempotency key (see [`ShopperActor::cart_for_blocks`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    checkout_key: Option<String>,
    count: i64,
    currency: &'a str,
    items: Vec<CartLineBody<'a, M>>,
    subtotal: M,
    subtotal_minor: i64,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum CartLineBody<'a, M> {
    InCatalog(CartProductBody<'a, M>),
    /// A product removed from the catalog stays in the cart, shown as unavailable and left
    /// out of the totals, until the shopper removes it.
    Removed(CartRemovedBody<'a>),
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct CartProductBody<'a, M> {
    available: bool,
    handle: &'a str,
    image: Option<&'a String>,
    line_total: M,
    line_total_minor: i64,
    price: f64,
    price_minor: i64,
    product_id: &'a ProductId,
    quantity: i64,
    stock: i64,
    title: &'a str,
    unit_price: M,
    unit_price_minor: i64,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct CartRemovedBody<'a> {
    available: bool,
    product_id: &'a ProductId,
    quantity: i64,
    removed: bool,
}

fn cart_body<'a, M>(cart: &'a BTreeMap<ProductId, CartLine>, snap: &'a StoreSnapshot, money: impl Fn(i64) -> M) -> CartBody<'a, M> {
    let currency = &snap.settings.currency;
    let (mut count, mut subtotal) = (0i64, 0i64);
    let items = cart
        .iter()
        .map(|(id, line)| match snap.product(id) {
            Some(p) => {
                let line_total = p.price_minor.saturating_mul(line.quantity);
                count += line.quantity;
                subtotal = subtotal.saturating_add(line_total);
                CartLineBody::InCatalog(CartProductBody {
                    available: p.stock >= line.quantity,
                    handle: p.handle.as_str(),
                    image: p.images.first(),
                    line_total: money(line_total),
                    line_total_minor: line_total,
                    price: currency.to_major(p.price_minor),
                    price_minor: p.price_minor,
                    product_id: id,
                    quantity: line.quantity,
                    stock: p.stock,
                    title: &p.title,
                    unit_price: money(p.price_minor),
                    unit_price_minor: p.price_minor,
                })
            }
            None => CartLineBody::Removed(CartRemovedBody { available: false, product_id: id, quantity: line.quantity, removed: true }),
        })
        .collect();
    CartBody { checkout_key: None, count, currency: currency.code(), items, subtotal: money(subtotal), subtotal_minor: subtotal }
}

fn to_json<T: serde::Serialize>(body: &T) -> Result<CartJson, ShopperError> {
    serde_json::value::to_raw_value(body).map_err(|e| ShopperError::Storage(StorageError::Json(e)))
}

/// The cart as the API returns it: amounts as decimal strings and integer minor units.
fn api_cart(cart: &BTreeMap<ProductId, CartLine>, snap: &StoreSnapshot) -> Result<CartJson, ShopperError> {
    let currency = &snap.settings.currency;
    to_json(&cart_body(cart, snap, |minor| currency.format_plain(minor)))
}

/// A cart as blocks see it, and its item count. Blocks get amounts in major units as numbers.
fn blocks_cart(
    cart: &BTreeMap<ProductId, CartLine>,
    snap: &StoreSnapshot,
    checkout_key: Option<String>,
) -> Result<(CartJson, u64), ShopperError> {
    let currency = &snap.settings.currency;
    let body = CartBody { checkout_key, ..cart_body(cart, snap, |minor| currency.to_major(minor)) };
    Ok((to_json(&body)?, body.count.max(0) as u64))
}

/// The cart blocks see for a shopper with nothing in it: what guests' pages are rendered with,
/// so a guest's page and an empty shopper's are the same bytes.
pub fn empty_cart_for_blocks(snap: &StoreSnapshot) -> Result<CartJson, ShopperError> {
    blocks_cart(&BTreeMap::new(), snap, None).map(|(json, _)| json)
}

impl Handler<super::Passivate> for ShopperActor {
    type Result = ();
    fn handle(&mut self, _: super::Passivate, ctx: &mut Context<Self>) {
        super::passivate_now(self, ctx);
    }
}

impl Handler<super::isolate_budget::ReleaseIsolate> for ShopperActor {
    type Result = ();
    fn handle(&mut self, msg: super::isolate_budget::ReleaseIsolate, _: &mut Context<Self>) {
        super::release_evicted_isolate(self, msg.ticket);
    }
}

impl Passivating for ShopperActor {
    fn node(&self) -> &Arc<Node> {
        &self.node
    }
    fn lease(&mut self) -> &mut Lease {
        &mut self.lease
    }
    fn last_active(&self) -> Instant {
        self.pulse.last_hit().map_or(self.last_active, |hit| hit.max(self.last_active))
    }
    fn engine(&mut self) -> &mut render::EngineSlot {
        &mut self.engine
    }
    /// A shopper's state is all in memory; only writes (and order pages) need the file.
    fn closable_db(&self) -> Option<ActorDb> {
        self.db.clone()
    }
}

impl Actor for ShopperActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.engine = render::EngineSlot::owned_by(ctx.address().downgrade().recipient());
        let actors = &self.node.settings.actors;
        watch_idleness(ctx, Duration::from_secs(actors.idle_timeout_secs), Duration::from_secs(actors.isolate_idle_secs));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.engine.drop_engine();
        if let Some(db) = self.db.take().filter(|db| db.exists()) {
            // Keep the personalised pages across the sleep; losing them only costs a render, so
            // the commit does not stall this arbiter thread on an fsync.
            let shopper = self.key();
            let pages: Vec<_> = self
                .cached_pages
                .iter()
                .filter_map(|k| self.node.personal_pages.peek(&PersonalPages::key(&shopper, k)).map(|p| (k, p)))
                .filter(|(_, p)| p.state_version == self.state_version)
                .collect();
            let changed = self.rendered_since_save || self.saved_pages_version != self.state_version;
            if changed && (!pages.is_empty() || !self.cached_pages.is_empty()) {
                let saved = db.write_now_as(Commit::MayBeLost, |tx| -> Result<(), StorageError> {
                    tx.execute("DELETE FROM html_cache", [])?;
                    for (request_key, page) in &pages {
                        tx.execute(
                            "INSERT INTO html_cache (cache_key, html, rendered_ms) VALUES (?1, ?2, ?3)",
                            params![
                                format!("{}.{}#{}", page.store_version, page.state_version, request_key),
                                std::str::from_utf8(&page.html).unwrap_or_default(),
                                page.rendered_ms
                            ],
                        )?;
                    }
                    Ok(())
                });
                if let Err(e) = saved {
                    tracing::warn!(error = %e, "personalised pages not saved at passivation");
                }
            }
        }
        let node = self.node.clone();
        // The file is closed: upload it now if it has unreplicated commits.
        node.actor_passivated(self.key());
        node.registry.finish_passivation(&mut self.lease);
    }
}

/// The session-token generation that currently reaches this shopper.
#[derive(Message, Clone)]
#[rtype(result = "u64")]
pub struct SessionGeneration;

impl Handler<SessionGeneration> for ShopperActor {
    type Result = u64;
    fn handle(&mut self, _: SessionGeneration, _: &mut Context<Self>) -> u64 {
        self.generation
    }
}

/// Moves this shopper to the next session-token generation (checkout): tokens of earlier
/// generations stop reaching it once this is acknowledged. Answers the new generation.
#[derive(Message, Clone)]
#[rtype(result = "Result<u64, ShopperError>")]
pub struct RotateSession;

impl Handler<RotateSession> for ShopperActor {
    type Result = AtomicResponse<Self, Result<u64, ShopperError>>;
    fn handle(&mut self, _: RotateSession, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        let next = self.generation + 1;
        let commit = self.write(move |tx| {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('session_generation', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [next.to_string()],
            )
            .map_err(StorageError::from)?;
            Ok(())
        });
        AtomicResponse::new(Box::pin(
            fut::wrap_future::<_, Self>(commit)
                .map(move |committed, act, _| {
                    committed?;
                    act.generation = next;
                    act.pulse.publish_generation(next);
                    act.state_changed();
                    Ok(next)
                })
                .then(|result, act, _| act.acknowledged(result, None)),
        ))
    }
}

impl Handler<GetCart> for ShopperActor {
    type Result = AtomicResponse<Self, Result<CartJson, ShopperError>>;
    fn handle(&mut self, _: GetCart, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(self.snapshot_future()).map(|snap, act, _| {
            let snap = snap?;
            act.cart_view(&snap)
        })))
    }
}

impl Handler<ChangeCart> for ShopperActor {
    type Result = AtomicResponse<Self, Result<CartJson, ShopperError>>;

    fn handle(&mut self, ChangeCart(op): ChangeCart, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        let snapshot = self.snapshot_future();
        // Check against the catalog, then commit, then apply to memory: memory never runs
        // ahead of the disk.
        let plan =
            fut::wrap_future::<_, Self>(snapshot).map(move |snap, act, _| -> Result<(SharedSnapshot, ProductId, i64), ShopperError> {
                let snap = snap?;
                let max = act.node.settings.shopper.max_quantity as i64;
                let current = |p: &ProductId| act.cart.get(p).map(|l| l.quantity).unwrap_or(0);
                let (product, quantity) = match &op {
                    CartOp::Add { product, quantity } => {
                        if *quantity < 1 {
                            return Err(ShopperError::Invalid("quantity must be at least 1".into()));
                        }
                        (product.clone(), current(product).saturating_add(*quantity))
                    }
                    CartOp::Set { product, quantity } => {
                        if *quantity < 0 {
                            return Err(ShopperError::Invalid("quantity must not be negative".into()));
                        }
                        if !act.cart.contains_key(product) && *quantity > 0 && snap.product(product).is_none() {
                            return Err(ShopperError::NoSuchProduct(product.clone()));
                        }
                        (product.clone(), *quantity)
                    }
                    CartOp::Remove { product } => (product.clone(), 0),
                };
                if quantity > 0 {
                    let p = snap.product(&product).ok_or_else(|| ShopperError::NoSuchProduct(product.clone()))?;
                    if quantity > max {
                        return Err(ShopperError::Invalid(format!("at most {max} of one product per cart")));
                    }
                    if quantity > p.stock {
                        return Err(ShopperError::InsufficientStock { product, available: p.stock, requested: quantity });
                    }
                } else if !act.cart.contains_key(&product) {
                    return Err(ShopperError::Invalid(format!("product {product} is not in the cart")));
                }
                Ok((snap, product, quantity))
            });
        AtomicResponse::new(Box::pin(plan.then(|planned, act, _| match planned {
            Err(e) => fut::ready(Err(e)).boxed_local(),
            Ok((snap, product, quantity)) => {
                let node = act.node.clone();
                let key = act.key();
                let (p, now) = (product.clone(), now_ms());
                let known_hint = act.alarm_hint_ms;
                let commit = act.write(move |tx| {
                    if quantity == 0 {
                        tx.prepare_cached("DELETE FROM cart_items WHERE product_id = ?1")
                            .and_then(|mut delete| delete.execute([p.as_str()]))
                            .map_err(StorageError::from)?;
                    } else {
                        tx.prepare_cached(
                            "INSERT INTO cart_items (product_id, quantity, added_at, updated_at) VALUES (?1, ?2, ?3, ?3)
                             ON CONFLICT(product_id) DO UPDATE SET quantity = excluded.quantity, updated_at = excluded.updated_at",
                        )
                        .and_then(|mut upsert| upsert.execute(params![p.as_str(), quantity, now]))
                        .map_err(StorageError::from)?;
                    }
                    Ok(ShopperActor::schedule_cart_expiry(&node, &key, tx, known_hint)?)
                });
                let durability = snap.settings.durability;
                fut::wrap_future::<_, Self>(commit)
                    .map(move |committed, act, _| {
                        act.alarm_hint_ms = Some(committed?);
                        if quantity == 0 {
                            act.cart.remove(&product);
                        } else {
                            act.cart.insert(product, CartLine { quantity, updated_at: now });
                        }
                        act.state_changed();
                        act.cart_view(&snap)
                    })
                    .then(move |result, act, _| act.acknowledged(result, Some(durability)))
                    .boxed_local()
            }
        })))
    }
}

impl Handler<SetPreferences> for ShopperActor {
    type Result = AtomicResponse<Self, Result<Value, ShopperError>>;
    fn handle(&mut self, SetPreferences(prefs): SetPreferences, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        let to_write = prefs.clone();
        let fut = self.write(move |tx| {
            for (k, v) in &to_write {
                tx.execute(
                    "INSERT INTO preferences (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    params![k, v],
                )
                .map_err(StorageError::from)?;
            }
            Ok(())
        });
        AtomicResponse::new(Box::pin(
            fut::wrap_future::<_, Self>(fut)
                .map(move |r, act, _| {
                    r?;
                    act.preferences.extend(prefs);
                    act.state_changed();
                    Ok(json!({"preferences": act.preferences}))
                })
                .then(|result, act, _| act.acknowledged(result, None)),
        ))
    }
}

/// `f`, then the shopper's state version recorded as `next_version` in the same transaction.
fn with_state_version<T, F>(next_version: u64, f: F) -> impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, ShopperError> + Send + 'static
where
    T: Send + 'static,
    F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, ShopperError> + Send + 'static,
{
    move |tx| {
        let value = f(tx)?;
        tx.prepare_cached(
            "INSERT INTO meta (key, value) VALUES ('state_version', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )
        .and_then(|mut insert| insert.execute([next_version.to_string()]))
        .map_err(StorageError::from)?;
        Ok(value)
    }
}

/// Puts `id` first in a browsing history, once, keeping the `limit` most recent.
fn remember_view(history: &mut VecDeque<ProductId>, id: ProductId, limit: usize) {
    history.retain(|h| h != &id);
    history.push_front(id);
    history.truncate(limit);
}

impl ShopperActor {
    /// Renders a page for this shopper, as it is or with `pending_views` (oldest first) added
    /// to its history (views whose commit is under way). The blocks run on a render thread
    /// while this turn waits.
    fn render_for(
        &mut self,
        snap: &SharedSnapshot,
        msg: &RenderForShopper,
        pending_views: &[ProductId],
    ) -> PendingShopperPage<RenderedPage> {
        let view = match self.view_for(snap, msg, pending_views) {
            Ok(view) => view,
            Err(e) => return fut::ready(Err(e)).boxed_local(),
        };
        let renderer = self.node.renderer.clone();
        render::render_page(&renderer, <Self as Passivating>::engine, snap, &msg.request, &view, None)
            .map(|rendered, _, _| rendered.map_err(ShopperError::from))
            .boxed_local()
    }

    fn view_for(&mut self, snap: &StoreSnapshot, msg: &RenderForShopper, pending_views: &[ProductId]) -> Result<ShopperView, ShopperError> {
        let mut view = self.view(snap, msg.search_results.clone())?;
        if !pending_views.is_empty() {
            let mut history = self.history.clone();
            for id in pending_views {
                remember_view(&mut history, id.clone(), self.node.settings.shopper.history_limit);
            }
            view.recently_viewed = history.into();
        }
        if let Route::Order(id) = &msg.request.route {
            view.order = self.order_for_page(id, snap)?;
        }
        Ok(view)
    }

    /// Search results and an order's delivery status change without a version bump.
    fn is_cacheable(msg: &RenderForShopper) -> bool {
        msg.search_results.is_none() && !matches!(msg.request.route, Route::Order(_))
    }

    /// Keeps a page rendered for the current state version in the personal HTML cache.
    fn cache_page(&mut self, msg: &RenderForShopper, page: &RenderedPage) {
        if !Self::is_cacheable(msg) || page.failed_blocks != 0 {
            return;
        }
        let request_key = msg.request.cache_key();
        let cache_key = PersonalPages::key(&self.key(), &request_key);
        if !self.cached_pages.contains(&request_key) && self.cached_pages.len() < 32 {
            self.cached_pages.push(request_key);
        }
        let cached = CachedPage {
            html: page.html.clone(),
            store_version: page.store_version,
            state_version: self.state_version,
            rendered_ms: now_ms(),
        };
        self.node.personal_pages.insert(cache_key, cached);
        self.rendered_since_save = true;
    }

    /// The page for the shopper's current state: the anonymous one, a cached one, or rendered.
    fn page_for(&mut self, snap: &SharedSnapshot, msg: RenderForShopper) -> PendingShopperPage<ShopperPage> {
        if msg.anonymous_available && self.is_pristine() && !matches!(msg.request.route, Route::Order(_)) {
            return fut::ready(Ok(ShopperPage::SameAsAnonymous)).boxed_local();
        }
        if Self::is_cacheable(&msg) {
            let cache_key = PersonalPages::key(&self.key(), &msg.request.cache_key());
            if let Some(html) = self.node.personal_pages.get(&cache_key, snap.version, self.state_version) {
                return fut::ready(Ok(ShopperPage::Personal(RenderedPage { html, store_version: snap.version, failed_blocks: 0 })))
                    .boxed_local();
            }
        }
        self.render_for(snap, &msg, &[])
            .map(move |page, act, _| {
                let page = page?;
                act.cache_page(&msg, &page);
                Ok(ShopperPage::Personal(page))
            })
            .boxed_local()
    }
}

/// What a shopper's turn awaits while its page renders.
type PendingShopperPage<T> = actix::fut::future::LocalBoxActorFuture<ShopperActor, Result<T, ShopperError>>;

impl Handler<RenderForShopper> for ShopperActor {
    type Result = AtomicResponse<Self, Result<ShopperPage, ShopperError>>;

    fn handle(&mut self, msg: RenderForShopper, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        let snapshot = self.snapshot_future();
        AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(snapshot).then(move |snap, act, _| {
            let snap = match snap {
                Ok(s) => s,
                Err(e) => return fut::ready(Err(e)).boxed_local(),
            };
            // Views to record, oldest first: the product a cookie-less first visit landed on
            // (only into an empty history: the cookie may arrive more than once), then this
            // page's product unless it is already the latest view.
            let mut views: Vec<ProductId> = Vec::new();
            let landed = msg.landing_view.as_ref().filter(|_| act.history.is_empty()).and_then(|h| snap.product_by_handle(h.as_str()));
            if let Some(product) = landed {
                views.push(product.id.clone());
            }
            if let Route::Product(handle) = &msg.request.route {
                if let Some(product) = snap.product_by_handle(handle.as_str()) {
                    if views.last().or(act.history.front()) != Some(&product.id) {
                        views.push(product.id.clone());
                    }
                }
            }
            if views.is_empty() {
                return act.page_for(&snap, msg);
            }
            // A product view is recorded without waiting for the disk: a page view is not a
            // write anyone was told succeeded, and an fsync per product page doubled the cost of
            // browsing. A power loss can drop the last views; the next durable write (a cart
            // change) persists them with it. The commit (for a new shopper: creating its file)
            // runs on the blocking pool while the page renders here, against the history as it
            // will be; memory changes, and the page is cached, only once the commit is done.
            let limit = act.node.settings.shopper.history_limit as i64;
            let recorded = views.clone();
            let commit = act.start_write_as(Commit::MayBeLost, move |tx| {
                let at = now_ms();
                for id in &recorded {
                    tx.execute("INSERT INTO history (product_id, viewed_at) VALUES (?1, ?2)", params![id.as_str(), at])
                        .map_err(StorageError::from)?;
                }
                tx.execute("DELETE FROM history WHERE seq NOT IN (SELECT seq FROM history ORDER BY seq DESC LIMIT ?1)", [limit * 4])
                    .map_err(StorageError::from)?;
                Ok(())
            });
            act.render_for(&snap, &msg, &views)
                .then(move |rendered, _, _| {
                    fut::wrap_future::<_, Self>(commit).then(move |committed, act: &mut Self, _| {
                        match committed {
                            // No room to record the view (a full disk, or a new shopper past its
                            // store's limit): a read goes on, the page is served as the
                            // shopper's state stands.
                            Err(ShopperError::Storage(e)) if e.is_capacity() => {
                                tracing::debug!(key = %act.key(), error = %e, "product view not recorded");
                                return act.page_for(&snap, msg);
                            }
                            Err(e) => return fut::ready(Err(e)).boxed_local(),
                            Ok(()) => {}
                        }
                        for id in views {
                            remember_view(&mut act.history, id, act.node.settings.shopper.history_limit);
                        }
                        act.state_changed();
                        let page = rendered.map(|page| {
                            act.cache_page(&msg, &page);
                            ShopperPage::Personal(page)
                        });
                        fut::ready(page).boxed_local()
                    })
                })
                .boxed_local()
        })))
    }
}

impl Handler<FireAlarms> for ShopperActor {
    type Result = AtomicResponse<Self, ()>;
    fn handle(&mut self, _: FireAlarms, _: &mut Context<Self>) -> Self::Result {
        // The hint is replaced below: forget what this instance knew of it.
        self.alarm_hint_ms = None;
        // No file (never written, or deleted by the sweeper): no alarm is set, and writing the
        // alarm table would create a file for nothing.
        if self.db.as_ref().is_some_and(|db| !db.exists()) {
            let (node, key) = (self.node.clone(), self.key());
            return AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(async move {
                let _ = tokio::task::spawn_blocking(move || node.catalog.reset_alarm_hint(&key, None)).await;
            })));
        }
        let ttl_ms = self.node.settings.shopper.cart_idle_ttl_secs as i64 * 1000;
        let last_cart_change = self.cart.values().map(|l| l.updated_at).max();
        let expire = last_cart_change.is_some_and(|t| now_ms() - t >= ttl_ms);
        let node = self.node.clone();
        let key = self.key();
        let fut = self.write(move |tx| {
            let due = alarms::take_due(tx, now_ms())?;
            let cleared = expire && due.iter().any(|n| n == CART_EXPIRY_ALARM);
            if cleared {
                tx.execute("DELETE FROM cart_items", []).map_err(StorageError::from)?;
            } else if last_cart_change.is_some() && due.iter().any(|n| n == CART_EXPIRY_ALARM) {
                // Fired early (the hint is conservative): wait for the real due time.
                let due = last_cart_change.unwrap_or(0) + ttl_ms;
                alarms::set(tx, CART_EXPIRY_ALARM, due)?;
            }
            let next = alarms::next_due(tx)?;
            node.catalog.reset_alarm_hint(&key, next)?;
            Ok((cleared, due.iter().any(|n| n == orders::DELIVERY_ALARM)))
        });
        AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(fut).map(|r, act, ctx| match r {
            Ok((cleared, deliver)) => {
                if deliver {
                    // Pending orders: retry now (the handler re-arms the alarm from the outbox).
                    ctx.notify(DeliverOrders);
                }
                if !cleared {
                    return;
                }
                act.cart.clear();
                act.state_changed();
                tracing::debug!(key = %act.key(), "idle cart expired");
                crate::metrics::incr("vitrina_carts_expired_total", &[]);
            }
            Err(e) => tracing::warn!(key = %act.key(), error = %e, "alarm handling failed"),
        })))
    }
}
