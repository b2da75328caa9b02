//! Who a shopper request is for: the store (from the Host header) and the session (from the
//! `sid` cookie), plus the request facts a page depends on.

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::http::header;
use actix_web::HttpRequest;

use super::session::SessionToken;
use crate::error::ApiError;
use crate::ids::{Slug, StoreId};
use crate::node::Node;
use crate::render::{PageRequest, Route};
use crate::store::model::Device;

pub const SESSION_COOKIE: &str = "sid";
pub const CONSENT_COOKIE: &str = "vitrina_consent";
pub const REGION_COOKIE: &str = "vitrina_region";

pub use crate::error::wants_html;

/// The host the request is for: the request-target's authority when it has one (absolute-form,
/// or HTTP/2's `:authority`), which wins over `Host` (RFC 9112 §3.2.2, RFC 9113 §8.3.1) as it
/// does for a proxy or cache in front; else `Host` (the HTTP/1 parser refuses a request with
/// two).
pub fn host_of(req: &HttpRequest) -> String {
    if let Some(authority) = req.uri().authority() {
        return authority.to_string();
    }
    req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_string).unwrap_or_default()
}

pub fn resolve_store(node: &Node, req: &HttpRequest) -> Result<StoreId, ApiError> {
    let host = host_of(req);
    match node.catalog.resolve_host(&host) {
        Ok(Some(store)) => {
            // Kept for the request metrics (`http::observe`), which count requests per store.
            actix_web::HttpMessage::extensions_mut(req).insert(store.clone());
            Ok(store)
        }
        Ok(None) => match crate::catalog::normalise_host(&host) {
            // Missing or not a host name (RFC 9112 §3.2 asks for a 400): naming `""` as an
            // unknown store would send the client looking for a store that cannot exist.
            name if name.is_empty() => Err(ApiError::bad_request(
                "invalid_host",
                "the request names no host, or not a host name (its Host header or request-target)",
            )),
            name => Err(ApiError::new(actix_web::http::StatusCode::NOT_FOUND, "unknown_host", format!("no store is served at {name:?}"))),
        },
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// The session this request's cookie names, if this node's key signed it. A missing,
/// malformed or forged cookie is no session (nothing on disk or in an actor is consulted); the
/// caller mints a new one when it needs one. Whether the token is still the shopper's current
/// one (not rotated away) is checked against the actor (`http::shop`).
pub fn session_of(req: &HttpRequest) -> Option<SessionToken> {
    req.cookie(SESSION_COOKIE).and_then(|c| SessionToken::decode(c.value()))
}

/// Whether the request carries a `sid` cookie at all (valid or not).
pub fn has_session_cookie(req: &HttpRequest) -> bool {
    req.cookie(SESSION_COOKIE).is_some()
}

pub fn session_cookie(req: &HttpRequest, token: &SessionToken) -> Cookie<'static> {
    private_cookie(req, SESSION_COOKIE, token.encode(), CookieDuration::days(365))
}

pub fn clear_session_cookie(req: &HttpRequest) -> Cookie<'static> {
    removal(req, SESSION_COOKIE)
}

/// The product a visitor without a session landed on. Its page was the store's anonymous page
/// (no shopper actor, no file, for a visitor who may never come back); the view waits here and
/// is recorded in the shopper's history by its first request with the new session.
pub const LANDING_COOKIE: &str = "vitrina_landing";

pub fn landing_cookie(req: &HttpRequest, product: &Slug) -> Cookie<'static> {
    private_cookie(req, LANDING_COOKIE, product.to_string(), CookieDuration::days(1))
}

pub fn clear_landing_cookie(req: &HttpRequest) -> Cookie<'static> {
    removal(req, LANDING_COOKIE)
}

/// The product handle in the landing cookie; an invalid value counts as none.
pub fn landing_of(req: &HttpRequest) -> Option<Slug> {
    req.cookie(LANDING_COOKIE).and_then(|c| Slug::parse(c.value()).ok())
}

/// A cookie only the server reads (HttpOnly), for the whole site, sent on top-level navigation,
/// `Secure` when the node is served over HTTPS (`http.secure_cookies`).
fn private_cookie(req: &HttpRequest, name: &'static str, value: String, max_age: CookieDuration) -> Cookie<'static> {
    let mut c = site_cookie(req, name, value);
    c.set_http_only(true);
    c.set_max_age(max_age);
    c
}

/// A cookie for the whole site: `SameSite=Lax`, `Secure` over HTTPS.
pub fn site_cookie(req: &HttpRequest, name: &'static str, value: String) -> Cookie<'static> {
    Cookie::build(name, value).path("/").same_site(SameSite::Lax).secure(super::proxy::secure_cookies(req)).finish()
}

/// Tells the browser to drop `name` (same path and attributes as it was set with).
fn removal(req: &HttpRequest, name: &'static str) -> Cookie<'static> {
    let mut c = site_cookie(req, name, String::new());
    c.set_http_only(true);
    c.make_removal();
    c
}

pub fn page_request(req: &HttpRequest, route: Route) -> PageRequest {
    let ua = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let region = req
        .cookie(REGION_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|r| (1..=16).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    PageRequest {
        route,
        device: Device::from_user_agent(ua),
        region,
        analytics_declined: req.cookie(CONSENT_COOKIE).is_some_and(|c| c.value() == "declined"),
    }
}
