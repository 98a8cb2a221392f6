//! PROXY protocol v1/v2 on TCP listeners, so logs see the real client behind
//! HAProxy or a cloud load balancer.
//!
//! A header is only believed from a trusted proxy address; from there it is
//! required. Any other peer is served as a direct client and a "PROXY ..." line
//! it sends is just data, so no client can forge its address.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use ppp::{v1, v2, HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// A v2 header is at most 16 + 65535 bytes, but with addresses and the TLVs
/// HAProxy sends it stays far below this; v1 is at most 107 bytes.
const MAX_HEADER: usize = 1024;
/// How long a trusted proxy may take to send the header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct ProxyPolicy {
    pub trusted: Vec<IpNet>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no PROXY protocol header from trusted proxy within {HEADER_TIMEOUT:?}")]
    Timeout,
    #[error("invalid PROXY protocol header from trusted proxy")]
    Invalid,
    #[error("connection closed before the PROXY protocol header")]
    Closed,
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl ProxyPolicy {
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client's real address: from the header when `peer` is a trusted
    /// proxy (consuming exactly the header's bytes), else `peer` itself.
    pub async fn client_address(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
    ) -> Result<SocketAddr, ProxyError> {
        if !self.trusts(peer.ip()) {
            return Ok(peer);
        }
        let deadline = Instant::now() + HEADER_TIMEOUT;
        // On the heap: an array here would make every connection's task this
        // much bigger, PROXY protocol or not.
        let mut buf = vec![0u8; MAX_HEADER];
        loop {
            let n = timeout_at(deadline, stream.peek(&mut buf))
                .await
                .map_err(|_| ProxyError::Timeout)??;
            if n == 0 {
                return Err(ProxyError::Closed);
            }
            let parsed = HeaderResult::parse(&buf[..n]);
            if parsed.is_incomplete() {
                if n == MAX_HEADER {
                    return Err(ProxyError::Invalid);
                }
                // Peek returns at once while the data is unchanged; give the rest time to arrive.
                tokio::time::sleep(Duration::from_millis(2)).await;
                continue;
            }
            let (len, source) = match parsed {
                HeaderResult::V1(Ok(h)) => (h.header.len(), v1_source(&h.addresses)),
                HeaderResult::V2(Ok(h)) => (h.len(), v2_source(&h.addresses)),
                _ => return Err(ProxyError::Invalid),
            };
            stream.read_exact(&mut buf[..len]).await?;
            // LOCAL/UNKNOWN: the proxy's own connection (a health check).
            return Ok(source.unwrap_or(peer));
        }
    }
}

fn v1_source(a: &v1::Addresses) -> Option<SocketAddr> {
    match a {
        v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Unknown => None,
    }
}

fn v2_source(a: &v2::Addresses) -> Option<SocketAddr> {
    match a {
        v2::Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v2::Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, peer) = l.accept().await.unwrap();
        (client, server, peer)
    }

    fn loopback() -> ProxyPolicy {
        ProxyPolicy {
            trusted: vec!["127.0.0.0/8".parse().unwrap()],
        }
    }

    #[tokio::test]
    async fn v1_header_from_trusted_proxy_gives_the_client_and_leaves_the_data() {
        let (mut client, mut server, peer) = pair().await;
        client
            .write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 8899\r\nhello\n")
            .await
            .unwrap();
        let addr = loopback().client_address(&mut server, peer).await.unwrap();
        assert_eq!(addr, "192.0.2.7:40000".parse().unwrap());
        let mut rest = [0u8; 6];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"hello\n");
    }

    #[tokio::test]
    async fn v2_header_from_trusted_proxy_gives_the_client() {
        let (mut client, mut server, peer) = pair().await;
        let header = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (
                "198.51.100.9:5555".parse::<SocketAddr>().unwrap(),
                "127.0.0.1:8899".parse::<SocketAddr>().unwrap(),
            ),
        )
        .build()
        .unwrap();
        client.write_all(&header).await.unwrap();
        client.write_all(b"x\n").await.unwrap();
        let addr = loopback().client_address(&mut server, peer).await.unwrap();
        assert_eq!(addr, "198.51.100.9:5555".parse().unwrap());
        let mut rest = [0u8; 2];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"x\n");
    }

    #[tokio::test]
    async fn untrusted_peer_cannot_forge_its_address() {
        let (mut client, mut server, peer) = pair().await;
        client
            .write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 1 2\r\n")
            .await
            .unwrap();
        let policy = ProxyPolicy {
            trusted: vec!["10.0.0.0/8".parse().unwrap()],
        };
        assert_eq!(
            policy.client_address(&mut server, peer).await.unwrap(),
            peer
        );
    }

    #[tokio::test]
    async fn garbage_from_trusted_proxy_is_refused() {
        let (mut client, mut server, peer) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(matches!(
            loopback().client_address(&mut server, peer).await,
            Err(ProxyError::Invalid)
        ));
    }
}
