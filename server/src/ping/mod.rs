//! `timecho ping`: reachability and round trips to a timestamp server, as
//! ping(8) reports them, over any transport the client speaks (TCP, unix,
//! UDP, TLS, ws:// and wss:// through the gateway).
//!
//! Probes are sent every `-i` whatever the replies do, each a line that names
//! this run and its sequence number, so that a reply is matched to its probe
//! by what it echoes: one that comes after its probe's `-W` is counted late
//! (not another probe's answer), one that overtakes a later probe's reply is
//! counted out of order. Round trips come from the monotonic clock.

mod stats;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use serde::Serialize;
use timecho_shared::reply::ReplyBytes;
use timecho_shared::Stamp;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::UdpSocket;
use tokio::time::{sleep_until, Instant};

use crate::cli::PingArgs;
use crate::client;
use crate::client::conn::LineStream;
use crate::client::replies::Replies;
use crate::client::udp;
use stats::Summary;

/// ping(8)'s statuses: replies came; none came (or fewer than `-c` within
/// `-w`); anything else went wrong.
const EXIT_REPLIED: u8 = 0;
const EXIT_NO_REPLY: u8 = 1;
const EXIT_ERROR: u8 = 2;

/// What every probe line starts with.
const PROBE: &str = "timecho-ping";

pub fn run(args: &PingArgs) -> ExitCode {
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(ping(args)));
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) if crate::client::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("timecho: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// How probes go out and replies come back.
enum Link {
    Stream {
        replies: Replies<ReadHalf<LineStream>>,
        write: WriteHalf<LineStream>,
        lines: Vec<u8>,
    },
    Datagram {
        socket: UdpSocket,
        buf: Vec<u8>,
    },
}

impl Link {
    async fn send(&mut self, probe: &str) -> anyhow::Result<()> {
        match self {
            Link::Stream { write, .. } => {
                write.write_all(format!("{probe}\n").as_bytes()).await?;
                // TLS and WebSocket hold data back until flushed.
                write.flush().await?;
            }
            Link::Datagram { socket, .. } => {
                socket.send(probe.as_bytes()).await?;
            }
        }
        Ok(())
    }

    /// The next reply lines, each without its newline; empty at the end of
    /// the stream. A UDP host's "port unreachable" is one empty line (the
    /// probe it answers is not known). Cancel-safe.
    async fn receive(&mut self) -> anyhow::Result<Vec<Vec<u8>>> {
        match self {
            Link::Stream { replies, lines, .. } => {
                lines.clear();
                if !replies.fill().await? {
                    replies.print_partial(lines)?;
                    return Ok(split_lines(lines));
                }
                replies.print_lines(lines)?;
                if replies.is_full() {
                    replies.print_partial(lines)?;
                }
                Ok(split_lines(lines))
            }
            Link::Datagram { socket, buf } => {
                let n = match socket.recv(buf).await {
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        return Ok(vec![Vec::new()]);
                    }
                    received => received.context("cannot receive")?,
                };
                let reply = &buf[..n];
                Ok(vec![reply.strip_suffix(b"\n").unwrap_or(reply).to_vec()])
            }
        }
    }
}

fn split_lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
        .collect()
}

/// A probe sent and not yet answered.
struct Pending {
    sent: Instant,
}

/// One answered probe.
#[derive(Debug, Clone, Serialize)]
struct Reply {
    seq: u64,
    bytes: usize,
    rtt_ms: f64,
    stamp: String,
    out_of_order: bool,
}

/// The run's tally.
#[derive(Default)]
struct Tally {
    /// Where replies come from, as ping(8) names it on each line.
    peer: String,
    sent: u64,
    replies: Vec<Reply>,
    late: u64,
    unexpected: u64,
    /// UDP "port unreachable" answers.
    unreachable: u64,
    /// The highest sequence number answered so far.
    highest: Option<u64>,
}

/// `--json`'s object. Times in milliseconds.
#[derive(Serialize)]
struct Report<'a> {
    target: &'a str,
    transport: &'static str,
    /// Which instance answered, when the server says (over WebSocket).
    instance: Option<&'a str>,
    probe_bytes: usize,
    sent: u64,
    received: usize,
    lost: u64,
    late: u64,
    out_of_order: usize,
    unexpected: u64,
    unreachable: u64,
    loss_percent: f64,
    elapsed_ms: f64,
    rtt_ms: Option<Summary>,
    replies: &'a [Reply],
    /// Why the run ended early, if it did.
    error: Option<String>,
}

fn transport(args: &PingArgs) -> &'static str {
    let server = &args.server;
    if server.addr.starts_with("wss://") {
        "wss"
    } else if server.addr.starts_with("ws://") {
        "ws"
    } else if server.unix.is_some() {
        "unix"
    } else if server.udp {
        "udp"
    } else if server.tls {
        "tls"
    } else {
        "tcp"
    }
}

fn target(args: &PingArgs) -> String {
    match &args.server.unix {
        Some(path) => path.display().to_string(),
        None => args.server.addr.clone(),
    }
}

/// The link, who answers on it, and which instance, when the server says.
async fn open(args: &PingArgs) -> anyhow::Result<(Link, String, Option<String>)> {
    let server = &args.server;
    if server.udp {
        let (socket, addr) = udp::connect(&client::host_port(server)?).await?;
        let link = Link::Datagram {
            socket,
            buf: vec![0; udp::MAX_DATAGRAM],
        };
        return Ok((link, addr.to_string(), None));
    }
    let link = client::connect(server).await?;
    let (read, write) = tokio::io::split(link.conn);
    let stream = Link::Stream {
        replies: Replies::new(read),
        write,
        lines: Vec::new(),
    };
    Ok((stream, link.peer, link.instance))
}

/// The probe line for `seq`: `timecho-ping RUN SEQ`, padded with dots to
/// `size` bytes when that is longer.
fn probe_line(run: u32, seq: u64, size: usize) -> String {
    let mut line = format!("{PROBE} {run:08x} {seq} ");
    while line.len() < size {
        line.push('.');
    }
    line
}

/// The sequence number a reply's echoed text names, if it is one of this
/// run's probes.
fn probe_seq(text: &[u8], run: u32) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    let mut words = text.split(' ');
    if words.next()? != PROBE || words.next()? != format!("{run:08x}") {
        return None;
    }
    words.next()?.parse().ok()
}

async fn ping(args: &PingArgs) -> anyhow::Result<u8> {
    let started = Instant::now();
    let (mut link, peer, instance) = open(args).await?;
    let target = target(args);
    let json = args.json;
    let run = run_id();
    let probe_bytes = probe_line(run, 0, args.size).len();
    let mut out = std::io::stdout().lock();
    if !json {
        let answered_by = instance
            .as_deref()
            .map(|i| format!(", instance {i}"))
            .unwrap_or_default();
        writeln!(
            out,
            "PING {target} ({peer}{answered_by}) over {}: {probe_bytes} bytes per probe",
            transport(args)
        )?;
    }
    let deadline = args.deadline.map(|d| started + d);
    let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
    let mut tally = Tally {
        peer: peer.clone(),
        ..Tally::default()
    };
    let mut next_probe = Some(started);
    let mut error = None;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let all_sent = args.count.is_some_and(|c| tally.sent >= c);
        if all_sent {
            next_probe = None;
        }
        if next_probe.is_none() && pending.is_empty() {
            break;
        }
        // The oldest probe's wait ends first.
        let expiry = pending.values().next().map(|p| p.sent + args.timeout);
        tokio::select! {
            () = sleep_until(next_probe.unwrap_or(started)), if next_probe.is_some() => {
                let seq = tally.sent + 1;
                if let Err(e) = link.send(&probe_line(run, seq, args.size)).await {
                    error = Some(format!("cannot send: {e:#}"));
                    break;
                }
                tally.sent = seq;
                let sent = Instant::now();
                pending.insert(seq, Pending { sent });
                next_probe = Some(sent + args.interval);
            }
            received = link.receive() => {
                let lines = match received {
                    Ok(lines) if lines.is_empty() => {
                        error = Some("the server closed the connection".to_owned());
                        break;
                    }
                    Ok(lines) => lines,
                    Err(e) => {
                        error = Some(format!("{e:#}"));
                        break;
                    }
                };
                let now = Instant::now();
                for line in lines {
                    if line.is_empty() {
                        tally.unreachable += 1;
                        if !json {
                            writeln!(out, "{peer}: port unreachable (nothing listens there)")?;
                        }
                        continue;
                    }
                    answer(&line, now, run, &mut pending, &mut tally, json, &mut out)?;
                }
            }
            () = sleep_until(expiry.unwrap_or(started)), if expiry.is_some() => {
                let now = Instant::now();
                let expired: Vec<u64> = pending
                    .iter()
                    .filter(|(_, p)| p.sent + args.timeout <= now)
                    .map(|(seq, _)| *seq)
                    .collect();
                for seq in expired {
                    pending.remove(&seq);
                    if !json {
                        writeln!(out, "seq={seq}: no reply within {:?}", args.timeout)?;
                    }
                }
            }
            () = sleep_until(deadline.unwrap_or(started)), if deadline.is_some() => break,
            _ = &mut interrupted => break,
        }
    }
    let elapsed = started.elapsed();
    let received = tally.replies.len();
    // Probes still waiting when the run ended are lost.
    let lost = tally.sent - received as u64;
    let rtts: Vec<f64> = tally.replies.iter().map(|r| r.rtt_ms).collect();
    let report = Report {
        target: &target,
        transport: transport(args),
        instance: instance.as_deref(),
        probe_bytes,
        sent: tally.sent,
        received,
        lost,
        late: tally.late,
        out_of_order: tally.replies.iter().filter(|r| r.out_of_order).count(),
        unexpected: tally.unexpected,
        unreachable: tally.unreachable,
        loss_percent: if tally.sent == 0 {
            0.0
        } else {
            lost as f64 * 100.0 / tally.sent as f64
        },
        elapsed_ms: stats::round(elapsed.as_secs_f64() * 1e3),
        rtt_ms: Summary::of(&rtts, args.percentiles),
        replies: &tally.replies,
        error: error.clone(),
    };
    if json {
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    } else {
        if let Some(e) = &error {
            writeln!(out, "timecho: {e}")?;
        }
        summary(&mut out, &report)?;
    }
    out.flush()?;
    // ping(8): with both -c and -w, fewer replies than -c by the deadline is a failure.
    let short = args.deadline.is_some() && args.count.is_some_and(|c| (received as u64) < c);
    Ok(if received == 0 || short {
        EXIT_NO_REPLY
    } else {
        EXIT_REPLIED
    })
}

/// Matches one reply line to its probe, and says so as ping(8) would.
fn answer(
    line: &[u8],
    now: Instant,
    run: u32,
    pending: &mut BTreeMap<u64, Pending>,
    tally: &mut Tally,
    json: bool,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let (stamp, seq) = match ReplyBytes::parse(line) {
        ReplyBytes::Stamped { stamp, text } => (stamp, probe_seq(text, run)),
        _ => (&b""[..], None),
    };
    let peer = &tally.peer;
    let Some(seq) = seq else {
        tally.unexpected += 1;
        if !json {
            writeln!(
                out,
                "unexpected reply: {}",
                String::from_utf8_lossy(line)
                    .chars()
                    .take(200)
                    .collect::<String>()
            )?;
        }
        return Ok(());
    };
    let Some(probe) = pending.remove(&seq) else {
        // Sent, and given up on (or answered twice).
        tally.late += 1;
        if !json && seq <= tally.sent {
            writeln!(
                out,
                "seq={seq}: late reply, after its probe was counted lost"
            )?;
        }
        return Ok(());
    };
    let stamp = String::from_utf8_lossy(stamp).into_owned();
    if Stamp::parse_any(&stamp).is_none() && !json {
        writeln!(
            out,
            "note: the stamp {stamp:?} is in no format timecho knows"
        )?;
    }
    let out_of_order = tally.highest.is_some_and(|h| seq < h);
    tally.highest = tally.highest.max(Some(seq));
    let reply = Reply {
        seq,
        bytes: line.len(),
        rtt_ms: stats::round(now.duration_since(probe.sent).as_secs_f64() * 1e3),
        stamp,
        out_of_order,
    };
    if !json {
        writeln!(
            out,
            "{} bytes from {peer}: seq={} time={} ms stamp={}{}",
            reply.bytes,
            reply.seq,
            stats::ms(reply.rtt_ms),
            reply.stamp,
            if out_of_order { " (out of order)" } else { "" }
        )?;
    }
    tally.replies.push(reply);
    Ok(())
}

fn summary(out: &mut impl std::io::Write, r: &Report<'_>) -> std::io::Result<()> {
    writeln!(out, "--- {} ping statistics ---", r.target)?;
    write!(
        out,
        "{} probes sent, {} received, {}% loss",
        r.sent,
        r.received,
        stats::percent(r.loss_percent)
    )?;
    if r.late > 0 {
        write!(out, ", {} late", r.late)?;
    }
    if r.out_of_order > 0 {
        write!(out, ", {} out of order", r.out_of_order)?;
    }
    if r.unexpected > 0 {
        write!(out, ", {} unexpected", r.unexpected)?;
    }
    if r.unreachable > 0 {
        write!(out, ", {} unreachable", r.unreachable)?;
    }
    writeln!(out, ", time {:.0}ms", r.elapsed_ms)?;
    if let Some(s) = &r.rtt_ms {
        writeln!(
            out,
            "rtt min/avg/max/mdev = {}/{}/{}/{} ms",
            stats::ms(s.min),
            stats::ms(s.avg),
            stats::ms(s.max),
            stats::ms(s.mdev)
        )?;
        if let Some(p) = &s.percentiles {
            writeln!(
                out,
                "rtt p50/p90/p99 = {}/{}/{} ms",
                stats::ms(p.p50),
                stats::ms(p.p90),
                stats::ms(p.p99)
            )?;
        }
    }
    Ok(())
}

/// A number for this run, so that replies to another run's probes (an
/// earlier ping's, late) are not taken for this one's.
fn run_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id().rotate_left(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_is_padded_to_its_size_and_its_echo_names_it() {
        let line = probe_line(0xabc, 7, 40);
        assert_eq!(line.len(), 40);
        assert!(line.starts_with("timecho-ping 00000abc 7 ."), "{line}");
        assert_eq!(probe_seq(line.as_bytes(), 0xabc), Some(7));
        assert_eq!(probe_seq(line.as_bytes(), 0xabd), None);
        assert_eq!(probe_seq(b"hello", 0xabc), None);
        // Shorter than the header: the header alone.
        assert_eq!(probe_line(1, 1, 0), "timecho-ping 00000001 1 ");
    }

    #[test]
    fn a_late_reply_is_not_taken_for_a_later_probes_answer() {
        let run = 5;
        let mut pending = BTreeMap::new();
        let mut tally = Tally {
            sent: 2,
            ..Tally::default()
        };
        let now = Instant::now();
        // Probe 1 was given up on; probe 2 waits.
        pending.insert(2, Pending { sent: now });
        let mut out = Vec::new();
        let reply = |seq| format!("[Wed Nov 25 08:47:05 2026] {}", probe_line(run, seq, 0));
        answer(
            reply(1).as_bytes(),
            now,
            run,
            &mut pending,
            &mut tally,
            false,
            &mut out,
        )
        .unwrap();
        assert_eq!((tally.late, tally.replies.len()), (1, 0));
        assert!(pending.contains_key(&2));
        answer(
            reply(2).as_bytes(),
            now,
            run,
            &mut pending,
            &mut tally,
            false,
            &mut out,
        )
        .unwrap();
        assert_eq!(tally.replies.len(), 1);
        assert_eq!(tally.replies[0].seq, 2);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("seq=1: late reply"), "{text}");
        assert!(text.contains("seq=2 time="), "{text}");
    }

    #[test]
    fn a_reply_that_overtakes_a_later_one_is_out_of_order() {
        let run = 9;
        let mut pending = BTreeMap::new();
        let now = Instant::now();
        pending.insert(1, Pending { sent: now });
        pending.insert(2, Pending { sent: now });
        let mut tally = Tally {
            sent: 2,
            ..Tally::default()
        };
        let mut out = Vec::new();
        let reply = |seq| format!("[1795622560.125] {}", probe_line(run, seq, 0));
        answer(
            reply(2).as_bytes(),
            now,
            run,
            &mut pending,
            &mut tally,
            true,
            &mut out,
        )
        .unwrap();
        answer(
            reply(1).as_bytes(),
            now,
            run,
            &mut pending,
            &mut tally,
            true,
            &mut out,
        )
        .unwrap();
        let order: Vec<(u64, bool)> = tally
            .replies
            .iter()
            .map(|r| (r.seq, r.out_of_order))
            .collect();
        assert_eq!(order, [(2, false), (1, true)]);
        assert!(out.is_empty(), "--json prints only the report");
    }
}
