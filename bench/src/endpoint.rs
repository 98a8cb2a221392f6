//! What is under test, and opening one connection to it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::args::{Target, WsArgs};
use super::fresh_server::FreshServer;
use super::net;
use super::pacer::Pacer;
use super::schedule::Schedule;
use super::session::Session;
use super::stats::Recorder;
use super::tcp::LineCodec;
use super::ws::{self, HandshakeError, WsTarget};
use super::ws_frame::WsCodec;
use timecho_shared::host_port::HostPort;

pub enum Endpoint {
    Tcp {
        addr: SocketAddr,
        shown: String,
    },
    Ws {
        target: WsTarget,
        shown: String,
        binary: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// One open connection, ready for load.
pub enum Connected {
    Tcp(Session<LineCodec>),
    Ws(Session<WsCodec>),
}

impl Endpoint {
    pub fn from_args(target: &Target) -> anyhow::Result<Endpoint> {
        Ok(match target {
            Target::Tcp(tcp) => Endpoint::Tcp {
                addr: HostPort::parse_or_default_port(&tcp.addr)?.resolve_first()?,
                shown: tcp.addr.clone(),
            },
            Target::Ws(WsArgs { url, ws_binary, .. }) => Endpoint::Ws {
                target: WsTarget::parse(url)?,
                shown: url.clone(),
                binary: *ws_binary,
            },
            Target::Soak(_) => anyhow::bail!("a soak run has no single endpoint"),
        })
    }

    /// The same kind of endpoint as `target` asks for, on a server this run started.
    pub fn on(server: &FreshServer, target: &Target) -> anyhow::Result<Endpoint> {
        Ok(match (target, &server.http) {
            (Target::Ws(WsArgs { ws_binary, .. }), Some(http)) => {
                let url = format!("ws://{http}/ws");
                Endpoint::Ws {
                    target: WsTarget::parse(&url)?,
                    shown: url,
                    binary: *ws_binary,
                }
            }
            _ => Endpoint::Tcp {
                addr: server.tcp.parse()?,
                shown: server.tcp.clone(),
            },
        })
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            Endpoint::Tcp { addr, .. } => *addr,
            Endpoint::Ws { target, .. } => target.addr,
        }
    }

    pub fn mode(&self) -> &'static str {
        match self {
            Endpoint::Tcp { .. } => "tcp",
            Endpoint::Ws { binary: false, .. } => "ws-text",
            Endpoint::Ws { binary: true, .. } => "ws-binary",
        }
    }

    pub fn shown(&self) -> &str {
        match self {
            Endpoint::Tcp { shown, .. } | Endpoint::Ws { shown, .. } => shown,
        }
    }

    /// Connects connection `index` (and upgrades it) within `limit`.
    pub async fn open(
        &self,
        index: usize,
        source: Option<IpAddr>,
        size: usize,
        pipeline: usize,
        limit: Duration,
    ) -> Result<Connected, OpenError> {
        let opening = async {
            let mut stream = net::connect(self.addr(), source)
                .await
                .map_err(OpenError::Connect)?;
            Ok(match self {
                Endpoint::Tcp { .. } => {
                    let codec = LineCodec::new(size);
                    Connected::Tcp(Session::new(stream, codec, index, size, pipeline, &[]))
                }
                Endpoint::Ws { target, binary, .. } => {
                    let leftover = ws::handshake(&mut stream, target).await?;
                    let codec = WsCodec::new(*binary, size);
                    Connected::Ws(Session::new(
                        stream, codec, index, size, pipeline, &leftover,
                    ))
                }
            })
        };
        timeout(limit, opening)
            .await
            .unwrap_or(Err(OpenError::Timeout(limit)))
    }
}

impl Connected {
    pub async fn run_load(
        &mut self,
        pipeline: usize,
        reply_timeout: Duration,
        schedule: Schedule,
        recorder: &Recorder,
    ) {
        match self {
            Connected::Tcp(s) => {
                s.run_load(pipeline, reply_timeout, schedule, recorder)
                    .await
            }
            Connected::Ws(s) => {
                s.run_load(pipeline, reply_timeout, schedule, recorder)
                    .await
            }
        }
    }

    pub async fn run_paced(
        &mut self,
        pacer: &Pacer,
        reply_timeout: Duration,
        schedule: Schedule,
        recorder: &Recorder,
    ) {
        match self {
            Connected::Tcp(s) => s.run_paced(pacer, reply_timeout, schedule, recorder).await,
            Connected::Ws(s) => s.run_paced(pacer, reply_timeout, schedule, recorder).await,
        }
    }

    pub async fn close(&mut self) {
        match self {
            Connected::Tcp(s) => s.close().await,
            Connected::Ws(s) => s.close().await,
        }
    }

    pub async fn echo_once(&mut self, reply_timeout: Duration, recorder: &Recorder) -> bool {
        match self {
            Connected::Tcp(s) => s.echo_once(reply_timeout, recorder).await,
            Connected::Ws(s) => s.echo_once(reply_timeout, recorder).await,
        }
    }

    pub async fn idle_until(&mut self, stop: &CancellationToken, recorder: &Recorder) -> bool {
        match self {
            Connected::Tcp(s) => s.idle_until(stop, recorder).await,
            Connected::Ws(s) => s.idle_until(stop, recorder).await,
        }
    }

    pub fn is_websocket(&self) -> bool {
        matches!(self, Connected::Ws(_))
    }
}
