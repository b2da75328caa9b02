//! The cart as JSON: the API's view (amounts as decimal strings) and the view blocks render
//! (amounts as numbers in major units). Built from a shopper's cart lines and the store's
//! snapshot; the shopper actor renders its own cart with these, and the store actor renders
//! guests' pages (and previews) with [`empty_cart_for_blocks`], so a guest's page and an empty
//! shopper's are the same bytes without the store actor knowing the shopper actor.

use serde_json::value::RawValue;

use crate::ids::ProductId;
use crate::render::snapshot::StoreSnapshot;

/// A cart already serialised, as the API returns it or as blocks see it.
pub type CartJson = Box<RawValue>;

/// A cart as JSON, with amounts as `M`: numbers in major units for blocks
/// (`helpers.formatPrice`), decimal strings for the API. Serialised straight from typed rows, no
/// `Value` tree built first (that tree was a large share of a cart write's CPU). Fields in
/// alphabetical order, as the `Value` trees this replaced had them.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct CartBody<'a, M> {
    /// Blocks only: the checkout form's idempotency key (chosen by the shopper actor).
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

/// `lines`: (product, quantity) in the order the cart lists them.
fn cart_body<'a, M>(
    lines: impl IntoIterator<Item = (&'a ProductId, i64)>,
    snap: &'a StoreSnapshot,
    money: impl Fn(i64) -> M,
) -> CartBody<'a, M> {
    let currency = &snap.settings.currency;
    let (mut count, mut subtotal) = (0i64, 0i64);
    let items = lines
        .into_iter()
        .map(|(id, quantity)| match snap.product(id) {
            Some(p) => {
                let line_total = p.price_minor.saturating_mul(quantity);
                count += quantity;
                subtotal = subtotal.saturating_add(line_total);
                CartLineBody::InCatalog(CartProductBody {
                    available: p.stock >= quantity,
                    handle: p.handle.as_str(),
                    image: p.images.first(),
                    line_total: money(line_total),
                    line_total_minor: line_total,
                    price: currency.to_major(p.price_minor),
                    price_minor: p.price_minor,
                    product_id: id,
                    quantity,
                    stock: p.stock,
                    title: &p.title,
                    unit_price: money(p.price_minor),
                    unit_price_minor: p.price_minor,
                })
            }
            None => CartLineBody::Removed(CartRemovedBody { available: false, product_id: id, quantity, removed: true }),
        })
        .collect();
    CartBody { checkout_key: None, count, currency: currency.code(), items, subtotal: money(subtotal), subtotal_minor: subtotal }
}

/// The cart as the API returns it (amounts as decimal strings and integer minor units), and
/// its item count.
pub fn api_cart<'a>(lines: impl IntoIterator<Item = (&'a ProductId, i64)>, snap: &'a StoreSnapshot) -> serde_json::Result<(CartJson, i64)> {
    let currency = &snap.settings.currency;
    let body = cart_body(lines, snap, |minor| currency.format_plain(minor));
    Ok((serde_json::value::to_raw_value(&body)?, body.count))
}

/// A cart as blocks see it, and its item count. Blocks get amounts in major units as numbers.
pub fn blocks_cart<'a>(
    lines: impl IntoIterator<Item = (&'a ProductId, i64)>,
    snap: &'a StoreSnapshot,
    checkout_key: Option<String>,
) -> serde_json::Result<(CartJson, u64)> {
    let currency = &snap.settings.currency;
    let body = CartBody { checkout_key, ..cart_body(lines, snap, |minor| currency.to_major(minor)) };
    Ok((serde_json::value::to_raw_value(&body)?, body.count.max(0) as u64))
}

/// The cart blocks see for a shopper with nothing in it: what guests' pages are rendered with,
/// so a guest's page and an empty shopper's are the same bytes.
pub fn empty_cart_for_blocks(snap: &StoreSnapshot) -> serde_json::Result<CartJson> {
    blocks_cart(std::iter::empty(), snap, None).map(|(json, _)| json)
}
