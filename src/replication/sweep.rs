//! Collecting superseded copies. Every upload writes a new object, so each commit leaves the
//! previous copy behind; it stays for a grace period (a restore that read the previous pointer
//! can still fetch it), then the sweep deletes it. The sweep deletes only objects of a key
//! that are neither its current copy nor younger than the grace period, which also spares an
//! upload between its PUT and its commit.
//!
//! Keys are swept when due: a commit schedules its key one grace period later, a restore at
//! once (leftovers of earlier holders); a sweep that leaves a young superseded object behind
//! schedules the key again for when it comes of age. The old-layout copy of a key (one object
//! overwritten in place, before pointers) counts as superseded once the key has a pointer.
//!
//! The schedule lives in memory: a restart or crash forgets it, and an upload whose commit
//! failed may leave an object behind. So a grace period after start, and every
//! `LEFTOVER_PASS_GRACES` grace periods after that, the node lists every copy under the prefix
//! and schedules each key with more than one object (every node lists everything: a key swept
//! twice costs requests, never a copy).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{copies_dir, legacy_object, ReplicationResult, Replicator};
use crate::ids::{ActorKey, SessionId, StoreId};

/// How often, in grace periods, the whole prefix is listed for leftovers.
const LEFTOVER_PASS_GRACES: u32 = 6;

impl Replicator {
    /// Sweeps `key` at `at` (or earlier, if it is already due earlier).
    pub(super) fn schedule_sweep(&self, key: &ActorKey, at: Instant) {
        let mut due = self.sweep_due.lock();
        let entry = due.entry(key.clone()).or_insert(at);
        if at < *entry {
            *entry = at;
        }
    }

    /// Sweeps every key that is due, at most `max_concurrent_uploads` at a time; returns how
    /// many objects were deleted.
    pub async fn sweep_due(&self) -> usize {
        let now = Instant::now();
        let keys: Vec<ActorKey> = {
            let mut due = self.sweep_due.lock();
            let ready: Vec<ActorKey> = due.iter().filter(|(_, at)| **at <= now).map(|(k, _)| k.clone()).collect();
            for key in &ready {
                due.remove(key);
            }
            ready
        };
        let deleted = std::sync::atomic::AtomicUsize::new(0);
        futures::stream::iter(keys)
            .for_each_concurrent(self.concurrency, |key| {
                let deleted = &deleted;
                async move {
                    match self.sweep_key(&key).await {
                        Ok((n, next)) => {
                            deleted.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                            if let Some(at) = next {
                                self.schedule_sweep(&key, at);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(%key, error = %e, "sweeping superseded copies failed; retrying later");
                            self.schedule_sweep(&key, Instant::now() + self.grace.max(Duration::from_secs(1)));
                        }
                    }
                }
            })
            .await;
        deleted.into_inner()
    }

    /// Deletes the copies of `key` that are neither current nor younger than the grace period.
    /// Returns how many it deleted and when the youngest superseded copy it kept comes of age.
    async fn sweep_key(&self, key: &ActorKey) -> ReplicationResult<(usize, Option<Instant>)> {
        // The pointer is read before the listing: a copy committed in between is young.
        let current = self.ledger.current(key).await?;
        let objects = self.key_objects(key).await?;
        let (copies, legacy) = (format!("{}/", copies_dir(&self.prefix, key)), legacy_object(&self.prefix, key));
        let now = OffsetDateTime::now_utc();
        let kind = crate::runtime::registry::key_kind(key);
        let (mut deleted, mut next) = (0, None::<Instant>);
        for object in objects {
            let superseded = match &current {
                Some(c) => c.object != object.key && (object.key.starts_with(&copies) || object.key == legacy),
                // Without a pointer an old-layout copy is still the current one.
                None => object.key.starts_with(&copies),
            };
            if !superseded {
                continue;
            }
            // A copy whose age cannot be read is kept: never delete what cannot be dated.
            let Ok(modified) = OffsetDateTime::parse(&object.last_modified, &Rfc3339) else {
                tracing::warn!(object = %object.key, modified = %object.last_modified, "copy with an unreadable date kept");
                continue;
            };
            let age = Duration::try_from(now - modified).unwrap_or(Duration::ZERO);
            if age < self.grace {
                let at = Instant::now() + (self.grace - age);
                next = Some(next.map_or(at, |n: Instant| n.min(at)));
                continue;
            }
            self.delete_object(&object.key).await?;
            crate::metrics::incr("vitrina_replication_swept_total", &[("kind", kind)]);
            deleted += 1;
        }
        Ok((deleted, next))
    }

    /// Lists every object under the prefix and schedules the keys with more than one copy (or
    /// a copy beside an old-layout one); returns how many keys it scheduled. Objects are counted
    /// per listing page, so a key whose objects straddle two pages may wait for another pass.
    pub async fn schedule_leftovers(&self) -> ReplicationResult<usize> {
        let root = if self.prefix.is_empty() { "stores/".to_string() } else { format!("{}/stores/", self.prefix) };
        let (mut continuation, mut scheduled) = (None, 0);
        loop {
            let (page, _) = self.bucket.list_page(root.clone(), None, continuation, None, None).await?;
            let mut counts: HashMap<ActorKey, usize> = HashMap::new();
            for object in &page.contents {
                if let Some(key) = copy_owner(&self.prefix, &object.key) {
                    *counts.entry(key).or_default() += 1;
                }
            }
            for (key, _) in counts.into_iter().filter(|(_, n)| *n > 1) {
                self.schedule_sweep(&key, Instant::now());
                scheduled += 1;
            }
            continuation = page.next_continuation_token;
            if continuation.is_none() {
                return Ok(scheduled);
            }
        }
    }

    /// Starts the periodic sweep on the current runtime.
    pub fn spawn_sweep_loop(self: &std::sync::Arc<Self>) {
        let this = self.clone();
        let every = (self.grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // What the previous run left is of age one grace period after start.
            let mut leftover_pass = Instant::now() + this.grace;
            loop {
                tick.tick().await;
                if Instant::now() >= leftover_pass {
                    leftover_pass = Instant::now() + this.grace * LEFTOVER_PASS_GRACES;
                    if let Err(e) = this.schedule_leftovers().await {
                        tracing::warn!(error = %e, "listing the bucket for leftover copies failed; retrying at the next pass");
                    }
                }
                this.sweep_due().await;
            }
        });
    }
}

/// The actor a copy or old-layout copy belongs to, parsed back from its object key
/// (`{prefix}/stores/{store}/store/copies/…`, `…/shoppers/{sid}/copies/…`, `…/store.db`,
/// `…/shoppers/{sid}.db`); `None` for anything else, pointers included.
fn copy_owner(prefix: &str, object: &str) -> Option<ActorKey> {
    let rel = if prefix.is_empty() { object } else { object.strip_prefix(prefix)?.strip_prefix('/')? };
    let parts: Vec<&str> = rel.split('/').collect();
    match parts.as_slice() {
        ["stores", store, "store", "copies", _] | ["stores", store, "store.db"] => Some(ActorKey::Store(StoreId::parse(store).ok()?)),
        ["stores", store, "shoppers", sid, "copies", _] => {
            Some(ActorKey::Shopper(StoreId::parse(store).ok()?, SessionId::parse(sid).ok()?))
        }
        ["stores", store, "shoppers", file] => {
            Some(ActorKey::Shopper(StoreId::parse(store).ok()?, SessionId::parse(file.strip_suffix(".db")?).ok()?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_traced_back_to_their_actor() {
        let store = ActorKey::Store(StoreId::parse("shop").unwrap());
        let shopper = ActorKey::Shopper(StoreId::parse("shop").unwrap(), SessionId::parse("s1").unwrap());
        for (prefix, object, key) in [
            ("p/q", "p/q/stores/shop/store/copies/00-01-ab.db", Some(&store)),
            ("p/q", "p/q/stores/shop/store.db", Some(&store)),
            ("", "stores/shop/shoppers/s1/copies/00-01-ab.db", Some(&shopper)),
            ("p", "p/stores/shop/shoppers/s1.db", Some(&shopper)),
            ("p", "p/stores/shop/shoppers/s1/current.json", None),
            ("p", "p/stores/shop/store/current.json", None),
            ("p", "other/stores/shop/store.db", None),
            ("p", "p/stores/sh..op/store.db", None),
        ] {
            assert_eq!(copy_owner(prefix, object).as_ref(), key, "{object}");
        }
        // Every copy the replicator names is traced back.
        for key in [&store, &shopper] {
            assert_eq!(copy_owner("p", &format!("{}/x.db", copies_dir("p", key))).as_ref(), Some(key));
            assert_eq!(copy_owner("p", &legacy_object("p", key)).as_ref(), Some(key));
        }
    }
}
