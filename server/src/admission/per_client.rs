//! Each client's share of one listener: at most `max` connections at once
//! per client ([`ClientKey`]: an IPv4 address or an IPv6 /64; behind a
//! trusted proxy, the client its header names), so that one address cannot
//! hold every connection slot and shut everyone else out.
//!
//! The table holds an entry only while its client has a connection open, so
//! it never has more entries than the listener has connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::client_key::ClientKey;

pub struct PerClient {
    max: u32,
    open: Mutex<HashMap<ClientKey, u32>>,
}

/// One connection's place in its client's share; given back when dropped.
pub struct ClientSlot {
    table: Arc<PerClient>,
    key: ClientKey,
}

impl PerClient {
    pub fn new(max: u32) -> Arc<PerClient> {
        Arc::new(PerClient {
            max: max.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more connection of `ip`'s client, unless it has its share.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let key = ClientKey::of(ip);
        let mut open = self.lock();
        let count = open.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            table: self.clone(),
            key,
        })
    }

    /// Connections one client may hold at once.
    pub fn max(&self) -> u32 {
        self.max
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ClientKey, u32>> {
        // A poisoned lock only means a holder panicked; the counts are whole.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.table.lock();
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_gets_its_share_and_no_more_while_others_are_served() {
        let table = PerClient::new(2);
        let a1 = table.take(ip("192.0.2.1")).expect("first");
        let a2 = table
            .take(ip("::ffff:192.0.2.1"))
            .expect("second, the same client");
        assert!(table.take(ip("192.0.2.1")).is_none(), "a third is refused");
        let b = table
            .take(ip("192.0.2.2"))
            .expect("another client is served");
        drop(a1);
        let a3 = table.take(ip("192.0.2.1")).expect("a place came back");
        drop((a2, a3, b));
        assert!(table.lock().is_empty(), "no entry outlives its connections");
    }

    #[test]
    fn an_ipv6_64_is_one_client() {
        let table = PerClient::new(1);
        let _one = table.take(ip("2001:db8::1")).unwrap();
        assert!(table.take(ip("2001:db8::2")).is_none());
        assert!(table.take(ip("2001:db8:0:1::1")).is_some());
    }
}
