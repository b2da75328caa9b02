//! Rate limits at the edge (`[limits]` in the configuration), with `governor`'s keyed GCRA
//! limiters: new sessions per client IP; shopper writes per IP and per session; admin requests
//! per token (or console session); webhook deliveries per source; failed authentications per IP, with a lockout that
//! doubles with every further failure (a locked IP is refused even the right token); and failed
//! staff logins per store and name from all IPs together, with a lockout of their own (the
//! name's right password is refused while it lasts; other names are not affected). Console
//! logins are answered by the store's owner (`forward.rs`), so the per-name count is the
//! owner's: one count per store across the cluster, started over when the store moves.
//!
//! A refusal is 429 `rate_limited` with `Retry-After`, counted in
//! `vitrina_rate_limited_total{scope}`. Limits apply where a request enters the cluster: a
//! request another node forwarded was counted there. Keyed state is swept every 10 s (keys
//! whose limiter is back to full are dropped); a limiter holding more than
//! `max_tracked_keys` clients after a sweep starts over empty (failing open, never closed).
//! IPv6 clients are keyed by their /64.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use parking_lot::{Mutex, RwLock};

use super::proxy;
use super::session::SessionToken;
use super::tenant::SESSION_COOKIE;
use crate::config::LimitSettings;
use crate::error::ApiError;
use crate::ids::StoreId;

type Keyed<K> = DefaultKeyedRateLimiter<K>;

/// A keyed limiter that can be started over when it tracks too many clients.
struct Limiter<K: std::hash::Hash + Eq + Clone> {
    quota: Quota,
    inner: RwLock<Arc<Keyed<K>>>,
}

impl<K: std::hash::Hash + Eq + Clone> Limiter<K> {
    fn new(quota: Quota) -> Self {
        Limiter { quota, inner: RwLock::new(Arc::new(Keyed::keyed(quota))) }
    }

    /// `Err(wait)` when `key` is over its rate.
    fn check(&self, key: &K) -> Result<(), Duration> {
        let limiter = self.inner.read().clone();
        limiter.check_key(key).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    fn sweep(&self, max_keys: usize) {
        let limiter = self.inner.read().clone();
        limiter.retain_recent();
        limiter.shrink_to_fit();
        if limiter.len() > max_keys {
            *self.inner.write() = Arc::new(Keyed::keyed(self.quota));
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Failed authentications per key: past `allowed`, a lockout that doubles with every further
/// failure, from `base_secs` up to `max_secs`; a key's count starts over `max_secs` after its
/// last failure.
struct Lockouts<K: std::hash::Hash + Eq + Clone> {
    allowed: u32,
    base_secs: u64,
    max_secs: u64,
    failures: Mutex<HashMap<K, Failures>>,
}

impl<K: std::hash::Hash + Eq + Clone> Lockouts<K> {
    fn new(allowed: u32, base_secs: u64, max_secs: u64) -> Self {
        Lockouts { allowed: allowed.max(1), base_secs: base_secs.max(1), max_secs: max_secs.max(1), failures: Mutex::new(HashMap::new()) }
    }

    /// How long `key` is still locked out, if it is.
    fn locked(&self, key: &K) -> Option<Duration> {
        let now = Instant::now();
        let until = self.failures.lock().get(key)?.locked_until?;
        (until > now).then(|| until - now)
    }

    /// A failed authentication of `key`; at most `max_keys` keys are tracked (when full, the
    /// counts of keys not locked out are forgotten).
    fn failed(&self, key: K, max_keys: usize) {
        let now = Instant::now();
        let mut failures = self.failures.lock();
        if failures.len() >= max_keys.max(1) && !failures.contains_key(&key) {
            failures.retain(|_, f| f.locked_until.is_some_and(|t| t > now));
        }
        let f = failures.entry(key).or_insert(Failures { count: 0, last: now, locked_until: None });
        if now.duration_since(f.last) > Duration::from_secs(self.max_secs) {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        if f.count >= self.allowed {
            let doublings = (f.count - self.allowed).min(30);
            let secs = self.base_secs.saturating_mul(1u64 << doublings).min(self.max_secs);
            f.locked_until = Some(now + Duration::from_secs(secs));
        }
    }

    fn sweep(&self) {
        let forget_after = Duration::from_secs(self.max_secs);
        let now = Instant::now();
        self.failures.lock().retain(|_, f| f.locked_until.is_some_and(|t| t > now) || now.duration_since(f.last) < forget_after);
    }
}

pub struct Limits {
    settings: LimitSettings,
    sessions: Limiter<IpAddr>,
    writes_per_ip: Limiter<IpAddr>,
    writes_per_session: Limiter<String>,
    admin_per_token: Limiter<[u8; 16]>,
    webhooks: Limiter<(IpAddr, String)>,
    failures: Lockouts<IpAddr>,
    /// Failed staff logins by (store, name), from any IP.
    name_failures: Lockouts<(String, String)>,
}

static LIMITS: OnceLock<Limits> = OnceLock::new();

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

fn quota_per_sec(rate: u32, burst: u32) -> Quota {
    Quota::per_second(nz(rate)).allow_burst(nz(burst))
}

/// Sets up the limiters from `[limits]` and starts their sweeper (on the current actix system).
pub fn init(settings: &LimitSettings) {
    let limits = Limits {
        settings: settings.clone(),
        sessions: Limiter::new(Quota::per_minute(nz(settings.sessions_per_minute_per_ip)).allow_burst(nz(settings.sessions_burst_per_ip))),
        writes_per_ip: Limiter::new(quota_per_sec(settings.writes_per_sec_per_ip, settings.writes_burst_per_ip)),
        writes_per_session: Limiter::new(quota_per_sec(settings.writes_per_sec_per_session, settings.writes_burst_per_session)),
        admin_per_token: Limiter::new(quota_per_sec(settings.admin_per_sec_per_token, settings.admin_burst_per_token)),
        webhooks: Limiter::new(quota_per_sec(settings.webhooks_per_sec_per_source, settings.webhooks_burst_per_source)),
        failures: ip_lockouts(settings),
        name_failures: name_lockouts(settings),
    };
    if LIMITS.set(limits).is_ok() && settings.enabled {
        actix_web::rt::spawn(async {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                if let Some(l) = LIMITS.get() {
                    l.sweep();
                }
            }
        });
    }
}

fn ip_lockouts(s: &LimitSettings) -> Lockouts<IpAddr> {
    Lockouts::new(s.auth_failures_before_lockout, s.lockout_base_secs, s.lockout_max_secs)
}

fn name_lockouts(s: &LimitSettings) -> Lockouts<(String, String)> {
    Lockouts::new(s.login_failures_per_name_before_lockout, s.name_lockout_base_secs, s.name_lockout_max_secs)
}

fn limits() -> Option<&'static Limits> {
    LIMITS.get().filter(|l| l.settings.enabled)
}

/// IPv6 clients usually hold a whole /64: key them by it.
fn client_key(ip: Option<IpAddr>) -> IpAddr {
    match ip {
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        Some(v4) => v4,
        None => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// The 429 answer for `scope`.
pub fn refusal(scope: &'static str, wait: Duration) -> ApiError {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    crate::metrics::incr("vitrina_rate_limited_total", &[("scope", scope)]);
    ApiError::rate_limited(scope, secs)
}

impl Limits {
    fn sweep(&self) {
        let max = self.settings.max_tracked_keys.max(1);
        self.sessions.sweep(max);
        self.writes_per_ip.sweep(max);
        self.writes_per_session.sweep(max);
        self.admin_per_token.sweep(max);
        self.webhooks.sweep(max);
        self.failures.sweep();
        self.name_failures.sweep();
    }

    /// How long `ip` is still locked out, if it is.
    fn locked(&self, ip: IpAddr) -> Option<Duration> {
        self.failures.locked(&ip)
    }

    /// A failed authentication from `ip`: past the allowance, a lockout doubling each time.
    fn failed(&self, ip: IpAddr) {
        self.failures.failed(ip, self.settings.max_tracked_keys);
    }
}

fn name_key(store: &StoreId, name: &str) -> (String, String) {
    (store.as_str().to_string(), name.to_string())
}

/// Refuses (429, `Retry-After`) a staff login or password check for `name` of `store` while
/// that name is locked out by failures from any IP.
pub fn check_login_name(store: &StoreId, name: &str) -> Result<(), ApiError> {
    let Some(l) = limits() else { return Ok(()) };
    match l.name_failures.locked(&name_key(store, name)) {
        Some(wait) => Err(refusal("login_name", wait)),
        None => Ok(()),
    }
}

/// A wrong password for `name` of `store`, from whichever IP.
pub fn login_name_failed(store: &StoreId, name: &str) {
    if let Some(l) = limits() {
        l.name_failures.failed(name_key(store, name), l.settings.max_tracked_keys);
    }
}

/// Marks `req` as a failed authentication answered with something other than 401 (a wrong
/// current password is 403: the session itself is fine). The node the request entered the
/// cluster through counts it towards the client IP's lockout, as it counts a 401: that node
/// checks the lockout, and may not be the store's owner that answered.
pub fn auth_failed(req: &HttpRequest) {
    req.extensions_mut().insert(AuthFailed);
}

/// [`auth_failed`]'s mark on a request.
#[derive(Clone, Copy)]
struct AuthFailed;

/// How the owner tells the entry node of a hop that the answer is a failed authentication;
/// never sent to a client.
const AUTH_FAILED_HEADER: &str = "x-vitrina-auth-failed";

/// Whether `res` answers a failed authentication (and drops the owner's mark, if it has one).
fn failed_authentication(res: &mut ServiceResponse<BoxBody>) -> bool {
    let marked = res.headers_mut().remove(AUTH_FAILED_HEADER).next().is_some();
    res.status() == StatusCode::UNAUTHORIZED || marked || res.request().extensions().get::<AuthFailed>().is_some()
}

/// A new session for the client of `req`, if its IP may have one now.
pub fn allow_new_session(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(l) = limits() else { return Ok(()) };
    l.sessions.check(&client_key(proxy::client_ip(req))).map_err(|wait| refusal("session", wait))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Admin API and the operator's endpoints: bearer tokens, failures counted.
    Authenticated {
        admin: bool,
    },
    Webhook,
    ShopWrite,
    Other,
}

fn classify(method: &Method, path: &str) -> Class {
    if path.starts_with("/admin/") {
        return Class::Authenticated { admin: true };
    }
    if path == "/metrics" || path == "/cluster/status" {
        return Class::Authenticated { admin: false };
    }
    if path.starts_with("/webhooks/") {
        return Class::Webhook;
    }
    if path.starts_with("/internal/") || matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Class::Other;
    }
    Class::ShopWrite
}

/// Who an admin request is counted against: its bearer token, else its console session (a
/// forged or expired cookie is refused with 401, which counts towards the IP's lockout).
fn bearer_key(req: &ServiceRequest) -> Option<[u8; 16]> {
    let token = match req.headers().get(header::AUTHORIZATION) {
        Some(value) => {
            let value = value.to_str().ok()?;
            value.get(7..).filter(|_| value.len() > 7 && value[..7].eq_ignore_ascii_case("bearer "))?.trim().to_string()
        }
        None => req.request().cookie(super::console_session::CONSOLE_COOKIE)?.value().to_string(),
    };
    let digest = <sha2::Sha256 as sha2::Digest>::digest(token.as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    Some(key)
}

/// Which store a webhook names (header, else Host): part of its source.
fn webhook_target(req: &ServiceRequest) -> String {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let raw = header("vitrina-store").or_else(|| header("x-shopify-shop-domain")).or_else(|| header("host")).unwrap_or("");
    raw.chars().take(128).collect::<String>().to_ascii_lowercase()
}

fn refuse(req: ServiceRequest, err: ApiError) -> ServiceResponse<BoxBody> {
    let (http_req, _) = req.into_parts();
    ServiceResponse::new(http_req, actix_web::ResponseError::error_response(&err))
}

/// The middleware: refuses over-limit requests before anything else runs, and counts failed
/// authentications on the way out.
pub async fn limit_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(l) = limits() else {
        let mut res = next.call(req).await?.map_into_boxed_body();
        res.headers_mut().remove(AUTH_FAILED_HEADER);
        return Ok(res);
    };
    // Counted by the node it entered through (the routing middleware verifies the signature).
    if req.headers().contains_key(crate::cluster::auth::HOP_HEADER) {
        let mut res = next.call(req).await?.map_into_boxed_body();
        if res.request().extensions().get::<AuthFailed>().is_some() {
            res.headers_mut().insert(header::HeaderName::from_static(AUTH_FAILED_HEADER), header::HeaderValue::from_static("1"));
        }
        return Ok(res);
    }
    let ip = client_key(proxy::client_ip(req.request()));
    match classify(req.method(), req.path()) {
        Class::Authenticated { admin } => {
            if let Some(wait) = l.locked(ip) {
                return Ok(refuse(req, refusal("auth", wait)));
            }
            if admin {
                if let Some(token) = bearer_key(&req) {
                    if let Err(wait) = l.admin_per_token.check(&token) {
                        return Ok(refuse(req, refusal("admin", wait)));
                    }
                }
            }
            let mut res = next.call(req).await?.map_into_boxed_body();
            if failed_authentication(&mut res) {
                l.failed(ip);
            }
            Ok(res)
        }
        Class::Webhook => {
            if let Err(wait) = l.webhooks.check(&(ip, webhook_target(&req))) {
                return Ok(refuse(req, refusal("webhook", wait)));
            }
            Ok(next.call(req).await?.map_into_boxed_body())
        }
        Class::ShopWrite => {
            if let Err(wait) = l.writes_per_ip.check(&ip) {
                return Ok(refuse(req, refusal("write_ip", wait)));
            }
            if let Some(token) = req.request().cookie(SESSION_COOKIE).and_then(|c| SessionToken::decode(c.value())) {
                if let Err(wait) = l.writes_per_session.check(&token.sid.as_str().to_string()) {
                    return Ok(refuse(req, refusal("write_session", wait)));
                }
            }
            Ok(next.call(req).await?.map_into_boxed_body())
        }
        Class::Other => Ok(next.call(req).await?.map_into_boxed_body()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(failures: u32) -> Limits {
        let settings = LimitSettings {
            auth_failures_before_lockout: failures,
            lockout_base_secs: 1,
            lockout_max_secs: 8,
            login_failures_per_name_before_lockout: failures,
            ..Default::default()
        };
        Limits {
            sessions: Limiter::new(quota_per_sec(1, 1)),
            writes_per_ip: Limiter::new(quota_per_sec(1, 1)),
            writes_per_session: Limiter::new(quota_per_sec(1, 1)),
            admin_per_token: Limiter::new(quota_per_sec(1, 1)),
            webhooks: Limiter::new(quota_per_sec(1, 1)),
            failures: ip_lockouts(&settings),
            name_failures: name_lockouts(&settings),
            settings,
        }
    }

    #[test]
    fn lockouts_start_after_the_allowance_and_double() {
        let l = limits(3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        l.failed(ip);
        l.failed(ip);
        assert!(l.locked(ip).is_none());
        l.failed(ip);
        let first = l.locked(ip).expect("locked after 3");
        l.failed(ip);
        let second = l.locked(ip).expect("still locked");
        assert!(second > first, "{second:?} > {first:?}");
        for _ in 0..10 {
            l.failed(ip);
        }
        assert!(l.locked(ip).unwrap() <= Duration::from_secs(8), "capped");
        assert!(l.locked("192.0.2.2".parse().unwrap()).is_none(), "per IP");
    }

    #[test]
    fn name_lockouts_are_per_store_and_name() {
        let l = limits(3);
        let (shop, other) = (StoreId::parse("shop").unwrap(), StoreId::parse("other").unwrap());
        for _ in 0..2 {
            l.name_failures.failed(name_key(&shop, "alice"), 100);
        }
        assert!(l.name_failures.locked(&name_key(&shop, "alice")).is_none(), "below the allowance");
        l.name_failures.failed(name_key(&shop, "alice"), 100);
        assert!(l.name_failures.locked(&name_key(&shop, "alice")).is_some());
        assert!(l.name_failures.locked(&name_key(&shop, "bob")).is_none(), "another name");
        assert!(l.name_failures.locked(&name_key(&other, "alice")).is_none(), "another store");
    }

    #[test]
    fn a_keyed_limiter_refuses_past_its_burst_and_says_how_long() {
        let l = Limiter::new(quota_per_sec(1, 2));
        assert!(l.check(&1).is_ok() && l.check(&1).is_ok());
        let wait = l.check(&1).expect_err("third in a burst of 2");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(l.check(&2).is_ok(), "per key");
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let a = client_key(Some("2001:db8:1:2:3:4:5:6".parse().unwrap()));
        let b = client_key(Some("2001:db8:1:2:ffff::1".parse().unwrap()));
        assert_eq!(a, b);
    }
}
