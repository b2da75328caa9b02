//! Security headers on every response: `X-Content-Type-Options: nosniff`,
//! `Referrer-Policy: strict-origin-when-cross-origin`, `X-Frame-Options: SAMEORIGIN` and a
//! Content-Security-Policy.
//!
//! A store's pages get a policy built from their snapshot (`render::chrome::Chrome`): scripts and
//! styles from the store's own origin, the inline shell script, stylesheet and analytics snippet
//! by hash (so a `<script>` in a merchant's block HTML does not run), the analytics origin only
//! for a store that opted into it, style attributes (blocks use them), images from anywhere.
//! Every other response (JSON, error pages, the admin API) gets a policy that allows nothing
//! but the error page's own stylesheet. Both forbid framing by other sites.

use std::sync::OnceLock;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::HttpResponse;

use crate::render;
use crate::render::chrome::{self, Chrome};

/// Where the analytics snippet loads its script from and sends its data to.
const ANALYTICS_SCRIPTS: &str = "https://www.clarity.ms https://*.clarity.ms";
const ANALYTICS_CONNECT: &str = "https://*.clarity.ms";

/// The policy of a store's pages.
pub fn page_policy(chrome: &Chrome) -> &str {
    chrome.policy.get_or_init(|| {
        let (scripts, connect) = if chrome.analytics { (ANALYTICS_SCRIPTS, ANALYTICS_CONNECT) } else { ("", "") };
        format!(
            "default-src 'self'; script-src 'self' {script_hashes} {scripts}; style-src 'self' {style_hashes}; style-src-attr 'unsafe-inline'; \
             img-src 'self' data: https: http:; font-src 'self' data:; connect-src 'self' {connect}; form-action 'self'; base-uri 'none'; \
             object-src 'none'; frame-ancestors 'self'",
            script_hashes = chrome.script_hashes.join(" "),
            style_hashes = chrome.style_hashes.join(" "),
        )
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
    })
}

/// The policy of every response that is not a store page.
fn default_policy() -> &'static HeaderValue {
    static POLICY: OnceLock<HeaderValue> = OnceLock::new();
    POLICY.get_or_init(|| {
        let text = format!(
            "default-src 'none'; style-src {}; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'self'",
            chrome::csp_hash(render::ERROR_PAGE_CSS)
        );
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'; frame-ancestors 'self'"))
    })
}

/// Puts the page policy of `chrome` on a page response.
pub fn set_page_policy(res: &mut HttpResponse, chrome: &Chrome) {
    if let Ok(value) = HeaderValue::from_str(page_policy(chrome)) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, value);
    }
}

/// The middleware: fills in whatever security header a response does not already carry.
pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let mut res = next.call(req).await?.map_into_boxed_body();
    let headers = res.headers_mut();
    let defaults: [(HeaderName, fn() -> HeaderValue); 4] = [
        (header::X_CONTENT_TYPE_OPTIONS, || HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, || HeaderValue::from_static("strict-origin-when-cross-origin")),
        (header::X_FRAME_OPTIONS, || HeaderValue::from_static("SAMEORIGIN")),
        (header::CONTENT_SECURITY_POLICY, || default_policy().clone()),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(&name) {
            headers.insert(name, value());
        }
    }
    Ok(res)
}
