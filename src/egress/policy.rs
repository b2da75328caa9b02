//! Which addresses, schemes and ports an outbound request may reach.
//!
//! Merchants configure URLs (upstream catalogs, order backends, custom domains); the node must
//! never be their way into its own network. Every address a request would connect to is
//! classified here: special-purpose ranges (loopback, private, link-local, CGNAT, unique-local,
//! multicast, documentation, benchmark, cloud metadata, IPv6 forms that embed an IPv4 address)
//! are refused unless the operator allowed them with `egress.allow`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use reqwest::Url;

use crate::config::EgressSettings;

/// Why an outbound request was not made. The merchant sees only "refused by policy"; the reason
/// and the target go to the server log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub target: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "egress refused ({}): {}", self.reason, self.target)
    }
}

impl std::error::Error for Refusal {}

/// The special-purpose range `ip` lies in, if any (`None`: a public unicast address).
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, d] = ip.octets();
    Some(match (a, b, c, d) {
        (169, 254, 169, 254) => "cloud metadata",
        (0, ..) => "unspecified (0.0.0.0/8)",
        (127, ..) => "loopback",
        (10, ..) => "private (10/8)",
        (172, 16..=31, ..) => "private (172.16/12)",
        (192, 168, ..) => "private (192.168/16)",
        (100, 64..=127, ..) => "shared address space (100.64/10)",
        (169, 254, ..) => "link-local",
        (192, 0, 0, _) => "IETF protocol assignments (192.0.0/24)",
        (192, 0, 2, _) | (198, 51, 100, _) | (203, 0, 113, _) => "documentation",
        (192, 88, 99, _) => "6to4 relay anycast",
        (198, 18..=19, ..) => "benchmarking (198.18/15)",
        (224..=239, ..) => "multicast",
        (255, 255, 255, 255) => "broadcast",
        (240..=255, ..) => "reserved (240/4)",
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address stands for, in the forms that carry one: mapped
/// (`::ffff:a.b.c.d`), translated (`::ffff:0:a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) and 6to4
/// (`2002:aabb:ccdd::`). Connecting to any of them can reach that IPv4 address.
pub fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(ip) {
        // A mapped or translated public address is as public as the IPv4 one; a mapped
        // loopback is loopback. Judged by the address it reaches.
        return classify_v4(v4).map(|_| "IPv6 form of a refused IPv4 address");
    }
    let s = ip.segments();
    Some(match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => "unspecified",
        [0, 0, 0, 0, 0, 0, 0, 1] => "loopback",
        // IPv4-compatible (`::a.b.c.d`, deprecated): never a real destination.
        [0, 0, 0, 0, 0, 0, _, _] => "IPv4-compatible IPv6",
        [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254] => "cloud metadata",
        [0x64, 0xff9b, 1, ..] => "local-use NAT64 (64:ff9b:1::/48)",
        [0x100, 0, 0, 0, ..] => "discard-only (100::/64)",
        [0x2001, 0, ..] => "Teredo (2001::/32)",
        [0x2001, 2, 0, ..] => "benchmarking (2001:2::/48)",
        [0x2001, 0x10..=0x2f, ..] => "ORCHID (2001:10::/28, 2001:20::/28)",
        [0x2001, 0xdb8, ..] => "documentation",
        [x, ..] if x & 0xfff0 == 0x3ff0 => "documentation (3fff::/20)",
        [x, ..] if x & 0xfe00 == 0xfc00 => "unique-local (fc00::/7)",
        [x, ..] if x & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        [x, ..] if x & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        [x, ..] if x & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    })
}

/// The operator's policy: ranges allowed despite [`classify`], permitted ports, static names.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allow: Vec<IpNet>,
    /// Ports a request may use on an address outside `allow`; empty: any.
    ports: Vec<u16>,
    /// Names resolved without DNS (`egress.resolve`); their addresses are still checked.
    overrides: HashMap<String, Vec<IpAddr>>,
}

impl Policy {
    pub fn from_settings(settings: &EgressSettings) -> Result<Policy, String> {
        let allow = settings
            .allow
            .iter()
            .map(|raw| {
                let raw = raw.trim();
                raw.parse::<IpNet>()
                    .or_else(|_| raw.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("egress.allow: {raw:?} is not a CIDR range (e.g. 127.0.0.0/8)"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut overrides: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for entry in &settings.resolve {
            let (name, ip) = entry.split_once('=').ok_or_else(|| format!("egress.resolve: {entry:?} is not name=address"))?;
            let ip = ip.trim().trim_start_matches('[').trim_end_matches(']');
            let ip: IpAddr = ip.parse().map_err(|_| format!("egress.resolve: {ip:?} is not an IP address"))?;
            overrides.entry(name.trim().trim_end_matches('.').to_ascii_lowercase()).or_default().push(ip);
        }
        Ok(Policy { allow, ports: settings.ports.clone(), overrides })
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        let v4 = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.allow.iter().any(|net| net.contains(&ip) || v4.is_some_and(|v4| net.contains(&v4)))
    }

    /// Refuses an address in a special-purpose range the operator did not allow.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        match classify(ip) {
            Some(reason) if !self.allowed(ip) => Err(Refusal { reason, target: ip.to_string() }),
            _ => Ok(()),
        }
    }

    /// The addresses of a name the operator pinned in `egress.resolve`.
    pub fn overridden(&self, name: &str) -> Option<&[IpAddr]> {
        self.overrides.get(name).map(Vec::as_slice)
    }

    /// Checks everything about a URL that does not need DNS: scheme, credentials, port, and the
    /// address when the host is an IP literal (any spelling: the URL parser normalises `0x7f.1`,
    /// `2130706433` and `127.1` to `127.0.0.1`). Names are checked when resolved.
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        let refuse = |reason| Err(Refusal { reason, target: redacted(url) });
        if !matches!(url.scheme(), "http" | "https") {
            return refuse("scheme other than http(s)");
        }
        if !url.username().is_empty() || url.password().is_some() {
            return refuse("credentials in the URL");
        }
        let Some(port) = url.port_or_known_default() else {
            return refuse("no port");
        };
        // The addresses the host stands for, when known without DNS.
        let known: Vec<IpAddr> = match url.host() {
            None => return refuse("no host"),
            Some(url::Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
            Some(url::Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if let Some(ips) = self.overridden(&name) {
                    ips.to_vec()
                } else if name == "localhost" || name.ends_with(".localhost") {
                    // RFC 6761: loopback by definition, whatever a resolver says.
                    vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
                } else {
                    Vec::new()
                }
            }
        };
        for ip in &known {
            self.check_ip(*ip)?;
        }
        let operator_range = !known.is_empty() && known.iter().all(|ip| self.allowed(*ip));
        if !self.ports.is_empty() && !self.ports.contains(&port) && !operator_range {
            return refuse("port not in egress.ports");
        }
        Ok(())
    }
}

/// A URL as it may be logged: without query (tokens) or credentials.
pub fn redacted(url: &Url) -> String {
    format!("{}://{}{}", url.scheme(), url.host_str().unwrap_or(""), url.port().map(|p| format!(":{p}")).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str]) -> Policy {
        let settings = EgressSettings { allow: allow.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        Policy::from_settings(&settings).expect("valid policy")
    }

    fn refused(url: &str) -> bool {
        policy(&[]).check_url(&Url::parse(url).expect("url")).is_err()
    }

    #[test]
    fn special_ranges_are_classified() {
        for ip in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.0.1",
            "169.254.169.254",
            "192.0.0.170",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:0:169.254.169.254",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2001::1",
            "2001:db8::1",
            "3fff::1",
            "2001:2::1",
            "100::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(classify(ip.parse().expect(ip)).is_some(), "{ip} must be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(classify(ip.parse().expect(ip)), None, "{ip} is public");
        }
        assert_eq!(classify("169.254.169.254".parse().expect("ip")), Some("cloud metadata"));
        assert_eq!(classify("fd00:ec2::254".parse().expect("ip")), Some("cloud metadata"));
    }

    #[test]
    fn odd_spellings_of_loopback_are_refused() {
        for url in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://0x7f.1/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://017700000001/",
            "http://0177.0.0.1/",
            "http://0/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[0:0:0:0:0:ffff:127.0.0.1]/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://admin.localhost/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
        ] {
            assert!(refused(url), "{url} must be refused");
        }
    }

    #[test]
    fn schemes_credentials_and_ports() {
        assert!(refused("ftp://example.com/"));
        assert!(refused("file:///etc/passwd"));
        assert!(refused("http://user:pw@example.com/"));
        assert!(refused("http://example.com:22/"));
        assert!(!refused("http://example.com/"));
        assert!(!refused("https://example.com:8443/p?x=1"));
    }

    #[test]
    fn the_allow_list_opens_ranges_and_their_ports() {
        let p = policy(&["127.0.0.0/8"]);
        assert!(p.check_url(&Url::parse("http://127.0.0.1:4567/").expect("url")).is_ok());
        assert!(p.check_url(&Url::parse("http://[::ffff:127.0.0.1]:4567/").expect("url")).is_ok());
        assert!(p.check_url(&Url::parse("http://localhost:4567/").expect("url")).is_ok());
        assert!(p.check_url(&Url::parse("http://10.0.0.1/").expect("url")).is_err());
        assert!(p.check_ip("::1".parse().expect("ip")).is_err(), "IPv6 loopback is not in 127/8");
        assert!(Policy::from_settings(&EgressSettings { allow: vec!["nonsense".into()], ..Default::default() }).is_err());
    }
}
