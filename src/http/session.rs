//! Session tokens: the server mints every session id.
//!
//! The `sid` cookie carries `{id}.{generation}.{mac}`: `id` is the shopper's actor key (random,
//! 128 bits, minted here), `generation` counts the token rotations of that shopper (checkout
//! rotates), and `mac` is an HMAC-SHA256 (128 bits kept) of both under the node's session key.
//! A cookie that does not verify is recognised without touching disk or any actor and counts
//! as no session. Whether a verified token's generation is still the shopper's current one is
//! the actor's to say (`ShopperPulse::generation`): an older one is a rotated-away token.
//!
//! The key is set once at startup (`startup::session_key`): a cluster's nodes share one derived
//! from the cluster secret, a single node keeps one in `{data_dir}/node/session-key`.

use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ids::SessionId;

static KEY: OnceLock<Vec<u8>> = OnceLock::new();

/// Sets the node's session key; only the first call counts.
pub fn set_key(key: Vec<u8>) {
    let _ = KEY.set(key);
}

/// The node's session key, for the other cookies this node signs (`console_session`).
pub(super) fn signing_key() -> &'static [u8] {
    key()
}

fn key() -> &'static [u8] {
    // Outside a node (unit tests) a process-local random key.
    KEY.get_or_init(|| uuid::Uuid::new_v4().as_bytes().to_vec())
}

/// Hex characters of the MAC kept in a token (128 bits).
const MAC_HEX: usize = 32;
/// Longest cookie value considered at all.
const MAX_TOKEN_LEN: usize = 128;

/// A verified session: the shopper it names and the rotation it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionToken {
    pub sid: SessionId,
    pub generation: u64,
}

impl SessionToken {
    /// A new shopper's first token.
    pub fn mint() -> SessionToken {
        SessionToken { sid: SessionId::generate(), generation: 0 }
    }

    /// The same shopper's token at `generation`.
    pub fn at(&self, generation: u64) -> SessionToken {
        SessionToken { sid: self.sid.clone(), generation }
    }

    /// The cookie value.
    pub fn encode(&self) -> String {
        encode_with(key(), self.sid.as_str(), self.generation)
    }

    /// The token in a cookie value, if this node's key signed it.
    pub fn decode(raw: &str) -> Option<SessionToken> {
        decode_with(key(), raw)
    }
}

fn mac(key: &[u8], sid: &str, generation: u64) -> Hmac<Sha256> {
    // HMAC takes keys of any length; this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(b"vitrina-session-v1\n");
    m.update(sid.as_bytes());
    m.update(b"\n");
    m.update(generation.to_string().as_bytes());
    m
}

/// A token for `sid` at `generation` under `key`. Clients that hold the key (tests, the load
/// generator) sign their own shoppers' ids with `test-support/src/session.rs`, which must agree.
pub fn encode_with(key: &[u8], sid: &str, generation: u64) -> String {
    let digest = mac(key, sid, generation).finalize().into_bytes();
    format!("{sid}.{generation}.{}", hex::encode(&digest[..MAC_HEX / 2]))
}

fn decode_with(key: &[u8], raw: &str) -> Option<SessionToken> {
    if raw.len() > MAX_TOKEN_LEN {
        return None;
    }
    let mut parts = raw.split('.');
    let (sid, generation, tag) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || tag.len() != MAC_HEX {
        return None;
    }
    let sid = SessionId::parse(sid).ok()?;
    if generation.is_empty() || generation.len() > 20 || !generation.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let generation: u64 = generation.parse().ok()?;
    let tag = hex::decode(tag).ok()?;
    // Constant time: `verify_truncated_left` compares the leading bytes of the full MAC.
    mac(key, sid.as_str(), generation).verify_truncated_left(&tag).ok()?;
    Some(SessionToken { sid, generation })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_under_their_key() {
        let token = encode_with(b"k1", "abc", 3);
        assert_eq!(decode_with(b"k1", &token), Some(SessionToken { sid: SessionId::parse("abc").unwrap(), generation: 3 }));
        assert_eq!(decode_with(b"k2", &token), None);
        let forged = token.replace(".3.", ".4.");
        assert_eq!(decode_with(b"k1", &forged), None);
        for bad in ["", "abc", "abc.0", "abc.0.00", "../x.0.00000000000000000000000000000000", "a.b.c.d", &"x".repeat(400)] {
            assert_eq!(decode_with(b"k1", bad), None, "{bad:?}");
        }
        let mut flipped = token.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(decode_with(b"k1", std::str::from_utf8(&flipped).unwrap()), None);
    }

    #[test]
    fn minted_tokens_round_trip() {
        let t = SessionToken::mint();
        assert_eq!(SessionToken::decode(&t.encode()), Some(t.clone()));
        assert_eq!(SessionToken::decode(&t.at(1).encode()).map(|t| t.generation), Some(1));
    }
}
