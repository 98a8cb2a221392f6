//! Test-side sockets: blocking std sockets with read timeouts, so a missing reply
//! fails the test instead of hanging it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a reply that is due may take.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// One client connection to a stream listener (TCP or unix).
pub struct Peer {
    stream: Stream,
    /// Received bytes not yet handed out.
    pending: Vec<u8>,
    eof: bool,
}

impl Peer {
    /// Connects with Nagle off, so every `send` leaves as its own segment.
    pub fn tcp(addr: SocketAddr) -> Peer {
        let stream = TcpStream::connect_timeout(&addr, REPLY_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Peer::new(Stream::Tcp(stream))
    }

    pub fn unix(path: &Path) -> Peer {
        let stream = UnixStream::connect(path)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
        Peer::new(Stream::Unix(stream))
    }

    fn new(stream: Stream) -> Peer {
        Peer {
            stream,
            pending: Vec::new(),
            eof: false,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        let sent = match &mut self.stream {
            Stream::Tcp(s) => s.write_all(bytes).and_then(|()| s.flush()),
            Stream::Unix(s) => s.write_all(bytes).and_then(|()| s.flush()),
        };
        sent.unwrap_or_else(|e| panic!("send {:?}: {e}", bytes.escape_ascii().to_string()));
    }

    /// Half-closes: the server sees end of stream, replies can still arrive.
    pub fn close_write(&self) {
        match &self.stream {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        }
        .expect("shutdown(Write)");
    }

    /// Reads once into `pending`, waiting at most `wait`; false on timeout or EOF.
    fn fill(&mut self, wait: Duration) -> bool {
        if self.eof || wait.is_zero() {
            return false;
        }
        let mut chunk = [0u8; 16 * 1024];
        let read = match &mut self.stream {
            Stream::Tcp(s) => s
                .set_read_timeout(Some(wait))
                .and_then(|()| s.read(&mut chunk)),
            Stream::Unix(s) => s
                .set_read_timeout(Some(wait))
                .and_then(|()| s.read(&mut chunk)),
        };
        match read {
            Ok(0) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.pending.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// The next line, without its `\n` (a `\r` before it is kept).
    pub fn read_line(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=i).collect();
                line.pop();
                return line;
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            if !self.fill(wait) && (self.eof || Instant::now() >= deadline) {
                panic!(
                    "no complete line within {REPLY_TIMEOUT:?} ({}); received so far: \"{}\"",
                    if self.eof {
                        "connection closed"
                    } else {
                        "timed out"
                    },
                    self.pending.escape_ascii()
                );
            }
        }
    }

    /// Everything that arrives within `window` (less if the server closes).
    pub fn read_for(&mut self, window: Duration) -> Vec<u8> {
        let deadline = Instant::now() + window;
        while !self.eof && Instant::now() < deadline {
            self.fill(deadline.saturating_duration_since(Instant::now()));
        }
        std::mem::take(&mut self.pending)
    }

    /// Waits for data, then takes everything until the connection stays quiet
    /// for `quiet`: for replies that end without a newline.
    pub fn read_until_quiet(&mut self, quiet: Duration) -> Vec<u8> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        while self.pending.is_empty() && !self.eof && Instant::now() < deadline {
            self.fill(deadline.saturating_duration_since(Instant::now()));
        }
        assert!(
            !self.pending.is_empty(),
            "nothing received within {REPLY_TIMEOUT:?}"
        );
        while self.fill(quiet) {}
        std::mem::take(&mut self.pending)
    }

    /// Everything until the server closes; fails if it does not close in time.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        while !self.eof {
            let wait = deadline.saturating_duration_since(Instant::now());
            if !self.fill(wait) && !self.eof && Instant::now() >= deadline {
                panic!(
                    "server did not close within {REPLY_TIMEOUT:?}; received: \"{}\"",
                    self.pending.escape_ascii()
                );
            }
        }
        std::mem::take(&mut self.pending)
    }
}

/// A UDP socket connected to the server.
pub struct Datagrams {
    socket: UdpSocket,
}

impl Datagrams {
    pub fn connect(server: SocketAddr) -> Datagrams {
        let local: SocketAddr = if server.is_ipv4() {
            "127.0.0.1:0".parse().unwrap()
        } else {
            "[::1]:0".parse().unwrap()
        };
        let socket = UdpSocket::bind(local).expect("bind a UDP socket");
        socket.connect(server).expect("connect the UDP socket");
        Datagrams { socket }
    }

    pub fn send(&self, payload: &[u8]) {
        self.socket.send(payload).expect("send a datagram");
    }

    /// The next datagram within `wait`, if any.
    pub fn recv_within(&self, wait: Duration) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 65_536];
        self.socket.set_read_timeout(Some(wait)).unwrap();
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(buf[..n].to_vec()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) => panic!("recv: {e}"),
        }
    }

    /// The next datagram; fails the test if none comes.
    pub fn recv(&self) -> Vec<u8> {
        self.recv_within(REPLY_TIMEOUT)
            .unwrap_or_else(|| panic!("no datagram within {REPLY_TIMEOUT:?}"))
    }
}
