//! Shopper routes: pages, product views, blog, search and the cart. Each handler turns the
//! request into one message to the owning actor; everything else happens there.

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, HttpResponseBuilder};
use serde::Deserialize;
use serde_json::json;

use super::body::{self, BodyKind};
use super::session::SessionToken;
use super::tenant::{self, page_request, resolve_store, session_of, wants_html};
use crate::actors::shopper::{
    CartOp, ChangeCart, Checkout, GetCart, GetOrder, IdempotencyKey, RenderForShopper, RotateSession, SessionGeneration, SetPreferences,
    ShopperError, ShopperPage,
};
use crate::actors::store::RenderForStore;
use crate::error::{ApiError, RequestId};
use crate::http::errors::{actor_error, render_error};
use crate::ids::{ActorKey, ProductId, SessionId, Slug, StoreId};
use crate::node::Node;
use crate::render::cache::{AnonymousPages, PersonalPages};
use crate::render::snapshot::product_json;
use crate::render::{self, Route};

/// An error on a shopper route: a page for browsers, the JSON body for everyone else.
#[derive(Debug)]
pub struct ShopError {
    api: ApiError,
    html: bool,
    clear_session: bool,
    /// Whether a cookie that clears the session is `Secure` (the request came over HTTPS).
    secure: bool,
}

impl ShopError {
    pub fn new(api: ApiError, html: bool) -> ShopError {
        ShopError { api, html, clear_session: false, secure: false }
    }
}

impl std::fmt::Display for ShopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.api.fmt(f)
    }
}

impl actix_web::ResponseError for ShopError {
    fn status_code(&self) -> StatusCode {
        self.api.status
    }
    fn error_response(&self) -> HttpResponse {
        let mut res = if self.html {
            let id = RequestId::current();
            let title = match self.api.status.as_u16() {
                404 => "Not found",
                400 => "Bad request",
                409 => "Not possible",
                503 => "Temporarily unavailable",
                _ => "Something went wrong",
            };
            let mut builder = HttpResponse::build(self.api.status);
            builder.content_type("text/html; charset=utf-8").insert_header(("x-request-id", id.0.clone()));
            if let Some(secs) = self.api.retry_after_secs() {
                builder.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            builder.body(render::error_page(self.api.status.as_u16(), title, &self.api.message, &id.0))
        } else {
            self.api.error_response()
        };
        if self.clear_session {
            let mut c = actix_web::cookie::Cookie::build(tenant::SESSION_COOKIE, "")
                .path("/")
                .http_only(true)
                .same_site(actix_web::cookie::SameSite::Lax)
                .secure(self.secure)
                .finish();
            c.make_removal();
            let _ = res.add_cookie(&c);
        }
        res
    }
}

struct Ctx {
    node: Arc<Node>,
    store: StoreId,
    html: bool,
}

impl Ctx {
    fn err(&self, e: impl Into<ApiError>) -> ShopError {
        ShopError::new(e.into(), self.html)
    }
}

fn context(node: &web::Data<Node>, req: &HttpRequest) -> Result<Ctx, ShopError> {
    let html = wants_html(req);
    let store = resolve_store(node, req).map_err(|api| ShopError::new(api, html))?;
    Ok(Ctx { node: node.clone().into_inner(), store, html })
}

/// The session a request acts as.
struct Session {
    token: SessionToken,
    /// No shopper state can exist for it yet: a read is the store's anonymous page.
    is_new: bool,
    /// The response sets the cookie (a new session the client's IP may have; see `limits`).
    set_cookie: bool,
}

impl Session {
    fn sid(&self) -> &SessionId {
        &self.token.sid
    }

    fn cookie(&self, req: &HttpRequest) -> Option<actix_web::cookie::Cookie<'static>> {
        self.set_cookie.then(|| tenant::session_cookie(req, &self.token))
    }
}

/// The session of the request: its verified, current token, or a new one. A token of an
/// earlier generation (rotated away at checkout) counts as none for a read, which sets no
/// cookie: a page's own fetch sent just before the checkout's answer would otherwise replace
/// the rotated cookie the browser has just stored with a fresh, empty session. A write with it
/// is refused (409 `session_expired`, cookie cleared) rather than applied to a new shopper
/// here, since in a cluster the new shopper may live on another node.
async fn session(ctx: &Ctx, req: &HttpRequest, write: bool) -> Result<Session, ShopError> {
    // Minted by the routing middleware, which also sets the cookie on the response.
    if let Some(minted) = req.extensions().get::<crate::http::forward::MintedSession>() {
        return Ok(Session { token: minted.0.clone(), is_new: false, set_cookie: false });
    }
    if let Some(token) = session_of(req) {
        if current_generation(ctx, &token.sid).await? == token.generation {
            return Ok(Session { token, is_new: false, set_cookie: false });
        }
        if write {
            let api = ApiError::conflict("session_expired", "this session was replaced (after a checkout); retry without the old cookie");
            return Err(ShopError { api, html: ctx.html, clear_session: true, secure: super::proxy::secure_cookies(req) });
        }
        return Ok(Session { token: SessionToken::mint(), is_new: true, set_cookie: false });
    }
    // Minting costs nothing until the session's first write; the cookie is withheld from an IP
    // past its session limit, so it cannot collect ids to spend on writes later. A read gets
    // none while anonymous pages are public: a shared cache must not hand one visitor's
    // session to the next.
    let public_pages = ctx.node.settings.cache.public_page_secs > 0;
    let set_cookie = (write || !public_pages) && super::limits::allow_new_session(req).is_ok();
    Ok(Session { token: SessionToken::mint(), is_new: true, set_cookie })
}

/// The generation of `sid`'s tokens that reaches the shopper: from its pulse while it is live
/// here, else from the actor (which activates it; reads create no file).
async fn current_generation(ctx: &Ctx, sid: &SessionId) -> Result<u64, ShopError> {
    let key = ActorKey::Shopper(ctx.store.clone(), sid.clone());
    if let Some(generation) = ctx.node.shopper_pulse(&key).and_then(|p| p.generation()) {
        return Ok(generation);
    }
    ctx.node.ask_shopper(&ctx.store, sid, SessionGeneration).await.map_err(|e| ctx.err(actor_error(e)))
}

fn html_response(html: Bytes, cookie: Option<actix_web::cookie::Cookie<'static>>, cache: &'static str) -> HttpResponse {
    let mut builder = HttpResponse::Ok();
    builder
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .insert_header(("x-vitrina-cache", cache));
    if let Some(cookie) = cookie {
        builder.cookie(cookie);
    }
    builder.body(html)
}

/// A store's anonymous page. Without a cookie to set, for a visitor without state cookies of
/// its own, it may be kept by shared caches (`cache.public_page_secs`), varying by the user
/// agent (the device class is part of the page); its surrogate keys name the store and the
/// store version so a purge can drop either. A page whose blocks failed is never shared.
fn anonymous_response(
    ctx: &Ctx,
    req: &HttpRequest,
    html: Bytes,
    cookie: Option<actix_web::cookie::Cookie<'static>>,
    cache: &'static str,
    version: u64,
) -> HttpResponse {
    let settings = &ctx.node.settings.cache;
    let shareable = cookie.is_none()
        && cache != "failed-hit"
        && settings.public_page_secs > 0
        && req.cookie(tenant::REGION_COOKIE).is_none()
        && req.cookie(tenant::CONSENT_COOKIE).is_none();
    let mut res = html_response(html, cookie, cache);
    let store = ctx.store.as_str();
    let keys = crate::cdn::surrogate_keys(store, version);
    let headers = res.headers_mut();
    if let Ok(v) = header::HeaderValue::from_str(&keys.join(" ")) {
        headers.insert(header::HeaderName::from_static("surrogate-key"), v);
    }
    if let Ok(v) = header::HeaderValue::from_str(&keys.join(",")) {
        headers.insert(header::HeaderName::from_static("cache-tag"), v);
    }
    if shareable {
        let policy = format!(
            "public, max-age=0, s-maxage={}, stale-while-revalidate={}",
            settings.public_page_secs, settings.stale_while_revalidate_secs
        );
        if let Ok(v) = header::HeaderValue::from_str(&policy) {
            headers.insert(header::CACHE_CONTROL, v);
        }
        headers.append(header::VARY, header::HeaderValue::from_static("User-Agent"));
    }
    res
}

/// Renders `route` for this request: personalised by the shopper's actor, or — for a first
/// visit without a session — the store's generic page from the node's shared cache.
async fn serve_page(node: web::Data<Node>, req: HttpRequest, route: Route) -> Result<HttpResponse, ShopError> {
    let mut res = render_page(node.clone(), req.clone(), route).await?;
    // The policy names the inline styles and scripts of this store's pages (see `headers`).
    if let Ok(store) = resolve_store(&node, &req) {
        if let Ok(snap) = node.clone().into_inner().snapshot(&store).await {
            super::headers::set_page_policy(&mut res, &snap.chrome);
        }
    }
    Ok(res)
}

async fn render_page(node: web::Data<Node>, req: HttpRequest, route: Route) -> Result<HttpResponse, ShopError> {
    let ctx = context(&node, &req)?;
    let session = session(&ctx, &req, false).await?;
    let sid = session.sid().clone();
    if req.method() == actix_web::http::Method::GET {
        super::stats::page_view(&ctx.node, &ctx.store, &sid, session.is_new, &req);
    }
    let page_req = page_request(&req, route.clone());

    let search_results = match &route {
        Route::Search(q) => {
            refuse_past_render_share(&ctx)?;
            Some(search_ids(&ctx, q).await?)
        }
        _ => None,
    };

    if session.is_new {
        let mut res = serve_anonymous(&ctx, &req, page_req, search_results, session.cookie(&req)).await?;
        if let (Route::Product(handle), true) = (&route, session.set_cookie) {
            // Recorded by this visitor's next request, if there is one (tenant::LANDING_COOKIE).
            let _ = res.add_cookie(&tenant::landing_cookie(&req, handle));
        }
        return Ok(res);
    }

    // The product this visitor landed on before it had a session: its view is recorded now.
    let landing_view = tenant::landing_of(&req);
    let has_landing_cookie = req.cookie(tenant::LANDING_COOKIE).is_some();
    if search_results.is_none() && landing_view.is_none() {
        if let Some(html) = cached_personal_page(&ctx, &sid, &page_req).await {
            return Ok(html_response(html, None, "personal"));
        }
    }
    // The anonymous page comes from the store's actor, which in a cluster may live elsewhere
    // (this request was routed to the shopper's owner).
    refuse_past_render_share(&ctx)?;
    let store_key = ActorKey::Store(ctx.store.clone());
    let anonymous_available = matches!(ctx.node.cluster.placement(&store_key), crate::cluster::Placement::Local);
    let msg = RenderForShopper { request: page_req.clone(), search_results: search_results.clone(), anonymous_available, landing_view };
    let render = tracing::info_span!("render", store = %ctx.store, by = "shopper");
    let page =
        tracing::Instrument::instrument(ctx.node.ask_shopper(&ctx.store, &sid, msg), render).await.map_err(|e| ctx.err(actor_error(e)))?;
    let mut res = match page.map_err(|e| ctx.err(e))? {
        ShopperPage::Personal(page) => html_response(page.html, None, "personal"),
        ShopperPage::SameAsAnonymous => serve_anonymous(&ctx, &req, page_req, search_results, None).await?,
    };
    if has_landing_cookie {
        let _ = res.add_cookie(&tenant::clear_landing_cookie(&req));
    }
    Ok(res)
}

/// The shopper's page from the node's personal cache, without a message to its actor: only
/// while the actor is live here and has published the state version the page was rendered
/// for (see `actors::shopper::pulse`). Anything else goes through the actor.
async fn cached_personal_page(ctx: &Ctx, sid: &SessionId, page_req: &render::PageRequest) -> Option<Bytes> {
    if matches!(page_req.route, Route::Order(_)) {
        return None;
    }
    let key = ActorKey::Shopper(ctx.store.clone(), sid.clone());
    let pulse = ctx.node.shopper_pulse(&key)?;
    let state_version = pulse.state_version()?;
    let snap = ctx.node.snapshot(&ctx.store).await.ok()?;
    let html = ctx.node.personal_pages.get(&PersonalPages::key(&key, &page_req.cache_key()), snap.version, state_version)?;
    pulse.record_hit();
    Some(html)
}

/// The store's page for a visitor with nothing personal to show (a first visit, or a session
/// with empty state): from the node's shared cache, else rendered by the store actor.
async fn serve_anonymous(
    ctx: &Ctx,
    req: &HttpRequest,
    page_req: render::PageRequest,
    search_results: Option<Vec<ProductId>>,
    new_session: Option<actix_web::cookie::Cookie<'static>>,
) -> Result<HttpResponse, ShopError> {
    let cacheable = search_results.is_none();
    let snap = ctx.node.snapshot(&ctx.store).await.map_err(|e| ctx.err(actor_error(e)))?;
    let key = AnonymousPages::key(&ctx.store, snap.version, &page_req.cache_key());
    if cacheable {
        if let Some(html) = ctx.node.anonymous_pages.get(&key) {
            return Ok(anonymous_response(ctx, req, html, new_session, "anonymous-hit", snap.version));
        }
        if let Some(html) = ctx.node.anonymous_pages.get_failed(&key) {
            return Ok(anonymous_response(ctx, req, html, new_session, "failed-hit", snap.version));
        }
    }
    refuse_past_render_share(ctx)?;
    let msg = RenderForStore { request: page_req.clone(), preview_drafts: false, search_results };
    let render = tracing::info_span!("render", store = %ctx.store, by = "store");
    let page = tracing::Instrument::instrument(ctx.node.ask_store(&ctx.store, msg), render).await.map_err(|e| ctx.err(actor_error(e)))?;
    let page = page.map_err(|e| ctx.err(render_error(e)))?;
    if cacheable && page.failed_blocks == 0 {
        let key = AnonymousPages::key(&ctx.store, page.store_version, &page_req.cache_key());
        ctx.node.anonymous_pages.insert(key, page.html.clone());
    } else if cacheable && page.hit_limit {
        let key = AnonymousPages::key(&ctx.store, page.store_version, &page_req.cache_key());
        ctx.node.anonymous_pages.insert_failed(key, page.html.clone());
    }
    Ok(anonymous_response(ctx, req, page.html, new_session, "anonymous-miss", page.store_version))
}

/// Answers 503 `render_capacity` at once when the store's render gate would refuse its next
/// render (`render::gate`): before the search query and the hop to an actor, so that a store
/// past its share costs the node one cheap refusal per request, not a query and a render
/// attempt. Visitors without a session got the store's cached anonymous page before this.
fn refuse_past_render_share(ctx: &Ctx) -> Result<(), ShopError> {
    ctx.node.renderer.gates.check(&ctx.store).map_err(|refused| {
        crate::metrics::incr("vitrina_render_refused_total", &[("bound", refused.bound)]);
        ctx.err(render_error(render::RenderError::Capacity { retry_after_secs: refused.retry_after_secs, bound: refused.bound }))
    })
}

async fn search_ids(ctx: &Ctx, query: &str) -> Result<Vec<ProductId>, ShopError> {
    ctx.node.search(&ctx.store, query, 48).await.map_err(|e| ctx.err(e))
}

fn slug(ctx_html: bool, raw: &str) -> Result<Slug, ShopError> {
    Slug::parse(raw).map_err(|e| ShopError::new(e.into(), ctx_html))
}

pub async fn home(node: web::Data<Node>, req: HttpRequest) -> Result<HttpResponse, ShopError> {
    serve_page(node, req, Route::Home).await
}

pub async fn page(node: web::Data<Node>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, ShopError> {
    let route = Route::Page(slug(wants_html(&req), &path)?);
    serve_page(node, req, route).await
}

pub async fn product(node: web::Data<Node>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, ShopError> {
    let route = Route::Product(slug(wants_html(&req), &path)?);
    serve_page(node, req, route).await
}

pub async fn post(node: web::Data<Node>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, ShopError> {
    let route = Route::Post(slug(wants_html(&req), &path)?);
    serve_page(node, req, route).await
}

pub async fn blog(node: web::Data<Node>, req: HttpRequest) -> Result<HttpResponse, ShopError> {
    serve_page(node, req, Route::Blog).await
}

#[derive(Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

pub async fn search(node: web::Data<Node>, req: HttpRequest, query: web::Query<SearchQuery>) -> Result<HttpResponse, ShopError> {
    let q: String = query.into_inner().q.chars().take(200).collect();
    if wants_html(&req) {
        return serve_page(node, req, Route::Search(q)).await;
    }
    let ctx = context(&node, &req)?;
    let ids = search_ids(&ctx, &q).await?;
    let snap = ctx.node.snapshot(&ctx.store).await.map_err(|e| ctx.err(actor_error(e)))?;
    let results: Vec<_> = ids.iter().filter_map(|id| snap.product(id)).map(|p| product_json(p, &snap.settings)).collect();
    Ok(HttpResponse::Ok().json(json!({"query": q, "results": results})))
}

pub async fn cart(node: web::Data<Node>, req: HttpRequest) -> Result<HttpResponse, ShopError> {
    if wants_html(&req) {
        return serve_page(node, req, Route::Cart).await;
    }
    let ctx = context(&node, &req)?;
    let session = session(&ctx, &req, false).await?;
    if session.is_new {
        // No session yet: the cart is empty; no actor (and no file) is created just to say so.
        let snap = ctx.node.snapshot(&ctx.store).await.map_err(|e| ctx.err(actor_error(e)))?;
        let currency = &snap.settings.currency;
        let empty = json!({"items": [], "count": 0, "subtotal": currency.format_plain(0), "subtotalMinor": 0, "currency": currency.code()});
        let mut res = HttpResponse::Ok();
        res.insert_header((header::CACHE_CONTROL, "private, no-store"));
        if let Some(cookie) = session.cookie(&req) {
            res.cookie(cookie);
        }
        return Ok(res.json(json!({"cart": empty})));
    }
    let cart = ctx.node.ask_shopper(&ctx.store, session.sid(), GetCart).await.map_err(|e| ctx.err(actor_error(e)))?;
    let cart = cart.map_err(|e| ctx.err(e))?;
    let mut res = HttpResponse::Ok();
    res.insert_header((header::CACHE_CONTROL, "private, no-store"));
    Ok(res.json(CartBody { cart: &cart }))
}

/// `{"cart": ...}` around a cart the actor serialised.
#[derive(serde::Serialize)]
struct CartBody<'a> {
    cart: &'a serde_json::value::RawValue,
}

fn product_id(ctx: &Ctx, raw: Option<&str>) -> Result<ProductId, ShopError> {
    let raw = raw.ok_or_else(|| ctx.err(ApiError::bad_request("invalid_request", "productId is required")))?;
    ProductId::parse(raw).map_err(|e| ctx.err(e))
}

/// Sends a cart change and answers as the client expects: JSON, or a redirect for a form.
async fn change_cart(ctx: Ctx, req: &HttpRequest, kind: BodyKind, op: CartOp, status: StatusCode) -> Result<HttpResponse, ShopError> {
    let session = session(&ctx, req, true).await?;
    let result = ctx.node.ask_shopper(&ctx.store, session.sid(), ChangeCart(op)).await.map_err(|e| ctx.err(actor_error(e)))?;
    let cart = result.map_err(|e| ctx.err(e))?;
    let mut res = if kind == BodyKind::Form {
        let mut b = HttpResponse::SeeOther();
        b.insert_header((header::LOCATION, "/cart"));
        b
    } else {
        HttpResponseBuilder::new(status)
    };
    res.insert_header((header::CACHE_CONTROL, "private, no-store"));
    if let Some(cookie) = session.cookie(req) {
        res.cookie(cookie);
    }
    Ok(if kind == BodyKind::Form { res.finish() } else { res.json(CartBody { cart: &cart }) })
}

/// `POST /cart/items` — `{"productId", "quantity"}` as JSON or `product_id`, `quantity` as a form.
pub async fn add_item(node: web::Data<Node>, req: HttpRequest, bytes: Bytes) -> Result<HttpResponse, ShopError> {
    let ctx = context(&node, &req)?;
    let (kind, map) = body::object(&req, &bytes).map_err(|e| ctx.err(e))?;
    let product = product_id(&ctx, body::string(body::field(&map, &["productId", "product_id", "id"])))?;
    let quantity = body::integer(body::field(&map, &["quantity", "qty"]), "quantity").map_err(|e| ctx.err(e))?.unwrap_or(1);
    change_cart(ctx, &req, kind, CartOp::Add { product, quantity }, StatusCode::CREATED).await
}

/// `PATCH /cart/items/{product}` — `{"quantity": n}`; 0 removes the line.
pub async fn set_item(node: web::Data<Node>, req: HttpRequest, path: web::Path<String>, bytes: Bytes) -> Result<HttpResponse, ShopError> {
    let ctx = context(&node, &req)?;
    let product = product_id(&ctx, Some(&path))?;
    let (kind, map) = body::json_object(&req, &bytes).map_err(|e| ctx.err(e))?;
    let quantity = body::integer(body::field(&map, &["quantity", "qty"]), "quantity")
        .map_err(|e| ctx.err(e))?
        .ok_or_else(|| ctx.err(ApiError::bad_request("invalid_request", "quantity is required")))?;
    change_cart(ctx, &req, kind, CartOp::Set { product, quantity }, StatusCode::OK).await
}

/// `DELETE /cart/items/{product}`.
pub async fn remove_item(node: web::Data<Node>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, ShopError> {
    let ctx = context(&node, &req)?;
    let product = product_id(&ctx, Some(&path))?;
    let kind = if ctx.html { BodyKind::Form } else { BodyKind::Json };
    change_cart(ctx, &req, kind, CartOp::Remove { product }, StatusCode::OK).await
}

/// `POST /cart/items/{product}` — the form-friendly way to set a quantity or remove a line
/// (`_method=DELETE`), since HTML forms cannot send PATCH or DELETE.
pub async fn form_item(node: web::Data<Node>, req: HttpRequest, path: web::Path<String>, bytes: Bytes) -> Result<HttpResponse, ShopError> {
    let ctx = context(&node, &req)?;
    let product = product_id(&ctx, Some(&path))?;
    let (kind, map) = body::object(&req, &bytes).map_err(|e| ctx.err(e))?;
    let method = body::string(body::field(&map, &["_method"])).unwrap_or("PATCH").to_ascii_uppercase();
    let op = if method == "DELETE" {
        CartOp::Remove { product }
    } else {
        let quantity = body::integer(body::field(&map, &["quantity", "qty"]), "quantity")
            .map_err(|e| ctx.err(e))?
            .ok_or_else(|| ctx.err(ApiError::bad_request("invalid_request", "quantity is required")))?;
        CartOp::Set { product, quantity }
    };
    change_cart(ctx, &req, kind, op, StatusCode::OK).await
}

/// `PUT /preferences` — `{"region": "EU", "locale": "de-DE"}`; region also goes in a cookie
/// because it changes the theme of pages rendered before the actor is asked.
pub async fn preferences(node: web::Data<Node>, req: HttpRequest, bytes: Bytes) -> Result<HttpResponse, ShopError> {
    let ctx = context(&node, &req)?;
    let (_, map) = body::json_object(&req, &bytes).map_err(|e| ctx.err(e))?;
    let session = session(&ctx, &req, true).await?;
    let mut prefs = std::collections::BTreeMap::new();
    for (k, v) in map {
        let allowed = ["region", "locale"].contains(&k.as_str());
        let value = v.as_str().unwrap_or_default().to_string();
        let valid = (1..=35).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !allowed || !valid {
            return Err(ctx.err(ApiError::bad_request(
                "invalid_preference",
                format!("unknown preference {k:?} or invalid value; allowed: region, locale"),
            )));
        }
        prefs.insert(k, value);
    }
    let region = prefs.get("region").cloned();
    let out = ctx.node.ask_shopper(&ctx.store, session.sid(), SetPreferences(prefs)).await.map_err(|e| ctx.err(actor_error(e)))?;
    let out = out.map_err(|e| ctx.err(e))?;
    let mut res = HttpResponse::Ok();
    if let Some(cookie) = session.cookie(&req) {
        res.cookie(cookie);
    }
    if let Some(region) = region {
        res.cookie(tenant::site_cookie(&req, tenant::REGION_COOKIE, region));
    }
    Ok(res.json(out))
}

/// `POST /consent` — `analytics=declined|granted`, from the footer form.
pub async fn consent(req: HttpRequest, bytes: Bytes) -> Result<HttpResponse, ShopError> {
    let html = wants_html(&req);
    let (kind, map) = body::object(&req, &bytes).map_err(|api| ShopError::new(api, html))?;
    let value = match body::string(body::field(&map, &["analytics"])) {
        Some("declined") => "declined",
        Some("granted") => "granted",
        _ => return Err(ShopError::new(ApiError::bad_request("invalid_request", "analytics must be declined or granted"), html)),
    };
    let mut cookie = tenant::site_cookie(&req, tenant::CONSENT_COOKIE, value.to_string());
    cookie.set_max_age(actix_web::cookie::time::Duration::days(365));
    Ok(if kind == BodyKind::Form {
        HttpResponse::SeeOther().insert_header((header::LOCATION, "/")).cookie(cookie).finish()
    } else {
        HttpResponse::Ok().cookie(cookie).json(json!({"analytics": value}))
    })
}

/// `POST /checkout` — JSON or form; `Idempotency-Key` header or `idempotencyKey` /
/// `idempotency_key` field (a repeat with the same key returns the same order, 200 instead of
/// 201). The cart becomes an order and is emptied in one transaction; the order is then
/// delivered to the store's commerce backend in the background (`GET /orders/{id}`).
pub async fn checkout(node: web::Data<Node>, req: HttpRequest, bytes: Bytes) -> Result<HttpResponse, ShopError> {
    let ctx = context(&node, &req)?;
    let (kind, map) = body::object(&req, &bytes).map_err(|e| ctx.err(e))?;
    let raw_key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| body::string(body::field(&map, &["idempotencyKey", "idempotency_key"])).map(str::to_string));
    let key = match raw_key {
        Some(raw) => IdempotencyKey::parse(&raw)
            .ok_or_else(|| ctx.err(ApiError::bad_request("invalid_request", "Idempotency-Key must be 1-128 printable ASCII characters")))?,
        None => IdempotencyKey::generate(),
    };
    let session = session(&ctx, &req, true).await?;
    if session.is_new {
        return Err(ctx.err(ApiError::conflict("cart_empty", "the cart is empty")));
    }
    let sid = session.sid();
    let placed = ctx.node.ask_shopper(&ctx.store, sid, Checkout(key)).await.map_err(|e| ctx.err(actor_error(e)))?;
    let (order, created) = placed.map_err(|e| match e {
        ShopperError::Invalid(m) => ctx.err(ApiError::conflict("cart_empty", m)),
        other => ctx.err(other),
    })?;
    // A new order moves the shopper to a new session token: whoever held (or planted) the one
    // it was placed under cannot read it. The order stands even if rotation fails.
    let rotated = if created {
        match ctx.node.ask_shopper(&ctx.store, sid, RotateSession).await {
            Ok(Ok(generation)) => Some(tenant::session_cookie(&req, &session.token.at(generation))),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "session rotation after checkout failed");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "session rotation after checkout failed");
                None
            }
        }
    } else {
        None
    };
    let mut res = if kind == BodyKind::Form {
        let location = format!("/orders/{}", order["id"].as_str().unwrap_or(""));
        let mut b = HttpResponse::SeeOther();
        b.insert_header((header::LOCATION, location));
        b
    } else {
        HttpResponseBuilder::new(if created { StatusCode::CREATED } else { StatusCode::OK })
    };
    res.insert_header((header::CACHE_CONTROL, "private, no-store"));
    if let Some(cookie) = rotated {
        res.cookie(cookie);
    }
    Ok(if kind == BodyKind::Form { res.finish() } else { res.json(json!({"order": order, "created": created})) })
}

/// `GET /orders/{id}` — an order of this session, with its delivery status.
pub async fn order(node: web::Data<Node>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, ShopError> {
    let ctx = context(&node, &req)?;
    let not_found = || ctx.err(ApiError::not_found("no such order in this session"));
    let id = path.into_inner();
    if !(1..=64).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(not_found());
    }
    if ctx.html && session_of(&req).is_some() {
        return serve_page(node, req, Route::Order(id)).await;
    }
    let session = session(&ctx, &req, false).await?;
    if session.is_new {
        return Err(not_found());
    }
    let found = ctx.node.ask_shopper(&ctx.store, session.sid(), GetOrder(id)).await.map_err(|e| ctx.err(actor_error(e)))?;
    let order = found.map_err(|e| ctx.err(e))?.ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "private, no-store")).json(json!({"order": order})))
}
