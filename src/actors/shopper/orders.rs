//! Checkout handoff: the cart becomes an order in the shopper's own database, and a durable
//! outbox hands it to the store's commerce backend.
//!
//! - One transaction records the order, its outbox row and the delivery alarm, and empties the
//!   cart. The idempotency key is unique: a repeated checkout (double click, retried request)
//!   returns the order already made.
//! - Delivery is an HTTP POST in a spawned task (never on the actor's turn) with the order id
//!   as `Idempotency-Key`; the answer comes back as a message and is committed. Failures retry
//!   with exponential backoff driven by the `order-delivery` alarm, which survives passivation
//!   and restarts. At-least-once sends plus the backend's idempotency key make the order
//!   arrive exactly once from the backend's point of view.
//! - A 2xx answer `{"stock": {"productId": n}}` updates the store's catalog at once; otherwise
//!   stock waits for the next inventory webhook or sync.

use actix::prelude::*;
use serde_json::{json, Value};

use super::{repo, ShopperActor, ShopperError};
use crate::actors::store::ApplyCatalogChanges;
use crate::clock::now_ms;
use crate::feed::upstream::{self, Delivery};
use crate::feed::{CatalogChange, ChangeSource};
use crate::ids::ProductId;
use crate::runtime::alarms;

pub const DELIVERY_ALARM: &str = "order-delivery";

/// A client's idempotency key: 1-128 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Option<IdempotencyKey> {
        let raw = raw.trim();
        ((1..=128).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic())).then(|| IdempotencyKey(raw.to_string()))
    }
    pub fn generate() -> IdempotencyKey {
        IdempotencyKey(uuid::Uuid::new_v4().simple().to_string())
    }
}

/// Turns the cart into an order. Answers the order and whether this call created it.
#[derive(Message, Clone)]
#[rtype(result = "Result<(Value, bool), ShopperError>")]
pub struct Checkout(pub IdempotencyKey);

#[derive(Message, Clone)]
#[rtype(result = "Result<Option<Value>, ShopperError>")]
pub struct GetOrder(pub String);

/// Sends every due, undelivered order (internal).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct DeliverOrders;

#[derive(Message)]
#[rtype(result = "()")]
struct DeliveryDone {
    order_id: String,
    result: Result<Option<Value>, String>,
}

impl Handler<GetOrder> for ShopperActor {
    type Result = Result<Option<Value>, ShopperError>;
    fn handle(&mut self, GetOrder(id): GetOrder, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        let db = self.db.clone().ok_or_else(|| ShopperError::Store("shopper actor is closing".into()))?;
        Ok(db.read(|c| repo::order(c, &id))?)
    }
}

/// What a checkout found before committing anything: the order an earlier request with the same
/// idempotency key placed, or the order to place now.
enum CheckoutPlan {
    Placed(Value),
    New { order_id: String, lines: Value, subtotal: i64, currency: String },
}

impl Handler<Checkout> for ShopperActor {
    type Result = AtomicResponse<Self, Result<(Value, bool), ShopperError>>;

    fn handle(&mut self, Checkout(key): Checkout, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        let snapshot = self.snapshot_future();
        AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(snapshot).then(move |snap, act, _| {
            let planned = (|| -> Result<CheckoutPlan, ShopperError> {
                let snap = snap?;
                let db = act.db.clone().ok_or_else(|| ShopperError::Store("shopper actor is closing".into()))?;
                let existing = db.read(|c| repo::order_for_key(c, &key.0))?;
                if let Some(id) = existing {
                    let order = db.read(|c| repo::order(c, &id))?.unwrap_or(Value::Null);
                    return Ok(CheckoutPlan::Placed(order));
                }
                if act.cart.is_empty() {
                    return Err(ShopperError::Invalid("the cart is empty".into()));
                }
                let mut lines = Vec::new();
                let mut subtotal = 0i64;
                for (id, line) in &act.cart {
                    let p = snap.product(id).ok_or_else(|| ShopperError::NoSuchProduct(id.clone()))?;
                    if p.stock < line.quantity {
                        return Err(ShopperError::InsufficientStock { product: id.clone(), available: p.stock, requested: line.quantity });
                    }
                    let total = p.price_minor.saturating_mul(line.quantity);
                    subtotal = subtotal.saturating_add(total);
                    lines.push(json!({"productId": id, "title": p.title, "quantity": line.quantity, "unitPriceMinor": p.price_minor, "lineTotalMinor": total}));
                }
                let order_id = format!("ord_{}", uuid::Uuid::new_v4().simple());
                Ok(CheckoutPlan::New { order_id, lines: Value::Array(lines), subtotal, currency: snap.settings.currency.code().to_string() })
            })();
            let (order_id, lines, subtotal, currency) = match planned {
                Err(e) => return fut::ready(Err(e)).boxed_local(),
                Ok(CheckoutPlan::Placed(order)) => return fut::ready(Ok((order, false))).boxed_local(),
                Ok(CheckoutPlan::New { order_id, lines, subtotal, currency }) => (order_id, lines, subtotal, currency),
            };
            let node = act.node.clone();
            let key_for_alarm = act.key();
            let id2 = order_id.clone();
            let commit = act.write(move |tx| {
                let now = now_ms();
                repo::insert_order(tx, &id2, &key.0, now, &currency, subtotal, &lines)?;
                repo::clear_cart(tx)?;
                // A shopper who has ordered is a customer: blocks with `userTypes: ["customer"]`
                // show to them from now on.
                repo::set_preference(tx, "customer", "true")?;
                // Safety net: if the immediate attempt never reports (crash), the alarm retries.
                let due = now + node.settings.feed.order_retry_base_ms as i64;
                node.catalog.set_alarm_hint(&key_for_alarm, due)?;
                alarms::set(tx, DELIVERY_ALARM, due)?;
                Ok(())
            });
            fut::wrap_future::<_, Self>(commit)
                .map(move |r, act, ctx| {
                    r?;
                    act.cart.clear();
                    act.preferences.insert("customer".into(), "true".into());
                    act.state_changed();
                    act.publish_cart(None);
                    crate::metrics::incr("vitrina_orders_total", &[]);
                    act.node.day_tally.order(act.key().store(), subtotal, now_ms());
                    ctx.notify(DeliverOrders);
                    let db = act.db.clone().ok_or_else(|| ShopperError::Store("shopper actor is closing".into()))?;
                    let order = db.read(|c| repo::order(c, &order_id))?.unwrap_or(Value::Null);
                    Ok((order, true))
                })
                .boxed_local()
        })))
    }
}

impl Handler<DeliverOrders> for ShopperActor {
    type Result = ();

    fn handle(&mut self, _: DeliverOrders, ctx: &mut Context<Self>) {
        let Some(db) = self.db.clone() else { return };
        let due = db.read(|c| repo::due_orders(c, now_ms(), 16));
        let due = match due {
            Ok(d) => d,
            Err(e) => return tracing::warn!(error = %e, "order outbox unreadable"),
        };
        let addr = ctx.address();
        let node = self.node.clone();
        let store = self.store.clone();
        let timeout = self.node.settings.feed.request_timeout_ms;
        for (order_id, mut order) in due {
            if !self.delivering.insert(order_id.clone()) {
                continue; // an attempt is already in flight
            }
            order["store"] = json!(store);
            let (addr, node, store) = (addr.clone(), node.clone(), store.clone());
            actix::spawn(async move {
                let url = match node.snapshot(&store).await {
                    Ok(snap) => snap.orders_url.clone(),
                    Err(e) => {
                        addr.do_send(DeliveryDone { order_id, result: Err(format!("store unavailable: {e}")) });
                        return;
                    }
                };
                let result = match url {
                    None => Err("no commerce backend is configured for this store".to_string()),
                    Some(url) => match upstream::deliver_order(&url, &order_id, &order, timeout).await {
                        Delivery::Accepted(body) => Ok(body),
                        Delivery::Failed(e) => Err(e),
                    },
                };
                addr.do_send(DeliveryDone { order_id, result });
            });
        }
    }
}

impl Handler<DeliveryDone> for ShopperActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: DeliveryDone, _: &mut Context<Self>) -> Self::Result {
        let node = self.node.clone();
        let key = self.key();
        let (base, max) = (node.settings.feed.order_retry_base_ms, node.settings.feed.order_retry_max_ms);
        let order_id = msg.order_id.clone();
        let result = msg.result.clone();
        let commit = self.write(move |tx| {
            let now = now_ms();
            match &result {
                Ok(reply) => repo::delivery_succeeded(tx, &order_id, now, reply.as_ref())?,
                Err(e) => {
                    let attempts = repo::delivery_attempts(tx, &order_id)?;
                    let next = now + upstream::backoff(base, attempts.clamp(0, 30) as u32, max).as_millis() as i64;
                    repo::delivery_failed(tx, &order_id, next, &e.chars().take(500).collect::<String>())?;
                }
            }
            let next = repo::next_delivery_due(tx)?;
            match next {
                Some(due) => {
                    node.catalog.set_alarm_hint(&key, due)?;
                    alarms::set(tx, DELIVERY_ALARM, due)?;
                }
                None => alarms::clear(tx, DELIVERY_ALARM)?,
            }
            node.catalog.reset_alarm_hint(&key, alarms::next_due(tx)?)?;
            Ok(())
        });
        let DeliveryDone { order_id, result } = msg;
        AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(commit).map(move |r, act, _| {
            act.delivering.remove(&order_id);
            if let Err(e) = r {
                return tracing::error!(order = %order_id, error = %e, "delivery outcome not saved");
            }
            let outcome = if result.is_ok() { "delivered" } else { "failed" };
            crate::metrics::incr("vitrina_order_deliveries_total", &[("outcome", outcome)]);
            if let Ok(Some(reply)) = result {
                act.apply_backend_stock(&reply);
            }
        })))
    }
}

impl ShopperActor {
    /// `{"stock": {"productId": n}}` from the backend → absolute stock in the store's catalog.
    fn apply_backend_stock(&self, reply: &Value) {
        let Some(stock) = reply.get("stock").and_then(Value::as_object) else { return };
        let changes: Vec<CatalogChange> = stock
            .iter()
            .filter_map(|(id, n)| Some(CatalogChange::SetStock { product: ProductId::parse(id).ok()?, stock: n.as_i64()?.max(0) }))
            .collect();
        if changes.is_empty() {
            return;
        }
        let (node, store) = (self.node.clone(), self.store.clone());
        let stock = Value::Object(stock.clone());
        actix::spawn(async move {
            let key = crate::ids::ActorKey::Store(store.clone());
            let applied = match node.cluster.placement(&key) {
                // The store lives on another node: its owner applies the stock.
                crate::cluster::Placement::Remote { addr, .. } => node
                    .cluster
                    .call_json::<Value>(
                        &addr,
                        reqwest::Method::POST,
                        &format!("/internal/stores/{store}/stock"),
                        &serde_json::json!({"stock": stock}),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                _ => {
                    let msg = ApplyCatalogChanges { source: ChangeSource::Backend, changes };
                    node.ask_store(&store, msg).await.map(|_| ()).map_err(|e| e.to_string())
                }
            };
            if let Err(e) = applied {
                tracing::warn!(%store, error = %e, "stock from the commerce backend not applied");
            }
        });
    }
}
