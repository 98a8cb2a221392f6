//! An idle run: open N connections, keep them open and quiet, and read how much
//! the server's resident memory grew per connection.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;

use super::args::LoadArgs;
use super::fleet::{self, Opener};
use super::procfs;
use super::report::{IdleReport, Progress};
use super::stats::Recorder;

/// Lets the server finish accepting and settle before its memory is read.
const SETTLE: Duration = Duration::from_millis(500);

/// `server_pids` are the processes whose memory is read (`--server-pid`, or
/// the fresh server).
pub async fn run(
    opener: Arc<Opener>,
    args: &LoadArgs,
    server_pids: &[u32],
) -> anyhow::Result<IdleReport> {
    let before = server_rss(server_pids)?;
    let recorder = Arc::new(Recorder::new());
    let mut progress = Progress::new(args.quiet);
    let stop = CancellationToken::new();
    let (ready_tx, ready_rx) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    for index in 0..args.connections {
        let opener = opener.clone();
        let recorder = recorder.clone();
        let ready = ready_tx.clone();
        let stop = stop.clone();
        let (echo, reply_timeout) = (args.idle_echo, args.timeout);
        tasks.spawn(async move {
            let Some(mut conn) = opener.open(index, &recorder).await else {
                let _ = ready.send(false);
                return;
            };
            let up =
                !(echo || conn.is_websocket()) || conn.echo_once(reply_timeout, &recorder).await;
            let _ = ready.send(up);
            if !up {
                return;
            }
            recorder.live.fetch_add(1, Ordering::Relaxed);
            if !conn.idle_until(&stop, &recorder).await {
                recorder.live.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }
    drop(ready_tx);

    let connected = fleet::wait_ready(ready_rx, args.connections, &mut progress).await;
    let held_from = Instant::now();
    sleep(SETTLE).await;
    while held_from.elapsed() < args.hold {
        progress.show(&format!(
            "holding {} idle connections ({:.0}s)",
            recorder.live.load(Ordering::Relaxed),
            held_from.elapsed().as_secs_f64()
        ));
        sleep(Duration::from_secs(1).min(args.hold.saturating_sub(held_from.elapsed()))).await;
    }
    let after = server_rss(server_pids)?;
    let alive = recorder.live.load(Ordering::Relaxed);
    progress.finish();
    stop.cancel();
    while tasks.join_next().await.is_some() {}

    let (_, errors, first_error) = recorder.finish();
    let per_connection = match (before, after) {
        (Some(b), Some(a)) if alive > 0 => Some((a as f64 - b as f64) / alive as f64),
        _ => None,
    };
    Ok(IdleReport {
        label: args.label.clone(),
        mode: opener.endpoint().mode(),
        target: opener.endpoint().shown().to_owned(),
        connections: args.connections,
        connected,
        alive,
        server_pids: server_pids.to_vec(),
        server_rss_before_kib: before,
        server_rss_after_kib: after,
        rss_per_connection_kib: per_connection,
        errors_total: errors.total(),
        errors,
        first_error,
    })
}

/// Sum of the processes' resident memory in KiB; `None` for no process.
fn server_rss(pids: &[u32]) -> anyhow::Result<Option<u64>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut total = 0;
    for &pid in pids {
        total += procfs::rss_kib(pid)
            .with_context(|| format!("cannot read the memory of process {pid}"))?;
    }
    Ok(Some(total))
}
