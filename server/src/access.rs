//! Network allow/deny lists, checked on every listener before a byte is read
//! (and again against the client a trusted PROXY header names).

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

#[derive(Debug, Clone, Default)]
pub struct AccessList {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

impl AccessList {
    /// Deny wins over allow; an empty allow list allows everyone not denied.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip))
    }
}

/// An address range as a rule names it, in the form clients are matched in:
/// clients are canonical (an IPv4 client of a dual-stack listener, seen as
/// `::ffff:a.b.c.d`, is `a.b.c.d`), so an IPv4-mapped range becomes its IPv4
/// range. A lone address is its own range (/32 or /128). A mapped range wider
/// than the mapped block would mix the two families and is refused.
pub fn parse_rule(text: &str) -> Result<IpNet, String> {
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => match text.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => {
                return Err(format!(
                "{text:?} is not an address range: examples: 10.0.0.0/8, 192.0.2.7, 2001:db8::/32"
            ))
            }
        },
    };
    let IpNet::V6(v6) = net else { return Ok(net) };
    let Some(v4) = v6.addr().to_ipv4_mapped() else {
        return Ok(net);
    };
    match v6.prefix_len().checked_sub(96) {
        Some(len) => Ok(IpNet::V4(
            Ipv4Net::new(v4, len)
                .expect("a prefix of at most 32")
                .trunc(),
        )),
        None => Err(format!(
            "{text:?} mixes IPv4-mapped and IPv6 addresses; write IPv4 clients as IPv4 ranges \
             (such as 10.0.0.0/8)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(allow: &[&str], deny: &[&str]) -> AccessList {
        AccessList {
            allow: allow.iter().map(|s| s.parse().unwrap()).collect(),
            deny: deny.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn deny_wins_and_allow_restricts() {
        let l = list(&["127.0.0.0/8"], &["127.0.0.2/32"]);
        assert!(l.permits("127.0.0.1".parse().unwrap()));
        assert!(!l.permits("127.0.0.2".parse().unwrap()));
        assert!(!l.permits("10.1.2.3".parse().unwrap()));
        assert!(list(&[], &[]).permits("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn v4_mapped_addresses_match_v4_ranges() {
        let l = list(&[], &["192.0.2.0/24"]);
        assert!(!l.permits("::ffff:192.0.2.9".parse().unwrap()));
    }

    #[test]
    fn rules_are_written_in_the_form_clients_are_matched_in() {
        let rule = |s: &str| parse_rule(s).map(|n| n.to_string());
        assert_eq!(rule("::ffff:127.0.0.6/128").unwrap(), "127.0.0.6/32");
        assert_eq!(rule("::ffff:10.0.0.0/104").unwrap(), "10.0.0.0/8");
        assert_eq!(rule("::ffff:127.0.0.6").unwrap(), "127.0.0.6/32");
        assert_eq!(rule("192.0.2.7").unwrap(), "192.0.2.7/32");
        assert_eq!(rule("2001:db8::/32").unwrap(), "2001:db8::/32");
        assert_eq!(rule("::1").unwrap(), "::1/128");
        assert!(rule("::ffff:0:0/80").is_err());
        assert_eq!(rule("::/0").unwrap(), "::/0");
        assert_eq!(rule("::ffff:10.1.2.3/104").unwrap(), "10.0.0.0/8");
        assert!(rule("nonsense")
            .unwrap_err()
            .contains("not an address range"));
        // The canonical rule matches the client the log names.
        let l = AccessList {
            allow: vec![],
            deny: vec![parse_rule("::ffff:127.0.0.6/128").unwrap()],
        };
        assert!(!l.permits("::ffff:127.0.0.6".parse().unwrap()));
        assert!(!l.permits("127.0.0.6".parse().unwrap()));
    }
}
