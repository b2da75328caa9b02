//! Routing at the edge: any node accepts any request, works out the actor that owns its state,
//! and forwards the request to that actor's node when it is not this one.
//!
//! Forwarded requests carry a hop header and a signature; a node never forwards a request that
//! already made a hop (no loops). If it arrives at a node that no longer owns the actor (the
//! ring moved in between), that node answers 503 with Retry-After instead of activating a
//! second instance.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpMessage, HttpResponse};
use futures::StreamExt;

use crate::cluster::{auth, Placement};
use crate::error::{ApiError, RequestId};
use crate::http::proxy::{self, VerifiedHop};
use crate::http::session::SessionToken;
use crate::http::tenant::{self, SESSION_COOKIE};
use crate::ids::{ActorKey, StoreId};
use crate::node::Node;

/// A session id minted at the edge for a request that changes shopper state without a cookie;
/// the edge routes by it and sets the cookie on the way out.
#[derive(Debug, Clone)]
pub struct MintedSession(pub SessionToken);

/// Hop-by-hop headers are not forwarded (RFC 9110 §7.6.1).
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "te" | "trailer" | "upgrade" | "content-length"
    )
}

fn routed_locally(path: &str) -> bool {
    path.starts_with("/internal/")
        // A page's live socket stays on the node it reached; events are routed to it.
        || path == "/live"
        || path == "/live.js"
        // So does a console's (draft events).
        || path == "/admin/live"
        || path.starts_with("/operator/")
        || path == "/cluster/status"
        || path == "/healthz"
        || path == "/readyz"
        || path == "/metrics"
}

async fn read_body(req: &mut ServiceRequest, limit: usize) -> Result<Bytes, ApiError> {
    let mut payload = req.take_payload();
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("request bodies are limited to {limit} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn put_back(req: &mut ServiceRequest, body: Bytes) {
    req.set_payload(Payload::from(body));
}

fn error_response(req: ServiceRequest, err: ApiError) -> ServiceResponse<BoxBody> {
    let (http_req, _) = req.into_parts();
    let mut res = actix_web::ResponseError::error_response(&err);
    if err.code == "actor_moving" || err.status == StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    ServiceResponse::new(http_req, res)
}

/// Which actor owns the state this request touches; `None` for node-local routes.
fn owner_key(node: &Node, req: &ServiceRequest, body: &Bytes) -> Result<Option<ActorKey>, ApiError> {
    let path = req.path();
    if let Some(rest) = path.strip_prefix("/admin/api/v1/stores") {
        let store = match rest.strip_prefix('/') {
            Some(rest) => rest.split('/').next().unwrap_or_default().to_string(),
            // POST /admin/api/v1/stores: the new store's owner creates it.
            None => serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string))
                .unwrap_or_default(),
        };
        return Ok(StoreId::parse(&store).ok().map(ActorKey::Store));
    }
    if path == "/admin/session" || path == "/admin/session/password" {
        // Console logins, logouts and password changes are answered by the store's owner,
        // which also checks the store's admin API requests (and so holds the list of
        // logged-out sessions and the per-name login lockouts).
        return Ok(node.catalog.resolve_host(&tenant::host_of(req.request())).ok().flatten().map(ActorKey::Store));
    }
    if path.starts_with("/admin/") {
        return Ok(None);
    }
    if path.starts_with("/webhooks/") {
        // The store a webhook updates: named by header (verified by the owner, which holds
        // the secret), else the store of the Host.
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        let store = match (header("vitrina-store"), header("x-shopify-shop-domain")) {
            (Some(s), _) => StoreId::parse(s).ok(),
            (None, Some(domain)) => node.catalog.store_for_shopify_domain(domain).ok().flatten(),
            (None, None) => node.catalog.resolve_host(&tenant::host_of(req.request())).ok().flatten(),
        };
        return Ok(store.map(ActorKey::Store));
    }
    let http_req = req.request();
    let store = match node.catalog.resolve_host(&tenant::host_of(http_req)) {
        Ok(Some(store)) => store,
        // Unknown hosts are answered (404) by whichever node got them.
        _ => return Ok(None),
    };
    if let Some(minted) = req.extensions().get::<MintedSession>() {
        return Ok(Some(ActorKey::Shopper(store, minted.0.sid.clone())));
    }
    Ok(match tenant::session_of(http_req) {
        Some(token) => Some(ActorKey::Shopper(store, token.sid)),
        // No (valid) session: the store's generic page, rendered by the store's owner.
        None => Some(ActorKey::Store(store)),
    })
}

/// The routing middleware. Runs on every request of a clustered node; a no-op for a single node
/// except that it mints sessions for cookie-less writes.
pub async fn route_to_owner(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(node) = req.app_data::<web::Data<Node>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let path = req.path().to_string();
    if routed_locally(&path) {
        return Ok(stamp_node(next.call(req).await?.map_into_boxed_body(), &node));
    }

    // A write without a session gets its session id here, so every node agrees on the shopper
    // actor it belongs to before anything is routed.
    // A forwarded request was minted for by the node it entered (its cookie is valid).
    let is_shop_write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && !path.starts_with("/admin/")
        && !path.starts_with("/webhooks/");
    let mut minted = None;
    if is_shop_write && !req.headers().contains_key(auth::HOP_HEADER) && tenant::session_of(req.request()).is_none() {
        if let Err(e) = crate::http::limits::allow_new_session(req.request()) {
            return Ok(stamp_node(error_response(req, e), &node));
        }
        let token = SessionToken::mint();
        replace_session_cookie(&mut req, &token);
        req.extensions_mut().insert(MintedSession(token.clone()));
        minted = Some(token);
    }

    let res = if !node.cluster.enabled() {
        next.call(req).await?.map_into_boxed_body()
    } else {
        let limit = node.settings.http.body_limit_bytes;
        let body = match read_body(&mut req, limit).await {
            Ok(b) => b,
            Err(e) => return Ok(error_response(req, e)),
        };
        let forwarded = req.headers().contains_key(auth::HOP_HEADER);
        if forwarded {
            let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            let pq = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
            if let Err(why) = auth::verify(
                node.cluster.secret(),
                req.method().as_str(),
                &pq,
                &body,
                header(auth::TS_HEADER).as_deref(),
                header(auth::AUTH_HEADER).as_deref(),
            ) {
                return Ok(error_response(req, ApiError::unauthorized(format!("forwarded request refused: {why}"))));
            }
            req.extensions_mut().insert(VerifiedHop);
        }
        let key = match owner_key(&node, &req, &body) {
            Ok(k) => k,
            Err(e) => {
                put_back(&mut req, body);
                // Let the handler produce its usual answer (it knows HTML vs JSON, cookie clearing).
                let _ = e;
                return Ok(stamp_node(with_session(next.call(req).await?.map_into_boxed_body(), minted.as_ref()), &node));
            }
        };
        match key.map(|k| (node.cluster.placement(&k), k)) {
            None | Some((Placement::Local, _)) => {
                put_back(&mut req, body);
                next.call(req).await?.map_into_boxed_body()
            }
            Some((_, key)) if forwarded => {
                return Ok(error_response(req, crate::http::errors::moving(format!("{key} is moving between nodes; retry"))));
            }
            Some((Placement::Nowhere, key)) => {
                return Ok(error_response(req, ApiError::unavailable(format!("no node owns {key}: the cluster has no active member"))));
            }
            Some((Placement::Remote { addr, node: owner }, _)) => match timed_forward(&node, &req, &addr, body).await {
                Ok(res) => {
                    crate::metrics::incr("vitrina_forwarded_requests_total", &[]);
                    let (http_req, _) = req.into_parts();
                    ServiceResponse::new(http_req, res)
                }
                Err(e) => {
                    tracing::warn!(%owner, error = %e, "forwarding failed");
                    return Ok(error_response(req, ApiError::unavailable(format!("the owner {owner} did not answer; retry"))));
                }
            },
        }
    };
    Ok(stamp_node(with_session(res, minted.as_ref()), &node))
}

/// Puts `token` in the request's `Cookie` header in place of any `sid` it had (a forged or
/// malformed one), for the handler here or the owner the request is forwarded to.
fn replace_session_cookie(req: &mut ServiceRequest, token: &SessionToken) {
    let mut pairs: Vec<String> = req
        .headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|p| !p.is_empty() && p.split('=').next().map(str::trim) != Some(SESSION_COOKIE))
        .map(str::to_string)
        .collect();
    pairs.push(format!("{SESSION_COOKIE}={}", token.encode()));
    if let Ok(value) = HeaderValue::from_str(&pairs.join("; ")) {
        req.headers_mut().insert(header::COOKIE, value);
    }
}

/// Names the node that served a response (a forwarded response already names its owner).
fn stamp_node(mut res: ServiceResponse<BoxBody>, node: &Node) -> ServiceResponse<BoxBody> {
    if !res.headers().contains_key(auth::NODE_HEADER) {
        if let Ok(value) = HeaderValue::from_str(node.cluster.id.as_str()) {
            res.headers_mut().insert(HeaderName::from_static(auth::NODE_HEADER), value);
        }
    }
    res
}

fn with_session(mut res: ServiceResponse<BoxBody>, minted: Option<&SessionToken>) -> ServiceResponse<BoxBody> {
    if let Some(token) = minted {
        if res.status().is_success() || res.status().is_redirection() {
            let cookie = tenant::session_cookie(res.request(), token);
            if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
                res.headers_mut().append(header::SET_COOKIE, value);
            }
        }
    }
    res
}

/// [`forward`], observed in `vitrina_forward_seconds{outcome}` (the hop's whole round trip).
async fn timed_forward(node: &Node, req: &ServiceRequest, addr: &str, body: Bytes) -> Result<HttpResponse, String> {
    let started = std::time::Instant::now();
    let span = tracing::info_span!("forward", owner = %addr);
    let result = tracing::Instrument::instrument(forward(node, req, addr, body), span).await;
    let outcome = if result.is_ok() { "answered" } else { "failed" };
    crate::metrics::observe_seconds("vitrina_forward_seconds", &[("outcome", outcome)], started.elapsed().as_secs_f64());
    result
}

async fn forward(node: &Node, req: &ServiceRequest, addr: &str, body: Bytes) -> Result<HttpResponse, String> {
    let pq = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).map_err(|e| e.to_string())?;
    let (ts, sig) = auth::sign(node.cluster.secret(), method.as_str(), &pq, &body);
    let mut out = node.cluster.client().request(method, format!("http://{addr}{pq}"));
    for (name, value) in req.headers() {
        // Host is set once below; our own cluster headers are never taken from the client.
        let ours = name.as_str().starts_with("x-vitrina-");
        if !hop_by_hop(name) && name != header::HOST && !ours && !crate::trace_context::is_trace_header(name.as_str()) {
            out = out.header(name.as_str(), value.as_bytes());
        }
    }
    // The hop continues this request's trace as a child of the forward's span.
    let mut trace = reqwest::header::HeaderMap::new();
    crate::trace_context::inject(&mut trace);
    out = out.headers(trace);
    let host = tenant::host_of(req.request());
    if let Some(ip) = proxy::client_ip(req.request()) {
        out = out.header(proxy::CLIENT_IP_HEADER, ip.to_string());
    }
    let secure = if proxy::secure_cookies(req.request()) { "1" } else { "0" };
    let response = out
        .header("host", host)
        .header(proxy::SECURE_HEADER, secure)
        .header(auth::HOP_HEADER, "1")
        .header(auth::NODE_HEADER, node.cluster.id.as_str())
        .header(auth::TS_HEADER, ts)
        .header(auth::AUTH_HEADER, sig)
        .header("x-request-id", RequestId::current().0)
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = StatusCode::from_u16(response.status().as_u16()).map_err(|e| e.to_string())?;
    let mut builder = HttpResponse::build(status);
    for (name, value) in response.headers() {
        let Ok(name) = HeaderName::from_bytes(name.as_str().as_bytes()) else { continue };
        if hop_by_hop(&name) {
            continue;
        }
        if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
            builder.append_header((name, value));
        }
    }
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    Ok(builder.body(bytes))
}
