//! Merchant console logins: the store's admin token, entered once at `/admin/`, is exchanged
//! for a signed, expiring session cookie, so the page never keeps the token.
//!
//! The `vitrina_console` cookie (`HttpOnly; SameSite=Strict; Path=/admin`, `Secure` per
//! `http.secure_cookies`) carries `{store}.{token version}.{expires}.{nonce}.{mac}`: the store
//! it grants, the version of the store's admin token it was issued under (a rotation changes
//! it, which ends every console session of the store), its expiry (unix seconds) and an
//! HMAC-SHA256 (128 bits kept) under the node's session key. The admin API accepts it in place
//! of a bearer token, on the store's own hosts only; a request that changes anything must also
//! carry `x-csrf-token` (a MAC of the cookie, handed out by `POST`/`GET /admin/session`) and a
//! same-origin `Origin`. Logging out puts the session's nonce on a deny list kept until the
//! session would have expired (per node: the cookie is removed from the browser as well).

use std::collections::HashMap;
use std::sync::OnceLock;

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::http::{header, Method, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{body, csrf, proxy, tenant};
use crate::error::ApiError;
use crate::ids::StoreId;
use crate::node::Node;

pub const CONSOLE_COOKIE: &str = "vitrina_console";
pub const CSRF_HEADER: &str = "x-csrf-token";
const COOKIE_PATH: &str = "/admin";
const MAC_HEX: usize = 32;
const MAX_COOKIE_LEN: usize = 256;
/// Logged-out sessions remembered at most (beyond it, expired ones are dropped first).
const MAX_DENIED: usize = 100_000;

/// A verified console session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub store: StoreId,
    pub token_version: i64,
    pub expires: i64,
    nonce: String,
    raw: String,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn mac(key: &[u8], domain: &[u8], text: &str) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(domain);
    m.update(text.as_bytes());
    m
}

fn payload(store: &StoreId, version: i64, expires: i64, nonce: &str) -> String {
    format!("{store}.{version}.{expires}.{nonce}")
}

impl ConsoleSession {
    fn mint(key: &[u8], store: StoreId, token_version: i64, ttl_secs: u64) -> ConsoleSession {
        let expires = now_secs().saturating_add(ttl_secs.min(i64::MAX as u64) as i64);
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let text = payload(&store, token_version, expires, &nonce);
        let tag = mac(key, b"vitrina-console-v1\n", &text).finalize().into_bytes();
        let raw = format!("{text}.{}", hex::encode(&tag[..MAC_HEX / 2]));
        ConsoleSession { store, token_version, expires, nonce, raw }
    }

    /// The session in a cookie value, if `key` signed it and it has not expired.
    fn decode(key: &[u8], raw: &str, now: i64) -> Option<ConsoleSession> {
        if raw.len() > MAX_COOKIE_LEN {
            return None;
        }
        let (text, tag) = raw.rsplit_once('.')?;
        if tag.len() != MAC_HEX {
            return None;
        }
        mac(key, b"vitrina-console-v1\n", text).verify_truncated_left(&hex::decode(tag).ok()?).ok()?;
        let mut parts = text.split('.');
        let (store, version, expires, nonce) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let session = ConsoleSession {
            store: StoreId::parse(store).ok()?,
            token_version: version.parse().ok()?,
            expires: expires.parse().ok()?,
            nonce: nonce.to_string(),
            raw: raw.to_string(),
        };
        (session.expires > now).then_some(session)
    }

    /// The CSRF token bound to this session.
    fn csrf_with(&self, key: &[u8]) -> String {
        hex::encode(&mac(key, b"vitrina-console-csrf-v1\n", &self.raw).finalize().into_bytes()[..MAC_HEX / 2])
    }

    pub fn csrf(&self) -> String {
        self.csrf_with(super::session::signing_key())
    }
}

fn denied() -> &'static Mutex<HashMap<String, i64>> {
    static DENIED: OnceLock<Mutex<HashMap<String, i64>>> = OnceLock::new();
    DENIED.get_or_init(|| Mutex::new(HashMap::new()))
}

fn deny(session: &ConsoleSession) {
    let now = now_secs();
    let mut list = denied().lock();
    if list.len() >= MAX_DENIED {
        list.retain(|_, expires| *expires > now);
    }
    if list.len() < MAX_DENIED {
        list.insert(session.nonce.clone(), session.expires);
    }
}

fn is_denied(session: &ConsoleSession) -> bool {
    denied().lock().contains_key(&session.nonce)
}

/// The request's console session, verified (signature, expiry, not logged out), else `None`.
fn cookie_session(req: &HttpRequest) -> Option<ConsoleSession> {
    let cookie = req.cookie(CONSOLE_COOKIE)?;
    ConsoleSession::decode(super::session::signing_key(), cookie.value(), now_secs()).filter(|s| !is_denied(s))
}

/// Whether the request carries a console cookie at all.
pub fn has_cookie(req: &HttpRequest) -> bool {
    req.cookie(CONSOLE_COOKIE).is_some()
}

/// Whether the session is still current: its store's token has not been rotated since.
fn current(node: &Node, session: &ConsoleSession) -> Result<bool, ApiError> {
    Ok(node.catalog.token_version(&session.store).map_err(ApiError::internal)? == Some(session.token_version))
}

/// The store the request's `Host` serves, if any.
fn host_store(node: &Node, req: &HttpRequest) -> Option<StoreId> {
    node.catalog.resolve_host(&tenant::host_of(req)).ok().flatten()
}

/// Whether `Origin` names the very origin the request was sent to (scheme aside: the node
/// does not know it behind a proxy; the host and port must match).
fn same_origin(req: &HttpRequest) -> Result<(), String> {
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::trim);
    let Some(origin) = origin else { return Err("a console request that changes something must send Origin".into()) };
    let host = tenant::host_of(req);
    match csrf::authority(origin) {
        Some(a) if !host.is_empty() && a.eq_ignore_ascii_case(&host) => Ok(()),
        _ => Err(format!("Origin {origin:?} is not this console's origin")),
    }
}

/// The admin API's check for a cookie-authenticated request on `store`: a current session of
/// that store, on one of its hosts, and for anything but a read, the session's CSRF token and
/// a same-origin `Origin`.
pub fn authorize(node: &Node, req: &HttpRequest, store: &StoreId) -> Result<(), ApiError> {
    let session = cookie_session(req).ok_or_else(|| ApiError::unauthorized("the console session is invalid, expired or logged out"))?;
    if !current(node, &session)? {
        return Err(ApiError::unauthorized("the store's admin token was rotated since this console session began; log in again"));
    }
    if host_store(node, req).as_ref() != Some(&session.store) {
        return Err(ApiError::forbidden("a console session works only on its own store's hosts"));
    }
    if &session.store != store {
        return Err(ApiError::forbidden(format!("this console session does not grant access to store {store}")));
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        let expected = session.csrf();
        if sent.len() != expected.len() || !bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) {
            crate::metrics::incr("vitrina_csrf_rejected_total", &[]);
            return Err(ApiError::csrf_rejected(format!(
                "a console request that changes something needs the session's {CSRF_HEADER} header"
            )));
        }
        same_origin(req).map_err(|why| {
            crate::metrics::incr("vitrina_csrf_rejected_total", &[]);
            ApiError::csrf_rejected(why)
        })?;
    }
    Ok(())
}

fn cookie(req: &HttpRequest, value: String, max_age: CookieDuration) -> Cookie<'static> {
    Cookie::build(CONSOLE_COOKIE, value)
        .path(COOKIE_PATH)
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(proxy::secure_cookies(req))
        .max_age(max_age)
        .finish()
}

fn removal(req: &HttpRequest) -> Cookie<'static> {
    let mut c = cookie(req, String::new(), CookieDuration::ZERO);
    c.make_removal();
    c
}

fn session_json(session: &ConsoleSession) -> Value {
    json!({"authenticated": true, "store": session.store, "csrfToken": session.csrf(), "expiresAt": session.expires})
}

/// `POST /admin/session` — `{"token": "…"}`: the store of this host's admin token (or the
/// operator's) logs in. A wrong token is 401 and counts towards the IP's lockout, like a wrong
/// bearer token (`limits`).
pub async fn login(node: web::Data<Node>, req: HttpRequest, bytes: Bytes) -> Result<HttpResponse, ApiError> {
    let store = tenant::resolve_store(&node, &req)?;
    // Login CSRF: only the console's own page may log a browser in.
    if req.headers().contains_key(header::ORIGIN) {
        same_origin(&req).map_err(ApiError::csrf_rejected)?;
    }
    let body = body::json(&req, &bytes)?;
    let token = body
        .get("token")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .ok_or_else(|| ApiError::bad_request("invalid_request", "token (the store's admin token) is required"))?;
    super::admin::check_token(&node, token, &store)?;
    let version = node
        .catalog
        .token_version(&store)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "store_not_found", format!("store {store} does not exist")))?;
    // The token must still be the current one after the version was read: a rotation in
    // between would otherwise hand out a session of the new version for the old token.
    super::admin::check_token(&node, token, &store)?;
    let session = ConsoleSession::mint(super::session::signing_key(), store, version, node.settings.http.console_session_secs);
    let max_age = CookieDuration::seconds(node.settings.http.console_session_secs.min(i64::MAX as u64) as i64);
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(cookie(&req, session.raw.clone(), max_age))
        .json(session_json(&session)))
}

/// `GET /admin/session` — the console's session on this host, with its CSRF token, or
/// `{"authenticated": false}` (200, so that opening the console counts as no failed login).
pub async fn status(node: web::Data<Node>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let store = tenant::resolve_store(&node, &req)?;
    let session = match cookie_session(&req) {
        Some(s) if s.store == store && current(&node, &s)? => Some(s),
        _ => None,
    };
    let body = match &session {
        Some(s) => session_json(s),
        None => json!({"authenticated": false, "store": store}),
    };
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body))
}

/// `DELETE /admin/session` — logs out: the session is refused from now on and its cookie removed.
pub async fn logout(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    if let Some(session) = cookie_session(&req) {
        // Only the console's own page may log it out (a cross-site DELETE needs a preflight
        // anyway; this also refuses a same-site sibling's request).
        same_origin(&req).map_err(ApiError::csrf_rejected)?;
        deny(&session);
    }
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).cookie(removal(&req)).json(json!({"authenticated": false})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_verify_only_under_their_key_and_until_they_expire() {
        let store = StoreId::parse("demo").unwrap();
        let s = ConsoleSession::mint(b"k1", store.clone(), 7, 60);
        let now = now_secs();
        let back = ConsoleSession::decode(b"k1", &s.raw, now).expect("verifies");
        assert_eq!((back.store, back.token_version), (store, 7));
        assert!(ConsoleSession::decode(b"k2", &s.raw, now).is_none(), "other key");
        assert!(ConsoleSession::decode(b"k1", &s.raw, now + 61).is_none(), "expired");
        let forged = s.raw.replacen("demo.7.", "demo.8.", 1);
        assert!(ConsoleSession::decode(b"k1", &forged, now).is_none(), "version changed");
        let other = s.raw.replacen("demo.", "other.", 1);
        assert!(ConsoleSession::decode(b"k1", &other, now).is_none(), "store changed");
        for bad in ["", "a.b", "demo.1.2.3.4.5", &"x".repeat(400)] {
            assert!(ConsoleSession::decode(b"k1", bad, now).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn csrf_tokens_are_bound_to_their_session() {
        let store = StoreId::parse("demo").unwrap();
        let (a, b) = (ConsoleSession::mint(b"k", store.clone(), 1, 60), ConsoleSession::mint(b"k", store, 1, 60));
        assert_ne!(a.csrf_with(b"k"), b.csrf_with(b"k"));
        assert_eq!(a.csrf_with(b"k"), a.csrf_with(b"k"));
    }
}
