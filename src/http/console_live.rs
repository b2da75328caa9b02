//! `GET /admin/live` — the console's WebSocket: a logged-in editor's page hears when another
//! editor saves a page's drafts (`draft` events), so its open preview of that page renders
//! again. Same socket machinery as shoppers' pages (`live.rs`: caps, ping, relay between
//! nodes under the store's key), with the console session's check instead of a shopper's and
//! only console events passed on.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::live::{check_origin, ensure_renewal, handshake_refused, serve, Permit, MAX_FRAME};
use super::tenant;
use super::websocket;
use crate::error::ApiError;
use crate::ids::ActorKey;
use crate::node::Node;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(super::at("/admin/live", [web::get().to(socket)]))
        .service(super::at("/internal/console/session", [web::post().to(super::console_session::session_check)]));
}

async fn socket(node: web::Data<Node>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let node: Arc<Node> = node.into_inner();
    if !node.settings.live.enabled {
        return Err(ApiError::not_found("live updates are off on this node"));
    }
    let store = tenant::resolve_store(&node, &req)?;
    // A page of another site must not open it with the editor's cookie.
    check_origin(&node, &req, &store)?;
    super::console_session::authorize(&node, &req, &store).await?;
    let is_upgrade = req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_upgrade {
        return Err(ApiError::bad_request("not_websocket", "GET /admin/live is a WebSocket: send Upgrade: websocket"));
    }
    let permit = Permit::admit(&node, super::proxy::client_ip(&req), None)?;
    let sub = node
        .events
        .subscribe(vec![ActorKey::Store(store)], node.settings.live.send_queue)
        .ok_or_else(|| ApiError::unavailable("this node is shutting down"))?;
    let renew = node.clone();
    let res = websocket::accept(&req, MAX_FRAME, move |socket| serve(node, sub, socket, permit, crate::actors::store::is_console_event))
        .map_err(handshake_refused)?;
    ensure_renewal(&renew);
    Ok(res)
}
