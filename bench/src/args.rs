//! The `timecho-bench` command line: every flag, its default and its help text.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use timecho_shared::duration_arg::parse_duration;

#[derive(Debug, Parser)]
#[command(
    name = "timecho-bench",
    version,
    about = "Load-test a timestamp server over TCP or WebSocket and report throughput and latency.",
    long_about = None,
    after_help = "\
Examples:
  timecho-bench tcp 127.0.0.1:8899 -c 50 -p 32 -d 10s
  timecho-bench ws ws://127.0.0.1:8080/ws -c 1000 -s 1024 --json
  timecho-bench ws ws://127.0.0.1:8080/ws -c 1000 --rate 30000   # open loop
  timecho-bench ws ws://127.0.0.1:6080/ --ws-binary          # websockify
  timecho-bench tcp -c 10000 --idle --fresh-server   # memory per idle connection

Every reply must be `[<stamp>] <payload>` for the payload of the request it answers, in
order; anything else counts as an error, and the exit status is 1 when there was any."
)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub target: Target,
}

#[derive(Debug, Subcommand)]
pub enum Target {
    /// A line-based TCP server: each message is `<payload>\n`, each reply `[<stamp>] <payload>\n`.
    Tcp(TcpArgs),
    /// A WebSocket gateway: each message is one frame, each reply line comes back as a frame.
    Ws(WsArgs),
    /// A long mixed run against one `timecho serve` that fails if its memory, open files or
    /// tasks keep growing (see `bench/src/soak.rs` for the rule).
    Soak(super::soak::SoakArgs),
}

#[derive(Debug, Args)]
pub struct TcpArgs {
    /// Server address, HOST:PORT.
    #[arg(value_name = "ADDR", default_value = "127.0.0.1:8899")]
    pub addr: String,

    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Debug, Args)]
pub struct WsArgs {
    /// Gateway URL, ws://HOST:PORT/PATH.
    #[arg(value_name = "URL", default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,

    /// Send binary frames ending in `\n`, and read replies as a byte stream of lines however
    /// they are split or merged across frames (for relays of raw bytes such as websockify).
    /// Without it a text frame carries one message, and each text frame received holds one
    /// or more reply lines, with or without a trailing newline.
    #[arg(long)]
    pub ws_binary: bool,

    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Connections to open.
    #[arg(short = 'c', long, value_name = "N", default_value_t = 50)]
    pub connections: usize,

    /// Requests in flight on each connection (pipelining).
    #[arg(short = 'p', long, value_name = "N", default_value_t = 1)]
    pub pipeline: usize,

    /// Open loop: send this many messages a second in all (shared by the connections), on
    /// a fixed schedule whatever the replies do, and time each reply from its request's
    /// scheduled send time, so that stalls are not hidden (coordinated omission corrected,
    /// as wrk2 does). Without it each connection keeps -p requests in flight.
    #[arg(long, value_name = "MSGS_PER_S", conflicts_with_all = ["pipeline", "idle"])]
    pub rate: Option<f64>,

    /// With --rate: send each request within about 0.25 ms of its scheduled time, from a
    /// pacing thread, instead of on the runtime's 1 ms timer ticks (which add up to a tick
    /// to every latency and send in bursts). Costs the generator about 1.6x the CPU.
    #[arg(long, requires = "rate")]
    pub precise_pacing: bool,

    /// Message size in bytes, newline excluded.
    #[arg(short = 's', long, value_name = "BYTES", default_value_t = 16)]
    pub size: usize,

    /// How long to measure.
    #[arg(allow_hyphen_values = true, short = 'd', long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Load sent before measuring starts, left out of every figure.
    #[arg(allow_hyphen_values = true, short = 'w', long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// A request not answered within this long counts as an error, and its connection is closed.
    #[arg(allow_hyphen_values = true, long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Connects (and WebSocket handshakes) in progress at once.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub connect_concurrency: usize,

    /// Spread connections over this many loopback source addresses (127.0.0.1, 127.0.0.2, ...)
    /// so that ephemeral ports do not run short. Default: as many as the port range needs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..))]
    pub source_addrs: Option<u8>,

    /// Instead of sending load, open the connections and keep them idle (a WebSocket first
    /// sends one message so that its bridge is up), then report how many stayed open and,
    /// with --server-pid, the server's memory growth per connection.
    #[arg(long)]
    pub idle: bool,

    /// With --idle: start a `timecho serve` on port 0 for the run and measure it (ADDR or
    /// URL is not used). A server that has served before reuses the memory it freed, and
    /// so shows less per connection than a new one holds.
    #[arg(long, requires = "idle", conflicts_with = "server_pid")]
    pub fresh_server: bool,

    /// With --fresh-server: the `timecho` program to start. Default: the `timecho` in the
    /// same directory as this program (as cargo builds them, target/release/).
    // Not `requires = "fresh_server"`: clap counts a value from the environment as
    // given, so a TIMECHO_BIN exported for the scripts would refuse every other run.
    #[arg(long, value_name = "PATH", env = "TIMECHO_BIN")]
    pub server_bin: Option<PathBuf>,

    /// With --idle: exchange one message on each TCP connection too before idling.
    #[arg(long, requires = "idle")]
    pub idle_echo: bool,

    /// With --idle: how long to hold the connections once all are open before measuring.
    #[arg(allow_hyphen_values = true, long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration, requires = "idle")]
    pub hold: Duration,

    /// A server process to account for; repeat it to add up several. Under load, the CPU
    /// time it (and its process group, if it leads one) spends during the measurement is
    /// reported per message. With --idle, its resident memory (VmRSS) is read before the
    /// connections open and after they have been held.
    #[arg(long = "server-pid", value_name = "PID")]
    pub server_pid: Vec<u32>,

    /// Print one JSON object with every figure instead of the text report.
    #[arg(long)]
    pub json: bool,

    /// Name of this run, copied into the report (useful with --json).
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,

    /// No progress line on stderr.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

impl LoadArgs {
    /// Rejects combinations that cannot give a meaningful run.
    pub fn validate(&self) -> Result<(), String> {
        if self.connections == 0 {
            return Err("-c/--connections must be at least 1".into());
        }
        if self.pipeline == 0 {
            return Err("-p/--pipeline must be at least 1".into());
        }
        if self.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return Err("--rate must be more than 0 messages a second".into());
        }
        if self.size == 0 {
            return Err("-s/--size must be at least 1 byte".into());
        }
        if !self.idle && self.duration.is_zero() {
            return Err("-d/--duration must be longer than 0".into());
        }
        if self.timeout.is_zero() {
            return Err("--timeout must be longer than 0".into());
        }
        if self.connect_concurrency == 0 {
            return Err("--connect-concurrency must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        BenchArgs::try_parse_from(std::iter::once("timecho-bench").chain(args.iter().copied()))
    }

    #[test]
    fn redis_benchmark_style_flags_are_understood() {
        let args = parse(&[
            "tcp",
            "127.0.0.1:9",
            "-c",
            "50",
            "-p",
            "32",
            "-s",
            "1024",
            "-d",
            "3s",
            "-w",
            "1s",
        ])
        .unwrap();
        let Target::Tcp(tcp) = args.target else {
            panic!("expected tcp")
        };
        assert_eq!(tcp.addr, "127.0.0.1:9");
        assert_eq!(
            (tcp.load.connections, tcp.load.pipeline, tcp.load.size),
            (50, 32, 1024)
        );
        assert_eq!(tcp.load.duration, Duration::from_secs(3));
        assert_eq!(tcp.load.warmup, Duration::from_secs(1));
        assert!(tcp.load.validate().is_ok());
    }

    #[test]
    fn a_negative_duration_is_explained_not_taken_for_a_flag() {
        for flag in ["-d", "--duration", "-w", "--warmup", "--timeout"] {
            let err = parse(&["tcp", flag, "-1s"]).unwrap_err().to_string();
            assert!(
                err.contains("durations cannot be negative"),
                "{flag}: {err}"
            );
        }
        let err = parse(&["tcp", "--idle", "--hold", "-1s"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("durations cannot be negative"),
            "--hold: {err}"
        );
    }

    #[test]
    fn idle_options_need_idle() {
        assert!(parse(&["tcp", "--hold", "1s"]).is_err());
        assert!(parse(&["tcp", "--idle-echo"]).is_err());
        assert!(parse(&["ws", "--idle", "--server-pid", "1", "--server-pid", "2"]).is_ok());
        assert!(parse(&["tcp", "--server-pid", "1"]).is_ok());
    }

    #[test]
    fn a_rate_is_open_loop_and_excludes_pipelining() {
        let Target::Ws(ws) = parse(&["ws", "-c", "1000", "--rate", "30000"])
            .unwrap()
            .target
        else {
            panic!("expected ws")
        };
        assert_eq!(ws.load.rate, Some(30_000.0));
        assert!(ws.load.validate().is_ok());
        assert!(parse(&["ws", "--rate", "100", "-p", "4"]).is_err());
        assert!(parse(&["tcp", "--rate", "100", "--idle"]).is_err());
        let Target::Tcp(tcp) = parse(&["tcp", "--rate", "0"]).unwrap().target else {
            panic!("expected tcp")
        };
        assert!(tcp.load.validate().is_err());
    }

    #[test]
    fn empty_loads_are_refused() {
        let Target::Tcp(tcp) = parse(&["tcp", "-p", "0"]).unwrap().target else {
            panic!("expected tcp")
        };
        assert!(tcp.load.validate().is_err());
    }
}
