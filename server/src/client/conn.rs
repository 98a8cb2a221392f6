//! Connecting to a timestamp server: address resolution, and one stream type
//! over TCP, TLS or a unix socket, so the sessions do not care which.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::cli::DEFAULT_PORT;
use crate::host_port::HostPort;

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// How long one address may take to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `HOST:PORT`, or `HOST` (an IPv6 address with or without brackets) for the
/// tutorial's port.
pub fn target(addr: &str) -> anyhow::Result<HostPort> {
    Ok(HostPort::parse_or_port(addr, DEFAULT_PORT)?)
}

/// Connects to the first address of `target` that accepts: a name may have an
/// IPv6 and an IPv4 address and the server listen on only one of them.
fn connect(target: &HostPort) -> anyhow::Result<TcpStream> {
    let mut failures = Vec::new();
    for sa in target.resolve()? {
        match TcpStream::connect_timeout(&sa, CONNECT_TIMEOUT) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => failures.push(format!("{sa}: {e}")),
        }
    }
    Err(anyhow!(
        "cannot connect to {}: {} (is `timecho serve` running there?)",
        target,
        failures.join("; ")
    ))
}

/// A connected stream.
pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// Shared so the streaming session's sender and receiver can take turns;
    /// reads time out quickly so neither waits long for the other.
    Tls(Arc<Mutex<TlsStream>>),
}

impl Conn {
    pub fn tcp(addr: &str) -> anyhow::Result<Conn> {
        Ok(Conn::Tcp(connect(&target(addr)?)?))
    }

    pub fn unix(path: &Path) -> anyhow::Result<Conn> {
        let s = UnixStream::connect(path).map_err(|e| {
            anyhow!(
                "cannot connect to {}: {e} (is `timecho serve --unix` running there?)",
                path.display()
            )
        })?;
        Ok(Conn::Unix(s))
    }

    pub fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
            Conn::Tls(s) => Conn::Tls(s.clone()),
        })
    }

    pub fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(Some(t)),
            Conn::Unix(s) => s.set_read_timeout(Some(t)),
            // Short, so a blocked reader soon lets the sender have the stream.
            Conn::Tls(s) => lock(s).sock.set_read_timeout(Some(t.min(TLS_TURN))),
        }
    }

    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.shutdown(Shutdown::Write),
            Conn::Unix(s) => s.shutdown(Shutdown::Write),
            Conn::Tls(s) => {
                let mut s = lock(s);
                s.conn.send_close_notify();
                s.flush()?;
                s.sock.shutdown(Shutdown::Write)
            }
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
            Conn::Tls(s) => lock(s).read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
            Conn::Tls(s) => {
                let mut s = lock(s);
                let n = s.write(buf)?;
                s.flush()?;
                Ok(n)
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The longest a TLS reader holds the stream before the sender gets a turn.
const TLS_TURN: Duration = Duration::from_millis(10);

fn lock(s: &Mutex<TlsStream>) -> std::sync::MutexGuard<'_, TlsStream> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl Conn {
    /// TLS over TCP, verified against `ca` (PEM) or the system's root certificates.
    pub fn tls(addr: &str, ca: Option<&Path>) -> anyhow::Result<Conn> {
        let target = target(addr)?;
        let mut tcp = connect(&target)?;
        let mut roots = RootCertStore::empty();
        match ca {
            Some(path) => {
                for cert in CertificateDer::pem_file_iter(path)
                    .with_context(|| format!("cannot read --ca {}", path.display()))?
                {
                    roots.add(
                        cert.with_context(|| format!("bad certificate in {}", path.display()))?,
                    )?;
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
        let mut conn = ClientConnection::new(Arc::new(config), name)?;
        // Handshake now, so a certificate problem is reported before the prompt.
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)
                .map_err(|e| anyhow!("TLS handshake with {addr} failed: {e}"))?;
        }
        Ok(Conn::Tls(Arc::new(Mutex::new(StreamOwned::new(conn, tcp)))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_default_to_the_tutorial_port() {
        let port = |addr| target(addr).unwrap().port;
        assert_eq!(port("127.0.0.1"), 8899);
        assert_eq!(port("::1"), 8899);
        assert_eq!(port("[::1]:9"), 9);
        assert_eq!(port("localhost:7"), 7);
        assert_eq!(port("localhost"), 8899);
    }

    #[test]
    fn localhost_reaches_a_listener_on_127_0_0_1() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(connect(&target(&format!("localhost:{port}")).unwrap()).is_ok());
    }
}
