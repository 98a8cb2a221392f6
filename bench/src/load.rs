//! A load run: open every connection, start them together, warm up, measure,
//! and collect the replies still owed before closing.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{interval_at, sleep_until, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::args::LoadArgs;
use super::fleet::{self, Opener};
use super::pacer::Pacer;
use super::procfs;
use super::report::{self, LoadReport, Progress};
use super::schedule::Schedule;
use super::stats::{Latency, Recorder};

pub async fn run(opener: Arc<Opener>, args: &LoadArgs) -> anyhow::Result<LoadReport> {
    if !args.server_pid.is_empty() {
        procfs::cpu_time(&args.server_pid).with_context(|| {
            format!(
                "cannot read the CPU time of --server-pid {:?}",
                args.server_pid
            )
        })?;
    }
    let recorder = Arc::new(Recorder::new());
    let mut progress = Progress::new(args.quiet);
    let (start_tx, start_rx) = watch::channel(None::<Schedule>);
    // Connections close only once the servers' CPU time has been read at the end.
    let sampled = CancellationToken::new();
    let (ready_tx, ready_rx) = mpsc::unbounded_channel();
    let pacer = args
        .rate
        .map(|rate| Pacer::new(rate, args.connections, args.precise_pacing));
    let mut tasks = JoinSet::new();
    for index in 0..args.connections {
        let opener = opener.clone();
        let recorder = recorder.clone();
        let ready = ready_tx.clone();
        let mut start = start_rx.clone();
        let sampled = sampled.clone();
        let (pipeline, reply_timeout) = (args.pipeline, args.timeout);
        let pacer = pacer.clone();
        tasks.spawn(async move {
            let conn = opener.open(index, &recorder).await;
            // The receiver outlives every task that can still send.
            let _ = ready.send(conn.is_some());
            let Some(mut conn) = conn else { return };
            let Ok(schedule) = start.wait_for(Option::is_some).await.map(|s| *s) else {
                return;
            };
            let Some(schedule) = schedule else { return };
            recorder.live.fetch_add(1, Ordering::Relaxed);
            match pacer {
                Some(pacer) => {
                    conn.run_paced(&pacer, reply_timeout, schedule, &recorder)
                        .await
                }
                None => {
                    conn.run_load(pipeline, reply_timeout, schedule, &recorder)
                        .await
                }
            }
            recorder.live.fetch_sub(1, Ordering::Relaxed);
            sampled.cancelled().await;
            conn.close().await;
        });
    }
    drop(ready_tx);

    let connected = fleet::wait_ready(ready_rx, args.connections, &mut progress).await;
    if connected == 0 {
        progress.finish();
        let (_, _, first) = recorder.finish();
        anyhow::bail!(
            "no connection could be opened: {} (is the server running?)",
            first.unwrap_or_default()
        );
    }
    let started = Instant::now();
    let schedule = Schedule {
        start: started,
        measure_from: started + args.warmup,
        until: started + args.warmup + args.duration,
    };
    if let Some(pacer) = &pacer {
        pacer.start(schedule)?;
    }
    start_tx.send_replace(Some(schedule));
    let pids = args.server_pid.clone();
    let cpu = {
        let sampled = sampled.clone();
        tokio::spawn(async move {
            sleep_until(schedule.measure_from).await;
            let before = CpuSample::take(&pids);
            sleep_until(schedule.until).await;
            let spent = CpuSample::take(&pids).since(&before);
            sampled.cancel();
            spent
        })
    };

    let second = Duration::from_secs(1);
    let mut tick = interval_at(started + second, second);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            joined = tasks.join_next() => {
                if joined.is_none() {
                    break;
                }
            }
            _ = tick.tick() => {
                let (count, p99, errors) = recorder.take_second();
                progress.show(&report::load_line(
                    started.elapsed(),
                    args.warmup,
                    count,
                    p99,
                    errors.total(),
                    recorder.live.load(Ordering::Relaxed),
                ));
            }
        }
    }
    // Every connection is done: one that broke early leaves nothing to release.
    if let Some(pacer) = &pacer {
        pacer.stop();
    }
    progress.finish();

    let (measured, errors, first_error) = recorder.finish();
    let duration_s = args.duration.as_secs_f64();
    let (server_cpu, bench_cpu) = cpu.await.unwrap_or_default();
    let server_cpu_s = server_cpu.map(|d| d.as_secs_f64());
    Ok(LoadReport {
        label: args.label.clone(),
        mode: opener.endpoint().mode(),
        target: opener.endpoint().shown().to_owned(),
        connections: args.connections,
        connected,
        pipeline: args.pipeline,
        offered_rate: args.rate,
        size: args.size,
        warmup_s: args.warmup.as_secs_f64(),
        duration_s,
        messages: measured.len(),
        throughput: measured.len() as f64 / duration_s,
        latency_us: Latency::from_histogram(&measured),
        server_cpu_s,
        server_cpu_us_per_msg: server_cpu_s
            .filter(|_| !measured.is_empty())
            .map(|s| s * 1e6 / measured.len() as f64),
        bench_cpu_s: bench_cpu.map(|d| d.as_secs_f64()),
        errors_total: errors.total(),
        errors,
        first_error,
    })
}

/// CPU time used so far by the servers under test and by this load generator.
struct CpuSample {
    servers: Option<Duration>,
    own: Option<Duration>,
}

impl CpuSample {
    fn take(pids: &[u32]) -> CpuSample {
        CpuSample {
            servers: (!pids.is_empty())
                .then(|| procfs::cpu_time(pids).ok())
                .flatten(),
            own: procfs::own_cpu_time().ok(),
        }
    }

    /// CPU time spent since `before`: (servers, own).
    fn since(&self, before: &CpuSample) -> (Option<Duration>, Option<Duration>) {
        let diff = |a: Option<Duration>, b: Option<Duration>| a?.checked_sub(b?);
        (
            diff(self.servers, before.servers),
            diff(self.own, before.own),
        )
    }
}
