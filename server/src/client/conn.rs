//! Connecting to a timestamp server over TCP, TLS or a unix socket, as one
//! stream type, so the sessions do not care which.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use super::trust::{self, Trust};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use timecho_shared::host_port::HostPort;

/// How long one address may take to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected byte stream, whichever transport carries it.
pub trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

pub type LineStream = Box<dyn Duplex>;

/// A connection and what it reached, as the user is told ("connected to ...").
pub struct Link {
    pub conn: LineStream,
    /// The address that answered (one of a name's), or the socket's path.
    pub peer: String,
    /// Which instance answered, when the server says (a gateway's WebSocket
    /// handshake names it; the line protocol does not).
    pub instance: Option<String>,
}

/// Connects to the first address of `target` that accepts: a name may have an
/// IPv6 and an IPv4 address and the server listen on only one of them.
async fn connect(target: &HostPort) -> anyhow::Result<TcpStream> {
    let addrs = target.resolve()?;
    // An address typed as such is said once, not again beside its error.
    let said = addrs.len() == 1 && !target.is_name();
    let mut failures = Vec::new();
    for sa in addrs {
        let why = match timeout(CONNECT_TIMEOUT, TcpStream::connect(sa)).await {
            Ok(Ok(s)) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Ok(Err(e)) => plain(&e),
            Err(_) => format!("no answer within {CONNECT_TIMEOUT:?}"),
        };
        failures.push(if said { why } else { format!("{sa}: {why}") });
    }
    Err(anyhow!(
        "cannot connect to {}: {} (is `timecho serve` running there?)",
        target,
        failures.join("; ")
    ))
}

/// An I/O error in words, without the "(os error 111)" that follows them.
pub fn plain(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

fn peer_of(s: &TcpStream, target: &HostPort) -> String {
    s.peer_addr()
        .map_or_else(|_| target.to_string(), |a| a.to_string())
}

pub async fn tcp(target: &HostPort) -> anyhow::Result<Link> {
    let s = connect(target).await?;
    Ok(Link {
        peer: peer_of(&s, target),
        conn: Box::new(s),
        instance: None,
    })
}

pub async fn unix(path: &Path) -> anyhow::Result<Link> {
    let s = UnixStream::connect(path).await.map_err(|e| {
        anyhow!(
            "cannot connect to {}: {} (is `timecho serve --unix` running there?)",
            path.display(),
            plain(&e)
        )
    })?;
    Ok(Link {
        conn: Box::new(s),
        peer: path.display().to_string(),
        instance: None,
    })
}

/// TLS over TCP, verified as [`trust`] says: against `ca` (PEM: CAs, or the
/// server's own certificate), a pinned fingerprint, or the system's roots.
/// The handshake is done here, so a certificate problem is reported before
/// the prompt, in words that say what to do.
///
/// [`trust`]: super::trust
pub async fn tls(
    target: &HostPort,
    ca: Option<&Path>,
    pin: Option<[u8; 32]>,
) -> anyhow::Result<Link> {
    let mut roots = RootCertStore::empty();
    let mut known: Vec<[u8; 32]> = pin.into_iter().collect();
    match ca {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read --ca {}", path.display()))?
            {
                let cert =
                    cert.with_context(|| format!("bad certificate in {}", path.display()))?;
                // A self-signed server certificate is its own trust anchor.
                known.push(trust::fingerprint(&cert));
                roots.add_parsable_certificates([cert]);
            }
        }
        None if pin.is_none() => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
        None => {}
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Trust::new(
        roots,
        known,
        pin.is_some() && ca.is_none(),
        provider.clone(),
    )?;
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // The name the certificate must carry (unless pinned or given in --ca).
    let name = ServerName::try_from(target.host.clone())
        .map_err(|_| anyhow!("{:?} is not a valid TLS server name", target.host))?;
    let tcp = connect(target).await?;
    let peer = format!("{} (TLS)", peer_of(&tcp, target));
    let stream = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| {
            let explained = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .map(|tls| trust::explain(tls, &target.to_string(), pin.is_some()));
            anyhow!(explained.unwrap_or_else(|| format!("TLS handshake with {target} failed: {e}")))
        })?;
    Ok(Link {
        conn: Box::new(stream),
        peer,
        instance: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn localhost_reaches_a_listener_on_127_0_0_1() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = HostPort::parse_or_default_port(&format!("localhost:{port}")).unwrap();
        assert!(connect(&target).await.is_ok());
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_address_and_the_reason() {
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let target = HostPort::parse(&closed.to_string()).unwrap();
        let err = connect(&target).await.unwrap_err().to_string();
        assert_eq!(err.matches(&closed.to_string()).count(), 1, "{err}");
        assert!(!err.contains("os error"), "{err}");
        assert!(err.to_lowercase().contains("refused"), "{err}");
    }
}
