//! The cart: reading it, changing it (checked against the catalog, committed, then applied to
//! memory), its views for the API and for blocks, and the alarm that expires an idle cart.

use actix::prelude::*;

use super::{repo, CartLine, ShopperActor, ShopperError};
use crate::catalog::NodeCatalog;
use crate::clock::now_ms;
use crate::ids::{ActorKey, ProductId};
use crate::render;
pub use crate::render::cart::CartJson;
use crate::render::snapshot::{SharedSnapshot, StoreSnapshot};
use crate::runtime::alarms;
use crate::sqlite::StorageError;

/// The alarm that empties a cart left unchanged for `shopper.cart_idle_ttl_secs`.
pub(super) const CART_EXPIRY_ALARM: &str = "cart-expiry";

/// A change to one product's line; quantities are checked against the catalog and stock.
#[derive(Debug, Clone)]
pub enum CartOp {
    Add { product: ProductId, quantity: i64 },
    Set { product: ProductId, quantity: i64 },
    Remove { product: ProductId },
}

/// The cart as the API returns it.
#[derive(Message, Clone)]
#[rtype(result = "Result<CartJson, ShopperError>")]
pub struct GetCart;

/// Applies a change once it is durable; answers the cart as the API returns it.
#[derive(Message, Clone)]
#[rtype(result = "Result<CartJson, ShopperError>")]
pub struct ChangeCart(pub CartOp);

/// The cart as blocks see it, kept for the state and store versions it was serialised at.
pub(super) struct BlocksCart {
    /// (`state_version`, store version)
    versions: (u64, u64),
    json: CartJson,
    count: u64,
}

impl ShopperActor {
    /// The cart as the API returns it (amounts as decimal strings and integer minor units),
    /// and its item count.
    fn cart_view(&self, snap: &StoreSnapshot) -> Result<(CartJson, i64), ShopperError> {
        Ok(render::cart::api_cart(self.cart_lines(), snap).map_err(StorageError::from)?)
    }

    /// The cart as blocks see it, and its item count, kept between renders while neither this
    /// shopper's state nor the store changes (every change to the cart bumps `state_version`).
    pub(super) fn cart_for_blocks(&mut self, snap: &StoreSnapshot) -> Result<(CartJson, u64), ShopperError> {
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
        let (json, count) = render::cart::blocks_cart(self.cart_lines(), snap, checkout_key).map_err(StorageError::from)?;
        self.blocks_cart = Some(BlocksCart { versions: current, json: json.clone(), count });
        Ok((json, count))
    }

    /// Tells this shopper's open pages (any tab, on any node) its cart changed: the item count,
    /// and the cart as the API returns it when the caller has it (an emptied cart has none).
    /// Nothing is built when no page listens (most writes).
    pub(super) fn publish_cart(&self, cart: Option<(&CartJson, i64)>) {
        self.node.events.publish_with(&self.key(), || match cart {
            Some((cart, count)) => format!(r#"{{"type":"cart","count":{count},"cart":{}}}"#, cart.get()).into(),
            None => r#"{"type":"cart","count":0}"#.into(),
        });
    }

    /// (product, quantity) for each line, in the cart's order.
    fn cart_lines(&self) -> impl Iterator<Item = (&ProductId, i64)> {
        self.cart.iter().map(|(id, line)| (id, line.quantity))
    }

    /// Persists the cart-expiry alarm: the node's hint first, then the actor's own row.
    /// `known` is what this instance last wrote: (the hint in the index, the due time in its own
    /// alarm table). The index keeps the earliest time it is given and a cart change only moves
    /// expiry later, so the write is skipped when an earlier hint is known to be there: the
    /// catalog is one SQLite file for the whole node, and writing it on every cart change
    /// serialised all add-to-cart commits behind its write lock. The own row is skipped the same
    /// way when `refreshes` (the change set a line's `updated_at` to now): an alarm that fires
    /// before the cart has been idle long enough re-arms itself from the lines' `updated_at`
    /// (`FireAlarms`), so an earlier due time costs one early wake-up instead of a page written
    /// with every cart change. Returns what is now in the index and the table.
    fn schedule_cart_expiry(
        catalog: &NodeCatalog,
        idle_ttl_ms: i64,
        key: &ActorKey,
        tx: &rusqlite::Transaction<'_>,
        known: (Option<i64>, Option<i64>),
        refreshes: bool,
    ) -> Result<(i64, i64), StorageError> {
        let due = now_ms() + idle_ttl_ms;
        let hint = match known.0 {
            Some(hint) if hint <= due => hint,
            _ => {
                catalog.set_alarm_hint(key, due)?;
                due
            }
        };
        let alarm = match known.1 {
            Some(armed) if refreshes && armed <= due => armed,
            _ => {
                alarms::set(tx, CART_EXPIRY_ALARM, due)?;
                due
            }
        };
        Ok((hint, alarm))
    }
}

impl Handler<GetCart> for ShopperActor {
    type Result = AtomicResponse<Self, Result<CartJson, ShopperError>>;
    fn handle(&mut self, _: GetCart, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(self.snapshot_future()).map(|snap, act, _| {
            let snap = snap?;
            act.cart_view(&snap).map(|(cart, _)| cart)
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
                    let p = snap.product(&product).ok_or_else(|| {
                        tracing::debug!(%product, version = snap.version, products = snap.products.len(), "no such product in the store snapshot");
                        ShopperError::NoSuchProduct(product.clone())
                    })?;
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
                let known = (act.alarm_hint_ms, act.cart_alarm_ms);
                let idle_ttl_ms = act.node.settings.shopper.cart_idle_ttl_secs as i64 * 1000;
                let commit = act.write(move |tx| {
                    repo::set_cart_line(tx, &p, quantity, now)?;
                    Ok(ShopperActor::schedule_cart_expiry(&node.catalog, idle_ttl_ms, &key, tx, known, quantity > 0)?)
                });
                let durability = snap.settings.durability;
                fut::wrap_future::<_, Self>(commit)
                    .map(move |committed, act, _| {
                        let (hint, alarm) = committed?;
                        (act.alarm_hint_ms, act.cart_alarm_ms) = (Some(hint), Some(alarm));
                        if quantity == 0 {
                            act.cart.remove(&product);
                        } else {
                            act.cart.insert(product, CartLine { quantity, updated_at: now });
                        }
                        act.state_changed();
                        let (cart, count) = act.cart_view(&snap)?;
                        act.publish_cart(Some((&cart, count)));
                        Ok(cart)
                    })
                    .then(move |result, act, _| act.acknowledged(result, Some(durability)))
                    .boxed_local()
            }
        })))
    }
}
