//! `timecho-bench soak`: a long run of mixed traffic against one `timecho serve`
//! that fails when the server leaks.
//!
//! Everything a server meets in a day runs at once, at a moderate rate: steady
//! TCP lines and WebSocket frames, connection churn, idle clients held and
//! replaced, oversize lines and frames, garbage bytes (random bytes over TCP,
//! invalid UTF-8 frames, broken HTTP requests), and with `--user` sign-in and
//! sign-out cycles (`traffic`, `hostile`, `signin`). Every second `sampler`
//! reads the server's resident memory and open descriptors from /proc and its
//! live tasks from `/metrics`. After warm-up each series is judged by `growth`:
//! the median of the last third of the samples may not exceed the median of
//! the first third by more than the series' tolerance (RSS +10%, descriptors
//! +16, tasks +16). A leak keeps growing and crosses it; a server that merely
//! breathes with its load, or spikes for a moment, does not. The run fails (exit 1) on growth, or on any answer
//! that was wrong or missing.

mod growth;
mod hostile;
mod http;
mod output;
mod sampler;
mod signin;
mod tally;
mod tcp_client;
mod traffic;
mod ws_client;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::task::JoinSet;
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;

use super::net;
use super::ws::WsTarget;
use output::SoakReport;
use signin::SignIn;
use tally::Tally;
use timecho_shared::duration_arg::parse_duration;
use timecho_shared::host_port::HostPort;

#[derive(Debug, Args)]
#[command(after_help = "\
Example (a server started with --metrics 127.0.0.1:9100 --auth basic:users.txt):
  timecho-bench soak --tcp 127.0.0.1:8899 --ws ws://127.0.0.1:8080/ws \\
      --metrics 127.0.0.1:9100 --server-pid \"$(pidof timecho)\" \\
      --user ada --password-file pw.txt --duration 1h --csv soak.csv

Exit status 1 when the server's RSS, open descriptors or tasks kept growing after warm-up,
or when any answer was wrong or missing.")]
pub struct SoakArgs {
    /// The server's TCP line listener, HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    pub tcp: String,

    /// The server's WebSocket gateway, ws://HOST:PORT/PATH; its host:port also gets the
    /// broken HTTP requests and the sign-ins.
    #[arg(long, value_name = "URL")]
    pub ws: String,

    /// Where `/metrics` is served without sign-in (the server's --metrics listener).
    /// Default: the --ws URL's host:port.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,

    /// The server process whose memory and descriptors are sampled.
    #[arg(long = "server-pid", value_name = "PID")]
    pub server_pid: u32,

    /// How long to run, warm-up included.
    #[arg(short = 'd', long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Samples in this first part of the run are shown but not judged.
    #[arg(short = 'w', long = "warm-up", value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub warm_up: Duration,

    /// Sign in as this user for the WebSocket traffic, and run sign-in/sign-out cycles.
    /// Needed when the server runs with --auth.
    #[arg(long, value_name = "NAME", requires = "password_file")]
    pub user: Option<String>,

    /// File whose first line is --user's password.
    #[arg(long, value_name = "PATH", requires = "user")]
    pub password_file: Option<PathBuf>,

    /// Time between sign-in/sign-out cycles. The server allows 5 password attempts a
    /// minute per address; one every 15 s stays within it.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub sign_in_every: Duration,

    /// Steady connections per protocol (TCP and WebSocket), each sending one message,
    /// awaiting its reply, then pausing --interval.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub steady: usize,

    /// Pause between a steady connection's messages.
    #[arg(long, value_name = "DURATION", default_value = "20ms", value_parser = parse_duration)]
    pub interval: Duration,

    /// Idle clients held open (half TCP, half WebSocket), each replaced after a while.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub idle: usize,

    /// Short-lived connections opened per second (open, three messages, close).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub churn: u32,

    /// Hostile inputs (oversize, garbage, broken HTTP) sent per second, in turn.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub hostile: u32,

    /// The server's --max-line: the oversize inputs are one byte longer.
    #[arg(long, value_name = "BYTES", default_value_t = timecho_shared::DEFAULT_MAX_LINE)]
    pub max_line: usize,

    /// An answer not received within this long is an error.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Write every sample to this CSV file as it is taken (for plotting:
    /// bench/plot_soak.py).
    #[arg(long, value_name = "PATH")]
    pub csv: Option<PathBuf>,

    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,

    /// No progress line on stderr.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// Where the traffic goes, resolved once.
pub struct Targets {
    pub tcp: SocketAddr,
    pub ws: WsTarget,
    /// The gateway's HTTP listener (the --ws URL's address).
    pub http: SocketAddr,
    pub metrics: SocketAddr,
}

/// What every traffic task shares.
pub struct Ctx {
    pub targets: Targets,
    pub tally: Tally,
    pub stop: CancellationToken,
    pub timeout: Duration,
    pub max_line: usize,
    /// The sign-in the WebSocket traffic uses, when the server wants one.
    pub signin: Option<SignIn>,
}

/// Time allowed, after the run, for the traffic tasks to close their connections.
const WIND_DOWN: Duration = Duration::from_secs(15);

pub fn run(args: &SoakArgs) -> anyhow::Result<ExitCode> {
    if args.warm_up >= args.duration {
        anyhow::bail!("--warm-up must be shorter than --duration");
    }
    let judged = (args.duration - args.warm_up).as_secs();
    if judged < growth::MIN_SAMPLES as u64 {
        anyhow::bail!(
            "--duration minus --warm-up must leave at least {} s to judge",
            growth::MIN_SAMPLES
        );
    }
    net::raise_fd_limit().context("cannot read the open-files limit")?;
    let ws = WsTarget::parse(&args.ws)?;
    let metrics = match &args.metrics {
        Some(m) => HostPort::parse_or_default_port(m)?.resolve_first()?,
        None => ws.addr,
    };
    let targets = Targets {
        tcp: HostPort::parse_or_default_port(&args.tcp)?.resolve_first()?,
        http: ws.addr,
        ws,
        metrics,
    };
    let password = match &args.password_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --password-file {}", path.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        ),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Written a line a second, so that a run cut short still leaves its samples.
    let csv = match &args.csv {
        Some(path) => Some(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write --csv {}", path.display()))?,
        ),
        None => None,
    };
    let report = runtime.block_on(soak(args, targets, password, csv))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn soak(
    args: &SoakArgs,
    targets: Targets,
    password: Option<String>,
    csv: Option<std::fs::File>,
) -> anyhow::Result<SoakReport> {
    // The server must be there before anything is judged about it.
    sampler::sample(args.server_pid, targets.metrics, Duration::ZERO)
        .await
        .with_context(|| format!("cannot sample the server (pid {})", args.server_pid))?;
    let signin = match (&args.user, password) {
        (Some(user), Some(password)) => Some(
            SignIn::start(targets.http, user.clone(), password, args.timeout)
                .await
                .map_err(|e| {
                    anyhow::anyhow!("cannot sign in with --user and --password-file: {e}")
                })?,
        ),
        _ => None,
    };
    let ctx = Arc::new(Ctx {
        targets,
        tally: Tally::default(),
        stop: CancellationToken::new(),
        timeout: args.timeout,
        max_line: args.max_line,
        signin,
    });

    let mut tasks = JoinSet::new();
    traffic::spawn_all(&ctx, args, &mut tasks);
    hostile::spawn(&ctx, args.hostile, &mut tasks);
    if ctx.signin.is_some() {
        tasks.spawn(signin::renew_until_stopped(ctx.clone()));
        tasks.spawn(signin::cycles(ctx.clone(), args.sign_in_every));
    }

    let samples = sampler::run(
        &ctx,
        args.server_pid,
        (args.duration, args.warm_up),
        csv,
        args.quiet,
    )
    .await;
    ctx.stop.cancel();
    let wound_down = Instant::now() + WIND_DOWN;
    loop {
        tokio::select! {
            joined = tasks.join_next() => if joined.is_none() { break },
            () = sleep(wound_down.saturating_duration_since(Instant::now())) => {
                ctx.tally.error("the traffic did not stop within 15 s of the end".into());
                tasks.abort_all();
                break;
            }
        }
    }
    let samples = samples?;
    Ok(SoakReport::new(args, samples, &ctx.tally))
}
