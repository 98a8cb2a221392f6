//! A line client for the soak: send a line, read one answer line, check it.

use std::net::SocketAddr;
use std::time::Duration;

use timecho_shared::reply::ReplyBytes;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Longest answer line read; replies to the soak's own lines are far shorter.
const MAX_ANSWER: usize = 4096;

pub struct LineClient {
    stream: BufReader<TcpStream>,
    line: Vec<u8>,
}

impl LineClient {
    pub async fn connect(addr: SocketAddr, limit: Duration) -> Result<LineClient, String> {
        let stream = timeout(limit, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("tcp connect to {addr}: no answer within {limit:?}"))?
            .map_err(|e| format!("tcp connect to {addr}: {e}"))?;
        Ok(LineClient {
            stream: BufReader::new(stream),
            line: Vec::with_capacity(256),
        })
    }

    /// Sends `bytes` as they are (the caller adds the newline).
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .get_mut()
            .write_all(bytes)
            .await
            .map_err(|e| format!("tcp send: {e}"))
    }

    /// The next answer line, without its line ending.
    pub async fn answer(&mut self, limit: Duration) -> Result<&[u8], String> {
        self.line.clear();
        let read = async {
            loop {
                let buf = self.stream.fill_buf().await?;
                if buf.is_empty() {
                    return Ok(false);
                }
                let (used, done) = match memchr::memchr(b'\n', buf) {
                    Some(i) => (i + 1, true),
                    None => (buf.len(), false),
                };
                if self.line.len() < MAX_ANSWER {
                    self.line.extend_from_slice(&buf[..used]);
                }
                self.stream.consume(used);
                if done {
                    return Ok::<_, std::io::Error>(true);
                }
            }
        };
        match timeout(limit, read).await {
            Err(_) => Err(format!("tcp: no answer within {limit:?}")),
            Ok(Err(e)) => Err(format!("tcp read: {e}")),
            Ok(Ok(false)) => Err("tcp: the server closed the connection".to_owned()),
            Ok(Ok(true)) => {
                let end = self.line.len() - 1;
                let end = if self.line[..end].ends_with(b"\r") {
                    end - 1
                } else {
                    end
                };
                Ok(&self.line[..end])
            }
        }
    }

    /// Sends `payload` as a line and checks that the answer echoes it, stamped.
    pub async fn exchange(&mut self, payload: &[u8], limit: Duration) -> Result<(), String> {
        let mut line = Vec::with_capacity(payload.len() + 1);
        line.extend_from_slice(payload);
        line.push(b'\n');
        self.send(&line).await?;
        let answer = self.answer(limit).await?;
        check_echo(answer, payload)
    }

    /// Half-closes and waits for the server to close too.
    pub async fn close(mut self, limit: Duration) -> Result<(), String> {
        let _ = self.stream.get_mut().shutdown().await;
        let mut rest = Vec::new();
        match timeout(
            limit,
            tokio::io::AsyncReadExt::read_to_end(&mut self.stream, &mut rest),
        )
        .await
        {
            Err(_) => Err(format!(
                "tcp: the server did not close within {limit:?} of our close"
            )),
            Ok(_) => Ok(()),
        }
    }
}

/// Whether `answer` is `[<stamp>] <payload>`.
pub fn check_echo(answer: &[u8], payload: &[u8]) -> Result<(), String> {
    match ReplyBytes::parse(answer) {
        ReplyBytes::Stamped { text, .. } if text == payload => Ok(()),
        _ => Err(format!(
            "expected a stamped \"{}\", got \"{}\"",
            payload.escape_ascii(),
            answer.escape_ascii()
        )),
    }
}
