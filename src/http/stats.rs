//! Daily counts at the edge: a page view is counted for its store where it is served (the
//! session's node), and `POST /internal/stats` takes another node's batch for a store owned
//! here (`actors/day_stats.rs`). The admin API's `GET …/stats` is in `admin.rs`.

use std::hash::BuildHasher;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use crate::actors::day_stats::{record_here, StatsBatch};
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::ids::{SessionId, StoreId};
use crate::node::Node;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(super::at("/internal/stats", [web::post().to(batch)]));
}

/// A page view of `store` by `session` (its first today counts a visitor). `minted`: the
/// session is new with this view, so the client is known by its address and user agent.
pub fn page_view(node: &Node, store: &StoreId, session: &SessionId, minted: bool, req: &HttpRequest) {
    let client = minted.then(|| client_fingerprint(req));
    node.day_tally.page_view(store, session.as_str(), client, now_ms());
}

/// The client's address and user agent, hashed with a key of this process's: comparable
/// within this process, never kept or sent anywhere.
fn client_fingerprint(req: &HttpRequest) -> u64 {
    static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> = std::sync::OnceLock::new();
    let agent = req.headers().get(actix_web::http::header::USER_AGENT).map(|v| v.as_bytes());
    KEY.get_or_init(Default::default).hash_one((super::proxy::client_ip(req), agent))
}

async fn batch(node: web::Data<Node>, req: HttpRequest, body: Bytes) -> Result<HttpResponse, ApiError> {
    super::internal::verify(&node, &req, &body)?;
    let batch: StatsBatch = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
    let node = node.into_inner();
    record_here(&node, &batch.store, batch.deltas).await.map_err(ApiError::unavailable)?;
    Ok(HttpResponse::Ok().json(json!({"recorded": true})))
}
