//! Durability beyond one node: every actor's SQLite file is copied to S3-compatible object
//! storage, and a node that finds an actor's file missing fetches the copy before activating it.
//!
//! Object keys are built only from validated ids and the configured (validated) prefix. Each
//! actor has a directory of copies and a pointer to the current one:
//! ```text
//! {prefix}/stores/{store}/store/                   the store actor
//! {prefix}/stores/{store}/shoppers/{sid}/          a shopper actor
//!     copies/{token:020}-{seq:016}-{rand:08x}.db   one object per upload, never overwritten
//!     current.json                                 {object, sha256, token, seq}
//! ```
//! An upload writes a **new** object (its sha256 also in the object metadata,
//! `x-amz-meta-sha256`), and only then makes it current through the [`CopyLedger`], guarded by
//! the uploader's fencing token: a copy committed under a greater token (a newer owner's) is
//! never replaced, and the refused upload is deleted and reported as
//! [`ReplicationError::Fenced`]. Restore reads the pointer and checks the copy against the
//! pointer's sha256. Superseded copies are deleted by the sweep after a grace period
//! (`sweep.rs`). The token comes from the node ([`TokenSource`]); the pointer lives in the
//! bucket ([`BucketLedger`]) unless the node gives another ledger.
//!
//! When a snapshot is taken:
//! - **periodically**: every committed write marks its actor dirty (a hook in
//!   [`ActorDb`](crate::storage::ActorDb)); every `snapshot_interval_ms` the node uploads the
//!   dirty actors, a bounded number at a time. An actor without new commits is not uploaded.
//! - **at passivation**: a dirty actor is uploaded as soon as its file is closed, without
//!   waiting for the next tick (its next activation may be on another node).
//! - **before the acknowledgement** of a write to a store with `durability = "sync"`: the actor
//!   awaits the upload within its turn; a failed upload answers 503 `replication_failed` while
//!   the local commit stands.
//!
//! Recovery point: with `async`, a lost node loses at most the writes of the last
//! `snapshot_interval_ms` plus the upload time; with `sync`, no acknowledged write.
//!
//! Ordering: snapshots, uploads and commits of one key are serialised (a per-key async mutex
//! held from the snapshot to the end of the commit), so this node's copies become current in
//! the order their snapshots were taken. The dirty mark is cleared *before* the snapshot is
//! taken, so a commit racing with the upload is either in the snapshot or marks the key dirty
//! again.

mod etcd_ledger;
mod ledger;
mod sweep;

pub use etcd_ledger::EtcdLedger;
pub use ledger::{BucketLedger, CopyLedger, CopyRef};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use parking_lot::Mutex;
use s3::creds::Credentials;
use s3::{Bucket, Region};
use sha2::{Digest, Sha256};

use crate::config::ReplicationSettings;
use crate::ids::ActorKey;
use crate::sqlite;
use crate::sqlite::{DataLayout, StorageError};
use crate::storage::ActorDb;

/// Object metadata holding the hex sha256 of the object's bytes.
const CHECKSUM_HEADER: &str = "x-amz-meta-sha256";
const CONTENT_TYPE: &str = "application/vnd.sqlite3";

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("the store requires durability \"sync\" but this node has no [replication] configured")]
    Disabled,
    #[error("invalid replication settings: {0}")]
    Config(String),
    #[error("object storage request failed: {0}")]
    S3(#[from] s3::error::S3Error),
    #[error("object storage answered HTTP {status} to {operation} {object}")]
    Status { operation: &'static str, object: String, status: u16 },
    #[error("copy {object} fails its checksum (expected {expected}, got {actual}); refusing to restore it")]
    Checksum { object: String, expected: String, actual: String },
    #[error("copy {object} fails the SQLite integrity check ({detail}); refusing to restore it")]
    Integrity { object: String, detail: String },
    #[error("copy {object} has no {CHECKSUM_HEADER} metadata; refusing to restore it")]
    MissingChecksum { object: String },
    #[error("the current copy {object} is missing from the bucket; refusing to start the actor empty")]
    MissingCopy { object: String },
    /// Another node owns the key: this node's copy may not become current.
    #[error("the copy of {key} was fenced: {reason}")]
    Fenced { key: String, reason: String },
    #[error("the copy ledger failed: {0}")]
    Ledger(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("blocking task failed: {0}")]
    Join(String),
}

impl From<tokio::task::JoinError> for ReplicationError {
    fn from(e: tokio::task::JoinError) -> Self {
        ReplicationError::Join(e.to_string())
    }
}

pub type ReplicationResult<T> = Result<T, ReplicationError>;

/// What one upload wrote and made current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub copy: CopyRef,
    pub bytes: u64,
}

/// The fencing token a node uploads a key's copy under: today a constant
/// (`replication.copy_token`), on a coordination engine the token this node holds the key's
/// shard with. `None`: this node does not own the key, and its upload is fenced before it starts.
/// Tokens must never go backwards for a bucket: a counter kept on the node's disk starts over
/// when the disk is lost, and every copy the node wrote before would then fence it.
pub type TokenSource = Arc<dyn Fn(&ActorKey) -> Option<u64> + Send + Sync>;

/// The same token for every key.
pub fn constant_token(token: u64) -> TokenSource {
    Arc::new(move |_| Some(token))
}

/// Copies actor files to and from one bucket. Built only when replication is configured.
pub struct Replicator {
    bucket: Box<Bucket>,
    /// Validated; no leading or trailing `/`; may be empty.
    prefix: String,
    layout: DataLayout,
    /// Snapshots are written here before upload; emptied at startup.
    scratch: PathBuf,
    interval: Duration,
    concurrency: usize,
    /// Where the current copy of each key is recorded.
    ledger: Arc<dyn CopyLedger>,
    tokens: TokenSource,
    /// Makes object names unique and ordered per node; starts at the boot's unix ms.
    seq: std::sync::atomic::AtomicU64,
    /// How long a superseded copy is kept, and when each key is next swept (`sweep.rs`).
    grace: Duration,
    sweep_due: Mutex<HashMap<ActorKey, std::time::Instant>>,
    /// Actors with commits not yet in an upload that started after them, each with the time
    /// of its oldest such commit. Shared with the commit hooks, which must not hold a
    /// reference to the replicator.
    dirty: Arc<Mutex<HashMap<ActorKey, Instant>>>,
    /// One async mutex per key with an upload or restore in progress (removed when idle).
    turns: Mutex<HashMap<ActorKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Uploads started and not finished (the dirty mark is cleared when an upload starts),
    /// each with the time of the oldest commit it carries.
    uploads_in_flight: Mutex<HashMap<u64, Instant>>,
    next_upload: std::sync::atomic::AtomicU64,
    /// Actors whose upload was refused while this node held no token for them (its lease
    /// lapsed, or the shard moved), each with the time of its oldest commit not uploaded. Their
    /// commits were acknowledged under the old token; when this node holds the shard again
    /// (and the file is not stale) they are uploaded under the new one.
    unheld: Mutex<HashMap<ActorKey, Instant>>,
}

impl Replicator {
    /// `Ok(None)` when no endpoint is configured: the node runs on its own disk alone. Copies
    /// are uploaded under the tokens of `tokens`; `ledger` records the current copies (`None`:
    /// a pointer object per key in the bucket, [`BucketLedger`]).
    pub fn from_settings(
        settings: &ReplicationSettings,
        layout: &DataLayout,
        tokens: TokenSource,
        ledger: Option<Arc<dyn CopyLedger>>,
    ) -> ReplicationResult<Option<Arc<Replicator>>> {
        if !settings.enabled() {
            return Ok(None);
        }
        let endpoint = settings.endpoint.as_deref().unwrap_or_default().trim().trim_end_matches('/').to_string();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(ReplicationError::Config(format!("endpoint must be an http:// or https:// URL, got {endpoint:?}")));
        }
        if settings.bucket.is_empty() {
            return Err(ReplicationError::Config("bucket is required".into()));
        }
        let prefix = validate_prefix(&settings.prefix)?;
        let credentials = match (settings.access_key.as_deref(), settings.secret_key.as_deref()) {
            (Some(access), Some(secret)) => Credentials::new(Some(access), Some(secret), None, None, None),
            (None, None) => Credentials::new(None, None, None, None, None),
            _ => return Err(ReplicationError::Config("set both access_key and secret_key, or neither".into())),
        }
        .map_err(|e| ReplicationError::Config(format!("credentials: {e}")))?;
        if credentials.access_key.is_none() || credentials.secret_key.is_none() {
            // rust-s3 panics when signing without a secret key; refuse at startup instead.
            return Err(ReplicationError::Config("no credentials: set access_key and secret_key".into()));
        }
        let region = Region::Custom { region: settings.region.clone(), endpoint };
        let mut bucket = Bucket::new(&settings.bucket, region, credentials)?;
        if settings.path_style {
            bucket = bucket.with_path_style();
        }
        let bucket = bucket.with_request_timeout(Duration::from_millis(settings.request_timeout_ms.max(100)))?;
        let scratch = layout.root().join("node").join("replication-tmp");
        // Leftovers of snapshots interrupted by a crash: never uploaded, safe to drop.
        match std::fs::remove_dir_all(&scratch) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        std::fs::create_dir_all(&scratch)?;
        let ledger = ledger.unwrap_or_else(|| Arc::new(BucketLedger::new(bucket.clone(), prefix.clone())));
        let boot_ms = u64::try_from(crate::clock::now_ms()).unwrap_or_default();
        Ok(Some(Arc::new(Replicator {
            bucket,
            prefix,
            ledger,
            tokens,
            seq: std::sync::atomic::AtomicU64::new(boot_ms),
            grace: Duration::from_millis(settings.sweep_grace_ms),
            sweep_due: Mutex::new(HashMap::new()),
            layout: layout.clone(),
            scratch,
            interval: Duration::from_millis(settings.snapshot_interval_ms.max(10)),
            concurrency: settings.max_concurrent_uploads.max(1),
            dirty: Arc::new(Mutex::new(HashMap::new())),
            uploads_in_flight: Mutex::new(HashMap::new()),
            next_upload: std::sync::atomic::AtomicU64::new(0),
            unheld: Mutex::new(HashMap::new()),
            turns: Mutex::new(HashMap::new()),
        })))
    }

    /// Attaches the hook that marks `key` dirty after every commit through `db`.
    pub fn track(&self, key: &ActorKey, db: ActorDb) -> ActorDb {
        let dirty = self.dirty.clone();
        let key = key.clone();
        db.with_commit_hook(Arc::new(move || {
            dirty.lock().entry(key.clone()).or_insert_with(Instant::now);
        }))
    }

    pub fn is_dirty(&self, key: &ActorKey) -> bool {
        self.dirty.lock().contains_key(key)
    }

    /// Actors whose latest commits may not be in object storage yet: marked dirty, or with an
    /// upload under way (an actor written to during its upload counts twice, so this is an
    /// upper bound). What a lost disk would cost right now, async durability's RPO as a count;
    /// `/metrics` reports it as `vitrina_replication_pending_actors`. 0 means all caught up.
    /// Refused uploads waiting for their shard count too: their writes are on this disk only.
    pub fn pending(&self) -> usize {
        self.requeue_held_again();
        self.dirty.lock().len() + self.uploads_in_flight.lock().len() + self.unheld.lock().len()
    }

    /// Keys whose upload was refused while this node held no token for them.
    pub fn unheld_keys(&self) -> Vec<ActorKey> {
        self.unheld.lock().keys().cloned().collect()
    }

    /// Stops waiting to upload `key` (its shard is another node's now).
    pub fn forget_unheld(&self, key: &ActorKey) {
        self.unheld.lock().remove(key);
    }

    /// Marks dirty again the refused actors whose shard this node holds again.
    fn requeue_held_again(&self) {
        let candidates: Vec<ActorKey> = self.unheld.lock().keys().cloned().collect();
        // The token source reads the cluster's state: not under the lock.
        let held: Vec<ActorKey> = candidates.into_iter().filter(|key| (self.tokens)(key).is_some()).collect();
        for key in held {
            let since = self.unheld.lock().remove(&key);
            if let Some(since) = since {
                self.mark_dirty(key, since);
            }
        }
    }

    /// How long the oldest commit not yet in object storage has waited (dirty or being
    /// uploaded); zero when all are caught up. The async window as a time: what `pending`
    /// counts, `/metrics` ages as `vitrina_replication_oldest_pending_seconds`.
    pub fn oldest_pending_age(&self) -> Duration {
        let dirty = self.dirty.lock().values().min().copied();
        let uploading = self.uploads_in_flight.lock().values().min().copied();
        dirty.into_iter().chain(uploading).min().map(|since| since.elapsed()).unwrap_or_default()
    }

    /// Marks `key` dirty again after a failed upload: its commits have waited since `since`.
    fn mark_dirty(&self, key: ActorKey, since: Instant) {
        let mut dirty = self.dirty.lock();
        let oldest = dirty.entry(key).or_insert(since);
        *oldest = (*oldest).min(since);
    }

    /// Uploads a consistent snapshot of the actor's file (live or closed), with its sha256 in
    /// the object metadata. `Ok(None)`: there is no local file to upload.
    pub async fn upload(&self, key: &ActorKey) -> ReplicationResult<Option<SnapshotInfo>> {
        let _turn = self.turn(key).await;
        let kind = crate::runtime::registry::key_kind(key);
        let result = self.upload_in_turn(key).await;
        let outcome = |outcome| crate::metrics::incr("vitrina_replication_uploads_total", &[("kind", kind), ("outcome", outcome)]);
        match &result {
            Ok(Some(info)) => {
                outcome("ok");
                crate::metrics::add("vitrina_replication_upload_bytes_total", &[("kind", kind)], info.bytes);
            }
            Ok(None) => {}
            Err(e @ ReplicationError::Fenced { .. }) => {
                outcome("fenced");
                tracing::warn!(%key, error = %e, "upload refused: another node holds the key's copies");
            }
            Err(e) => {
                outcome("failed");
                tracing::warn!(%key, error = %e, "upload to object storage failed");
            }
        }
        result
    }

    async fn upload_in_turn(&self, key: &ActorKey) -> ReplicationResult<Option<SnapshotInfo>> {
        // Read before the snapshot: the copy holds only what was written while it was held.
        let token = (self.tokens)(key)
            .ok_or_else(|| ReplicationError::Fenced { key: key.to_string(), reason: "this node does not own it".into() })?;
        let src = self.layout.actor_db(key);
        let tmp = self.scratch.join(format!("{}.db", uuid::Uuid::new_v4().simple()));
        let snapshot = tokio::task::spawn_blocking(move || -> ReplicationResult<Option<(Vec<u8>, String)>> {
            let _cleanup = RemoveOnDrop(&tmp);
            if !sqlite::consistent_copy(&src, &tmp)? {
                return Ok(None);
            }
            let bytes = std::fs::read(&tmp)?;
            let sha = hex::encode(Sha256::digest(&bytes));
            Ok(Some((bytes, sha)))
        })
        .await??;
        let Some((bytes, sha256)) = snapshot else { return Ok(None) };
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The random part keeps names unique between nodes that share a token.
        let object = format!("{}/{token:020}-{seq:016}-{:08x}.db", copies_dir(&self.prefix, key), rand::random::<u32>());
        let mut headers = http::HeaderMap::new();
        let value = http::HeaderValue::from_str(&sha256).map_err(|e| ReplicationError::Config(e.to_string()))?;
        headers.insert(http::HeaderName::from_static(CHECKSUM_HEADER), value);
        let response =
            self.bucket.put_object_with_content_type_and_headers(format!("/{object}"), &bytes, CONTENT_TYPE, Some(headers)).await?;
        if !(200..300).contains(&response.status_code()) {
            return Err(ReplicationError::Status { operation: "PUT", object, status: response.status_code() });
        }
        // The copy is complete; only now may anything point at it.
        let copy = CopyRef { object, sha256, token, seq };
        match self.ledger.commit(key, &copy).await {
            Ok(()) => {
                // The previous copy is superseded: collect it once the grace period has passed.
                self.schedule_sweep(key, std::time::Instant::now() + self.grace);
                Ok(Some(SnapshotInfo { copy, bytes: bytes.len() as u64 }))
            }
            Err(fenced @ ReplicationError::Fenced { .. }) => {
                // Never current, never to be restored: delete it now (else the sweep will).
                if let Err(e) = self.delete_object(&copy.object).await {
                    tracing::warn!(%key, object = %copy.object, error = %e, "could not delete a fenced copy; the sweep will");
                    self.schedule_sweep(key, std::time::Instant::now() + self.grace);
                }
                Err(fenced)
            }
            Err(e) => {
                // The commit may have happened: keep the object, the sweep spares it if current.
                self.schedule_sweep(key, std::time::Instant::now() + self.grace);
                Err(e)
            }
        }
    }

    /// The fencing token `key`'s current copy was uploaded under (`None`: no copy, or only an
    /// old-layout one without a token).
    pub async fn current_token(&self, key: &ActorKey) -> ReplicationResult<Option<u64>> {
        Ok(self.ledger.current(key).await?.map(|copy| copy.token))
    }

    /// Downloads the newest copy of `key`, verifies its sha256 and `PRAGMA integrity_check` on a
    /// temporary file beside `dest`, then renames it into place (file and directory fsynced).
    /// `Ok(false)`: there is no copy. A copy that fails a check is refused, never installed.
    pub async fn restore(&self, key: &ActorKey, dest: &Path) -> ReplicationResult<bool> {
        let _turn = self.turn(key).await;
        let kind = crate::runtime::registry::key_kind(key);
        let result = self.restore_in_turn(key, dest).await;
        match &result {
            Ok(true) => {
                crate::metrics::incr("vitrina_replication_restores_total", &[("kind", kind)]);
                tracing::info!(%key, "actor file restored from object storage");
            }
            Ok(false) => {}
            Err(e) => {
                let reason = match e {
                    ReplicationError::Checksum { .. } | ReplicationError::MissingChecksum { .. } => "checksum",
                    ReplicationError::Integrity { .. } => "integrity",
                    ReplicationError::MissingCopy { .. } => "missing",
                    _ => "error",
                };
                crate::metrics::incr("vitrina_replication_restore_failures_total", &[("kind", kind), ("reason", reason)]);
                tracing::error!(%key, error = %e, "restore from object storage failed");
            }
        }
        result
    }

    async fn restore_in_turn(&self, key: &ActorKey, dest: &Path) -> ReplicationResult<bool> {
        // A sweep may delete a copy right after a commit superseded it: read the pointer again.
        let mut vanished = None;
        for _ in 0..3 {
            // The old-layout copy (one fixed object per key, before pointers) is asked for with
            // the pointer, so an actor without either (every new one) costs one round trip.
            let legacy = legacy_object(&self.prefix, key);
            let (current, legacy_response) = futures::join!(self.ledger.current(key), self.bucket.get_object(format!("/{legacy}")));
            let (object, expected, response) = match current? {
                Some(copy) => {
                    // Copies of one key live in its directory; a pointer elsewhere is not trusted.
                    if !copy.object.starts_with(&format!("{}/", copies_dir(&self.prefix, key))) || copy.object.contains("..") {
                        return Err(ReplicationError::Ledger(format!("the pointer of {key} names {:?}, outside its copies", copy.object)));
                    }
                    let response = self.bucket.get_object(format!("/{}", copy.object)).await?;
                    (copy.object, Some(copy.sha256), response)
                }
                None => (legacy, None, legacy_response?),
            };
            match response.status_code() {
                200 => {}
                // Only a missing key means "no such copy": a missing bucket (also 404) must not.
                404 if is_no_such_key(response.as_slice()) => {
                    if expected.is_none() {
                        return Ok(false);
                    }
                    vanished = Some(object);
                    continue;
                }
                status => return Err(ReplicationError::Status { operation: "GET", object, status }),
            }
            let expected = match expected {
                Some(sha) => sha,
                None => response
                    .headers()
                    .get(CHECKSUM_HEADER)
                    .cloned()
                    .ok_or_else(|| ReplicationError::MissingChecksum { object: object.clone() })?,
            };
            let expected = expected.trim().to_ascii_lowercase();
            let bytes = response.bytes().clone();
            let dest = dest.to_path_buf();
            tokio::task::spawn_blocking(move || install_verified(&object, &expected, &bytes, &dest)).await??;
            // Leftovers of earlier holders (copies never committed, an old-layout copy).
            self.schedule_sweep(key, std::time::Instant::now());
            return Ok(true);
        }
        Err(ReplicationError::MissingCopy { object: vanished.unwrap_or_default() })
    }

    /// Deletes every copy of `key` and its pointer (a deleted store or session); a key without
    /// copies is not an error.
    pub async fn delete(&self, key: &ActorKey) -> ReplicationResult<()> {
        let _turn = self.turn(key).await;
        self.dirty.lock().remove(key);
        self.sweep_due.lock().remove(key);
        // The pointer first: from then on the key has no copy, whatever is left below.
        self.ledger.clear(key).await?;
        for object in self.key_objects(key).await? {
            self.delete_object(&object.key).await?;
        }
        Ok(())
    }

    /// Every object of `key`: its directory (copies, pointer) and its old-layout copy.
    async fn key_objects(&self, key: &ActorKey) -> ReplicationResult<Vec<s3::serde_types::Object>> {
        let dir = key_dir(&self.prefix, key);
        let legacy = legacy_object(&self.prefix, key);
        let mut objects = self.list(&dir).await?;
        // The listing is by prefix: `{sid}` also lists `{sid}x…` of another key.
        objects.retain(|o| o.key == legacy || o.key.starts_with(&format!("{dir}/")));
        Ok(objects)
    }

    /// The objects whose keys start with `prefix`.
    async fn list(&self, prefix: &str) -> ReplicationResult<Vec<s3::serde_types::Object>> {
        let pages = self.bucket.list(prefix.to_string(), None).await?;
        Ok(pages.into_iter().flat_map(|p| p.contents).collect())
    }

    /// Deletes one object; a missing one is not an error.
    async fn delete_object(&self, object: &str) -> ReplicationResult<()> {
        let response = self.bucket.delete_object(format!("/{object}")).await?;
        match response.status_code() {
            200..=299 | 404 => Ok(()),
            status => Err(ReplicationError::Status { operation: "DELETE", object: object.to_string(), status }),
        }
    }

    /// Uploads `key` now if it has commits not yet uploaded. On failure the key stays dirty
    /// and the periodic task retries it.
    pub async fn flush(&self, key: &ActorKey) -> ReplicationResult<Option<SnapshotInfo>> {
        let mut in_flight = self.enter_upload();
        let Some(since) = self.dirty.lock().remove(key) else {
            return Ok(None);
        };
        in_flight.carries_since(since);
        self.upload_or_keep_dirty(key, in_flight).await
    }

    /// Uploads `key` now, whether or not it is marked dirty: the barrier of `sync` durability.
    /// Clearing the mark first is safe: the snapshot is taken after this point.
    pub async fn replicate_now(&self, key: &ActorKey) -> ReplicationResult<Option<SnapshotInfo>> {
        let mut in_flight = self.enter_upload();
        if let Some(since) = self.dirty.lock().remove(key) {
            in_flight.carries_since(since);
        }
        self.upload_or_keep_dirty(key, in_flight).await
    }

    /// `in_flight` was entered before the key's dirty mark was cleared, so the key counts as
    /// pending all along; it is released after a failed upload has marked the key again.
    /// A fenced upload is not retried while this node holds no token for the key: another node
    /// owns its copies now, or none does until this node holds the shard again, when it is.
    async fn upload_or_keep_dirty(&self, key: &ActorKey, in_flight: InFlight<'_>) -> ReplicationResult<Option<SnapshotInfo>> {
        let result = self.upload(key).await;
        match &result {
            Ok(_) => {}
            Err(ReplicationError::Fenced { .. }) if (self.tokens)(key).is_none() => {
                let mut unheld = self.unheld.lock();
                let oldest = unheld.entry(key.clone()).or_insert_with(|| in_flight.since());
                *oldest = (*oldest).min(in_flight.since());
            }
            Err(ReplicationError::Fenced { .. }) => {}
            Err(_) => self.mark_dirty(key.clone(), in_flight.since()),
        }
        drop(in_flight);
        result
    }

    /// Uploads every dirty actor, at most `max_concurrent_uploads` at a time; returns how many
    /// uploads succeeded.
    pub async fn upload_dirty(&self) -> usize {
        self.requeue_held_again();
        // Each key counts as in flight from the moment it leaves the dirty set, also while it
        // waits for one of the `concurrency` upload slots.
        let keys: Vec<(ActorKey, InFlight<'_>)> = {
            let mut dirty = self.dirty.lock();
            std::mem::take(&mut *dirty)
                .into_iter()
                .map(|(key, since)| {
                    let mut in_flight = self.enter_upload();
                    in_flight.carries_since(since);
                    (key, in_flight)
                })
                .collect()
        };
        if keys.is_empty() {
            return 0;
        }
        let uploaded = std::sync::atomic::AtomicUsize::new(0);
        futures::stream::iter(keys)
            .for_each_concurrent(self.concurrency, |(key, in_flight)| {
                let uploaded = &uploaded;
                async move {
                    if let Ok(Some(_)) = self.upload_or_keep_dirty(&key, in_flight).await {
                        uploaded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
            .await;
        uploaded.into_inner()
    }

    /// Starts the periodic snapshot task on the current runtime.
    pub fn spawn_snapshot_loop(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                this.upload_dirty().await;
            }
        });
    }

    /// Called when an actor has closed its file: a dirty actor is uploaded right away.
    pub fn passivated(self: &Arc<Self>, key: ActorKey) {
        if !self.is_dirty(&key) {
            return;
        }
        // `stopped` also runs while the system shuts down, possibly without a runtime left; the
        // key then stays dirty only in memory, which is what a crash at that moment would give.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(%key, "no runtime to upload a passivated actor");
            return;
        };
        let this = self.clone();
        runtime.spawn(async move {
            let _ = this.flush(&key).await;
        });
    }

    /// Waits for this key's turn: one snapshot, upload or restore of a key at a time.
    async fn turn(&self, key: &ActorKey) -> KeyTurn<'_> {
        let lock = self.turns.lock().entry(key.clone()).or_default().clone();
        let guard = lock.clone().lock_owned().await;
        KeyTurn { replicator: self, key: key.clone(), lock: Some(lock), _guard: Some(guard) }
    }
}

/// The directory of one actor's copies and pointer: made only of the prefix and validated ids.
fn key_dir(prefix: &str, key: &ActorKey) -> String {
    let rel = match key {
        ActorKey::Store(store) => format!("stores/{store}/store"),
        ActorKey::Shopper(store, sid) => format!("stores/{store}/shoppers/{sid}"),
    };
    if prefix.is_empty() {
        rel
    } else {
        format!("{prefix}/{rel}")
    }
}

/// The one object per key that versions before the pointer overwrote in place; read when a
/// key has no pointer, deleted once it has one.
fn legacy_object(prefix: &str, key: &ActorKey) -> String {
    format!("{}.db", key_dir(prefix, key))
}

/// Where one actor's copies are uploaded.
fn copies_dir(prefix: &str, key: &ActorKey) -> String {
    format!("{}/copies", key_dir(prefix, key))
}

/// Whether a 404's body says the object is missing (not the bucket).
fn is_no_such_key(body: &[u8]) -> bool {
    String::from_utf8_lossy(body).contains("<Code>NoSuchKey</Code>")
}

/// Holds a key's turn; on drop releases it and forgets the key's mutex once nobody waits on it.
struct KeyTurn<'a> {
    replicator: &'a Replicator,
    key: ActorKey,
    lock: Option<Arc<tokio::sync::Mutex<()>>>,
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for KeyTurn<'_> {
    fn drop(&mut self) {
        self._guard.take();
        let mut turns = self.replicator.turns.lock();
        if let Some(lock) = self.lock.take() {
            // Ours plus the map's: nobody else holds or waits for it, and nobody can clone it
            // from the map while we hold the map's lock.
            if Arc::strong_count(&lock) == 2 {
                turns.remove(&self.key);
            }
        }
    }
}

/// Removes a scratch file however the snapshot ends.
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// Verifies a downloaded copy and installs it at `dest` atomically.
fn install_verified(object: &str, expected: &str, bytes: &[u8], dest: &Path) -> ReplicationResult<()> {
    use std::io::Write;
    let actual = hex::encode(Sha256::digest(bytes));
    if actual != expected {
        return Err(ReplicationError::Checksum { object: object.into(), expected: expected.into(), actual });
    }
    let dir = dest.parent().ok_or_else(|| std::io::Error::other("actor file has no parent directory"))?;
    std::fs::create_dir_all(dir)?;
    let name = dest.file_name().and_then(|n| n.to_str()).ok_or_else(|| std::io::Error::other("actor file name is not UTF-8"))?;
    let tmp = dir.join(format!("{name}.restore-{}", uuid::Uuid::new_v4().simple()));
    let _cleanup = RemoveOnDrop(&tmp);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    // A file that is not a database at all fails to open: also an integrity failure.
    match sqlite::integrity_problems(&tmp) {
        Ok(None) => {}
        Ok(Some(detail)) => return Err(ReplicationError::Integrity { object: object.into(), detail }),
        Err(e) => return Err(ReplicationError::Integrity { object: object.into(), detail: e.to_string() }),
    }
    // A WAL or shared-memory file left by the lost database would be replayed into the copy.
    sqlite::remove_sidecars(dest)?;
    std::fs::rename(&tmp, dest)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Accepts `a/b-c/d_e.f` style prefixes: no empty, `.` or `..` segments, nothing that could
/// escape or confuse the key layout.
fn validate_prefix(raw: &str) -> ReplicationResult<String> {
    let prefix = raw.trim_matches('/');
    if prefix.is_empty() {
        return Ok(String::new());
    }
    let ok = prefix.len() <= 256
        && prefix.split('/').all(|seg| {
            !seg.is_empty() && seg != "." && seg != ".." && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if ok {
        Ok(prefix.to_string())
    } else {
        Err(ReplicationError::Config(format!("prefix {raw:?} must be segments of [A-Za-z0-9._-] separated by '/'")))
    }
}

/// Counts one upload in flight for as long as it lives (also when the upload future is dropped).
/// One upload counted in `uploads_in_flight` until dropped.
struct InFlight<'a> {
    uploads: &'a Mutex<HashMap<u64, Instant>>,
    id: u64,
}

impl Replicator {
    fn enter_upload(&self) -> InFlight<'_> {
        let id = self.next_upload.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.uploads_in_flight.lock().insert(id, Instant::now());
        InFlight { uploads: &self.uploads_in_flight, id }
    }
}

impl InFlight<'_> {
    /// The upload carries commits made since `since` (the key's dirty mark).
    fn carries_since(&mut self, since: Instant) {
        if let Some(oldest) = self.uploads.lock().get_mut(&self.id) {
            *oldest = (*oldest).min(since);
        }
    }

    fn since(&self) -> Instant {
        self.uploads.lock().get(&self.id).copied().unwrap_or_else(Instant::now)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.uploads.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_validated() {
        assert_eq!(validate_prefix("/vitrina/prod/").unwrap(), "vitrina/prod");
        assert_eq!(validate_prefix("").unwrap(), "");
        for bad in ["a/../b", "a//b", "a/./b", "a b", "ä", "a\\b"] {
            assert!(validate_prefix(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_copy_that_fails_its_checksum_or_integrity_check_is_not_installed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x").join("store.db");
        let garbage = b"not a database, but long enough to look like a header of something".repeat(100);
        let sha = hex::encode(Sha256::digest(&garbage));
        let err = install_verified("o", "00", &garbage, &dest).unwrap_err();
        assert!(matches!(err, ReplicationError::Checksum { .. }), "{err}");
        let err = install_verified("o", &sha, &garbage, &dest).unwrap_err();
        assert!(matches!(err, ReplicationError::Integrity { .. }), "{err}");
        assert!(!dest.exists());
        let leftovers: Vec<_> = std::fs::read_dir(dest.parent().unwrap()).unwrap().collect();
        assert!(leftovers.is_empty(), "temporary files left behind: {leftovers:?}");
    }

    #[test]
    fn a_live_database_is_copied_consistently_and_restores() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.db");
        let conn = sqlite::open(&src, sqlite::SchemaKind::Shopper).unwrap();
        conn.execute("INSERT INTO preferences (key, value) VALUES ('region', 'EU')", []).unwrap();
        // The writer stays open (WAL not checkpointed) while the copy is taken.
        let copy = dir.path().join("copy.db");
        assert!(sqlite::consistent_copy(&src, &copy).unwrap());
        let bytes = std::fs::read(&copy).unwrap();
        let sha = hex::encode(Sha256::digest(&bytes));
        let dest = dir.path().join("restored").join("s.db");
        install_verified("o", &sha, &bytes, &dest).unwrap();
        let restored = sqlite::open(&dest, sqlite::SchemaKind::Shopper).unwrap();
        let region: String = restored.query_row("SELECT value FROM preferences WHERE key = 'region'", [], |r| r.get(0)).unwrap();
        assert_eq!(region, "EU");
        drop(conn);
        assert!(!sqlite::consistent_copy(&dir.path().join("missing.db"), &copy).unwrap());
    }
}
