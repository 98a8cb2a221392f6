//! The connectionless service: each datagram is answered with one stamped
//! datagram to its sender. A reply is the request plus a stamp of about 30
//! bytes, so for a short datagram it is many times larger; since a sender's
//! address can be forged, replies are paid for from a per-source byte budget
//! ([`budget`]), one for the whole process so that a source sending to several
//! `--udp` listeners is paid once, and those over it are dropped and counted,
//! as are empty and over-long datagrams.

mod budget;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::Utc;
use timecho_shared::{reply, StampCache};
use tokio::net::UdpSocket;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::access::AccessList;
use crate::config::Protocol;
use crate::metrics::ListenerMetrics;
use budget::Budget;

/// The reply budget every UDP listener of the process charges. Taken once per
/// datagram that is answered; uncontended with one listener (an atomic swap).
#[derive(Default)]
pub struct SharedBudget(Mutex<Budget>);

impl SharedBudget {
    fn charge(&self, source: std::net::IpAddr, sent: usize, reply: usize, now: Instant) -> bool {
        // A poisoned lock only means a charge panicked; the table is still whole.
        let mut budget = self.0.lock().unwrap_or_else(|e| e.into_inner());
        budget.charge(source, sent, reply, now)
    }
}

/// Largest possible UDP payload; a datagram that fills the buffer is over the limit anyway.
const DATAGRAM_MAX: usize = 65_536;
/// The largest payload an IPv4 datagram can carry (65,535 less the IP and UDP headers).
const REPLY_MAX: usize = 65_507;

pub async fn run(
    socket: UdpSocket,
    name: String,
    protocol: Arc<Protocol>,
    metrics: Arc<ListenerMetrics>,
    access: Arc<AccessList>,
    budget: Arc<SharedBudget>,
    shutdown: CancellationToken,
) {
    // A request is answered only if its reply, stamp and brackets included,
    // still fits in one datagram.
    let reply_room = REPLY_MAX - protocol.stamp.longest_len() - 3;
    let max = protocol
        .limits
        .max_line
        .min(DATAGRAM_MAX - 64)
        .min(reply_room);
    let mut stamps = StampCache::new(protocol.stamp.clone());
    let mut buf = vec![0u8; DATAGRAM_MAX];
    let mut out = Vec::with_capacity(DATAGRAM_MAX);
    let stall = protocol.limits.stall_timeout;
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = socket.recv_from(&mut buf) => r,
        };
        let (n, peer) = match received {
            Ok(r) => r,
            // ICMP errors from earlier replies surface here on some systems; they
            // concern one peer, not the socket.
            Err(e) => {
                debug!(listener = %name, error = %e, "receive failed");
                continue;
            }
        };
        if !access.permits(peer.ip()) {
            metrics.denied.inc();
            continue;
        }
        metrics.bytes_in.inc_by(n as u64);
        if n == 0 || n > max {
            metrics.udp_dropped.inc();
            debug!(listener = %name, %peer, bytes = n, "datagram dropped (empty or over the limit)");
            continue;
        }
        metrics.lines_in.inc();
        out.clear();
        reply::write_raw(&mut out, stamps.at(Utc::now()), &buf[..n]);
        // No log line per refused reply: under a flood that would be the flood.
        if !budget.charge(peer.ip(), n, out.len(), Instant::now()) {
            metrics.udp_budget.inc();
            continue;
        }
        // A full send buffer is waited for, which stops reading meanwhile (the
        // kernel drops what arrives: backpressure); like every write, only up
        // to the stall deadline. A failed reply concerns one (possibly forged)
        // peer: counted, and logged only at debug level so it cannot flood logs.
        // Tried at once; the deadline (a timer) only when the buffer is full.
        let sent = match socket.try_send_to(&out, peer) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                timeout(stall, socket.send_to(&out, peer)).await
            }
            done => Ok(done),
        };
        match sent {
            Ok(Ok(sent)) => {
                metrics.lines_out.inc();
                metrics.bytes_out.inc_by(sent as u64);
            }
            Ok(Err(e)) => {
                metrics.udp_dropped.inc();
                debug!(listener = %name, %peer, error = %e, "reply not sent");
            }
            Err(_) => {
                metrics.udp_dropped.inc();
                debug!(listener = %name, %peer, "reply not sent within {stall:?}");
            }
        }
    }
}
