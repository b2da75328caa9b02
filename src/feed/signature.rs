//! Webhook signatures, checked on the raw request bytes before anything parses them.
//!
//! Both formats are HMAC-SHA256 with the store's shared secret; comparison is constant-time
//! (`Mac::verify_slice`), so response timing says nothing about how close a forgery came.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far a generic webhook's timestamp may be from the node's clock (replay window).
pub const GENERIC_TOLERANCE_SECS: i64 = 300;

/// A store's webhook secret. Its `Debug` never prints the value.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

impl WebhookSecret {
    /// 16 to 256 printable ASCII characters: short secrets are guessable, and the value travels
    /// in JSON and config files.
    pub fn parse(raw: &str) -> Result<WebhookSecret, String> {
        if (16..=256).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(WebhookSecret(raw.to_string()))
        } else {
            Err("secret must be 16 to 256 printable ASCII characters".into())
        }
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(self.0.as_bytes()).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing signature header {0}")]
    Missing(&'static str),
    #[error("malformed signature header {0}")]
    Malformed(&'static str),
    #[error("signature timestamp is more than {GENERIC_TOLERANCE_SECS} s away from the server's clock")]
    Expired,
    #[error("signature does not match the body")]
    Mismatch,
    #[error("no webhook secret is configured for this store")]
    NoSecret,
}

/// `X-Shopify-Hmac-Sha256`: base64 of HMAC-SHA256(secret, raw body).
pub fn verify_shopify(secret: &WebhookSecret, body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    const NAME: &str = "X-Shopify-Hmac-Sha256";
    let header = header.ok_or(SignatureError::Missing(NAME))?;
    let tag = base64::engine::general_purpose::STANDARD.decode(header.trim()).map_err(|_| SignatureError::Malformed(NAME))?;
    let mut mac = secret.mac();
    mac.update(body);
    mac.verify_slice(&tag).map_err(|_| SignatureError::Mismatch)
}

/// `Vitrina-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "{t}." + body)>`. Several
/// `v1` entries may be given (secret rotation); one must match. The timestamp is inside the
/// MAC, so a captured request cannot be replayed outside the tolerance window.
pub fn verify_generic(secret: &WebhookSecret, body: &[u8], header: Option<&str>, now_secs: i64) -> Result<(), SignatureError> {
    const NAME: &str = "Vitrina-Signature";
    let header = header.ok_or(SignatureError::Missing(NAME))?;
    let mut timestamp: Option<&str> = None;
    let mut tags: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t),
            Some(("v1", hex_tag)) => tags.push(hex::decode(hex_tag).map_err(|_| SignatureError::Malformed(NAME))?),
            _ => {}
        }
    }
    let t_text = timestamp.ok_or(SignatureError::Malformed(NAME))?;
    let t: i64 = t_text.parse().map_err(|_| SignatureError::Malformed(NAME))?;
    if tags.is_empty() {
        return Err(SignatureError::Malformed(NAME));
    }
    if (now_secs - t).abs() > GENERIC_TOLERANCE_SECS {
        return Err(SignatureError::Expired);
    }
    let mut mac = secret.mac();
    mac.update(t_text.as_bytes());
    mac.update(b".");
    mac.update(body);
    // Check every candidate (no early exit on the first miss): rotation, not a timing oracle.
    let matched = tags.iter().fold(false, |ok, tag| mac.clone().verify_slice(tag).is_ok() | ok);
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Signs like a sender would; used by tests and by anyone writing a client.
pub fn sign_generic(secret: &WebhookSecret, body: &[u8], t: i64) -> String {
    let mut mac = secret.mac();
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

pub fn sign_shopify(secret: &WebhookSecret, body: &[u8]) -> String {
    let mut mac = secret.mac();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> WebhookSecret {
        WebhookSecret::parse("0123456789abcdef-secret").unwrap()
    }

    #[test]
    fn shopify_signatures_verify_only_the_exact_body() {
        let body = br#"{"id":1}"#;
        let sig = sign_shopify(&secret(), body);
        assert_eq!(verify_shopify(&secret(), body, Some(&sig)), Ok(()));
        assert_eq!(verify_shopify(&secret(), br#"{"id":2}"#, Some(&sig)), Err(SignatureError::Mismatch));
        let other = WebhookSecret::parse("another-secret-of-16").unwrap();
        assert_eq!(verify_shopify(&other, body, Some(&sig)), Err(SignatureError::Mismatch));
        assert!(matches!(verify_shopify(&secret(), body, Some("%%%")), Err(SignatureError::Malformed(_))));
        assert!(matches!(verify_shopify(&secret(), body, None), Err(SignatureError::Missing(_))));
    }

    #[test]
    fn generic_signatures_bind_the_timestamp_and_expire() {
        let body = br#"{"id":"w1"}"#;
        let now = 1_700_000_000;
        let header = sign_generic(&secret(), body, now);
        assert_eq!(verify_generic(&secret(), body, Some(&header), now + 10), Ok(()));
        assert_eq!(verify_generic(&secret(), body, Some(&header), now + 301), Err(SignatureError::Expired));
        assert_eq!(verify_generic(&secret(), body, Some(&header), now - 301), Err(SignatureError::Expired));
        // Moving the timestamp into the window breaks the MAC.
        let moved = header.replace(&format!("t={now}"), &format!("t={}", now + 100));
        assert_eq!(verify_generic(&secret(), body, Some(&moved), now + 100), Err(SignatureError::Mismatch));
        // Rotation: a wrong v1 next to the right one still verifies.
        let rotated = format!("{header},v1={}", "00".repeat(32));
        assert_eq!(verify_generic(&secret(), body, Some(&rotated), now), Ok(()));
        assert!(matches!(verify_generic(&secret(), body, Some("v1=zz"), now), Err(SignatureError::Malformed(_))));
    }

    #[test]
    fn secrets_are_not_printed() {
        assert!(!format!("{:?}", secret()).contains("0123"));
        assert!(WebhookSecret::parse("short").is_err());
    }
}
