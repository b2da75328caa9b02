//! HTTP edge: routing, body limits, the uniform error body. Handlers are thin: each turns a
//! request into one message to the actor that owns the state.

pub mod admin;
pub mod body;
pub mod conditional;
pub mod console;
pub mod console_live;
pub mod console_session;
pub mod csrf;
pub mod errors;
pub mod forward;
pub mod headers;
pub mod health;
pub mod internal;
pub mod limits;
pub mod live;
pub mod observe;
pub mod operator;
pub mod proxy;
pub mod server;
pub mod session;
pub mod shop;
pub mod staff;
pub mod stats;
pub mod tenant;
mod upgrade;
pub mod webhooks;
pub mod websocket;

use actix_web::{web, HttpResponse};

use crate::error::ApiError;
use crate::node::Node;

/// `path` with its routes, one per method: every method `path` answers is in one resource, so
/// any other gets 405 with `Allow` (made a uniform error body by `error::request_id_middleware`),
/// not the 404 of a path that does not exist.
pub fn at(path: &str, routes: impl IntoIterator<Item = actix_web::Route>) -> actix_web::Resource {
    routes.into_iter().fold(web::resource(path), actix_web::Resource::route)
}

/// A route for `GET` and `HEAD`: every readable resource answers `HEAD` with the headers its
/// `GET` would have (the server drops the body), so checks and caches need not fetch the page.
pub fn get() -> actix_web::Route {
    web::route().guard(actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head()))
}

pub fn configure(cfg: &mut web::ServiceConfig, node: web::Data<Node>) {
    let limit = node.settings.http.body_limit_bytes;
    cfg.app_data(node)
        .app_data(web::PayloadConfig::new(limit))
        .app_data(web::QueryConfig::default().error_handler(|e, _| ApiError::bad_request("invalid_query", e.to_string()).into()))
        .app_data(web::PathConfig::default().error_handler(|e, _| ApiError::bad_request("invalid_path", e.to_string()).into()))
        .service(at("/healthz", [get().to(health::healthz)]))
        .service(at("/readyz", [get().to(health::readyz)]))
        .service(at("/metrics", [get().to(metrics)]))
        .configure(crate::http::internal::configure)
        .configure(operator::configure)
        .configure(webhooks::routes)
        .service(staff::routes(admin::feed_routes(admin_scope())))
        .service(at(
            "/admin/session",
            [web::post().to(console_session::login), get().to(console_session::status), web::delete().to(console_session::logout)],
        ))
        .service(at("/admin/session/password", [web::put().to(console_session::change_password)]))
        .configure(console::routes)
        .configure(console_live::routes)
        .configure(live::routes)
        .configure(stats::routes)
        .service(at("/", [get().to(shop::home)]))
        .service(at("/pages/{slug}", [get().to(shop::page)]))
        .service(at("/products/{handle}", [get().to(shop::product)]))
        .service(at("/blog", [get().to(shop::blog)]))
        .service(at("/blog/{slug}", [get().to(shop::post)]))
        .service(at("/search", [get().to(shop::search)]))
        .service(at("/cart", [get().to(shop::cart)]))
        .service(at("/cart/items", [web::post().to(shop::add_item)]))
        .service(at(
            "/cart/items/{product}",
            [web::patch().to(shop::set_item), web::delete().to(shop::remove_item), web::post().to(shop::form_item)],
        ))
        .service(at("/preferences", [web::put().to(shop::preferences)]))
        .service(at("/consent", [web::post().to(shop::consent)]))
        .service(at("/checkout", [web::post().to(shop::checkout)]))
        .service(at("/orders/{id}", [get().to(shop::order)]))
        .default_service(web::to(not_found));
}

fn admin_scope() -> actix_web::Scope {
    use admin::*;
    let store = "/stores/{store}";
    web::scope("/admin/api/v1")
        .service(at("/stores", [web::post().to(create_store)]))
        .service(at(store, [get().to(describe)]))
        .service(at(&format!("{store}/settings"), [get().to(get_settings), web::patch().to(patch_settings), web::put().to(patch_settings)]))
        .service(at(&format!("{store}/theme"), [get().to(get_theme), web::put().to(put_theme)]))
        .service(at(&format!("{store}/products"), [get().to(list_products), web::post().to(post_products)]))
        .service(at(
            &format!("{store}/products/{{product}}"),
            [get().to(get_product), web::put().to(put_product), web::delete().to(delete_product)],
        ))
        .service(at(&format!("{store}/pages"), [get().to(list_pages)]))
        .service(at(&format!("{store}/pages/{{slug}}"), [get().to(get_page), web::put().to(put_page), web::delete().to(delete_page)]))
        .service(at(&format!("{store}/pages/{{slug}}/blocks"), [web::post().to(add_block)]))
        .service(at(
            &format!("{store}/pages/{{slug}}/blocks/{{block}}"),
            [web::patch().to(update_block), web::put().to(update_block), web::delete().to(delete_block)],
        ))
        .service(at(&format!("{store}/pages/{{slug}}/publish"), [web::post().to(publish)]))
        .service(at(&format!("{store}/pages/{{slug}}/versions"), [get().to(versions)]))
        .service(at(&format!("{store}/pages/{{slug}}/rollback"), [web::post().to(rollback)]))
        .service(at(&format!("{store}/pages/{{slug}}/preview"), [get().to(preview)]))
        .service(at(&format!("{store}/blocks/validate"), [web::post().to(validate_block)]))
        .service(at(&format!("{store}/block-types"), [get().to(block_types)]))
        .service(at(&format!("{store}/stats"), [get().to(day_stats)]))
        .service(at(&format!("{store}/posts"), [get().to(list_posts)]))
        .service(at(&format!("{store}/posts/{{slug}}"), [web::put().to(put_post), web::delete().to(delete_post)]))
        .service(at(&format!("{store}/block-failures"), [get().to(block_failures)]))
        .service(at(&format!("{store}/domains"), [get().to(list_domains), web::post().to(add_domain)]))
        .service(at(&format!("{store}/domains/{{host}}"), [web::delete().to(remove_domain)]))
        .service(at(&format!("{store}/domains/{{host}}/verify"), [web::post().to(verify_domain)]))
        .service(at("/hosts/{host}", [get().to(get_host), web::put().to(assign_host), web::delete().to(revoke_host)]))
        .service(at(&format!("{store}/token/rotate"), [web::post().to(rotate_token)]))
}

/// Refuses callers without the operator token (`Authorization: Bearer …`): the node's own
/// endpoints (`/metrics`, `/cluster/status`) answer on every host, stores' included.
pub fn operator_only(node: &Node, req: &actix_web::HttpRequest) -> Result<(), ApiError> {
    use subtle::ConstantTimeEq;
    let token = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(7..).filter(|_| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ")))
        .map(str::trim)
        .unwrap_or("");
    let expected = node.operator_token();
    if !token.is_empty() && expected.len() == token.len() && bool::from(expected.as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("this endpoint needs the operator token (Authorization: Bearer …)"))
    }
}

async fn metrics(node: web::Data<Node>, req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    operator_only(&node, &req)?;
    use crate::metrics::set_gauge;
    let (stores, shoppers) = node.registry.live_counts();
    set_gauge("vitrina_live_actors", &[("kind", "store")], stores as f64);
    set_gauge("vitrina_live_actors", &[("kind", "shopper")], shoppers as f64);
    set_gauge("vitrina_live_isolates", &[], crate::render::live_engines() as f64);
    set_gauge("vitrina_isolate_budget", &[], crate::engine::isolate_budget::budget() as f64);
    set_gauge("vitrina_isolate_bytes", &[], crate::engine::isolate_budget::held_bytes() as f64);
    set_gauge("vitrina_pooled_isolate_bytes", &[], crate::engine::pooled::bytes() as f64);
    set_gauge("vitrina_isolate_byte_budget", &[], crate::engine::isolate_budget::byte_budget() as f64);
    if let Some(replicator) = &node.replicator {
        set_gauge("vitrina_replication_pending_actors", &[], replicator.pending() as f64);
        set_gauge("vitrina_replication_oldest_pending_seconds", &[], replicator.oldest_pending_age().as_secs_f64());
    }
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(crate::metrics::render_prometheus()))
}

async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, shop::ShopError> {
    Err(shop::ShopError::new(ApiError::not_found(format!("no route for {} {}", req.method(), req.path())), tenant::wants_html(&req)))
}
