//! The operator's view of stores and shoppers (`/operator/v1/*`, operator token), answered on
//! any node of a cluster:
//! - `GET …/stores`: every store in the catalog;
//! - `GET …/actors`: this node's live actors;
//! - `GET …/stores/{store}/shoppers?after=&limit=`: a store's shoppers with a file, from every
//!   node (size, last write, the node holding it), paged by session id;
//! - `GET …/stores/{store}/shoppers/{sid}`: one shopper's state and file, from its owner;
//!   `…/export`: the same state as a JSON download;
//! - `DELETE …/stores/{store}/shoppers/{sid}`: erases the shopper everywhere — its live
//!   instance, file, WAL and object-storage copies — on its owner.
//!
//! Nodes ask each other through `/internal/operator/*` (signed with the cluster secret).

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::actors::shopper::ExportShopper;
use crate::cluster::Placement;
use crate::error::ApiError;
use crate::http::errors::actor_error;
use crate::ids::{ActorKey, SessionId, StoreId};
use crate::node::Node;

const MAX_PAGE: usize = 1000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::at("/operator/v1/stores", [super::get().to(stores)]))
        .service(super::at("/operator/v1/actors", [super::get().to(actors)]))
        .service(super::at("/operator/v1/stores/{store}/shoppers", [super::get().to(shoppers)]))
        .service(super::at("/operator/v1/stores/{store}/shoppers/{sid}", [super::get().to(inspect), web::delete().to(erase)]))
        .service(super::at("/operator/v1/stores/{store}/shoppers/{sid}/export", [super::get().to(export)]))
        .service(super::at("/internal/operator/stores/{store}/shoppers", [web::get().to(internal_shoppers)]))
        .service(super::at(
            "/internal/operator/stores/{store}/shoppers/{sid}",
            [web::get().to(internal_inspect), web::delete().to(internal_erase)],
        ));
}

fn store_id(raw: &str) -> Result<StoreId, ApiError> {
    StoreId::parse(raw).map_err(ApiError::from)
}

fn shopper_key(store: &str, sid: &str) -> Result<ActorKey, ApiError> {
    Ok(ActorKey::Shopper(store_id(store)?, SessionId::parse(sid).map_err(ApiError::from)?))
}

async fn stores(node: web::Data<Node>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    super::operator_only(&node, &req)?;
    let ids = node.catalog.stores().map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(json!({"stores": ids})))
}

async fn actors(node: web::Data<Node>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    super::operator_only(&node, &req)?;
    let live: Vec<Value> = node
        .registry
        .live_keys()
        .iter()
        .map(|k| json!({"key": k.to_string(), "kind": if matches!(k, ActorKey::Store(_)) { "store" } else { "shopper" }}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"node": node.cluster.id.as_str(), "actors": live})))
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// This node's shopper files of `store` with ids after `after`, at most `limit`, by id.
fn local_shoppers(node: &Node, store: &StoreId, after: Option<&str>, limit: usize) -> Vec<Value> {
    let dir = node.layout.root().join("stores").join(store.as_str()).join("shoppers");
    let mut found: Vec<(String, u64, Option<u64>)> = Vec::new();
    for bucket in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(bucket.path()).into_iter().flatten().flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            let Some(sid) = name.strip_suffix(".db") else { continue };
            if SessionId::parse(sid).is_err() || after.is_some_and(|a| sid <= a) {
                continue;
            }
            let meta = file.metadata().ok();
            let mut bytes = meta.as_ref().map_or(0, |m| m.len());
            let mut modified = meta.and_then(|m| m.modified().ok());
            if let Ok(wal) = std::fs::metadata(file.path().with_extension("db-wal")) {
                bytes += wal.len();
                modified = modified.max(wal.modified().ok());
            }
            let ms = modified.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_millis() as u64);
            found.push((sid.to_string(), bytes, ms));
        }
    }
    found.sort();
    found.truncate(limit);
    found
        .into_iter()
        .map(|(sid, bytes, ms)| {
            json!({"session": sid, "bytes": bytes, "lastWrite": ms.map(|m| crate::feed::ms_rfc3339(m as i64)), "node": node.cluster.id.as_str()})
        })
        .collect()
}

async fn shoppers(
    node: web::Data<Node>,
    req: HttpRequest,
    path: web::Path<String>,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    super::operator_only(&node, &req)?;
    let store = store_id(&path)?;
    if !node.catalog.store_exists(&store).map_err(ApiError::internal)? {
        return Err(ApiError::not_found(format!("no store {store}")));
    }
    let limit = page.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let after = page.after.as_deref();
    let mut all = local_shoppers(&node, &store, after, limit);
    let query = format!("?limit={limit}{}", after.map(|a| format!("&after={}", crate::cluster::handoff::urlencode(a))).unwrap_or_default());
    for (peer, addr) in node.cluster.peers() {
        let path = format!("/internal/operator/stores/{store}/shoppers{query}");
        let answer: Result<Value, String> = async {
            let res = node.cluster.call(&addr, reqwest::Method::GET, &path, Vec::new()).await.map_err(|e| e.to_string())?;
            res.json::<Value>().await.map_err(|e| e.to_string())
        }
        .await;
        match answer {
            Ok(v) => all.extend(v["shoppers"].as_array().cloned().unwrap_or_default()),
            Err(e) => return Err(ApiError::unavailable(format!("node {peer} did not list its shoppers ({e}); retry"))),
        }
    }
    all.sort_by(|a, b| a["session"].as_str().cmp(&b["session"].as_str()));
    // A file moving between nodes may be listed twice for a moment: one entry per session.
    all.dedup_by(|a, b| a["session"] == b["session"]);
    all.truncate(limit);
    let next = (all.len() == limit).then(|| all.last().and_then(|s| s["session"].as_str()).map(str::to_string)).flatten();
    Ok(HttpResponse::Ok().json(json!({"store": store, "shoppers": all, "next": next})))
}

/// The shopper's state and file, on this node (its owner).
async fn inspect_here(node: &Arc<Node>, key: &ActorKey) -> Result<Value, ApiError> {
    let ActorKey::Shopper(store, sid) = key else { return Err(ApiError::not_found("not a shopper")) };
    if !node.catalog.store_exists(store).map_err(ApiError::internal)? {
        return Err(ApiError::not_found(format!("no store {store}")));
    }
    let path = node.layout.actor_db(key);
    let bytes = std::fs::metadata(&path).map(|m| m.len()).ok();
    if bytes.is_none() {
        return Err(ApiError::not_found(format!("no shopper {sid} in store {store}")));
    }
    let state = node.ask_shopper(store, sid, ExportShopper).await.map_err(actor_error)?.map_err(ApiError::from)?;
    Ok(json!({"shopper": state, "file": {"bytes": bytes, "node": node.cluster.id.as_str()}}))
}

/// `None` when this node owns `key` (the caller acts here); else the owner's answer to the same
/// request on its internal endpoint.
async fn on_owner(node: &Arc<Node>, key: &ActorKey, method: reqwest::Method) -> Result<Option<Value>, ApiError> {
    match node.cluster.placement(key) {
        Placement::Local => Ok(None),
        Placement::Nowhere => Err(ApiError::unavailable(format!("no node owns {key}"))),
        Placement::Remote { addr, node: owner } => {
            let ActorKey::Shopper(store, sid) = key else { return Err(ApiError::not_found("not a shopper")) };
            let path = format!("/internal/operator/stores/{store}/shoppers/{sid}");
            let res = node
                .cluster
                .call(&addr, method, &path, Vec::new())
                .await
                .map_err(|e| ApiError::unavailable(format!("owner {owner}: {e}")))?;
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            match status {
                200 => Ok(Some(body)),
                404 => Err(ApiError::not_found(body["error"]["message"].as_str().unwrap_or("not found").to_string())),
                _ => Err(ApiError::unavailable(format!("owner {owner} answered {status}; retry"))),
            }
        }
    }
}

/// A shopper's state and file, from whichever node owns it.
async fn inspection(node: Arc<Node>, store: &str, sid: &str) -> Result<Value, ApiError> {
    let key = shopper_key(store, sid)?;
    match on_owner(&node, &key, reqwest::Method::GET).await? {
        Some(remote) => Ok(remote),
        None => inspect_here(&node, &key).await,
    }
}

async fn inspect(node: web::Data<Node>, req: HttpRequest, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    super::operator_only(&node, &req)?;
    let body = inspection(node.into_inner(), &path.0, &path.1).await?;
    Ok(HttpResponse::Ok().insert_header(("cache-control", "no-store")).json(body))
}

async fn export(node: web::Data<Node>, req: HttpRequest, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    super::operator_only(&node, &req)?;
    let body = inspection(node.into_inner(), &path.0, &path.1).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .insert_header(("content-disposition", format!("attachment; filename=\"shopper-{}-{}.json\"", path.0, path.1)))
        .json(&body["shopper"]))
}

async fn erase_here(node: &Arc<Node>, key: &ActorKey) -> Result<Value, ApiError> {
    let existed = crate::actors::sweeper::erase_shopper(node, key).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    tracing::info!(%key, existed, "shopper erased by the operator");
    crate::metrics::incr("vitrina_shoppers_erased_total", &[]);
    Ok(json!({"erased": existed, "node": node.cluster.id.as_str()}))
}

async fn erase(node: web::Data<Node>, req: HttpRequest, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    super::operator_only(&node, &req)?;
    let key = shopper_key(&path.0, &path.1)?;
    let node = node.into_inner();
    if !node.catalog.store_exists(key.store()).map_err(ApiError::internal)? {
        return Err(ApiError::not_found(format!("no store {}", key.store())));
    }
    let body = match on_owner(&node, &key, reqwest::Method::DELETE).await? {
        Some(remote) => remote,
        None => erase_here(&node, &key).await?,
    };
    Ok(HttpResponse::Ok().json(body))
}

async fn internal_shoppers(
    node: web::Data<Node>,
    req: HttpRequest,
    path: web::Path<String>,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    super::internal::verify(&node, &req, &Bytes::new())?;
    let store = store_id(&path)?;
    let limit = page.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    Ok(HttpResponse::Ok().json(json!({"shoppers": local_shoppers(&node, &store, page.after.as_deref(), limit)})))
}

async fn internal_inspect(node: web::Data<Node>, req: HttpRequest, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    super::internal::verify(&node, &req, &Bytes::new())?;
    let key = shopper_key(&path.0, &path.1)?;
    Ok(HttpResponse::Ok().json(inspect_here(&node.into_inner(), &key).await?))
}

async fn internal_erase(node: web::Data<Node>, req: HttpRequest, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    super::internal::verify(&node, &req, &Bytes::new())?;
    let key = shopper_key(&path.0, &path.1)?;
    Ok(HttpResponse::Ok().json(erase_here(&node.into_inner(), &key).await?))
}
