//! Upstream catalog sync, driven by the store actor.
//!
//! A run is started by the admin API (`POST …/sync/run`, always a full resync) or by the
//! store's `catalog-sync` alarm (incremental by `updated_at_min` when a cursor exists and the
//! last full resync is under a day old; full otherwise). The HTTP runs in a spawned task, never
//! on the actor's turn: each fetched page comes back as an [`ApplySyncPage`] message, applied in
//! one transaction, and the end of the run as [`SyncFinished`]. While the upstream is down the
//! store keeps serving its cached catalog; failures show in `GET …/sync` and in `/metrics`.

use actix::prelude::*;
use serde_json::{json, Value};

use super::feed::apply_batch;
use super::{StoreActor, StoreError};
use crate::clock::now_ms;
use crate::feed::breaker::{circuit, BreakerPolicy, Circuit};
use crate::feed::repo::{self as sql, SyncConfig, SyncState};
use crate::feed::{ms_rfc3339, upstream, CatalogChange, ChangeSource, FeedReport};
use crate::ids::ActorKey;
use crate::runtime::alarms;
use crate::sqlite::StorageError;
use crate::store::repo;

pub const SYNC_ALARM: &str = "catalog-sync";
const FULL_RESYNC_EVERY_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Clone)]
pub enum SyncAdminOp {
    Configure(SyncConfig),
    Status,
    /// A full resync now. Allowed while the circuit is open: it is the operator's trial run.
    RunNow,
}

#[derive(Message, Clone)]
#[rtype(result = "Result<Value, StoreError>")]
pub struct SyncAdmin(pub SyncAdminOp);

/// One fetched page of run `run`.
#[derive(Message, Clone)]
#[rtype(result = "Result<FeedReport, StoreError>")]
pub struct ApplySyncPage {
    pub run: i64,
    pub changes: Vec<CatalogChange>,
}

/// The end of run `run`: the number of products received and the newest `updated_at`, or why
/// it failed.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct SyncFinished {
    pub run: i64,
    pub full: bool,
    pub result: Result<(i64, Option<i64>), String>,
}

impl StoreActor {
    fn policy(&self) -> BreakerPolicy {
        let f = &self.node.settings.feed;
        BreakerPolicy { threshold: f.breaker_threshold, cooldown_ms: f.breaker_cooldown_secs as i64 * 1000 }
    }

    /// Starts a run unless one is going. Returns the run id (its start time in ms).
    fn start_sync(&mut self, ctx: &mut Context<Self>, full: bool) -> Result<i64, StoreError> {
        if let Some(run) = self.feed.sync_running {
            return Err(StoreError::Conflict(format!("sync run {run} is in progress")));
        }
        let db = self.db()?;
        let config = db.read(sql::sync_config)?.ok_or_else(|| StoreError::NotFound("no upstream sync is configured".into()))?;
        let state = db.read(sql::sync_state)?;
        let run = now_ms();
        // Overlap the cursor by a second: the upstream's clock resolution is a second, and a
        // product seen twice is simply unchanged.
        let since = if full { None } else { state.cursor_updated_ms.map(|c| c - 1000) };
        self.feed.sync_running = Some(run);
        let settings = self.node.settings.feed.clone();
        let addr = ctx.address();
        actix::spawn(async move {
            let mut received = 0i64;
            let mut newest: Option<i64> = None;
            let mut page_no = 1u32;
            let result = loop {
                let page = match upstream::fetch_page(&settings, &config.url, page_no, since, now_ms()).await {
                    Ok(p) => p,
                    Err(e) => break Err(e),
                };
                received += page.received as i64;
                newest = newest.max(page.max_updated_ms);
                let last = page.received < settings.page_limit as usize;
                if !page.changes.is_empty() {
                    match addr.send(ApplySyncPage { run, changes: page.changes }).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => break Err(format!("page {page_no} could not be applied: {e}")),
                        Err(_) => return, // the actor stopped; the next alarm retries
                    }
                }
                if last || page_no >= 10_000 {
                    break Ok((received, newest));
                }
                page_no += 1;
            };
            let _ = addr.send(SyncFinished { run, full: since.is_none(), result }).await;
        });
        let _ = full;
        Ok(run)
    }

    fn sync_status(&self) -> Result<Value, StoreError> {
        let db = self.db()?;
        let (config, state) = db.read(|c| Ok((sql::sync_config(c)?, sql::sync_state(c)?)))?;
        let at = |ms: Option<i64>| ms.map(ms_rfc3339);
        let circuit = circuit(self.policy(), state.consecutive_failures, state.circuit_opened_ms, now_ms());
        Ok(json!({
            "config": config,
            "running": self.feed.sync_running.is_some(),
            "lastSuccess": at(state.last_success_ms),
            "lastFullSync": at(state.last_full_ms),
            "lastError": state.last_error,
            "lastErrorAt": at(state.last_error_ms),
            "consecutiveFailures": state.consecutive_failures,
            "circuit": circuit,
            "productsSynced": state.products_synced,
            "cursor": at(state.cursor_updated_ms),
        }))
    }

    /// Handles the `catalog-sync` alarm: re-arms it for the next interval (durably, before the
    /// run, so a crash mid-run still leaves a next run), then starts a run if the circuit allows.
    pub(super) fn fire_alarms(&mut self, ctx: &mut Context<Self>) -> ResponseActFuture<Self, ()> {
        let Ok(db) = self.db() else { return Box::pin(fut::ready(())) };
        let node = self.node.clone();
        let key = ActorKey::Store(self.store.clone());
        let commit = async move {
            db.write(move |tx| -> Result<Option<(SyncConfig, SyncState)>, StorageError> {
                let now = now_ms();
                let due = alarms::take_due(tx, now)?;
                let mut plan = None;
                if due.iter().any(|n| n == SYNC_ALARM) {
                    if let Some(config) = sql::sync_config(tx)? {
                        let next = now + config.interval_secs * 1000;
                        node.catalog.set_alarm_hint(&key, next)?;
                        alarms::set(tx, SYNC_ALARM, next)?;
                        plan = Some((config, sql::sync_state(tx)?));
                    }
                }
                node.catalog.reset_alarm_hint(&key, alarms::next_due(tx)?)?;
                Ok(plan)
            })
            .await
        };
        let _ = ctx;
        Box::pin(fut::wrap_future::<_, Self>(commit).map(|planned, act, ctx| match planned {
            Ok(Some((_, state))) => {
                let now = now_ms();
                match circuit(act.policy(), state.consecutive_failures, state.circuit_opened_ms, now) {
                    Circuit::Open => {
                        crate::metrics::incr("vitrina_sync_runs_total", &[("outcome", "skipped_circuit_open")]);
                    }
                    Circuit::Closed | Circuit::HalfOpen => {
                        let full = state.cursor_updated_ms.is_none() || state.last_full_ms.is_none_or(|t| now - t > FULL_RESYNC_EVERY_MS);
                        if let Err(e) = act.start_sync(ctx, full) {
                            tracing::debug!(store = %act.store, error = %e, "scheduled sync not started");
                        }
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(store = %act.store, error = %e, "store alarm handling failed"),
        }))
    }
}

impl Handler<SyncAdmin> for StoreActor {
    type Result = AtomicResponse<Self, Result<Value, StoreError>>;

    fn handle(&mut self, SyncAdmin(op): SyncAdmin, ctx: &mut Context<Self>) -> Self::Result {
        self.touch();
        let ready = |v| AtomicResponse::new(Box::pin(fut::ready(v)));
        match op {
            SyncAdminOp::Status => ready(self.sync_status()),
            SyncAdminOp::RunNow => ready(self.start_sync(ctx, true).map(|run| json!({"status": "started", "run": run, "full": true}))),
            SyncAdminOp::Configure(config) => {
                let db = match self.db() {
                    Ok(db) => db,
                    Err(e) => return ready(Err(e)),
                };
                let node = self.node.clone();
                let key = ActorKey::Store(self.store.clone());
                let c2 = config.clone();
                let commit = async move {
                    db.write(move |tx| -> Result<(), StorageError> {
                        let now = now_ms();
                        sql::set_sync_config(tx, &c2, now)?;
                        let due = now + c2.interval_secs * 1000;
                        // The node's hint first: it may fire early, never late.
                        node.catalog.set_alarm_hint(&key, due)?;
                        alarms::set(tx, SYNC_ALARM, due)
                    })
                    .await
                };
                AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(commit).map(move |r, act, _| {
                    r?;
                    let _ = config;
                    act.sync_status()
                })))
            }
        }
    }
}

impl Handler<ApplySyncPage> for StoreActor {
    type Result = AtomicResponse<Self, Result<FeedReport, StoreError>>;

    fn handle(&mut self, msg: ApplySyncPage, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        let db = match self.db() {
            Ok(db) => db,
            Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(e)))),
        };
        let currency = self.snapshot.settings.currency.clone();
        let source = ChangeSource::Sync { run: msg.run };
        let bounds = super::Bounds::of(&self.node, &self.store);
        let commit = async move { db.write(move |tx| apply_batch(tx, &source, &msg.changes, &currency, &bounds)).await };
        AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(commit).map(|result, act, _| {
            let (mut report, published) = result?;
            if let Some(snapshot) = published {
                act.install_snapshot(snapshot);
            }
            crate::metrics::add("vitrina_sync_products_applied_total", &[], report.applied as u64);
            report.store_version = act.snapshot.version;
            Ok(report)
        })))
    }
}

impl Handler<SyncFinished> for StoreActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: SyncFinished, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        if self.feed.sync_running == Some(msg.run) {
            self.feed.sync_running = None;
        }
        let Ok(db) = self.db() else { return AtomicResponse::new(Box::pin(fut::ready(()))) };
        let policy = self.policy();
        let outcome = if msg.result.is_ok() { "success" } else { "failure" };
        crate::metrics::incr("vitrina_sync_runs_total", &[("outcome", outcome)]);
        let commit = async move {
            db.write(move |tx| -> Result<bool, StorageError> {
                let now = now_ms();
                let mut state = sql::sync_state(tx)?;
                let mut changed = false;
                match &msg.result {
                    Ok((received, newest)) => {
                        state.last_success_ms = Some(now);
                        state.consecutive_failures = 0;
                        state.circuit_opened_ms = None;
                        state.products_synced = *received;
                        state.cursor_updated_ms = state.cursor_updated_ms.max(*newest);
                        if msg.full {
                            state.last_full_ms = Some(now);
                            let gone = sql::delete_unseen(tx, msg.run, msg.run)?;
                            if !gone.is_empty() {
                                repo::bump_version(tx)?;
                                changed = true;
                            }
                        }
                    }
                    Err(e) => {
                        state.last_error = Some(e.chars().take(500).collect());
                        state.last_error_ms = Some(now);
                        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                        if state.consecutive_failures >= policy.threshold.max(1) {
                            state.circuit_opened_ms = Some(now);
                        }
                    }
                }
                sql::save_sync_state(tx, &state)?;
                Ok(changed)
            })
            .await
        };
        AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(commit).map(|r, act, _| match r {
            Ok(true) => act.refresh_snapshot(),
            Ok(false) => {}
            Err(e) => tracing::error!(store = %act.store, error = %e, "sync status not saved"),
        })))
    }
}
