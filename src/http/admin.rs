//! The admin API under `/admin/api/v1`. Bearer tokens: a store's own token works on that store
//! (another store's token gets 403); the node's operator token works everywhere and is the only
//! one that can create stores.

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::body;
use super::staff::Caller;
use super::tenant::page_request;
use crate::actors::store::{Admin, AdminOp, FeedAdmin, FeedAdminOp, RenderForStore, SyncAdmin, SyncAdminOp};
use crate::catalog::host_policy::{self, HostRefusal};
use crate::catalog::{domain_check, normalise_host, AdminToken, CatalogError, HostStatus};
use crate::error::ApiError;
use crate::feed::signature::WebhookSecret;
use crate::http::errors::actor_error;
use crate::http::errors::{storage_error, store_error};
use crate::ids::{BlockId, ProductId, Slug, StoreId};
use crate::node::Node;
use crate::render::Route;
use crate::store::staff as staff_model;

fn catalog_error(e: CatalogError) -> ApiError {
    match e {
        CatalogError::StoreExists(s) => ApiError::conflict("store_exists", format!("store {s} already exists")),
        CatalogError::HostTaken(h) => ApiError::conflict("host_taken", format!("host {h} is mapped to another store")),
        CatalogError::HostRefused(r) => host_refused(r),
        CatalogError::Storage(e) => storage_error(e),
        other => ApiError::internal(other),
    }
}

/// A host no store may claim: 400 when it is not a host name at all, else 422 with its code.
fn host_refused(r: HostRefusal) -> ApiError {
    let status = if r.code == "invalid_host" { StatusCode::BAD_REQUEST } else { StatusCode::UNPROCESSABLE_ENTITY };
    ApiError::new(status, r.code, r.message)
}

fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req.headers().get(header::AUTHORIZATION).ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
    let value = value.to_str().map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .ok_or_else(|| ApiError::unauthorized("expected Authorization: Bearer <token>"))?;
    Ok(token)
}

fn is_operator(node: &Node, token: &str) -> bool {
    let expected = node.operator_token();
    expected.len() == token.len() && bool::from(expected.as_bytes().ct_eq(token.as_bytes()))
}

/// Checks the caller may administer `store` and says who it is: a bearer token (the store's
/// admin token or the operator's, both owners), else the merchant console's session cookie
/// (`console_session`: a staff member or the admin token's login, with a CSRF token on writes).
async fn authorize(node: &Arc<Node>, req: &HttpRequest, store: &StoreId) -> Result<Caller, ApiError> {
    if !req.headers().contains_key(header::AUTHORIZATION) && super::console_session::has_cookie(req) {
        return super::console_session::authorize(node, req, store).await;
    }
    let token = bearer(req)?;
    check_token(node, token, store)?;
    Ok(Caller::owner(if is_operator(node, token) { staff_model::OPERATOR_ACTOR } else { staff_model::TOKEN_ACTOR }))
}

/// Whether `token` (the store's admin token or the operator's) grants `store`.
pub(super) fn check_token(node: &Node, token: &str, store: &StoreId) -> Result<(), ApiError> {
    if is_operator(node, token) {
        return Ok(());
    }
    match node.catalog.store_for_token(token).map_err(ApiError::internal)? {
        Some(owner) if &owner == store => Ok(()),
        Some(_) => Err(ApiError::forbidden(format!("this token does not grant access to store {store}"))),
        None => Err(ApiError::unauthorized("unknown or revoked token")),
    }
}

/// The store a request names, once the caller is known, the store exists and the caller's role
/// allows the request (`staff::required_role`).
async fn store_path(node: &Arc<Node>, req: &HttpRequest, raw: &str) -> Result<(StoreId, Caller), ApiError> {
    let store = StoreId::parse(raw)?;
    let caller = authorize(node, req, &store).await?;
    if !node.catalog.store_exists(&store).map_err(ApiError::internal)? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "store_not_found", format!("store {store} does not exist")));
    }
    super::staff::check_role(&caller, req)?;
    Ok((store, caller))
}

/// [`store_path`] for the routes outside this file (staff, audit).
pub(super) async fn authorize_store(node: web::Data<Node>, req: &HttpRequest, raw: &str) -> Result<(Arc<Node>, StoreId, Caller), ApiError> {
    let node = node.into_inner();
    let (store, caller) = store_path(&node, req, raw).await?;
    Ok((node, store, caller))
}

async fn run(node: &Arc<Node>, store: &StoreId, op: AdminOp) -> Result<Value, ApiError> {
    node.ask_store(store, Admin::op(op)).await.map_err(actor_error)?.map_err(store_error)
}

/// The header a console names its draft saves by (echoed in the save's `draft` event).
const SAVE_HEADER: &str = "x-vitrina-save";

/// The request's save id: 1 to 64 of `A-Z a-z 0-9 _ -`, or none.
fn save_id(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(raw) = req.headers().get(SAVE_HEADER) else { return Ok(None) };
    let id = raw.to_str().unwrap_or("");
    if (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        Ok(Some(id.to_string()))
    } else {
        Err(ApiError::bad_request("invalid_save_id", format!("{SAVE_HEADER} is 1 to 64 letters, digits, '_' or '-'")))
    }
}

/// [`respond`] for a draft change: its `draft` event carries the request's save id.
async fn respond_save(
    node: &Arc<Node>,
    store: &StoreId,
    req: &HttpRequest,
    op: AdminOp,
    status: StatusCode,
) -> Result<HttpResponse, ApiError> {
    let save = save_id(req)?;
    let body = node.ask_store(store, Admin { op, save }).await.map_err(actor_error)?.map_err(store_error)?;
    Ok(HttpResponse::build(status).json(body))
}

async fn respond(node: &Arc<Node>, store: &StoreId, op: AdminOp, status: StatusCode) -> Result<HttpResponse, ApiError> {
    let body = run(node, store, op).await?;
    Ok(HttpResponse::build(status).json(body))
}

fn str_field(v: &Value, name: &str) -> Option<String> {
    v.get(name).and_then(Value::as_str).map(str::to_string)
}

/// `POST /admin/api/v1/stores` (operator token) — `{"id", "name", "currency", "locale", "hosts"}`.
pub async fn create_store(node: web::Data<Node>, req: HttpRequest, bytes: Bytes) -> Result<HttpResponse, ApiError> {
    let node = node.into_inner();
    let token = bearer(&req)?;
    if !is_operator(&node, token) {
        return Err(if node.catalog.store_for_token(token).map_err(ApiError::internal)?.is_some() {
            ApiError::forbidden("only the operator token can create stores")
        } else {
            ApiError::unauthorized("unknown or revoked token")
        });
    }
    let body = body::json(&req, &bytes)?;
    let id = StoreId::parse(&str_field(&body, "id").ok_or_else(|| ApiError::bad_request("invalid_request", "id is required"))?)?;
    let (store, admin_token) = create_store_with(&node, &id, &body).await?;
    Ok(HttpResponse::Created().json(json!({
        "store": store,
        "adminToken": admin_token.0,
        "url": format!("http://{}.{}/", id, node.catalog.base_domain()),
    })))
}

/// Creates a store in the catalog and initialises its actor. Shared with the demo seeder.
pub async fn create_store_with(node: &Arc<Node>, id: &StoreId, body: &Value) -> Result<(Value, AdminToken), ApiError> {
    let mut settings = serde_json::Map::new();
    for key in ["name", "tagline", "currency", "locale", "seo", "analytics", "limits"] {
        if let Some(v) = body.get(key) {
            settings.insert(key.to_string(), v.clone());
        }
    }
    settings.entry("name").or_insert_with(|| json!(id.as_str()));
    // Validate before the catalog row exists, so a bad request leaves nothing behind.
    let patch: crate::store::model::SettingsPatch =
        serde_json::from_value(Value::Object(settings.clone())).map_err(|e| ApiError::bad_request("validation_failed", e.to_string()))?;
    patch.apply(Default::default()).map_err(|m| ApiError::bad_request("validation_failed", m))?;
    let hosts: Vec<String> = match body.get("hosts") {
        None => Vec::new(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| ApiError::bad_request("validation_failed", "hosts must be a list of host names"))?,
    };
    let hosts: Vec<String> = hosts.iter().map(|h| host_policy::normalise_claim(h)).collect::<Result<_, _>>().map_err(host_refused)?;
    for h in &hosts {
        host_policy::check_claim(h, id, node.catalog.base_domain()).map_err(host_refused)?;
    }
    let token = AdminToken::generate();
    let catalog_node = node.clone();
    let (id2, token_clone) = (id.clone(), AdminToken(token.0.clone()));
    web::block(move || catalog_node.catalog.create_store(&id2, &token_clone)).await.map_err(ApiError::internal)?.map_err(catalog_error)?;
    // The operator names them: verified, unless another store already serves one.
    for h in &hosts {
        node.catalog.confirm_host(h, id).map_err(catalog_error)?;
    }
    node.push_catalog().await;
    let result = run(node, id, AdminOp::PatchSettings(Value::Object(settings))).await?;
    Ok((json!({"id": id, "settings": result["settings"], "hosts": hosts}), token))
}

fn validate_host(h: &str) -> Result<(), ApiError> {
    let ok = (1..=253).contains(&h.len())
        && h.split('.').all(|l| (1..=63).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request("invalid_host", format!("{h:?} is not a valid host name")))
    }
}

macro_rules! store_route {
    ($(#[$doc:meta])* $name:ident, |$node:ident, $store:ident, $req:ident, $rest:ident $(, $arg:ident : $ty:ty)*| $body:expr) => {
        $(#[$doc])*
        pub async fn $name(node: web::Data<Node>, $req: HttpRequest, path: web::Path<Vec<String>> $(, $arg: $ty)*) -> Result<HttpResponse, ApiError> {
            let $node = node.into_inner();
            let segments = path.into_inner();
            let ($store, caller) = store_path(&$node, &$req, segments.first().map(String::as_str).unwrap_or("")).await?;
            #[allow(unused_variables)]
            let $rest: Vec<String> = segments.into_iter().skip(1).collect();
            let (audit_node, audit_store, audit_req) = ($node.clone(), $store.clone(), $req.clone());
            let res: Result<HttpResponse, ApiError> = $body.await;
            let res = res?;
            super::staff::audited(&audit_node, &audit_store, &caller, &audit_req, &res).await;
            Ok(res)
        }
    };
}

fn seg<T>(rest: &[String], i: usize, parse: fn(&str) -> Result<T, crate::ids::InvalidId>) -> Result<T, ApiError> {
    let raw = rest.get(i).map(String::as_str).unwrap_or("");
    Ok(parse(raw)?)
}

store_route!(describe, |node, store, req, rest| async move { respond(&node, &store, AdminOp::Describe, StatusCode::OK).await });
store_route!(get_settings, |node, store, req, rest| async move { respond(&node, &store, AdminOp::GetSettings, StatusCode::OK).await });
store_route!(patch_settings, |node, store, req, rest, bytes: Bytes| async move {
    let body = body::json(&req, &bytes)?;
    respond(&node, &store, AdminOp::PatchSettings(body), StatusCode::OK).await
});
store_route!(get_theme, |node, store, req, rest| async move { respond(&node, &store, AdminOp::GetTheme, StatusCode::OK).await });
store_route!(put_theme, |node, store, req, rest, bytes: Bytes| async move {
    let theme = serde_json::from_value(body::json(&req, &bytes)?)
        .map_err(|e| ApiError::bad_request("validation_failed", format!("invalid theme: {e}")))?;
    respond(&node, &store, AdminOp::PutTheme(theme), StatusCode::OK).await
});
store_route!(list_products, |node, store, req, rest| async move { respond(&node, &store, AdminOp::ListProducts, StatusCode::OK).await });
store_route!(get_product, |node, store, req, rest| async move {
    let id = seg(&rest, 0, ProductId::parse)?;
    respond(&node, &store, AdminOp::GetProduct(id), StatusCode::OK).await
});
store_route!(
    /// `POST …/products` — one product object, or `{"products": [...]}` to upsert many in one transaction.
    post_products, |node, store, req, rest, bytes: Bytes| async move {
    let body = body::json(&req, &bytes)?;
    let items = match body.get("products") {
        Some(Value::Array(list)) => list.iter().map(|p| (None, p.clone())).collect(),
        Some(_) => return Err(ApiError::bad_request("invalid_request", "products must be an array")),
        None => vec![(None, body)],
    };
    respond(&node, &store, AdminOp::UpsertProducts(items), StatusCode::OK).await
});
store_route!(put_product, |node, store, req, rest, bytes: Bytes| async move {
    let id = seg(&rest, 0, ProductId::parse)?;
    let body = body::json(&req, &bytes)?;
    respond(&node, &store, AdminOp::UpsertProducts(vec![(Some(id), body)]), StatusCode::OK).await
});
store_route!(delete_product, |node, store, req, rest| async move {
    let id = seg(&rest, 0, ProductId::parse)?;
    respond(&node, &store, AdminOp::DeleteProduct(id), StatusCode::OK).await
});
store_route!(list_pages, |node, store, req, rest| async move { respond(&node, &store, AdminOp::ListPages, StatusCode::OK).await });
store_route!(get_page, |node, store, req, rest| async move {
    let slug = seg(&rest, 0, Slug::parse)?;
    respond(&node, &store, AdminOp::GetPage(slug), StatusCode::OK).await
});
store_route!(
    /// `PUT …/pages/{slug}` — `{"title", "description", "blocks"?}`; `blocks` replaces the draft.
    put_page, |node, store, req, rest, bytes: Bytes| async move {
    let slug = seg(&rest, 0, Slug::parse)?;
    let body = body::json(&req, &bytes)?;
    let title = str_field(&body, "title").ok_or_else(|| ApiError::bad_request("invalid_request", "title is required"))?;
    let description = str_field(&body, "description").unwrap_or_default();
    let blocks = match body.get("blocks") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => Some(list.clone()),
        Some(_) => return Err(ApiError::bad_request("invalid_request", "blocks must be an array")),
    };
    respond_save(&node, &store, &req, AdminOp::PutPage { slug, title, description, blocks }, StatusCode::OK).await
});
store_route!(delete_page, |node, store, req, rest| async move {
    let slug = seg(&rest, 0, Slug::parse)?;
    respond(&node, &store, AdminOp::DeletePage(slug), StatusCode::OK).await
});
store_route!(add_block, |node, store, req, rest, bytes: Bytes| async move {
    let page = seg(&rest, 0, Slug::parse)?;
    let block = body::json(&req, &bytes)?;
    respond_save(&node, &store, &req, AdminOp::AddBlock { page, block }, StatusCode::CREATED).await
});
store_route!(update_block, |node, store, req, rest, bytes: Bytes| async move {
    let page = seg(&rest, 0, Slug::parse)?;
    let block_id = seg(&rest, 1, BlockId::parse)?;
    let block = body::json(&req, &bytes)?;
    respond_save(&node, &store, &req, AdminOp::UpdateBlock { page, block_id, block }, StatusCode::OK).await
});
store_route!(delete_block, |node, store, req, rest| async move {
    let page = seg(&rest, 0, Slug::parse)?;
    let block_id = seg(&rest, 1, BlockId::parse)?;
    respond_save(&node, &store, &req, AdminOp::DeleteBlock { page, block_id }, StatusCode::OK).await
});
store_route!(publish, |node, store, req, rest| async move {
    let slug = seg(&rest, 0, Slug::parse)?;
    respond(&node, &store, AdminOp::Publish(slug), StatusCode::OK).await
});
store_route!(versions, |node, store, req, rest| async move {
    let slug = seg(&rest, 0, Slug::parse)?;
    respond(&node, &store, AdminOp::ListVersions(slug), StatusCode::OK).await
});
store_route!(
    /// `POST …/pages/{slug}/rollback` — `{"version": n}` publishes a copy of version n.
    rollback, |node, store, req, rest, bytes: Bytes| async move {
    let page = seg(&rest, 0, Slug::parse)?;
    let body = body::json(&req, &bytes)?;
    let version = body.get("version").and_then(Value::as_i64).ok_or_else(|| ApiError::bad_request("invalid_request", "version (a number) is required"))?;
    respond_save(&node, &store, &req, AdminOp::Rollback { page, version }, StatusCode::OK).await
});
store_route!(
    /// `GET …/pages/{slug}/preview` — the page with its drafts, rendered for the admin only.
    preview, |node, store, req, rest| async move {
    let slug = seg(&rest, 0, Slug::parse)?;
    let route = if slug.as_str() == "home" { Route::Home } else { Route::Page(slug.clone()) };
    let mut request = page_request(&req, route);
    request.route = Route::Page(slug);
    let page = node
        .ask_store(&store, RenderForStore { request, preview_drafts: true, search_results: None })
        .await
        .map_err(actor_error)?
        .map_err(crate::http::errors::render_error)?;
    let mut res = HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .insert_header(("x-vitrina-preview", "drafts"))
        .body(page.html);
    // The store's own page policy, so the console's preview frame shows the page as shoppers
    // see it (its stylesheet and inline styles), and still runs no script from block HTML.
    if let Ok(snap) = node.snapshot(&store).await {
        super::headers::set_page_policy(&mut res, &snap.chrome);
    }
    Ok(res)
});
store_route!(
    /// `POST …/blocks/validate` — `{"code": "..."}` → errors and warnings with line and column.
    validate_block, |node, _store, req, rest, bytes: Bytes| async move {
    let body = body::json(&req, &bytes)?;
    let code = body.get("code").and_then(Value::as_str).ok_or_else(|| ApiError::bad_request("invalid_request", "code (a string) is required"))?;
    if code.len() > crate::store::model::MAX_BLOCK_CODE_BYTES {
        return Err(ApiError::bad_request("validation_failed", "block code is at most 64 KiB"));
    }
    let report = crate::engine::validate::validate_block(code);
    Ok(HttpResponse::Ok().json(json!({"valid": report.errors.is_empty(), "errors": report.errors, "warnings": report.warnings})))
});
store_route!(
    /// `GET …/block-types` — the library's block types with the settings each declares (the
    /// console builds its forms from them), and `custom`.
    block_types, |node, _store, req, rest| async move {
    let types = crate::store::block_settings::all();
    Ok(HttpResponse::Ok().json(json!({"blockTypes": types, "custom": {"type": "custom", "label": "Custom code", "fields": []}})))
});
store_route!(
    /// `GET …/stats` — today's visitors, orders and revenue, and the last 30 days'.
    day_stats, |node, store, req, rest| async move {
    let body = node.ask_store(&store, crate::actors::store::GetDayStats { days: 30 }).await.map_err(actor_error)?.map_err(store_error)?;
    Ok(HttpResponse::Ok().json(body))
});
store_route!(list_posts, |node, store, req, rest| async move { respond(&node, &store, AdminOp::ListPosts, StatusCode::OK).await });
store_route!(put_post, |node, store, req, rest, bytes: Bytes| async move {
    let slug = seg(&rest, 0, Slug::parse)?;
    let post = body::json(&req, &bytes)?;
    respond(&node, &store, AdminOp::PutPost { slug, post }, StatusCode::OK).await
});
store_route!(delete_post, |node, store, req, rest| async move {
    let slug = seg(&rest, 0, Slug::parse)?;
    respond(&node, &store, AdminOp::DeletePost(slug), StatusCode::OK).await
});
store_route!(
    /// `GET …/block-failures` — the store's recent block failures on this node, newest first
    /// (kept in memory, `render.failures_kept_per_store` per store): what broke, where, why.
    block_failures, |node, store, req, rest| async move {
    let failures = node.renderer.failures.recent(&store);
    Ok::<_, ApiError>(HttpResponse::Ok().json(json!({"failures": failures})))
});
fn domain_json(node: &Node, store: &StoreId, host: &str, status: &HostStatus) -> Value {
    match status {
        HostStatus::Verified => json!({"host": host, "store": store, "status": "verified"}),
        HostStatus::Pending { token } => json!({
            "host": host,
            "store": store,
            "status": "pending",
            "verification": {
                "token": token,
                "dns": {"name": domain_check::txt_name(host), "type": "TXT", "value": token},
                "http": {"url": domain_check::verification_url(host, token, &node.settings.domains), "body": token},
                "then": "POST this domain's /verify",
            },
        }),
    }
}

store_route!(list_domains, |node, store, req, rest| async move {
    let hosts = node.catalog.hosts_of(&store).map_err(ApiError::internal)?;
    let domains: Vec<Value> = hosts.iter().map(|(h, st)| domain_json(&node, &store, h, st)).collect();
    Ok(HttpResponse::Ok().json(json!({"domains": domains, "default": format!("{}.{}", store, node.catalog.base_domain())})))
});
store_route!(
    /// `POST …/domains` — `{"host": "shop.example.com"}` claims a custom domain. It serves once
    /// verified (`POST …/domains/{host}/verify`); until then it is `pending` (201).
    add_domain, |node, store, req, rest, bytes: Bytes| async move {
    let body = body::json(&req, &bytes)?;
    let host = str_field(&body, "host").ok_or_else(|| ApiError::bad_request("invalid_request", "host is required"))?;
    let host = host_policy::normalise_claim(&host).map_err(host_refused)?;
    let status = node.catalog.claim_host(&host, &store).map_err(catalog_error)?;
    node.push_catalog().await;
    let code = if status == HostStatus::Verified { StatusCode::OK } else { StatusCode::CREATED };
    Ok(HttpResponse::build(code).json(domain_json(&node, &store, &host, &status)))
});
store_route!(
    /// `POST …/domains/{host}/verify` — fetches the claim's token from the domain (through the
    /// egress client); on success the domain serves this store.
    verify_domain, |node, store, req, rest| async move {
    let host = normalise_host(rest.first().map(String::as_str).unwrap_or(""));
    let Some(token) = node.catalog.claim_token(&host, &store).map_err(ApiError::internal)? else {
        let hosts = node.catalog.hosts_of(&store).map_err(ApiError::internal)?;
        if hosts.iter().any(|(h, st)| h == &host && st == &HostStatus::Verified) {
            return Ok(HttpResponse::Ok().json(domain_json(&node, &store, &host, &HostStatus::Verified)));
        }
        return Err(ApiError::not_found(format!("store {store} has no claim on {host}; POST …/domains first")));
    };
    if let Err(failed) = domain_check::check(&host, &token, &node.settings.domains).await {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "verification_failed", failed).with_details(json!({
            "url": domain_check::verification_url(&host, &token, &node.settings.domains),
            "txt": domain_check::txt_name(&host),
        })));
    }
    node.catalog.confirm_host(&host, &store).map_err(catalog_error)?;
    node.push_catalog().await;
    Ok(HttpResponse::Ok().json(domain_json(&node, &store, &host, &HostStatus::Verified)))
});
store_route!(
    /// `DELETE …/domains/{host}` — the store gives up a domain it serves or claims.
    remove_domain, |node, store, req, rest| async move {
    let host = normalise_host(rest.first().map(String::as_str).unwrap_or(""));
    if !node.catalog.unmap_host(&host, &store).map_err(ApiError::internal)? {
        return Err(ApiError::not_found(format!("{host} is not mapped to store {store}")));
    }
    node.push_catalog().await;
    Ok(HttpResponse::Ok().json(json!({"deleted": host})))
});

// ---- hosts, for the operator: assign, revoke, settle conflicts ----

fn require_operator(node: &Node, req: &HttpRequest) -> Result<(), ApiError> {
    let token = bearer(req)?;
    if is_operator(node, token) {
        return Ok(());
    }
    Err(match node.catalog.store_for_token(token).map_err(ApiError::internal)? {
        Some(_) => ApiError::forbidden("only the operator token can manage hosts across stores"),
        None => ApiError::unauthorized("unknown or revoked token"),
    })
}

/// `GET /admin/api/v1/hosts/{host}` — which store serves the host and which stores claim it.
pub async fn get_host(node: web::Data<Node>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    require_operator(&node, &req)?;
    let host = normalise_host(&path.into_inner());
    let (owner, claims) = node.catalog.host_owner(&host).map_err(ApiError::internal)?;
    let default_of = host_policy::default_host_store(&host, node.catalog.base_domain());
    Ok(HttpResponse::Ok()
        .json(json!({"host": host, "store": owner.or(default_of.clone()), "default": default_of.is_some(), "claims": claims})))
}

/// `PUT /admin/api/v1/hosts/{host}` — `{"store": "id"}`: the host serves that store, verified,
/// whoever held or claimed it before.
pub async fn assign_host(node: web::Data<Node>, req: HttpRequest, path: web::Path<String>, bytes: Bytes) -> Result<HttpResponse, ApiError> {
    let node = node.into_inner();
    require_operator(&node, &req)?;
    let host = host_policy::normalise_claim(&path.into_inner()).map_err(host_refused)?;
    let body = body::json(&req, &bytes)?;
    let store = StoreId::parse(&str_field(&body, "store").ok_or_else(|| ApiError::bad_request("invalid_request", "store is required"))?)?;
    if !node.catalog.store_exists(&store).map_err(ApiError::internal)? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "store_not_found", format!("store {store} does not exist")));
    }
    node.catalog.assign_host(&host, &store).map_err(catalog_error)?;
    node.push_catalog().await;
    Ok(HttpResponse::Ok().json(domain_json(&node, &store, &host, &HostStatus::Verified)))
}

/// `DELETE /admin/api/v1/hosts/{host}` — the host serves no store; every claim on it ends.
pub async fn revoke_host(node: web::Data<Node>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let node = node.into_inner();
    require_operator(&node, &req)?;
    let host = normalise_host(&path.into_inner());
    if !node.catalog.revoke_host(&host).map_err(ApiError::internal)? {
        return Err(ApiError::not_found(format!("no store serves or claims {host}")));
    }
    node.push_catalog().await;
    Ok(HttpResponse::Ok().json(json!({"revoked": host})))
}
store_route!(
    /// `POST …/token/rotate` (the store's token or the operator's) — a new admin token for the
    /// store; the old one is refused from this answer on, on every node (the catalog change is
    /// pushed to all members before the answer).
    rotate_token, |node, store, req, rest| async move {
    let token = AdminToken::generate();
    let (catalog_node, id, hashed) = (node.clone(), store.clone(), AdminToken(token.0.clone()));
    web::block(move || catalog_node.catalog.rotate_token(&id, &hashed)).await.map_err(ApiError::internal)?.map_err(catalog_error)?;
    node.push_catalog().await;
    crate::metrics::incr("vitrina_admin_tokens_rotated_total", &[]);
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(json!({"store": store, "adminToken": token.0})))
});

// ---- catalog feed: webhooks, commerce backend, upstream sync ----

async fn run_feed(node: &Arc<Node>, store: &StoreId, op: FeedAdminOp) -> Result<Value, ApiError> {
    node.ask_store(store, FeedAdmin(op)).await.map_err(actor_error)?.map_err(store_error)
}

store_route!(get_webhooks, |node, store, req, rest| async move {
    let mut body = run_feed(&node, &store, FeedAdminOp::WebhookStatus).await?;
    body["shopifyDomain"] = json!(node.catalog.shopify_domain_of(&store).map_err(ApiError::internal)?);
    Ok(HttpResponse::Ok().json(body))
});
store_route!(
    /// `PUT …/webhooks` — `{"secret": "...", "shopifyDomain": "x.myshopify.com"?}`: the shared
    /// secret webhooks are signed with (kept in the store's database), and the Shopify shop
    /// whose webhooks update this store (kept in the node catalog).
    put_webhooks, |node, store, req, rest, bytes: Bytes| async move {
    let body = body::json(&req, &bytes)?;
    let secret = str_field(&body, "secret").ok_or_else(|| ApiError::bad_request("invalid_request", "secret is required"))?;
    let secret = WebhookSecret::parse(&secret).map_err(|m| ApiError::bad_request("validation_failed", m))?;
    let domain = match body.get("shopifyDomain") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => {
            validate_host(d)?;
            Some(crate::catalog::normalise_host(d))
        }
        Some(_) => return Err(ApiError::bad_request("validation_failed", "shopifyDomain must be a host name")),
    };
    if let Some(d) = &domain {
        node.catalog.set_shopify_domain(d, &store).map_err(catalog_error)?;
        node.push_catalog().await;
    }
    let mut out = run_feed(&node, &store, FeedAdminOp::SetWebhookSecret(secret)).await?;
    out["shopifyDomain"] = json!(node.catalog.shopify_domain_of(&store).map_err(ApiError::internal)?);
    Ok(HttpResponse::Ok().json(out))
});
store_route!(get_backend, |node, store, req, rest| async move {
    Ok(HttpResponse::Ok().json(run_feed(&node, &store, FeedAdminOp::GetBackend).await?))
});
store_route!(
    /// `PUT …/backend` — `{"ordersUrl": "https://…"}`: where checkouts are delivered.
    put_backend, |node, store, req, rest, bytes: Bytes| async move {
    let body = body::json(&req, &bytes)?;
    let url = str_field(&body, "ordersUrl").ok_or_else(|| ApiError::bad_request("invalid_request", "ordersUrl is required"))?;
    crate::feed::repo::check_endpoint(&url).map_err(|m| ApiError::bad_request("validation_failed", m))?;
    check_egress(&url).await?;
    Ok(HttpResponse::Ok().json(run_feed(&node, &store, FeedAdminOp::SetBackend(url)).await?))
});

store_route!(get_cdn, |node, store, req, rest| async move {
    Ok(HttpResponse::Ok().json(run_feed(&node, &store, FeedAdminOp::GetPurgeUrl).await?))
});
store_route!(
    /// `PUT …/cdn` — `{"purgeUrl": "https://…"}` (or `null` to remove it): POSTed with the
    /// store's surrogate keys after each change its anonymous pages show (see `crate::cdn`).
    put_cdn, |node, store, req, rest, bytes: Bytes| async move {
    let body = body::json(&req, &bytes)?;
    let url = match body.get("purgeUrl") {
        Some(Value::Null) => None,
        Some(Value::String(url)) => {
            crate::feed::repo::check_endpoint(url).map_err(|m| ApiError::bad_request("validation_failed", m))?;
            check_egress(url).await?;
            Some(url.clone())
        }
        _ => return Err(ApiError::bad_request("invalid_request", "purgeUrl is required: a URL, or null to remove it")),
    };
    Ok(HttpResponse::Ok().json(run_feed(&node, &store, FeedAdminOp::SetPurgeUrl(url)).await?))
});

/// Refuses, at configuration time, a URL the egress policy would refuse on every request.
async fn check_egress(url: &str) -> Result<(), ApiError> {
    crate::egress::global().check_configured(url).await.map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "egress_refused", format!("this URL is {e}: the node does not connect to loopback, private, link-local or metadata addresses, or to ports outside its allowed list"))
    })
}

async fn run_sync(node: &Arc<Node>, store: &StoreId, op: SyncAdminOp) -> Result<Value, ApiError> {
    node.ask_store(store, SyncAdmin(op)).await.map_err(actor_error)?.map_err(store_error)
}

store_route!(
    /// `GET …/sync` — last success, last error, consecutive failures, circuit state, products synced.
    get_sync, |node, store, req, rest| async move {
    Ok(HttpResponse::Ok().json(run_sync(&node, &store, SyncAdminOp::Status).await?))
});
store_route!(
    /// `PUT …/sync` — `{"url": "https://…/products.json", "intervalSecs": 300}`.
    put_sync, |node, store, req, rest, bytes: Bytes| async move {
    let body = body::json(&req, &bytes)?;
    let url = str_field(&body, "url").ok_or_else(|| ApiError::bad_request("invalid_request", "url is required"))?;
    crate::feed::repo::check_endpoint(&url).map_err(|m| ApiError::bad_request("validation_failed", m))?;
    check_egress(&url).await?;
    let interval_secs = body.get("intervalSecs").and_then(Value::as_i64).unwrap_or(300);
    if !(10..=7 * 24 * 3600).contains(&interval_secs) {
        return Err(ApiError::bad_request("validation_failed", "intervalSecs must be 10 to 604800"));
    }
    let config = crate::feed::repo::SyncConfig { url, interval_secs };
    Ok(HttpResponse::Ok().json(run_sync(&node, &store, SyncAdminOp::Configure(config)).await?))
});
store_route!(
    /// `POST …/sync/run` — a full resync now; 202 with the run id, 409 if one is running.
    run_sync_now, |node, store, req, rest| async move {
    Ok(HttpResponse::Accepted().json(run_sync(&node, &store, SyncAdminOp::RunNow).await?))
});

/// The feed's admin routes, under `/admin/api/v1`.
pub fn feed_routes(scope: actix_web::Scope) -> actix_web::Scope {
    let store = "/stores/{store}";
    scope
        .service(super::at(&format!("{store}/webhooks"), [super::get().to(get_webhooks), web::put().to(put_webhooks)]))
        .service(super::at(&format!("{store}/backend"), [super::get().to(get_backend), web::put().to(put_backend)]))
        .service(super::at(&format!("{store}/cdn"), [super::get().to(get_cdn), web::put().to(put_cdn)]))
        .service(super::at(&format!("{store}/sync"), [super::get().to(get_sync), web::put().to(put_sync)]))
        .service(super::at(&format!("{store}/sync/run"), [web::post().to(run_sync_now)]))
}
