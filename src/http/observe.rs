//! Request metrics at the edge: `vitrina_http_request_duration_seconds{route, method, status}`
//! (a histogram; `route` is the matched pattern, e.g. `/products/{handle}`, so its values are
//! bounded by the routes) and `vitrina_store_requests_total{store}`, the per-store usage count
//! with the store label bounded (`metrics::store_label`).

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::HttpMessage;

use crate::metrics;

pub async fn observe_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let res = next.call(req).await?.map_into_boxed_body();
    // Asked after routing: the router recorded which resource matched, so this walks to it
    // instead of matching the path against every route's pattern a second time.
    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".to_string());
    let status = res.status().as_u16().to_string();
    metrics::observe_seconds(
        "vitrina_http_request_duration_seconds",
        &[("route", &route), ("method", method), ("status", &status)],
        started.elapsed().as_secs_f64(),
    );
    if let Some(store) = res.request().extensions().get::<crate::ids::StoreId>() {
        metrics::incr("vitrina_store_requests_total", &[("store", &metrics::store_label(store.as_str()))]);
    }
    Ok(res)
}
