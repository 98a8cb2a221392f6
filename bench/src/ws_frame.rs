//! WebSocket framing for the load generator (RFC 6455, client side), and the
//! reassembly of reply lines from whatever frames they arrive in.
//!
//! A library WebSocket would hand out one owned message per frame; this codec
//! writes masked frames straight into the connection's output buffer and reads
//! replies straight from its input buffer, so the hot loop allocates nothing.
//! Frame headers are read and written by tungstenite's `FrameHeader` (the
//! library the gateway uses), so only the buffering and the masking are ours
//! (tungstenite keeps its mask helper private).
//! Replies are lines: in text mode each text message ends a line (timecho sends
//! one line per frame without a newline; websocat may add one, or merge lines);
//! in binary mode only `\n` ends a line, however the relay split or merged the
//! bytes into frames (websockify sends each TCP read as one frame).

use std::hash::{BuildHasher, RandomState};
use std::io::Cursor;

use timecho_shared::{Frame, LineDecoder};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use super::session::{Codec, ProtocolError, REPLY_OVERHEAD};

/// Close code for a normal end of session.
const NORMAL_CLOSURE: u16 = 1000;

pub struct WsCodec {
    binary: bool,
    /// State of the generator of masking keys.
    mask_state: u64,
    decoder: LineDecoder,
    /// Received bytes of a reply line whose end has not arrived yet.
    partial: Vec<u8>,
    /// Every request has the same opcode and length, so its header is the same
    /// but for the masking key, its last four bytes: tungstenite formats it once
    /// and each request copies it.
    request_header: Vec<u8>,
    /// Payload bytes of a request: the message, and its newline in binary mode.
    request_len: usize,
}

impl WsCodec {
    /// `binary`: send binary frames ending in `\n` and read replies as a stream of lines.
    pub fn new(binary: bool, size: usize) -> WsCodec {
        let request_len = size + usize::from(binary);
        let mut request_header = Vec::new();
        header(request_opcode(binary), [0; 4])
            .format(request_len as u64, &mut request_header)
            .expect("writing to a Vec cannot fail");
        WsCodec {
            binary,
            mask_state: RandomState::new().hash_one(size) | 1,
            decoder: LineDecoder::new(size + REPLY_OVERHEAD),
            partial: Vec::with_capacity(size + REPLY_OVERHEAD),
            request_header,
            request_len,
        }
    }

    /// A fresh masking key (xorshift64; clients must not send predictable keys, and
    /// a server cannot tell this from a cryptographic one).
    fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.mask_state = x;
        (x as u32).to_be_bytes()
    }

    /// Appends one masked frame holding `parts` one after the other.
    fn frame(&mut self, opcode: OpCode, parts: &[&[u8]], out: &mut Vec<u8>) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let key = self.next_mask();
        header(opcode, key)
            .format(len as u64, out)
            .expect("writing to a Vec cannot fail");
        append_masked(out, key, parts);
    }

    /// Feeds the payload of one data frame to the line reassembly.
    fn on_data<F: FnMut(Frame<'_>)>(&mut self, data: &[u8], fin: bool, on_reply: &mut F) {
        if self.partial.is_empty() {
            // The usual case: the frame holds whole lines, and nothing is copied.
            let mut frames = self.decoder.frames(data);
            for frame in &mut frames {
                on_reply(frame);
            }
            let rest = &data[frames.consumed()..];
            self.partial.extend_from_slice(rest);
        } else {
            self.partial.extend_from_slice(data);
            let mut frames = self.decoder.frames(&self.partial);
            for frame in &mut frames {
                on_reply(frame);
            }
            let used = frames.consumed();
            self.partial.drain(..used);
        }
        if fin && !self.binary {
            if let Some(line) = self.decoder.take_partial(&self.partial) {
                on_reply(Frame::Line(line));
            }
            self.partial.clear();
        }
    }
}

impl Codec for WsCodec {
    fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let newline: &[u8] = if self.binary { b"\n" } else { b"" };
        let parts = [payload, newline];
        if payload.len() + newline.len() != self.request_len {
            return self.frame(request_opcode(self.binary), &parts, out);
        }
        let key = self.next_mask();
        out.extend_from_slice(&self.request_header);
        let end = out.len();
        out[end - 4..].copy_from_slice(&key);
        append_masked(out, key, &parts);
    }

    fn decode<F: FnMut(Frame<'_>)>(
        &mut self,
        input: &[u8],
        control: &mut Vec<u8>,
        mut on_reply: F,
    ) -> Result<usize, ProtocolError> {
        let mut pos = 0;
        while let Some(header) = Header::parse(&input[pos..])? {
            let Some(end) = header
                .payload_len
                .checked_add(header.len)
                .and_then(|n| n.checked_add(pos))
                .filter(|&end| end <= input.len())
            else {
                break;
            };
            let data = &input[pos + header.len..end];
            match header.opcode {
                OpCode::Data(Data::Text | Data::Binary | Data::Continue) => {
                    self.on_data(data, header.is_final, &mut on_reply)
                }
                OpCode::Control(Control::Ping) => {
                    self.frame(OpCode::Control(Control::Pong), &[data], control)
                }
                OpCode::Control(Control::Pong) => {}
                OpCode::Control(Control::Close) => return Err(closed(data)),
                // FrameHeader::parse refuses reserved opcodes.
                OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
                    return Err(ProtocolError::Invalid("unknown opcode"))
                }
            }
            pos = end;
        }
        Ok(pos)
    }

    fn goodbye(&mut self, out: &mut Vec<u8>) {
        self.frame(
            OpCode::Control(Control::Close),
            &[&NORMAL_CLOSURE.to_be_bytes()],
            out,
        );
    }
}

fn request_opcode(binary: bool) -> OpCode {
    OpCode::Data(if binary { Data::Binary } else { Data::Text })
}

/// The header of a whole (final) masked frame.
fn header(opcode: OpCode, key: [u8; 4]) -> FrameHeader {
    FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode,
        mask: Some(key),
    }
}

/// Appends `parts` masked with `key` (RFC 6455, section 5.3).
fn append_masked(out: &mut Vec<u8>, key: [u8; 4], parts: &[&[u8]]) {
    let start = out.len();
    for part in parts {
        out.extend_from_slice(part);
    }
    for (i, b) in out[start..].iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

fn closed(data: &[u8]) -> ProtocolError {
    let code = match data {
        [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
        _ => 1005,
    };
    let reason = String::from_utf8_lossy(data.get(2..).unwrap_or_default());
    ProtocolError::Closed {
        code,
        reason: if reason.is_empty() {
            String::new()
        } else {
            format!(": {reason}")
        },
    }
}

/// The header of a frame received from the server, as tungstenite reads it,
/// with what a client must refuse refused.
struct Header {
    is_final: bool,
    opcode: OpCode,
    /// Bytes of the header itself.
    len: usize,
    payload_len: usize,
}

impl Header {
    /// `None` until the whole header has arrived.
    fn parse(b: &[u8]) -> Result<Option<Header>, ProtocolError> {
        let mut cursor = Cursor::new(b);
        let Some((header, payload_len)) =
            FrameHeader::parse(&mut cursor).map_err(ProtocolError::Header)?
        else {
            return Ok(None);
        };
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(ProtocolError::Invalid(
                "reserved bits set without an extension",
            ));
        }
        if header.mask.is_some() {
            return Err(ProtocolError::Invalid("a server frame is masked"));
        }
        let payload_len = usize::try_from(payload_len)
            .map_err(|_| ProtocolError::Invalid("frame length too large"))?;
        Ok(Some(Header {
            is_final: header.is_final,
            opcode: header.opcode,
            len: cursor.position() as usize,
            payload_len,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The bytes of RFC 6455, written out here rather than taken from tungstenite,
    // so that the tests check the frames against the protocol, not against itself.
    const OP_CONTINUATION: u8 = 0x0;
    const OP_TEXT: u8 = 0x1;
    const OP_BINARY: u8 = 0x2;
    const OP_CLOSE: u8 = 0x8;
    const OP_PING: u8 = 0x9;
    const OP_PONG: u8 = 0xA;
    const FIN: u8 = 0x80;
    const MASKED: u8 = 0x80;

    /// A frame as a server sends it: unmasked.
    fn server_frame(fin: bool, opcode: u8, data: &[u8]) -> Vec<u8> {
        let mut f = vec![if fin { FIN } else { 0 } | opcode];
        if data.len() < 126 {
            f.push(data.len() as u8);
        } else {
            f.push(126);
            f.extend_from_slice(&(data.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(data);
        f
    }

    /// Unmasks a frame the codec wrote; returns (first byte, payload).
    fn unmask(frame: &[u8]) -> (u8, Vec<u8>) {
        assert!(frame[1] & MASKED != 0, "client frames must be masked");
        let (len, at) = match frame[1] & 0x7f {
            126 => (usize::from(u16::from_be_bytes([frame[2], frame[3]])), 4),
            127 => {
                let be: [u8; 8] = frame[2..10].try_into().unwrap();
                (u64::from_be_bytes(be) as usize, 10)
            }
            n => (usize::from(n), 2),
        };
        let key = &frame[at..at + 4];
        let data = &frame[at + 4..];
        assert_eq!(data.len(), len);
        let data = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i & 3])
            .collect();
        (frame[0], data)
    }

    /// Decodes `input` fed in pieces cut at `cuts`, as reads would deliver it.
    fn lines(codec: &mut WsCodec, input: &[u8], cuts: &[usize]) -> Vec<String> {
        let mut got = Vec::new();
        let mut control = Vec::new();
        let mut buf = Vec::new();
        let mut last = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            buf.extend_from_slice(&input[last..cut]);
            last = cut;
            let used = codec
                .decode(&buf, &mut control, |f| {
                    got.push(match f {
                        Frame::Line(l) => String::from_utf8_lossy(l).into_owned(),
                        Frame::TooLong => "<too long>".into(),
                    })
                })
                .unwrap();
            buf.drain(..used);
        }
        assert!(buf.is_empty(), "all input is used");
        got
    }

    #[test]
    fn text_requests_are_masked_frames_of_the_payload() {
        let mut codec = WsCodec::new(false, 16);
        let mut out = Vec::new();
        codec.encode(b"0000000000000001", &mut out);
        assert_eq!(unmask(&out), (FIN | OP_TEXT, b"0000000000000001".to_vec()));
    }

    #[test]
    fn binary_requests_end_in_a_newline_and_long_ones_use_the_16_bit_length() {
        let mut codec = WsCodec::new(true, 1024);
        let mut out = Vec::new();
        let payload = vec![b'x'; 1024];
        codec.encode(&payload, &mut out);
        let (first, data) = unmask(&out);
        assert_eq!(first, FIN | OP_BINARY);
        assert_eq!(&data[..1024], &payload[..]);
        assert_eq!(data[1024], b'\n');
    }

    #[test]
    fn one_text_frame_is_one_reply_with_or_without_a_newline() {
        let mut codec = WsCodec::new(false, 16);
        let mut input = server_frame(true, OP_TEXT, b"[t] a");
        input.extend(server_frame(true, OP_TEXT, b"[t] b\n"));
        input.extend(server_frame(true, OP_TEXT, b"[t] c\r\n[t] d\n"));
        assert_eq!(
            lines(&mut codec, &input, &[3, 9]),
            ["[t] a", "[t] b", "[t] c", "[t] d"]
        );
    }

    #[test]
    fn fragmented_text_message_is_one_reply() {
        let mut codec = WsCodec::new(false, 16);
        let mut input = server_frame(false, OP_TEXT, b"[t] he");
        input.extend(server_frame(true, OP_CONTINUATION, b"llo"));
        assert_eq!(lines(&mut codec, &input, &[]), ["[t] hello"]);
    }

    #[test]
    fn binary_replies_split_and_merged_across_frames_are_reassembled() {
        let mut codec = WsCodec::new(true, 16);
        let mut input = server_frame(true, OP_BINARY, b"[t] on");
        input.extend(server_frame(true, OP_BINARY, b"e\n[t] two\n[t] th"));
        input.extend(server_frame(true, OP_BINARY, b"ree\n"));
        assert_eq!(
            lines(&mut codec, &input, &[1, 7, 20]),
            ["[t] one", "[t] two", "[t] three"]
        );
    }

    #[test]
    fn pings_are_answered_with_masked_pongs() {
        let mut codec = WsCodec::new(false, 16);
        let mut control = Vec::new();
        let input = server_frame(true, OP_PING, b"hb");
        let used = codec.decode(&input, &mut control, |_| {}).unwrap();
        assert_eq!(used, input.len());
        assert_eq!(unmask(&control), (FIN | OP_PONG, b"hb".to_vec()));
    }

    #[test]
    fn close_frame_ends_the_session_with_its_reason() {
        let mut codec = WsCodec::new(false, 16);
        let mut data = 1011u16.to_be_bytes().to_vec();
        data.extend_from_slice(b"upstream gone");
        let input = server_frame(true, OP_CLOSE, &data);
        let err = codec.decode(&input, &mut Vec::new(), |_| {}).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the server closed the WebSocket (code 1011: upstream gone)"
        );
    }

    #[test]
    fn masked_server_frames_are_refused() {
        let mut codec = WsCodec::new(false, 16);
        let input = [FIN | OP_TEXT, MASKED | 1, 0, 0, 0, 0, b'x'];
        assert!(codec.decode(&input, &mut Vec::new(), |_| {}).is_err());
    }

    #[test]
    fn incomplete_frames_wait_for_more_input() {
        let mut codec = WsCodec::new(false, 300);
        let input = server_frame(true, OP_TEXT, &[b'y'; 200]);
        for cut in [1, 2, 3, 100] {
            let used = codec.decode(&input[..cut], &mut Vec::new(), |_| panic!("no reply yet"));
            assert_eq!(used.unwrap(), 0);
        }
    }

    #[test]
    fn requests_of_64_kib_or_more_use_the_64_bit_length() {
        let mut codec = WsCodec::new(false, 70_000);
        let mut out = Vec::new();
        let payload = vec![b'z'; 70_000];
        codec.encode(&payload, &mut out);
        assert_eq!(out[1], MASKED | 127);
        assert_eq!(unmask(&out), (FIN | OP_TEXT, payload));
    }

    #[test]
    fn goodbye_is_a_masked_normal_close() {
        let mut codec = WsCodec::new(false, 16);
        let mut out = Vec::new();
        codec.goodbye(&mut out);
        assert_eq!(unmask(&out), (FIN | OP_CLOSE, vec![0x03, 0xe8]));
    }

    #[test]
    fn reserved_bits_and_opcodes_are_refused() {
        for input in [
            [FIN | 0x40 | OP_TEXT, 0],
            [FIN | 0x10 | OP_BINARY, 0],
            [FIN | 0x3, 0],
            [FIN | 0xB, 0],
        ] {
            let mut codec = WsCodec::new(false, 16);
            let err = codec.decode(&input, &mut Vec::new(), |_| {});
            assert!(err.is_err(), "{input:x?} accepted");
        }
    }

    #[test]
    fn each_request_has_a_fresh_mask() {
        let mut codec = WsCodec::new(false, 16);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        codec.encode(b"same", &mut a);
        codec.encode(b"same", &mut b);
        assert_ne!(a[2..6], b[2..6]);
    }

    #[test]
    fn requests_of_another_length_than_the_codecs_are_framed_too() {
        for binary in [false, true] {
            let mut codec = WsCodec::new(binary, 16);
            for len in [0, 5, 200, 70_000] {
                let mut out = Vec::new();
                let payload = vec![b'q'; len];
                codec.encode(&payload, &mut out);
                let (first, data) = unmask(&out);
                assert_eq!(first & 0x0f, if binary { OP_BINARY } else { OP_TEXT });
                assert_eq!(data.len(), len + usize::from(binary), "{binary} {len}");
                assert_eq!(&data[..len], &payload[..]);
            }
        }
    }
}
