//! Session tokens as a node mints them (`src/http/session.rs`), for clients that hold the key
//! the node was started with: tests and the load generator name their own shoppers. Written
//! out here rather than linked so that neither links the server; a node rejecting these tokens
//! fails every test that uses them.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Hex digits of the truncated MAC in a token.
const MAC_HEX: usize = 32;

/// The token for `sid` at `generation` under `key`.
pub fn token(key: &[u8], sid: &str, generation: u64) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"vitrina-session-v1\n");
    mac.update(sid.as_bytes());
    mac.update(b"\n");
    mac.update(generation.to_string().as_bytes());
    let digest = mac.finalize().into_bytes();
    format!("{sid}.{generation}.{}", hex::encode(&digest[..MAC_HEX / 2]))
}

/// A `Cookie` header value for session `sid` signed with `key`, generation 0.
pub fn cookie(key: &[u8], sid: &str) -> String {
    format!("sid={}", token(key, sid, 0))
}
