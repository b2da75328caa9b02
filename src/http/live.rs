//! Live updates at the edge: `GET /live` on a store host upgrades an open page's request to a
//! WebSocket this node holds, whatever node owns the page's actors. The socket is a
//! subscription to the node's event hub (`runtime/events.rs`) for the store's key and, with a
//! current session, the shopper's: no actor, isolate or SQLite file is held while it is idle
//! (the actors passivate as usual and publish when a commit changes what a page shows).
//!
//! In a cluster, events are published on the actor's owner; this node registers its interest
//! in each key at the key's owner (`/internal/live/interest`, with a TTL renewed every third,
//! re-resolved each time so a moved key follows its owner), and the owner relays each event
//! here (`/internal/live/events`). `GET /live.js` is the page script (`actors/live.js`).
//!
//! Refused before the upgrade, with the uniform error body: an `Origin` that is not a host of
//! the store (403 `csrf_rejected`: a page of another site must not read a shopper's events),
//! and sockets past the per-IP, per-session or node caps (429 / 503).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::{Duration, Instant};

use actix_http::ws::{CloseCode, CloseReason, Frame};
use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::tenant;
use super::websocket::{self, WebSocket};
use crate::actors::shopper::SessionGeneration;
use crate::cluster::Placement;
use crate::error::ApiError;
use crate::ids::{ActorKey, SessionId, StoreId};
use crate::node::Node;
use crate::runtime::events::{Event, Relay, Subscription};

/// The page script, embedded at build time.
pub const SCRIPT: &str = include_str!("../../actors/live.js");

/// How long one event may take to be written before its socket counts as stuck.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames a page may send (pongs, nothing else matters): small.
pub(super) const MAX_FRAME: usize = 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(super::at("/live", [web::get().to(socket)]))
        .service(super::at("/live.js", [super::get().to(script)]))
        .service(super::at("/internal/live/interest", [web::post().to(interest)]))
        .service(super::at("/internal/live/events", [web::post().to(relayed)]))
        .service(super::at("/internal/live/session", [web::post().to(session_check)]));
}

async fn script(node: web::Data<Node>) -> HttpResponse {
    // Pages name the script whatever the setting; with live updates off it does nothing.
    let body = if node.settings.live.enabled { SCRIPT } else { "" };
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(body)
}

/// Open sockets of this node, by client IP and by session, for the caps.
#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    per_session: HashMap<SessionId, usize>,
}

static SOCKETS: LazyLock<Mutex<Counts>> = LazyLock::new(Default::default);

/// A socket's place under the caps, given back when it closes.
pub(super) struct Permit {
    ip: Option<IpAddr>,
    sid: Option<SessionId>,
}

impl Permit {
    pub(super) fn admit(node: &Node, ip: Option<IpAddr>, sid: Option<&SessionId>) -> Result<Permit, ApiError> {
        let s = &node.settings.live;
        let mut counts = SOCKETS.lock();
        if counts.total >= s.max_sockets {
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "socket_capacity", "this node holds all the live sockets it may")
                .with_details(json!({"retryAfterSecs": 30})));
        }
        if ip.is_some_and(|ip| counts.per_ip.get(&ip).copied().unwrap_or(0) >= s.max_sockets_per_ip) {
            return Err(too_many("ip", s.max_sockets_per_ip));
        }
        if sid.is_some_and(|sid| counts.per_session.get(sid).copied().unwrap_or(0) >= s.max_sockets_per_session) {
            return Err(too_many("session", s.max_sockets_per_session));
        }
        counts.total += 1;
        if let Some(ip) = ip {
            *counts.per_ip.entry(ip).or_default() += 1;
        }
        if let Some(sid) = sid {
            *counts.per_session.entry(sid.clone()).or_default() += 1;
        }
        crate::metrics::set_gauge("vitrina_live_sockets", &[], counts.total as f64);
        Ok(Permit { ip, sid: sid.cloned() })
    }
}

/// Waits until every socket of this node has closed, or `within` has passed.
pub async fn all_closed(within: Duration) {
    let deadline = Instant::now() + within;
    while SOCKETS.lock().total > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn too_many(scope: &'static str, cap: usize) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_sockets", format!("at most {cap} live sockets per {scope}"))
        .with_details(json!({"scope": scope, "limit": cap, "retryAfterSecs": 30}))
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = SOCKETS.lock();
        counts.total = counts.total.saturating_sub(1);
        fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
            if let Some(n) = map.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
        if let Some(ip) = &self.ip {
            release(&mut counts.per_ip, ip);
        }
        if let Some(sid) = &self.sid {
            release(&mut counts.per_session, sid);
        }
        crate::metrics::set_gauge("vitrina_live_sockets", &[], counts.total as f64);
    }
}

/// A socket must come from a page of this store: browsers always send `Origin` on a WebSocket
/// handshake, and a page of another site would otherwise read the shopper's events with its
/// cookie. Clients that are not browsers send the store's origin like a page would.
pub(super) fn check_origin(node: &Node, req: &HttpRequest, store: &StoreId) -> Result<(), ApiError> {
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::trim);
    let why = match origin {
        None => "a live socket must come from a page of this store (no Origin was sent)".to_string(),
        Some("null") => "Origin is null".to_string(),
        Some(origin) => match super::csrf::authority(origin) {
            None => "Origin is not a URL of this store".to_string(),
            Some(host) => match node.catalog.resolve_host(host) {
                Ok(Some(s)) if &s == store => return Ok(()),
                _ => format!("Origin {:?} is not a host of this store", crate::catalog::normalise_host(host)),
            },
        },
    };
    crate::metrics::incr("vitrina_csrf_rejected_total", &[]);
    Err(ApiError::csrf_rejected(why))
}

/// The shopper a socket listens for: the request's session if its token is valid and of the
/// shopper's current generation (what the shop routes accept), else none (a guest's page
/// still gets the store's events).
async fn current_shopper(node: &Arc<Node>, store: &StoreId, req: &HttpRequest) -> Result<Option<SessionId>, ApiError> {
    let Some(token) = tenant::session_of(req) else { return Ok(None) };
    let key = ActorKey::Shopper(store.clone(), token.sid.clone());
    let generation = match node.cluster.placement(&key) {
        Placement::Local => local_generation(node, store, &token.sid).await?,
        Placement::Remote { addr, .. } => {
            let body = json!({"store": store, "sid": token.sid});
            let answer: serde_json::Value = node
                .cluster
                .call_json(&addr, reqwest::Method::POST, "/internal/live/session", &body)
                .await
                .map_err(|e| ApiError::unavailable(format!("the shopper's node did not answer: {e}")))?;
            answer["generation"].as_u64().unwrap_or(u64::MAX)
        }
        Placement::Nowhere => return Err(ApiError::unavailable("no node owns this shopper: the cluster has no active member")),
    };
    Ok((generation == token.generation).then_some(token.sid))
}

/// From the shopper's pulse while it is live here, else from the actor (reads create no file).
async fn local_generation(node: &Arc<Node>, store: &StoreId, sid: &SessionId) -> Result<u64, ApiError> {
    let key = ActorKey::Shopper(store.clone(), sid.clone());
    if let Some(generation) = node.shopper_pulse(&key).and_then(|p| p.generation()) {
        return Ok(generation);
    }
    node.ask_shopper(store, sid, SessionGeneration).await.map_err(super::errors::actor_error)
}

async fn socket(node: web::Data<Node>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let node = node.into_inner();
    if !node.settings.live.enabled {
        return Err(ApiError::not_found("live updates are off on this node"));
    }
    let store = tenant::resolve_store(&node, &req)?;
    check_origin(&node, &req, &store)?;
    let is_upgrade = req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_upgrade {
        return Err(ApiError::bad_request("not_websocket", "GET /live is a WebSocket: send Upgrade: websocket"));
    }
    let sid = current_shopper(&node, &store, &req).await?;
    let permit = Permit::admit(&node, super::proxy::client_ip(&req), sid.as_ref())?;
    let mut keys = vec![ActorKey::Store(store.clone())];
    keys.extend(sid.map(|sid| ActorKey::Shopper(store, sid)));
    let settings = &node.settings.live;
    let sub = node.events.subscribe(keys, settings.send_queue).ok_or_else(|| ApiError::unavailable("this node is shutting down"))?;
    // Console events (drafts) are not for shoppers.
    let pass = |event: &str| !crate::actors::store::is_console_event(event);
    let renew = node.clone();
    let res = websocket::accept(&req, MAX_FRAME, move |socket| serve(node, sub, socket, permit, pass)).map_err(handshake_refused)?;
    ensure_renewal(&renew);
    Ok(res)
}

/// One socket's life: hello once the subscription (and, in a cluster, the interest at the
/// keys' owners) is in place, then events as they come, pings, until either side closes, the
/// page stops answering, it falls a queue behind, or the node shuts down.
/// Only events `pass` accepts are sent.
pub(super) async fn serve(node: Arc<Node>, mut sub: Subscription, mut socket: WebSocket, _permit: Permit, pass: fn(&str) -> bool) {
    register_remote(&node, sub.keys()).await;
    let shopper = sub.keys().iter().any(|k| matches!(k, ActorKey::Shopper(..)));
    let hello = json!({"type": "hello", "shopper": shopper}).to_string();
    if socket.text(&hello).await.is_err() {
        return;
    }
    let settings = &node.settings.live;
    let idle = Duration::from_secs(settings.idle_timeout_secs.max(1));
    let mut ping = tokio::time::interval(Duration::from_secs(settings.ping_secs.max(1)));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut heard = Instant::now();
    let reason = loop {
        tokio::select! {
            event = sub.recv() => match event {
                Some(text) if !pass(&text) => {}
                // A frame cut off by the timeout leaves nothing to send a close frame on.
                Some(text) => match tokio::time::timeout(SEND_TIMEOUT, socket.text(&text)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) | Err(_) => return,
                },
                None if sub.ended_by_close() => break Some(close(CloseCode::Away, "node shutting down")),
                None => {
                    break Some(close(CloseCode::Again, "too slow"));
                }
            },
            frame = socket.recv() => match frame {
                Some(Ok(Frame::Ping(bytes))) => {
                    heard = Instant::now();
                    if socket.pong(&bytes).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Frame::Close(_))) | None => break None,
                Some(Ok(_)) => heard = Instant::now(),
                Some(Err(_)) => break Some(close(CloseCode::Protocol, "protocol error")),
            },
            _ = ping.tick() => {
                if heard.elapsed() > idle {
                    break Some(close(CloseCode::Normal, "idle"));
                }
                if socket.ping(b"").await.is_err() {
                    return;
                }
            }
        }
    };
    socket.close(reason).await;
}

pub(super) fn handshake_refused(why: String) -> ApiError {
    ApiError::bad_request("not_websocket", format!("WebSocket handshake refused: {why}"))
}

fn close(code: CloseCode, description: &str) -> CloseReason {
    CloseReason { code, description: Some(description.to_string()) }
}

// ---- across nodes ----

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Interest {
    /// The address the owner relays events to.
    from: String,
    keys: Vec<String>,
    ttl_secs: u64,
}

#[derive(Serialize, Deserialize)]
struct Relayed {
    key: String,
    event: String,
}

/// Registers this node's interest in `keys` at their owners (the ones on other nodes).
async fn register_remote(node: &Arc<Node>, keys: &[ActorKey]) {
    if !node.cluster.enabled() {
        return;
    }
    let mut by_owner: HashMap<String, Vec<String>> = HashMap::new();
    for key in keys {
        if let Placement::Remote { addr, .. } = node.cluster.placement(key) {
            by_owner.entry(addr).or_default().push(key.to_string());
        }
    }
    let ttl_secs = node.settings.live.interest_ttl_secs.max(3);
    let calls = by_owner.into_iter().map(|(addr, keys)| {
        let body = Interest { from: node.cluster.addr.clone(), keys, ttl_secs };
        async move {
            if let Err(e) =
                node.cluster.call_json::<serde_json::Value>(&addr, reqwest::Method::POST, "/internal/live/interest", &body).await
            {
                tracing::warn!(owner = %addr, error = %e, "live interest not registered");
            }
        }
    });
    futures::future::join_all(calls).await;
}

/// Renews this node's interest in every key its sockets listen to, every third of the TTL
/// (started with the first socket).
pub(super) fn ensure_renewal(node: &Arc<Node>) {
    static STARTED: OnceLock<()> = OnceLock::new();
    if !node.cluster.enabled() || STARTED.set(()).is_err() {
        return;
    }
    let node = Arc::downgrade(node);
    actix_web::rt::spawn(async move {
        loop {
            let Some(n) = node.upgrade() else { return };
            let every = Duration::from_secs(n.settings.live.interest_ttl_secs.max(3) / 3);
            if n.events.is_closed() {
                return;
            }
            let keys = n.events.local_keys();
            register_remote(&n, &keys).await;
            drop(n);
            tokio::time::sleep(every).await;
        }
    });
}

/// Installs the relay at startup on a cluster node, so a node that owns keys relays their
/// events before it ever held a socket itself.
pub fn install_relay(node: &Arc<Node>) {
    if node.cluster.enabled() {
        node.events.set_relay(Arc::new(PeerRelay { node: Arc::downgrade(node) }));
    }
}

/// Sends an event to a node that registered interest in its key (best effort: a lost event
/// is a page that shows an older price until its next event or reload).
struct PeerRelay {
    node: std::sync::Weak<Node>,
}

impl Relay for PeerRelay {
    fn relay(&self, addr: &str, key: &ActorKey, event: Event) {
        let Some(node) = self.node.upgrade() else { return };
        let (addr, body) = (addr.to_string(), Relayed { key: key.to_string(), event: event.to_string() });
        actix_web::rt::spawn(async move {
            let result = node.cluster.call_json::<serde_json::Value>(&addr, reqwest::Method::POST, "/internal/live/events", &body).await;
            let outcome = if result.is_ok() { "sent" } else { "failed" };
            crate::metrics::incr("vitrina_live_relayed_total", &[("outcome", outcome)]);
        });
    }
}

fn parse_keys(keys: &[String]) -> Result<Vec<ActorKey>, ApiError> {
    keys.iter()
        .map(|k| ActorKey::parse(k).ok_or_else(|| ApiError::bad_request("invalid_key", format!("not an actor key: {k:?}"))))
        .collect()
}

/// Another node holds sockets for these keys: relay their events there until the TTL lapses.
async fn interest(node: web::Data<Node>, req: HttpRequest, body: Bytes) -> Result<HttpResponse, ApiError> {
    super::internal::verify(&node, &req, &body)?;
    let interest: Interest = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
    let keys = parse_keys(&interest.keys)?;
    let ttl = Duration::from_secs(interest.ttl_secs.clamp(1, 600));
    node.events.note_interest(&interest.from, &keys, ttl);
    Ok(HttpResponse::Ok().json(json!({"keys": keys.len()})))
}

/// An event relayed by its key's owner, for this node's sockets.
async fn relayed(node: web::Data<Node>, req: HttpRequest, body: Bytes) -> Result<HttpResponse, ApiError> {
    super::internal::verify(&node, &req, &body)?;
    let relayed: Relayed = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
    let key = parse_keys(std::slice::from_ref(&relayed.key))?.remove(0);
    node.events.deliver(&key, relayed.event.into());
    Ok(HttpResponse::Ok().json(json!({"delivered": true})))
}

#[derive(Deserialize)]
struct SessionQuestion {
    store: StoreId,
    sid: SessionId,
}

/// The current generation of a shopper owned here, for a socket on another node.
async fn session_check(node: web::Data<Node>, req: HttpRequest, body: Bytes) -> Result<HttpResponse, ApiError> {
    super::internal::verify(&node, &req, &body)?;
    let q: SessionQuestion = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
    let node = node.into_inner();
    let generation = local_generation(&node, &q.store, &q.sid).await?;
    Ok(HttpResponse::Ok().json(json!({"generation": generation})))
}
