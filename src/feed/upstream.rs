//! HTTP to the outside: upstream catalog pages and order handoff to a commerce backend, both
//! through the egress client (`crate::egress`): merchants configure these URLs.
//!
//! Paging is `?page=N&limit=L` (1-based); a page with fewer than `L` products is the last.
//! Incremental runs add `updated_at_min=<RFC 3339>`. Each page request has a timeout and is
//! retried with exponential backoff and full jitter; a page that still fails fails the run (the
//! circuit breaker counts runs, see `breaker`).

use std::time::Duration;

use rand::Rng;
use serde::Deserialize;
use serde_json::Value;

use super::{ms_rfc3339, shopify, CatalogChange};
use crate::config::FeedSettings;

/// Delay before retry `attempt` (0-based): base·2^attempt, capped, with full jitter in
/// [d/2, d] so stores whose upstream fails together do not retry in lockstep.
pub fn backoff(base_ms: u64, attempt: u32, cap_ms: u64) -> Duration {
    let d = base_ms.saturating_mul(1u64 << attempt.min(20)).min(cap_ms).max(1);
    Duration::from_millis(rand::thread_rng().gen_range(d / 2..=d))
}

#[derive(Deserialize)]
struct PageBody {
    products: Vec<Value>,
}

/// A fetched page: the changes it holds, products that failed to parse, and the newest
/// `updated_at` seen (the next incremental run's cursor).
pub struct Page {
    pub changes: Vec<CatalogChange>,
    pub received: usize,
    pub rejected: Vec<String>,
    pub max_updated_ms: Option<i64>,
}

fn page_url(base: &str, page: u32, limit: u32, updated_min_ms: Option<i64>) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    let mut url = format!("{base}{sep}page={page}&limit={limit}");
    if let Some(ms) = updated_min_ms {
        url.push_str("&updated_at_min=");
        url.push_str(&ms_rfc3339(ms).replace('+', "%2B"));
    }
    url
}

/// Fetches one page with retries. `Err` carries the last failure, for the sync status.
pub async fn fetch_page(settings: &FeedSettings, base: &str, page: u32, updated_min_ms: Option<i64>, now_ms: i64) -> Result<Page, String> {
    let url = page_url(base, page, settings.page_limit, updated_min_ms);
    let mut last_error = String::new();
    for attempt in 0..=settings.retries {
        if attempt > 0 {
            tokio::time::sleep(backoff(settings.backoff_base_ms, attempt - 1, 30_000)).await;
        }
        match fetch_once(&url, settings.request_timeout_ms).await {
            Ok(body) => return Ok(parse_page(body, now_ms)),
            Err(e) => {
                crate::metrics::incr("vitrina_sync_requests_failed_total", &[]);
                last_error = format!("page {page}: {e}");
            }
        }
    }
    Err(last_error)
}

async fn fetch_once(url: &str, timeout_ms: u64) -> Result<PageBody, String> {
    let egress = crate::egress::global();
    let request = egress
        .request(reqwest::Method::GET, url)
        .map_err(|e| e.to_string())?
        .timeout(Duration::from_millis(timeout_ms))
        .header("accept", "application/json");
    let (status, body) = egress.execute(request, None).await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("upstream answered {status}"));
    }
    serde_json::from_slice::<PageBody>(&body).map_err(|e| format!("invalid products page: {e}"))
}

fn parse_page(body: PageBody, now_ms: i64) -> Page {
    let received = body.products.len();
    let mut changes = Vec::with_capacity(received);
    let mut rejected = Vec::new();
    let mut max_updated_ms = None;
    for raw in body.products {
        let parsed = serde_json::from_value::<shopify::ShopifyProduct>(raw)
            .map_err(|e| e.to_string())
            .and_then(|p| shopify::product_change(p, now_ms));
        match parsed {
            Ok(change) => {
                if let CatalogChange::Upsert(u) = &change {
                    max_updated_ms = max_updated_ms.max(Some(u.updated_ms));
                }
                changes.push(change);
            }
            Err(e) => rejected.push(e),
        }
    }
    Page { changes, received, rejected, max_updated_ms }
}

/// What a commerce backend said to an order.
pub enum Delivery {
    /// 2xx: accepted. Its body, if JSON.
    Accepted(Option<Value>),
    /// Anything else; retried later.
    Failed(String),
}

/// POSTs an order with its id as `Idempotency-Key`, so redeliveries after a lost answer are
/// recognised by the backend: exactly once from its point of view.
pub async fn deliver_order(url: &str, order_id: &str, order: &Value, timeout_ms: u64) -> Delivery {
    let egress = crate::egress::global();
    let request = match egress.request(reqwest::Method::POST, url) {
        Ok(r) => r.timeout(Duration::from_millis(timeout_ms)).header("idempotency-key", order_id).json(order),
        Err(e) => return Delivery::Failed(e.to_string()),
    };
    match egress.execute(request, None).await {
        Err(e) => Delivery::Failed(e.to_string()),
        Ok((status, body)) if status.is_success() => Delivery::Accepted(serde_json::from_slice::<Value>(&body).ok()),
        Ok((status, _)) => Delivery::Failed(format!("backend answered {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 0..5 {
            let d = backoff(100, attempt, 1_000).as_millis() as u64;
            let full = (100u64 << attempt).min(1_000);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d}");
        }
    }

    #[test]
    fn page_urls() {
        assert_eq!(page_url("http://u/products.json", 2, 250, None), "http://u/products.json?page=2&limit=250");
        assert_eq!(page_url("http://u/p?x=1", 1, 5, Some(0)), "http://u/p?x=1&page=1&limit=5&updated_at_min=1970-01-01T00:00:00Z");
    }
}
