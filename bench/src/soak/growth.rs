//! The rule that tells a leak from a server breathing with its load.
//!
//! After warm-up the samples are cut in thirds. The series grows when the
//! median of the last third exceeds the median of the first third by more than
//! its tolerance. Medians, because a server's figures spike for a moment with
//! its load (a password check takes 19 MiB for about a second, a burst of churn
//! opens descriptors) and a spike in one third but not the other says nothing;
//! a leak moves the whole level, and so the median. A level that jumps once
//! early and stays flat passes; one that climbs all run fails. (The first rule
//! tried, peak against peak, failed a clean server whenever a sample caught a
//! password check in the last third only.)

use serde::Serialize;

/// Fewer samples than this cannot be cut in thirds meaningfully.
pub const MIN_SAMPLES: usize = 6;

/// How far the last third's median may rise above the first third's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tolerance {
    /// Fraction of the first third's median (0.10 = +10%).
    pub relative: f64,
    /// Plus this much, in the series' own unit.
    pub absolute: f64,
}

/// Resident memory: +10%.
pub const RSS: Tolerance = Tolerance {
    relative: 0.10,
    absolute: 0.0,
};
/// Open descriptors: +16.
pub const FDS: Tolerance = Tolerance {
    relative: 0.0,
    absolute: 16.0,
};
/// Live tasks: +16.
pub const TASKS: Tolerance = Tolerance {
    relative: 0.0,
    absolute: 16.0,
};

/// What the rule found for one series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Judgement {
    pub first_third_median: f64,
    pub last_third_median: f64,
    /// The most `last_third_median` may be.
    pub allowed: f64,
    pub growing: bool,
}

/// Judges the samples taken after warm-up; `None` when there are too few.
pub fn judge(samples: &[f64], tolerance: Tolerance) -> Option<Judgement> {
    if samples.len() < MIN_SAMPLES {
        return None;
    }
    let third = samples.len() / 3;
    let first_third_median = median(&samples[..third]);
    let last_third_median = median(&samples[samples.len() - third..]);
    let allowed = first_third_median * (1.0 + tolerance.relative) + tolerance.absolute;
    Some(Judgement {
        first_third_median,
        last_third_median,
        allowed,
        growing: last_third_median > allowed,
    })
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(n: usize, f: impl Fn(usize) -> f64) -> Vec<f64> {
        (0..n).map(f).collect()
    }

    #[test]
    fn a_flat_series_is_steady() {
        let j = judge(&[100.0; 60], FDS).unwrap();
        assert!(!j.growing);
        assert_eq!((j.first_third_median, j.last_third_median), (100.0, 100.0));
        assert_eq!(j.allowed, 116.0);
    }

    #[test]
    fn a_series_breathing_with_its_load_is_steady() {
        // Descriptors swinging by 40 with churn, around a constant level.
        let s = series(3600, |i| 200.0 + ((i * 7919) % 41) as f64);
        assert!(!judge(&s, FDS).unwrap().growing);
    }

    #[test]
    fn a_slow_steady_climb_is_growth() {
        // One descriptor leaked every 10 s: 360 over an hour.
        let s = series(3600, |i| 200.0 + (i / 10) as f64);
        let j = judge(&s, FDS).unwrap();
        assert!(j.growing, "{j:?}");
    }

    #[test]
    fn memory_may_rise_by_a_tenth() {
        let within = series(60, |i| if i < 40 { 50_000.0 } else { 54_900.0 });
        assert!(!judge(&within, RSS).unwrap().growing);
        let beyond = series(60, |i| 50_000.0 + i as f64 * 200.0);
        assert!(judge(&beyond, RSS).unwrap().growing);
    }

    #[test]
    fn a_step_that_settles_in_the_first_third_is_not_growth() {
        let s = series(90, |i| if i < 10 { 30.0 } else { 90.0 });
        assert!(!judge(&s, TASKS).unwrap().growing);
    }

    #[test]
    fn spikes_in_one_third_only_are_not_growth() {
        // A password check caught by two samples of the last third: 23 -> 42 MiB.
        let s = series(45, |i| {
            if i == 35 || i == 36 {
                42_800.0
            } else {
                23_100.0
            }
        });
        assert!(!judge(&s, RSS).unwrap().growing);
    }

    #[test]
    fn a_level_that_moves_for_most_of_the_last_third_is_growth() {
        let s = series(60, |i| if i >= 45 { 140.0 } else { 100.0 });
        assert!(judge(&s, TASKS).unwrap().growing);
    }

    #[test]
    fn medians_of_even_and_odd_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn too_few_samples_are_not_judged() {
        assert_eq!(judge(&[1.0; MIN_SAMPLES - 1], TASKS), None);
        assert!(judge(&[1.0; MIN_SAMPLES], TASKS).is_some());
    }
}
