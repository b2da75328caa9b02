//! The one place errors of the layers below become HTTP answers: a status, a stable `code`
//! and details, in the uniform body of [`ApiError`].

use actix_web::http::StatusCode;
use serde_json::json;

use crate::actors::access::SearchError;
use crate::actors::shopper::ShopperError;
use crate::actors::store::StoreError;
use crate::error::ApiError;
use crate::render::RenderError;
use crate::replication::ReplicationError;
use crate::runtime::registry::ActorError;
use crate::sqlite::StorageError;

/// A storage failure: 507 when there was no room (a full disk, or the store's shopper limit),
/// with nothing saved; otherwise internal.
pub fn storage_error(e: StorageError) -> ApiError {
    match e {
        StorageError::ShopperLimit { limit } => {
            ApiError::insufficient_storage("shopper_limit_reached", e.to_string()).with_details(json!({"limit": limit, "saved": false}))
        }
        e if e.is_disk_full() => {
            tracing::warn!(error = %e, "a write was refused: no space left");
            ApiError::insufficient_storage("insufficient_storage", "the node has no space left to save this change; nothing was saved")
                .with_details(json!({"saved": false}))
        }
        e => ApiError::internal(e),
    }
}

/// A store actor's refusal: validation (400), a missing thing (404), a conflict (409), a store
/// limit (422), or storage.
pub fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Invalid(m) => ApiError::bad_request("validation_failed", m),
        StoreError::InvalidSetting(e) => {
            ApiError::bad_request("validation_failed", e.to_string()).with_details(json!({"field": e.path, "reason": e.message}))
        }
        StoreError::NotFound(m) => ApiError::not_found(m),
        StoreError::Conflict(m) => ApiError::conflict("conflict", m),
        StoreError::Limit { code, message, details } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).with_details(details)
        }
        StoreError::Storage(e) => storage_error(e),
        StoreError::Replication(ref r) => replication_error(r, e.to_string()),
        StoreError::NotOwner(m) => not_acknowledged(m),
    }
}

/// An actor that could not answer: its store is unknown, it is busy, moving, or its file
/// could not be opened or restored.
pub fn actor_error(e: ActorError) -> ApiError {
    match e {
        ActorError::NoSuchStore(s) => ApiError::new(StatusCode::NOT_FOUND, "store_not_found", format!("store {s} does not exist")),
        ActorError::Timeout(..) | ActorError::Unavailable(_) => ApiError::unavailable(e.to_string()),
        ActorError::Activation(_, StorageError::Restore(m)) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "replication_failed",
            format!("this actor's state could not be restored from object storage: {m}"),
        ),
        ActorError::Activation(_, e) if e.is_capacity() => storage_error(e),
        ActorError::Activation(..) => ApiError::internal(e),
        ActorError::NotOwner(_) | ActorError::Moving(..) => moving(e.to_string()),
    }
}

/// A page that could not be rendered; 503 `render_capacity` carries when to retry.
pub fn render_error(e: RenderError) -> ApiError {
    match e {
        RenderError::NotFound(m) => ApiError::not_found(m),
        RenderError::Internal(m) => ApiError::internal(m),
        RenderError::Capacity { retry_after_secs, bound } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "render_capacity", e.to_string())
                .with_details(json!({"retryAfterSecs": retry_after_secs, "bound": bound}))
        }
    }
}

/// 503 `actor_moving`: the actor is between nodes; the client retries.
pub fn moving(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "actor_moving", message)
}

impl From<ShopperError> for ApiError {
    fn from(e: ShopperError) -> Self {
        match e {
            ShopperError::NoSuchProduct(_) => ApiError::new(StatusCode::NOT_FOUND, "product_not_found", e.to_string()),
            ShopperError::InsufficientStock { ref product, available, requested } => {
                ApiError::conflict("insufficient_stock", e.to_string())
                    .with_details(json!({"productId": product, "available": available, "requested": requested}))
            }
            ShopperError::Invalid(m) => ApiError::bad_request("invalid_request", m),
            ShopperError::Store(m) => ApiError::unavailable(m),
            ShopperError::Render(e) => render_error(e),
            ShopperError::Storage(e) => storage_error(e),
            ShopperError::Replication(ref r) => replication_error(r, e.to_string()),
            ShopperError::NotOwner(m) => not_acknowledged(m),
        }
    }
}

/// A `sync`-durability write whose upload failed: `replication_fenced` when another node holds
/// the actor's copies (this node's copy was refused and deleted), else `replication_failed`.
fn replication_error(e: &ReplicationError, message: String) -> ApiError {
    match e {
        ReplicationError::Fenced { .. } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "replication_fenced", message)
            .with_details(json!({"committedLocally": true, "replicated": false, "fenced": true, "retryAfterSecs": 1})),
        _ => replication_failed(message),
    }
}

/// 503 `replication_failed`: the write is committed on this node (and will be uploaded by the
/// periodic snapshot task) but was not acknowledged as `sync` durability requires.
pub fn replication_failed(message: String) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "replication_failed", message)
        .with_details(json!({"committedLocally": true, "replicated": false}))
}

/// 503 `actor_moving`: committed on a node that no longer owns the actor (its lease lapsed or
/// the actor moved); not acknowledged. The client retries on the owner.
pub fn not_acknowledged(message: String) -> ApiError {
    moving(message).with_details(json!({"acknowledged": false}))
}

/// A search with no answer: its store actor's error, or its owner unreachable.
impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        match e {
            SearchError::Actor(e) => actor_error(e),
            SearchError::Store(e) => store_error(e),
            SearchError::Owner(m) => ApiError::unavailable(m),
        }
    }
}
