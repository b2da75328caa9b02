//! SQL over one shopper's database (cart, browsing history, preferences, saved pages, meta).
//! Only the shopper actor calls these, inside its turn or in the transaction of one of its
//! writes; they know nothing of the actor. Orders and their outbox are in `orders`.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, Transaction};

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
