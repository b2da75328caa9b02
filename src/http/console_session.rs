//! Merchant console logins: the store's admin token, or a staff member's name and password,
//! entered once at `/admin/`, is exchanged for a signed, expiring session cookie, so the page
//! never keeps a secret.
//!
//! The `vitrina_console` cookie (`HttpOnly; SameSite=Strict; Path=/admin`, `Secure` per
//! `http.secure_cookies`) carries `{store}.{token version}.{principal}.{generation}.{expires}.
//! {nonce}.{mac}`: the store it grants, the version of the store's admin token it was issued
//! under (a rotation changes it, which ends every console session of the store), the principal
//! (a staff name, or `~` for the admin token) and that principal's session generation, kept in
//! the store actor (`store::staff`), its expiry (unix seconds) and an HMAC-SHA256 (128 bits
//! kept) under the node's session key. Every request reads the role in the store actor and
//! checks the session there: a logout is kept there (by nonce, until the session would have
//! expired), and a role or password change and a removal bump the member's generation, which
//! ends all their sessions at once, on every node and across restarts. The admin
//! API accepts the cookie in place of a bearer token, on the store's own hosts only; a request
//! that changes anything must also carry `x-csrf-token` (a MAC of the cookie, handed out by
//! `POST`/`GET /admin/session`) and a same-origin `Origin`.

use std::sync::Arc;

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::http::{header, Method, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::staff::{self as staff_http, Caller};
use super::{body, csrf, limits, proxy, tenant};
use crate::actors::store::StaffOp;
use crate::error::ApiError;
use crate::ids::StoreId;
use crate::node::Node;
use crate::store::staff::{self as staff_model, Role};

pub const CONSOLE_COOKIE: &str = "vitrina_console";
pub const CSRF_HEADER: &str = "x-csrf-token";
const COOKIE_PATH: &str = "/admin";
const MAC_HEX: usize = 32;
const MAX_COOKIE_LEN: usize = 320;

/// A verified console session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub store: StoreId,
    pub token_version: i64,
    /// A staff name, or `staff::TOKEN_PRINCIPAL` for the admin token.
    pub principal: String,
    pub generation: i64,
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

fn payload(store: &StoreId, version: i64, principal: &str, generation: i64, expires: i64, nonce: &str) -> String {
    format!("{store}.{version}.{principal}.{generation}.{expires}.{nonce}")
}

impl ConsoleSession {
    fn mint(key: &[u8], store: StoreId, token_version: i64, principal: &str, generation: i64, ttl_secs: u64) -> ConsoleSession {
        let expires = now_secs().saturating_add(ttl_secs.min(i64::MAX as u64) as i64);
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let text = payload(&store, token_version, principal, generation, expires, &nonce);
        let tag = mac(key, b"vitrina-console-v2\n", &text).finalize().into_bytes();
        let raw = format!("{text}.{}", hex::encode(&tag[..MAC_HEX / 2]));
        ConsoleSession { store, token_version, principal: principal.to_string(), generation, expires, nonce, raw }
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
        mac(key, b"vitrina-console-v2\n", text).verify_truncated_left(&hex::decode(tag).ok()?).ok()?;
        let mut parts = text.split('.');
        let (store, version, principal, generation, expires, nonce) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let session = ConsoleSession {
            store: StoreId::parse(store).ok()?,
            token_version: version.parse().ok()?,
            principal: principal.to_string(),
            generation: generation.parse().ok()?,
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

/// The request's console session, if its signature verifies and it has not expired (whether it
/// is still current is the store actor's to say: [`role_of`]).
fn cookie_session(req: &HttpRequest) -> Option<ConsoleSession> {
    let cookie = req.cookie(CONSOLE_COOKIE)?;
    ConsoleSession::decode(super::session::signing_key(), cookie.value(), now_secs())
}

/// The name a principal goes by in the audit log and the console.
fn actor_name(principal: &str) -> &str {
    if principal == staff_model::TOKEN_PRINCIPAL {
        staff_model::TOKEN_ACTOR
    } else {
        principal
    }
}

/// The session's role now, or `None` when it has ended (logged out, its member changed or
/// removed): asked of the store actor, which every node routes to.
async fn role_of(node: &Arc<Node>, session: &ConsoleSession) -> Result<Option<Role>, ApiError> {
    let op = StaffOp::Session { principal: session.principal.clone(), generation: session.generation, nonce: session.nonce.clone() };
    // Admin API requests reach the store's owner; a console's socket (`/admin/live`) stays on
    // the node it reached, which asks the owner.
    let answer = match node.cluster.placement(&crate::ids::ActorKey::Store(session.store.clone())) {
        crate::cluster::Placement::Remote { addr, .. } => {
            let body = SessionQuestion {
                store: session.store.clone(),
                principal: session.principal.clone(),
                generation: session.generation,
                nonce: session.nonce.clone(),
            };
            node.cluster
                .call_json::<Value>(&addr, reqwest::Method::POST, "/internal/console/session", &body)
                .await
                .map_err(|e| ApiError::unavailable(format!("the store's node did not answer: {e}")))?
        }
        _ => staff_http::ask(node, &session.store, op).await?,
    };
    if answer["valid"] != json!(true) {
        return Ok(None);
    }
    Ok(answer["role"].as_str().and_then(|r| Role::parse(r).ok()))
}

/// A console session checked at its store's owner for another node (`role_of`).
#[derive(serde::Serialize, serde::Deserialize)]
struct SessionQuestion {
    store: StoreId,
    principal: String,
    generation: i64,
    nonce: String,
}

/// `POST /internal/console/session` — whether a console session of a store owned here is still
/// current, and its role (`StaffOp::Session`'s answer).
pub async fn session_check(node: web::Data<Node>, req: HttpRequest, body: Bytes) -> Result<HttpResponse, ApiError> {
    super::internal::verify(&node, &req, &body)?;
    let q: SessionQuestion = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
    let node = node.into_inner();
    let op = StaffOp::Session { principal: q.principal, generation: q.generation, nonce: q.nonce };
    Ok(HttpResponse::Ok().json(staff_http::ask(&node, &q.store, op).await?))
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
/// a same-origin `Origin`; then the session's principal and role, from the store actor.
pub async fn authorize(node: &Arc<Node>, req: &HttpRequest, store: &StoreId) -> Result<Caller, ApiError> {
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
        check_write(req, &session)?;
    }
    let role = role_of(node, &session).await?.ok_or_else(ended)?;
    Ok(Caller { actor: actor_name(&session.principal).to_string(), role })
}

fn ended() -> ApiError {
    ApiError::unauthorized("this console session was logged out or its staff member changed or removed; log in again")
}

/// A console request that changes something: the session's CSRF token and a same-origin
/// `Origin`.
fn check_write(req: &HttpRequest, session: &ConsoleSession) -> Result<(), ApiError> {
    let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    let expected = session.csrf();
    if sent.len() != expected.len() || !bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) {
        crate::metrics::incr("vitrina_csrf_rejected_total", &[]);
        return Err(ApiError::csrf_rejected(format!("a console request that changes something needs the session's {CSRF_HEADER} header")));
    }
    same_origin(req).map_err(|why| {
        crate::metrics::incr("vitrina_csrf_rejected_total", &[]);
        ApiError::csrf_rejected(why)
    })
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

fn session_json(session: &ConsoleSession, role: Role) -> Value {
    json!({
        "authenticated": true,
        "store": session.store,
        "user": actor_name(&session.principal),
        "role": role,
        // A staff member (with a password of their own to change), not the admin token.
        "staff": session.principal != staff_model::TOKEN_PRINCIPAL,
        "csrfToken": session.csrf(),
        "expiresAt": session.expires,
    })
}

/// Who a login names, once checked: the principal, its role and its current generation.
struct Verified {
    principal: String,
    role: Role,
    generation: i64,
}

/// `{"token"}`: the store's admin token (or the operator's), as the owner.
async fn verify_token(node: &Arc<Node>, store: &StoreId, token: &str) -> Result<Verified, ApiError> {
    super::admin::check_token(node, token, store)?;
    let principal = staff_model::TOKEN_PRINCIPAL.to_string();
    let answer = staff_http::ask(node, store, StaffOp::Generation(principal.clone())).await?;
    Ok(Verified { principal, role: Role::Owner, generation: answer["generation"].as_i64().unwrap_or(0) })
}

/// `{"name", "password"}`: a staff member. A wrong password and an unknown name are the same
/// 401 (and take as long), and count towards the name's lockout (`limits`), known or not; a
/// locked-out name is refused (429) before its password is checked.
async fn verify_password(node: &Arc<Node>, store: &StoreId, name: &str, password: &str) -> Result<Verified, ApiError> {
    let refused = || ApiError::unauthorized("unknown staff name or wrong password");
    let valid_name = staff_model::check_name(name).is_ok();
    let found = if valid_name {
        limits::check_login_name(store, name)?;
        staff_http::ask(node, store, StaffOp::Credentials(name.to_string())).await?
    } else {
        Value::Null
    };
    let hash = found["passwordHash"].as_str().map(str::to_string);
    if !staff_http::verify_password(password.to_string(), hash).await {
        if valid_name {
            limits::login_name_failed(store, name);
        }
        return Err(refused());
    }
    let role = found["role"].as_str().and_then(|r| Role::parse(r).ok()).ok_or_else(refused)?;
    Ok(Verified { principal: name.to_string(), role, generation: found["generation"].as_i64().unwrap_or(0) })
}

fn bounded<'a>(body: &'a Value, field: &str) -> Option<&'a str> {
    body.get(field).and_then(Value::as_str).filter(|t| !t.is_empty() && t.len() <= 256)
}

/// `POST /admin/session` — `{"token": "…"}` (the store's admin token, or the operator's: the
/// owner) or `{"name": "…", "password": "…"}` (a staff member) logs in on this host's store.
/// A wrong secret is 401 and counts towards the IP's lockout, like a wrong bearer token
/// (`limits`). Each login is in the audit log.
pub async fn login(node: web::Data<Node>, req: HttpRequest, bytes: Bytes) -> Result<HttpResponse, ApiError> {
    let node = node.into_inner();
    let store = tenant::resolve_store(&node, &req)?;
    // Login CSRF: only the console's own page may log a browser in.
    if req.headers().contains_key(header::ORIGIN) {
        same_origin(&req).map_err(ApiError::csrf_rejected)?;
    }
    let body = body::json(&req, &bytes)?;
    let version = |node: &Node| -> Result<i64, ApiError> {
        node.catalog
            .token_version(&store)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "store_not_found", format!("store {store} does not exist")))
    };
    let (verified, version) = if let Some(token) = bounded(&body, "token").map(str::trim) {
        let version = version(&node)?;
        let verified = verify_token(&node, &store, token).await?;
        // The token must still be the current one after the version was read: a rotation in
        // between would otherwise hand out a session of the new version for the old token.
        super::admin::check_token(&node, token, &store)?;
        (verified, version)
    } else if let (Some(name), Some(password)) = (bounded(&body, "name"), bounded(&body, "password")) {
        let version = version(&node)?;
        (verify_password(&node, &store, name.trim(), password).await?, version)
    } else {
        return Err(ApiError::bad_request(
            "invalid_request",
            "send token (the store's admin token), or name and password (a staff member's)",
        ));
    };
    let ttl = node.settings.http.console_session_secs;
    let session =
        ConsoleSession::mint(super::session::signing_key(), store.clone(), version, &verified.principal, verified.generation, ttl);
    staff_http::record(&node, &store, actor_name(&verified.principal), "login", "logged in to the console".into()).await;
    let max_age = CookieDuration::seconds(ttl.min(i64::MAX as u64) as i64);
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(cookie(&req, session.raw.clone(), max_age))
        .json(session_json(&session, verified.role)))
}

/// The request's session on this host's store with its role, if it is current.
async fn live_session(node: &Arc<Node>, req: &HttpRequest, store: &StoreId) -> Result<Option<(ConsoleSession, Role)>, ApiError> {
    let Some(session) = cookie_session(req).filter(|s| &s.store == store) else { return Ok(None) };
    if !current(node, &session)? {
        return Ok(None);
    }
    Ok(role_of(node, &session).await?.map(|role| (session, role)))
}

/// `GET /admin/session` — the console's session on this host, with its user, role and CSRF
/// token, or `{"authenticated": false}` (200, so that opening the console counts as no failed
/// login).
pub async fn status(node: web::Data<Node>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let node = node.into_inner();
    let store = tenant::resolve_store(&node, &req)?;
    let body = match live_session(&node, &req, &store).await? {
        Some((s, role)) => session_json(&s, role),
        None => json!({"authenticated": false, "store": store}),
    };
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body))
}

/// `DELETE /admin/session` — logs out: the session is refused from now on (its nonce is kept
/// in the store actor until it would have expired, so a restart or another node refuses the
/// cookie too), and the cookie is removed.
pub async fn logout(node: web::Data<Node>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let node = node.into_inner();
    let store = tenant::resolve_store(&node, &req)?;
    if let Some((session, _)) = live_session(&node, &req, &store).await? {
        // Only the console's own page may log it out (a cross-site DELETE needs a preflight
        // anyway; this also refuses a same-site sibling's request).
        same_origin(&req).map_err(ApiError::csrf_rejected)?;
        staff_http::ask(&node, &store, StaffOp::Logout { nonce: session.nonce.clone(), expires: session.expires }).await?;
        staff_http::record(&node, &store, actor_name(&session.principal), "logout", "logged out of the console".into()).await;
    }
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).cookie(removal(&req)).json(json!({"authenticated": false})))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// `PUT /admin/session/password` — `{"currentPassword", "newPassword"}`: a staff member of any
/// role changes their own password from their console session (CSRF token and Origin as for
/// any console write). The current password is checked like a login's: a wrong one is 403
/// (the session itself is fine) and counts towards the client IP's lockout and the name's
/// (`limits`); a locked-out name gets 429. The change bumps the member's generation, which
/// ends every other session of theirs; this one is re-issued (a new cookie and CSRF token).
/// The admin token's session has no password (400: rotate the token instead). Audited.
pub async fn change_password(node: web::Data<Node>, req: HttpRequest, bytes: Bytes) -> Result<HttpResponse, ApiError> {
    let node = node.into_inner();
    let store = tenant::resolve_store(&node, &req)?;
    let session = cookie_session(&req)
        .filter(|s| s.store == store)
        .ok_or_else(|| ApiError::unauthorized("the console session is invalid, expired or logged out"))?;
    check_write(&req, &session)?;
    if !current(&node, &session)? || role_of(&node, &session).await?.is_none() {
        return Err(ended());
    }
    if session.principal == staff_model::TOKEN_PRINCIPAL {
        return Err(ApiError::bad_request(
            "no_password",
            "the store's admin token has no password to change; an owner rotates the token instead",
        ));
    }
    let invalid = |m: String| ApiError::bad_request("validation_failed", m);
    let change: PasswordChange = serde_json::from_value(body::json(&req, &bytes)?).map_err(|e| invalid(e.to_string()))?;
    staff_model::check_password(&change.new_password).map_err(|m| invalid(format!("newPassword: {m}")))?;
    let name = session.principal.clone();
    limits::check_login_name(&store, &name)?;
    let found = staff_http::ask(&node, &store, StaffOp::Credentials(name.clone())).await?;
    let hash = found["passwordHash"].as_str().map(str::to_string);
    if change.current_password.len() > 256 || !staff_http::verify_password(change.current_password, hash).await {
        limits::login_name_failed(&store, &name);
        limits::auth_failed(&req);
        staff_http::record(&node, &store, &name, "password.refused", "gave a wrong current password".into()).await;
        return Err(ApiError::forbidden("the current password is wrong").with_details(json!({"field": "currentPassword"})));
    }
    let password_hash = staff_http::hash_password(change.new_password).await?;
    let answer =
        staff_http::ask(&node, &store, StaffOp::Update { name: name.clone(), role: None, password_hash: Some(password_hash) }).await?;
    let role = answer["role"].as_str().and_then(|r| Role::parse(r).ok()).ok_or_else(ended)?;
    let generation = answer["generation"].as_i64().ok_or_else(|| ApiError::internal("no generation after a password change"))?;
    let ttl = node.settings.http.console_session_secs;
    let renewed = ConsoleSession::mint(super::session::signing_key(), store.clone(), session.token_version, &name, generation, ttl);
    staff_http::record(&node, &store, &name, "staff.password", "changed their own password; their other sessions ended".into()).await;
    let max_age = CookieDuration::seconds(ttl.min(i64::MAX as u64) as i64);
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(cookie(&req, renewed.raw.clone(), max_age))
        .json(session_json(&renewed, role)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_verify_only_under_their_key_and_until_they_expire() {
        let store = StoreId::parse("demo").unwrap();
        let s = ConsoleSession::mint(b"k1", store.clone(), 7, "alice", 3, 60);
        let now = now_secs();
        let back = ConsoleSession::decode(b"k1", &s.raw, now).expect("verifies");
        assert_eq!((back.store, back.token_version, back.principal.as_str(), back.generation), (store, 7, "alice", 3));
        assert!(ConsoleSession::decode(b"k2", &s.raw, now).is_none(), "other key");
        assert!(ConsoleSession::decode(b"k1", &s.raw, now + 61).is_none(), "expired");
        let forged = s.raw.replacen("demo.7.", "demo.8.", 1);
        assert!(ConsoleSession::decode(b"k1", &forged, now).is_none(), "version changed");
        let forged = s.raw.replacen(".alice.3.", ".alice.4.", 1);
        assert!(ConsoleSession::decode(b"k1", &forged, now).is_none(), "generation changed");
        let forged = s.raw.replacen(".alice.", ".bob.", 1);
        assert!(ConsoleSession::decode(b"k1", &forged, now).is_none(), "principal changed");
        let other = s.raw.replacen("demo.", "other.", 1);
        assert!(ConsoleSession::decode(b"k1", &other, now).is_none(), "store changed");
        for bad in ["", "a.b", "demo.1.2.3.4.5", "demo.1.~.2.3.4.5.6", &"x".repeat(400)] {
            assert!(ConsoleSession::decode(b"k1", bad, now).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn csrf_tokens_are_bound_to_their_session() {
        let store = StoreId::parse("demo").unwrap();
        let (a, b) = (ConsoleSession::mint(b"k", store.clone(), 1, "~", 0, 60), ConsoleSession::mint(b"k", store, 1, "~", 0, 60));
        assert_ne!(a.csrf_with(b"k"), b.csrf_with(b"k"));
        assert_eq!(a.csrf_with(b"k"), a.csrf_with(b"k"));
    }
}
