//! This shopper's pages: rendering them (a product page also records a view), serving them
//! from the personal page cache while the state they show has not changed, and answering
//! "same as the anonymous page" for a shopper with nothing personal yet.

use std::collections::VecDeque;

use actix::prelude::*;
use serde_json::{json, Value};

use super::{repo, ShopperActor, ShopperError};
use crate::clock::now_ms;
use crate::ids::{ProductId, Slug};
use crate::render::cache::{CachedPage, PersonalPages};
use crate::render::snapshot::{SharedSnapshot, StoreSnapshot};
use crate::render::{self, PageRequest, RenderedPage, Route, ShopperView};
use crate::runtime::Passivating;
use crate::storage::Commit;

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

impl ShopperActor {
    /// One of this shopper's orders as the order page shows it (major units added for blocks).
    fn order_for_page(&self, id: &str, snap: &StoreSnapshot) -> Result<Option<Value>, ShopperError> {
        let Some(db) = &self.db else { return Ok(None) };
        let Some(mut order) = db.read(|c| repo::order(c, id))? else { return Ok(None) };
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
                return fut::ready(Ok(ShopperPage::Personal(RenderedPage {
                    html,
                    store_version: snap.version,
                    failed_blocks: 0,
                    hit_limit: false,
                })))
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
            // runs on a commit thread while the page renders here, against the history as it
            // will be; memory changes, and the page is cached, only once the commit is done.
            let limit = act.node.settings.shopper.history_limit as i64;
            let recorded = views.clone();
            let commit = act.start_write_as(Commit::MayBeLost, move |tx| {
                repo::record_views(tx, &recorded, now_ms(), limit * 4)?;
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
