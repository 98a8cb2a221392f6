//! The well-behaved client of the shutdown case: it streams lines with one in
//! flight and resends a line the server did not get to, as a client behind a
//! load balancer does.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::LineClient;
use crate::support::parse_reply;

/// What one client of the shutdown case saw.
#[derive(Debug, Default)]
pub struct Streamed {
    pub answered: usize,
    /// Lines that met end of stream instead of a reply.
    pub unanswered: usize,
    /// Connections made after the signal that were reset before any reply:
    /// the listening socket outlives the accept loop (see
    /// `new_clients_are_refused_at_once_while_connections_drain`).
    pub reset_while_draining: usize,
    /// What went wrong: a wrong reply, a reset, a reply cut off.
    pub faults: Vec<String>,
}

/// Streams lines with one in flight, each reply checked against its line. A
/// line that meets end of stream instead of a reply was not processed, so it
/// is sent again on a new connection, until connecting is refused.
pub fn stream_until_gone(addr: SocketAddr, id: usize, signalled: &AtomicBool) -> Streamed {
    let mut out = Streamed::default();
    let mut conn: Option<(LineClient, bool)> = None;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let (client, served) = match conn.as_mut() {
            Some(c) => c,
            // Refused: the listeners have closed, the server is going.
            None => match LineClient::try_connect(addr) {
                Ok(c) => conn.insert((c, false)),
                Err(_) => return out,
            },
        };
        let text = format!("client {id} line {}", out.answered);
        let _ = client.stream().write_all(format!("{text}\n").as_bytes());
        match client.line() {
            Ok(line) => {
                let echoed = parse_reply(&line).1;
                if echoed != text.as_bytes() {
                    out.faults.push(format!(
                        "{text:?} answered with \"{}\"",
                        echoed.escape_ascii()
                    ));
                    return out;
                }
                out.answered += 1;
                *served = true;
            }
            Err(e) if e == "end of stream after \"\"" => {
                out.unanswered += 1;
                conn = None;
            }
            Err(_) if !*served && signalled.load(Ordering::SeqCst) => {
                out.reset_while_draining += 1;
                conn = None;
            }
            Err(e) => {
                out.faults.push(format!("{text:?}: {e}"));
                return out;
            }
        }
    }
    out.faults
        .push("the server was still serving after 15 s".into());
    out
}
