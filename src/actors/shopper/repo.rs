//! SQL over one shopper's database (cart, browsing history, preferences, saved pages, meta,
//! orders and their outbox). Only the shopper actor calls these, inside its turn or in the
//! transaction of one of its writes; they know nothing of the actor.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::{json, Value};

use crate::feed::ms_rfc3339;
use crate::ids::ProductId;
use crate::sqlite::StorageResult;

/// One product's line in a cart, as stored.
#[derive(Debug, Clone, Copy)]
pub struct CartLine {
    pub quantity: i64,
    /// When the shopper last changed this line: the cart expires some time after the latest.
    pub updated_at: i64,
}

/// The cart. Lines whose product id no longer parses are left out.
pub fn cart(c: &Connection) -> StorageResult<BTreeMap<ProductId, CartLine>> {
    let mut cart = BTreeMap::new();
    let mut stmt = c.prepare("SELECT product_id, quantity, updated_at FROM cart_items")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))? {
        let (id, quantity, updated_at) = row?;
        if let Ok(id) = ProductId::parse(&id) {
            cart.insert(id, CartLine { quantity, updated_at });
        }
    }
    Ok(cart)
}

/// Sets one product's quantity; 0 removes the line. Runs on every cart change, hence the
/// cached statements.
pub fn set_cart_line(tx: &Transaction<'_>, product: &ProductId, quantity: i64, now: i64) -> StorageResult<()> {
    if quantity == 0 {
        tx.prepare_cached("DELETE FROM cart_items WHERE product_id = ?1")?.execute([product.as_str()])?;
    } else {
        tx.prepare_cached(
            "INSERT INTO cart_items (product_id, quantity, added_at, updated_at) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT(product_id) DO UPDATE SET quantity = excluded.quantity, updated_at = excluded.updated_at",
        )?
        .execute(params![product.as_str(), quantity, now])?;
    }
    Ok(())
}

pub fn clear_cart(tx: &Transaction<'_>) -> StorageResult<()> {
    tx.execute("DELETE FROM cart_items", [])?;
    Ok(())
}

/// The `limit` most recent views, most recent first (a product viewed twice appears twice).
pub fn recent_views(c: &Connection, limit: i64) -> StorageResult<Vec<ProductId>> {
    let mut stmt = c.prepare("SELECT product_id FROM history ORDER BY seq DESC LIMIT ?1")?;
    let mut views = Vec::new();
    for row in stmt.query_map([limit], |r| r.get::<_, String>(0))? {
        if let Ok(id) = ProductId::parse(&row?) {
            views.push(id);
        }
    }
    Ok(views)
}

/// Appends views (oldest first) at `at`, and keeps only the `keep` most recent rows.
pub fn record_views(tx: &Transaction<'_>, views: &[ProductId], at: i64, keep: i64) -> StorageResult<()> {
    for id in views {
        tx.execute("INSERT INTO history (product_id, viewed_at) VALUES (?1, ?2)", params![id.as_str(), at])?;
    }
    tx.execute("DELETE FROM history WHERE seq NOT IN (SELECT seq FROM history ORDER BY seq DESC LIMIT ?1)", [keep])?;
    Ok(())
}

pub fn preferences(c: &Connection) -> StorageResult<BTreeMap<String, String>> {
    let mut stmt = c.prepare("SELECT key, value FROM preferences")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn set_preference(tx: &Transaction<'_>, key: &str, value: &str) -> StorageResult<()> {
    tx.execute(
        "INSERT INTO preferences (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// Meta counters: the state version (bumped by every change a page can show) and the
/// session-token generation.
pub const STATE_VERSION: &str = "state_version";
pub const SESSION_GENERATION: &str = "session_generation";

/// A meta counter; 0 when unset or unreadable (a new shopper).
pub fn counter(c: &Connection, key: &str) -> u64 {
    c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get::<_, String>(0)).ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Runs in every write's transaction, hence the cached statement.
pub fn set_counter(tx: &Transaction<'_>, key: &str, value: u64) -> StorageResult<()> {
    tx.prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")?
        .execute(params![key, value.to_string()])?;
    Ok(())
}

/// A page saved at passivation: keyed `store_version.state_version#request_key`.
pub struct SavedPage {
    pub cache_key: String,
    pub html: String,
    pub rendered_ms: i64,
}

pub fn saved_pages(c: &Connection) -> StorageResult<Vec<SavedPage>> {
    let mut stmt = c.prepare("SELECT cache_key, html, rendered_ms FROM html_cache")?;
    let rows = stmt.query_map([], |r| Ok(SavedPage { cache_key: r.get(0)?, html: r.get(1)?, rendered_ms: r.get(2)? }))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Replaces the saved pages with `pages`.
pub fn replace_saved_pages<'a>(tx: &Transaction<'_>, pages: impl IntoIterator<Item = (String, &'a str, i64)>) -> StorageResult<()> {
    tx.execute("DELETE FROM html_cache", [])?;
    for (cache_key, html, rendered_ms) in pages {
        tx.execute("INSERT INTO html_cache (cache_key, html, rendered_ms) VALUES (?1, ?2, ?3)", params![cache_key, html, rendered_ms])?;
    }
    Ok(())
}

// Orders and their outbox (see `orders`): an order row and its delivery state are written in
// the checkout's transaction, the delivery state again after every attempt.

/// One order with its delivery status, as the API and the order page show it.
pub fn order(c: &Connection, id: &str) -> StorageResult<Option<Value>> {
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

/// Every order's id, oldest first.
pub fn order_ids(c: &Connection) -> StorageResult<Vec<String>> {
    let mut stmt = c.prepare("SELECT id FROM orders ORDER BY created_ms, id")?;
    let ids = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
    Ok(ids)
}

/// The order an earlier checkout with this idempotency key placed.
pub fn order_for_key(c: &Connection, idempotency_key: &str) -> StorageResult<Option<String>> {
    Ok(c.query_row("SELECT id FROM orders WHERE idempotency_key = ?1", [idempotency_key], |r| r.get(0)).optional()?)
}

/// Records an order and queues it for delivery now.
pub fn insert_order(
    tx: &Transaction<'_>,
    id: &str,
    idempotency_key: &str,
    now: i64,
    currency: &str,
    subtotal_minor: i64,
    lines: &Value,
) -> StorageResult<()> {
    tx.execute(
        "INSERT INTO orders (id, idempotency_key, created_ms, currency, subtotal_minor, lines) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![id, idempotency_key, now, currency, subtotal_minor, lines.to_string()],
    )?;
    tx.execute("INSERT INTO order_outbox (order_id, next_attempt_ms) VALUES (?1, ?2)", params![id, now])?;
    Ok(())
}

/// Up to `limit` undelivered orders due by `now`, earliest first, as (id, the order as the
/// commerce backend receives it, `store` left for the caller to fill in).
pub fn due_orders(c: &Connection, now: i64, limit: i64) -> StorageResult<Vec<(String, Value)>> {
    let mut stmt = c.prepare(
        "SELECT o.id, o.created_ms, o.currency, o.subtotal_minor, o.lines FROM order_outbox b JOIN orders o ON o.id = b.order_id
         WHERE b.delivered_ms IS NULL AND b.next_attempt_ms <= ?1 ORDER BY b.next_attempt_ms LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now, limit], |r| {
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
}

pub fn delivery_succeeded(tx: &Transaction<'_>, order_id: &str, now: i64, reply: Option<&Value>) -> StorageResult<()> {
    tx.execute(
        "UPDATE order_outbox SET delivered_ms = ?2, attempts = attempts + 1, last_error = NULL, backend_reply = ?3 WHERE order_id = ?1",
        params![order_id, now, reply.map(Value::to_string)],
    )?;
    Ok(())
}

/// Delivery attempts made so far for one order (the backoff grows with them).
pub fn delivery_attempts(tx: &Transaction<'_>, order_id: &str) -> StorageResult<i64> {
    Ok(tx.query_row("SELECT attempts FROM order_outbox WHERE order_id = ?1", [order_id], |r| r.get(0))?)
}

pub fn delivery_failed(tx: &Transaction<'_>, order_id: &str, next_attempt_ms: i64, error: &str) -> StorageResult<()> {
    tx.execute(
        "UPDATE order_outbox SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3 WHERE order_id = ?1",
        params![order_id, next_attempt_ms, error],
    )?;
    Ok(())
}

/// When the next undelivered order is due, if any.
pub fn next_delivery_due(tx: &Transaction<'_>) -> StorageResult<Option<i64>> {
    Ok(tx.query_row("SELECT min(next_attempt_ms) FROM order_outbox WHERE delivered_ms IS NULL", [], |r| r.get(0))?)
}
