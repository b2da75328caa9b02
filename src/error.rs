//! The uniform error body and the request id every response carries.
//!
//! Each layer has its own error type; they meet here, once, as [`ApiError`], which renders
//! `{"error":{"code","message","details","requestId","timestamp"}}`. The request-id middleware
//! also rewrites any other 4xx/5xx (an extractor's, the router's 404/405) into the same body, so
//! no client ever sees two error formats.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, ResponseError};
use serde_json::{json, Value};

use crate::ids::InvalidId;

tokio::task_local! {
    static REQUEST_ID: RequestId;
}

/// The id of the request being served; echoed in `x-request-id` and in error bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    fn generate() -> Self {
        RequestId(format!("req_{}", uuid::Uuid::new_v4().simple()))
    }

    /// The id of the request this task is serving, or a fresh one outside a request.
    pub fn current() -> RequestId {
        REQUEST_ID.try_with(|id| id.clone()).unwrap_or_else(|_| RequestId::generate())
    }

    /// Accept a caller's id (a proxy's, another node's) only when it is short and printable.
    fn from_header(value: &HeaderValue) -> Option<RequestId> {
        let s = value.to_str().ok()?;
        let ok = (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        ok.then(|| RequestId(s.to_string()))
    }
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), details: Value::Null }
    }
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
    /// Too many requests in `scope`; the response carries `Retry-After: retry_after_secs`.
    pub fn rate_limited(scope: &'static str, retry_after_secs: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", format!("too many requests ({scope}); retry in {retry_after_secs} s"))
            .with_details(json!({"scope": scope, "retryAfterSecs": retry_after_secs}))
    }
    /// A state-changing request that a page of another site (or no page) made a browser send.
    pub fn csrf_rejected(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "csrf_rejected", message)
    }
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message)
    }
    /// 507: the node had no room to save the change (nothing was saved; reads still work).
    pub fn insufficient_storage(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::INSUFFICIENT_STORAGE, code, message)
    }
    /// An internal failure: logged in full, reported to the client without internals.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log for this request id")
    }

    /// When to retry, for an answer that names it (`details.retryAfterSecs`): sent as
    /// `Retry-After` (any other 503 gets 1 s, `request_id_middleware`).
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.details.get("retryAfterSecs").and_then(Value::as_u64)
    }

    pub fn body(&self, request_id: &RequestId) -> Value {
        json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "details": self.details,
                "requestId": request_id.0,
                "timestamp": crate::clock::now_rfc3339(),
            }
        })
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        let id = RequestId::current();
        let mut res = HttpResponse::build(self.status);
        res.insert_header(("x-request-id", id.0.clone()));
        if let Some(secs) = self.retry_after_secs() {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        res.json(self.body(&id))
    }
}

impl From<InvalidId> for ApiError {
    fn from(e: InvalidId) -> Self {
        ApiError::bad_request("invalid_id", e.to_string())
    }
}

fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        429 => "too_many_requests",
        503 => "unavailable",
        507 => "insufficient_storage",
        s if s >= 500 => "internal",
        _ => "error",
    }
}

/// Whether the client is a browser that wants HTML (errors then come as a page, not JSON).
pub fn wants_html(req: &actix_web::HttpRequest) -> bool {
    req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

/// Middleware: assigns the request id, runs the request inside its task-local scope, stamps
/// `x-request-id` on every response, and turns foreign error responses into the uniform body.
pub async fn request_id_middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let id = req.headers().get("x-request-id").and_then(RequestId::from_header).unwrap_or_else(RequestId::generate);
    req.extensions_mut().insert(id.clone());
    // Handlers' errors arrive here as responses; an `Err` from deeper middleware is rendered by
    // actix itself (keeping a clone of the request to render it would break actix's
    // exclusive-request invariants).
    // The request's span: every log line within it carries the request id, and with traces
    // on it continues the caller's trace (`traceparent`) or starts one.
    // At the error level so that it is enabled whatever `VITRINA_LOG` lets through: a warning
    // logged during the request still names it.
    let span = tracing::error_span!("request", request_id = %id.0, method = %req.method(), path = %req.path());
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&RequestHeaders(req.headers())));
    let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(&span, parent);
    let mut res = REQUEST_ID.scope(id.clone(), tracing::Instrument::instrument(next.call(req), span)).await?.map_into_boxed_body();
    let status = res.status();
    if status.is_client_error() || status.is_server_error() {
        let ours = res.response().error().is_some_and(|e| e.as_error::<ApiError>().is_some());
        let content_type = res.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let is_page = content_type.starts_with("text/html");
        if !ours && !is_page && !content_type.starts_with("application/json") {
            let allowed = res.headers().get(header::ALLOW).and_then(|v| v.to_str().ok());
            let message = match (res.response().error(), allowed) {
                (Some(e), _) => e.to_string(),
                (None, Some(allowed)) if status == StatusCode::METHOD_NOT_ALLOWED => {
                    format!("{} is not allowed at {}; it answers {allowed}", res.request().method(), res.request().path())
                }
                (None, _) => status.canonical_reason().unwrap_or("error").to_string(),
            };
            let err = ApiError::new(status, code_for_status(status), message);
            let mut builder = HttpResponse::build(status);
            for (name, value) in res.headers() {
                if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                    builder.append_header((name.clone(), value.clone()));
                }
            }
            // A browser gets a page, as from the shop's own errors.
            let replaced = if wants_html(res.request()) {
                let title = status.canonical_reason().unwrap_or("Error");
                builder.content_type("text/html; charset=utf-8").body(crate::render::error_page(
                    status.as_u16(),
                    title,
                    &err.message,
                    &id.0,
                ))
            } else {
                builder.json(err.body(&id))
            };
            res = res.into_response(replaced);
        }
    }
    if status == actix_web::http::StatusCode::SERVICE_UNAVAILABLE && !res.headers().contains_key(header::RETRY_AFTER) {
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if let Ok(value) = HeaderValue::from_str(&id.0) {
        res.headers_mut().insert(header::HeaderName::from_static("x-request-id"), value);
    }
    Ok(res)
}

/// A request's headers as the trace-context propagator reads them.
struct RequestHeaders<'a>(&'a actix_web::http::header::HeaderMap);

impl opentelemetry::propagation::Extractor for RequestHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
