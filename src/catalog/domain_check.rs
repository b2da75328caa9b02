//! Proof that a store controls a custom domain, either of:
//! - a DNS TXT record `_vitrina-verification.{domain}` holding the claim's token (asked of the
//!   operator's resolvers, `domains.dns_servers` or the system's: no merchant-chosen address is
//!   contacted);
//! - the token served at `http://{domain}/.well-known/vitrina-verification/{token}`, fetched
//!   through the egress client (a domain pointing at an inside address is refused like any
//!   merchant URL).
//!
//! The node itself never answers that path for a pending claim, so a store cannot prove a
//! domain that merely points at this node.

use std::time::Duration;

use crate::config::DomainSettings;

pub const WELL_KNOWN: &str = "/.well-known/vitrina-verification/";

/// Why a verification failed, in words a merchant may see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckFailed {
    #[error("the domain was {0}")]
    Fetch(crate::egress::EgressError),
    #[error("the domain answered {0} for the verification URL")]
    Status(u16),
    #[error("the verification URL did not return the token")]
    WrongToken,
}

/// The name whose TXT record may hold the token.
pub fn txt_name(host: &str) -> String {
    format!("_vitrina-verification.{host}")
}

/// Looks for the token in the TXT records of `_vitrina-verification.{host}`.
pub async fn check_dns(host: &str, token: &str, settings: &DomainSettings) -> Result<(), String> {
    use hickory_resolver::config::{NameServerConfig, ResolverConfig};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    use hickory_resolver::proto::rr::RData;
    use hickory_resolver::Resolver;

    let mut builder = if settings.dns_servers.is_empty() {
        Resolver::builder_tokio().map_err(|e| format!("no system resolver: {e}"))?
    } else {
        let mut servers = Vec::new();
        for raw in &settings.dns_servers {
            let addr: std::net::SocketAddr = raw
                .parse()
                .or_else(|_| raw.parse::<std::net::IpAddr>().map(|ip| std::net::SocketAddr::new(ip, 53)))
                .map_err(|_| format!("domains.dns_servers: {raw:?} is not an address"))?;
            let mut server = NameServerConfig::udp(addr.ip());
            for connection in &mut server.connections {
                connection.port = addr.port();
            }
            servers.push(server);
        }
        Resolver::builder_with_config(ResolverConfig::from_name_servers(servers), TokioRuntimeProvider::default())
    };
    builder.options_mut().timeout = Duration::from_millis(settings.verify_timeout_ms.max(1));
    builder.options_mut().attempts = 1;
    let resolver = builder.build().map_err(|e| format!("resolver: {e}"))?;
    let lookup = resolver.txt_lookup(format!("{}.", txt_name(host))).await.map_err(|e| format!("no TXT record: {e}"))?;
    let found = lookup.answers().iter().any(|record| match &record.data {
        RData::TXT(txt) => {
            let text: Vec<u8> = txt.txt_data.iter().flat_map(|s| s.iter().copied()).collect();
            String::from_utf8_lossy(&text).trim() == token
        }
        _ => false,
    });
    if found {
        Ok(())
    } else {
        Err("no TXT record holds the token".into())
    }
}

/// The URL the token must be served at.
pub fn verification_url(host: &str, token: &str, settings: &DomainSettings) -> String {
    let port = if settings.verify_port == 80 { String::new() } else { format!(":{}", settings.verify_port) };
    format!("http://{host}{port}{WELL_KNOWN}{token}")
}

/// Either proof: the TXT record first (it works for a domain already pointing at this node),
/// then the HTTP token. The error names both failures, in merchant words.
pub async fn check(host: &str, token: &str, settings: &DomainSettings) -> Result<&'static str, String> {
    let dns = match check_dns(host, token, settings).await {
        Ok(()) => return Ok("dns"),
        Err(e) => e,
    };
    tracing::info!(target: "vitrina::egress", %host, error = %dns, "domain TXT check failed");
    match check_http(host, token, settings).await {
        Ok(()) => Ok("http"),
        Err(http) => Err(format!("DNS: no TXT record {} holds the token; HTTP: {http}", txt_name(host))),
    }
}

/// Fetches the token from the domain; `Ok` when the body (trimmed) is exactly the token.
pub async fn check_http(host: &str, token: &str, settings: &DomainSettings) -> Result<(), CheckFailed> {
    let egress = crate::egress::global();
    let request = egress
        .request(reqwest::Method::GET, &verification_url(host, token, settings))
        .map_err(CheckFailed::Fetch)?
        .timeout(Duration::from_millis(settings.verify_timeout_ms.max(1)));
    let (status, body) = egress.execute(request, Some(1024)).await.map_err(CheckFailed::Fetch)?;
    if !status.is_success() {
        return Err(CheckFailed::Status(status.as_u16()));
    }
    if String::from_utf8_lossy(&body).trim() != token {
        return Err(CheckFailed::WrongToken);
    }
    Ok(())
}
