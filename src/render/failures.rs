//! Who broke what: block failures by store, as counters in `/metrics` and as a short list of
//! recent ones per store for the store's admin (`GET …/stores/{s}/block-failures`).
//!
//! The metric's `store` label is bounded: the first `render.failure_metric_stores` stores that
//! have a failure on this node are named, any further store counts as `other`.

use std::collections::{HashMap, HashSet, VecDeque};

use parking_lot::Mutex;
use serde::Serialize;

use crate::engine::BlockFailure;
use crate::ids::StoreId;

/// Longest message kept for one failure.
const MESSAGE_CHARS: usize = 300;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureRecord {
    pub block_id: String,
    pub block_type: String,
    /// The page slug (`product`, `search`, … for built-in routes).
    pub page: String,
    pub reason: &'static str,
    pub message: String,
    /// RFC 3339.
    pub at: String,
}

pub struct FailureLog {
    kept_per_store: usize,
    named_stores: usize,
    recent: Mutex<HashMap<StoreId, VecDeque<FailureRecord>>>,
    named: Mutex<HashSet<StoreId>>,
}

impl FailureLog {
    pub fn new(kept_per_store: usize, named_stores: usize) -> FailureLog {
        FailureLog { kept_per_store, named_stores, recent: Mutex::new(HashMap::new()), named: Mutex::new(HashSet::new()) }
    }

    /// Counts and keeps one block's failure.
    pub fn record(&self, store: &StoreId, page: &str, block_id: &str, block_type: &str, failure: &BlockFailure) {
        let message = match failure {
            BlockFailure::Error(m) => m.chars().take(MESSAGE_CHARS).collect(),
            _ => String::new(),
        };
        tracing::warn!(%store, page, block_id, block_type, reason = failure.code(), message, "block failed");
        let label = {
            let mut named = self.named.lock();
            if named.contains(store) || (named.len() < self.named_stores && named.insert(store.clone())) {
                store.as_str().to_string()
            } else {
                "other".to_string()
            }
        };
        crate::metrics::incr("vitrina_block_failures_total", &[("store", &label), ("reason", failure.code())]);
        if self.kept_per_store == 0 {
            return;
        }
        let record = FailureRecord {
            block_id: block_id.to_string(),
            block_type: block_type.to_string(),
            page: page.to_string(),
            reason: failure.code(),
            message,
            at: crate::clock::now_rfc3339(),
        };
        let mut recent = self.recent.lock();
        let list = recent.entry(store.clone()).or_default();
        if list.len() >= self.kept_per_store {
            list.pop_front();
        }
        list.push_back(record);
    }

    /// The store's recent failures on this node, newest first.
    pub fn recent(&self, store: &StoreId) -> Vec<FailureRecord> {
        self.recent.lock().get(store).map(|l| l.iter().rev().cloned().collect()).unwrap_or_default()
    }

    /// Forgets a store (it was deleted or moved away).
    pub fn forget(&self, store: &StoreId) {
        self.recent.lock().remove(store);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_per_store_and_bounds_the_store_label() {
        let log = FailureLog::new(2, 1);
        let (a, b) = (StoreId::parse("fa").unwrap(), StoreId::parse("fb").unwrap());
        for id in ["x1", "x2", "x3"] {
            log.record(&a, "home", id, "custom", &BlockFailure::Timeout);
        }
        log.record(&b, "home", "y1", "custom", &BlockFailure::Error("boom".into()));
        let ids: Vec<String> = log.recent(&a).into_iter().map(|r| r.block_id).collect();
        assert_eq!(ids, ["x3", "x2"]);
        assert_eq!(log.recent(&b)[0].message, "boom");
        assert_eq!(crate::metrics::get("vitrina_block_failures_total", &[("store", "fa"), ("reason", "timeout")]), 3);
        assert_eq!(crate::metrics::get("vitrina_block_failures_total", &[("store", "other"), ("reason", "error")]), 1);
    }
}
