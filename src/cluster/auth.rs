//! Authentication between nodes: every internal call and every forwarded request carries an
//! HMAC-SHA256 over its method, path, timestamp and body, keyed by the shared cluster secret.
//! A node refuses internal calls without a valid signature, and signatures older than a minute
//! (replays).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const NODE_HEADER: &str = "x-vitrina-node";
pub const TS_HEADER: &str = "x-vitrina-ts";
pub const AUTH_HEADER: &str = "x-vitrina-auth";
/// Set on a request one node forwards to another; a forwarded request is never forwarded again.
pub const HOP_HEADER: &str = "x-vitrina-hop";

const MAX_SKEW_SECS: i64 = 60;

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn mac(secret: &[u8], method: &str, path: &str, ts: i64, body: &[u8]) -> Hmac<Sha256> {
    // Keys of any length are accepted by HMAC; this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(method.as_bytes());
    m.update(b"\n");
    m.update(path.as_bytes());
    m.update(b"\n");
    m.update(ts.to_string().as_bytes());
    m.update(b"\n");
    m.update(hex::encode(Sha256::digest(body)).as_bytes());
    m
}

/// `(timestamp, signature)` headers for a request.
pub fn sign(secret: &[u8], method: &str, path: &str, body: &[u8]) -> (String, String) {
    let ts = unix_now();
    let sig = hex::encode(mac(secret, method, path, ts, body).finalize().into_bytes());
    (ts.to_string(), sig)
}

/// Checks a signature in constant time.
pub fn verify(secret: &[u8], method: &str, path: &str, body: &[u8], ts: Option<&str>, sig: Option<&str>) -> Result<(), &'static str> {
    let ts: i64 = ts.and_then(|t| t.parse().ok()).ok_or("missing or malformed timestamp")?;
    if (unix_now() - ts).abs() > MAX_SKEW_SECS {
        return Err("stale signature");
    }
    let sig = sig.and_then(|s| hex::decode(s).ok()).ok_or("missing or malformed signature")?;
    mac(secret, method, path, ts, body).verify_slice(&sig).map_err(|_| "bad signature")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_method_path_and_body() {
        let (ts, sig) = sign(b"k", "POST", "/internal/catalog", b"{}");
        assert!(verify(b"k", "POST", "/internal/catalog", b"{}", Some(&ts), Some(&sig)).is_ok());
        assert!(verify(b"other", "POST", "/internal/catalog", b"{}", Some(&ts), Some(&sig)).is_err());
        assert!(verify(b"k", "POST", "/internal/catalog", b"{ }", Some(&ts), Some(&sig)).is_err());
        assert!(verify(b"k", "GET", "/internal/catalog", b"{}", Some(&ts), Some(&sig)).is_err());
        assert!(verify(b"k", "POST", "/internal/catalog", b"{}", Some("0"), Some(&sig)).is_err());
        assert!(verify(b"k", "POST", "/internal/catalog", b"{}", None, None).is_err());
    }
}
