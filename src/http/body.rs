//! Request bodies that may come as JSON (API clients, `fetch`) or as a plain HTML form (the
//! shop works without JavaScript). Both become a JSON object before anything reads a field.

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::HttpRequest;
use serde_json::{Map, Value};

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
}

pub fn kind_of(req: &HttpRequest) -> Option<BodyKind> {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ct = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match ct.as_str() {
        "application/json" => Some(BodyKind::Json),
        "application/x-www-form-urlencoded" => Some(BodyKind::Form),
        _ => None,
    }
}

/// Parses a JSON object or a form into a JSON object. An empty body is an empty object.
pub fn object(req: &HttpRequest, bytes: &Bytes) -> Result<(BodyKind, Map<String, Value>), ApiError> {
    let kind = match kind_of(req) {
        Some(k) => k,
        None if bytes.is_empty() => return Ok((BodyKind::Json, Map::new())),
        None => {
            return Err(ApiError::new(
                actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send application/json or application/x-www-form-urlencoded",
            ))
        }
    };
    if bytes.is_empty() {
        return Ok((kind, Map::new()));
    }
    let map = match kind {
        BodyKind::Json => match serde_json::from_slice::<Value>(without_bom(bytes)) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(ApiError::bad_request("invalid_body", "the body must be a JSON object")),
            Err(e) => return Err(ApiError::bad_request("invalid_json", format!("invalid JSON: {e}"))),
        },
        BodyKind::Form => {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(bytes)
                .map_err(|e| ApiError::bad_request("invalid_form", format!("invalid form body: {e}")))?;
            pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect()
        }
    };
    Ok((kind, map))
}

/// A JSON object for a route only scripts call (`PUT /preferences`, `PATCH /cart/items/…`):
/// `Content-Type: application/json` is required (415 otherwise), which a page of another site
/// cannot send without a CORS preflight.
pub fn json_object(req: &HttpRequest, bytes: &Bytes) -> Result<(BodyKind, Map<String, Value>), ApiError> {
    if kind_of(req) != Some(BodyKind::Json) {
        return Err(ApiError::unsupported_media_type("send a JSON body with Content-Type: application/json"));
    }
    object(req, bytes)
}

/// A JSON body that must be present and well-formed, for admin routes.
pub fn json(req: &HttpRequest, bytes: &Bytes) -> Result<Value, ApiError> {
    if kind_of(req) != Some(BodyKind::Json) {
        return Err(ApiError::new(
            actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send a JSON body with Content-Type: application/json",
        ));
    }
    serde_json::from_slice(without_bom(bytes)).map_err(|e| ApiError::bad_request("invalid_json", format!("invalid JSON: {e}")))
}

/// JSON text without the UTF-8 byte order mark some clients (Windows tools) put first, which
/// RFC 8259 §8.1 lets a parser ignore.
fn without_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// A field by any of its names (`productId` from JSON, `product_id` from a form).
pub fn field<'a>(map: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| map.get(*n))
}

/// An integer given as a JSON number or as a form string.
pub fn integer(value: Option<&Value>, name: &str) -> Result<Option<i64>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            n.as_i64().map(Some).ok_or_else(|| ApiError::bad_request("invalid_request", format!("{name} must be a whole number")))
        }
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => {
            s.trim().parse().map(Some).map_err(|_| ApiError::bad_request("invalid_request", format!("{name} must be a whole number")))
        }
        Some(_) => Err(ApiError::bad_request("invalid_request", format!("{name} must be a whole number"))),
    }
}

pub fn string(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str)
}
