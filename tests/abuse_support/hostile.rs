//! The misbehaving clients of the abuse suite: garbage bytes, a page that floods
//! frames and never reads, and a slowloris.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::would_block;
use crate::support::{masked_frame, RawWs};

/// A deterministic stream of pseudo-random bytes (xorshift64).
pub struct Noise(pub u64);

impl Noise {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Sends masked text frames of `size` bytes on a raw WebSocket that never reads,
/// until `count` are sent or a write makes no progress for a second. Returns
/// how many whole frames went out.
pub fn flood_frames(raw: &mut RawWs, count: usize, size: usize) -> usize {
    raw.stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    const BATCH: usize = 100;
    let mut sent = 0;
    while sent < count {
        let in_batch = BATCH.min(count - sent);
        let batch: Vec<u8> = (sent..sent + in_batch)
            .flat_map(|i| {
                let text = format!("frame {i:06} {}", "w".repeat(size - 13));
                masked_frame(0x1, text.as_bytes())
            })
            .collect();
        let mut written = 0;
        while written < batch.len() {
            match raw.stream.write(&batch[written..]) {
                Ok(n) => written += n,
                // Frames are all of one length.
                Err(e) if would_block(&e) => return sent + written / (batch.len() / in_batch),
                Err(e) => panic!("the flooding page was cut off: {e}"),
            }
        }
        sent += in_batch;
    }
    sent
}

/// Trickles a request one byte per second until the server closes; how long
/// after the first byte it did.
pub fn slowloris(addr: SocketAddr) -> Duration {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Padding: {}\r\n\r\n",
        "p".repeat(64)
    );
    let started = Instant::now();
    for byte in request.bytes() {
        if s.write_all(&[byte]).is_err() {
            return started.elapsed();
        }
        // The read doubles as the pause between bytes.
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Err(e) if would_block(&e) => {}
            // End of stream, a reset, or a 408 before the close: cut off.
            Ok(0) | Err(_) => return started.elapsed(),
            Ok(_) if buf.starts_with(b"HTTP/1.1 408") => return started.elapsed(),
            Ok(n) => panic!(
                "the trickled request was answered: {}",
                buf[..n].escape_ascii()
            ),
        }
    }
    panic!("the whole request was trickled in without the server closing");
}
