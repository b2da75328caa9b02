//! The node's own probes, answered on every host and never forwarded: `/healthz` (the process
//! serves HTTP; what it holds) and `/readyz` (it should be sent traffic: started, its data
//! directory writable, joined to its cluster with a live lease, not draining). A load balancer
//! takes a node out on a failed `/readyz`; an orchestrator restarts it on a failed `/healthz`.

use actix_web::{http::StatusCode, web, HttpResponse};
use serde_json::{json, Value};

use crate::coordination::{LeaseHealth, MemberState};
use crate::error::ApiError;
use crate::node::Node;

pub async fn healthz(node: web::Data<Node>) -> Result<HttpResponse, ApiError> {
    if node.is_starting() {
        // Scripts wait for a healthy node before calling it: with `--demo`, the demo store
        // answered 404 for the first moments after the server was up.
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "starting", "the node is still seeding the demo store"));
    }
    let (stores, shoppers) = node.registry.live_counts();
    Ok(HttpResponse::Ok().json(json!({
        "status": "ok",
        "liveActors": {"stores": stores, "shoppers": shoppers},
        // Activating or passivating: a passivating actor's file is not closed yet.
        "changingActors": node.registry.changing_count(),
        "liveIsolates": crate::render::live_engines(),
        "isolateBudget": crate::engine::isolate_budget::budget(),
        "isolateBytes": crate::engine::isolate_budget::held_bytes(),
        "pooledIsolateBytes": crate::engine::pooled::bytes(),
        "isolateByteBudget": crate::engine::isolate_budget::byte_budget(),
    })))
}

/// Each check's name and whether it passed, in a fixed order.
fn readiness(node: &Node) -> Vec<(&'static str, bool, String)> {
    let mut checks = Vec::new();
    checks.push(("started", !node.is_starting(), "the demo store is still being seeded".to_string()));
    let probe = node.layout.root().join("node").join(".readyz-probe");
    let writable = std::fs::write(&probe, b"ok").and_then(|_| std::fs::remove_file(&probe)).map_err(|e| e.to_string());
    checks.push(("dataDirWritable", writable.is_ok(), writable.err().unwrap_or_default()));
    if node.cluster.enabled() {
        let me = node.cluster.my_state();
        checks.push(("joined", me.is_some(), "this node is not a member of the cluster".to_string()));
        checks.push(("notDraining", me != Some(MemberState::Draining), "this node is draining".to_string()));
        let live = node.cluster.coordination().lease_health() == LeaseHealth::Live;
        checks.push(("lease", live, "the etcd lease is not live (etcd unreachable?)".to_string()));
    }
    checks
}

pub async fn readyz(node: web::Data<Node>) -> Result<HttpResponse, ApiError> {
    let checks = readiness(&node);
    let report: serde_json::Map<String, Value> = checks.iter().map(|(name, ok, _)| (name.to_string(), json!(ok))).collect();
    let failed: Vec<String> = checks.iter().filter(|(_, ok, _)| !ok).map(|(name, _, why)| format!("{name}: {why}")).collect();
    if failed.is_empty() {
        return Ok(HttpResponse::Ok().insert_header(("cache-control", "no-store")).json(json!({"status": "ready", "checks": report})));
    }
    Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", format!("not ready: {}", failed.join("; ")))
        .with_details(json!({"checks": report})))
}
