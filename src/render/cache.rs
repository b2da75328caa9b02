//! The two HTML caches of a node.
//!
//! - Personal pages: one shopper's rendered page, valid while neither the store's version nor
//!   the shopper's state version changed, for at most the configured TTL (60 s). Never shared.
//!   A TTL of 0 disables it (every page is rendered), for benchmarking the render path.
//! - Anonymous pages: the generic page a first visit (no session yet) gets, keyed by store id,
//!   path, device class and the store's published version, so a publish makes old entries
//!   unreachable, and a host that moves to another store never serves the old store's page.
//!   An anonymous page whose blocks hit a CPU or heap limit is kept apart, only for the failed
//!   page TTL (`render::failed`): the HTTP workers answer it without a hop to the store actor.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;

use crate::config::CacheSettings;

#[derive(Debug)]
pub struct CachedPage {
    pub html: Bytes,
    pub store_version: u64,
    pub state_version: u64,
    pub rendered_ms: i64,
}

#[allow(clippy::ptr_arg)] // moka's weigher is called with `&K`, here `&String`
fn weigh(key: &String, page: &Arc<CachedPage>) -> u32 {
    (key.len() + page.html.len()).try_into().unwrap_or(u32::MAX)
}

pub struct PersonalPages {
    cache: moka::sync::Cache<String, Arc<CachedPage>>,
    /// `personal_html_ttl_secs = 0` turns the cache off: every page is rendered (the render
    /// path benchmark, W1b). Explicit, because a zero TTL is not a documented "off" switch of
    /// moka: entries would still be inserted, weighed and evicted on every render.
    enabled: bool,
}

impl PersonalPages {
    pub fn new(settings: &CacheSettings) -> PersonalPages {
        PersonalPages {
            enabled: settings.personal_html_ttl_secs > 0,
            cache: moka::sync::Cache::builder()
                .max_capacity(settings.personal_html_max_bytes)
                .weigher(weigh)
                .time_to_live(Duration::from_secs(settings.personal_html_ttl_secs))
                .build(),
        }
    }

    /// The cache key of one shopper's page for one request (`PageRequest::cache_key`): the
    /// actor and the HTTP workers' shortcut must agree on it.
    pub fn key(shopper: &crate::ids::ActorKey, request_key: &str) -> String {
        format!("{shopper}|{request_key}")
    }

    /// A page rendered for exactly these versions, if still cached.
    pub fn get(&self, key: &str, store_version: u64, state_version: u64) -> Option<Bytes> {
        if !self.enabled {
            return None;
        }
        let Some(hit) = self.cache.get(key) else {
            count("personal", "miss");
            return None;
        };
        if hit.store_version == store_version && hit.state_version == state_version {
            count("personal", "hit");
            Some(hit.html.clone())
        } else {
            // A stale page is a miss: the shopper's page renders again.
            self.cache.invalidate(key);
            count("personal", "miss");
            None
        }
    }

    pub fn insert(&self, key: String, page: CachedPage) {
        if self.enabled {
            self.cache.insert(key, Arc::new(page));
        }
    }

    /// The entry as it is, without version checks or metrics (for saving at passivation).
    pub fn peek(&self, key: &str) -> Option<Arc<CachedPage>> {
        if !self.enabled {
            return None;
        }
        self.cache.get(key)
    }
}

/// `vitrina_page_cache_total{kind, result}`: hit ratios of both page caches.
fn count(kind: &'static str, result: &'static str) {
    crate::metrics::incr("vitrina_page_cache_total", &[("kind", kind), ("result", result)]);
}

pub struct AnonymousPages {
    cache: moka::sync::Cache<String, Bytes>,
    /// Pages that hit a limit, by the same key; `None` when failed pages are not remembered.
    failed: Option<moka::sync::Cache<String, Bytes>>,
}

/// Bytes of anonymous failed pages per node.
const MAX_FAILED_BYTES: u64 = 16 * 1024 * 1024;

impl AnonymousPages {
    pub fn new(settings: &CacheSettings, failed_ttl_secs: u64) -> AnonymousPages {
        AnonymousPages {
            failed: (failed_ttl_secs > 0).then(|| {
                moka::sync::Cache::builder()
                    .max_capacity(MAX_FAILED_BYTES)
                    .weigher(|k: &String, v: &Bytes| (k.len() + v.len()).try_into().unwrap_or(u32::MAX))
                    .time_to_live(Duration::from_secs(failed_ttl_secs))
                    .build()
            }),
            cache: moka::sync::Cache::builder()
                .max_capacity(settings.anonymous_page_max_bytes)
                .weigher(|k: &String, v: &Bytes| (k.len() + v.len()).try_into().unwrap_or(u32::MAX))
                // Bounded staleness even if a version bump were missed.
                .time_to_live(Duration::from_secs(300))
                .build(),
        }
    }

    pub fn key(store: &crate::ids::StoreId, store_version: u64, request_key: &str) -> String {
        format!("{store}|{store_version}|{request_key}")
    }

    pub fn get(&self, key: &str) -> Option<Bytes> {
        let hit = self.cache.get(key);
        count("anonymous", if hit.is_some() { "hit" } else { "miss" });
        hit
    }

    pub fn insert(&self, key: String, html: Bytes) {
        self.cache.insert(key, html);
    }

    /// The page as it rendered when its blocks hit a limit, while it is remembered as failed.
    pub fn get_failed(&self, key: &str) -> Option<Bytes> {
        let hit = self.failed.as_ref()?.get(key);
        if hit.is_some() {
            crate::metrics::incr("vitrina_failed_page_hits_total", &[]);
        }
        hit
    }

    pub fn insert_failed(&self, key: String, html: Bytes) {
        if let Some(failed) = &self.failed {
            failed.insert(key, html);
        }
    }
}
