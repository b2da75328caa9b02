//! Identifiers that cannot be invalid once constructed.
//!
//! Every id that may end up in a file path or an actor key is validated here, once, at the edge:
//! `[A-Za-z0-9_-]{1,64}`. Code past the HTTP layer takes these types, never raw strings, so a
//! path can never be built from an unvalidated id.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Why a string was refused as an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: ids are 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'")]
pub struct InvalidId {
    pub kind: &'static str,
    pub value: String,
}

fn is_valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, InvalidId> {
                if is_valid_id(value) {
                    Ok(Self(value.to_string()))
                } else {
                    // Keep the echoed value short: it goes back into an error body.
                    let value: String = value.chars().take(80).collect();
                    Err(InvalidId { kind: $kind, value })
                }
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                $name::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A storefront, e.g. `demo`. Also the first label of the store's host name.
    StoreId, "store id"
);
id_type!(
    /// A shopper session (the `sid` cookie).
    SessionId, "session id"
);
id_type!(
    /// A product in a store's catalog.
    ProductId, "product id"
);
id_type!(
    /// A page slug, product handle, or post slug: anything addressed by URL inside a store.
    Slug, "slug"
);
id_type!(
    /// A block within a page.
    BlockId, "block id"
);

impl SessionId {
    /// A fresh random session id (128 bits, URL-safe).
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }
}

impl BlockId {
    pub fn generate() -> Self {
        Self(format!("b-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]))
    }
}

/// The key of an actor: at most one live instance per key exists on the node that owns it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActorKey {
    Store(StoreId),
    Shopper(StoreId, SessionId),
}

impl ActorKey {
    pub fn store(&self) -> &StoreId {
        match self {
            ActorKey::Store(s) | ActorKey::Shopper(s, _) => s,
        }
    }

    /// Parses the textual form produced by `Display` (`store:{store}`, `shopper:{store}:{sid}`).
    pub fn parse(s: &str) -> Option<ActorKey> {
        let mut parts = s.split(':');
        let key = match (parts.next()?, parts.next()?, parts.next()) {
            ("store", store, None) => ActorKey::Store(StoreId::parse(store).ok()?),
            ("shopper", store, Some(sid)) => ActorKey::Shopper(StoreId::parse(store).ok()?, SessionId::parse(sid).ok()?),
            _ => return None,
        };
        parts.next().is_none().then_some(key)
    }
}

impl fmt::Display for ActorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActorKey::Store(s) => write!(f, "store:{s}"),
            ActorKey::Shopper(s, sid) => write!(f, "shopper:{s}:{sid}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_only_the_safe_alphabet() {
        assert!(StoreId::parse("demo_store-1").is_ok());
        for bad in ["", "../etc", "a/b", "a.b", "ä", "a b", &"x".repeat(65)] {
            assert!(StoreId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(StoreId::parse(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn actor_keys_round_trip() {
        let key = ActorKey::Shopper(StoreId::parse("demo").unwrap(), SessionId::parse("abc").unwrap());
        assert_eq!(ActorKey::parse(&key.to_string()), Some(key));
        assert_eq!(ActorKey::parse("shopper:demo:../x"), None);
        assert_eq!(ActorKey::parse("store:demo:extra"), None);
    }
}
