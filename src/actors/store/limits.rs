//! What one store may keep: products and the bytes of its published snapshot (the JSON every
//! isolate of the store parses). Checked inside the write transaction that would pass a limit,
//! after its changes, so a refused write rolls back whole.

use rusqlite::Connection;
use serde_json::{json, Value};

use crate::config::StoreLimitSettings;
use crate::ids::StoreId;
use crate::render::snapshot::StoreSnapshot;
use crate::sqlite::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("{message}")]
    Exceeded { code: &'static str, message: String, details: Value },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Checks the store's state as the transaction on `conn` has it now, and returns the snapshot it
/// measured: the caller publishes that one once the transaction commits, instead of loading
/// (and serialising the whole catalog) again.
pub fn check(conn: &Connection, store: &StoreId, limits: &StoreLimitSettings) -> Result<StoreSnapshot, LimitError> {
    let products: i64 = conn.query_row("SELECT COUNT(*) FROM products", [], |r| r.get(0)).map_err(StorageError::from)?;
    let products = usize::try_from(products).unwrap_or(usize::MAX);
    if products > limits.max_products_per_store {
        return Err(LimitError::Exceeded {
            code: "product_limit",
            message: format!(
                "a store may hold at most {} products on this node; this change would make {products}",
                limits.max_products_per_store
            ),
            details: json!({"limit": limits.max_products_per_store, "wouldBe": products, "retryable": false}),
        });
    }
    let snapshot = StoreSnapshot::load(store, conn)?;
    let bytes = snapshot.render_data.storefront_json.len() + snapshot.render_data.products_json.len();
    if bytes > limits.max_snapshot_bytes {
        return Err(LimitError::Exceeded {
            code: "snapshot_limit",
            message: format!(
                "a store's published data may be at most {} bytes on this node; this change would make {bytes}",
                limits.max_snapshot_bytes
            ),
            details: json!({"limit": limits.max_snapshot_bytes, "wouldBe": bytes, "retryable": false}),
        });
    }
    Ok(snapshot)
}
