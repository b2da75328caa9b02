//! Pages whose blocks hit a CPU or heap limit, remembered briefly by everything the blocks saw
//! (store version, limits, each block's id, code version, type and config, and the page's ctx
//! JSON): the same inputs would run the same loop again, so the next requests get the page as it
//! rendered, placeholders and all, without running a block. Only outcomes are kept; the shell
//! around them is built per request as usual.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::{BlockFailure, BlockOutcome};

pub struct FailedPages {
    cache: Option<moka::sync::Cache<String, Arc<Vec<BlockOutcome>>>>,
}

/// Bytes of remembered outcomes per node.
const MAX_BYTES: u64 = 32 * 1024 * 1024;

impl FailedPages {
    pub fn new(ttl_secs: u64) -> FailedPages {
        let cache = (ttl_secs > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(MAX_BYTES)
                .weigher(|k: &String, v: &Arc<Vec<BlockOutcome>>| {
                    let outcomes: usize = v.iter().map(|o| o.as_ref().map_or(64, |html| html.len() + 32)).sum();
                    (k.len() + outcomes).try_into().unwrap_or(u32::MAX)
                })
                .time_to_live(Duration::from_secs(ttl_secs))
                .build()
        });
        FailedPages { cache }
    }

    /// Whether these outcomes are worth remembering: a block ran into a limit that costs CPU or
    /// memory to reach again.
    pub fn worth_remembering(outcomes: &[BlockOutcome]) -> bool {
        outcomes
            .iter()
            .any(|o| matches!(o, Err(BlockFailure::Timeout | BlockFailure::HeapLimit | BlockFailure::Skipped | BlockFailure::Crashed)))
    }

    pub fn get(&self, key: &str) -> Option<Arc<Vec<BlockOutcome>>> {
        let hit = self.cache.as_ref()?.get(key);
        if hit.is_some() {
            crate::metrics::incr("vitrina_failed_page_hits_total", &[]);
        }
        hit
    }

    pub fn insert(&self, key: String, outcomes: Vec<BlockOutcome>) {
        if let Some(cache) = &self.cache {
            cache.insert(key, Arc::new(outcomes));
        }
    }
}
