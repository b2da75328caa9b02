//! Proof that a store controls a custom domain: the claim's token, served by the domain at
//! `http://{domain}/.well-known/vitrina-verification/{token}`, fetched through the egress
//! client (a domain pointing at an inside address is refused like any merchant URL).
//!
//! The node itself never answers that path for a pending claim, so a store cannot prove a
//! domain that merely points at this node. DNS TXT records are not checked (yet).

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

/// The URL the token must be served at.
pub fn verification_url(host: &str, token: &str, settings: &DomainSettings) -> String {
    let port = if settings.verify_port == 80 {
        String::new()
    } else {
        format!(":{}", settings.verify_port)
    };
    format!("http://{host}{port}{WELL_KNOWN}{token}")
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
