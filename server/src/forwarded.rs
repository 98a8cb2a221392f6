//! Who a browser is behind an HTTP proxy that speaks no PROXY protocol
//! (nginx, Traefik, a cloud load balancer): the client named in
//! `X-Forwarded-For` or `Forwarded: for=`, believed only from a peer in
//! `--trusted-proxy` and only with `--forwarded-headers`.
//!
//! Every hop a proxy appends is to the right of what it received, so the
//! client is the right-most address that is not itself a trusted proxy:
//! whatever a browser wrote further left is its own claim and is skipped.
//! A header that does not parse (a hop that is no address, `unknown`, an
//! obfuscated name, too many hops), or two headers that disagree, name no
//! one: the request is then the peer's own.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// More hops than any real chain of proxies: such a header names no one.
const MAX_HOPS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedPolicy {
    /// `--trusted-proxy`: the peers whose headers are believed, and the
    /// hops skipped when walking a chain from the right.
    pub trusted: Vec<IpNet>,
}

impl ForwardedPolicy {
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client a request from `peer` is for: the right-most untrusted hop
    /// of its forwarding headers when `peer` is trusted, else `peer`.
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
        if !self.trusts(peer.ip()) {
            return peer;
        }
        let chains = [x_forwarded_for(headers), forwarded_for(headers)];
        let mut named = chains
            .into_iter()
            .flatten()
            .map(|hops| hops.and_then(|h| self.rightmost_untrusted(&h)));
        let client = match (named.next(), named.next()) {
            (Some(Some(a)), None) | (None, Some(Some(a))) => Some(a),
            (Some(Some(a)), Some(Some(b))) if a == b => Some(a),
            _ => None,
        };
        client.map_or(peer, |ip| SocketAddr::new(ip.to_canonical(), 0))
    }

    fn rightmost_untrusted(&self, hops: &[IpAddr]) -> Option<IpAddr> {
        // Every hop trusted: the first of them is as far as the chain goes.
        let found = hops.iter().rev().find(|ip| !self.trusts(**ip));
        found.or(hops.first()).copied()
    }
}

/// One hop as proxies write it: an address, with or without a port, IPv6
/// optionally in brackets.
fn hop(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    text.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// The hops of every `X-Forwarded-For` header, in order: `None` when there
/// is none, `Some(None)` when one does not parse.
fn x_forwarded_for(headers: &HeaderMap) -> Option<Option<Vec<IpAddr>>> {
    let mut values = headers.get_all("x-forwarded-for").iter().peekable();
    values.peek()?;
    let mut hops = Vec::new();
    for value in values {
        let Ok(value) = value.to_str() else {
            return Some(None);
        };
        for item in value.split(',') {
            match hop(item) {
                Some(ip) if hops.len() < MAX_HOPS => hops.push(ip),
                _ => return Some(None),
            }
        }
    }
    Some(Some(hops))
}

/// The `for=` hops of every `Forwarded` header (RFC 7239), in order, as
/// [`x_forwarded_for`] gives them. An element without `for=` is no hop.
fn forwarded_for(headers: &HeaderMap) -> Option<Option<Vec<IpAddr>>> {
    let mut values = headers.get_all("forwarded").iter().peekable();
    values.peek()?;
    let mut hops = Vec::new();
    for value in values {
        let Ok(value) = value.to_str() else {
            return Some(None);
        };
        for element in value.split(',') {
            for pair in element.split(';') {
                let Some((key, node)) = pair.split_once('=') else {
                    continue;
                };
                if !key.trim().eq_ignore_ascii_case("for") {
                    continue;
                }
                let node = node.trim();
                let node = node
                    .strip_prefix('"')
                    .and_then(|n| n.strip_suffix('"'))
                    .unwrap_or(node);
                match hop(node) {
                    Some(ip) if hops.len() < MAX_HOPS => hops.push(ip),
                    // `unknown`, `_hidden`, or no address at all.
                    _ => return Some(None),
                }
            }
        }
    }
    Some(Some(hops))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ForwardedPolicy {
        ForwardedPolicy {
            trusted: vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        }
    }

    fn client_of(peer: &str, headers: &[(&str, &str)]) -> String {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        policy()
            .client(peer.parse().unwrap(), &map)
            .ip()
            .to_string()
    }

    const PROXY: &str = "10.0.0.5:40000";

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let xff = "x-forwarded-for";
        assert_eq!(client_of(PROXY, &[(xff, "203.0.113.7")]), "203.0.113.7");
        // What the browser claimed is left of what the proxy appended.
        assert_eq!(
            client_of(PROXY, &[(xff, "1.1.1.1, 203.0.113.7")]),
            "203.0.113.7"
        );
        // Trusted hops on the right are skipped.
        assert_eq!(
            client_of(PROXY, &[(xff, "1.1.1.1, 203.0.113.7, 10.1.1.1")]),
            "203.0.113.7"
        );
        // Two headers are one list; ports and brackets as proxies write them.
        assert_eq!(
            client_of(PROXY, &[(xff, "1.1.1.1"), (xff, "203.0.113.7:5555")]),
            "203.0.113.7"
        );
        assert_eq!(
            client_of(PROXY, &[(xff, "[2001:db8::7]:443")]),
            "2001:db8::7"
        );
        assert_eq!(
            client_of(PROXY, &[(xff, "::ffff:203.0.113.7")]),
            "203.0.113.7"
        );
        // All trusted: the left-most is as far as it goes.
        assert_eq!(client_of(PROXY, &[(xff, "10.9.9.9, 10.1.1.1")]), "10.9.9.9");
    }

    #[test]
    fn forwarded_for_is_read_as_rfc_7239_writes_it() {
        let fwd = "forwarded";
        assert_eq!(
            client_of(PROXY, &[(fwd, "for=1.1.1.1, for=203.0.113.7;proto=https")]),
            "203.0.113.7"
        );
        assert_eq!(
            client_of(PROXY, &[(fwd, r#"For="[2001:db8:cafe::17]:4711""#)]),
            "2001:db8:cafe::17"
        );
        assert_eq!(
            client_of(PROXY, &[(fwd, "proto=http;by=10.0.0.5")]),
            "10.0.0.5"
        );
        // Both headers, agreeing.
        assert_eq!(
            client_of(
                PROXY,
                &[(fwd, "for=203.0.113.7"), ("x-forwarded-for", "203.0.113.7")]
            ),
            "203.0.113.7"
        );
    }

    #[test]
    fn headers_that_name_no_one_leave_the_peer_as_the_client() {
        let many_hops = (0..=MAX_HOPS)
            .map(|n| format!("198.51.100.{n}"))
            .collect::<Vec<_>>()
            .join(", ");
        for headers in [
            vec![("x-forwarded-for", "not an address")],
            vec![("x-forwarded-for", "203.0.113.7,")],
            vec![("x-forwarded-for", "")],
            vec![("forwarded", "for=unknown")],
            vec![("forwarded", "for=_hidden, for=203.0.113.7")],
            vec![("x-forwarded-for", &many_hops)],
            // Two headers naming different clients: a forgery on one side.
            vec![
                ("x-forwarded-for", "1.1.1.1"),
                ("forwarded", "for=203.0.113.7"),
            ],
        ] {
            assert_eq!(client_of(PROXY, &headers), "10.0.0.5", "{headers:?}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_its_own_client_whatever_it_sends() {
        let peer = "198.51.100.9:1234";
        assert_eq!(
            client_of(peer, &[("x-forwarded-for", "203.0.113.7")]),
            "198.51.100.9"
        );
        assert_eq!(
            client_of(peer, &[("forwarded", "for=203.0.113.7")]),
            "198.51.100.9"
        );
    }
}
