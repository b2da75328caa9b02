//! Our own webhook format, for upstreams that are not Shopify.
//!
//! ```json
//! {"id": "evt_123", "store": "demo", "type": "product.upsert",
//!  "data": {"id": "p-1", "title": "Mug", "price": "12.50", "stock": 4, "updatedAt": "2024-05-01T10:00:00Z", ...}}
//! {"id": "evt_124", "store": "demo", "type": "product.delete", "data": {"id": "p-1", "updatedAt": "..."}}
//! {"id": "evt_125", "store": "demo", "type": "inventory.set",  "data": {"productId": "p-1", "stock": 3, "updatedAt": "..."}}
//! ```
//! `data` of `product.upsert` is the admin API's product (`ProductInput`: id, handle, title,
//! description, price or priceMinor, compareAtPrice, images, stock, tags, position) plus the
//! required `updatedAt` (RFC 3339) that orders versions of one product.

use serde::Deserialize;
use serde_json::Value;

use super::{product_item, rfc3339_ms, CatalogChange, ProductUpsert, WebhookId};
use crate::ids::{ProductId, StoreId};
use crate::store::model::ProductInput;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    id: String,
    store: String,
    #[serde(rename = "type")]
    kind: String,
    data: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpsertData {
    #[serde(flatten)]
    product: ProductInput,
    updated_at: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeleteData {
    id: String,
    updated_at: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StockData {
    product_id: String,
    stock: i64,
    updated_at: String,
}

/// A parsed generic webhook.
#[derive(Debug)]
pub struct GenericWebhook {
    pub id: WebhookId,
    pub store: StoreId,
    pub change: CatalogChange,
}

fn time_of(raw: &str) -> Result<i64, String> {
    rfc3339_ms(raw).ok_or_else(|| format!("updatedAt {raw:?} is not an RFC 3339 timestamp"))
}

pub fn parse(body: &[u8]) -> Result<GenericWebhook, String> {
    let env: Envelope = serde_json::from_slice(body).map_err(|e| format!("invalid webhook envelope: {e}"))?;
    let id = WebhookId::parse(&env.id).ok_or("id must be 1-128 printable ASCII characters")?;
    let store = StoreId::parse(&env.store).map_err(|e| e.to_string())?;
    let change = match env.kind.as_str() {
        "product.upsert" => {
            let d: UpsertData = serde_json::from_value(env.data).map_err(|e| format!("invalid product: {e}"))?;
            let raw_id = d.product.id.clone().ok_or("data.id is required")?;
            let product = ProductId::parse(&raw_id).map_err(|e| e.to_string())?;
            if d.product.stock < 0 {
                return Err("stock must not be negative".into());
            }
            let items = vec![(product_item(&product), d.product.stock)];
            CatalogChange::Upsert(Box::new(ProductUpsert { updated_ms: time_of(&d.updated_at)?, input: d.product, id: product, items }))
        }
        "product.delete" => {
            let d: DeleteData = serde_json::from_value(env.data).map_err(|e| format!("invalid delete: {e}"))?;
            CatalogChange::Delete { product: ProductId::parse(&d.id).map_err(|e| e.to_string())?, updated_ms: time_of(&d.updated_at)? }
        }
        "inventory.set" => {
            let d: StockData = serde_json::from_value(env.data).map_err(|e| format!("invalid inventory: {e}"))?;
            if d.stock < 0 {
                return Err("stock must not be negative".into());
            }
            let product = ProductId::parse(&d.product_id).map_err(|e| e.to_string())?;
            CatalogChange::InventoryLevel { item: product_item(&product), available: d.stock, updated_ms: time_of(&d.updated_at)? }
        }
        other => return Err(format!("unknown type {other:?}: product.upsert, product.delete or inventory.set")),
    };
    Ok(GenericWebhook { id, store, change })
}
