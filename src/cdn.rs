//! Telling a store's CDN to drop the anonymous pages it cached: a store may configure a purge
//! URL, which the node POSTs (with the store's surrogate keys as `Surrogate-Key` and
//! `Cache-Tag` headers, and as JSON) after each change of what those pages show. The call goes
//! through the egress client, so its allow-list and address checks apply at every call.
//!
//! A purge never holds up the change that caused it: it runs in a task of its own, retried
//! with backoff (`cache.purge_attempts`, `cache.purge_backoff_ms`), its failures counted in
//! `vitrina_cdn_purges_total{outcome}` and logged. Changes made while a purge is under way
//! coalesce into one more purge: the store's key covers all of its versions.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use reqwest::Method;

use crate::egress::EgressError;
use crate::ids::StoreId;

/// Largest purge answer read (its body is not used).
const ANSWER_CAP: u64 = 64 * 1024;

/// The surrogate keys of a store's anonymous page of `version`: the store's (every version)
/// and the version's own.
pub fn surrogate_keys(store: &str, version: u64) -> [String; 2] {
    [format!("vitrina-store-{store}"), format!("vitrina-store-{store}-v{version}")]
}

/// One store's purge URL and purges.
#[derive(Default)]
pub struct StorePurge {
    url: Mutex<Option<String>>,
    state: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    /// A purge task is running (it takes `pending` until there is none).
    running: bool,
    /// The version a change replaced, to purge once more.
    pending: Option<u64>,
}

/// How purges are retried.
#[derive(Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub backoff: Duration,
}

impl StorePurge {
    pub fn set_url(&self, url: Option<String>) {
        *self.url.lock() = url;
    }

    pub fn url(&self) -> Option<String> {
        self.url.lock().clone()
    }

    /// The store's pages of `previous` (and before) are stale: purge them, now or after the
    /// purge under way. Nothing without a purge URL.
    pub fn changed(self: &Arc<Self>, store: &StoreId, previous: u64, retry: Retry) {
        if self.url.lock().is_none() {
            return;
        }
        {
            let mut queue = self.state.lock();
            queue.pending = Some(previous);
            if queue.running {
                return;
            }
            queue.running = true;
        }
        let (this, store) = (self.clone(), store.clone());
        tokio::spawn(async move {
            loop {
                let next = {
                    let mut queue = this.state.lock();
                    let next = queue.pending.take();
                    queue.running = next.is_some();
                    next
                };
                let (Some(version), Some(url)) = (next, this.url()) else {
                    this.state.lock().running = false;
                    return;
                };
                purge_with_retries(&url, &store, version, retry).await;
            }
        });
    }
}

fn count(outcome: &'static str) {
    crate::metrics::incr("vitrina_cdn_purges_total", &[("outcome", outcome)]);
}

async fn purge_with_retries(url: &str, store: &StoreId, version: u64, retry: Retry) {
    let attempts = retry.attempts.max(1);
    let mut wait = retry.backoff;
    for attempt in 1..=attempts {
        match purge_once(url, store, version).await {
            Ok(()) => {
                count("ok");
                return;
            }
            // The policy refuses this URL on every call: retrying changes nothing.
            Err(PurgeError::Egress(EgressError::Refused | EgressError::InvalidUrl)) => {
                count("refused");
                tracing::warn!(%store, "CDN purge refused by the egress policy");
                return;
            }
            Err(e) if attempt == attempts => {
                count("failed");
                tracing::warn!(%store, error = %e, attempts, "CDN purge failed; giving up");
                return;
            }
            Err(e) => {
                count("retried");
                tracing::info!(%store, error = %e, attempt, "CDN purge failed; retrying");
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2);
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum PurgeError {
    #[error(transparent)]
    Egress(#[from] EgressError),
    #[error("the purge URL answered {0}")]
    Status(u16),
}

async fn purge_once(url: &str, store: &StoreId, version: u64) -> Result<(), PurgeError> {
    let keys = surrogate_keys(store.as_str(), version);
    let body = serde_json::json!({"store": store.as_str(), "version": version, "surrogateKeys": keys});
    let request = crate::egress::global()
        .request(Method::POST, url)?
        .header("surrogate-key", keys.join(" "))
        .header("cache-tag", keys.join(","))
        .header("content-type", "application/json")
        .body(body.to_string());
    let (status, _) = crate::egress::global().execute(request, Some(ANSWER_CAP)).await?;
    if status.is_success() {
        Ok(())
    } else {
        Err(PurgeError::Status(status.as_u16()))
    }
}
