//! `timecho clock`: how far this machine's clock is from a timestamp server's,
//! measured with probes over TCP, TLS, a unix socket or UDP, and checked
//! against `--max-offset` so that it can serve as a monitoring check, the way
//! `ntpdate -q` or a Nagios NTP check is used.
//!
//! The arithmetic (bounds per exchange, their intersection, where to place the
//! next probe for one-second stamps) is `timecho_shared::clock`, the page's too.
//! This module only sends the probes, times them and reports.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context as _};
use serde::Serialize;
use timecho_shared::clock::{self, Bounds, Estimator, Sample};
use timecho_shared::reply::ReplyBytes;
use timecho_shared::Stamp;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::UdpSocket;

use crate::cli::ClockArgs;
use crate::client;
use crate::client::conn::LineStream;
use crate::client::replies::Replies;
use crate::client::udp;

const EXIT_OK: u8 = 0;
const EXIT_OFFSET: u8 = 1;
const EXIT_ERROR: u8 = 2;

/// The monitoring-plugin statuses (`--nagios`), as check_ntp_time has them.
mod plugin {
    pub const OK: u8 = 0;
    pub const WARNING: u8 = 1;
    pub const CRITICAL: u8 = 2;
    pub const UNKNOWN: u8 = 3;
}

pub fn run(args: &ClockArgs) -> ExitCode {
    let measured = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(measure(args)));
    let reported = match measured {
        Ok(m) => report(args, &m),
        Err(e) => failure(args, &e),
    };
    match reported {
        Ok(code) => ExitCode::from(code),
        Err(e) if crate::client::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("timecho: {e:#}");
            ExitCode::from(if args.nagios {
                plugin::UNKNOWN
            } else {
                EXIT_ERROR
            })
        }
    }
}

/// `--json`'s object when there is no measurement.
#[derive(Serialize)]
struct Failure<'a> {
    server: &'a str,
    error: String,
    samples: u32,
}

/// Says that nothing could be measured, in the form asked for: still a JSON
/// object with --json, an UNKNOWN status line with --nagios.
fn failure(args: &ClockArgs, e: &anyhow::Error) -> anyhow::Result<u8> {
    let server = server_name(args);
    let mut out = std::io::stdout().lock();
    if args.json {
        let failure = Failure {
            server: &server,
            error: format!("{e:#}"),
            samples: args.samples,
        };
        serde_json::to_writer(&mut out, &failure)?;
        writeln!(out)?;
        eprintln!("timecho: {e:#}");
        return Ok(EXIT_ERROR);
    }
    if args.nagios {
        // One line: a plugin's first line is its status.
        let why = format!("{e:#}").replace(['\n', '|'], " ");
        writeln!(out, "CLOCK UNKNOWN: {server}: {why}")?;
        return Ok(plugin::UNKNOWN);
    }
    eprintln!("timecho: {e:#}");
    Ok(EXIT_ERROR)
}

fn server_name(args: &ClockArgs) -> String {
    match &args.server.unix {
        Some(path) => path.display().to_string(),
        None => args.server.addr.clone(),
    }
}

/// The status line of a monitoring plugin, with perfdata in seconds as
/// check_ntp_time writes it (`offset=...s;WARN;CRIT;`), and the exit status.
fn nagios_line(
    server: &str,
    offset: i64,
    error: i64,
    rtt: i64,
    warn: Duration,
    crit: Duration,
) -> (String, u8) {
    let size = offset.unsigned_abs() as u128;
    let (word, code) = if size > crit.as_nanos() {
        ("CRITICAL", plugin::CRITICAL)
    } else if size > warn.as_nanos() {
        ("WARNING", plugin::WARNING)
    } else {
        ("OK", plugin::OK)
    };
    let secs = |nanos: i64| nanos as f64 / 1e9;
    let line = format!(
        "CLOCK {word}: {server}: offset {:+.6} s, error ±{:.6} s|offset={:.6}s;{:.6};{:.6}; error={:.6}s rtt={:.6}s",
        secs(offset),
        secs(error),
        secs(offset),
        warn.as_secs_f64(),
        crit.as_secs_f64(),
        secs(error),
        secs(rtt),
    );
    (line, code)
}

/// The outcome of a run of probes.
struct Measurement {
    /// Which instance answered, when the server says (over WebSocket).
    instance: Option<String>,
    bounds: Bounds,
    best_rtt: i64,
    answered: u32,
    sent: u32,
}

/// The client's clock as nanoseconds since the epoch, read from the monotonic
/// clock after one reading of the wall clock, so that a step during the run
/// does not look like a round trip.
///
/// That one reading is paired with a monotonic instant, and the thread can be
/// preempted between the two reads: every time derived from the pair is then
/// off by as long as the preemption, which with µs stamps is more than the
/// round trip. So the wall clock is read between two monotonic reads, a few
/// times, the tightest pair is kept, and its remaining uncertainty widens
/// every sample (`sent` earlier, `received` later) instead of being ignored.
struct ClientClock {
    wall: i64,
    start: Instant,
    /// How far `start` can be from the instant `wall` was read, in nanoseconds.
    uncertainty: i64,
}

/// Pairings tried; a preemption rarely hits more than one of them.
const CLOCK_PAIRINGS: usize = 16;

impl ClientClock {
    fn new() -> anyhow::Result<ClientClock> {
        let (gap, before, wall) = (0..CLOCK_PAIRINGS)
            .map(|_| {
                let before = Instant::now();
                let wall = SystemTime::now();
                (before.elapsed(), before, wall)
            })
            .min_by_key(|(gap, ..)| *gap)
            .expect("CLOCK_PAIRINGS is not zero");
        let wall = wall
            .duration_since(UNIX_EPOCH)
            .context("this machine's clock is before 1970")?;
        Ok(ClientClock {
            wall: i64::try_from(wall.as_nanos()).context("this machine's clock is past 2262")?,
            start: before + gap / 2,
            // Rounded up: the middle of the gap is within half of it.
            uncertainty: gap.as_nanos().div_ceil(2) as i64,
        })
    }

    fn at(&self, t: Instant) -> i64 {
        self.wall + t.duration_since(self.start).as_nanos() as i64
    }

    /// The probe that left at `sent` and came back at `received`, with the
    /// pairing's uncertainty on both sides.
    fn sample(&self, sent: Instant, received: Instant, stamp: i64, tick: i64) -> Sample {
        Sample {
            sent: self.at(sent) - self.uncertainty,
            received: self.at(received) + self.uncertainty,
            stamp,
            tick,
        }
    }

    fn instant(&self, nanos: i64) -> Instant {
        self.start + Duration::from_nanos((nanos - self.wall).max(0) as u64)
    }
}

/// One way of sending a probe and reading its echo.
enum Probes {
    Stream {
        replies: Replies<ReadHalf<LineStream>>,
        write: WriteHalf<LineStream>,
        /// Which instance answered, when the server says (over WebSocket).
        instance: Option<String>,
    },
    Datagram {
        socket: UdpSocket,
        buf: Vec<u8>,
    },
}

impl Probes {
    async fn open(args: &ClockArgs) -> anyhow::Result<Probes> {
        let server = &args.server;
        if server.udp {
            let (socket, _) = udp::connect(&client::host_port(server)?).await?;
            return Ok(Probes::Datagram {
                socket,
                buf: vec![0; udp::MAX_DATAGRAM],
            });
        }
        let link = client::connect(server).await?;
        let (read, write) = tokio::io::split(link.conn);
        Ok(Probes::Stream {
            replies: Replies::new(read),
            write,
            instance: link.instance,
        })
    }

    /// Sends `probe` and returns the stamp of its echo and when it arrived;
    /// `None` when a datagram's echo did not come within `timeout`.
    async fn exchange(
        &mut self,
        probe: &str,
        timeout: Duration,
    ) -> anyhow::Result<Option<(String, Instant)>> {
        match self {
            Probes::Stream { replies, write, .. } => {
                write.write_all(format!("{probe}\n").as_bytes()).await?;
                // TLS holds records back until flushed.
                write.flush().await.context("cannot send")?;
                let mut line = Vec::new();
                replies.print_one(timeout, &mut line).await?;
                let received = Instant::now();
                let line = line.strip_suffix(b"\n").unwrap_or(&line);
                echo_stamp(line, probe)
                    .map(|stamp| Some((stamp, received)))
                    .ok_or_else(|| {
                        anyhow!(
                            "unexpected reply to {probe:?}: {:?}",
                            String::from_utf8_lossy(line)
                        )
                    })
            }
            Probes::Datagram { socket, buf } => {
                socket.send(probe.as_bytes()).await.context("cannot send")?;
                let deadline = tokio::time::Instant::now() + timeout;
                // A late echo of an earlier probe is not this one's.
                loop {
                    let n = match tokio::time::timeout_at(deadline, socket.recv(buf)).await {
                        Ok(n) => n.context("cannot receive")?,
                        Err(_) => return Ok(None),
                    };
                    let received = Instant::now();
                    let reply = &buf[..n];
                    let reply = reply.strip_suffix(b"\n").unwrap_or(reply);
                    if let Some(stamp) = echo_stamp(reply, probe) {
                        return Ok(Some((stamp, received)));
                    }
                }
            }
        }
    }
}

/// The stamp of `line` if it is the echo of `probe`.
fn echo_stamp(line: &[u8], probe: &str) -> Option<String> {
    match ReplyBytes::parse(line) {
        ReplyBytes::Stamped { stamp, text } if text == probe.as_bytes() => {
            String::from_utf8(stamp.to_vec()).ok()
        }
        _ => None,
    }
}

/// The stamp's instant and how long one stamp lasts, read from its text: the
/// command talks to a line server, which has no way to say its format.
fn read_stamp(text: &str, utc_offset_seconds: i32) -> anyhow::Result<(i64, i64)> {
    let stamp = Stamp::parse_any(text).ok_or_else(|| {
        anyhow!(
            "cannot read the stamp {text:?}: `timecho clock` needs ctime, rfc3339 or unix stamps"
        )
    })?;
    let nanos = clock::stamp_nanos(&stamp, utc_offset_seconds)
        .ok_or_else(|| anyhow!("the stamp {text:?} is out of range"))?;
    // The server truncates its clock to as many fractional digits as it prints.
    let digits = match text.split_once('.') {
        Some((_, fraction)) => fraction.bytes().take_while(u8::is_ascii_digit).count(),
        None => 0,
    };
    Ok((nanos, 10i64.pow(9 - digits.min(9) as u32)))
}

async fn measure(args: &ClockArgs) -> anyhow::Result<Measurement> {
    let utc_offset_seconds = if args.utc {
        0
    } else {
        chrono::Local::now().offset().local_minus_utc()
    };
    let mut probes = Probes::open(args).await?;
    let client = ClientClock::new()?;
    let mut estimator = Estimator::new(args.samples as usize);
    let mut answered = 0;
    for n in 0..args.samples {
        let now = client.at(Instant::now());
        if let Some(at) = estimator.next_probe(now) {
            tokio::time::sleep_until(client.instant(at).into()).await;
        }
        let probe = clock::probe_line(n.into());
        let sent = Instant::now();
        let Some((stamp, received)) = probes.exchange(&probe, args.timeout).await? else {
            continue;
        };
        let (stamp, tick) = read_stamp(&stamp, utc_offset_seconds)?;
        answered += 1;
        estimator.add(client.sample(sent, received, stamp, tick));
    }
    let (Some(bounds), Some(best)) = (estimator.bounds(), estimator.best()) else {
        return Err(anyhow!(
            "none of {} probes was answered within {:?}",
            args.samples,
            args.timeout
        ));
    };
    let instance = match &probes {
        Probes::Stream { instance, .. } => instance.clone(),
        Probes::Datagram { .. } => None,
    };
    Ok(Measurement {
        instance,
        bounds,
        best_rtt: best.rtt(),
        answered,
        sent: args.samples,
    })
}

/// `--json`'s object; times in milliseconds, the offset is the server's clock
/// minus this machine's.
#[derive(Serialize)]
struct Report<'a> {
    server: &'a str,
    /// Which instance answered, when the server says (over WebSocket).
    instance: Option<&'a str>,
    offset_ms: f64,
    error_ms: f64,
    rtt_ms: f64,
    samples: u32,
    answered: u32,
    max_offset_ms: Option<f64>,
    within_max_offset: bool,
    summary: String,
}

fn millis(nanos: i64) -> f64 {
    nanos as f64 / 1e6
}

fn report(args: &ClockArgs, m: &Measurement) -> anyhow::Result<u8> {
    let offset = m.bounds.offset();
    let within = args
        .max_offset
        .is_none_or(|max| offset.unsigned_abs() as u128 <= max.as_nanos());
    let server = server_name(args);
    if args.nagios {
        let (line, code) = nagios_line(
            &server,
            offset,
            m.bounds.error(),
            m.best_rtt,
            args.warn,
            args.crit,
        );
        writeln!(std::io::stdout().lock(), "{line}")?;
        return Ok(code);
    }
    let report = Report {
        server: &server,
        instance: m.instance.as_deref(),
        offset_ms: millis(offset),
        error_ms: millis(m.bounds.error()),
        rtt_ms: millis(m.best_rtt),
        samples: m.sent,
        answered: m.answered,
        max_offset_ms: args.max_offset.map(|d| d.as_secs_f64() * 1e3),
        within_max_offset: within,
        summary: clock::describe(&m.bounds),
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    } else {
        match report.instance {
            Some(instance) => writeln!(
                out,
                "{} (instance {instance}): {}",
                report.server, report.summary
            )?,
            None => writeln!(out, "{}: {}", report.server, report.summary)?,
        }
        writeln!(
            out,
            "offset {:+.3} ms, error ±{:.3} ms, best round trip {:.3} ms, {} of {} probes answered",
            report.offset_ms, report.error_ms, report.rtt_ms, report.answered, report.samples
        )?;
        if let (false, Some(max)) = (within, args.max_offset) {
            writeln!(out, "the offset is beyond --max-offset {max:?}")?;
        }
    }
    Ok(if within { EXIT_OK } else { EXIT_OFFSET })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_echo_of_the_probe_gives_its_stamp() {
        let probe = clock::probe_line(3);
        let line = format!("[Wed Nov 25 16:02:40 2026] {probe}");
        assert_eq!(
            echo_stamp(line.as_bytes(), &probe).as_deref(),
            Some("Wed Nov 25 16:02:40 2026")
        );
        let other = format!("[Wed Nov 25 16:02:40 2026] {}", clock::probe_line(2));
        assert_eq!(echo_stamp(other.as_bytes(), &probe), None);
        assert_eq!(echo_stamp(b"error: too long", &probe), None);
    }

    #[test]
    fn a_stamps_resolution_is_the_digits_it_prints() {
        assert_eq!(
            read_stamp("Wed Nov 25 16:02:40 2026", 0).unwrap().1,
            1_000_000_000
        );
        let (nanos, tick) = read_stamp("2026-11-25T16:02:40.000250Z", 3600).unwrap();
        assert_eq!((nanos, tick), (1_795_622_560_000_250_000, 1_000));
        assert_eq!(
            read_stamp("1795622560.125", 0).unwrap(),
            (1_795_622_560_125_000_000, 1_000_000)
        );
        assert_eq!(read_stamp("1795622560", 0).unwrap().1, 1_000_000_000);
        let err = read_stamp("16:02", 0).unwrap_err().to_string();
        assert!(err.contains("ctime, rfc3339 or unix"), "{err}");
    }

    #[test]
    fn the_plugin_status_is_checked_against_warn_and_crit() {
        let (warn, crit) = (Duration::from_millis(100), Duration::from_millis(500));
        let ms = 1_000_000;
        let (line, code) = nagios_line("t:1", -50 * ms, 2 * ms, ms, warn, crit);
        assert_eq!(code, plugin::OK);
        assert_eq!(
            line,
            "CLOCK OK: t:1: offset -0.050000 s, error ±0.002000 s|offset=-0.050000s;0.100000;0.500000; error=0.002000s rtt=0.001000s"
        );
        assert_eq!(
            nagios_line("t", -200 * ms, 0, 0, warn, crit).1,
            plugin::WARNING
        );
        assert_eq!(
            nagios_line("t", 600 * ms, 0, 0, warn, crit).1,
            plugin::CRITICAL
        );
    }

    #[test]
    fn a_ctime_stamp_is_read_in_the_servers_zone() {
        let (utc, _) = read_stamp("Wed Nov 25 16:02:40 2026", 0).unwrap();
        let (east, _) = read_stamp("Wed Nov 25 16:02:40 2026", 3600).unwrap();
        assert_eq!(utc - east, 3_600_000_000_000);
    }
}
