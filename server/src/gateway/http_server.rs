//! The HTTP accept loop. `axum::serve` sets no header-read timeout, so a client
//! that trickles its request (slowloris) would hold a connection forever; this
//! loop gives every connection a deadline for its headers (and its TLS
//! handshake), a connection limit, access lists, and a graceful drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::access::AccessList;
use crate::tls;

/// How long a client may take to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

pub struct HttpLimits {
    pub max_connections: usize,
    pub drain_timeout: Duration,
    pub access: Arc<AccessList>,
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until shutdown.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
    limits: HttpLimits,
) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // HTTP/1.1 only: the page, its WebSocket and the ops endpoints need nothing
    // more, and telling HTTP/2 apart would read bytes with no deadline.
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let builder = Arc::new(builder);
    let mut backoff = Duration::from_millis(10);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "http accept failed; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(10);
        if !limits.access.permits(peer.ip()) {
            debug!(%peer, "http connection denied by --allow/--deny");
            continue;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!(%peer, "http connection refused: limit reached");
            if tls.is_none() {
                let _ = stream.try_write(
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            app: app.clone(),
            builder: builder.clone(),
            watcher: graceful.watcher(),
            peer,
            _permit: permit,
        };
        match &tls {
            None => {
                tokio::spawn(async move {
                    // A client that sends nothing at all is cut off like a slow one.
                    let mut first = [0u8; 1];
                    match tokio::time::timeout(HEADER_TIMEOUT, stream.peek(&mut first)).await {
                        Ok(Ok(n)) if n > 0 => connection.serve(stream).await,
                        _ => debug!(%peer, "http client sent nothing; closed"),
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(tls::HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls_stream)) => connection.serve(tls_stream).await,
                        Ok(Err(e)) => debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        debug!("http connections still open after the drain deadline");
    }
}

/// One accepted HTTP connection and what serving it needs.
struct Connection {
    app: Router,
    builder: Arc<Builder<TokioExecutor>>,
    watcher: Watcher,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            app,
            builder,
            watcher,
            peer,
            _permit,
        } = self;
        // Handlers see the peer as axum's `ConnectInfo`, as with `axum::serve`.
        let service =
            TowerToHyperService::new(tower::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(req)
            }));
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        if let Err(e) = watcher.watch(conn.into_owned()).await {
            debug!(%peer, "http connection ended: {e}");
        }
    }
}
