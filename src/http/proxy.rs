//! Who the client is when a proxy may stand in front: `X-Forwarded-For` and
//! `X-Forwarded-Proto` are believed only from the proxies in `http.trusted_proxies`; from
//! anyone else the TCP peer is the client and the connection is plain HTTP.

use std::net::IpAddr;
use std::sync::OnceLock;

use actix_web::{HttpMessage, HttpRequest};
use ipnet::IpNet;

use crate::config::{HttpSettings, SecureCookies};

struct Proxies {
    nets: Vec<IpNet>,
    secure: SecureCookies,
}

static PROXIES: OnceLock<Proxies> = OnceLock::new();

/// Reads the trusted proxies once at startup; an entry that is neither an IP nor a CIDR is an
/// error (a typo would otherwise silently trust nobody, or everybody).
pub fn init(settings: &HttpSettings) -> anyhow::Result<()> {
    let mut nets = Vec::new();
    for raw in &settings.trusted_proxies {
        let raw = raw.trim();
        let net = match raw.parse::<IpNet>() {
            Ok(n) => n,
            Err(_) => {
                IpNet::from(raw.parse::<IpAddr>().map_err(|_| anyhow::anyhow!("http.trusted_proxies: {raw:?} is not an IP or CIDR"))?)
            }
        };
        nets.push(net);
    }
    let _ = PROXIES.set(Proxies { nets, secure: settings.secure_cookies });
    Ok(())
}

fn proxies() -> &'static Proxies {
    PROXIES.get_or_init(|| Proxies { nets: Vec::new(), secure: SecureCookies::Auto })
}

fn trusted(ip: IpAddr) -> bool {
    let ip = canonical(ip);
    proxies().nets.iter().any(|n| n.contains(&ip))
}

/// `::ffff:1.2.3.4` is 1.2.3.4 (dual-stack listeners report IPv4 peers that way).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Marks a request another node forwarded and whose signature verified (set by the routing
/// middleware): its client address and scheme come from the forwarding node's headers.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedHop;

/// What the forwarding node learned about the client, for the owner node.
pub const CLIENT_IP_HEADER: &str = "x-vitrina-client-ip";
pub const SECURE_HEADER: &str = "x-vitrina-secure";

fn hop_header(req: &HttpRequest, name: &str) -> Option<String> {
    req.extensions().get::<VerifiedHop>()?;
    req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn peer(req: &HttpRequest) -> Option<IpAddr> {
    req.peer_addr().map(|a| canonical(a.ip()))
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    if let Some(ip) = hop_header(req, CLIENT_IP_HEADER) {
        return ip.parse().ok();
    }
    let peer = peer(req)?;
    if !trusted(peer) {
        return Some(peer);
    }
    let mut client = peer;
    let hops = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else { break };
        client = canonical(ip);
        if !trusted(client) {
            break;
        }
    }
    Some(client)
}

/// Whether cookies set on this response get `Secure`.
pub fn secure_cookies(req: &HttpRequest) -> bool {
    if let Some(secure) = hop_header(req, SECURE_HEADER) {
        return secure == "1";
    }
    match proxies().secure {
        SecureCookies::Always => true,
        SecureCookies::Never => false,
        SecureCookies::Auto => {
            peer(req).is_some_and(trusted)
                && req
                    .headers()
                    .get("x-forwarded-proto")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split(',').next())
                    .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
        }
    }
}
