//! The store actor's side of the catalog feed: applying webhook and sync changes in one
//! transaction, and the feed's settings (webhook secret, commerce backend).

use actix::prelude::*;
use serde_json::{json, Value};

use super::{StoreActor, StoreError};
use crate::clock::now_ms;
use crate::feed::repo::{self as sql, FeedError};
use crate::feed::signature::WebhookSecret;
use crate::feed::{CatalogChange, ChangeOutcome, ChangeSource, FeedReport};
use crate::render::snapshot::StoreSnapshot;
use crate::store::model::Currency;
use crate::store::repo;

/// What the store actor keeps in memory for the feed.
#[derive(Default)]
pub struct FeedState {
    /// Loaded at activation, replaced after the commit that changes it. Webhook routes verify
    /// against it before they parse anything.
    pub webhook_secret: Option<WebhookSecret>,
    /// The upstream sync run in progress (its id), if any: at most one per store.
    pub sync_running: Option<i64>,
    /// The store's CDN purge URL and purges (see `crate::cdn`).
    pub purge: std::sync::Arc<crate::cdn::StorePurge>,
}

/// Reads the store's CDN purge URL at activation.
pub fn load_purge_url(store: &crate::ids::StoreId, db: &crate::storage::ActorDb) -> Option<String> {
    db.read(sql::purge_url).unwrap_or_else(|e| {
        tracing::error!(%store, error = %e, "CDN purge URL failed to load; no purges until the next activation");
        None
    })
}

/// Reads the store's webhook secret at activation. One stored in plaintext (by a version before
/// secrets were sealed) or sealed with an older key is re-sealed now and the WAL truncated, so
/// the file keeps no readable copy; if that fails it is still served and retried next time.
pub fn load_webhook_secret(node: &crate::node::Node, store: &crate::ids::StoreId, db: &crate::storage::ActorDb) -> Option<WebhookSecret> {
    let (secret, stale) = match db.read(|c| sql::webhook_secret(c, &node.secrets)) {
        Ok(found) => found?,
        Err(e) => {
            tracing::error!(%store, error = %e, "webhook secret failed to load; webhooks will be refused");
            return None;
        }
    };
    if stale {
        let sealed =
            db.write_now(|tx| sql::set_webhook_secret(tx, &secret, &node.secrets, now_ms())).and_then(|()| db.read(sql::scrub_wal));
        match sealed {
            Ok(()) => tracing::info!(%store, "webhook secret sealed with the node's key"),
            Err(e) => tracing::warn!(%store, error = %e, "webhook secret could not be re-sealed; will retry at the next activation"),
        }
    }
    Some(secret)
}

impl From<FeedError> for StoreError {
    fn from(e: FeedError) -> Self {
        match e {
            FeedError::Invalid(m) => StoreError::Invalid(m),
            FeedError::Storage(e) => StoreError::Storage(e),
        }
    }
}

/// The webhook secret, if the store has one (the route verifies the signature itself, on its
/// own thread, so the actor's turn is not spent hashing request bodies).
#[derive(Message, Clone)]
#[rtype(result = "Option<WebhookSecret>")]
pub struct GetWebhookSecret;

impl Handler<GetWebhookSecret> for StoreActor {
    type Result = Option<WebhookSecret>;
    fn handle(&mut self, _: GetWebhookSecret, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        self.feed.webhook_secret.clone()
    }
}

/// Applies a batch of changes in one transaction: the webhook id (if any) is recorded, each
/// change applied in order, and — when anything visible changed — the version bumped. The snapshot is replaced before the answer, so a
/// page rendered on this node after the answer shows the change.
#[derive(Message, Clone)]
#[rtype(result = "Result<FeedReport, StoreError>")]
pub struct ApplyCatalogChanges {
    pub source: ChangeSource,
    pub changes: Vec<CatalogChange>,
}

impl Handler<ApplyCatalogChanges> for StoreActor {
    type Result = AtomicResponse<Self, Result<FeedReport, StoreError>>;

    fn handle(&mut self, msg: ApplyCatalogChanges, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        let db = match self.db() {
            Ok(db) => db,
            Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(e)))),
        };
        let currency = self.snapshot.settings.currency.clone();
        let bounds = super::Bounds::of(&self.node, &self.store);
        let commit = async move { db.write(move |tx| apply_batch(tx, &msg.source, &msg.changes, &currency, &bounds)).await };
        AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(commit).map(|result, act, _| {
            let (mut report, published) = result?;
            if let Some(snapshot) = published {
                act.install_snapshot(snapshot);
            }
            report.store_version = act.snapshot.version;
            Ok(report)
        })))
    }
}

/// Runs inside the write transaction. Returns the report and whether shoppers can see a change.
pub(super) fn apply_batch(
    tx: &rusqlite::Transaction<'_>,
    source: &ChangeSource,
    changes: &[CatalogChange],
    currency: &Currency,
    bounds: &super::Bounds,
) -> Result<(FeedReport, Option<StoreSnapshot>), StoreError> {
    let now = now_ms();
    if let ChangeSource::Webhook { id, .. } = source {
        if sql::webhook_seen(tx, id)? {
            return Ok((FeedReport::duplicate(repo::version(tx)?), None));
        }
        sql::record_webhook(tx, id, now)?;
    }
    let run = match source {
        ChangeSource::Sync { run } => Some(*run),
        _ => None,
    };
    let mut outcomes = Vec::with_capacity(changes.len());
    let mut rejected: Vec<String> = Vec::new();
    for change in changes {
        // A savepoint per change: a sync page skips an invalid product instead of failing the
        // page; a webhook (one change) fails as a whole.
        tx.execute_batch("SAVEPOINT feed_change").map_err(crate::sqlite::StorageError::from)?;
        match sql::apply_change(tx, change, currency, run, now) {
            Ok(outcome) => {
                tx.execute_batch("RELEASE feed_change").map_err(crate::sqlite::StorageError::from)?;
                outcomes.push(outcome);
            }
            Err(FeedError::Invalid(m)) if run.is_some() => {
                tx.execute_batch("ROLLBACK TO feed_change; RELEASE feed_change").map_err(crate::sqlite::StorageError::from)?;
                rejected.push(m);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let changed = outcomes.contains(&ChangeOutcome::Applied);
    let (version, published) = if changed {
        let v = repo::bump_version(tx)?;
        // Past a store limit the whole batch is refused (a sync page, a webhook): nothing of it
        // is applied, and a webhook's id is not recorded, so a retry after room was made applies.
        let snapshot = bounds.check(tx)?;
        (v, Some(snapshot))
    } else {
        (repo::version(tx)?, None)
    };
    let mut report = FeedReport::from_outcomes(&outcomes, version);
    report.rejected = rejected;
    Ok((report, published))
}

/// The feed's admin settings.
#[derive(Debug, Clone)]
pub enum FeedAdminOp {
    SetWebhookSecret(WebhookSecret),
    WebhookStatus,
    SetBackend(String),
    GetBackend,
    /// `None` removes it.
    SetPurgeUrl(Option<String>),
    GetPurgeUrl,
}

#[derive(Message, Clone)]
#[rtype(result = "Result<Value, StoreError>")]
pub struct FeedAdmin(pub FeedAdminOp);

impl Handler<FeedAdmin> for StoreActor {
    type Result = AtomicResponse<Self, Result<Value, StoreError>>;

    fn handle(&mut self, FeedAdmin(op): FeedAdmin, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        let db = match self.db() {
            Ok(db) => db,
            Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(e)))),
        };
        let ready = |v: Result<Value, StoreError>| AtomicResponse::new(Box::pin(fut::ready(v)));
        match op {
            FeedAdminOp::WebhookStatus => ready(Ok(json!({"secretConfigured": self.feed.webhook_secret.is_some()}))),
            FeedAdminOp::GetBackend => ready(db.read(sql::orders_url).map(|u| json!({"ordersUrl": u})).map_err(StoreError::from)),
            FeedAdminOp::GetPurgeUrl => ready(Ok(json!({"purgeUrl": self.feed.purge.url()}))),
            FeedAdminOp::SetPurgeUrl(url) => {
                let u2 = url.clone();
                let commit =
                    async move { db.write(move |tx| sql::set_purge_url(tx, u2.as_deref(), now_ms()).map_err(StoreError::from)).await };
                AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(commit).map(move |r, act, _| {
                    r?;
                    act.feed.purge.set_url(url.clone());
                    Ok(json!({"purgeUrl": url}))
                })))
            }
            FeedAdminOp::SetWebhookSecret(secret) => {
                let s2 = secret.clone();
                let node = self.node.clone();
                let commit = async move {
                    let scrub = db.clone();
                    db.write(move |tx| sql::set_webhook_secret(tx, &s2, &node.secrets, now_ms()).map_err(StoreError::from)).await?;
                    // An older value's frames must not stay in the WAL; the secret is set either way.
                    if let Err(e) = scrub.read(sql::scrub_wal) {
                        tracing::warn!(error = %e, "could not truncate the store's WAL after setting its webhook secret");
                    }
                    Ok::<(), StoreError>(())
                };
                AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(commit).map(move |r, act, _| {
                    r?;
                    act.feed.webhook_secret = Some(secret);
                    Ok(json!({"secretConfigured": true}))
                })))
            }
            FeedAdminOp::SetBackend(url) => {
                let u2 = url.clone();
                let commit = async move {
                    db.write(move |tx| {
                        sql::set_orders_url(tx, &u2, now_ms())?;
                        // Shoppers read the backend from the snapshot: publish a new version.
                        repo::bump_version(tx)?;
                        Ok::<_, StoreError>(())
                    })
                    .await
                };
                AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(commit).map(move |r, act, _| {
                    r?;
                    act.refresh_snapshot();
                    Ok(json!({"ordersUrl": url}))
                })))
            }
        }
    }
}
