//! Replies as they arrive: framed with the shared line decoder, printed as they
//! came. A reply with no newline (a raw-framing server's, or the last one of a
//! stream) is taken as complete once the server has been quiet for [`QUIET`].

use std::io::{self, Write};
use std::time::Duration;

use timecho_shared::{LineDecoder, Span};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::{timeout_at, Instant};

/// How long the server must be silent before a reply without a newline counts
/// as complete.
pub const QUIET: Duration = Duration::from_millis(150);

/// The read buffer. A reply line longer than this is printed in pieces (with no
/// newline added between them), so no line is ever cut or dropped.
const BUFFER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error("no reply within {0:?}")]
    NoReply(Duration),
    #[error("the server closed the connection")]
    Closed,
    // The causes are sources, not only text, so that a closed standard
    // output (`| head -1`) is recognised as such and ends quietly.
    #[error("connection lost")]
    Lost(#[source] io::Error),
    #[error("cannot write to standard output")]
    Output(#[source] io::Error),
}

pub struct Replies<R> {
    read: R,
    buf: Box<[u8]>,
    filled: usize,
    /// Its limit is the buffer's size, so it never reports a line as too long:
    /// a full buffer is printed and emptied before that could happen.
    decoder: LineDecoder,
}

impl<R: AsyncRead + Unpin> Replies<R> {
    pub fn new(read: R) -> Self {
        Replies {
            read,
            buf: vec![0; BUFFER].into_boxed_slice(),
            filled: 0,
            decoder: LineDecoder::new(BUFFER),
        }
    }

    /// Reads what the server sent next; false at the end of the stream.
    /// Cancel-safe: nothing is lost if the future is dropped before it is ready.
    pub async fn fill(&mut self) -> Result<bool, ReplyError> {
        let n = self
            .read
            .read(&mut self.buf[self.filled..])
            .await
            .map_err(ReplyError::Lost)?;
        self.filled += n;
        Ok(n > 0)
    }

    /// Bytes of a reply whose newline has not arrived.
    pub fn has_partial(&self) -> bool {
        self.filled > 0
    }

    /// True when the buffer holds a partial line and nothing else: it must be
    /// printed ([`Replies::print_partial`]) before more can be read.
    pub fn is_full(&self) -> bool {
        self.filled == self.buf.len()
    }

    /// Prints every complete reply line exactly as received, newlines included;
    /// returns how many there were.
    pub fn print_lines(&mut self, out: &mut impl Write) -> Result<usize, ReplyError> {
        let mut frames = self.decoder.frames(&self.buf[..self.filled]);
        let mut lines = 0;
        while frames.next_span().is_some() {
            lines += 1;
        }
        let used = frames.consumed();
        out.write_all(&self.buf[..used])
            .map_err(ReplyError::Output)?;
        self.buf.copy_within(used..self.filled, 0);
        self.filled -= used;
        out.flush().map_err(ReplyError::Output)?;
        Ok(lines)
    }

    /// Prints the partial line exactly as received and empties the buffer.
    pub fn print_partial(&mut self, out: &mut impl Write) -> Result<(), ReplyError> {
        self.decoder.take_partial_span(&self.buf[..self.filled]);
        out.write_all(&self.buf[..self.filled])
            .and_then(|()| out.flush())
            .map_err(ReplyError::Output)?;
        self.filled = 0;
        Ok(())
    }

    /// Reads and prints one reply, on a line of its own: a line, or what
    /// arrived before the server went quiet or closed. Whatever came after it
    /// stays for the next call.
    pub async fn print_one(
        &mut self,
        timeout: Duration,
        out: &mut impl Write,
    ) -> Result<(), ReplyError> {
        let deadline = Instant::now() + timeout;
        // Part of an over-long reply has been printed already.
        let mut begun = false;
        loop {
            let mut frames = self.decoder.frames(&self.buf[..self.filled]);
            if let Some(span) = frames.next_span() {
                let used = frames.consumed();
                // The decoder's limit is the buffer's size: never too long.
                if let Span::Line(line) = span {
                    write_line(out, &self.buf[line])?;
                }
                self.buf.copy_within(used..self.filled, 0);
                self.filled -= used;
                return Ok(());
            }
            if self.is_full() {
                self.print_partial(out)?;
                begun = true;
            }
            let pending = begun || self.has_partial();
            let until = if pending {
                Instant::now() + QUIET
            } else {
                deadline
            };
            match timeout_at(until, self.fill()).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) | Err(_) if pending => return self.finish_partial(out),
                Ok(Ok(false)) => return Err(ReplyError::Closed),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(ReplyError::NoReply(timeout)),
            }
        }
    }

    /// Ends a reply that has no newline: printed on a line of its own.
    fn finish_partial(&mut self, out: &mut impl Write) -> Result<(), ReplyError> {
        let partial = self.decoder.take_partial_span(&self.buf[..self.filled]);
        let line = &self.buf[partial.unwrap_or_default()];
        write_line(out, line)?;
        self.filled = 0;
        Ok(())
    }
}

fn write_line(out: &mut impl Write, line: &[u8]) -> Result<(), ReplyError> {
    out.write_all(line)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(ReplyError::Output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A reader fed by the test through the other end of a pipe.
    fn pipe() -> (Replies<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(256 * 1024);
        (Replies::new(ours), theirs)
    }

    #[tokio::test]
    async fn complete_lines_are_printed_as_received_and_counted() {
        let (mut replies, mut server) = pipe();
        server.write_all(b"[t] a\r\n[t] b\n[t] c").await.unwrap();
        let mut out = Vec::new();
        assert!(replies.fill().await.unwrap());
        assert_eq!(replies.print_lines(&mut out).unwrap(), 2);
        assert_eq!(out, b"[t] a\r\n[t] b\n");
        assert!(replies.has_partial());
        replies.print_partial(&mut out).unwrap();
        assert!(!replies.has_partial());
        assert_eq!(out, b"[t] a\r\n[t] b\n[t] c");
        server.write_all(b"!\n").await.unwrap();
        drop(server);
        assert!(replies.fill().await.unwrap());
        assert_eq!(replies.print_lines(&mut out).unwrap(), 1);
        assert!(!replies.fill().await.unwrap());
        assert_eq!(out, b"[t] a\r\n[t] b\n[t] c!\n");
    }

    #[tokio::test]
    async fn a_line_longer_than_the_buffer_is_printed_whole_in_pieces() {
        let (mut replies, mut server) = pipe();
        let mut long = vec![b'x'; BUFFER + 100];
        long.push(b'\n');
        server.write_all(&long).await.unwrap();
        drop(server);
        let mut out = Vec::new();
        let mut lines = 0;
        while replies.fill().await.unwrap() {
            lines += replies.print_lines(&mut out).unwrap();
            if replies.is_full() {
                replies.print_partial(&mut out).unwrap();
            }
        }
        assert_eq!(out, long);
        assert_eq!(lines, 1);
    }

    #[tokio::test]
    async fn one_reply_is_printed_per_call_and_the_rest_kept() {
        let (mut replies, mut server) = pipe();
        server.write_all(b"[t] one\n[t] two\n").await.unwrap();
        let mut out = Vec::new();
        let limit = Duration::from_secs(5);
        replies.print_one(limit, &mut out).await.unwrap();
        assert_eq!(out, b"[t] one\n");
        replies.print_one(limit, &mut out).await.unwrap();
        assert_eq!(out, b"[t] one\n[t] two\n");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reply_without_newline_is_complete_once_the_server_is_quiet() {
        let (mut replies, mut server) = pipe();
        server.write_all(b"[t] raw").await.unwrap();
        let mut out = Vec::new();
        let started = Instant::now();
        replies
            .print_one(Duration::from_secs(5), &mut out)
            .await
            .unwrap();
        assert_eq!(out, b"[t] raw\n");
        assert_eq!(started.elapsed(), QUIET);
    }

    #[tokio::test(start_paused = true)]
    async fn silence_is_no_reply_and_a_close_is_said_so() {
        let (mut replies, server) = pipe();
        let mut out = Vec::new();
        let err = replies
            .print_one(Duration::from_secs(3), &mut out)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "no reply within 3s");
        drop(server);
        let err = replies
            .print_one(Duration::from_secs(3), &mut out)
            .await
            .unwrap_err();
        assert!(matches!(err, ReplyError::Closed), "{err}");
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn a_partial_reply_is_printed_when_the_server_closes() {
        let (mut replies, mut server) = pipe();
        server.write_all(b"[t] last").await.unwrap();
        drop(server);
        let mut out = Vec::new();
        replies
            .print_one(Duration::from_secs(5), &mut out)
            .await
            .unwrap();
        assert_eq!(out, b"[t] last\n");
    }
}
