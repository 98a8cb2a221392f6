//! Opening all the connections of a run: a bounded number of connects at once,
//! source addresses taken in turn, failures counted, and a progress line.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::time::{interval, MissedTickBehavior};

use super::args::LoadArgs;
use super::endpoint::{Connected, Endpoint};
use super::net;
use super::report::Progress;
use super::stats::{Errors, Recorder};

/// Everything a connection task needs to open its connection.
pub struct Opener {
    endpoint: Endpoint,
    sources: Vec<IpAddr>,
    permits: Semaphore,
    size: usize,
    pipeline: usize,
    limit: Duration,
}

impl Opener {
    pub fn new(endpoint: Endpoint, args: &LoadArgs) -> anyhow::Result<Arc<Opener>> {
        let sources = net::source_addrs(endpoint.addr(), args.connections, args.source_addrs)
            .map_err(anyhow::Error::msg)?;
        Ok(Arc::new(Opener {
            endpoint,
            sources,
            permits: Semaphore::new(args.connect_concurrency),
            size: args.size,
            pipeline: args.pipeline,
            limit: args.timeout,
        }))
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Opens connection `index`; a failure is counted in `recorder`.
    pub async fn open(&self, index: usize, recorder: &Recorder) -> Option<Connected> {
        let source = match self.sources.len() {
            0 => None,
            n => Some(self.sources[index % n]),
        };
        let opened = {
            // The semaphore is never closed, so acquiring cannot fail.
            let _permit = self.permits.acquire().await.ok()?;
            self.endpoint
                .open(index, source, self.size, self.pipeline, self.limit)
                .await
        };
        match opened {
            Ok(conn) => Some(conn),
            Err(e) => {
                let failed = Errors {
                    connect_failed: 1,
                    ..Errors::default()
                };
                recorder.error(failed, || {
                    let from = source.map(|s| format!(" from {s}")).unwrap_or_default();
                    format!("connection {index} to {}{from}: {e}", self.endpoint.shown())
                });
                None
            }
        }
    }
}

/// Waits until each of `total` connection tasks has said whether it is ready,
/// showing how far along they are; returns how many are.
pub async fn wait_ready(
    mut ready: mpsc::UnboundedReceiver<bool>,
    total: usize,
    progress: &mut Progress,
) -> usize {
    let mut ok = 0;
    let mut failed = 0;
    let mut tick = interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await;
    while ok + failed < total {
        tokio::select! {
            next = ready.recv() => match next {
                Some(true) => ok += 1,
                Some(false) => failed += 1,
                // Every task has reported or is gone.
                None => break,
            },
            _ = tick.tick() => {
                progress.show(&format!("connecting {ok}/{total} ({failed} failed)"));
            }
        }
    }
    ok
}
