//! How many password or token attempts one client may make.
//!
//! An attempt is counted before anything is checked: counting failures after
//! the check let every attempt that arrived before the first failure through,
//! so a burst of simultaneous wrong passwords got one argon2 check each.
//!
//! Clients are keyed by [`ClientKey`] (an IPv4 address or an IPv6 /64), so a
//! host cannot get billions of allowances by picking addresses in its /64.
//!
//! The table of clients is bounded. When it is full of clients seen within the
//! last minute, a client it does not know is counted against one allowance
//! that all such strangers share: a flood that fills the table (10,000 /64s
//! are one /50) slows newcomers down but cannot shut them out, and the table
//! does not grow. A client the table knows keeps its own allowance and never
//! falls back on the shared one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use prometheus_client::metrics::counter::Counter;

use super::lock;
use crate::client_key::ClientKey;

/// The client has used up its attempts for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited;

/// How many attempts, for whom.
#[derive(Debug, Clone, Copy)]
pub struct Allowance {
    /// Attempts one client may make in a minute (all at once, or spread out).
    pub per_client: NonZeroU32,
    /// Clients remembered at most.
    pub max_clients: usize,
    /// Attempts a minute that all clients the full table has no room for
    /// share between them.
    pub strangers: NonZeroU32,
}

type Table = Arc<Mutex<HashMap<ClientKey, Nanos>>>;

pub struct Limiter<C: Clock = DefaultClock> {
    attempts: RateLimiter<ClientKey, CappedStore, C, NoOpMiddleware<C::Instant>>,
    /// The same table the limiter's store holds, to tell a known client from
    /// a stranger before counting.
    table: Table,
    strangers: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    max_clients: usize,
    rate_limited: Counter,
}

impl Limiter {
    pub fn new(allowance: Allowance, rate_limited: Counter) -> Limiter {
        Limiter::with_clock(allowance, rate_limited, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limiter<C> {
    fn with_clock(allowance: Allowance, rate_limited: Counter, clock: C) -> Limiter<C> {
        let table = Table::default();
        let store = CappedStore {
            states: table.clone(),
            max_clients: allowance.max_clients,
        };
        Limiter {
            attempts: RateLimiter::new(
                Quota::per_minute(allowance.per_client),
                store,
                clock.clone(),
            ),
            table,
            strangers: RateLimiter::direct_with_clock(
                Quota::per_minute(allowance.strangers),
                clock,
            ),
            max_clients: allowance.max_clients,
            rate_limited,
        }
    }

    /// Counts one attempt by `client`, or says it is one too many.
    pub fn attempt(&self, client: IpAddr) -> Result<(), RateLimited> {
        if self.attempts.len() >= self.max_clients {
            // Clients whose allowance is back to full are as good as unknown.
            self.attempts.retain_recent();
        }
        let key = ClientKey::of(client);
        let stranger = {
            let table = lock(&self.table);
            table.len() >= self.max_clients && !table.contains_key(&key)
        };
        // Between the look and the count the table may change; either way
        // the outcome is one a moment earlier or later would have had (the
        // store itself refuses a newcomer it has no room for).
        let counted = match stranger {
            true => self.strangers.check().map_err(drop),
            false => self.attempts.check_key(&key).map_err(drop),
        };
        counted.map_err(|()| {
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
    states: Table,
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
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    const FIVE: NonZeroU32 = NonZeroU32::new(5).unwrap();
    const TWO: NonZeroU32 = NonZeroU32::new(2).unwrap();

    fn allowance(max_clients: usize) -> Allowance {
        Allowance {
            per_client: FIVE,
            max_clients,
            strangers: TWO,
        }
    }

    fn limiter(max_clients: usize) -> (Limiter, Counter) {
        let refused = Counter::default();
        (
            Limiter::new(allowance(max_clients), refused.clone()),
            refused,
        )
    }

    fn with_fake_clock(max_clients: usize) -> (Limiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(allowance(max_clients), Counter::default(), clock.clone());
        (l, clock)
    }

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn allowed<C: Clock + Clone>(l: &Limiter<C>, client: IpAddr) -> usize {
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
        for _ in 0..4 {
            l.attempt(mapped).unwrap();
        }
        assert_eq!(allowed(&l, v4(1)), 1);
    }

    #[test]
    fn a_full_table_gives_strangers_a_shared_allowance_and_keeps_known_ones() {
        let (l, _) = limiter(3);
        for last in 1..=3 {
            l.attempt(v4(last)).unwrap();
        }
        // Two attempts a minute for everyone the table has no room for...
        assert!(l.attempt(v4(4)).is_ok(), "a stranger is let in");
        assert!(l.attempt(v4(5)).is_ok(), "so is another");
        assert_eq!(
            l.attempt(v4(6)),
            Err(RateLimited),
            "the shared allowance is used up"
        );
        assert_eq!(l.clients(), 3, "strangers are not remembered");
        // ...while known clients keep their own, and do not touch the shared one.
        assert_eq!(allowed(&l, v4(1)), 4, "known clients keep their allowance");
        assert_eq!(l.attempt(v4(1)), Err(RateLimited));
        assert_eq!(l.clients(), 3);
    }

    #[test]
    fn a_table_kept_full_by_a_flood_slows_strangers_but_does_not_lock_them_out() {
        let (l, clock) = with_fake_clock(1000);
        // 2,000 /64s of one /50: the first 1,000 fill the table, the rest use
        // up the strangers' allowance.
        let net = |n: u32| {
            IpAddr::V6(Ipv6Addr::from_bits(
                (0x2001_0db8_u128 << 96) | (u128::from(n) << 64),
            ))
        };
        for n in 0..2000 {
            let _ = l.attempt(net(n));
        }
        assert_eq!(l.clients(), 1000);
        let stranger = v4(200);
        assert_eq!(l.attempt(stranger), Err(RateLimited));
        // The flood keeps the table full; the shared allowance still refills
        // (one attempt every 30 s), and a stranger asking then is let in.
        clock.advance(Duration::from_secs(30));
        for n in 0..1000 {
            let _ = l.attempt(net(n));
        }
        assert_eq!(l.clients(), 1000);
        assert!(l.attempt(stranger).is_ok(), "let in at the refill");
        assert_eq!(
            l.attempt(v4(201)),
            Err(RateLimited),
            "one refill, one attempt"
        );
    }

    #[test]
    fn an_attempt_comes_back_every_twelve_seconds() {
        let (l, clock) = with_fake_clock(100);
        assert_eq!(allowed(&l, v4(1)), 5);
        clock.advance(Duration::from_secs(11));
        assert_eq!(allowed(&l, v4(1)), 0);
        clock.advance(Duration::from_secs(1));
        assert_eq!(allowed(&l, v4(1)), 1);
    }

    #[test]
    fn clients_back_to_a_full_allowance_make_room_in_a_full_table() {
        let (l, clock) = with_fake_clock(2);
        l.attempt(v4(1)).unwrap();
        assert_eq!(allowed(&l, v4(2)), 5);
        assert_eq!(allowed(&l, v4(3)), 2, "a stranger, on the shared allowance");
        // Governor forgets a client one refill (12 s) after its allowance is
        // full again: v4(1) at 24 s, v4(2) at 72 s.
        clock.advance(Duration::from_secs(25));
        assert_eq!(allowed(&l, v4(3)), 5, "v4(1) was forgotten to make room");
        assert_eq!(l.clients(), 2);
        assert_eq!(
            allowed(&l, v4(4)),
            0,
            "v4(2) is still remembered, and v4(3) used the shared allowance"
        );
    }
}
