//! Connecting to a timestamp server over TCP, TLS or a unix socket, as one
//! stream type, so the sessions do not care which.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use crate::host_port::HostPort;

/// How long one address may take to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected byte stream, whichever transport carries it.
pub trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

pub type Conn = Box<dyn Duplex>;

/// Connects to the first address of `target` that accepts: a name may have an
/// IPv6 and an IPv4 address and the server listen on only one of them.
async fn connect(target: &HostPort) -> anyhow::Result<TcpStream> {
    let mut failures = Vec::new();
    for sa in target.resolve()? {
        match timeout(CONNECT_TIMEOUT, TcpStream::connect(sa)).await {
            Ok(Ok(s)) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Ok(Err(e)) => failures.push(format!("{sa}: {e}")),
            Err(_) => failures.push(format!("{sa}: no answer within {CONNECT_TIMEOUT:?}")),
        }
    }
    Err(anyhow!(
        "cannot connect to {}: {} (is `timecho serve` running there?)",
        target,
        failures.join("; ")
    ))
}

pub async fn tcp(target: &HostPort) -> anyhow::Result<Conn> {
    Ok(Box::new(connect(target).await?))
}

pub async fn unix(path: &Path) -> anyhow::Result<Conn> {
    let s = UnixStream::connect(path).await.map_err(|e| {
        anyhow!(
            "cannot connect to {}: {e} (is `timecho serve --unix` running there?)",
            path.display()
        )
    })?;
    Ok(Box::new(s))
}

/// TLS over TCP, verified against `ca` (PEM) or the system's root certificates.
/// The handshake is done here, so a certificate problem is reported before the
/// prompt.
pub async fn tls(target: &HostPort, ca: Option<&Path>) -> anyhow::Result<Conn> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read --ca {}", path.display()))?
            {
                roots
                    .add(cert.with_context(|| format!("bad certificate in {}", path.display()))?)?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    // The name the certificate must carry.
    let name = ServerName::try_from(target.host.clone())
        .map_err(|_| anyhow!("{:?} is not a valid TLS server name", target.host))?;
    let tcp = connect(target).await?;
    let stream = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| anyhow!("TLS handshake with {target} failed: {e}"))?;
    Ok(Box::new(stream))
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
        assert!(err.contains(&closed.to_string()), "{err}");
        assert!(err.to_lowercase().contains("refused"), "{err}");
    }
}
