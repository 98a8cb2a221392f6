//! The round-trip summary ping(8) prints (min/avg/max/mdev), and
//! percentiles on request.

use serde::Serialize;

/// Round trips in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub min: f64,
    pub avg: f64,
    pub max: f64,
    /// ping(8)'s mdev: the standard deviation, sqrt(mean(x²) - mean(x)²).
    pub mdev: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percentiles: Option<Percentiles>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Summary {
    /// `None` when there is no round trip to summarise.
    pub fn of(rtts: &[f64], percentiles: bool) -> Option<Summary> {
        if rtts.is_empty() {
            return None;
        }
        let n = rtts.len() as f64;
        let avg = rtts.iter().sum::<f64>() / n;
        let square = rtts.iter().map(|x| x * x).sum::<f64>() / n;
        let mut sorted = rtts.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Summary {
            min: sorted[0],
            avg: round(avg),
            max: sorted[sorted.len() - 1],
            mdev: round((square - avg * avg).max(0.0).sqrt()),
            percentiles: percentiles.then(|| Percentiles {
                p50: nearest_rank(&sorted, 50.0),
                p90: nearest_rank(&sorted, 90.0),
                p99: nearest_rank(&sorted, 99.0),
            }),
        })
    }
}

/// The nearest-rank percentile of sorted values: one that was measured.
fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// To the microsecond, for `--json`: the clock's noise is far coarser than
/// a nanosecond's fraction of a millisecond.
pub fn round(ms: f64) -> f64 {
    (ms * 1e3).round() / 1e3
}

/// Milliseconds as ping(8) prints them.
pub fn ms(value: f64) -> String {
    format!("{value:.3}")
}

/// A loss percentage: whole when it is, else to a tenth.
pub fn percent(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_ping8s() {
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0], true).unwrap();
        assert_eq!((s.min, s.avg, s.max), (1.0, 2.5, 4.0));
        assert!((s.mdev - 1.118).abs() < 0.001, "{s:?}");
        let p = s.percentiles.unwrap();
        assert_eq!((p.p50, p.p90, p.p99), (2.0, 4.0, 4.0));
        assert_eq!(Summary::of(&[], true), None);
        assert_eq!(Summary::of(&[5.0], false).unwrap().percentiles, None);
    }

    #[test]
    fn loss_is_whole_when_it_is() {
        assert_eq!(percent(0.0), "0");
        assert_eq!(percent(100.0), "100");
        assert_eq!(percent(100.0 / 3.0), "33.3");
    }
}
