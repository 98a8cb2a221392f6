//! `timecho client --udp`: one datagram per line, one reply datagram expected
//! for each.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use tokio::net::UdpSocket;
use tokio::time::timeout;

use timecho_shared::host_port::HostPort;

/// The largest datagram.
pub const MAX_DATAGRAM: usize = 65_536;

pub struct Exchange {
    socket: UdpSocket,
    addr: SocketAddr,
    timeout: Duration,
    buf: Vec<u8>,
    /// Lines that got no reply.
    lost: usize,
}

impl Exchange {
    pub async fn open(target: &HostPort, timeout: Duration) -> anyhow::Result<Exchange> {
        let (socket, addr) = connect(target).await?;
        Ok(Exchange {
            socket,
            addr,
            timeout,
            buf: vec![0; MAX_DATAGRAM],
            lost: 0,
        })
    }

    /// Sends `line` and prints its reply, or says that none came.
    pub async fn line(&mut self, line: &[u8]) -> anyhow::Result<()> {
        let addr = self.addr;
        self.socket
            .send(line)
            .await
            .with_context(|| format!("cannot send to {addr}"))?;
        match timeout(self.timeout, self.socket.recv(&mut self.buf)).await {
            Ok(Ok(n)) => {
                let reply = &self.buf[..n];
                print_reply(reply.strip_suffix(b"\n").unwrap_or(reply))?;
            }
            Ok(Err(e)) => return Err(anyhow!("{addr}: {e}")),
            Err(_) => {
                self.lost += 1;
                eprintln!(
                    "timecho: no reply from {addr} within {:?} (UDP gives no error when nobody listens)",
                    self.timeout
                );
            }
        }
        Ok(())
    }

    /// Failure if any line went unanswered (each was reported as it happened).
    pub fn finish(self) -> ExitCode {
        if self.lost == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// A UDP socket that sends to `target` and hears only it.
pub async fn connect(target: &HostPort) -> anyhow::Result<(UdpSocket, SocketAddr)> {
    // A datagram tells nothing back: the name's preferred address it is.
    let addr = target.resolve_first()?;
    let local: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket
        .connect(addr)
        .await
        .with_context(|| format!("cannot reach {addr}"))?;
    Ok((socket, addr))
}

fn print_reply(reply: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(reply)?;
    out.write_all(b"\n")?;
    out.flush()
}
