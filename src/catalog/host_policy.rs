//! Which host names a store may claim as custom domains.
//!
//! `{store}.{base_domain}` belongs to its store forever, whether or not that store exists yet,
//! so no other store can hold it and be served there once the operator creates it. The base
//! domain and everything under it, `localhost` and `*.localhost`, and IP literals in any
//! spelling are never custom domains: they name this node or another store, not a merchant's
//! own domain.

use std::net::IpAddr;

use crate::ids::StoreId;

/// A host a store may not claim: `code` for the API, `message` for the merchant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRefusal {
    pub code: &'static str,
    pub message: String,
}

/// What a claimable host is to the claiming store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    /// The store's own `{store}.{base_domain}`: served without a mapping.
    OwnDefault,
    /// A custom domain: served once verified.
    Custom,
}

/// Whether `host` (normalised: lower case, no port, no trailing dot) is a valid DNS name.
pub fn is_valid_name(host: &str) -> bool {
    (1..=253).contains(&host.len())
        && host.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Whether `host` is an IP address in any spelling a URL parser or resolver accepts: dotted,
/// bracketed IPv6, or a name whose last label is a number (`127.1`, `2130706433`, `0x7f.1`,
/// `0177.0.0.1`), which WHATWG URL parsing and `inet_aton` both read as IPv4.
pub fn is_ip_literal(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return true;
    }
    let last = host.rsplit('.').next().unwrap_or("");
    let hex = last.strip_prefix("0x").is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    !last.is_empty() && (last.bytes().all(|b| b.is_ascii_digit()) || hex)
}

/// A host as a merchant typed it, normalised for a claim: an IPv6 literal without brackets
/// (which `normalise_host` reduces to nothing) is named as the address it is.
pub fn normalise_claim(raw: &str) -> Result<String, HostRefusal> {
    let raw = raw.trim();
    let host = super::normalise_host(raw);
    if raw.parse::<IpAddr>().is_ok() || is_ip_literal(&host) {
        return Err(HostRefusal {
            code: "host_ip_literal",
            message: format!("{raw:?} is an IP address; a custom domain must be a DNS name"),
        });
    }
    if host.is_empty() {
        return Err(HostRefusal { code: "invalid_host", message: format!("{raw:?} is not a valid host name") });
    }
    Ok(host)
}

/// The store whose default host `host` is, if `host` is `{label}.{base}` with a valid id.
pub fn default_host_store(host: &str, base: &str) -> Option<StoreId> {
    let label = host.strip_suffix(base)?.strip_suffix('.')?;
    StoreId::parse(label).ok()
}

/// Refusals that hold for every store: the node's own names, IP literals, the base domain.
/// Mapped hosts that fail this are never served (they predate the rule or came from a peer).
pub fn check_shared(host: &str, base: &str) -> Result<(), HostRefusal> {
    if is_ip_literal(host) {
        return Err(HostRefusal {
            code: "host_ip_literal",
            message: format!("{host:?} is an IP address; a custom domain must be a DNS name"),
        });
    }
    if !is_valid_name(host) {
        return Err(HostRefusal { code: "invalid_host", message: format!("{host:?} is not a valid host name") });
    }
    if host == "localhost" || host.ends_with(".localhost") {
        return Err(HostRefusal {
            code: "host_reserved",
            message: format!("{host:?} names this machine (localhost), not a store's domain"),
        });
    }
    if host == base || host.ends_with(&format!(".{base}")) {
        return Err(HostRefusal {
            code: "host_reserved",
            message: format!("{host:?} is under the node's base domain {base:?}, where every {{store}}.{base} belongs to its store"),
        });
    }
    Ok(())
}

/// Whether `store` may claim `host` (normalised).
pub fn check_claim(host: &str, store: &StoreId, base: &str) -> Result<HostKind, HostRefusal> {
    if default_host_store(host, base).as_ref() == Some(store) {
        return Ok(HostKind::OwnDefault);
    }
    check_shared(host, base)?;
    Ok(HostKind::Custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(host: &str, store: &str) -> Result<HostKind, &'static str> {
        check_claim(host, &StoreId::parse(store).expect("id"), "localhost").map_err(|r| r.code)
    }

    #[test]
    fn reserved_hosts_are_refused() {
        assert_eq!(claim("victim.localhost", "attacker"), Err("host_reserved"));
        assert_eq!(claim("not-yet-created.localhost", "attacker"), Err("host_reserved"));
        assert_eq!(claim("www.victim.localhost", "attacker"), Err("host_reserved"));
        assert_eq!(claim("localhost", "attacker"), Err("host_reserved"));
        assert_eq!(claim("attacker.localhost", "attacker"), Ok(HostKind::OwnDefault));
        for ip in
            ["127.0.0.1", "127.1", "2130706433", "0x7f.1", "0x7f000001", "0177.0.0.1", "[::1]", "::1", "[::ffff:127.0.0.1]", "10.0.0.1"]
        {
            assert_eq!(claim(ip, "attacker"), Err("host_ip_literal"), "{ip}");
        }
        assert_eq!(claim("shop.example.com", "attacker"), Ok(HostKind::Custom));
        assert_eq!(claim("-bad-.example.com", "attacker"), Err("invalid_host"));
        let base = check_claim("x.shops.example", &StoreId::parse("y").expect("id"), "shops.example");
        assert_eq!(base.map_err(|r| r.code), Err("host_reserved"));
        assert_eq!(check_claim("localhost", &StoreId::parse("y").expect("id"), "shops.example").map_err(|r| r.code), Err("host_reserved"));
    }
}
