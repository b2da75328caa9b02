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
use rusqlite::{params, OptionalExtension};
use serde_json::{json, Value};

use super::{ShopperActor, ShopperError};
use crate::actors::store::ApplyCatalogChanges;
use crate::clock::now_ms;
use crate::feed::upstream::{self, Delivery};
use crate::feed::{ms_rfc3339, CatalogChange, ChangeSource};
use crate::ids::ProductId;
use crate::runtime::alarms;
use crate::sqlite::StorageError;

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

pub(crate) fn order_json(c: &rusqlite::Connection, id: &str) -> Result<Option<Value>, StorageError> {
    let row = c
        .query_row(
            "SELECT o.id, o.created_ms, o.currency, o.subtotal_minor, o.lines, b.attempts, b.next_attempt_ms, b.last_error, b.delivered_ms
             FROM orders o JOIN order_outbox b ON b.order_id = o.id WHERE o.id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, Option<i64>>(8)?,
                ))
            },
        )
        .optional()?;
    Ok(row.map(|(id, created, currency, subtotal, lines, attempts, next, last_error, delivered)| {
        json!({
            "id": id,
            "createdAt": ms_rfc3339(created),
            "currency": currency,
            "subtotalMinor": subtotal,
            "lines": serde_json::from_str::<Value>(&lines).unwrap_or(Value::Null),
            "delivery": {
                "status": if delivered.is_some() { "delivered" } else { "pending" },
                "attempts": attempts,
                "deliveredAt": delivered.map(ms_rfc3339),
                "nextAttemptAt": if delivered.is_none() { Some(ms_rfc3339(next)) } else { None },
                "lastError": last_error,
            },
        })
    }))
}

impl Handler<GetOrder> for ShopperActor {
    type Result = Result<Option<Value>, ShopperError>;
    fn handle(&mut self, GetOrder(id): GetOrder, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        let db = self.db.clone().ok_or_else(|| ShopperError::Store("shopper actor is closing".into()))?;
        Ok(db.read(|c| order_json(c, &id))?)
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
                let existing: Option<String> = db.read(|c| {
                    Ok(c.query_row("SELECT id FROM orders WHERE idempotency_key = ?1", [&key.0], |r| r.get(0)).optional()?)
                })?;
                if let Some(id) = existing {
                    let order = db.read(|c| order_json(c, &id))?.unwrap_or(Value::Null);
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
                tx.execute(
                    "INSERT INTO orders (id, idempotency_key, created_ms, currency, subtotal_minor, lines) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![id2, key.0, now, currency, subtotal, lines.to_string()],
                )
                .map_err(StorageError::from)?;
                tx.execute("INSERT INTO order_outbox (order_id, next_attempt_ms) VALUES (?1, ?2)", params![id2, now])
                    .map_err(StorageError::from)?;
                tx.execute("DELETE FROM cart_items", []).map_err(StorageError::from)?;
                // A shopper who has ordered is a customer: blocks with `userTypes: ["customer"]`
                // show to them from now on.
                tx.execute(
                    "INSERT INTO preferences (key, value) VALUES ('customer', 'true') ON CONFLICT(key) DO UPDATE SET value = 'true'",
                    [],
                )
                .map_err(StorageError::from)?;
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
                    crate::metrics::incr("vitrina_orders_total", &[]);
                    ctx.notify(DeliverOrders);
                    let db = act.db.clone().ok_or_else(|| ShopperError::Store("shopper actor is closing".into()))?;
                    let order = db.read(|c| order_json(c, &order_id))?.unwrap_or(Value::Null);
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
        let due: Result<Vec<(String, Value)>, StorageError> = db.read(|c| {
            let mut stmt = c.prepare(
                "SELECT o.id, o.created_ms, o.currency, o.subtotal_minor, o.lines FROM order_outbox b JOIN orders o ON o.id = b.order_id
                 WHERE b.delivered_ms IS NULL AND b.next_attempt_ms <= ?1 ORDER BY b.next_attempt_ms LIMIT 16",
            )?;
            let rows = stmt.query_map([now_ms()], |r| {
                let lines: String = r.get(4)?;
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    serde_json::from_str::<Value>(&lines).unwrap_or(Value::Null),
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, created, currency, subtotal, lines) = row?;
                out.push((id.clone(), json!({"id": id, "store": "", "createdAt": ms_rfc3339(created), "currency": currency, "subtotalMinor": subtotal, "lines": lines})));
            }
            Ok(out)
        });
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
                Ok(reply) => {
                    tx.execute(
                        "UPDATE order_outbox SET delivered_ms = ?2, attempts = attempts + 1, last_error = NULL, backend_reply = ?3 WHERE order_id = ?1",
                        params![order_id, now, reply.as_ref().map(Value::to_string)],
                    )
                    .map_err(StorageError::from)?;
                }
                Err(e) => {
                    let attempts: i64 = tx
                        .query_row("SELECT attempts FROM order_outbox WHERE order_id = ?1", [&order_id], |r| r.get(0))
                        .map_err(StorageError::from)?;
                    let next = now + upstream::backoff(base, attempts.clamp(0, 30) as u32, max).as_millis() as i64;
                    tx.execute(
                        "UPDATE order_outbox SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3 WHERE order_id = ?1",
                        params![order_id, next, e.chars().take(500).collect::<String>()],
                    )
                    .map_err(StorageError::from)?;
                }
            }
            let next: Option<i64> = tx
                .query_row("SELECT min(next_attempt_ms) FROM order_outbox WHERE delivered_ms IS NULL", [], |r| r.get(0))
                .map_err(StorageError::from)?;
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
