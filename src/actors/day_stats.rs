//! Hands the visitors, orders and revenue this node counted (`Node::day_tally`) to their store
//! actors every `stats.flush_ms`: to the one here, or — in a cluster — through the owner's
//! `/internal/stats` (`http/stats.rs`). A batch that does not arrive is given back to the
//! tally and goes with the next one.

use std::sync::Arc;
use std::time::Duration;

use crate::actors::store::RecordDayStats;
use crate::cluster::Placement;
use crate::ids::{ActorKey, StoreId};
use crate::node::Node;
use crate::store::day_stats::DayDelta;

/// The body of `POST /internal/stats`.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct StatsBatch {
    pub store: StoreId,
    pub deltas: Vec<DayDelta>,
}

/// Starts the periodic hand-over on the current runtime (shutdown makes a last one).
pub fn spawn(node: Arc<Node>) {
    let every = Duration::from_millis(node.settings.stats.flush_ms.max(50));
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            flush(&node).await;
        }
    });
}

/// Hands every pending count over now.
pub async fn flush(node: &Arc<Node>) {
    for (store, deltas) in node.day_tally.drain() {
        if deltas.is_empty() {
            continue;
        }
        if let Err(e) = hand_over(node, &store, deltas.clone()).await {
            tracing::debug!(%store, error = %e, "daily counts kept for the next hand-over");
            node.day_tally.restore(&store, deltas);
        }
    }
}

async fn hand_over(node: &Arc<Node>, store: &StoreId, deltas: Vec<DayDelta>) -> Result<(), String> {
    match node.cluster.placement(&ActorKey::Store(store.clone())) {
        Placement::Local => record_here(node, store, deltas).await,
        Placement::Remote { addr, .. } => {
            let body = StatsBatch { store: store.clone(), deltas };
            node.cluster
                .call_json::<serde_json::Value>(&addr, reqwest::Method::POST, "/internal/stats", &body)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        Placement::Nowhere => Err("no node owns the store".into()),
    }
}

/// Adds `deltas` to the store actor's counts on this node.
pub async fn record_here(node: &Arc<Node>, store: &StoreId, deltas: Vec<DayDelta>) -> Result<(), String> {
    match node.ask_store(store, RecordDayStats(deltas)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}
