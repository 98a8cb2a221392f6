//! The clock panel's model: the page's own probes (when to send the next, how
//! many a minute), what their echoes say of this device's clock
//! (`timecho_shared::clock` does the arithmetic), and the round trips of the
//! last minute for the sparkline.
//!
//! Times are nanoseconds since the epoch by this device's clock
//! (`performance.timeOrigin + performance.now()`).

use std::collections::VecDeque;

use timecho_shared::clock::{probe_line, stamp_nanos, Bounds, Estimator, Sample};
use timecho_shared::{Reply, TimeFormat};

use super::StampSettings;

const SECOND: i64 = 1_000_000_000;
/// At most this many probes in any minute: a handful, while the page is visible.
pub const PROBES_PER_MINUTE: usize = 6;
/// The sparkline's span.
pub const RTT_WINDOW: i64 = 60 * SECOND;
/// Probes are at least this far apart...
pub const MIN_GAP: i64 = SECOND;
/// ...and, once the estimate is as good as placed probes make it, this far.
const STEADY_GAP: i64 = 10 * SECOND;
/// Samples kept: a minute and more of probes, all of a boundary search.
const KEEP: usize = 12;
/// Samples after which the estimate is shown even if the bound is still wide
/// (a slow network cannot narrow it further).
pub const SETTLED_SAMPLES: usize = 5;
/// The sparkline spans at least this much, and at most the last minute: in
/// the first minute its points spread over what there is (the first probes
/// come a second apart).
pub const MIN_SPARK_SPAN: i64 = 2 * SECOND;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockPanel {
    estimator: Estimator,
    /// The probe on the wire: its number and when it left.
    in_flight: Option<(u64, i64)>,
    next_number: u64,
    /// When the probes of the last minute left, oldest first.
    recent_sends: VecDeque<i64>,
    /// (when it arrived, round trip) of every echo, probes and messages, for
    /// the last minute.
    rtts: VecDeque<(i64, i64)>,
}

impl Default for ClockPanel {
    fn default() -> Self {
        ClockPanel {
            estimator: Estimator::new(KEEP),
            in_flight: None,
            next_number: 1,
            recent_sends: VecDeque::new(),
            rtts: VecDeque::new(),
        }
    }
}

/// Whether the page can estimate from these stamps: it must know their
/// format (from `/api/config`, never guessed from text) and their resolution,
/// which a strftime pattern does not tell.
pub fn measurable(stamp: Option<&StampSettings>) -> Option<&StampSettings> {
    stamp.filter(|s| !matches!(s.format.format, TimeFormat::Strftime(_)))
}

impl ClockPanel {
    /// The offset's bounds, once a probe has been answered.
    pub fn bounds(&self) -> Option<Bounds> {
        self.estimator.bounds()
    }

    /// The bounds once they mean something: the probes have narrowed them as
    /// far as placed probes can (within twice the best round trip), or
    /// [`SETTLED_SAMPLES`] samples are in. Until then the panel says
    /// "measuring": one ctime sample alone is ±500 ms.
    pub fn settled(&self) -> Option<Bounds> {
        let samples = self.estimator.samples().count();
        let narrowed = samples >= 2 && self.estimator.next_probe(0).is_none();
        self.bounds()
            .filter(|_| narrowed || samples >= SETTLED_SAMPLES)
    }

    /// When the next probe should leave (it may be now or past), or `None`
    /// while one is on the wire.
    pub fn next_probe_at(&self, now: i64) -> Option<i64> {
        if self.in_flight.is_some() {
            return None;
        }
        let last = self.recent_sends.back().copied();
        let mut earliest = last.map_or(now, |t| t + MIN_GAP).max(now);
        // The budget: the oldest of the last six sends must be a minute old.
        if let (true, Some(oldest)) = (
            self.recent_sends.len() >= PROBES_PER_MINUTE,
            self.recent_sends.front(),
        ) {
            earliest = earliest.max(oldest + RTT_WINDOW);
        }
        Some(match self.estimator.next_probe(earliest) {
            Some(placed) => placed,
            // Nothing to narrow: a few quick samples for a low round trip,
            // then one now and then to follow drift.
            None if self.estimator.samples().count() < 3 => earliest,
            None => earliest.max(last.map_or(now, |t| t + STEADY_GAP)),
        })
    }

    /// The line the next probe sends.
    pub fn next_probe_line(&self) -> String {
        probe_line(self.next_number)
    }

    /// The probe `next_probe_line` gave left at `at`: its line.
    pub fn probe_sent(&mut self, at: i64) -> String {
        let number = self.next_number;
        self.next_number += 1;
        self.in_flight = Some((number, at));
        self.recent_sends.push_back(at);
        while self.recent_sends.len() > PROBES_PER_MINUTE {
            self.recent_sends.pop_front();
        }
        probe_line(number)
    }

    /// A reply line arrived at `at`: true if it is the echo of our probe, which
    /// is then taken as a sample and not shown.
    pub fn answered(&mut self, line: &str, at: i64, stamp: Option<&StampSettings>) -> bool {
        let Some((number, sent)) = self.in_flight else {
            return false;
        };
        let Reply::Stamped {
            stamp: text,
            text: echoed,
        } = Reply::parse(line)
        else {
            return false;
        };
        if echoed != probe_line(number) {
            return false;
        }
        self.in_flight = None;
        self.rtt(at, at - sent);
        let reading = measurable(stamp).and_then(|s| {
            let parsed = s.format.parse(text).ok()?;
            Some((
                stamp_nanos(&parsed, s.utc_offset_seconds)?,
                s.format.tick_nanos(),
            ))
        });
        if let Some((stamp, tick)) = reading {
            self.estimator.add(Sample {
                sent,
                received: at,
                stamp,
                tick,
            });
        }
        true
    }

    /// The socket closed: a probe on it will not be answered.
    pub fn disconnected(&mut self) {
        self.in_flight = None;
    }

    /// Notes a round trip that ended at `at` (a message's or a probe's).
    pub fn rtt(&mut self, at: i64, rtt: i64) {
        self.rtts.push_back((at, rtt));
        while self
            .rtts
            .front()
            .is_some_and(|&(t, _)| t <= at - RTT_WINDOW)
        {
            self.rtts.pop_front();
        }
    }

    /// The round trips that ended within the minute before `now`, oldest first.
    pub fn recent_rtts(&self, now: i64) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.rtts
            .iter()
            .copied()
            .filter(move |&(t, _)| t > now - RTT_WINDOW)
    }
}

/// `16:02:43` for the instant `nanos` in a zone `utc_offset_seconds` east of UTC.
pub fn wall_clock_text(nanos: i64, utc_offset_seconds: i32) -> String {
    let seconds = nanos.div_euclid(SECOND) + i64::from(utc_offset_seconds);
    let of_day = seconds.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        of_day / 3_600,
        of_day % 3_600 / 60,
        of_day % 60
    )
}

/// How much time the sparkline spans: since its oldest point, between
/// [`MIN_SPARK_SPAN`] and the last minute.
pub fn sparkline_span(rtts: &[(i64, i64)], now: i64) -> i64 {
    let since_oldest = rtts.first().map_or(0, |&(t, _)| now - t);
    since_oldest.clamp(MIN_SPARK_SPAN, RTT_WINDOW)
}

/// The sparkline's top: the longest round trip, so it touches the top.
pub fn sparkline_scale(rtts: &[(i64, i64)]) -> i64 {
    rtts.iter().map(|&(_, r)| r).max().unwrap_or(1).max(1)
}

/// The sparkline's points in a `width` x `height` box: time runs left to
/// right over [`sparkline_span`], the longest round trip touches the top.
pub fn sparkline_points(rtts: &[(i64, i64)], now: i64, width: f64, height: f64) -> Vec<(f64, f64)> {
    let longest = sparkline_scale(rtts) as f64;
    let span = sparkline_span(rtts, now) as f64;
    rtts.iter()
        .map(|&(t, rtt)| {
            let x = width * (1.0 - (now - t) as f64 / span);
            let y = height * (1.0 - rtt as f64 / longest);
            (x, y)
        })
        .collect()
}

#[cfg(test)]
mod tests;
