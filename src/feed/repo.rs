//! SQL for the catalog feed, over the store actor's database: the webhook secret and id log,
//! applying upstream changes with per-product ordering, and sync/backend settings.
//! Only the store actor calls these, inside its turn and (for writes) its transaction.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;

use super::signature::WebhookSecret;
use super::{product_item, CatalogChange, ChangeOutcome, ProductUpsert, WebhookId};
use crate::ids::{ProductId, Slug};
use crate::secrets::{Opened, SecretBox};
use crate::sqlite::{StorageError, StorageResult};
use crate::store::model::{Currency, Product};
use crate::store::repo::{self, UpsertOutcome};

/// Webhook ids are remembered this long …
pub const WEBHOOK_ID_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// … and at most this many.
pub const WEBHOOK_ID_LIMIT: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<rusqlite::Error> for FeedError {
    fn from(e: rusqlite::Error) -> Self {
        FeedError::Storage(e.into())
    }
}

// ---- webhook secret and id log ----

/// The store's webhook secret, opened with the node's keys (`secrets.rs`), and whether it must
/// be re-sealed (stored in plaintext by an older version, or sealed with an older key). A value
/// no key opens is logged and treated as no secret: webhooks are refused until it is set again.
pub fn webhook_secret(conn: &Connection, keys: &SecretBox) -> StorageResult<Option<(WebhookSecret, bool)>> {
    let raw: Option<String> = conn.query_row("SELECT secret FROM webhook_config WHERE id = 1", [], |r| r.get(0)).optional()?;
    let Some(raw) = raw else { return Ok(None) };
    let opened = match keys.open(&raw) {
        Ok(opened) => opened,
        Err(error) => {
            tracing::error!(%error, "the webhook secret cannot be opened; webhooks are refused until it is set again");
            return Ok(None);
        }
    };
    let stale = matches!(opened, Opened::Stale(_));
    Ok(WebhookSecret::parse(opened.value()).ok().map(|secret| (secret, stale)))
}

/// Stores the webhook secret sealed with the node's primary key. The store's file keeps no
/// plaintext copy: `secure_delete` zeroes the replaced row's bytes, and the caller truncates the
/// WAL after the commit ([`scrub_wal`]) so no earlier frame keeps an old value.
pub fn set_webhook_secret(tx: &Transaction<'_>, secret: &WebhookSecret, keys: &SecretBox, now: i64) -> StorageResult<()> {
    let sealed = keys.seal(secret.expose()).map_err(|e| StorageError::Io(std::io::Error::other(e.to_string())))?;
    tx.pragma_update(None, "secure_delete", "ON")?;
    tx.execute(
        "INSERT INTO webhook_config (id, secret, updated_ms) VALUES (1, ?1, ?2)
         ON CONFLICT(id) DO UPDATE SET secret = excluded.secret, updated_ms = excluded.updated_ms",
        params![sealed, now],
    )?;
    Ok(())
}

/// Checkpoints the store's WAL into its file and truncates it, so frames written before a
/// secret was (re-)sealed do not keep its old value on disk.
pub fn scrub_wal(conn: &Connection) -> StorageResult<()> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

pub fn webhook_seen(conn: &Connection, id: &WebhookId) -> StorageResult<bool> {
    Ok(conn.query_row("SELECT 1 FROM webhook_ids WHERE webhook_id = ?1", [id.as_str()], |_| Ok(())).optional()?.is_some())
}

/// Records a handled webhook id, in the transaction that applies it (so a failed apply leaves
/// no record and the sender's retry is processed). Prunes the log every 64 ids.
pub fn record_webhook(tx: &Transaction<'_>, id: &WebhookId, now: i64) -> StorageResult<()> {
    tx.execute("INSERT INTO webhook_ids (webhook_id, received_ms) VALUES (?1, ?2)", params![id.as_str(), now])?;
    if tx.last_insert_rowid() % 64 == 0 {
        tx.execute("DELETE FROM webhook_ids WHERE received_ms < ?1", [now - WEBHOOK_ID_RETENTION_MS])?;
        tx.execute(
            "DELETE FROM webhook_ids WHERE seq <= (SELECT seq FROM webhook_ids ORDER BY seq DESC LIMIT 1 OFFSET ?1)",
            [WEBHOOK_ID_LIMIT],
        )?;
    }
    Ok(())
}

// ---- applying changes ----

/// (upstream updated_ms, deleted) of an upstream-managed product.
fn source_of(tx: &Transaction<'_>, id: &ProductId) -> StorageResult<Option<(i64, bool)>> {
    Ok(tx
        .query_row("SELECT upstream_updated_ms, deleted FROM product_sources WHERE product_id = ?1", [id.as_str()], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?))
        })
        .optional()?)
}

fn set_source(tx: &Transaction<'_>, id: &ProductId, updated_ms: i64, deleted: bool, run: Option<i64>) -> StorageResult<()> {
    tx.execute(
        "INSERT INTO product_sources (product_id, upstream_updated_ms, deleted, seen_run) VALUES (?1, ?2, ?3, coalesce(?4, 0))
         ON CONFLICT(product_id) DO UPDATE SET upstream_updated_ms = max(upstream_updated_ms, excluded.upstream_updated_ms),
           deleted = excluded.deleted, seen_run = coalesce(?4, seen_run)",
        params![id.as_str(), updated_ms, deleted, run],
    )?;
    Ok(())
}

fn stock_of(tx: &Transaction<'_>, id: &ProductId) -> StorageResult<i64> {
    Ok(tx.query_row("SELECT coalesce(sum(available), 0) FROM inventory_items WHERE product_id = ?1", [id.as_str()], |r| r.get(0))?)
}

fn set_stock(tx: &Transaction<'_>, id: &ProductId, stock: i64, now: i64) -> StorageResult<ChangeOutcome> {
    let Some(current) = repo::get_product(tx, id)? else { return Ok(ChangeOutcome::Ignored) };
    if current.stock == stock {
        return Ok(ChangeOutcome::Unchanged);
    }
    tx.execute("UPDATE products SET stock = ?2, updated_at = ?3 WHERE id = ?1", params![id.as_str(), stock.max(0), now])?;
    Ok(ChangeOutcome::Applied)
}

/// Applies one change. Ordering is per product (per inventory item for stock): a change older
/// than what is stored is `Stale` and changes nothing; equal timestamps apply (arrival order
/// breaks the tie, so a redelivery of the latest version is harmless). `run` marks products a
/// sync run has seen, for the deletions at the end of a full resync.
pub fn apply_change(
    tx: &Transaction<'_>,
    change: &CatalogChange,
    currency: &Currency,
    run: Option<i64>,
    now: i64,
) -> Result<ChangeOutcome, FeedError> {
    match change {
        CatalogChange::Upsert(up) => apply_upsert(tx, up, currency, run, now),
        CatalogChange::Delete { product, updated_ms } => {
            if source_of(tx, product)?.is_some_and(|(u, _)| u > *updated_ms) {
                return Ok(ChangeOutcome::Stale);
            }
            let existed = repo::delete_product(tx, product)?;
            tx.execute("DELETE FROM inventory_items WHERE product_id = ?1", [product.as_str()])?;
            set_source(tx, product, *updated_ms, true, run)?;
            Ok(if existed { ChangeOutcome::Applied } else { ChangeOutcome::Unchanged })
        }
        CatalogChange::InventoryLevel { item, available, updated_ms } => {
            let row: Option<(String, i64)> = tx
                .query_row("SELECT product_id, updated_ms FROM inventory_items WHERE item_id = ?1", [item], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let product = match row {
                Some((_, stored)) if stored > *updated_ms => return Ok(ChangeOutcome::Stale),
                Some((product, _)) => ProductId::parse(&product).map_err(|e| FeedError::Invalid(e.to_string()))?,
                // A per-product item of a product we have (e.g. created in the admin API).
                None => match item.strip_prefix("product:").and_then(|p| ProductId::parse(p).ok()) {
                    Some(p) if repo::get_product(tx, &p)?.is_some() && item == &product_item(&p) => p,
                    _ => return Ok(ChangeOutcome::Ignored),
                },
            };
            tx.execute(
                "INSERT INTO inventory_items (item_id, product_id, available, updated_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(item_id) DO UPDATE SET available = excluded.available, updated_ms = excluded.updated_ms",
                params![item, product.as_str(), (*available).max(0), updated_ms],
            )?;
            let stock = stock_of(tx, &product)?;
            Ok(set_stock(tx, &product, stock, now)?)
        }
        CatalogChange::SetStock { product, stock } => Ok(set_stock(tx, product, *stock, now)?),
    }
}

fn apply_upsert(
    tx: &Transaction<'_>,
    up: &ProductUpsert,
    currency: &Currency,
    run: Option<i64>,
    now: i64,
) -> Result<ChangeOutcome, FeedError> {
    let id = &up.id;
    if source_of(tx, id)?.is_some_and(|(u, _)| u > up.updated_ms) {
        // Still seen by this run: an older page does not make a newer product disappear.
        if let Some(run) = run {
            tx.execute("UPDATE product_sources SET seen_run = ?2 WHERE product_id = ?1", params![id.as_str(), run])?;
        }
        return Ok(ChangeOutcome::Stale);
    }
    let mut product =
        up.input.clone().into_product(Some(id), currency, now).map_err(|e| FeedError::Invalid(format!("product {id}: {e}")))?;

    // Inventory: each item keeps its own newest figure (an inventory webhook newer than this
    // product version wins); items no longer listed are variants that were removed.
    let listed: Vec<&str> = up.items.iter().map(|(i, _)| i.as_str()).collect();
    for (item, available) in &up.items {
        tx.execute(
            "INSERT INTO inventory_items (item_id, product_id, available, updated_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(item_id) DO UPDATE SET product_id = excluded.product_id,
               available = CASE WHEN inventory_items.updated_ms > excluded.updated_ms AND inventory_items.product_id = excluded.product_id
                                THEN inventory_items.available ELSE excluded.available END,
               updated_ms = max(inventory_items.updated_ms, excluded.updated_ms)",
            params![item, id.as_str(), (*available).max(0), up.updated_ms],
        )?;
    }
    let existing_items: Vec<String> = {
        let mut stmt = tx.prepare_cached("SELECT item_id FROM inventory_items WHERE product_id = ?1")?;
        let rows = stmt.query_map([id.as_str()], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for item in existing_items.iter().filter(|i| !listed.contains(&i.as_str())) {
        tx.execute("DELETE FROM inventory_items WHERE item_id = ?1", [item])?;
    }
    product.stock = stock_of(tx, id)?;

    let current = repo::get_product(tx, id)?;
    if let Some(cur) = &current {
        // The merchant's ordering is ours, not the upstream's.
        product.position = up.input.position.unwrap_or(cur.position);
        if same_content(cur, &product) {
            set_source(tx, id, up.updated_ms, false, run)?;
            return Ok(ChangeOutcome::Unchanged);
        }
    }
    if repo::upsert_product(tx, &product)? == UpsertOutcome::HandleTaken {
        // Another product holds the handle (upstream handles are unique only upstream): make
        // this one unique with its id rather than refuse the change.
        let suffix = format!("-{id}");
        let base: String = product.handle.as_str().chars().take(64usize.saturating_sub(suffix.len())).collect();
        product.handle = Slug::parse(&format!("{base}{suffix}")).map_err(|e| FeedError::Invalid(e.to_string()))?;
        if repo::upsert_product(tx, &product)? == UpsertOutcome::HandleTaken {
            return Err(FeedError::Invalid(format!("handle {} is used by another product", product.handle)));
        }
    }
    set_source(tx, id, up.updated_ms, false, run)?;
    Ok(ChangeOutcome::Applied)
}

fn same_content(a: &Product, b: &Product) -> bool {
    a.handle == b.handle
        && a.title == b.title
        && a.description == b.description
        && a.price_minor == b.price_minor
        && a.compare_at_minor == b.compare_at_minor
        && a.images == b.images
        && a.stock == b.stock
        && a.tags == b.tags
        && a.position == b.position
}

/// After a complete full resync: upstream-managed products the run did not see (and that no
/// webhook touched since the run began) are gone upstream; delete them, leaving tombstones.
pub fn delete_unseen(tx: &Transaction<'_>, run: i64, run_started_ms: i64) -> StorageResult<Vec<ProductId>> {
    let gone: Vec<String> = {
        let mut stmt =
            tx.prepare("SELECT product_id FROM product_sources WHERE deleted = 0 AND seen_run < ?1 AND upstream_updated_ms < ?2")?;
        let rows = stmt.query_map(params![run, run_started_ms], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut out = Vec::new();
    for raw in gone {
        let Ok(id) = ProductId::parse(&raw) else { continue };
        repo::delete_product(tx, &id)?;
        tx.execute("DELETE FROM inventory_items WHERE product_id = ?1", [id.as_str()])?;
        tx.execute("UPDATE product_sources SET deleted = 1 WHERE product_id = ?1", [id.as_str()])?;
        out.push(id);
    }
    Ok(out)
}

// ---- commerce backend ----

pub fn orders_url(conn: &Connection) -> StorageResult<Option<String>> {
    Ok(conn.query_row("SELECT orders_url FROM backend_config WHERE id = 1", [], |r| r.get(0)).optional()?)
}

pub fn set_orders_url(tx: &Transaction<'_>, url: &str, now: i64) -> StorageResult<()> {
    tx.execute(
        "INSERT INTO backend_config (id, orders_url, updated_ms) VALUES (1, ?1, ?2)
         ON CONFLICT(id) DO UPDATE SET orders_url = excluded.orders_url, updated_ms = excluded.updated_ms",
        params![url, now],
    )?;
    Ok(())
}

/// The store's CDN purge URL, if it has one.
pub fn purge_url(conn: &Connection) -> StorageResult<Option<String>> {
    Ok(conn.query_row("SELECT url FROM cdn_purge WHERE id = 1", [], |r| r.get(0)).optional()?)
}

/// Sets (or with `None`, removes) the store's CDN purge URL.
pub fn set_purge_url(tx: &Transaction<'_>, url: Option<&str>, now: i64) -> StorageResult<()> {
    match url {
        Some(url) => tx.execute(
            "INSERT INTO cdn_purge (id, url, updated_ms) VALUES (1, ?1, ?2)
             ON CONFLICT(id) DO UPDATE SET url = excluded.url, updated_ms = excluded.updated_ms",
            params![url, now],
        )?,
        None => tx.execute("DELETE FROM cdn_purge WHERE id = 1", [])?,
    };
    Ok(())
}

/// An `http:` or `https:` URL without credentials, for upstream and backend endpoints.
pub fn check_endpoint(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    let scheme_ok = lower.starts_with("http://") || lower.starts_with("https://");
    let authority = url.split("://").nth(1).unwrap_or("").split(['/', '?', '#']).next().unwrap_or("");
    if !scheme_ok || url.len() > 2048 || authority.is_empty() || authority.contains('@') || url.chars().any(char::is_whitespace) {
        return Err(format!("{:?} must be an http(s) URL without credentials", url.chars().take(80).collect::<String>()));
    }
    Ok(())
}

// ---- upstream sync ----

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncConfig {
    pub url: String,
    pub interval_secs: i64,
}

#[derive(Debug, Clone, Default)]
pub struct SyncState {
    pub last_success_ms: Option<i64>,
    pub last_full_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    pub consecutive_failures: u32,
    pub circuit_opened_ms: Option<i64>,
    pub products_synced: i64,
    pub cursor_updated_ms: Option<i64>,
}

pub fn sync_config(conn: &Connection) -> StorageResult<Option<SyncConfig>> {
    Ok(conn
        .query_row("SELECT url, interval_secs FROM sync_config WHERE id = 1", [], |r| {
            Ok(SyncConfig { url: r.get(0)?, interval_secs: r.get(1)? })
        })
        .optional()?)
}

pub fn set_sync_config(tx: &Transaction<'_>, c: &SyncConfig, now: i64) -> StorageResult<()> {
    tx.execute(
        "INSERT INTO sync_config (id, url, interval_secs, updated_ms) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT(id) DO UPDATE SET url = excluded.url, interval_secs = excluded.interval_secs, updated_ms = excluded.updated_ms",
        params![c.url, c.interval_secs, now],
    )?;
    Ok(())
}

pub fn sync_state(conn: &Connection) -> StorageResult<SyncState> {
    Ok(conn
        .query_row(
            "SELECT last_success_ms, last_full_ms, last_error, last_error_ms, consecutive_failures, circuit_opened_ms,
                    products_synced, cursor_updated_ms FROM sync_state WHERE id = 1",
            [],
            |r| {
                Ok(SyncState {
                    last_success_ms: r.get(0)?,
                    last_full_ms: r.get(1)?,
                    last_error: r.get(2)?,
                    last_error_ms: r.get(3)?,
                    consecutive_failures: r.get::<_, i64>(4)?.clamp(0, u32::MAX as i64) as u32,
                    circuit_opened_ms: r.get(5)?,
                    products_synced: r.get(6)?,
                    cursor_updated_ms: r.get(7)?,
                })
            },
        )
        .optional()?
        .unwrap_or_default())
}

pub fn save_sync_state(tx: &Transaction<'_>, s: &SyncState) -> StorageResult<()> {
    tx.execute(
        "INSERT INTO sync_state (id, runs, last_success_ms, last_full_ms, last_error, last_error_ms, consecutive_failures,
                                 circuit_opened_ms, products_synced, cursor_updated_ms)
         VALUES (1, 1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(id) DO UPDATE SET runs = runs + 1, last_success_ms = excluded.last_success_ms,
           last_full_ms = excluded.last_full_ms, last_error = excluded.last_error, last_error_ms = excluded.last_error_ms,
           consecutive_failures = excluded.consecutive_failures, circuit_opened_ms = excluded.circuit_opened_ms,
           products_synced = excluded.products_synced, cursor_updated_ms = excluded.cursor_updated_ms",
        params![
            s.last_success_ms,
            s.last_full_ms,
            s.last_error,
            s.last_error_ms,
            s.consecutive_failures,
            s.circuit_opened_ms,
            s.products_synced,
            s.cursor_updated_ms
        ],
    )?;
    Ok(())
}
