//! The merchant console's page and assets at `/admin/` on every store host. The script and
//! stylesheet are built from `console/` (with CodeMirror, by `console/build.mjs`) into
//! `console/dist/`, committed, and embedded here at compile time: `cargo build` needs no Node
//! and nothing is loaded from elsewhere. Assets are served under names carrying their content
//! hash, cached for a year; the page itself is never cached and runs no inline script.

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

use super::tenant;
use crate::error::ApiError;
use crate::node::Node;

const SCRIPT: &[u8] = include_bytes!("../../console/dist/console.js");
const STYLES: &[u8] = include_bytes!("../../console/dist/console.css");

struct Asset {
    name: String,
    etag: String,
    bytes: &'static [u8],
    content_type: &'static str,
}

fn hashed(stem: &str, ext: &str, bytes: &'static [u8], content_type: &'static str) -> Asset {
    let digest = hex::encode(Sha256::digest(bytes));
    Asset { name: format!("{stem}.{}.{ext}", &digest[..16]), etag: format!("\"{}\"", &digest[..32]), bytes, content_type }
}

fn assets() -> &'static [Asset; 2] {
    static ASSETS: OnceLock<[Asset; 2]> = OnceLock::new();
    ASSETS.get_or_init(|| {
        [hashed("console", "js", SCRIPT, "text/javascript; charset=utf-8"), hashed("console", "css", STYLES, "text/css; charset=utf-8")]
    })
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(super::at("/admin", [super::get().to(redirect)]))
        .service(super::at("/admin/", [super::get().to(page)]))
        .service(super::at("/admin/assets/{file}", [super::get().to(asset)]));
}

async fn redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((header::LOCATION, "/admin/")).finish()
}

/// `GET /admin/` — the console's shell; the script logs in and draws every screen.
async fn page(node: web::Data<Node>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let store = tenant::resolve_store(&node, &req)?;
    // A fresh nonce per response for the stylesheets CodeMirror inserts at run time.
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let [script, styles] = assets();
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{store} · Vitrina console</title>\
         <link rel=\"stylesheet\" href=\"/admin/assets/{css}\">\
         <script type=\"module\" src=\"/admin/assets/{js}\"></script></head>\
         <body data-store=\"{store}\" data-style-nonce=\"{nonce}\"><noscript>The console needs JavaScript.</noscript>\
         <div id=\"app\"></div></body></html>\n",
        css = styles.name,
        js = script.name,
    );
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; style-src-attr 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'; frame-src 'self'; form-action 'none'; base-uri 'none'; \
         object-src 'none'; frame-ancestors 'none'"
    );
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_SECURITY_POLICY, policy))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .body(html))
}

/// `GET /admin/assets/{name}` — an embedded asset by its hashed name.
async fn asset(req: HttpRequest, file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let Some(asset) = assets().iter().find(|a| a.name == *file) else {
        return Err(ApiError::not_found(format!("no console asset {:?}", file.as_str())));
    };
    let fresh = req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains(&asset.etag));
    let mut res = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    res.insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable")).insert_header((header::ETAG, asset.etag.clone()));
    if fresh {
        return Ok(res.finish());
    }
    Ok(res.content_type(asset.content_type).body(asset.bytes))
}
