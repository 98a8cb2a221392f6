//! `timecho-bench`: a load generator for timecho and its peers, in the manner of
//! redis-benchmark: many connections, pipelining, every reply verified, latency
//! percentiles from an HDR histogram, and an idle mode that measures the
//! server's memory per connection. A crate of its own beside the server, as
//! redis-benchmark is beside redis-server: the server ships none of it, and an
//! A/B of the server leaves the client that measures it unchanged. Its one tie
//! to the server's code is the command-line values in `timecho_shared` (feature
//! `cli`); `--fresh-server` and the tests run the server as a program.
//!
//! `fleet` opens the connections, `load` and `idle` run the two kinds of test,
//! `session` is one connection's hot loop over a `Codec` (`tcp` lines or
//! `ws_frame` WebSocket frames), `schedule` the times every connection of a run
//! shares, `pacer` is the send clock of `--rate` runs,
//! `payload` makes requests and checks replies,
//! `stats` counts, `procfs` reads the servers' memory and CPU time, and
//! `report` prints, `fresh_server` starts the server an idle run measures. `soak` is the long mixed run that watches a server for leaks.

mod args;
mod endpoint;
mod fleet;
mod fresh_server;
mod idle;
mod load;
mod net;
mod pacer;
mod payload;
mod procfs;
mod report;
mod schedule;
mod session;
mod soak;
mod stats;
mod tcp;
mod ws;
mod ws_frame;

use std::process::ExitCode;

use anyhow::Context as _;

pub use args::BenchArgs;
use args::Target;
use endpoint::Endpoint;
use fleet::Opener;
use fresh_server::FreshServer;

/// File descriptors kept free for everything but the connections.
const FD_HEADROOM: u64 = 64;

/// Runs what `args` asks for and reports it on standard output; the exit
/// status is a failure when any reply was wrong or missing (or, for a soak,
/// when the server kept growing).
pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let load = match &args.target {
        Target::Tcp(t) => &t.load,
        Target::Ws(w) => &w.load,
        Target::Soak(s) => return soak::run(s),
    };
    load.validate().map_err(anyhow::Error::msg)?;
    let fd_limit = net::raise_fd_limit().context("cannot read the open-files limit")?;
    let needed = load.connections as u64 + FD_HEADROOM;
    if needed > fd_limit {
        anyhow::bail!(
            "{} connections need about {needed} open files, but the limit is {fd_limit} \
             (raise the hard limit, e.g. `ulimit -Hn {needed}` as root, or use fewer connections)",
            load.connections
        );
    }
    let fresh = load
        .fresh_server
        .then(|| {
            FreshServer::start(
                load.server_bin.as_deref(),
                load.connections,
                matches!(args.target, Target::Ws(_)),
            )
        })
        .transpose()?;
    let endpoint = match &fresh {
        Some(server) => Endpoint::on(server, &args.target)?,
        None => Endpoint::from_args(&args.target)?,
    };
    let server_pids = match &fresh {
        Some(server) => vec![server.pid()],
        None => load.server_pid.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let opener = Opener::new(endpoint, load)?;
        let (text, json, errors) = if load.idle {
            let r = idle::run(opener, load, &server_pids).await?;
            (r.text(), serde_json::to_string(&r)?, r.errors_total)
        } else {
            let r = load::run(opener, load).await?;
            (r.text(), serde_json::to_string(&r)?, r.errors_total)
        };
        if load.json {
            println!("{json}");
        } else {
            print!("{text}");
        }
        Ok(if errors == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}
