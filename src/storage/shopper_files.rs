//! Shopper files per store on this node, against `shopper.max_per_store`.

use parking_lot::Mutex;

use crate::ids::StoreId;
use crate::sqlite::{StorageError, StorageResult};

/// Shopper files per store on this node, against `shopper.max_per_store`: a new shopper's first
/// write is admitted here before its file is created. Counted at startup from the directory and
/// re-counted at every sweep (`actors::sweeper`), which also corrects for files that came in by
/// hand-off or restore (not admitted here: they are existing shoppers).
pub struct ShopperFiles {
    /// 0: no limit (files are still counted).
    limit: usize,
    counts: Mutex<FileCounts>,
}

#[derive(Default)]
struct FileCounts {
    per_store: std::collections::HashMap<StoreId, usize>,
    /// While a recount walks the directory: admissions and releases since it started, added to
    /// what it finds (a file created during the walk may be counted twice until the next
    /// recount; never missed).
    since_walk: Option<std::collections::HashMap<StoreId, isize>>,
}

impl ShopperFiles {
    pub fn new(limit: usize) -> ShopperFiles {
        ShopperFiles { limit, counts: Default::default() }
    }

    /// Counts one more file for `store`, or refuses it past the limit.
    pub fn admit(&self, store: &StoreId) -> StorageResult<()> {
        let mut counts = self.counts.lock();
        let count = counts.per_store.entry(store.clone()).or_default();
        if self.limit != 0 && *count >= self.limit {
            crate::metrics::incr("vitrina_shopper_files_refused_total", &[]);
            return Err(StorageError::ShopperLimit { limit: self.limit });
        }
        *count += 1;
        if let Some(since) = counts.since_walk.as_mut() {
            *since.entry(store.clone()).or_default() += 1;
        }
        Ok(())
    }

    /// One file of `store` fewer (deleted, or its creation failed).
    pub fn release(&self, store: &StoreId) {
        let mut counts = self.counts.lock();
        if let Some(count) = counts.per_store.get_mut(store) {
            *count = count.saturating_sub(1);
        }
        if let Some(since) = counts.since_walk.as_mut() {
            *since.entry(store.clone()).or_default() -= 1;
        }
    }

    /// A walk of the data directory starts: changes from now on are added to what it finds.
    pub fn begin_recount(&self) {
        self.counts.lock().since_walk = Some(Default::default());
    }

    /// The walk found `found` files per store.
    pub fn finish_recount(&self, mut found: std::collections::HashMap<StoreId, usize>) {
        let mut counts = self.counts.lock();
        for (store, delta) in counts.since_walk.take().unwrap_or_default() {
            let n = found.entry(store).or_default();
            *n = n.saturating_add_signed(delta);
        }
        counts.per_store = found;
    }

    pub fn count(&self, store: &StoreId) -> usize {
        self.counts.lock().per_store.get(store).copied().unwrap_or(0)
    }
}
