//! An entry of the download allow-list (`CHATSINK_DOWNLOAD_ALLOW_HOSTS`), parsed once with the
//! settings; the SSRF guard (`ingest::UrlPolicy`) matches URLs against these.

use std::net::IpAddr;
use url::{Host, Url};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostPatternError {
    #[error("empty pattern")]
    Empty,
    #[error("'*' is only allowed as a leading '*.'")]
    Wildcard,
    #[error("not a host pattern: {0}")]
    Malformed(String),
    #[error("not a host pattern: use host or host:port")]
    NotHostPort,
    #[error("a wildcard needs a domain after '*.'")]
    WildcardWithoutDomain,
    #[error("no host")]
    NoHost,
}

/// One allow-list entry: `*.example.com`, `example.com`, `example.com:9000`, `127.0.0.1:9000`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: PatternHost,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternHost {
    /// `*.suffix`: any subdomain of suffix, not suffix itself.
    Subdomains(String),
    Name(String),
    Ip(IpAddr),
}

impl HostPattern {
    pub fn parse(raw: &str) -> Result<Self, HostPatternError> {
        let raw = raw.trim().to_ascii_lowercase();
        if raw.is_empty() {
            return Err(HostPatternError::Empty);
        }
        if raw.trim_start_matches("*.").contains('*') {
            return Err(HostPatternError::Wildcard);
        }
        // Let the URL parser split host and port, bracketed IPv6 included.
        let probe = raw.replacen("*.", "wildcard-marker.", 1);
        let url = Url::parse(&format!("http://{probe}/"))
            .map_err(|e| HostPatternError::Malformed(e.to_string()))?;
        let port = url.port();
        if raw.contains('/') || raw.contains('@') {
            return Err(HostPatternError::NotHostPort);
        }
        let host = match url.host() {
            Some(Host::Ipv4(ip)) => PatternHost::Ip(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => PatternHost::Ip(IpAddr::V6(ip)),
            Some(Host::Domain(d)) => match d.strip_prefix("wildcard-marker.") {
                Some(suffix) if !suffix.is_empty() => PatternHost::Subdomains(suffix.to_owned()),
                Some(_) => return Err(HostPatternError::WildcardWithoutDomain),
                None => PatternHost::Name(d.to_owned()),
            },
            None => return Err(HostPatternError::NoHost),
        };
        Ok(Self { host, port })
    }

    /// Whether this entry names exactly the IP `ip` (and `port`, when it has a port).
    pub(crate) fn names_ip(&self, ip: IpAddr, port: u16) -> bool {
        self.host == PatternHost::Ip(ip) && self.port.is_none_or(|p| p == port)
    }

    pub(crate) fn matches(&self, host: &Host<&str>, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match (&self.host, host) {
            (PatternHost::Ip(ip), Host::Ipv4(h)) => *ip == IpAddr::V4(*h),
            (PatternHost::Ip(ip), Host::Ipv6(h)) => *ip == IpAddr::V6(*h),
            (PatternHost::Name(name), Host::Domain(h)) => name == &h.to_ascii_lowercase(),
            (PatternHost::Subdomains(suffix), Host::Domain(h)) => {
                let h = h.to_ascii_lowercase();
                h.len() > suffix.len() + 1
                    && h.ends_with(suffix.as_str())
                    && h.as_bytes()[h.len() - suffix.len() - 1] == b'.'
            }
            _ => false,
        }
    }
}
