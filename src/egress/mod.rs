//! The one HTTP client for requests to merchant-configured URLs: catalog sync, order delivery,
//! custom-domain checks. It refuses what [`policy`] refuses, at every step a request can take:
//!
//! - the URL (scheme, credentials, port, IP literals in any spelling) before sending;
//! - every address a name resolves to, in the client's own resolver, so the address checked is
//!   the address connected to (a name cannot pass the check and then rebind to loopback);
//! - every redirect hop (same checks, at most `egress.max_redirects`);
//! - the answer: connect and total deadlines, and a body cap enforced while streaming.
//!
//! Callers show merchants only what [`EgressError`] displays ("refused by policy",
//! "unreachable", the status an upstream answered); the detail goes to the server log.

pub mod policy;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Method, RequestBuilder, StatusCode, Url};

use crate::config::EgressSettings;
pub use policy::{Policy, Refusal};

/// What a merchant may learn about a failed outbound request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("refused by policy")]
    Refused,
    #[error("unreachable")]
    Unreachable,
    #[error("response larger than {0} bytes")]
    TooLarge(u64),
    #[error("invalid URL")]
    InvalidUrl,
}

/// Resolves names with the system resolver (or `egress.resolve`) and refuses the whole name
/// when any of its addresses is refused.
struct CheckedResolver {
    policy: Arc<Policy>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
            let ips = resolve_checked(&policy, &host).await?;
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// The addresses of `host`, all of them allowed by `policy`.
async fn resolve_checked(policy: &Policy, host: &str) -> Result<Vec<IpAddr>, Box<dyn std::error::Error + Send + Sync>> {
    let ips: Vec<IpAddr> = match policy.overridden(host) {
        Some(ips) => ips.to_vec(),
        None => tokio::net::lookup_host((host, 0)).await?.map(|a| a.ip()).collect(),
    };
    for ip in &ips {
        policy.check_ip(*ip).map_err(|r| Refusal { reason: r.reason, target: format!("{host} -> {}", r.target) })?;
    }
    if ips.is_empty() {
        return Err(format!("{host} has no address").into());
    }
    Ok(ips)
}

pub struct Egress {
    client: reqwest::Client,
    policy: Arc<Policy>,
    max_bytes: u64,
}

impl Egress {
    pub fn new(settings: &EgressSettings) -> Result<Egress, String> {
        let policy = Arc::new(Policy::from_settings(settings)?);
        let hop_policy = policy.clone();
        let max_redirects = settings.max_redirects;
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max_redirects {
                let target = policy::redacted(attempt.url());
                return attempt.error(Refusal { reason: "too many redirects", target });
            }
            match hop_policy.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(refusal) => attempt.error(refusal),
            }
        });
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(settings.connect_timeout_ms.max(1)))
            .timeout(Duration::from_millis(settings.total_timeout_ms.max(1)))
            .redirect(redirects)
            // A proxy from the environment would be connected to instead of the checked address.
            .no_proxy()
            .dns_resolver(Arc::new(CheckedResolver { policy: policy.clone() }))
            .user_agent(concat!("vitrina/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the egress HTTP client: {e}"))?;
        Ok(Egress { client, policy, max_bytes: settings.max_response_bytes })
    }

    /// A request to a merchant URL, its URL already checked.
    pub fn request(&self, method: Method, url: &str) -> Result<RequestBuilder, EgressError> {
        let parsed = Url::parse(url).map_err(|_| EgressError::InvalidUrl)?;
        if let Err(refusal) = self.policy.check_url(&parsed) {
            log_refusal(&refusal);
            return Err(EgressError::Refused);
        }
        Ok(self.client.request(method, parsed))
    }

    /// Checks a URL a merchant configures: refused when its host is a refused literal or a
    /// name that resolves (now) to a refused address. A name that does not resolve yet passes:
    /// every request checks again.
    pub async fn check_configured(&self, url: &str) -> Result<(), EgressError> {
        let parsed = Url::parse(url).map_err(|_| EgressError::InvalidUrl)?;
        if let Err(refusal) = self.policy.check_url(&parsed) {
            log_refusal(&refusal);
            return Err(EgressError::Refused);
        }
        if let Some(url::Host::Domain(name)) = parsed.host() {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let lookup = tokio::time::timeout(Duration::from_secs(2), resolve_checked(&self.policy, &name)).await;
            if let Ok(Err(e)) = lookup {
                if let Some(refusal) = find_refusal(e.as_ref()) {
                    log_refusal(refusal);
                    return Err(EgressError::Refused);
                }
            }
        }
        Ok(())
    }

    /// Sends the request and reads the body up to `egress.max_response_bytes` (or `cap`, if
    /// smaller), aborting the transfer past it.
    pub async fn execute(&self, request: RequestBuilder, cap: Option<u64>) -> Result<(StatusCode, Vec<u8>), EgressError> {
        let cap = cap.unwrap_or(u64::MAX).min(self.max_bytes);
        let span = tracing::info_span!("upstream");
        let mut trace = reqwest::header::HeaderMap::new();
        span.in_scope(|| crate::trace_context::inject(&mut trace));
        let mut res = tracing::Instrument::instrument(request.headers(trace).send(), span).await.map_err(failure)?;
        let status = res.status();
        if res.content_length().is_some_and(|len| len > cap) {
            tracing::info!(target: "vitrina::egress", url = %policy::redacted(res.url()), cap, "response too large");
            return Err(EgressError::TooLarge(cap));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(failure)? {
            if body.len() as u64 + chunk.len() as u64 > cap {
                tracing::info!(target: "vitrina::egress", url = %policy::redacted(res.url()), cap, "response too large");
                return Err(EgressError::TooLarge(cap));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }
}

fn log_refusal(refusal: &Refusal) {
    crate::metrics::incr("vitrina_egress_refused_total", &[]);
    tracing::info!(target: "vitrina::egress", reason = refusal.reason, target_addr = %refusal.target, "outbound request refused");
}

fn find_refusal<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refusal> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(refusal) = err.downcast_ref::<Refusal>() {
            return Some(refusal);
        }
        current = err.source();
    }
    None
}

/// Maps a transport failure to what a merchant may see; the full chain goes to the log.
fn failure(e: reqwest::Error) -> EgressError {
    if let Some(refusal) = find_refusal(&e) {
        log_refusal(refusal);
        return EgressError::Refused;
    }
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    crate::metrics::incr("vitrina_egress_unreachable_total", &[]);
    tracing::info!(target: "vitrina::egress", error = %detail, "outbound request failed");
    EgressError::Unreachable
}

static GLOBAL: OnceLock<Egress> = OnceLock::new();

/// Installs the node's client (at startup, from `[egress]`). A second call keeps the first.
pub fn install(egress: Egress) {
    let _ = GLOBAL.set(egress);
}

/// The process's egress client: the installed one, else one with the default (strict) policy.
pub fn global() -> &'static Egress {
    GLOBAL.get_or_init(|| {
        // Only fails when the TLS backend cannot initialise, before any request could be made.
        Egress::new(&EgressSettings::default()).unwrap_or_else(|e| panic!("{e}"))
    })
}
