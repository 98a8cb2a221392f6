//! The timestamp protocol as an admitted client sees it: one connection's span,
//! its gauge, and how it ended, around `connection::serve`.

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};

use crate::admission::{Handler, Peer, Stream};
use crate::config::Protocol;
use crate::connection::{self, ConnectionError, End};
use crate::metrics::ListenerMetrics;

/// Serves timestamp lines on one listener.
pub struct LineService {
    /// Labels logs, e.g. `tcp 127.0.0.1:8899`.
    pub name: String,
    pub protocol: Arc<Protocol>,
    pub metrics: Arc<ListenerMetrics>,
    pub shutdown: CancellationToken,
}

impl Handler for LineService {
    /// An async block rather than an async fn, which would keep the stream
    /// twice in every connection's task (see `connection::serve`).
    #[allow(clippy::manual_async_fn)]
    fn serve<S: Stream>(&self, stream: S, peer: Peer) -> impl Future<Output = ()> + Send {
        async move {
            let span = info_span!("conn", listener = %self.name, %peer);
            self.metrics.open.inc();
            let result = connection::serve(stream, &self.protocol, &self.metrics, &self.shutdown)
                .instrument(span.clone())
                .await;
            self.metrics.open.dec();
            let _entered = span.enter();
            match result {
                Ok(End::ClientDone) => debug!("closed by client"),
                Ok(End::Idle) => debug!("closed: idle timeout"),
                Ok(End::Shutdown) => debug!("closed: server shutting down"),
                Err(e @ ConnectionError::Stalled(_)) => warn!("dropped: {e}"),
                Err(ConnectionError::Io(e)) => debug!("closed: {e}"),
            }
        }
    }
}
