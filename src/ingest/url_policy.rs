//! Which URLs a dump may be downloaded from (the SSRF guard).
//!
//! A URL passes when its scheme is `https` (or `http` when allowed), its host matches the
//! allow-list, and every address it stands for is public. Private, loopback, link-local and
//! similar addresses pass only when the URL itself is that IP literal and the allow-list names it
//! (with the URL's port, when the entry has one; tests use `127.0.0.1:PORT`). A name that resolves
//! to such an address never passes: the resolver does not know which port the name was asked
//! for, so an entry's port could not hold for it. Cloud metadata and unspecified addresses never
//! pass.

use crate::domain::HostPattern;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::{Host, Url};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("URL scheme '{0}' is not allowed (https only; set CHATSINK_DOWNLOAD_ALLOW_HTTP=true for http)")]
    Scheme(String),
    #[error("URL has no host")]
    NoHost,
    #[error("host '{0}' is not in CHATSINK_DOWNLOAD_ALLOW_HOSTS")]
    HostNotAllowed(String),
    #[error("host '{host}' resolves to {ip}, a {kind} address, which is never downloaded from")]
    AddressRefused {
        host: String,
        ip: IpAddr,
        kind: &'static str,
    },
}

#[derive(Debug, Clone)]
pub struct UrlPolicy {
    patterns: Vec<HostPattern>,
    allow_http: bool,
}

impl UrlPolicy {
    pub fn new(patterns: &[HostPattern], allow_http: bool) -> Self {
        Self {
            patterns: patterns.to_vec(),
            allow_http,
        }
    }

    /// Checks everything that can be checked without DNS: scheme, host, and IP literals.
    pub fn check_url(&self, url: &Url) -> Result<(), PolicyError> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            other => return Err(PolicyError::Scheme(other.to_owned())),
        }
        let host = url.host().ok_or(PolicyError::NoHost)?;
        let port = url.port_or_known_default().unwrap_or(443);
        if !self.patterns.iter().any(|p| p.matches(&host, port)) {
            return Err(PolicyError::HostNotAllowed(
                url.host_str().unwrap_or_default().to_owned(),
            ));
        }
        match host {
            Host::Ipv4(ip) => self.check_literal(IpAddr::V4(ip), port),
            Host::Ipv6(ip) => self.check_literal(IpAddr::V6(ip), port),
            Host::Domain(_) => Ok(()),
        }
    }

    /// Checks an address a name resolved to: any address that is not public is refused.
    pub fn check_address(&self, host: &str, ip: IpAddr) -> Result<(), PolicyError> {
        match special_kind(ip) {
            None => Ok(()),
            Some(kind) => Err(PolicyError::AddressRefused {
                host: host.to_owned(),
                ip,
                kind,
            }),
        }
    }

    /// Checks an IP literal URL's address: one that is not public passes only when an entry
    /// names that IP (and the URL's port, when the entry has a port).
    fn check_literal(&self, ip: IpAddr, port: u16) -> Result<(), PolicyError> {
        let host = ip.to_string();
        let Some(kind) = special_kind(ip) else {
            return Ok(());
        };
        let never = matches!(kind, "cloud metadata" | "unspecified");
        let named = self
            .patterns
            .iter()
            .any(|p| p.names_ip(canonical(ip), port));
        if named && !never {
            return Ok(());
        }
        Err(PolicyError::AddressRefused {
            host: host.to_owned(),
            ip,
            kind,
        })
    }
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Why an address is not a public one, or `None` when it is.
fn special_kind(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match () {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(169, 254, 170, 2) => {
            "cloud metadata"
        }
        _ if ip.is_unspecified() || a == 0 => "unspecified",
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_private() => "private",
        _ if ip.is_link_local() => "link-local",
        _ if a == 100 && (64..128).contains(&b) => "shared (carrier-grade NAT)",
        _ if a == 192 && b == 0 && c == 0 => "IETF protocol",
        _ if ip.is_documentation() => "documentation",
        _ if a == 198 && (b == 18 || b == 19) => "benchmarking",
        _ if ip.is_multicast() || ip.is_broadcast() || a >= 240 => "multicast or reserved",
        _ => return None,
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(match () {
        _ if ip == "fd00:ec2::254".parse::<Ipv6Addr>().expect("literal") => "cloud metadata",
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        _ if (first & 0xfe00) == 0xfc00 => "unique-local (private)",
        _ if (first & 0xffc0) == 0xfe80 => "link-local",
        _ if ip.is_multicast() => "multicast or reserved",
        _ if first == 0x2001 && ip.segments()[1] == 0x0db8 => "documentation",
        // NAT64 and 6to4 embed an IPv4 address that may itself be private.
        _ if first == 0x0064 && ip.segments()[1] == 0xff9b => "NAT64",
        _ if first == 0x2002 => "6to4",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str], http: bool) -> UrlPolicy {
        UrlPolicy::new(
            &hosts
                .iter()
                .map(|s| HostPattern::parse(s).unwrap())
                .collect::<Vec<_>>(),
            http,
        )
    }

    fn check(p: &UrlPolicy, url: &str) -> Result<(), PolicyError> {
        p.check_url(&Url::parse(url).unwrap())
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let p = policy(&["*.amazonaws.com"], false);
        assert!(check(&p, "https://bucket.s3.amazonaws.com/x.csv").is_ok());
        assert!(check(&p, "https://amazonaws.com/x").is_err());
        assert!(check(&p, "https://evilamazonaws.com/x").is_err());
        assert!(check(&p, "https://amazonaws.com.evil.io/x").is_err());
    }

    #[test]
    fn http_needs_permission() {
        assert!(matches!(
            check(
                &policy(&["*.amazonaws.com"], false),
                "http://b.s3.amazonaws.com/"
            ),
            Err(PolicyError::Scheme(_))
        ));
        assert!(check(
            &policy(&["*.amazonaws.com"], true),
            "http://b.s3.amazonaws.com/"
        )
        .is_ok());
        assert!(matches!(
            check(&policy(&["*.amazonaws.com"], true), "file:///etc/passwd"),
            Err(PolicyError::Scheme(_))
        ));
    }

    #[test]
    fn loopback_only_when_named_as_an_ip_literal_with_its_port() {
        let p = policy(&["127.0.0.1:9000"], true);
        assert!(check(&p, "http://127.0.0.1:9000/d.csv").is_ok());
        assert!(check(&p, "http://127.0.0.1:9001/d.csv").is_err());
        assert!(check(
            &policy(&["*.amazonaws.com"], true),
            "http://127.0.0.1:9000/"
        )
        .is_err());
        // A name that resolves to loopback is refused even when the name is allowed, and even
        // when the loopback address is allowed with another port: the name's port is not the
        // entry's (`localhost:P` must not reach `127.0.0.1:U`).
        for hosts in [
            &["localhost:9000"][..],
            &["127.0.0.1:9000", "localhost"][..],
        ] {
            let p = policy(hosts, true);
            assert!(check(&p, "http://localhost:9000/").is_ok(), "{hosts:?}");
            assert!(matches!(
                p.check_address("localhost", "127.0.0.1".parse().unwrap()),
                Err(PolicyError::AddressRefused { .. })
            ));
        }
    }

    #[test]
    fn metadata_and_mapped_addresses_are_refused() {
        let p = policy(&["169.254.169.254", "[::ffff:10.0.0.1]", "10.0.0.2"], true);
        assert!(check(&p, "http://10.0.0.2:81/").is_ok());
        assert!(matches!(
            check(&p, "http://169.254.169.254/latest/meta-data"),
            Err(PolicyError::AddressRefused {
                kind: "cloud metadata",
                ..
            })
        ));
        for ip in [
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "fe80::1",
            "fc00::1",
            "10.1.2.3",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(policy(&[], true).check_address("h", ip).is_err(), "{ip}");
        }
        assert!(policy(&[], true)
            .check_address("h", "52.216.1.1".parse().unwrap())
            .is_ok());
    }

    #[test]
    fn patterns_validate() {
        assert!(HostPattern::parse("*.amazonaws.com").is_ok());
        assert!(HostPattern::parse("[::1]:9000").is_ok());
        assert!(HostPattern::parse("a*.com").is_err());
        assert!(HostPattern::parse("http://x/").is_err());
        assert!(HostPattern::parse("").is_err());
    }
}
