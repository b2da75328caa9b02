//! Graceful shutdown on SIGTERM or SIGINT, within `http.shutdown_deadline_secs`:
//! 1. in a cluster, the node drains: it marks itself draining (it owns nothing from then on),
//!    its actors' files go to their new owners, and it leaves (giving its shards and lease up
//!    at once, rather than after the lease's TTL). It keeps serving meanwhile: new owners pull
//!    files from it and requests it receives are forwarded;
//! 2. the HTTP server stops accepting and lets requests in flight finish;
//! 3. the daily counts noted here go to their stores; every live actor is passivated (its file
//!    closed), replication uploads what is dirty, and the actors' and the node catalog's WALs
//!    are checkpointed into their files;
//! 4. the process exits 0. Past the deadline it exits anyway (1): acknowledged writes are on
//!    disk whatever step was cut short.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::node::Node;

/// Waits for SIGTERM or SIGINT.
pub async fn signalled() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without handlers the default action (exit) applies; never resolve.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Runs the steps above; `Ok(true)` when all of them finished within the deadline.
pub async fn run(node: Arc<Node>, server: actix_web::dev::ServerHandle) -> bool {
    let deadline = Duration::from_secs(node.settings.http.shutdown_deadline_secs.max(1));
    let started = Instant::now();
    tracing::info!(deadline_secs = deadline.as_secs(), "shutting down");
    let complete = tokio::time::timeout(deadline, steps(node.clone(), server.clone())).await.is_ok();
    if !complete {
        tracing::warn!(elapsed_ms = started.elapsed().as_millis() as u64, "shutdown deadline passed; exiting");
        server.stop(false).await;
    }
    complete
}

async fn steps(node: Arc<Node>, server: actix_web::dev::ServerHandle) {
    // Open pages' sockets close first (1001 "going away"): they would hold the server's
    // graceful stop until its timeout, and their pages reconnect to another node.
    node.events.close();
    // Sockets run in tasks of their own, which the server's stop would drop mid-close.
    let sockets_closed = crate::http::live::all_closed(crate::http::websocket::CLOSE_BOUND);
    if node.cluster.enabled() {
        futures::join!(hand_off(&node), sockets_closed);
    } else {
        sockets_closed.await;
    }
    // Stops accepting; waits for requests in flight (actix's own shutdown timeout bounds it).
    server.stop(true).await;
    // The visitors and orders counted since the last hand-over, to their stores (their new
    // owners, in a cluster) before the actors here close.
    crate::actors::day_stats::flush(&node).await;
    let keys = node.registry.live_keys();
    for key in &keys {
        node.registry.evict_for(key, crate::runtime::registry::PassivationReason::Shutdown).await;
    }
    if let Some(replicator) = &node.replicator {
        replicator.upload_dirty().await;
    }
    // Closed files, and the node catalog, carry every commit in the database file itself: a
    // restart replays nothing, and a file copied off the disk is complete.
    let files: Vec<std::path::PathBuf> =
        keys.iter().map(|k| node.layout.actor_db(k)).chain(std::iter::once(node.layout.catalog_db())).collect();
    let failed = tokio::task::spawn_blocking(move || files.iter().filter(|f| f.exists() && crate::sqlite::checkpoint(f).is_err()).count())
        .await
        .unwrap_or(0);
    if failed > 0 {
        tracing::warn!(files = failed, "some WALs could not be checkpointed (their commits are in the WAL, which a restart replays)");
    }
    tracing::info!(actors = keys.len(), "shut down");
}

/// Drains this node and leaves the cluster once its files are with their new owners (or when
/// half the deadline is spent: the rest is for the server and the actors; it then resigns
/// instead, staying named as the files' holder until it is back).
async fn hand_off(node: &Arc<Node>) {
    if let Err(e) = node.cluster.drain(&node.cluster.id).await {
        tracing::warn!(error = %e, "cannot mark this node draining; leaving without a hand-off");
    }
    let budget = Duration::from_secs(node.settings.http.shutdown_deadline_secs.max(2) / 2);
    let until = Instant::now() + budget;
    while Instant::now() < until && !crate::cluster::handoff::local_actor_keys(&**node).is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = crate::cluster::handoff::local_actor_keys(&**node).len();
    let result = if left > 0 {
        // Not `leave`: that would tell the other nodes no file waits here, and they would
        // start these keys empty. Resigned, this node stays their earlier holder.
        tracing::warn!(files = left, "leaving with actor files not handed off; their new owners will pull them when this node is back");
        node.cluster.resign().await
    } else {
        node.cluster.leave().await
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot leave the cluster cleanly; its lease will expire");
    }
}
