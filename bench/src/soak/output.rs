//! What a soak prints: the judged series and the traffic as a table or JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::growth::{self, Judgement, Tolerance};
use super::sampler::Sample;
use super::tally::{Counts, Tally};
use super::SoakArgs;

#[derive(Debug, Serialize)]
pub struct SoakReport {
    pub duration_s: f64,
    pub warm_up_s: f64,
    pub series: Vec<Series>,
    pub traffic: Counts,
    pub passed: bool,
    pub samples: Vec<Sample>,
}

/// One judged series.
#[derive(Debug, Serialize)]
pub struct Series {
    pub name: &'static str,
    pub unit: &'static str,
    pub tolerance: Tolerance,
    /// `None` when too few samples were taken after warm-up.
    pub judgement: Option<Judgement>,
    pub min: f64,
    pub max: f64,
    pub last: f64,
}

impl SoakReport {
    pub fn new(args: &SoakArgs, samples: Vec<Sample>, tally: &Tally) -> SoakReport {
        let judged: Vec<&Sample> = samples.iter().filter(|s| !s.warm_up).collect();
        let series = |name, unit, tolerance, f: fn(&Sample) -> u64| {
            let values: Vec<f64> = judged.iter().map(|s| f(s) as f64).collect();
            Series {
                name,
                unit,
                tolerance,
                judgement: growth::judge(&values, tolerance),
                min: values.iter().copied().fold(f64::INFINITY, f64::min),
                max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                last: values.last().copied().unwrap_or(f64::NAN),
            }
        };
        let series = vec![
            series("rss", "KiB", growth::RSS, |s| s.rss_kib),
            series("fds", "", growth::FDS, |s| s.fds),
            series("tasks", "", growth::TASKS, |s| s.tasks),
        ];
        let traffic = tally.counts();
        let passed = traffic.errors == 0
            && series
                .iter()
                .all(|s| s.judgement.is_some_and(|j| !j.growing));
        SoakReport {
            duration_s: args.duration.as_secs_f64(),
            warm_up_s: args.warm_up.as_secs_f64(),
            series,
            traffic,
            passed,
            samples,
        }
    }

    pub fn passed(&self) -> bool {
        self.passed
    }

    pub fn text(&self) -> String {
        let mut t = String::new();
        let judged = self.samples.iter().filter(|s| !s.warm_up).count();
        let _ = writeln!(
            t,
            "soak: {:.0} s, first {:.0} s warm-up, {judged} samples judged \
             (median of the last third vs median of the first third)",
            self.duration_s, self.warm_up_s
        );
        let _ = writeln!(
            t,
            "  {:<6} {:>10} {:>10} {:>10} {:>12} {:>12} {:>10}  verdict",
            "series", "min", "max", "last", "1st 3rd", "last 3rd", "allowed"
        );
        for s in &self.series {
            let (first, last, allowed, verdict) = match s.judgement {
                Some(j) => (
                    j.first_third_median,
                    j.last_third_median,
                    j.allowed,
                    if j.growing { "GROWING" } else { "steady" },
                ),
                None => (f64::NAN, f64::NAN, f64::NAN, "too few samples"),
            };
            let _ = writeln!(
                t,
                "  {:<6} {:>10.0} {:>10.0} {:>10.0} {:>12.0} {:>12.0} {:>10.0}  {verdict}{}",
                s.name,
                s.min,
                s.max,
                s.last,
                first,
                last,
                allowed,
                if s.unit.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", s.unit)
                }
            );
        }
        let c = &self.traffic;
        let _ = writeln!(
            t,
            "traffic: {} steady replies, {} churned connections, {} idle clients held \
             ({} closed by the server), {} oversize, {} garbage, {} broken HTTP, \
             {} sign-ins, {} sign-outs, {} renewals, {} token reopens",
            c.steady_replies,
            c.churned,
            c.idle_opened,
            c.idle_closed_by_server,
            c.oversize,
            c.garbage,
            c.bad_http,
            c.sign_ins,
            c.sign_outs,
            c.renewals,
            c.token_reopens
        );
        let _ = writeln!(t, "errors: {}", c.errors);
        for e in &c.first_errors {
            let _ = writeln!(t, "  {e}");
        }
        let _ = writeln!(t, "{}", if self.passed { "PASS" } else { "FAIL" });
        t
    }
}
