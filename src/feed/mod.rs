//! The catalog feed: changes to a store's product cache that come from outside the admin API —
//! signed webhooks (Shopify's format and our generic one), the upstream catalog sync, and the
//! commerce backend's stock answers after a checkout.
//!
//! Every source is turned into [`CatalogChange`]s at the edge; the store actor applies a batch
//! of them in one transaction (see `repo.rs`).

pub mod breaker;
pub mod generic;
pub mod repo;
pub mod shopify;
pub mod signature;
pub mod upstream;

use serde::Serialize;

use crate::ids::ProductId;
use crate::store::model::ProductInput;

/// A webhook's own id (`X-Shopify-Webhook-Id`, or `id` in the generic envelope): 1-128
/// printable ASCII characters. Used only as a key of the store's idempotency log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WebhookId(String);

impl WebhookId {
    pub fn parse(raw: &str) -> Option<WebhookId> {
        let ok = (1..=128).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| WebhookId(raw.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An upstream inventory item: a Shopify variant's `inventory_item_id`, or `product:{id}` for
/// sources that keep one stock figure per product.
pub fn product_item(product: &ProductId) -> String {
    format!("product:{product}")
}

/// A product as an upstream describes it, with the upstream's `updated_at` that orders it
/// against other versions of the same product.
#[derive(Debug, Clone)]
pub struct ProductUpsert {
    /// Validated and priced (in the store's currency) inside the store actor's turn. Its
    /// `stock` is ignored: stock is the sum of `items`.
    pub input: ProductInput,
    pub id: ProductId,
    pub updated_ms: i64,
    /// (inventory item, available) for each variant.
    pub items: Vec<(String, i64)>,
}

#[derive(Debug, Clone)]
pub enum CatalogChange {
    Upsert(Box<ProductUpsert>),
    /// Deleting leaves a tombstone at `updated_ms`, so an older update arriving later is stale.
    Delete {
        product: ProductId,
        updated_ms: i64,
    },
    /// Stock of one inventory item; the owning product's stock becomes the sum of its items.
    InventoryLevel {
        item: String,
        available: i64,
        updated_ms: i64,
    },
    /// An absolute stock figure from the commerce backend (its answer to an order).
    SetStock {
        product: ProductId,
        stock: i64,
    },
}

/// Where a batch of changes came from. A webhook carries its id for the idempotency log.
#[derive(Debug, Clone)]
pub enum ChangeSource {
    Webhook {
        id: WebhookId,
        format: &'static str,
    },
    /// One page of an upstream sync run.
    Sync {
        run: i64,
    },
    Backend,
}

impl ChangeSource {
    pub fn label(&self) -> String {
        match self {
            ChangeSource::Webhook { format, .. } => format!("webhook:{format}"),
            ChangeSource::Sync { run } => format!("sync:{run}"),
            ChangeSource::Backend => "backend".into(),
        }
    }
}

/// What happened to one change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOutcome {
    Applied,
    /// Same content as stored: nothing to do (a re-synced page, a redelivered update).
    Unchanged,
    /// Older than what the store already has for this product or item.
    Stale,
    /// Refers to something this store does not track (an unknown inventory item).
    Ignored,
}

/// The answer to a batch: what happened, and the store version after it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedReport {
    /// `applied`, `unchanged`, `stale`, `ignored` (for one change), or `duplicate` (webhook id
    /// seen before: nothing applied).
    pub status: &'static str,
    pub applied: usize,
    pub unchanged: usize,
    pub stale: usize,
    pub ignored: usize,
    /// Products of a sync page that failed validation (skipped; the rest of the page applied).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<String>,
    pub store_version: u64,
}

impl FeedReport {
    pub fn duplicate(version: u64) -> FeedReport {
        FeedReport { status: "duplicate", applied: 0, unchanged: 0, stale: 0, ignored: 0, rejected: Vec::new(), store_version: version }
    }

    pub fn from_outcomes(outcomes: &[ChangeOutcome], version: u64) -> FeedReport {
        let count = |o: ChangeOutcome| outcomes.iter().filter(|x| **x == o).count();
        let (applied, unchanged, stale, ignored) =
            (count(ChangeOutcome::Applied), count(ChangeOutcome::Unchanged), count(ChangeOutcome::Stale), count(ChangeOutcome::Ignored));
        let status = if applied > 0 {
            "applied"
        } else if stale > 0 {
            "stale"
        } else if unchanged > 0 {
            "unchanged"
        } else {
            "ignored"
        };
        FeedReport { status, applied, unchanged, stale, ignored, rejected: Vec::new(), store_version: version }
    }
}

/// Parses an RFC 3339 timestamp into Unix milliseconds.
pub fn rfc3339_ms(text: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Unix milliseconds as RFC 3339 (UTC), for `updated_at_min` and status bodies.
pub fn ms_rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}
