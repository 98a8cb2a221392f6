//! Network allow/deny lists, checked on every listener before a byte is read
//! (and again against the client a trusted PROXY header names).

use std::net::IpAddr;

use ipnet::IpNet;

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
}
