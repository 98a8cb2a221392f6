//! The hostile part of the soak, one input at a time and each with the answer
//! it must get: an oversize line (`error: `, and the connection still works),
//! random bytes over TCP (the server answers and closes when we do), an
//! oversize frame (close 1009), a text frame that is not UTF-8 (close 1007),
//! and broken HTTP requests (a 4xx, or the connection closed).

use std::sync::Arc;
use std::time::Duration;

use timecho_shared::relay::close_code;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{interval, timeout, MissedTickBehavior};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Message;

use super::tally::Tally;
use super::tcp_client::LineClient;
use super::{ws_client, Ctx};

/// Hostile inputs in progress at once; more wait.
const IN_FLIGHT: usize = 16;
/// Longest random input sent over TCP.
const MAX_GARBAGE: usize = 4096;

#[derive(Debug, Clone, Copy)]
enum Input {
    OversizeLine,
    RandomBytes,
    OversizeFrame,
    InvalidUtf8Frame,
    BrokenHttp,
}

const INPUTS: [Input; 5] = [
    Input::OversizeLine,
    Input::RandomBytes,
    Input::OversizeFrame,
    Input::InvalidUtf8Frame,
    Input::BrokenHttp,
];

pub fn spawn(ctx: &Arc<Ctx>, per_second: u32, tasks: &mut JoinSet<()>) {
    if per_second > 0 {
        tasks.spawn(run(ctx.clone(), per_second));
    }
}

async fn run(ctx: Arc<Ctx>, per_second: u32) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tick = interval(Duration::from_secs(1) / per_second);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut tasks = JoinSet::new();
    for n in 0u64.. {
        tokio::select! {
            () = ctx.stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let ctx = ctx.clone();
        let input = INPUTS[(n % INPUTS.len() as u64) as usize];
        tasks.spawn(async move {
            let (counter, done) = match input {
                Input::OversizeLine => (&ctx.tally.oversize, oversize_line(&ctx).await),
                Input::RandomBytes => (&ctx.tally.garbage, random_bytes(&ctx, n).await),
                Input::OversizeFrame => (&ctx.tally.oversize, oversize_frame(&ctx).await),
                Input::InvalidUtf8Frame => (&ctx.tally.garbage, invalid_utf8_frame(&ctx).await),
                Input::BrokenHttp => (&ctx.tally.bad_http, broken_http(&ctx, n).await),
            };
            match done {
                Ok(()) => Tally::add(counter),
                Err(e) => ctx.tally.error(format!("{input:?}: {e}")),
            }
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

async fn oversize_line(ctx: &Ctx) -> Result<(), String> {
    let mut client = LineClient::connect(ctx.targets.tcp, ctx.timeout).await?;
    let mut line = vec![b'x'; ctx.max_line + 1];
    line.push(b'\n');
    client.send(&line).await?;
    let answer = client.answer(ctx.timeout).await?;
    if !answer.starts_with(b"error: ") {
        return Err(format!(
            "an oversize line got \"{}\", not an `error: ` line",
            answer.escape_ascii()
        ));
    }
    client.exchange(b"after oversize", ctx.timeout).await?;
    client.close(ctx.timeout).await
}

async fn random_bytes(ctx: &Ctx, n: u64) -> Result<(), String> {
    let mut noise = Noise(n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let len = 1 + noise.next() as usize % MAX_GARBAGE;
    let bytes: Vec<u8> = (0..len).map(|_| noise.next() as u8).collect();
    let mut stream = TcpStream::connect(ctx.targets.tcp)
        .await
        .map_err(|e| format!("tcp connect: {e}"))?;
    stream
        .write_all(&bytes)
        .await
        .map_err(|e| format!("tcp send: {e}"))?;
    let _ = stream.shutdown().await;
    let mut answers = Vec::new();
    match timeout(ctx.timeout, stream.read_to_end(&mut answers)).await {
        Err(_) => Err(format!(
            "{len} random bytes: the server did not close within {:?} of our close",
            ctx.timeout
        )),
        // A reset is an answer too: the server may drop what it will not read.
        Ok(_) => Ok(()),
    }
}

async fn oversize_frame(ctx: &Ctx) -> Result<(), String> {
    let cookie = ctx.signin.as_ref().map(|s| s.cookie());
    let mut ws = ws_client::connect(&ctx.targets.ws, cookie.as_deref(), ctx.timeout).await?;
    let text = "x".repeat(ctx.max_line + 1);
    ws_client::expect_close(
        &mut ws,
        Message::text(text),
        close_code::TOO_BIG,
        ctx.timeout,
    )
    .await
}

async fn invalid_utf8_frame(ctx: &Ctx) -> Result<(), String> {
    let cookie = ctx.signin.as_ref().map(|s| s.cookie());
    let mut ws = ws_client::connect(&ctx.targets.ws, cookie.as_deref(), ctx.timeout).await?;
    let frame = Frame::message(
        b"soak \xff\xfe not utf-8".to_vec(),
        OpCode::Data(Data::Text),
        true,
    );
    ws_client::expect_close(
        &mut ws,
        Message::Frame(frame),
        close_code::INVALID_PAYLOAD,
        ctx.timeout,
    )
    .await
}

/// Requests no HTTP server should take, in turn.
fn broken_request(n: u64) -> Vec<u8> {
    match n % 4 {
        0 => b"BREW /coffee HTCPCP/1.0\r\n\r\n".to_vec(),
        1 => b"GET / HTTP/1.1\r\nHost: \x00\xff\r\n\r\n".to_vec(),
        2 => {
            let mut r = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Long: ".to_vec();
            r.extend(std::iter::repeat_n(b'a', 128 * 1024));
            r.extend_from_slice(b"\r\n\r\n");
            r
        }
        _ => b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 not tls at all\r\n\r\n".to_vec(),
    }
}

async fn broken_http(ctx: &Ctx, n: u64) -> Result<(), String> {
    let request = broken_request(n);
    let exchange = async {
        let mut stream = TcpStream::connect(ctx.targets.http).await?;
        // The server may answer and close before reading it all.
        let _ = stream.write_all(&request).await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = timeout(ctx.timeout, exchange)
        .await
        .map_err(|_| {
            format!(
                "broken HTTP request {}: no answer and no close within {:?}",
                n % 4,
                ctx.timeout
            )
        })?
        .map_err(|e| format!("http connect: {e}"))?;
    if answer.is_empty() || answer.starts_with(b"HTTP/1.1 4") {
        Ok(())
    } else {
        Err(format!(
            "broken HTTP request {} got \"{}\"",
            n % 4,
            String::from_utf8_lossy(&answer[..answer.len().min(60)]).escape_debug()
        ))
    }
}

/// xorshift64: reproducible noise without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
