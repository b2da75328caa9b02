//! Endpoints nodes call on each other (`/internal/*`, signed with the cluster secret) and the
//! operator's `GET /cluster/status` (operator token).

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::catalog::CatalogDump;
use crate::cluster::auth;
use crate::cluster::handoff::{self, SHA_HEADER};
use crate::cluster::NodeId;
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
    cfg.service(super::at("/cluster/status", [web::get().to(status)]))
        .service(super::at("/internal/membership", [web::post().to(change_membership)]))
        .service(super::at("/internal/catalog", [web::get().to(get_catalog), web::post().to(post_catalog)]))
        .service(super::at("/internal/handoff", [web::post().to(handoff_release)]))
        .service(super::at("/internal/handoff/ack", [web::post().to(handoff_ack)]))
        .service(super::at("/internal/adopt", [web::post().to(adopt)]))
        .service(super::at("/internal/stores/{store}/snapshot", [web::get().to(store_snapshot)]))
        .service(super::at("/internal/stores/{store}/version", [web::get().to(store_version)]))
        .service(super::at("/internal/stores/{store}/published", [web::post().to(store_published)]))
        .service(super::at("/internal/stores/{store}/search", [web::get().to(store_search)]))
        .service(super::at("/internal/stores/{store}/stock", [web::post().to(store_stock)]));
}

async fn status(node: web::Data<Node>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    crate::http::operator_only(&node, &req)?;
    let membership = node.cluster.membership();
    let local = node.registry.live_counts();
    Ok(HttpResponse::Ok().json(json!({
        "node": node.cluster.id,
        "enabled": node.cluster.enabled(),
        // Where membership and ownership live: etcd, or this node alone.
        "coordination": if node.cluster.enabled() { "etcd" } else { "local" },
        "lease": node.cluster.coordination().lease_health(),
        "epoch": membership.epoch,
        "members": membership.members.iter().map(|(id, m)| json!({"id": id, "addr": m.addr, "state": m.state})).collect::<Vec<_>>(),
        "vnodes": node.cluster.settings.vnodes,
        "shards": node.cluster.settings.shards,
        "liveActors": {"stores": local.0, "shoppers": local.1},
        "localActorFiles": handoff::local_actor_keys(&**node).len(),
    })))
}

/// An operator's change to the membership (`vitrina cluster drain|remove`, signed with the
/// cluster secret). Joins, leaves and failures happen through etcd leases.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
enum MembershipChange {
    /// The node owns nothing from now on, hands its files over, then leaves.
    Drain { node: NodeId },
    /// The node is out for good, a member or one already gone (its lease expired): the files
    /// only it held are declared lost, so their keys start empty (or from object storage).
    Remove { node: NodeId },
}

async fn change_membership(node: web::Data<Node>, req: HttpRequest, body: Bytes) -> Result<HttpResponse, ApiError> {
    verify(&node, &req, &body)?;
    let change: MembershipChange = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_change", e.to_string()))?;
    let result = match &change {
        MembershipChange::Drain { node: target } => {
            if !node.cluster.membership().members.contains_key(target.as_str()) {
                return Err(ApiError::not_found(format!("no member {target}")));
            }
            node.cluster.drain(target).await
        }
        MembershipChange::Remove { node: target } => node.cluster.remove(target).await,
    };
    result.map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(HttpResponse::Ok().json(json!({"epoch": node.cluster.epoch()})))
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

async fn handoff_release(node: web::Data<Node>, req: HttpRequest, body: Bytes, q: web::Query<KeyQuery>) -> Result<HttpResponse, ApiError> {
    verify(&node, &req, &body)?;
    let node = node.into_inner();
    let key = parse_key(&q.key)?;
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
    // On etcd, hold the key's shard first: this node becomes its last holder in etcd, so the
    // node that owns the key next pulls the file from here. Accepted without it, the file
    // would be on a node no holder record names, and the next owner would start the key empty.
    if node.cluster.enabled() {
        crate::cluster::ownership::ensure_shard(&*node, &key).await.map_err(|e| crate::http::errors::moving(e.to_string()))?;
    }
    // Never install under a live actor.
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
        node.registry.evict_for(&key, crate::runtime::registry::PassivationReason::Handoff).await;
    }
    // Nor while one activates or passivates: the slot is reserved until the file is in place.
    // Busy: the pusher retries.
    let Some(_reserved) = node.registry.try_reserve(&key) else {
        return Err(crate::http::errors::moving(format!("{key} is activating or passivating here; push again")));
    };
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
