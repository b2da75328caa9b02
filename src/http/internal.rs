//! Endpoints nodes call on each other (`/internal/*`, signed with the cluster secret) and the
//! operator's `GET /cluster/status` (operator token).

use std::sync::Arc;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::catalog::CatalogDump;
use crate::cluster::auth;
use crate::cluster::handoff::{self, SHA_HEADER};
use crate::cluster::view::{NodeId, View};
use crate::cluster::Proposal;
use crate::error::ApiError;
use crate::ids::{ActorKey, StoreId};
use crate::node::Node;

/// Refuses callers that do not hold the cluster secret.
pub fn verify(node: &Node, req: &HttpRequest, body: &[u8]) -> Result<(), ApiError> {
    if !node.cluster.enabled() {
        return Err(ApiError::not_found("clustering is not enabled on this node"));
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    auth::verify(node.cluster.secret(), req.method().as_str(), path, body, header(auth::TS_HEADER), header(auth::AUTH_HEADER))
        .map_err(|why| ApiError::unauthorized(format!("internal call refused: {why}")))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/cluster/status", web::get().to(status))
        .route("/internal/view", web::get().to(get_view))
        .route("/internal/view", web::post().to(post_view))
        .route("/internal/join", web::post().to(join))
        .route("/internal/propose", web::post().to(propose))
        .route("/internal/catalog", web::get().to(get_catalog))
        .route("/internal/catalog", web::post().to(post_catalog))
        .route("/internal/handoff", web::post().to(handoff_release))
        .route("/internal/handoff/ack", web::post().to(handoff_ack))
        .route("/internal/adopt", web::post().to(adopt))
        .route("/internal/stores/{store}/snapshot", web::get().to(store_snapshot))
        .route("/internal/stores/{store}/version", web::get().to(store_version))
        .route("/internal/stores/{store}/published", web::post().to(store_published))
        .route("/internal/stores/{store}/search", web::get().to(store_search))
        .route("/internal/stores/{store}/stock", web::post().to(store_stock));
}

async fn status(node: web::Data<Node>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    crate::http::operator_only(&node, &req)?;
    let view = node.cluster.view();
    let local = node.registry.live_counts();
    Ok(HttpResponse::Ok().json(json!({
        "node": node.cluster.id,
        "enabled": node.cluster.enabled(),
        // Where membership and ownership live: etcd, the home-made views, or this node alone.
        "coordination": if node.cluster.on_etcd() { "etcd" } else if node.cluster.enabled() { "views" } else { "local" },
        "lease": node.cluster.coordination().lease_health(),
        "epoch": view.epoch,
        "coordinator": view.active().next().map(|(id, _)| id.clone()),
        "members": view.members.iter().map(|(id, m)| json!({"id": id, "addr": m.addr, "state": m.state})).collect::<Vec<_>>(),
        "vnodes": node.cluster.settings.vnodes,
        "liveActors": {"stores": local.0, "shoppers": local.1},
        "localActorFiles": handoff::local_actor_keys(&**node).len(),
    })))
}

async fn get_view(node: web::Data<Node>, req: HttpRequest, body: Bytes) -> Result<HttpResponse, ApiError> {
    verify(&node, &req, &body)?;
    Ok(HttpResponse::Ok().json(node.cluster.view()))
}

async fn post_view(node: web::Data<Node>, req: HttpRequest, body: Bytes) -> Result<HttpResponse, ApiError> {
    verify(&node, &req, &body)?;
    let view: View = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_view", e.to_string()))?;
    let adopted = node.cluster.adopt(view);
    Ok(HttpResponse::Ok().json(json!({"adopted": adopted, "epoch": node.cluster.epoch()})))
}

/// A new node asks to join: propose it, answer with the new view.
async fn join(node: web::Data<Node>, req: HttpRequest, body: Bytes) -> Result<HttpResponse, ApiError> {
    verify(&node, &req, &body)?;
    let proposal: Proposal = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_proposal", e.to_string()))?;
    let Proposal::Join { .. } = proposal else {
        return Err(ApiError::bad_request("invalid_proposal", "expected a join"));
    };
    let view = node.cluster.propose(proposal).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(HttpResponse::Ok().json(view))
}

/// Any membership change (operators' drain and remove come here through `vitrina cluster`).
async fn propose(node: web::Data<Node>, req: HttpRequest, body: Bytes) -> Result<HttpResponse, ApiError> {
    verify(&node, &req, &body)?;
    let proposal: Proposal = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_proposal", e.to_string()))?;
    let target = match &proposal {
        Proposal::Join { node, .. }
        | Proposal::Drain { node }
        | Proposal::Left { node }
        | Proposal::Remove { node }
        | Proposal::Down { node } => node.clone(),
    };
    let known = node.cluster.view().members.contains_key(&target);
    if !known && !matches!(proposal, Proposal::Join { .. }) {
        return Err(ApiError::not_found(format!("no member {target}")));
    }
    let view = node.cluster.propose(proposal).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(HttpResponse::Ok().json(view))
}

async fn get_catalog(node: web::Data<Node>, req: HttpRequest, body: Bytes) -> Result<HttpResponse, ApiError> {
    verify(&node, &req, &body)?;
    Ok(HttpResponse::Ok().json(node.catalog.dump().map_err(ApiError::internal)?))
}

async fn post_catalog(node: web::Data<Node>, req: HttpRequest, body: Bytes) -> Result<HttpResponse, ApiError> {
    verify(&node, &req, &body)?;
    let dump: CatalogDump = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_catalog", e.to_string()))?;
    node.catalog.apply(&dump).map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(json!({"stores": dump.stores.len()})))
}

#[derive(Deserialize)]
struct KeyQuery {
    key: String,
    sha256: Option<String>,
}

fn parse_key(raw: &str) -> Result<ActorKey, ApiError> {
    ActorKey::parse(raw).ok_or_else(|| ApiError::bad_request("invalid_key", format!("{raw:?} is not an actor key")))
}

/// Adopts the caller's view first when it is newer, so a node never hands a key over while it
/// still believes it owns it (and never re-activates it after).
async fn catch_up(node: &Arc<Node>, req: &HttpRequest) {
    let their_epoch: u64 = req.headers().get(auth::EPOCH_HEADER).and_then(|v| v.to_str().ok()).and_then(|s| s.parse().ok()).unwrap_or(0);
    if their_epoch <= node.cluster.epoch() {
        return;
    }
    let Some(caller) = req.headers().get(auth::NODE_HEADER).and_then(|v| v.to_str().ok()).and_then(|s| NodeId::parse(s).ok()) else {
        return;
    };
    let addr = node.cluster.view().addr_of(&caller).map(str::to_string);
    let addr = match addr {
        Some(a) => a,
        None => return,
    };
    if let Ok(view) = node.cluster.call_json::<View>(&addr, reqwest::Method::GET, "/internal/view", &()).await {
        node.cluster.adopt(view);
    }
}

async fn handoff_release(node: web::Data<Node>, req: HttpRequest, body: Bytes, q: web::Query<KeyQuery>) -> Result<HttpResponse, ApiError> {
    verify(&node, &req, &body)?;
    let node = node.into_inner();
    let key = parse_key(&q.key)?;
    catch_up(&node, &req).await;
    if node.cluster.owns(&key) {
        return Err(ApiError::conflict("still_owner", format!("{} still owns {key} at epoch {}", node.cluster.id, node.cluster.epoch())));
    }
    match handoff::release(&*node, &key).await.map_err(|e| ApiError::internal(e.to_string()))? {
        None => Err(ApiError::not_found(format!("no file for {key}"))),
        Some(bytes) => {
            let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            Ok(HttpResponse::Ok().insert_header((SHA_HEADER, sha)).content_type("application/vnd.sqlite3").body(bytes))
        }
    }
}

async fn handoff_ack(node: web::Data<Node>, req: HttpRequest, body: Bytes, q: web::Query<KeyQuery>) -> Result<HttpResponse, ApiError> {
    verify(&node, &req, &body)?;
    let key = parse_key(&q.key)?;
    handoff::acknowledge(&**node, &key);
    Ok(HttpResponse::Ok().json(json!({"acknowledged": key.to_string()})))
}

/// A pushed actor file from its previous owner.
async fn adopt(node: web::Data<Node>, req: HttpRequest, body: Bytes, q: web::Query<KeyQuery>) -> Result<HttpResponse, ApiError> {
    verify(&node, &req, &body)?;
    let node = node.into_inner();
    let key = parse_key(&q.key)?;
    if !node.cluster.owns(&key) {
        return Err(ApiError::conflict("not_owner", format!("{} does not own {key}", node.cluster.id)));
    }
    // Never install under a live actor (serialised with activation of the same key).
    if node.registry.is_live(&key) {
        // Live with a file: it was pulled here (the old owner's acknowledgement may have been
        // late or lost) and may have moved on since; the pushed copy is older, and the old
        // owner may drop it.
        if node.layout.actor_db(&key).exists() {
            return Ok(HttpResponse::Ok().json(json!({"installed": false, "reason": "already live here"})));
        }
        // Live without a file: it has only read. It went live empty because its activation
        // ran before this push arrived and found no earlier holder to pull from; answering
        // "not installed" made the old owner delete the only copy (a cart lost under a join).
        // The pushed file is the actor's state: stop that instance (without a file it writes
        // nothing on the way out) and install it; the next request opens it.
        node.registry.evict(&key).await;
    }
    // On etcd, a pushed file replaces one of this node's that may be older (see `push_replaces`).
    let replace = crate::cluster::ownership::push_replaces(&*node, &key);
    let installed = handoff::install(&*node, &key, body.to_vec(), q.sha256.as_deref(), replace)
        .await
        .map_err(|e| ApiError::bad_request("handoff_refused", e.to_string()))?;
    Ok(HttpResponse::Ok().json(json!({"installed": installed})))
}

fn store_param(path: &str) -> Result<StoreId, ApiError> {
    Ok(StoreId::parse(path)?)
}

async fn store_snapshot(node: web::Data<Node>, req: HttpRequest, body: Bytes, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    verify(&node, &req, &body)?;
    let node = node.into_inner();
    let store = store_param(&path)?;
    let snap = node.local_store_snapshot(&store).await.map_err(crate::http::errors::actor_error)?;
    Ok(HttpResponse::Ok().json(snap.parts()))
}

async fn store_version(node: web::Data<Node>, req: HttpRequest, body: Bytes, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    verify(&node, &req, &body)?;
    let node = node.into_inner();
    let store = store_param(&path)?;
    let snap = node.local_store_snapshot(&store).await.map_err(crate::http::errors::actor_error)?;
    Ok(HttpResponse::Ok().json(json!({"version": snap.version})))
}

#[derive(Deserialize)]
struct Published {
    version: u64,
}

/// The store's owner announces a new version: drop our copy if it is older.
async fn store_published(node: web::Data<Node>, req: HttpRequest, body: Bytes, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    verify(&node, &req, &body)?;
    let store = store_param(&path)?;
    let published: Published = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
    node.note_remote_version(&store, published.version);
    Ok(HttpResponse::Ok().json(json!({"version": published.version})))
}

#[derive(Deserialize)]
struct SearchQuery {
    q: String,
    limit: Option<usize>,
}

async fn store_search(
    node: web::Data<Node>,
    req: HttpRequest,
    body: Bytes,
    path: web::Path<String>,
    q: web::Query<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    verify(&node, &req, &body)?;
    let node = node.into_inner();
    let store = store_param(&path)?;
    let ids = node.search_local(&store, &q.q, q.limit.unwrap_or(48).min(200)).await?;
    Ok(HttpResponse::Ok().json(json!({"ids": ids})))
}

/// Stock levels a commerce backend reported to a shopper on another node: `{"stock": {id: n}}`.
async fn store_stock(node: web::Data<Node>, req: HttpRequest, body: Bytes, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    verify(&node, &req, &body)?;
    let node = node.into_inner();
    let store = store_param(&path)?;
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
    let changes: Vec<crate::feed::CatalogChange> = v["stock"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(id, n)| {
            Some(crate::feed::CatalogChange::SetStock { product: crate::ids::ProductId::parse(id).ok()?, stock: n.as_i64()?.max(0) })
        })
        .collect();
    let msg = crate::actors::store::ApplyCatalogChanges { source: crate::feed::ChangeSource::Backend, changes };
    let outcome = node.ask_store(&store, msg).await.map_err(crate::http::errors::actor_error)?;
    let outcome = outcome.map_err(crate::http::errors::store_error)?;
    Ok(HttpResponse::Ok().json(json!({"applied": true, "outcome": format!("{outcome:?}")})))
}
