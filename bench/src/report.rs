//! What a run prints: the progress line on stderr, then the report on stdout,
//! as text for people or as one JSON object for scripts.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde::Serialize;

use super::stats::{Errors, Latency};

/// Figures of a load run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub label: Option<String>,
    /// `tcp`, `ws-text` or `ws-binary`.
    pub mode: &'static str,
    pub target: String,
    pub connections: usize,
    /// Connections that opened (and upgraded, for WebSockets).
    pub connected: usize,
    pub pipeline: usize,
    /// `--rate`: messages a second offered on a fixed schedule (open loop); `None`
    /// for a closed loop of `pipeline` requests in flight per connection.
    pub offered_rate: Option<f64>,
    pub size: usize,
    pub warmup_s: f64,
    pub duration_s: f64,
    /// Replies received and verified during the measurement.
    pub messages: u64,
    /// `messages` per second.
    pub throughput: f64,
    /// `None` when no reply was measured.
    pub latency_us: Option<Latency>,
    /// CPU seconds the --server-pid processes spent during the measurement.
    pub server_cpu_s: Option<f64>,
    /// Server CPU microseconds per reply measured.
    pub server_cpu_us_per_msg: Option<f64>,
    /// CPU seconds this load generator spent during the measurement.
    pub bench_cpu_s: Option<f64>,
    pub errors: Errors,
    pub errors_total: u64,
    pub first_error: Option<String>,
}

/// Figures of an idle run.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub label: Option<String>,
    pub mode: &'static str,
    pub target: String,
    pub connections: usize,
    pub connected: usize,
    /// Connections still open when memory was read.
    pub alive: usize,
    pub server_pids: Vec<u32>,
    pub server_rss_before_kib: Option<u64>,
    pub server_rss_after_kib: Option<u64>,
    /// Growth of the servers' RSS divided by `alive`.
    pub rss_per_connection_kib: Option<f64>,
    pub errors: Errors,
    pub errors_total: u64,
    pub first_error: Option<String>,
}

impl LoadReport {
    pub fn text(&self) -> String {
        let load = match self.offered_rate {
            Some(rate) => format!("{rate:.0} msg/s offered (open loop)"),
            None => format!("{} in flight", self.pipeline),
        };
        let mut s = format!(
            "timecho-bench {} {}: {} connection{} x {load}, {}-byte messages, {:.1}s after {:.1}s warm-up\n",
            self.mode,
            self.target,
            self.connections,
            if self.connections == 1 { "" } else { "s" },
            self.size,
            self.duration_s,
            self.warmup_s,
        );
        if self.connected < self.connections {
            let _ = writeln!(
                s,
                "  connected    {} of {}",
                self.connected, self.connections
            );
        }
        let _ = writeln!(
            s,
            "  throughput   {:.0} messages/s ({} replies verified)",
            self.throughput, self.messages
        );
        match &self.latency_us {
            Some(l) => {
                let _ = writeln!(
                    s,
                    "  latency      p50 {}  p99 {}  p99.9 {}  max {}  (mean {}, min {})",
                    us(l.p50),
                    us(l.p99),
                    us(l.p999),
                    us(l.max),
                    us(l.mean),
                    us(l.min)
                );
            }
            None => s.push_str("  latency      no reply measured\n"),
        }
        if let Some(cpu) = self.server_cpu_s {
            let per_core = 100.0 * cpu / self.duration_s;
            let _ = write!(s, "  server CPU   {cpu:.2}s ({per_core:.0}% of one core)");
            if let Some(per) = self.server_cpu_us_per_msg {
                let _ = write!(s, ", {per:.2}us per message");
            }
            s.push('\n');
        }
        if let Some(cpu) = self.bench_cpu_s {
            let per_core = 100.0 * cpu / self.duration_s;
            let _ = writeln!(s, "  bench CPU    {cpu:.2}s ({per_core:.0}% of one core)");
        }
        errors_text(&mut s, &self.errors, self.first_error.as_deref());
        s
    }
}

impl IdleReport {
    pub fn text(&self) -> String {
        let mut s = format!(
            "timecho-bench {} {} --idle: {} connections, {} opened, {} still open\n",
            self.mode, self.target, self.connections, self.connected, self.alive
        );
        if let (Some(before), Some(after)) = (self.server_rss_before_kib, self.server_rss_after_kib)
        {
            let _ = writeln!(
                s,
                "  server RSS   {before} KiB before, {after} KiB after (pid {:?})",
                self.server_pids
            );
        }
        if let Some(per) = self.rss_per_connection_kib {
            let _ = writeln!(s, "  per conn     {per:.2} KiB");
        }
        errors_text(&mut s, &self.errors, self.first_error.as_deref());
        s
    }
}

fn errors_text(s: &mut String, e: &Errors, first: Option<&str>) {
    if e.total() == 0 {
        s.push_str("  errors       0\n");
        return;
    }
    let _ = writeln!(
        s,
        "  errors       {} (mismatched {}, timeouts {}, closed {}, connect failed {})",
        e.total(),
        e.mismatched,
        e.timeouts,
        e.closed,
        e.connect_failed
    );
    if let Some(first) = first {
        let _ = writeln!(s, "  first error  {first}");
    }
}

/// A latency in microseconds, in the unit that reads best.
pub fn us(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.1}us")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1_000.0)
    } else {
        format!("{:.2}s", us / 1_000_000.0)
    }
}

/// The once-a-second line on stderr: rewritten in place on a terminal, one line
/// per second otherwise (so a log shows the whole run), or nothing with --quiet.
pub struct Progress {
    enabled: bool,
    terminal: bool,
    shown: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress {
            enabled: !quiet,
            terminal: std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    pub fn show(&mut self, line: &str) {
        if !self.enabled {
            return;
        }
        let mut err = std::io::stderr().lock();
        // A progress line that cannot be written is not worth stopping the run for.
        let _ = if self.terminal {
            write!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
        self.shown = true;
    }

    /// Ends the rewritten line so the report starts on a line of its own.
    pub fn finish(&mut self) {
        if self.enabled && self.terminal && self.shown {
            eprintln!();
        }
        self.shown = false;
    }
}

/// The progress line of a load run for the second that ended at `elapsed`
/// since the load started.
pub fn load_line(
    elapsed: Duration,
    warmup: Duration,
    per_second: u64,
    p99_ns: Option<u64>,
    errors: u64,
    live: usize,
) -> String {
    let phase = if elapsed.saturating_sub(Duration::from_secs(1)) < warmup {
        "warm-up"
    } else {
        "measure"
    };
    let p99 = p99_ns.map_or_else(|| "-".to_owned(), |ns| us(ns as f64 / 1_000.0));
    format!(
        "[{:>4.0}s {phase}] {per_second:>9} msg/s  p99 {p99:>8}  errors {errors}  connections {live}",
        elapsed.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> LoadReport {
        LoadReport {
            label: Some("x".into()),
            mode: "tcp",
            target: "127.0.0.1:8899".into(),
            connections: 50,
            connected: 50,
            pipeline: 32,
            offered_rate: None,
            size: 16,
            warmup_s: 2.0,
            duration_s: 10.0,
            messages: 12_345_678,
            throughput: 1_234_567.8,
            latency_us: Some(Latency {
                min: 3.0,
                mean: 40.0,
                p50: 35.25,
                p90: 60.0,
                p99: 950.0,
                p999: 1_250.0,
                max: 2_500_000.0,
            }),
            server_cpu_s: Some(5.0),
            server_cpu_us_per_msg: Some(0.405),
            bench_cpu_s: None,
            errors: Errors::default(),
            errors_total: 0,
            first_error: None,
        }
    }

    #[test]
    fn latencies_read_in_a_fitting_unit() {
        assert_eq!(us(35.25), "35.2us");
        assert_eq!(us(1_250.0), "1.25ms");
        assert_eq!(us(2_500_000.0), "2.50s");
    }

    #[test]
    fn text_report_shows_throughput_percentiles_and_errors() {
        let text = report().text();
        assert!(text.contains("1234568 messages/s"), "{text}");
        assert!(
            text.contains("p50 35.2us  p99 950.0us  p99.9 1.25ms  max 2.50s"),
            "{text}"
        );
        assert!(text.contains("errors       0"), "{text}");
        assert!(
            text.contains("server CPU   5.00s (50% of one core), 0.41us per message"),
            "{text}"
        );
    }

    #[test]
    fn errors_are_broken_down_with_the_first_one() {
        let mut r = report();
        r.errors.mismatched = 2;
        r.errors.timeouts = 1;
        r.first_error = Some("connection 3: expected ...".into());
        let text = r.text();
        assert!(
            text.contains("errors       3 (mismatched 2, timeouts 1"),
            "{text}"
        );
        assert!(text.contains("first error  connection 3"), "{text}");
    }

    #[test]
    fn json_report_has_every_figure() {
        let json: serde_json::Value = serde_json::to_value(report()).unwrap();
        assert_eq!(json["throughput"], 1_234_567.8);
        assert_eq!(json["latency_us"]["p999"], 1_250.0);
        assert_eq!(json["errors"]["mismatched"], 0);
        assert_eq!(json["pipeline"], 32);
    }

    #[test]
    fn progress_line_names_the_phase() {
        let line = load_line(
            Duration::from_secs(2),
            Duration::from_secs(2),
            1000,
            Some(25_000),
            0,
            50,
        );
        assert!(
            line.contains("warm-up") && line.contains("p99   25.0us"),
            "{line}"
        );
        let line = load_line(
            Duration::from_secs(3),
            Duration::from_secs(2),
            0,
            None,
            1,
            0,
        );
        assert!(
            line.contains("measure") && line.contains("errors 1"),
            "{line}"
        );
    }
}
