//! The ordinary part of the soak: steady request/reply traffic over TCP and
//! WebSocket, short-lived connections, and idle clients held and replaced.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{interval, sleep, Instant, MissedTickBehavior};

use super::tally::Tally;
use super::tcp_client::LineClient;
use super::ws_client::{self, Ended, ExchangeError};
use super::{Ctx, SoakArgs};
use crate::ws::WsTarget;

/// A steady WebSocket is reopened this often, so that it never outlives its token.
const STEADY_LIFETIME: Duration = Duration::from_secs(60);
/// Idle clients are held for 20 to 50 s, each its own length, then replaced.
const IDLE_HOLD_MIN_S: u64 = 20;
const IDLE_HOLD_SPREAD_S: u64 = 30;
/// Short-lived connections in progress at once; more wait.
const CHURN_IN_FLIGHT: usize = 64;
/// Pause after a failure before trying again, so a dead server is not hammered.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

pub fn spawn_all(ctx: &Arc<Ctx>, args: &SoakArgs, tasks: &mut JoinSet<()>) {
    for n in 0..args.steady {
        tasks.spawn(steady_tcp(ctx.clone(), n, args.interval));
        tasks.spawn(steady_ws(ctx.clone(), n, args.interval));
    }
    for n in 0..args.idle {
        tasks.spawn(idle(ctx.clone(), n));
    }
    if args.churn > 0 {
        tasks.spawn(churn(ctx.clone(), args.churn));
    }
}

/// The sign-in cookie of the WebSocket traffic, if the server wants one.
fn cookie(ctx: &Ctx) -> Option<String> {
    ctx.signin.as_ref().map(|s| s.cookie())
}

async fn pause(ctx: &Ctx, d: Duration) -> bool {
    tokio::select! {
        () = ctx.stop.cancelled() => false,
        () = sleep(d) => true,
    }
}

async fn steady_tcp(ctx: Arc<Ctx>, n: usize, gap: Duration) {
    let mut seq = 0u64;
    while !ctx.stop.is_cancelled() {
        let mut client = match LineClient::connect(ctx.targets.tcp, ctx.timeout).await {
            Ok(c) => c,
            Err(e) => {
                ctx.tally.error(format!("steady {e}"));
                pause(&ctx, RETRY_PAUSE).await;
                continue;
            }
        };
        loop {
            seq += 1;
            let payload = format!("soak steady tcp {n} {seq}");
            if let Err(e) = client.exchange(payload.as_bytes(), ctx.timeout).await {
                ctx.tally.error(format!("steady tcp {n}: {e}"));
                break;
            }
            Tally::add(&ctx.tally.steady_replies);
            if !pause(&ctx, gap).await {
                let _ = client.close(ctx.timeout).await;
                return;
            }
        }
        pause(&ctx, RETRY_PAUSE).await;
    }
}

async fn steady_ws(ctx: Arc<Ctx>, n: usize, gap: Duration) {
    let mut seq = 0u64;
    while !ctx.stop.is_cancelled() {
        let cookie = cookie(&ctx);
        let mut ws = match ws_client::connect(&ctx.targets.ws, cookie.as_deref(), ctx.timeout).await
        {
            Ok(ws) => ws,
            Err(e) => {
                ctx.tally.error(format!("steady ws {n}: {e}"));
                pause(&ctx, RETRY_PAUSE).await;
                continue;
            }
        };
        let opened = Instant::now();
        loop {
            seq += 1;
            let payload = format!("soak steady ws {n} {seq}");
            match ws_client::exchange(&mut ws, &payload, ctx.timeout).await {
                Ok(()) => Tally::add(&ctx.tally.steady_replies),
                Err(ExchangeError::Ended(Ended::Closed(code)))
                    if code == timecho_shared::relay::close_code::TOKEN_EXPIRED =>
                {
                    Tally::add(&ctx.tally.token_reopens);
                    break;
                }
                Err(e) => {
                    ctx.tally.error(format!("steady ws {n}: {}", e.describe()));
                    pause(&ctx, RETRY_PAUSE).await;
                    break;
                }
            }
            if !pause(&ctx, gap).await || opened.elapsed() >= STEADY_LIFETIME {
                ws_client::close(ws, ctx.timeout).await;
                break;
            }
        }
    }
}

/// One idle client slot: even slots hold TCP connections, odd ones WebSockets
/// (which first exchange a message, so that their bridge upstream is up).
async fn idle(ctx: Arc<Ctx>, n: usize) {
    let hold = Duration::from_secs(IDLE_HOLD_MIN_S + (n as u64 * 7) % IDLE_HOLD_SPREAD_S);
    // Slots start spread over a second, not all at once.
    if !pause(&ctx, Duration::from_millis((n as u64 * 37) % 1000)).await {
        return;
    }
    while !ctx.stop.is_cancelled() {
        let held = if n.is_multiple_of(2) {
            idle_tcp(&ctx, hold).await
        } else {
            idle_ws(&ctx, n, hold).await
        };
        if let Err(e) = held {
            ctx.tally.error(format!("idle {n}: {e}"));
            pause(&ctx, RETRY_PAUSE).await;
        }
    }
}

async fn idle_tcp(ctx: &Ctx, hold: Duration) -> Result<(), String> {
    let client = LineClient::connect(ctx.targets.tcp, ctx.timeout).await?;
    Tally::add(&ctx.tally.idle_opened);
    pause(ctx, hold).await;
    client.close(ctx.timeout).await
}

async fn idle_ws(ctx: &Ctx, n: usize, hold: Duration) -> Result<(), String> {
    let cookie = cookie(ctx);
    let mut ws = ws_client::connect(&ctx.targets.ws, cookie.as_deref(), ctx.timeout).await?;
    ws_client::exchange(&mut ws, &format!("soak idle ws {n}"), ctx.timeout)
        .await
        .map_err(|e| e.describe())?;
    Tally::add(&ctx.tally.idle_opened);
    // Reading answers the gateway's pings while the client idles.
    let until = Instant::now() + hold;
    tokio::select! {
        () = ctx.stop.cancelled() => {}
        () = tokio::time::sleep_until(until) => {}
        read = ws_client::next_data(&mut ws, hold + ctx.timeout) => {
            match read {
                Ok(Err(_)) => {
                    Tally::add(&ctx.tally.idle_closed_by_server);
                    return Ok(());
                }
                Ok(Ok(data)) => return Err(format!(
                    "an idle WebSocket got an unasked-for message: \"{}\"",
                    data.escape_ascii()
                )),
                Err(_) => {}
            }
        }
    }
    ws_client::close(ws, ctx.timeout).await;
    Ok(())
}

/// `per_second` short-lived connections a second, TCP and WebSocket in turn.
async fn churn(ctx: Arc<Ctx>, per_second: u32) {
    let permits = Arc::new(Semaphore::new(CHURN_IN_FLIGHT));
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
        tasks.spawn(async move {
            let done = if n % 2 == 0 {
                churn_tcp(&ctx, n).await
            } else {
                churn_ws(&ctx, &ctx.targets.ws, n).await
            };
            match done {
                Ok(()) => Tally::add(&ctx.tally.churned),
                Err(e) => ctx.tally.error(format!("churn {n}: {e}")),
            }
            drop(permit);
        });
        // Finished ones are collected as we go, so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

const CHURN_MESSAGES: u64 = 3;

async fn churn_tcp(ctx: &Ctx, n: u64) -> Result<(), String> {
    let mut client = LineClient::connect(ctx.targets.tcp, ctx.timeout).await?;
    for i in 0..CHURN_MESSAGES {
        client
            .exchange(format!("soak churn tcp {n} {i}").as_bytes(), ctx.timeout)
            .await?;
    }
    client.close(ctx.timeout).await
}

async fn churn_ws(ctx: &Ctx, target: &WsTarget, n: u64) -> Result<(), String> {
    let cookie = cookie(ctx);
    let mut ws = ws_client::connect(target, cookie.as_deref(), ctx.timeout).await?;
    for i in 0..CHURN_MESSAGES {
        ws_client::exchange(&mut ws, &format!("soak churn ws {n} {i}"), ctx.timeout)
            .await
            .map_err(|e| e.describe())?;
    }
    ws_client::close(ws, ctx.timeout).await;
    Ok(())
}
