//! How many password or token attempts one client may make.
//!
//! An attempt is counted before anything is checked: counting failures after
//! the check let every attempt that arrived before the first failure through,
//! so a burst of simultaneous wrong passwords got one argon2 check each.
//!
//! Clients are keyed by network rather than address: an IPv4 address is its
//! /32, an IPv6 one its /64 (one host commonly holds a whole /64, so keying
//! by address would give it billions of allowances), and an IPv4-mapped IPv6
//! address counts as the IPv4 one.
//!
//! The table of clients is bounded: when it is full of clients seen within the
//! last minute, a client it does not know is refused as if it had used up its
//! attempts, rather than let the table grow.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Mutex;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use prometheus_client::metrics::counter::Counter;

use super::lock;

/// The client has used up its attempts for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited;

/// Who an attempt is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4(Ipv4Addr),
    /// The first 64 bits of an IPv6 address.
    V6Net(u64),
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> ClientKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientKey::V4(v4),
            IpAddr::V6(v6) => ClientKey::V6Net((v6.to_bits() >> 64) as u64),
        }
    }
}

pub struct Limiter<C: Clock = DefaultClock> {
    attempts: RateLimiter<ClientKey, CappedStore, C, NoOpMiddleware<C::Instant>>,
    max_clients: usize,
    rate_limited: Counter,
}

impl Limiter {
    /// `per_minute` attempts a minute per client (all at once, or spread out),
    /// remembering at most `max_clients` clients.
    pub fn new(per_minute: NonZeroU32, max_clients: usize, rate_limited: Counter) -> Limiter {
        Limiter::with_clock(
            per_minute,
            max_clients,
            rate_limited,
            DefaultClock::default(),
        )
    }
}

impl<C: Clock> Limiter<C> {
    fn with_clock(
        per_minute: NonZeroU32,
        max_clients: usize,
        rate_limited: Counter,
        clock: C,
    ) -> Limiter<C> {
        let store = CappedStore {
            states: Mutex::new(HashMap::new()),
            max_clients,
        };
        Limiter {
            attempts: RateLimiter::new(Quota::per_minute(per_minute), store, clock),
            max_clients,
            rate_limited,
        }
    }

    /// Counts one attempt by `client`, or says it is one too many.
    pub fn attempt(&self, client: IpAddr) -> Result<(), RateLimited> {
        if self.attempts.len() >= self.max_clients {
            // Clients whose allowance is back to full are as good as unknown.
            self.attempts.retain_recent();
        }
        self.attempts
            .check_key(&ClientKey::from(client))
            .map_err(|_| {
                self.rate_limited.inc();
                RateLimited
            })
    }

    #[cfg(test)]
    fn clients(&self) -> usize {
        self.attempts.len()
    }
}

/// Governor's per-client state (the GCRA's theoretical arrival time), in a
/// table that does not grow past `max_clients`. Governor's own stores insert
/// every key they are asked about.
struct CappedStore {
    states: Mutex<HashMap<ClientKey, Nanos>>,
    max_clients: usize,
}

impl StateStore for CappedStore {
    type Key = ClientKey;

    fn measure_and_replace<T, F, E>(&self, key: &ClientKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut states = lock(&self.states);
        let state = states.get(key).copied();
        if state.is_none() && states.len() >= self.max_clients {
            // No room to remember this client: judge it as one whose next
            // allowed attempt lies at the end of time, which is always refused.
            return f(Some(Nanos::new(u64::MAX))).map(|(outcome, _)| outcome);
        }
        let (outcome, next) = f(state)?;
        states.insert(*key, next);
        Ok(outcome)
    }
}

impl ShrinkableKeyedStateStore<ClientKey> for CappedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        lock(&self.states).retain(|_, next| *next > drop_below);
    }

    fn len(&self) -> usize {
        lock(&self.states).len()
    }

    fn is_empty(&self) -> bool {
        lock(&self.states).is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::net::Ipv6Addr;
    use std::time::Duration;

    const FIVE: NonZeroU32 = NonZeroU32::new(5).unwrap();

    fn limiter(max_clients: usize) -> (Limiter, Counter) {
        let refused = Counter::default();
        (Limiter::new(FIVE, max_clients, refused.clone()), refused)
    }

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn allowed<C: Clock>(l: &Limiter<C>, client: IpAddr) -> usize {
        (0..20).take_while(|_| l.attempt(client).is_ok()).count()
    }

    #[test]
    fn five_attempts_then_refused_and_counted() {
        let (l, refused) = limiter(100);
        assert_eq!(allowed(&l, v4(1)), 5);
        assert_eq!(l.attempt(v4(1)), Err(RateLimited));
        assert_eq!(refused.get(), 2);
        assert_eq!(
            allowed(&l, v4(2)),
            5,
            "another address has its own allowance"
        );
    }

    #[test]
    fn one_ipv6_64_shares_one_allowance() {
        let (l, _) = limiter(100);
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:ffff:ffff:ffff:fffe".parse().unwrap();
        let elsewhere: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(
            ClientKey::from(IpAddr::V6(a)),
            ClientKey::from(IpAddr::V6(b))
        );
        for _ in 0..3 {
            l.attempt(IpAddr::V6(a)).unwrap();
        }
        assert_eq!(allowed(&l, IpAddr::V6(b)), 2);
        assert_eq!(allowed(&l, IpAddr::V6(elsewhere)), 5);
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_ipv4() {
        let (l, _) = limiter(100);
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(ClientKey::from(mapped), ClientKey::from(v4(1)));
        for _ in 0..4 {
            l.attempt(mapped).unwrap();
        }
        assert_eq!(allowed(&l, v4(1)), 1);
    }

    #[test]
    fn a_full_table_refuses_new_clients_and_keeps_serving_known_ones() {
        let (l, _) = limiter(3);
        for last in 1..=3 {
            l.attempt(v4(last)).unwrap();
        }
        assert_eq!(l.attempt(v4(4)), Err(RateLimited), "no room for a fourth");
        assert_eq!(l.clients(), 3);
        assert_eq!(allowed(&l, v4(1)), 4, "known clients keep their allowance");
        assert_eq!(l.clients(), 3);
    }

    #[test]
    fn an_attempt_comes_back_every_twelve_seconds() {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(FIVE, 100, Counter::default(), clock.clone());
        assert_eq!(allowed(&l, v4(1)), 5);
        clock.advance(Duration::from_secs(11));
        assert_eq!(allowed(&l, v4(1)), 0);
        clock.advance(Duration::from_secs(1));
        assert_eq!(allowed(&l, v4(1)), 1);
    }

    #[test]
    fn clients_back_to_a_full_allowance_make_room_in_a_full_table() {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(FIVE, 2, Counter::default(), clock.clone());
        l.attempt(v4(1)).unwrap();
        assert_eq!(allowed(&l, v4(2)), 5);
        assert_eq!(l.attempt(v4(3)), Err(RateLimited));
        // Governor forgets a client one refill (12 s) after its allowance is
        // full again: v4(1) at 24 s, v4(2) at 72 s.
        clock.advance(Duration::from_secs(25));
        assert!(l.attempt(v4(3)).is_ok(), "v4(1) was forgotten to make room");
        assert_eq!(l.clients(), 2);
        assert_eq!(
            l.attempt(v4(4)),
            Err(RateLimited),
            "v4(2) is still remembered"
        );
    }
}
