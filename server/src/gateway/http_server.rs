//! The HTTP accept loop. `axum::serve` sets no header-read timeout, so a client
//! that trickles its request (slowloris) would hold a connection forever; this
//! loop gives every connection a deadline for its headers, a connection limit,
//! and a graceful drain on shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::access::AccessList;

/// How long a client may take to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

pub struct HttpLimits {
    pub max_connections: usize,
    pub drain_timeout: Duration,
    pub access: Arc<AccessList>,
}

pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    limits: HttpLimits,
) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
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
            let _ = stream.try_write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Handlers see the peer as axum's `ConnectInfo`, as with `axum::serve`.
        let app = app.clone();
        let service =
            TowerToHyperService::new(tower::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(req)
            }));
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(%peer, "http connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        debug!("http connections still open after the drain deadline");
    }
}
