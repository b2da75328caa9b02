//! The store's live events: after a committed change, what its open product pages and carts
//! must show differently (price, compare-at price, stock, or the product gone), published to
//! the node's event hub under the store's key. Names and descriptions are not sent: a page
//! only ever puts these values in as text.
//!
//! Also the console's events: a page's drafts were saved, so open console previews of it render
//! again. They go under the store's key too (so they reach every node with a console open, as
//! product events do) and only console sockets pass them on: drafts are not for shoppers.

use serde::Serialize;

use crate::ids::{ActorKey, ProductId, Slug, StoreId};
use crate::node::Node;
use crate::render::snapshot::StoreSnapshot;
use crate::store::model::Product;

/// Products per event: a large sync page becomes several events rather than one a page must
/// parse whole, and each stays far below a socket's queue.
const PER_EVENT: usize = 50;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProductChange<'a> {
    id: &'a ProductId,
    #[serde(skip_serializing_if = "Option::is_none")]
    price: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    price_minor: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compare_at_price: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stock: Option<i64>,
    available: bool,
    removed: bool,
}

#[derive(Serialize)]
struct ProductEvent<'a> {
    r#type: &'static str,
    version: u64,
    currency: &'a str,
    products: &'a [ProductChange<'a>],
}

fn shown(p: &Product) -> (i64, Option<i64>, i64) {
    (p.price_minor, p.compare_at_minor, p.stock)
}

/// Publishes what changed between `before` and `after` (a no-op when no price or stock did).
pub(super) fn publish_product_changes(node: &Node, before: &StoreSnapshot, after: &StoreSnapshot) {
    let currency = &after.settings.currency;
    let currency_changed = before.settings.currency.code() != currency.code();
    let mut changes: Vec<ProductChange<'_>> = after
        .products
        .iter()
        .filter(|p| currency_changed || before.product(&p.id).map(shown) != Some(shown(p)))
        // A product new to the catalog is on no open page yet.
        .filter(|p| before.product(&p.id).is_some())
        .map(|p| ProductChange {
            id: &p.id,
            price: Some(currency.format_plain(p.price_minor)),
            price_minor: Some(p.price_minor),
            compare_at_price: p.compare_at_minor.map(|m| currency.format_plain(m)),
            stock: Some(p.stock),
            available: p.stock > 0,
            removed: false,
        })
        .collect();
    changes.extend(before.products.iter().filter(|p| after.product(&p.id).is_none()).map(|p| ProductChange {
        id: &p.id,
        price: None,
        price_minor: None,
        compare_at_price: None,
        stock: None,
        available: false,
        removed: true,
    }));
    if changes.is_empty() {
        return;
    }
    let key = ActorKey::Store(after.store.clone());
    for chunk in changes.chunks(PER_EVENT) {
        let event = ProductEvent { r#type: "product", version: after.version, currency: currency.code(), products: chunk };
        match serde_json::to_string(&event) {
            Ok(text) => node.events.publish(&key, text.into()),
            Err(e) => tracing::warn!(store = %after.store, error = %e, "product event not serialised"),
        }
    }
}

/// How every console event's JSON text begins (its `type` is `draft`).
const CONSOLE_EVENT: &str = "{\"type\":\"draft\"";

/// Whether `event` is for consoles only (shoppers' sockets skip it).
pub fn is_console_event(event: &str) -> bool {
    event.starts_with(CONSOLE_EVENT)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DraftEvent<'a> {
    r#type: &'static str,
    page: &'a Slug,
    store_version: u64,
    /// The id the saving console gave the save, if it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    save_id: Option<&'a str>,
}

/// `page`'s drafts were saved (or reset by a rollback), by the save a console called `save_id`.
pub(super) fn publish_drafts_saved(node: &Node, store: &StoreId, page: &Slug, store_version: u64, save_id: Option<&str>) {
    match serde_json::to_string(&DraftEvent { r#type: "draft", page, store_version, save_id }) {
        Ok(text) => {
            debug_assert!(is_console_event(&text));
            node.events.publish(&ActorKey::Store(store.clone()), text.into());
        }
        Err(e) => tracing::warn!(%store, error = %e, "draft event not serialised"),
    }
}
