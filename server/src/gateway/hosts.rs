//! Which `Host` names this gateway answers for. A page on `evil.example`
//! whose name an attacker re-points at 127.0.0.1 (DNS rebinding) reaches us
//! with `Host: evil.example:8080` and a matching `Origin`, so the same-origin
//! check alone lets it in; a `Host` allow-list does not.
//!
//! Allowed by default: `localhost` (and `*.localhost`, which browsers resolve
//! to loopback themselves), loopback addresses, the addresses the HTTP listener
//! binds (any address literal when it binds a wildcard: an attacker cannot
//! re-point an address literal), and the DNS names of the TLS certificate.
//! `--allow-host NAME` adds names (`*.example.org` matches one label).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use axum::http::uri::Authority;

#[derive(Debug, Default)]
pub struct AllowedHosts {
    /// Lower-case names from `--allow-host`.
    names: Vec<String>,
    /// The TLS certificate's DNS names; replaced when the certificate is reloaded.
    cert_names: RwLock<Arc<[String]>>,
    /// Specific addresses the listener binds.
    addresses: Vec<IpAddr>,
    /// The listener binds a wildcard address: any address literal is ours.
    any_address: bool,
}

/// A `Host` header's parts, validated as an authority (no user info, path or
/// query can hide in it).
#[derive(Debug, PartialEq, Eq)]
pub struct HostHeader {
    /// Lower case, without a trailing dot; IPv6 literals without brackets.
    pub host: String,
    pub port: Option<u16>,
}

impl HostHeader {
    pub fn parse(value: &str) -> Option<HostHeader> {
        let authority: Authority = value.parse().ok()?;
        if authority.as_str().contains('@') || authority.host().is_empty() {
            return None;
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        Some(HostHeader {
            host,
            port: authority.port_u16(),
        })
    }

    /// The host as it goes into a URL: IPv6 literals in brackets.
    pub fn url_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

impl AllowedHosts {
    /// `listen`: the addresses the HTTP listeners bound.
    pub fn new(listen: &[SocketAddr], extra: &[String], cert_names: Vec<String>) -> Self {
        let ips = listen.iter().map(SocketAddr::ip);
        AllowedHosts {
            names: extra
                .iter()
                .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            cert_names: RwLock::new(lower(cert_names)),
            addresses: ips.clone().filter(|ip| !ip.is_unspecified()).collect(),
            any_address: ips.clone().any(|ip| ip.is_unspecified()),
        }
    }

    /// After a certificate reload.
    pub fn set_cert_names(&self, names: Vec<String>) {
        *self.cert_names.write().unwrap_or_else(|e| e.into_inner()) = lower(names);
    }

    pub fn permits(&self, host: &HostHeader) -> bool {
        let name = host.host.as_str();
        if let Ok(ip) = name.parse::<IpAddr>() {
            let ip = ip.to_canonical();
            return ip.is_loopback() || self.any_address || self.addresses.contains(&ip);
        }
        if name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        let cert_names = self
            .cert_names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.names
            .iter()
            .chain(cert_names.iter())
            .any(|pattern| matches(pattern, name))
    }
}

fn lower(names: Vec<String>) -> Arc<[String]> {
    names
        .into_iter()
        .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
        .collect()
}

/// `pattern` is a name, or `*.` and a name standing for any one label before it.
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(parent) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(listen: &str, extra: &[&str], cert: &[&str]) -> AllowedHosts {
        AllowedHosts::new(
            &[listen.parse().unwrap()],
            &extra.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            cert.iter().map(|s| s.to_string()).collect(),
        )
    }

    fn allowed(h: &AllowedHosts, host: &str) -> bool {
        HostHeader::parse(host).is_some_and(|host| h.permits(&host))
    }

    #[test]
    fn loopback_names_and_addresses_are_allowed_by_default() {
        let h = hosts("127.0.0.1:8080", &[], &[]);
        for ok in [
            "localhost:8080",
            "LOCALHOST",
            "localhost.",
            "app.localhost:8080",
            "127.0.0.1:8080",
            "127.0.0.2",
            "[::1]:8080",
        ] {
            assert!(allowed(&h, ok), "{ok}");
        }
    }

    #[test]
    fn a_rebound_name_is_refused() {
        let h = hosts("127.0.0.1:8080", &[], &[]);
        for bad in [
            "evil.example:8080",
            "evil.example",
            "localhost.evil.example",
            "192.0.2.1",
            "user@localhost",
            "evil.example/phish?x=",
            "",
        ] {
            assert!(!allowed(&h, bad), "{bad}");
        }
    }

    #[test]
    fn allow_host_listen_addresses_and_certificate_names_are_allowed() {
        let h = hosts(
            "192.0.2.10:443",
            &["timecho.example.org", "*.apps.example.org"],
            &["cert.example.net"],
        );
        assert!(allowed(&h, "timecho.example.org"));
        assert!(allowed(&h, "a.apps.example.org:443"));
        assert!(!allowed(&h, "a.b.apps.example.org"));
        assert!(!allowed(&h, "apps.example.org"));
        assert!(allowed(&h, "cert.example.net"));
        assert!(allowed(&h, "192.0.2.10"));
        assert!(!allowed(&h, "192.0.2.11"));
        h.set_cert_names(vec!["new.example.net".into()]);
        assert!(!allowed(&h, "cert.example.net"));
        assert!(allowed(&h, "new.example.net"));
    }

    #[test]
    fn a_wildcard_listener_takes_any_address_literal_but_no_other_name() {
        let h = hosts("0.0.0.0:8080", &[], &[]);
        assert!(allowed(&h, "192.0.2.11:8080"));
        assert!(!allowed(&h, "evil.example"));
    }

    #[test]
    fn ipv6_hosts_keep_their_brackets_in_urls() {
        let h = HostHeader::parse("[::1]:8443").unwrap();
        assert_eq!(h.host, "::1");
        assert_eq!(h.port, Some(8443));
        assert_eq!(h.url_host(), "[::1]");
        assert_eq!(
            HostHeader::parse("Example.ORG.").unwrap().url_host(),
            "example.org"
        );
    }
}
