//! How many reply bytes each UDP source may get, so that a forged source address
//! cannot turn the service into an amplifier.
//!
//! A source is an IPv4 address or an IPv6 /64 (what one host or one customer
//! usually holds; a host can pick any address in its /64). It earns
//! [`EARN_PER_BYTE`] bytes of credit per byte it sends, and a reply is sent only
//! if it fits in that credit plus the source's [`ALLOWANCE`]; otherwise it is
//! dropped. The allowance exists because a short line's reply (the line plus a
//! stamp of about 30 bytes) is many times its size: it lets a person type a few
//! dozen lines at once, then about one every few seconds, while a flood gets
//! back at most three times what it sent plus one allowance.
//!
//! The table of sources is bounded ([`MAX_SOURCES`]). A source is forgotten once
//! its allowance has refilled, which is at most [`REFILL_WINDOW`] after it last
//! drew on it: a forgotten source comes back with a full allowance, so
//! forgetting it loses nothing but earned credit, which only makes it stricter.
//! When the table is full of sources still refilling (a flood from many forged
//! addresses), a new source is not remembered and gets only three times its
//! datagram back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tracing::warn;

/// Credit a source earns per byte it sends.
pub const EARN_PER_BYTE: u64 = 3;
/// Reply bytes a source may get beyond its credit when its allowance is full.
pub const ALLOWANCE: u64 = 1024;
/// How long an empty allowance takes to fill again, at a steady rate.
pub const REFILL_WINDOW: Duration = Duration::from_secs(60);
/// Sources remembered at once: about 5 MiB of table at most.
pub const MAX_SOURCES: usize = 65_536;
/// Unspent credit is kept up to one largest datagram's worth: it pays for the
/// replies of the datagrams that earned it, not for a later burst.
const CREDIT_CAP: u64 = 64 * 1024;
/// A full table is swept for forgettable sources at most this often, so that a
/// flood of new addresses costs one sweep per second, not one per datagram.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Time for the allowance to regain one byte: 60 s / 1024 = 58.59375 ms, exact.
const NANOS_PER_BYTE: u64 = REFILL_WINDOW.as_nanos() as u64 / ALLOWANCE;

/// Who is charged for a reply: the address's owner, as far as it can be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SourceKey {
    V4(u32),
    /// The first 64 bits of the address.
    V6(u64),
}

impl SourceKey {
    fn of(ip: IpAddr) -> SourceKey {
        // An IPv4 client of a dual-stack socket shows up as ::ffff:a.b.c.d.
        match ip.to_canonical() {
            IpAddr::V4(v4) => SourceKey::V4(v4.to_bits()),
            IpAddr::V6(v6) => SourceKey::V6((v6.to_bits() >> 64) as u64),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Source {
    /// Earned by what the source sent and not yet spent on replies.
    credit: u64,
    /// When the allowance is full again; at or before now, it is full. Kept as a
    /// time rather than a byte count so that refilling needs no periodic work
    /// and loses no fractions of a byte.
    allowance_full_at: Instant,
}

impl Source {
    fn new(now: Instant) -> Source {
        Source {
            credit: 0,
            allowance_full_at: now,
        }
    }

    fn allowance(&self, now: Instant) -> u64 {
        let missing = self.allowance_full_at.saturating_duration_since(now);
        let missing_bytes = (missing.as_nanos() as u64).div_ceil(NANOS_PER_BYTE);
        ALLOWANCE.saturating_sub(missing_bytes)
    }

    fn spend_allowance(&mut self, bytes: u64, now: Instant) {
        self.allowance_full_at =
            self.allowance_full_at.max(now) + Duration::from_nanos(bytes * NANOS_PER_BYTE);
    }

    fn forgettable(&self, now: Instant) -> bool {
        self.allowance_full_at <= now
    }
}

/// The reply budget of every source seen by one UDP socket. It lives in that
/// socket's task, so it needs no lock; once the table has grown to the number
/// of active sources, accounting a datagram allocates nothing.
#[derive(Debug)]
pub struct Budget {
    sources: HashMap<SourceKey, Source>,
    max_sources: usize,
    last_sweep: Option<Instant>,
    /// Whether the table was found full of sources that cannot be forgotten
    /// yet; logged once per such episode.
    full: bool,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::with_max_sources(MAX_SOURCES)
    }
}

impl Budget {
    fn with_max_sources(max_sources: usize) -> Budget {
        Budget {
            // std's keyed hashing (SipHash, random keys) on purpose: whoever
            // forges sources must not be able to pick colliding ones.
            sources: HashMap::new(),
            max_sources,
            last_sweep: None,
            full: false,
        }
    }

    /// Accounts a datagram of `received` bytes from `source` and charges its
    /// reply of `reply` bytes if the budget allows. False: drop the reply.
    pub fn charge(&mut self, source: IpAddr, received: usize, reply: usize, now: Instant) -> bool {
        let earned = EARN_PER_BYTE * received as u64;
        let reply = reply as u64;
        let Some(source) = self.source(SourceKey::of(source), now) else {
            return reply <= earned;
        };
        let credit = source.credit + earned;
        if let Some(left) = credit.checked_sub(reply) {
            source.credit = left.min(CREDIT_CAP);
            return true;
        }
        let short = reply - credit;
        if short <= source.allowance(now) {
            source.spend_allowance(short, now);
            source.credit = 0;
            true
        } else {
            source.credit = credit.min(CREDIT_CAP);
            false
        }
    }

    /// The source's entry, created if there is room; `None` if the table is
    /// full of sources that cannot be forgotten yet.
    fn source(&mut self, key: SourceKey, now: Instant) -> Option<&mut Source> {
        if self.sources.len() >= self.max_sources && !self.sources.contains_key(&key) {
            self.sweep(now);
        }
        if self.sources.len() < self.max_sources {
            Some(self.sources.entry(key).or_insert_with(|| Source::new(now)))
        } else {
            self.sources.get_mut(&key)
        }
    }

    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|last| now.saturating_duration_since(last) < SWEEP_INTERVAL)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.sources.retain(|_, source| !source.forgettable(now));
        let full = self.sources.len() >= self.max_sources;
        if full && !self.full {
            warn!(
                sources = self.sources.len(),
                "UDP budget table full (a flood from many addresses?): new sources get only \
                 {EARN_PER_BYTE}x their bytes back until some refill"
            );
        }
        self.full = full;
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the default stamp adds to a payload: `[Tue Nov  4 09:05:01 2026] `.
    const OVERHEAD: usize = 27;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Sends `count` datagrams of `size` bytes from `source` at `now`; returns
    /// the reply bytes the budget let through.
    fn flood(budget: &mut Budget, source: IpAddr, count: usize, size: usize, now: Instant) -> u64 {
        let reply = size + OVERHEAD;
        (0..count)
            .filter(|_| budget.charge(source, size, reply, now))
            .map(|_| reply as u64)
            .sum()
    }

    #[test]
    fn flood_of_one_byte_datagrams_gets_three_times_plus_the_allowance() {
        let mut budget = Budget::default();
        let now = Instant::now();
        let sent = 10_000;
        let replied = flood(&mut budget, ip("192.0.2.1"), sent, 1, now);
        assert!(replied <= 3 * sent as u64 + ALLOWANCE, "{replied}");
        // Nearly all of the budget is used: the reply path is throttled, not shut.
        assert!(replied + 28 * 2 >= 3 * sent as u64 + ALLOWANCE, "{replied}");
    }

    #[test]
    fn short_lines_typed_by_a_person_are_all_answered() {
        let mut budget = Budget::default();
        let source = ip("198.51.100.7");
        let start = Instant::now();
        // A burst of 30 short lines, then one line every 3 s for ten minutes.
        for i in 0..30 {
            assert!(budget.charge(source, 6, 6 + OVERHEAD, start), "line {i}");
        }
        for i in 1..=200 {
            let now = start + Duration::from_secs(3 * i);
            assert!(budget.charge(source, 6, 6 + OVERHEAD, now), "line at {i}");
        }
    }

    #[test]
    fn datagrams_larger_than_half_the_stamp_pay_for_themselves() {
        let mut budget = Budget::default();
        let now = Instant::now();
        let source = ip("203.0.113.9");
        assert_eq!(
            flood(&mut budget, source, 1000, 1400, now),
            1000 * (1400 + OVERHEAD) as u64
        );
        assert_eq!(
            flood(&mut budget, source, 1000, OVERHEAD / 2 + 1, now),
            1000 * (OVERHEAD / 2 + 1 + OVERHEAD) as u64
        );
    }

    #[test]
    fn allowance_refills_over_the_window_at_a_steady_rate() {
        let mut budget = Budget::default();
        let source = ip("192.0.2.2");
        let start = Instant::now();
        // Empty the allowance with one reply that earned nothing.
        assert!(budget.charge(source, 0, ALLOWANCE as usize, start));
        assert!(!budget.charge(source, 0, 1, start));
        let half = start + REFILL_WINDOW / 2;
        assert!(!budget.charge(source, 0, ALLOWANCE as usize / 2 + 1, half));
        assert!(budget.charge(source, 0, ALLOWANCE as usize / 2, half));
        let later = half + REFILL_WINDOW;
        assert!(budget.charge(source, 0, ALLOWANCE as usize, later));
        assert!(!budget.charge(source, 0, 1, later));
    }

    #[test]
    fn refill_is_not_lost_to_frequent_small_charges() {
        let mut budget = Budget::default();
        let source = ip("192.0.2.3");
        let start = Instant::now();
        assert!(budget.charge(source, 0, ALLOWANCE as usize, start));
        // Asking every millisecond must not stop the allowance from refilling.
        let mut answered = 0;
        for ms in 1..=60_000 {
            if budget.charge(source, 0, 1, start + Duration::from_millis(ms)) {
                answered += 1;
            }
        }
        assert!((1023..=1024).contains(&answered), "{answered}");
    }

    #[test]
    fn unspent_credit_is_capped() {
        let mut budget = Budget::default();
        let source = ip("192.0.2.4");
        let now = Instant::now();
        // 1 MB sent with tiny replies would earn 3 MB of credit without the cap.
        for _ in 0..16 {
            assert!(budget.charge(source, 65_000, 1, now));
        }
        let replied = flood(&mut budget, source, 100_000, 0, now);
        assert!(replied <= CREDIT_CAP + ALLOWANCE, "{replied}");
    }

    #[test]
    fn ipv6_sources_are_charged_per_64_and_ipv4_mapped_as_ipv4() {
        let mut budget = Budget::default();
        let now = Instant::now();
        let a = flood(&mut budget, ip("2001:db8:1:2::1"), 1000, 1, now);
        let b = flood(&mut budget, ip("2001:db8:1:2:ffff::9"), 1000, 1, now);
        assert!(a + b <= 3 * 2000 + ALLOWANCE, "{a} + {b}");
        let other_64 = flood(&mut budget, ip("2001:db8:1:3::1"), 1000, 1, now);
        assert!(other_64 >= ALLOWANCE, "{other_64}");

        let v4 = flood(&mut budget, ip("192.0.2.5"), 1000, 1, now);
        let mapped = flood(&mut budget, ip("::ffff:192.0.2.5"), 1000, 1, now);
        assert!(v4 + mapped <= 3 * 2000 + ALLOWANCE, "{v4} + {mapped}");
    }

    #[test]
    fn full_table_gives_new_sources_only_three_times_their_bytes() {
        let mut budget = Budget::with_max_sources(4);
        let now = Instant::now();
        for i in 1..=4 {
            // Each spends part of its allowance, so none can be forgotten yet.
            assert!(budget.charge(ip(&format!("192.0.2.{i}")), 1, 1 + OVERHEAD, now));
        }
        let newcomer = ip("198.51.100.1");
        assert!(!budget.charge(newcomer, 1, 1 + OVERHEAD, now));
        assert!(budget.charge(newcomer, 10, 30, now));
        assert!(!budget.charge(newcomer, 10, 31, now));
        assert_eq!(budget.remembered(), 4);
        // Remembered sources are unaffected.
        assert!(budget.charge(ip("192.0.2.1"), 1, 1 + OVERHEAD, now));
    }

    #[test]
    fn refilled_sources_are_forgotten_to_make_room() {
        let mut budget = Budget::with_max_sources(4);
        let start = Instant::now();
        for i in 1..=4 {
            assert!(budget.charge(ip(&format!("192.0.2.{i}")), 1, 1 + OVERHEAD, start));
        }
        let newcomer = ip("198.51.100.1");
        assert!(!budget.charge(newcomer, 1, 1 + OVERHEAD, start));
        // Within the sweep interval the table is not swept again.
        let soon = start + SWEEP_INTERVAL / 2;
        assert!(!budget.charge(newcomer, 1, 1 + OVERHEAD, soon));
        let refilled = start + REFILL_WINDOW;
        assert!(budget.charge(newcomer, 1, 1 + OVERHEAD, refilled));
        assert_eq!(budget.remembered(), 1);
    }
}
