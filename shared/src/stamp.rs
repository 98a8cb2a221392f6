//! Time stamps: the formats the server writes and the parser clients read them with.
//!
//! The format is chosen once at start-up and validated then, so a bad strftime
//! pattern is refused before the first client connects rather than at its first line.

use std::fmt::Write as _;
use std::str::FromStr;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};

/// C's `ctime()` layout, which the tutorial prints: `Wed Nov  4 09:05:01 2026`.
pub const CTIME_PATTERN: &str = "%a %b %e %H:%M:%S %Y";

/// The longest stamp a server may write. A reply is `[`, the stamp, `] ` and
/// the echo, so receivers that bound a reply by its echo (the gateway, a UDP
/// datagram) reserve `MAX_STAMP_LEN + 3` bytes beside it.
pub const MAX_STAMP_LEN: usize = 253;

/// How many fractional digits a stamp carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Seconds,
    Millis,
    Micros,
}

impl Precision {
    /// Length of one tick in nanoseconds; stamps within one tick are identical.
    pub fn tick_nanos(self) -> i64 {
        match self {
            Precision::Seconds => 1_000_000_000,
            Precision::Millis => 1_000_000,
            Precision::Micros => 1_000,
        }
    }

    fn digits(self) -> usize {
        match self {
            Precision::Seconds => 0,
            Precision::Millis => 3,
            Precision::Micros => 6,
        }
    }
}

impl FromStr for Precision {
    type Err = StampError;
    fn from_str(s: &str) -> Result<Self, StampError> {
        match s {
            "s" => Ok(Precision::Seconds),
            "ms" => Ok(Precision::Millis),
            "us" => Ok(Precision::Micros),
            other => Err(StampError::BadPrecision(other.to_owned())),
        }
    }
}

/// The layout of a stamp.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeFormat {
    /// `Tue Nov  4 09:05:01 2026`, as C's `ctime()` and Python's `time.ctime()`.
    Ctime,
    /// `2026-11-04T09:05:01.123+01:00`.
    Rfc3339,
    /// Seconds since the Unix epoch, with a fraction: `1793779501.123`.
    Unix,
    /// A strftime pattern, already checked to be valid.
    Strftime(String),
}

impl FromStr for TimeFormat {
    type Err = StampError;

    /// Accepts `ctime`, `rfc3339`, `unix`, or any pattern containing a `%`.
    fn from_str(s: &str) -> Result<Self, StampError> {
        match s {
            "ctime" => Ok(TimeFormat::Ctime),
            "rfc3339" => Ok(TimeFormat::Rfc3339),
            "unix" => Ok(TimeFormat::Unix),
            // A stamp is one line of text: a newline in it would split every reply.
            p if p.chars().any(char::is_control) => Err(StampError::ControlCharacter(p.to_owned())),
            p if p.contains('%') => {
                let items = StrftimeItems::new(p);
                if items.clone().any(|i| matches!(i, Item::Error)) {
                    return Err(StampError::BadPattern(p.to_owned()));
                }
                Ok(TimeFormat::Strftime(p.to_owned()))
            }
            other => Err(StampError::UnknownFormat(other.to_owned())),
        }
    }
}

/// Why a format could not be set up or a stamp could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    #[error("unknown time format {0:?}: use ctime, rfc3339, unix, or a strftime pattern such as \"%Y-%m-%d %H:%M:%S\"")]
    UnknownFormat(String),
    #[error("invalid strftime pattern {0:?}: see https://docs.rs/chrono/latest/chrono/format/strftime/ for the specifiers")]
    BadPattern(String),
    #[error("time format {0:?} holds a control character (such as a newline), which would split every reply")]
    ControlCharacter(String),
    #[error("unknown precision {0:?}: use s, ms or us")]
    BadPrecision(String),
    #[error("{0:?} is not a time stamp in this format")]
    Unparsable(String),
}

/// A fully specified stamp layout: the format, the precision and the zone.
#[derive(Debug, Clone, PartialEq)]
pub struct StampFormat {
    pub format: TimeFormat,
    pub precision: Precision,
    pub utc: bool,
}

impl Default for StampFormat {
    fn default() -> Self {
        Self {
            format: TimeFormat::Ctime,
            precision: Precision::Seconds,
            utc: false,
        }
    }
}

impl StampFormat {
    /// How often the stamp text can change: the cache refreshes once per tick.
    pub fn tick_nanos(&self) -> i64 {
        match self.format {
            TimeFormat::Ctime => Precision::Seconds.tick_nanos(),
            // A pattern may print any field (%f, %3f...), so it is never cached
            // for longer than a microsecond; real patterns rarely need more.
            TimeFormat::Strftime(_) => Precision::Micros.tick_nanos(),
            TimeFormat::Rfc3339 | TimeFormat::Unix => self.precision.tick_nanos(),
        }
    }

    /// Writes the stamp for `t` into `out` (appending). In local time unless `utc`.
    pub fn write(&self, t: DateTime<Utc>, out: &mut String) {
        if self.utc {
            self.write_in(&t, out)
        } else {
            self.write_local(t, out)
        }
    }

    #[cfg(feature = "clock")]
    fn write_local(&self, t: DateTime<Utc>, out: &mut String) {
        self.write_in(&t.with_timezone(&chrono::Local), out)
    }

    /// Without the system clock's zone database only UTC is known.
    #[cfg(not(feature = "clock"))]
    fn write_local(&self, t: DateTime<Utc>, out: &mut String) {
        self.write_in(&t, out)
    }

    fn write_in<Tz: TimeZone>(&self, t: &DateTime<Tz>, out: &mut String)
    where
        Tz::Offset: std::fmt::Display,
    {
        // Writing into a String cannot fail.
        let _ = match &self.format {
            TimeFormat::Ctime => write!(out, "{}", t.format(CTIME_PATTERN)),
            TimeFormat::Strftime(p) => write!(out, "{}", t.format(p)),
            TimeFormat::Rfc3339 => {
                let digits = self.precision.digits();
                let _ = write!(out, "{}", t.format("%Y-%m-%dT%H:%M:%S"));
                if digits > 0 {
                    let frac = t.timestamp_subsec_nanos() / 10u32.pow(9 - digits as u32);
                    let _ = write!(out, ".{frac:0digits$}");
                }
                if self.utc {
                    write!(out, "Z")
                } else {
                    write!(out, "{}", t.format("%:z"))
                }
            }
            TimeFormat::Unix => {
                let digits = self.precision.digits();
                let _ = write!(out, "{}", t.timestamp());
                if digits > 0 {
                    let frac = t.timestamp_subsec_nanos() / 10u32.pow(9 - digits as u32);
                    write!(out, ".{frac:0digits$}")
                } else {
                    Ok(())
                }
            }
        };
    }

    /// How long this format's stamps can be: the stamp of a moment that
    /// widens every field (a Wednesday in September, the last nanosecond of
    /// a day), in the zone the stamps are written in.
    pub fn longest_len(&self) -> usize {
        let widest = DateTime::from_timestamp(1_790_812_799, 999_999_999).unwrap_or_default();
        let mut out = String::new();
        self.write(widest, &mut out);
        out.len()
    }

    /// Reads a stamp written in this format back.
    pub fn parse(&self, s: &str) -> Result<Stamp, StampError> {
        let bad = || StampError::Unparsable(s.to_owned());
        match &self.format {
            TimeFormat::Ctime => parse_ctime(s).ok_or_else(bad),
            TimeFormat::Rfc3339 => parse_rfc3339(s).ok_or_else(bad),
            TimeFormat::Unix => parse_unix(s).ok_or_else(bad),
            TimeFormat::Strftime(p) => {
                if let Ok(t) = DateTime::parse_from_str(s, p) {
                    return Ok(Stamp::Zoned(t));
                }
                NaiveDateTime::parse_from_str(s, p)
                    .map(Stamp::Local)
                    .map_err(|_| bad())
            }
        }
    }
}

/// A parsed stamp, as precise as its format allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    /// Wall-clock time in the server's zone, which the format does not name (ctime).
    Local(NaiveDateTime),
    /// A time with its UTC offset (rfc3339).
    Zoned(DateTime<FixedOffset>),
    /// An instant (unix).
    Instant(DateTime<Utc>),
}

impl Stamp {
    /// Reads a stamp in any of the built-in formats (ctime, rfc3339, unix), for
    /// clients such as the web page that do not know how the server is set up.
    pub fn parse_any(s: &str) -> Option<Stamp> {
        parse_ctime(s)
            .or_else(|| parse_rfc3339(s))
            .or_else(|| parse_unix(s))
    }

    /// Wall-clock time as the server wrote it (for unix stamps: UTC).
    pub fn wall_clock(&self) -> NaiveDateTime {
        match self {
            Stamp::Local(t) => *t,
            Stamp::Zoned(t) => t.naive_local(),
            Stamp::Instant(t) => t.naive_utc(),
        }
    }
}

fn parse_ctime(s: &str) -> Option<Stamp> {
    NaiveDateTime::parse_from_str(s, CTIME_PATTERN)
        .ok()
        .map(Stamp::Local)
}

fn parse_rfc3339(s: &str) -> Option<Stamp> {
    DateTime::parse_from_rfc3339(s).ok().map(Stamp::Zoned)
}

fn parse_unix(s: &str) -> Option<Stamp> {
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return None;
    }
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos = if frac.is_empty() {
        0
    } else {
        frac.parse::<u32>().ok()? * 10u32.pow(9 - frac.len() as u32)
    };
    DateTime::from_timestamp(secs, nanos).map(Stamp::Instant)
}

/// The current stamp text, formatted at most once per tick.
///
/// Each connection owns one, so the hot path takes no lock and formats nothing
/// while the clock stays within the same second (or ms/us, per precision).
#[derive(Debug, Clone)]
pub struct StampCache {
    format: StampFormat,
    tick: i64,
    current_tick: i64,
    text: String,
}

impl StampCache {
    pub fn new(format: StampFormat) -> Self {
        Self {
            tick: format.tick_nanos(),
            format,
            current_tick: i64::MIN,
            text: String::with_capacity(40),
        }
    }

    /// The stamp for `now`.
    pub fn at(&mut self, now: DateTime<Utc>) -> &str {
        let nanos = now.timestamp() as i128 * 1_000_000_000 + now.timestamp_subsec_nanos() as i128;
        let tick = (nanos / self.tick as i128) as i64;
        if tick != self.current_tick {
            self.current_tick = tick;
            self.text.clear();
            self.format.write(now, &mut self.text);
        }
        &self.text
    }

    /// The stamp for the current time.
    #[cfg(feature = "clock")]
    pub fn now(&mut self) -> &str {
        self.at(Utc::now())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_pattern_with_a_control_character_is_refused() {
        for bad in ["%H:%M\n", "%H\r%M", "\t%Y"] {
            assert_eq!(
                bad.parse::<TimeFormat>(),
                Err(StampError::ControlCharacter(bad.to_owned()))
            );
        }
        assert!("%H %M".parse::<TimeFormat>().is_ok());
    }

    #[test]
    fn the_longest_stamp_is_that_of_the_widest_moment() {
        let utc = |format: &str, precision| StampFormat {
            format: format.parse().unwrap(),
            precision,
            utc: true,
        };
        // Wednesday 30 September 2026, 23:59:59.999999999 UTC.
        assert_eq!(utc("ctime", Precision::Seconds).longest_len(), 24);
        assert_eq!(
            utc("%A %B %d", Precision::Seconds).longest_len(),
            "Wednesday September 30".len()
        );
        assert_eq!(
            utc("rfc3339", Precision::Micros).longest_len(),
            "2026-09-30T23:59:59.999999Z".len()
        );
        assert_eq!(
            utc("unix", Precision::Millis).longest_len(),
            "1790812799.999".len()
        );
        let long = "%Y".repeat(70);
        assert_eq!(utc(&long, Precision::Seconds).longest_len(), 280);
    }

    use super::*;
    use proptest::prelude::*;

    fn utc(format: TimeFormat, precision: Precision) -> StampFormat {
        StampFormat {
            format,
            precision,
            utc: true,
        }
    }

    fn render(f: &StampFormat, t: DateTime<Utc>) -> String {
        let mut s = String::new();
        f.write(t, &mut s);
        s
    }

    fn at(secs: i64, nanos: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, nanos).expect("valid test time")
    }

    #[test]
    fn ctime_pads_the_day_with_a_space_like_c() {
        // 2026-11-04 09:05:01 UTC
        let f = utc(TimeFormat::Ctime, Precision::Seconds);
        assert_eq!(render(&f, at(1_793_783_101, 0)), "Wed Nov  4 09:05:01 2026");
    }

    #[test]
    fn rfc3339_honours_precision_and_zone() {
        let t = at(1_793_783_101, 123_456_789);
        let f = utc(TimeFormat::Rfc3339, Precision::Millis);
        assert_eq!(render(&f, t), "2026-11-04T09:05:01.123Z");
        let f = utc(TimeFormat::Rfc3339, Precision::Micros);
        assert_eq!(render(&f, t), "2026-11-04T09:05:01.123456Z");
        let f = utc(TimeFormat::Rfc3339, Precision::Seconds);
        assert_eq!(render(&f, t), "2026-11-04T09:05:01Z");
    }

    #[test]
    fn unix_has_a_fraction() {
        let t = at(1_793_783_101, 5_000_000);
        assert_eq!(
            render(&utc(TimeFormat::Unix, Precision::Millis), t),
            "1793783101.005"
        );
    }

    #[test]
    fn unix_in_seconds_has_no_fraction() {
        let f = utc(TimeFormat::Unix, Precision::Seconds);
        assert_eq!(render(&f, at(1_793_783_101, 999_999_999)), "1793783101");
        let f = utc(TimeFormat::Unix, Precision::Micros);
        assert_eq!(render(&f, at(1_793_783_101, 5_999)), "1793783101.000005");
    }

    #[test]
    fn unix_stamps_are_digits_with_at_most_nine_fraction_digits() {
        let f = utc(TimeFormat::Unix, Precision::Micros);
        let instant = |s: &str| match f.parse(s) {
            Ok(Stamp::Instant(t)) => Some(t),
            Ok(other) => panic!("{s:?} parsed as {other:?}"),
            Err(_) => None,
        };
        assert_eq!(instant("1793783101"), Some(at(1_793_783_101, 0)));
        assert_eq!(
            instant("1793783101.5"),
            Some(at(1_793_783_101, 500_000_000))
        );
        assert_eq!(
            instant("1793783101.123456789"),
            Some(at(1_793_783_101, 123_456_789))
        );
        assert_eq!(instant("-1"), Some(at(-1, 0)));
        for not_unix in [
            "",
            "1793783101.1234567890",
            "+1793783101",
            " 1793783101",
            "1793783101.+5",
            "1.2.3",
            "1e9",
            "0x10",
        ] {
            assert_eq!(instant(not_unix), None, "{not_unix:?}");
            assert_eq!(
                f.parse(not_unix),
                Err(StampError::Unparsable(not_unix.to_owned()))
            );
        }
    }

    #[test]
    fn cache_tick_is_the_finest_unit_the_format_prints() {
        let sec = 1_000_000_000;
        for p in [Precision::Seconds, Precision::Millis, Precision::Micros] {
            // ctime prints whole seconds whatever the precision says.
            assert_eq!(utc(TimeFormat::Ctime, p).tick_nanos(), sec);
            // A pattern may print any fraction: at most a microsecond.
            assert_eq!(
                utc(TimeFormat::Strftime("%s".into()), p).tick_nanos(),
                1_000
            );
            assert_eq!(utc(TimeFormat::Rfc3339, p).tick_nanos(), p.tick_nanos());
            assert_eq!(utc(TimeFormat::Unix, p).tick_nanos(), p.tick_nanos());
        }
        assert_eq!(Precision::Seconds.tick_nanos(), sec);
        assert_eq!(Precision::Millis.tick_nanos(), 1_000_000);
        assert_eq!(Precision::Micros.tick_nanos(), 1_000);
    }

    #[test]
    fn a_cached_stamp_is_kept_for_its_whole_tick_and_no_longer() {
        // `%f` prints nanoseconds, finer than the microsecond a pattern is
        // cached for, so what the cache keeps shows.
        let mut c = StampCache::new(utc(
            TimeFormat::Strftime("%S.%f".into()),
            Precision::Seconds,
        ));
        assert_eq!(c.at(at(100, 1_000)), "40.000001000");
        assert_eq!(c.at(at(100, 1_999)), "40.000001000");
        assert_eq!(c.at(at(100, 2_000)), "40.000002000");
        assert_eq!(c.at(at(100, 2_999)), "40.000002000");
        assert_eq!(c.at(at(101, 2_000)), "41.000002000");
    }

    #[test]
    fn cache_changes_exactly_at_second_milli_and_micro_boundaries() {
        let s = 1_800_000_000;
        for p in [Precision::Seconds, Precision::Millis, Precision::Micros] {
            let f = utc(TimeFormat::Unix, p);
            let tick = p.tick_nanos() as u32;
            let mut c = StampCache::new(f.clone());
            let mut times = vec![at(s, 0), at(s, 999_999_999), at(s + 1, 0), at(s + 2, 0)];
            if tick < 1_000_000_000 {
                times.extend([
                    at(s + 2, tick - 1),
                    at(s + 2, tick),
                    at(s + 2, 2 * tick - 1),
                ]);
                times.extend([at(s + 2, 2 * tick), at(s + 2, 999_999_999), at(s + 3, 0)]);
            }
            for t in times {
                assert_eq!(c.at(t), render(&f, t), "{p:?} at {t:?}");
            }
        }
    }

    #[cfg(feature = "clock")]
    #[test]
    fn now_is_the_stamp_of_the_current_time() {
        let f = utc(TimeFormat::Unix, Precision::Micros);
        let mut c = StampCache::new(f.clone());
        let before = truncate(Utc::now(), Precision::Micros);
        let text = c.now().to_owned();
        let after = Utc::now();
        match f.parse(&text) {
            Ok(Stamp::Instant(t)) => assert!(before <= t && t <= after, "{text:?}"),
            other => panic!("{text:?} is not a unix stamp: {other:?}"),
        }
    }

    #[test]
    fn bad_patterns_and_names_are_refused_with_a_reason() {
        assert!(matches!(
            "%Q".parse::<TimeFormat>(),
            Err(StampError::BadPattern(_))
        ));
        assert!(matches!(
            "ctimex".parse::<TimeFormat>(),
            Err(StampError::UnknownFormat(_))
        ));
        assert!("%Y-%m-%d".parse::<TimeFormat>().is_ok());
        assert!("ns".parse::<Precision>().is_err());
    }

    #[test]
    fn cache_reformats_only_when_the_tick_changes() {
        let mut c = StampCache::new(utc(TimeFormat::Ctime, Precision::Seconds));
        let first = c.at(at(100, 1)).to_owned();
        assert_eq!(c.at(at(100, 999_999_999)), first);
        assert_ne!(c.at(at(101, 0)), first);
    }

    #[test]
    fn cache_follows_the_wall_clock_when_it_is_stepped_back_or_forward() {
        // An NTP step or a manual `date`: the next stamp shows the new time at
        // once, never the cached second.
        let mut c = StampCache::new(utc(TimeFormat::Ctime, Precision::Seconds));
        let fmt = utc(TimeFormat::Ctime, Precision::Seconds);
        c.at(at(1_800_000_000, 0));
        for step in [-3_600, -1, 1, 86_400] {
            let t = at(1_800_000_000 + step, 500_000_000);
            assert_eq!(c.at(t), render(&fmt, t), "stepped by {step} s");
            c.at(at(1_800_000_000, 0));
        }
    }

    #[test]
    fn parse_any_knows_the_builtin_formats() {
        assert!(matches!(
            Stamp::parse_any("Tue Nov 24 21:35:36 2026"),
            Some(Stamp::Local(_))
        ));
        assert!(matches!(
            Stamp::parse_any("2026-11-24T21:35:36.5+01:00"),
            Some(Stamp::Zoned(_))
        ));
        assert!(matches!(
            Stamp::parse_any("1793782701.5"),
            Some(Stamp::Instant(_))
        ));
        assert_eq!(Stamp::parse_any("hello"), None);
    }

    fn truncate(t: DateTime<Utc>, p: Precision) -> DateTime<Utc> {
        let tick = p.tick_nanos() as u32;
        at(t.timestamp(), t.timestamp_subsec_nanos() / tick * tick)
    }

    proptest! {
        /// Every format, written and parsed back, gives the time it was written
        /// for, to the precision it carries.
        #[test]
        fn every_format_round_trips_through_the_parser(
            secs in 0i64..4_102_444_800, // 1970..2100
            nanos in 0u32..1_000_000_000,
            p in prop_oneof![Just(Precision::Seconds), Just(Precision::Millis), Just(Precision::Micros)],
        ) {
            let t = at(secs, nanos);
            for (format, precision) in [
                (TimeFormat::Ctime, Precision::Seconds),
                (TimeFormat::Rfc3339, p),
                (TimeFormat::Unix, p),
                (TimeFormat::Strftime("%Y-%m-%d %H:%M:%S%.6f".into()), Precision::Micros),
                (TimeFormat::Strftime("%d/%m/%Y %H:%M:%S %z".into()), Precision::Seconds),
            ] {
                let f = utc(format, precision);
                let text = render(&f, t);
                let parsed = f.parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(parsed.wall_clock(), truncate(t, precision).naive_utc(), "{}", text);
                if !matches!(f.format, TimeFormat::Strftime(_)) {
                    prop_assert!(Stamp::parse_any(&text).is_some());
                }
            }
        }

        /// Whatever times it is asked for, in whatever order, a cache that
        /// formats only when the tick changes gives the stamps that formatting
        /// each time would. Steps are whole ticks give or take a nanosecond, so
        /// tick boundaries are crossed, hit and just missed.
        #[test]
        fn cached_stamps_are_the_freshly_formatted_ones(
            // From 1970 + 100 s: the steps below go back at most 87 s.
            start in 100i64..4_102_444_800,
            p in prop_oneof![Just(Precision::Seconds), Just(Precision::Millis), Just(Precision::Micros)],
            steps in proptest::collection::vec((-3i64..=3, -1i64..=1), 1..30),
        ) {
            for format in [TimeFormat::Ctime, TimeFormat::Rfc3339, TimeFormat::Unix] {
                let f = utc(format, p);
                let mut c = StampCache::new(f.clone());
                let mut nanos = i128::from(start) * 1_000_000_000;
                for &(ticks, nudge) in &steps {
                    nanos += i128::from(ticks * f.tick_nanos() + nudge);
                    let t = at(
                        nanos.div_euclid(1_000_000_000) as i64,
                        nanos.rem_euclid(1_000_000_000) as u32,
                    );
                    prop_assert_eq!(c.at(t), render(&f, t), "{:?} {:?}", f, t);
                }
            }
        }

        /// In local time the parsed wall clock is the local wall clock.
        #[test]
        fn local_ctime_round_trips(secs in 0i64..4_102_444_800) {
            let f = StampFormat { utc: false, ..StampFormat::default() };
            let t = at(secs, 0);
            let text = render(&f, t);
            let parsed = f.parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(parsed.wall_clock(), t.with_timezone(&chrono::Local).naive_local());
        }
    }
}
