//! Once a second: the server's resident memory and open descriptors from /proc,
//! and its live tasks from `/metrics` (`timecho_tasks_alive`).

use std::fs::File;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use tokio::time::{interval, Instant, MissedTickBehavior};

use super::http;
use super::Ctx;
use crate::procfs;
use crate::report::Progress;

const TASKS_METRIC: &str = "timecho_tasks_alive";
/// A scrape slower than this is a failure of the server, not of the sampler.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// One reading of the server.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Seconds since the run started.
    pub t_s: f64,
    pub warm_up: bool,
    pub rss_kib: u64,
    pub fds: u64,
    pub tasks: u64,
    /// Steady replies and errors so far, to line the figures up with the traffic.
    pub replies: u64,
    pub errors: u64,
}

/// The server's figures now; `t_s` and the traffic counts are left at zero.
pub async fn sample(pid: u32, metrics: SocketAddr, t: Duration) -> anyhow::Result<Sample> {
    let rss_kib = procfs::rss_kib(pid).context("reading its VmRSS")?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .context("listing its open descriptors")?
        .count() as u64;
    let answer = http::request(metrics, "GET", "/metrics", &[], "", SCRAPE_TIMEOUT)
        .await
        .with_context(|| format!("scraping http://{metrics}/metrics"))?;
    let tasks = tasks_alive(&answer.body).with_context(|| {
        format!(
            "no {TASKS_METRIC} in http://{metrics}/metrics (HTTP {}; under --auth use the \
             server's --metrics listener)",
            answer.status
        )
    })?;
    Ok(Sample {
        t_s: t.as_secs_f64(),
        warm_up: false,
        rss_kib,
        fds,
        tasks,
        replies: 0,
        errors: 0,
    })
}

fn tasks_alive(page: &str) -> Option<u64> {
    page.lines().find_map(|line| {
        let value = line.strip_prefix(TASKS_METRIC)?.strip_prefix(' ')?;
        value.trim().parse::<f64>().ok().map(|v| v as u64)
    })
}

/// The CSV columns, one line per [`Sample`].
const CSV_HEADER: &str = "t_s,warm_up,rss_kib,fds,tasks,replies,errors\n";

impl Sample {
    fn csv_line(&self) -> String {
        format!(
            "{:.1},{},{},{},{},{},{}\n",
            self.t_s,
            u8::from(self.warm_up),
            self.rss_kib,
            self.fds,
            self.tasks,
            self.replies,
            self.errors
        )
    }
}

/// Samples every second for `duration` (the first `warm_up` marked as such),
/// appending each to `csv`; fails when the server cannot be read.
pub async fn run(
    ctx: &Ctx,
    pid: u32,
    (duration, warm_up): (Duration, Duration),
    mut csv: Option<File>,
    quiet: bool,
) -> anyhow::Result<Vec<Sample>> {
    if let Some(file) = &mut csv {
        file.write_all(CSV_HEADER.as_bytes())
            .context("cannot write --csv")?;
    }
    let mut progress = Progress::new(quiet);
    let started = Instant::now();
    let mut tick = interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await;
    let mut samples = Vec::with_capacity(duration.as_secs() as usize + 1);
    while started.elapsed() < duration {
        tick.tick().await;
        let t = started.elapsed();
        let mut s = sample(pid, ctx.targets.metrics, t).await?;
        s.warm_up = t < warm_up;
        s.replies = ctx.tally.replies();
        s.errors = ctx.tally.errors();
        progress.show(&format!(
            "{:>5.0}s{} rss {} KiB, {} fds, {} tasks, {} replies, {} errors",
            s.t_s,
            if s.warm_up { " (warm-up)" } else { "" },
            s.rss_kib,
            s.fds,
            s.tasks,
            s.replies,
            s.errors
        ));
        if let Some(file) = &mut csv {
            file.write_all(s.csv_line().as_bytes())
                .context("cannot write --csv")?;
        }
        samples.push(s);
    }
    progress.finish();
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_one_csv_line_under_the_header() {
        let s = Sample {
            t_s: 12.0,
            warm_up: true,
            rss_kib: 23_000,
            fds: 230,
            tasks: 166,
            replies: 4_000,
            errors: 0,
        };
        assert_eq!(s.csv_line(), "12.0,1,23000,230,166,4000,0\n");
        assert_eq!(
            CSV_HEADER.trim_end().split(',').count(),
            s.csv_line().trim_end().split(',').count()
        );
    }

    #[test]
    fn the_task_gauge_is_found_among_the_metrics() {
        let page = "# HELP timecho_tasks_alive Tasks.\n# TYPE timecho_tasks_alive gauge\n\
                    timecho_tasks_alive_total 9\ntimecho_tasks_alive 42\n";
        assert_eq!(tasks_alive(page), Some(42));
        assert_eq!(tasks_alive("timecho_connections_open 3\n"), None);
    }
}
