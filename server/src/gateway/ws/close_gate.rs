//! Holds a client's Close frame back from the WebSocket protocol layer until
//! the relay has sent the replies it still owes.
//!
//! RFC 6455 lets an endpoint that receives a Close keep sending data until it
//! answers with its own (section 5.5.1), but tungstenite queues its answer the
//! moment it reads the client's Close and refuses every send after it. So the
//! bytes from the client pass through this gate on their way in: it follows
//! the frame headers (lengths only, nothing is unmasked or copied), and at the
//! first byte of a Close frame it stops, tells the relay, and passes nothing
//! more until the relay has answered what was asked and sent its own Close.
//! The protocol layer then reads the client's Close as the answer to ours.

use std::io::{self, Cursor};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tungstenite::protocol::frame::FrameHeader;

const OPCODE_CLOSE: u8 = 0x8;

/// The relay's side of a gate: learns that the client is closing, and opens
/// the gate once the owed replies and our Close are sent.
#[derive(Clone, Default)]
pub struct GateHandle(Arc<GateState>);

#[derive(Default)]
struct GateState {
    closing: Notify,
    /// What the held Close deserves in answer when the client broke RFC
    /// 6455 in it (a code it may not send, a reason that is not UTF-8); 0: none.
    verdict: std::sync::atomic::AtomicU16,
    open: AtomicBool,
    /// The read that found the gate shut, woken when it opens. Touched once
    /// per session at most, at its end.
    reader: Mutex<Option<Waker>>,
}

impl GateHandle {
    /// Completes once the client's Close frame has arrived (and every frame
    /// before it has been passed on).
    pub async fn closing(&self) {
        self.0.closing.notified().await;
    }

    /// The close code to answer the client's Close with when that Close broke
    /// the protocol: 1002 for a code no endpoint may send, 1007 for a reason
    /// that is not UTF-8. `None` for a proper Close (or one not read whole).
    pub fn close_verdict(&self) -> Option<u16> {
        match self.0.verdict.load(Ordering::Acquire) {
            0 => None,
            code => Some(code),
        }
    }

    /// Lets the held Close frame (and anything after it) through.
    pub fn open(&self) {
        self.0.open.store(true, Ordering::Release);
        let waker = self
            .0
            .reader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The client's byte stream, passed through up to the first Close frame.
pub struct CloseGate<S> {
    inner: S,
    scan: FrameScan,
    /// What was read from the Close frame on; at most one read's worth.
    held: Option<Held>,
    handle: GateHandle,
}

struct Held {
    bytes: Vec<u8>,
    pos: usize,
}

impl<S> CloseGate<S> {
    /// Whatever has been passed on ends with a whole message: no frame, and
    /// no fragmented message, is half-way through, and no Close is held.
    pub fn at_rest(&self) -> bool {
        self.held.is_none() && self.scan.at_message_boundary()
    }

    pub fn new(inner: S) -> (Self, GateHandle) {
        let handle = GateHandle::default();
        let gate = CloseGate {
            inner,
            scan: FrameScan::default(),
            held: None,
            handle: handle.clone(),
        };
        (gate, handle)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CloseGate<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(held) = &mut this.held {
            let shared = &this.handle.0;
            if !shared.open.load(Ordering::Acquire) {
                *shared.reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
                // Opened between the check and storing the waker: go on now.
                if !shared.open.load(Ordering::Acquire) {
                    return Poll::Pending;
                }
            }
            let n = buf.remaining().min(held.bytes.len() - held.pos);
            buf.put_slice(&held.bytes[held.pos..held.pos + n]);
            held.pos += n;
            if held.pos == held.bytes.len() {
                // From here on the stream passes straight through.
                this.held = Some(Held {
                    bytes: Vec::new(),
                    pos: 0,
                });
            }
            if n > 0 {
                return Poll::Ready(Ok(()));
            }
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let Some(at) = this.scan.find_close(&buf.filled()[before..]) else {
            return Poll::Ready(Ok(()));
        };
        if this.handle.0.open.load(Ordering::Acquire) {
            // Our Close went first: theirs is the answer, and passes.
            this.held = Some(Held {
                bytes: Vec::new(),
                pos: 0,
            });
            return Poll::Ready(Ok(()));
        }
        let cut = before + at;
        this.held = Some(Held {
            bytes: buf.filled()[cut..].to_vec(),
            pos: 0,
        });
        let verdict = close_verdict(&buf.filled()[cut..]).unwrap_or(0);
        this.handle.0.verdict.store(verdict, Ordering::Release);
        buf.set_filled(cut);
        this.handle.0.closing.notify_one();
        if at > 0 {
            return Poll::Ready(Ok(()));
        }
        // Nothing to pass on: an empty read would look like the end of the stream.
        let shared = &this.handle.0;
        *shared.reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CloseGate<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Judges a client's Close frame from its first bytes (RFC 6455, 5.5.1 and
/// 7.4): `Some(1002)` for a one-byte payload or a code no endpoint may send
/// (below 1000, 1004-1006, 1015-2999, 5000 and above), `Some(1007)` for a
/// reason that is not UTF-8, `None` for a proper one or one not read whole.
fn close_verdict(frame: &[u8]) -> Option<u16> {
    let [_, second, rest @ ..] = frame else {
        return None;
    };
    let second = *second;
    let len = usize::from(second & 0x7F);
    if second & 0x80 == 0 || len > 125 {
        // Unmasked or too long: the protocol layer refuses it as it reads it.
        return None;
    }
    let mask = rest.get(..4)?;
    let payload: Vec<u8> = rest
        .get(4..4 + len)?
        .iter()
        .zip(mask.iter().cycle())
        .map(|(b, m)| b ^ m)
        .collect();
    match payload.as_slice() {
        [] => None,
        [_] => Some(1002),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !allowed {
                Some(1002)
            } else if std::str::from_utf8(reason).is_err() {
                Some(1007)
            } else {
                None
            }
        }
    }
}

/// Follows frame boundaries in a client's byte stream (RFC 6455, 5.2).
#[derive(Debug, Default)]
struct FrameScan {
    /// Header bytes of the frame being read so far (at most 14).
    header: [u8; 14],
    have: usize,
    /// Payload bytes still to skip before the next header.
    payload_left: u64,
    /// A data frame without FIN began a message whose last frame is to come.
    fragmented: bool,
    /// A header no endpoint may send (a reserved opcode): the protocol layer
    /// fails the session on it, and the scan follows no boundary after it.
    lost: bool,
}

impl FrameScan {
    /// Where in `bytes` the first Close frame begins, if it does.
    fn find_close(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < bytes.len() && !self.lost {
            if self.payload_left > 0 {
                let skip = self.payload_left.min((bytes.len() - i) as u64);
                self.payload_left -= skip;
                i += skip as usize;
                continue;
            }
            let byte = bytes[i];
            if self.have == 0 && byte & 0x0F == OPCODE_CLOSE {
                return Some(i);
            }
            self.header[self.have] = byte;
            self.have += 1;
            i += 1;
            if let Some(len) = self.payload_len() {
                self.payload_left = len;
                self.have = 0;
                // Control frames may come between a message's fragments.
                if self.header[0] & 0x08 == 0 {
                    self.fragmented = self.header[0] & 0x80 == 0;
                }
            }
        }
        None
    }

    fn at_message_boundary(&self) -> bool {
        self.have == 0 && self.payload_left == 0 && !self.fragmented && !self.lost
    }

    /// The payload length, once the header is complete (tungstenite's own
    /// header parser, so that the gate and the protocol layer agree on where
    /// a frame ends).
    fn payload_len(&mut self) -> Option<u64> {
        let mut cursor = Cursor::new(&self.header[..self.have]);
        match FrameHeader::parse(&mut cursor) {
            Ok(Some((_, len))) => Some(len),
            Ok(None) => None,
            Err(_) => {
                self.lost = true;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn a_reserved_opcode_ends_the_scan_where_the_protocol_layer_fails() {
        let mut scan = FrameScan::default();
        // A masked frame of reserved data opcode 3, then a Close, then junk.
        let mut bytes = vec![0x83, 0x82, 1, 2, 3, 4, b'h', b'i'];
        bytes.extend(frame(OPCODE_CLOSE, &1000u16.to_be_bytes()));
        bytes.extend([0x8B; 40]);
        assert_eq!(scan.find_close(&bytes), None);
        assert!(!scan.at_message_boundary(), "nothing to renew at");
        // Frames the protocol allows are still followed to their Close.
        let mut scan = FrameScan::default();
        let mut bytes = frame(0x1, &[b'x'; 300]);
        let at = bytes.len();
        bytes.extend(frame(OPCODE_CLOSE, &[]));
        assert_eq!(scan.find_close(&bytes), Some(at));
    }

    #[test]
    fn a_close_with_a_forbidden_code_or_a_bad_reason_is_judged() {
        let close = |payload: &[u8]| close_verdict(&frame(OPCODE_CLOSE, payload));
        assert_eq!(close(&[]), None);
        assert_eq!(close(&1000u16.to_be_bytes()), None);
        assert_eq!(close(&[0x0f, 0xa0, b'o', b'k']), None, "4000 with a reason");
        for code in [999u16, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert_eq!(close(&code.to_be_bytes()), Some(1002), "{code}");
        }
        assert_eq!(close(&[0x03]), Some(1002), "a one-byte payload");
        assert_eq!(close(&[0x03, 0xe8, 0xff, 0xfe]), Some(1007));
        let cut = frame(OPCODE_CLOSE, &1005u16.to_be_bytes());
        assert_eq!(close_verdict(&cut[..cut.len() - 1]), None, "not read whole");
    }

    /// A masked client frame with the given opcode (FIN set).
    fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n @ 0..=125 => f.push(0x80 | n as u8),
            n @ 126..=65535 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [1, 2, 3, 4];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    /// A payload whose masked bytes look like a Close header, to catch a
    /// scanner that loses its place.
    fn tricky(len: usize) -> Vec<u8> {
        vec![0x88 ^ 1; len]
    }

    #[test]
    fn finds_the_close_frame_after_frames_of_every_length_class() {
        let mut stream = Vec::new();
        for len in [0, 5, 125, 126, 300, 65535, 65536, 70_000] {
            stream.extend(frame(0x1, &tricky(len)));
        }
        stream.extend(frame(0x9, b"ping"));
        let close_at = stream.len();
        stream.extend(frame(0x8, &[0x03, 0xE8]));
        // However the stream is cut into reads, the Close is found where it is.
        for chunk in [1, 2, 3, 7, 13, 4096, usize::MAX] {
            let mut scan = FrameScan::default();
            let mut offset = 0;
            let found = stream.chunks(chunk.min(stream.len())).find_map(|c| {
                let at = scan.find_close(c).map(|at| offset + at);
                offset += c.len();
                at
            });
            assert_eq!(found, Some(close_at), "reads of {chunk} bytes");
        }
    }

    #[test]
    fn a_message_boundary_is_after_a_whole_frame_and_a_whole_message() {
        let mut scan = FrameScan::default();
        assert!(scan.at_message_boundary());
        let text = frame(0x1, b"hello");
        scan.find_close(&text[..3]);
        assert!(!scan.at_message_boundary(), "inside a header");
        scan.find_close(&text[3..8]);
        assert!(!scan.at_message_boundary(), "inside a payload");
        scan.find_close(&text[8..]);
        assert!(scan.at_message_boundary());
        // A first fragment (no FIN), a ping between fragments, the last one.
        let mut first = frame(0x1, b"frag");
        first[0] &= 0x7F;
        scan.find_close(&first);
        assert!(!scan.at_message_boundary(), "a message is half-way");
        scan.find_close(&frame(0x9, b"ping"));
        assert!(!scan.at_message_boundary(), "a ping does not end it");
        scan.find_close(&frame(0x0, b"ment"));
        assert!(scan.at_message_boundary(), "its final fragment does");
    }

    #[test]
    fn unmasked_frames_are_followed_too() {
        let mut scan = FrameScan::default();
        // Text "hi" unmasked, then Close.
        assert_eq!(scan.find_close(&[0x81, 0x02, b'h', 0x88, 0x88]), Some(4));
    }

    #[test]
    fn a_stream_without_close_passes() {
        let mut scan = FrameScan::default();
        let data = frame(0x2, &tricky(1000));
        assert_eq!(scan.find_close(&data), None);
        assert_eq!(scan.find_close(&frame(0x1, b"x")), None);
    }

    #[tokio::test]
    async fn holds_the_close_until_opened() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (mut gate, handle) = CloseGate::new(server);
        let mut client = client;
        let text = frame(0x1, b"hello");
        let close = frame(0x8, &[0x03, 0xE8]);
        client
            .write_all(&[text.clone(), close.clone()].concat())
            .await
            .unwrap();

        let mut got = vec![0; 256];
        let n = gate.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], &text[..], "frames before the Close pass");
        // The Close is held: the next read waits, and the relay is told.
        handle.closing().await;
        assert!(
            gate.read(&mut got).now_or_never().is_none(),
            "the Close must wait for the relay"
        );

        let reader = tokio::spawn(async move {
            let mut rest = vec![0; 256];
            let n = gate.read(&mut rest).await.unwrap();
            rest.truncate(n);
            rest
        });
        tokio::task::yield_now().await;
        handle.open();
        assert_eq!(reader.await.unwrap(), close, "then the Close goes through");
    }

    #[tokio::test]
    async fn once_open_a_close_passes_at_once() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (mut gate, handle) = CloseGate::new(server);
        // The relay sent its own Close first and opened the gate; the
        // client's answering Close must reach the protocol layer untouched.
        handle.open();
        let close = frame(0x8, &[0x03, 0xEB]);
        client.write_all(&close).await.unwrap();
        let mut got = vec![0; 64];
        let n = gate
            .read(&mut got)
            .now_or_never()
            .expect("not held")
            .unwrap();
        assert_eq!(&got[..n], &close[..]);
    }

    #[tokio::test]
    async fn a_close_at_the_start_of_a_read_is_not_end_of_stream() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (mut gate, handle) = CloseGate::new(server);
        let close = frame(0x8, &[]);
        client.write_all(&close).await.unwrap();
        drop(client);
        let opener = async {
            handle.closing().await;
            handle.open();
        };
        let mut got = Vec::new();
        let ((), read) = tokio::join!(opener, gate.read_to_end(&mut got));
        read.unwrap();
        assert_eq!(got, close);
    }
}
