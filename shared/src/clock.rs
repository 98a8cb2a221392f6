//! How far a client's clock is from the server's, estimated from echoes the way
//! NTP and `htpdate` do it: pure arithmetic on times the caller measured.
//!
//! Each exchange bounds the offset (server minus client): the server read its
//! clock somewhere between the probe leaving and its reply arriving, and its
//! stamp is truncated to a tick, so the offset lies in
//! `[stamp - received, stamp + tick - sent]`, NTP's `stamp - (sent + received) / 2`
//! give or take half the round trip and the tick. The estimate is the
//! intersection of the recent exchanges' bounds, never wider than the bound of the
//! lowest-RTT one among them. With one-second stamps that is still a second wide;
//! `next_probe` places the next probe where the server's second should change
//! (htpdate's method), and each such probe halves the window until it is about a
//! round trip wide.
//!
//! Times are nanoseconds since the Unix epoch: the client's clock for `sent`
//! and `received`, the server's for the stamp.

use std::collections::VecDeque;

use crate::stamp::Stamp;

const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// What a probe says, before its number: the echo that repeats it is the
/// probe's answer, whatever else shares the connection.
pub const PROBE: &str = "timecho-clock-probe";

/// The line of probe `number`, as `timecho clock` and the page send it.
pub fn probe_line(number: u64) -> String {
    format!("{PROBE} {number}")
}

/// One probe and its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// When the probe left, by the client's clock.
    pub sent: i64,
    /// When its reply arrived, by the client's clock.
    pub received: i64,
    /// The server's stamp: the start of the tick it was written in.
    pub stamp: i64,
    /// How long one stamp lasts (1 s for ctime, 1 µs for `--precision us`).
    pub tick: i64,
}

impl Sample {
    /// The round trip.
    pub fn rtt(&self) -> i64 {
        self.received - self.sent
    }

    /// The offsets this exchange allows.
    pub fn bounds(&self) -> Bounds {
        Bounds {
            low: self.stamp - self.received,
            high: self.stamp + self.tick - self.sent,
        }
    }
}

/// An interval that holds the true offset (server minus client), in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub low: i64,
    pub high: i64,
}

impl Bounds {
    /// The best single value: the middle.
    pub fn offset(&self) -> i64 {
        self.low + (self.high - self.low) / 2
    }

    /// How far the true offset can be from `offset()`.
    pub fn error(&self) -> i64 {
        self.high - self.offset()
    }

    pub fn width(&self) -> i64 {
        self.high - self.low
    }

    /// The offsets both allow, if any.
    pub fn intersect(&self, other: &Bounds) -> Option<Bounds> {
        let low = self.low.max(other.low);
        let high = self.high.min(other.high);
        (low <= high).then_some(Bounds { low, high })
    }
}

/// The recent samples and what they say together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimator {
    samples: VecDeque<Sample>,
    keep: usize,
}

impl Estimator {
    /// Keeps the last `keep` samples (at least one): enough to hold the probes
    /// that found the second's boundary, few enough that clock drift between
    /// the first and the last stays well inside the bound.
    pub fn new(keep: usize) -> Estimator {
        Estimator {
            samples: VecDeque::new(),
            keep: keep.max(1),
        }
    }

    /// Adds a sample. One that contradicts the others (no offset satisfies them
    /// all: a clock was stepped) starts the estimate afresh from it.
    pub fn add(&mut self, sample: Sample) {
        let agrees = self
            .bounds()
            .is_none_or(|b| b.intersect(&sample.bounds()).is_some());
        if !agrees {
            self.samples.clear();
        }
        if self.samples.len() == self.keep {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter()
    }

    /// The offsets every kept sample allows; `None` before the first.
    ///
    /// Dropping the oldest sample can only widen this; samples are never
    /// contradictory, `add` sees to it.
    pub fn bounds(&self) -> Option<Bounds> {
        let mut all = self.samples.iter().map(Sample::bounds);
        let first = all.next()?;
        all.try_fold(first, |acc, b| acc.intersect(&b))
    }

    /// The kept sample with the shortest round trip.
    pub fn best(&self) -> Option<&Sample> {
        self.samples.iter().min_by_key(|s| s.rtt())
    }

    /// When to send the next probe, no earlier than `earliest`, so that the
    /// server reads its clock in the middle of the instants its tick may change
    /// at; `None` when that cannot narrow the bound (it is already within twice
    /// the best round trip, or there is no sample yet): probe at leisure.
    pub fn next_probe(&self, earliest: i64) -> Option<i64> {
        let bounds = self.bounds()?;
        let best = self.best()?;
        let rtt = best.rtt();
        if bounds.width() < 2 * rtt {
            return None;
        }
        // The server reads its clock about half a round trip after the send;
        // its tick k starts at client time k * tick - offset.
        let lead = bounds.offset() + rtt / 2;
        let k = (earliest + lead).div_euclid(best.tick) + 1;
        Some(k * best.tick - lead)
    }
}

/// A stamp as nanoseconds since the epoch. `utc_offset_seconds` is the
/// server's zone, which a ctime stamp does not carry; the others ignore it.
pub fn stamp_nanos(stamp: &Stamp, utc_offset_seconds: i32) -> Option<i64> {
    match stamp {
        Stamp::Local(t) => t
            .and_utc()
            .timestamp_nanos_opt()
            .map(|n| n - i64::from(utc_offset_seconds) * NANOS_PER_SECOND),
        Stamp::Zoned(t) => t.timestamp_nanos_opt(),
        Stamp::Instant(t) => t.timestamp_nanos_opt(),
    }
}

/// The estimate in words read at a glance:
/// `your clock is 1.24 s behind the server, ±4 ms`.
pub fn describe(bounds: &Bounds) -> String {
    let offset = bounds.offset();
    let error = format!("±{}", duration_words(bounds.error()));
    if offset.abs() <= bounds.error() {
        return format!("your clock agrees with the server's, {error}");
    }
    let side = if offset.is_negative() {
        "ahead of"
    } else {
        "behind"
    };
    format!(
        "your clock is {} {side} the server, {error}",
        duration_words(offset.abs())
    )
}

/// `420 µs`, `4.2 ms`, `37 ms`, `1.24 s`: as many digits as a person needs
/// (a bound under a millisecond in µs, not `0.0 ms`).
pub fn duration_words(nanos: i64) -> String {
    let ms = nanos as f64 / 1e6;
    if nanos < 1_000_000 {
        format!("{:.0} µs", nanos as f64 / 1e3)
    } else if nanos < 10_000_000 {
        format!("{ms:.1} ms")
    } else if nanos < NANOS_PER_SECOND {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::{Precision, StampFormat, TimeFormat};
    use chrono::{DateTime, Utc};
    use proptest::prelude::*;

    const MS: i64 = 1_000_000;
    const S: i64 = NANOS_PER_SECOND;

    fn sample(sent: i64, received: i64, stamp: i64, tick: i64) -> Sample {
        Sample {
            sent,
            received,
            stamp,
            tick,
        }
    }

    /// What a server whose clock is `offset` ahead would answer a probe sent at
    /// `sent` and read `read_after` later, arriving after `rtt`.
    fn exchange(offset: i64, tick: i64, sent: i64, read_after: i64, rtt: i64) -> Sample {
        let server = sent + read_after + offset;
        sample(sent, sent + rtt, server.div_euclid(tick) * tick, tick)
    }

    #[test]
    fn probes_are_numbered_lines() {
        assert_eq!(probe_line(7), "timecho-clock-probe 7");
    }

    #[test]
    fn a_sample_bounds_the_offset_by_its_round_trip_and_tick() {
        let s = sample(100, 130, 1_000, 10);
        assert_eq!(s.rtt(), 30);
        assert_eq!(
            s.bounds(),
            Bounds {
                low: 870,
                high: 910
            }
        );
    }

    #[test]
    fn offset_is_the_middle_and_error_covers_both_ends() {
        let b = Bounds { low: 10, high: 21 };
        assert_eq!(b.offset(), 15);
        assert_eq!(b.error(), 6);
        assert_eq!(b.width(), 11);
        let negative = Bounds {
            low: -21,
            high: -10,
        };
        assert_eq!(negative.offset(), -16);
        assert_eq!(negative.error(), 6);
    }

    #[test]
    fn intersection_keeps_what_both_allow() {
        let a = Bounds { low: 0, high: 10 };
        let b = Bounds { low: 5, high: 20 };
        assert_eq!(a.intersect(&b), Some(Bounds { low: 5, high: 10 }));
        assert_eq!(b.intersect(&a), Some(Bounds { low: 5, high: 10 }));
        let touching = Bounds { low: 10, high: 30 };
        assert_eq!(a.intersect(&touching), Some(Bounds { low: 10, high: 10 }));
        let apart = Bounds { low: 11, high: 30 };
        assert_eq!(a.intersect(&apart), None);
    }

    #[test]
    fn an_empty_estimator_knows_nothing() {
        let e = Estimator::new(4);
        assert_eq!(e.bounds(), None);
        assert_eq!(e.best(), None);
        assert_eq!(e.next_probe(0), None);
        assert_eq!(e.samples().count(), 0);
    }

    #[test]
    fn the_estimate_is_the_intersection_of_the_samples() {
        let mut e = Estimator::new(4);
        e.add(sample(0, 100, 1_000, 1));
        e.add(sample(1_000, 1_050, 1_960, 1));
        // 900..=1001 and 910..=961.
        assert_eq!(
            e.bounds(),
            Some(Bounds {
                low: 910,
                high: 961
            })
        );
        assert_eq!(e.best(), Some(&sample(1_000, 1_050, 1_960, 1)));
    }

    #[test]
    fn the_best_sample_is_the_lowest_round_trip_wherever_it_is() {
        let mut e = Estimator::new(4);
        e.add(sample(0, 50, 0, 1));
        e.add(sample(100, 120, 100, 1));
        e.add(sample(200, 260, 200, 1));
        assert_eq!(e.best().map(Sample::rtt), Some(20));
    }

    #[test]
    fn only_the_last_samples_are_kept() {
        let mut e = Estimator::new(2);
        e.add(sample(0, 10, 0, 1));
        e.add(sample(100, 120, 100, 1));
        e.add(sample(200, 230, 200, 1));
        let kept: Vec<i64> = e.samples().map(|s| s.sent).collect();
        assert_eq!(kept, vec![100, 200]);
        assert_eq!(e.best().map(Sample::rtt), Some(20));
        // Zero is read as one: the newest sample is always kept.
        let mut one = Estimator::new(0);
        one.add(sample(0, 10, 0, 1));
        one.add(sample(100, 130, 100, 1));
        assert_eq!(one.samples().count(), 1);
        assert_eq!(one.best().map(Sample::rtt), Some(30));
    }

    #[test]
    fn a_contradicting_sample_starts_afresh() {
        let mut e = Estimator::new(4);
        e.add(sample(0, 10, 1_000, 1));
        e.add(sample(100, 110, 1_100, 1));
        // The server's clock stepped forward by a second.
        e.add(sample(200, 210, 2_200, 1));
        assert_eq!(e.samples().count(), 1);
        assert_eq!(
            e.bounds(),
            Some(Bounds {
                low: 1_990,
                high: 2_001
            })
        );
        // One that touches the estimate at an end agrees with it.
        e.add(sample(300, 310, 2_300, 1));
        assert_eq!(e.samples().count(), 2);
    }

    #[test]
    fn precise_stamps_need_no_placed_probes() {
        let mut e = Estimator::new(4);
        e.add(exchange(3_500 * MS, 1_000, 10 * S, 150_000, 300_000));
        assert_eq!(e.next_probe(11 * S), None);
    }

    #[test]
    fn the_next_probe_aims_the_server_read_at_the_middle_of_the_window() {
        let mut e = Estimator::new(8);
        // Sent at 10.0 s, the reply after 2 ms stamped 13 s: the offset is in
        // 2.998..=4.0 s, its middle 3.499 s; the server's second 14 starts at
        // client time 14 - 3.499 = 10.501 s; the probe leaves 1 ms before.
        e.add(sample(10 * S, 10 * S + 2 * MS, 13 * S, S));
        assert_eq!(e.next_probe(10 * S + 2 * MS), Some(10_500 * MS));
        // A boundary already passed aims at the next second.
        assert_eq!(e.next_probe(10_500 * MS), Some(11_500 * MS));
        assert_eq!(e.next_probe(10_500 * MS - 1), Some(10_500 * MS));
    }

    #[test]
    fn placed_probes_stop_once_the_window_is_within_two_round_trips() {
        let mut e = Estimator::new(8);
        // 1.0 s wide: worth narrowing.
        e.add(sample(0, 500 * MS, 0, S));
        assert!(e.next_probe(0).is_some());
        let mut narrow = Estimator::new(8);
        // Exactly two round trips wide (tick = rtt) is still worth a probe,
        narrow.add(sample(0, 10, 0, 10));
        assert_eq!(narrow.bounds().map(|b| b.width()), Some(20));
        assert_eq!(narrow.next_probe(0), Some(5));
        // narrower is not.
        let mut narrower = Estimator::new(8);
        narrower.add(sample(0, 10, 0, 9));
        assert_eq!(narrower.next_probe(0), None);
    }

    #[test]
    fn negative_times_round_down_to_the_tick() {
        let mut e = Estimator::new(8);
        e.add(sample(-10, 0, -100, 100));
        // Offset in -100..=10, middle -45, lead -40: the tick starting at
        // client time -60 is past, the one at 40 is next (truncating division
        // would skip to 140).
        assert_eq!(e.next_probe(-50), Some(40));
    }

    /// Runs the CLI's and the page's loop: a first probe, then placed probes.
    fn search(offset: i64, rtt: i64, read_after: i64, probes: usize) -> Estimator {
        let mut e = Estimator::new(16);
        let mut now = 1_000 * S;
        for _ in 0..probes {
            let sent = e.next_probe(now).unwrap_or(now);
            e.add(exchange(offset, S, sent, read_after, rtt));
            now = sent + rtt;
        }
        e
    }

    #[test]
    fn eight_placed_probes_find_a_second_boundary_to_a_few_milliseconds() {
        let e = search(3_500 * MS, 2 * MS, MS, 8);
        let b = e.bounds().unwrap();
        assert!(b.low <= 3_500 * MS && 3_500 * MS <= b.high, "{b:?}");
        // 1 s halved seven times, plus a round trip.
        assert!(b.width() < 11 * MS, "{b:?}");
    }

    proptest! {
        #[test]
        fn the_true_offset_is_always_within_the_bound(
            offset in -5_000 * MS..5_000 * MS,
            rtt in 1i64..50 * MS,
            read_fraction in 0.0f64..=1.0,
            tick in prop::sample::select(vec![1_000i64, MS, S]),
            sent in 0i64..100 * S,
        ) {
            let s = exchange(offset, tick, sent, (rtt as f64 * read_fraction) as i64, rtt);
            let b = s.bounds();
            prop_assert!(b.low <= offset && offset <= b.high, "{:?} {}", b, offset);
            prop_assert!((b.offset() - offset).abs() <= b.error());
            prop_assert_eq!(b.width(), rtt + tick);
        }

        #[test]
        fn the_boundary_search_converges_to_the_round_trip(
            offset in -5_000 * MS..5_000 * MS,
            rtt in 100_000i64..20 * MS,
            read_fraction in 0.0f64..=1.0,
        ) {
            let e = search(offset, rtt, (rtt as f64 * read_fraction) as i64, 12);
            let b = e.bounds().unwrap();
            prop_assert!(b.low <= offset && offset <= b.high, "{:?} {}", b, offset);
            // Twelve probes: 1 s / 2^11 (under 0.5 ms) on top of the round trip.
            prop_assert!(b.width() <= 2 * rtt + MS, "{:?} rtt {}", b, rtt);
        }
    }

    fn parsed(format: TimeFormat, precision: Precision, text: &str) -> Stamp {
        let f = StampFormat {
            format,
            precision,
            utc: false,
        };
        f.parse(text).unwrap()
    }

    #[test]
    fn stamps_become_instants_in_the_servers_zone() {
        let at: DateTime<Utc> = "2026-11-25T16:02:40Z".parse().unwrap();
        let nanos = at.timestamp_nanos_opt().unwrap();
        let ctime = parsed(
            TimeFormat::Ctime,
            Precision::Seconds,
            "Wed Nov 25 17:02:40 2026",
        );
        assert_eq!(stamp_nanos(&ctime, 3_600), Some(nanos));
        assert_eq!(stamp_nanos(&ctime, 0), Some(nanos + 3_600 * S));
        let rfc = parsed(
            TimeFormat::Rfc3339,
            Precision::Micros,
            "2026-11-25T17:02:40.000250+01:00",
        );
        assert_eq!(stamp_nanos(&rfc, -7_200), Some(nanos + 250_000));
        let unix = parsed(TimeFormat::Unix, Precision::Millis, "1795622560.125");
        assert_eq!(stamp_nanos(&unix, 3_600), Some(nanos + 125 * MS));
    }

    #[test]
    fn describe_says_which_way_and_how_sure() {
        let behind = Bounds {
            low: 1_236 * MS,
            high: 1_244 * MS,
        };
        assert_eq!(
            describe(&behind),
            "your clock is 1.24 s behind the server, ±4.0 ms"
        );
        let ahead = Bounds {
            low: -80 * MS,
            high: -40 * MS,
        };
        assert_eq!(
            describe(&ahead),
            "your clock is 60 ms ahead of the server, ±20 ms"
        );
        let agrees = Bounds {
            low: -2 * MS,
            high: 4 * MS,
        };
        assert_eq!(
            describe(&agrees),
            "your clock agrees with the server's, ±3.0 ms"
        );
        // At exactly one error bound away, it may still be right.
        let edge = Bounds {
            low: 0,
            high: 10 * MS,
        };
        assert_eq!(
            describe(&edge),
            "your clock agrees with the server's, ±5.0 ms"
        );
        let edge_ahead = Bounds {
            low: -10 * MS,
            high: 0,
        };
        assert_eq!(
            describe(&edge_ahead),
            "your clock agrees with the server's, ±5.0 ms"
        );
    }

    #[test]
    fn durations_read_in_the_unit_a_person_expects() {
        assert_eq!(duration_words(420_000), "420 µs");
        assert_eq!(duration_words(40_400), "40 µs");
        assert_eq!(duration_words(1_000_000), "1.0 ms");
        assert_eq!(duration_words(9_990_000), "10.0 ms");
        assert_eq!(duration_words(10_000_000), "10 ms");
        assert_eq!(duration_words(999_000_000), "999 ms");
        assert_eq!(duration_words(S), "1.00 s");
        assert_eq!(duration_words(3_504 * MS), "3.50 s");
    }
}
