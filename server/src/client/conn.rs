//! Connecting to a timestamp server: address resolution, and one stream type
//! over TCP, TLS or a unix socket, so the sessions do not care which.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::cli::DEFAULT_PORT;

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// `HOST:PORT`, `HOST`, an IPv6 address with or without brackets and port.
pub fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = addr
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    let has_port = addr
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
    let found = if has_port {
        addr.to_socket_addrs()
    } else {
        (addr, DEFAULT_PORT).to_socket_addrs()
    };
    found
        .with_context(|| format!("cannot resolve {addr:?}"))?
        .next()
        .ok_or_else(|| anyhow!("{addr:?} resolves to no address"))
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
        let sa = resolve(addr)?;
        let s = TcpStream::connect_timeout(&sa, Duration::from_secs(10)).map_err(|e| {
            anyhow!("cannot connect to {sa}: {e} (is `timecho serve` running there?)")
        })?;
        s.set_nodelay(true)?;
        Ok(Conn::Tcp(s))
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
        let Conn::Tcp(tcp) = Conn::tcp(addr)? else {
            unreachable!("Conn::tcp makes a TCP connection")
        };
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
        let name = server_name(addr)?;
        let mut conn = ClientConnection::new(Arc::new(config), name)?;
        let mut tcp = tcp;
        // Handshake now, so a certificate problem is reported before the prompt.
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)
                .map_err(|e| anyhow!("TLS handshake with {addr} failed: {e}"))?;
        }
        Ok(Conn::Tls(Arc::new(Mutex::new(StreamOwned::new(conn, tcp)))))
    }
}

/// The name the certificate must carry: the host part of `addr`.
fn server_name(addr: &str) -> anyhow::Result<ServerName<'static>> {
    let host = match addr.parse::<SocketAddr>() {
        Ok(sa) => sa.ip().to_string(),
        Err(_) => match addr.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => h.trim_matches(['[', ']']).to_owned(),
            _ => addr.trim_matches(['[', ']']).to_owned(),
        },
    };
    ServerName::try_from(host.clone())
        .map_err(|_| anyhow!("{host:?} is not a valid TLS server name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_default_to_the_tutorial_port() {
        assert_eq!(
            resolve("127.0.0.1").unwrap(),
            "127.0.0.1:8899".parse().unwrap()
        );
        assert_eq!(resolve("::1").unwrap(), "[::1]:8899".parse().unwrap());
        assert_eq!(resolve("[::1]:9").unwrap(), "[::1]:9".parse().unwrap());
        assert_eq!(resolve("localhost:7").unwrap().port(), 7);
        assert_eq!(resolve("localhost").unwrap().port(), 8899);
    }
}
