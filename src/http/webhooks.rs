//! Webhook receivers, served on every host:
//!
//! - `POST /webhooks/shopify` — store from `X-Shopify-Shop-Domain` (mapped in the node catalog),
//!   signature `X-Shopify-Hmac-Sha256`, topic `X-Shopify-Topic`, id `X-Shopify-Webhook-Id`.
//! - `POST /webhooks/generic` — store from the `Vitrina-Store` header (or the store the Host
//!   serves), signature `Vitrina-Signature: t=…,v1=…`; the envelope's `store` must agree.
//!
//! Order of checks: find the store and its secret, verify the signature on the raw bytes, and
//! only then parse JSON. Every signature failure — and an unknown shop or a store without a
//! secret, which a forger must not be able to tell apart — is 401 `invalid_signature`.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use crate::actors::store::{ApplyCatalogChanges, GetWebhookSecret};
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::feed::signature::{self, SignatureError, WebhookSecret};
use crate::feed::{generic, shopify, ChangeSource, WebhookId};
use crate::http::errors::actor_error;
use crate::ids::StoreId;
use crate::node::Node;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(super::at("/webhooks/shopify", [web::post().to(shopify_webhook)]))
        .service(super::at("/webhooks/generic", [web::post().to(generic_webhook)]));
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn rejected(format: &'static str, why: impl std::fmt::Display) -> ApiError {
    crate::metrics::incr("vitrina_webhooks_total", &[("format", format), ("outcome", "rejected")]);
    ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", why.to_string())
}

async fn secret_of(node: &Arc<Node>, store: &StoreId) -> Result<Option<WebhookSecret>, ApiError> {
    node.ask_store(store, GetWebhookSecret).await.map_err(actor_error)
}

async fn apply(
    node: &Arc<Node>,
    store: &StoreId,
    source: ChangeSource,
    change: crate::feed::CatalogChange,
) -> Result<HttpResponse, ApiError> {
    let format = match &source {
        ChangeSource::Webhook { format, .. } => *format,
        _ => "other",
    };
    let report = node
        .ask_store(store, ApplyCatalogChanges { source, changes: vec![change] })
        .await
        .map_err(actor_error)?
        .map_err(crate::http::errors::store_error)?;
    // A bounded outcome: the report's finer status (applied, stale, ...) is in the answer.
    let outcome = if report.status == "duplicate" { "duplicate" } else { "accepted" };
    crate::metrics::incr("vitrina_webhooks_total", &[("format", format), ("outcome", outcome)]);
    Ok(HttpResponse::Ok().json(report))
}

/// `POST /webhooks/shopify`.
pub async fn shopify_webhook(node: web::Data<Node>, req: HttpRequest, body: Bytes) -> Result<HttpResponse, ApiError> {
    const FORMAT: &str = "shopify";
    let node = node.into_inner();
    let domain = header(&req, "x-shopify-shop-domain").ok_or_else(|| rejected(FORMAT, SignatureError::Missing("X-Shopify-Shop-Domain")))?;
    let store = node
        .catalog
        .store_for_shopify_domain(domain)
        .map_err(ApiError::internal)?
        .ok_or_else(|| rejected(FORMAT, SignatureError::NoSecret))?;
    let secret = secret_of(&node, &store).await?.ok_or_else(|| rejected(FORMAT, SignatureError::NoSecret))?;
    signature::verify_shopify(&secret, &body, header(&req, "x-shopify-hmac-sha256")).map_err(|e| rejected(FORMAT, e))?;

    let id = header(&req, "x-shopify-webhook-id")
        .and_then(WebhookId::parse)
        .ok_or_else(|| ApiError::bad_request("invalid_webhook", "X-Shopify-Webhook-Id is required"))?;
    let topic_raw = header(&req, "x-shopify-topic").unwrap_or("");
    let Some(topic) = shopify::Topic::parse(topic_raw) else {
        // Acknowledge topics we do not use, or Shopify retries them for two days.
        crate::metrics::incr("vitrina_webhooks_total", &[("format", FORMAT), ("outcome", "accepted")]);
        return Ok(HttpResponse::Ok().json(json!({"status": "ignored", "reason": format!("topic {topic_raw:?} is not handled")})));
    };
    let change = shopify::change_from_webhook(topic, &body, now_ms()).map_err(|m| ApiError::bad_request("invalid_webhook", m))?;
    apply(&node, &store, ChangeSource::Webhook { id, format: FORMAT }, change).await
}

/// `POST /webhooks/generic`.
pub async fn generic_webhook(node: web::Data<Node>, req: HttpRequest, body: Bytes) -> Result<HttpResponse, ApiError> {
    const FORMAT: &str = "generic";
    let node = node.into_inner();
    let store = match header(&req, "vitrina-store") {
        Some(raw) => StoreId::parse(raw)?,
        None => super::tenant::resolve_store(&node, &req)
            .map_err(|_| ApiError::bad_request("unknown_store", "name the store in the Vitrina-Store header"))?,
    };
    if !node.catalog.store_exists(&store).map_err(ApiError::internal)? {
        return Err(rejected(FORMAT, SignatureError::NoSecret));
    }
    let secret = secret_of(&node, &store).await?.ok_or_else(|| rejected(FORMAT, SignatureError::NoSecret))?;
    let now_secs = now_ms() / 1000;
    signature::verify_generic(&secret, &body, header(&req, "vitrina-signature"), now_secs).map_err(|e| rejected(FORMAT, e))?;

    let hook = generic::parse(&body).map_err(|m| ApiError::bad_request("invalid_webhook", m))?;
    if hook.store != store {
        return Err(ApiError::bad_request("invalid_webhook", format!("the envelope names store {} but was sent for {store}", hook.store)));
    }
    apply(&node, &store, ChangeSource::Webhook { id: hook.id, format: FORMAT }, hook.change).await
}
