//! Cross-site request forgery: a state-changing shopper request (any method but GET, HEAD and
//! OPTIONS, outside the admin API, webhooks and node-to-node routes, which authenticate by
//! token or signature, not cookie) must come from a page of the same store.
//!
//! `Origin` (else `Referer`) must name a host of the store the `Host` names; a foreign origin
//! or `null` (sandboxed frames, some redirects) is 403 `csrf_rejected`. Without either header
//! the client is not a browser on a page (browsers send `Origin` on every cross-site POST):
//! a POST is accepted then only with a JSON body, which a cross-site page cannot send without
//! a CORS preflight this node never grants; a form POST without either header is refused. PUT,
//! PATCH and DELETE need a preflight from another site anyway.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::web;

use super::body::{self, BodyKind};
use super::tenant;
use crate::error::ApiError;
use crate::ids::StoreId;
use crate::node::Node;

/// Whether this request is one the check applies to.
fn guarded(req: &ServiceRequest) -> bool {
    let path = req.path();
    !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && !path.starts_with("/admin/")
        && !path.starts_with("/webhooks/")
        && !path.starts_with("/internal/")
}

/// The `host[:port]` of an origin or URL (`https://shop.example:8443/path` → `shop.example:8443`).
pub(super) fn authority(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    // No credentials in an origin; a `user@host` referer is not a page of ours.
    (!authority.is_empty() && !authority.contains('@')).then_some(authority)
}

/// `Ok` when the request may proceed; the reason it may not otherwise.
fn verdict(node: &Node, req: &ServiceRequest, store: &StoreId) -> Result<(), String> {
    let header = |name: header::HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok());
    let (source, what) = match (header(header::ORIGIN), header(header::REFERER)) {
        (Some(origin), _) => (origin, "Origin"),
        (None, Some(referer)) => (referer, "Referer"),
        // PUT, PATCH and DELETE cannot come from another site without a preflight (nor from
        // a form at all); a POST can, unless its body is JSON.
        (None, None) if req.method() != Method::POST => return Ok(()),
        (None, None) => {
            return match body::kind_of(req.request()) {
                Some(BodyKind::Json) => Ok(()),
                _ => Err("a form post must come from a page of this store (no Origin or Referer was sent)".into()),
            }
        }
    };
    if source.trim() == "null" {
        return Err(format!("{what} is null"));
    }
    let Some(host) = authority(source.trim()) else {
        return Err(format!("{what} is not a URL of this store"));
    };
    match node.catalog.resolve_host(host) {
        Ok(Some(s)) if &s == store => Ok(()),
        _ => Err(format!("{what} {:?} is not a host of this store", crate::catalog::normalise_host(host))),
    }
}

/// The middleware: runs before the routing middleware, so a refused request is never
/// forwarded (and a forwarded one is checked again by its owner, from the same headers).
pub async fn check_origin(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if !guarded(&req) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let Some(node) = req.app_data::<web::Data<Node>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    // An unknown host is answered by the handler (404); nothing there to protect.
    let store = match node.catalog.resolve_host(&tenant::host_of(req.request())) {
        Ok(Some(store)) => store,
        _ => return Ok(next.call(req).await?.map_into_boxed_body()),
    };
    match verdict(&node, &req, &store) {
        Ok(()) => Ok(next.call(req).await?.map_into_boxed_body()),
        Err(why) => {
            crate::metrics::incr("vitrina_csrf_rejected_total", &[]);
            let html = tenant::wants_html(req.request());
            let err = super::shop::ShopError::new(ApiError::csrf_rejected(why), html);
            let (http_req, _) = req.into_parts();
            Ok(ServiceResponse::new(http_req, actix_web::ResponseError::error_response(&err)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::authority;

    #[test]
    fn authorities_of_origins_and_referers() {
        assert_eq!(authority("http://demo.localhost:8080"), Some("demo.localhost:8080"));
        assert_eq!(authority("https://shop.example/cart?x=1"), Some("shop.example"));
        assert_eq!(authority("https://evil@shop.example/"), None);
        assert_eq!(authority("null"), None);
        assert_eq!(authority("https://"), None);
    }
}
