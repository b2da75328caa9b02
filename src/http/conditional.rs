//! Conditional GET: every successful `GET`/`HEAD` response with a body gets a weak `ETag` (a
//! hash of the body as the handler produced it, before compression — weak, because the
//! compressed and plain forms are the same resource), and a request whose `If-None-Match`
//! names it gets `304 Not Modified` without the body. Pages, assets and API reads alike: the
//! validator is the bytes, so a changed cart or a republished page changes it by itself.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::HttpResponse;

/// Bodies larger than this are sent without a validator rather than hashed.
const MAX_HASHED_BYTES: u64 = 8 * 1024 * 1024;

/// Headers a `304` repeats from the `200` it stands for (RFC 9110, 15.4.5).
const KEPT_ON_304: [header::HeaderName; 5] = [header::CACHE_CONTROL, header::CONTENT_LOCATION, header::DATE, header::EXPIRES, header::VARY];

pub async fn conditional_get(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let readable = matches!(*req.method(), Method::GET | Method::HEAD);
    let if_none_match = req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).map(str::to_string);
    let res = next.call(req).await?.map_into_boxed_body();
    if !readable || res.status() != StatusCode::OK || res.headers().contains_key(header::ETAG) {
        return Ok(res);
    }
    let sized = match res.response().body().size() {
        actix_web::body::BodySize::Sized(n) => n <= MAX_HASHED_BYTES,
        _ => false,
    };
    if !sized {
        return Ok(res);
    }
    let (req, response) = res.into_parts();
    let (head, body) = response.into_parts();
    // Pages and JSON answers are already one `Bytes`: take it as is rather than copying it.
    let bytes = match body.try_into_bytes() {
        Ok(bytes) => bytes,
        Err(body) => actix_web::body::to_bytes(body).await.map_err(|e| actix_web::error::ErrorInternalServerError(e.to_string()))?,
    };
    let tag = format!("W/\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(&bytes));
    let Ok(tag_value) = HeaderValue::from_str(&tag) else {
        return Ok(ServiceResponse::new(req, head.set_body(BoxBody::new(bytes))));
    };
    if if_none_match.as_deref().is_some_and(|list| matches_tag(list, &tag)) {
        let mut not_modified = HttpResponse::NotModified();
        for name in KEPT_ON_304 {
            if let Some(value) = head.headers().get(&name) {
                not_modified.insert_header((name, value.clone()));
            }
        }
        not_modified.insert_header((header::ETAG, tag_value));
        return Ok(ServiceResponse::new(req, not_modified.finish()));
    }
    let mut response = head.set_body(BoxBody::new(bytes));
    response.headers_mut().insert(header::ETAG, tag_value);
    Ok(ServiceResponse::new(req, response))
}

/// `If-None-Match` compares weakly (RFC 9110, 13.1.2): `*`, or any listed tag with the same
/// opaque value whether or not either is weak.
fn matches_tag(list: &str, tag: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let ours = opaque(tag);
    list.split(',').any(|candidate| candidate.trim() == "*" || opaque(candidate) == ours)
}

#[cfg(test)]
mod tests {
    use super::matches_tag;

    #[test]
    fn if_none_match_compares_weakly() {
        let tag = "W/\"abc\"";
        assert!(matches_tag("W/\"abc\"", tag));
        assert!(matches_tag("\"abc\"", tag));
        assert!(matches_tag("\"x\", W/\"abc\"", tag));
        assert!(matches_tag("*", tag));
        assert!(!matches_tag("W/\"abd\"", tag));
        assert!(!matches_tag("", tag));
    }
}
