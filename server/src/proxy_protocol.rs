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
use ppp::{v1, v2, HeaderResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A v2 header is at most 16 + 65535 bytes, but with addresses and the TLVs
/// HAProxy sends it stays far below this; v1 is at most 107 bytes.
const MAX_HEADER: usize = 1024;
/// What every v2 header starts with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part of a v2 header, ending with the length of the rest.
const V2_FIXED: usize = 16;

#[derive(Debug, Clone)]
pub struct ProxyPolicy {
    pub trusted: Vec<IpNet>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no complete PROXY protocol header from trusted proxy within {0:?}")]
    Timeout(Duration),
    #[error("invalid PROXY protocol header from trusted proxy")]
    Invalid,
    #[error("connection closed before the PROXY protocol header")]
    Closed,
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl ProxyPolicy {
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client's real address: from the header when `peer` is a trusted
    /// proxy (consuming exactly the header's bytes), else `peer` itself.
    /// A trusted proxy has `timeout` to send the whole header.
    pub async fn client_address(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Result<SocketAddr, ProxyError> {
        if !self.trusts(peer.ip()) {
            return Ok(peer);
        }
        let header = tokio::time::timeout(timeout, read_header(stream))
            .await
            .map_err(|_| ProxyError::Timeout(timeout))??;
        let source = match HeaderResult::parse(&header) {
            HeaderResult::V1(Ok(h)) if h.header.len() == header.len() => v1_source(&h.addresses),
            HeaderResult::V2(Ok(h)) if h.len() == header.len() => v2_source(&h.addresses),
            _ => return Err(ProxyError::Invalid),
        };
        // LOCAL/UNKNOWN: the proxy's own connection (a health check). A
        // mapped source (HAProxy on a dual-stack socket) is its IPv4 client.
        Ok(source.map_or(peer, |s| SocketAddr::new(s.ip().to_canonical(), s.port())))
    }
}

/// Reads exactly the header's bytes, whatever pieces they arrive in, and
/// leaves what follows it unread for the protocol. Peeking shows what has
/// arrived; only bytes known to belong to the header are consumed, and once
/// everything peeked is consumed the next peek waits for new bytes (no
/// polling loop).
async fn read_header(stream: &mut TcpStream) -> Result<Vec<u8>, ProxyError> {
    // On the heap: an array here would make every connection's task this much
    // bigger, PROXY protocol or not.
    let mut header = Vec::with_capacity(128);
    let mut peeked = vec![0u8; MAX_HEADER];
    loop {
        let room = match header.first() {
            None | Some(b'P') => MAX_HEADER - header.len(),
            Some(_) => v2_len(&header)?.unwrap_or(V2_FIXED) - header.len(),
        };
        let n = stream.peek(&mut peeked[..room]).await?;
        if n == 0 {
            return Err(ProxyError::Closed);
        }
        let arrived = &peeked[..n];
        let v1 = header.first().unwrap_or(&arrived[0]) == &b'P';
        let take = if v1 {
            arrived
                .iter()
                .position(|&b| b == b'\n')
                .map_or(n, |i| i + 1)
        } else {
            n.min(v2_len(&header)?.unwrap_or(V2_FIXED) - header.len())
        };
        let start = header.len();
        header.resize(start + take, 0);
        stream.read_exact(&mut header[start..]).await?;
        if v1 {
            let signature = b"PROXY ";
            let k = header.len().min(signature.len());
            if header[..k] != signature[..k] || header.len() >= MAX_HEADER {
                return Err(ProxyError::Invalid);
            }
            if header.ends_with(b"\n") {
                return Ok(header);
            }
        } else if v2_len(&header)? == Some(header.len()) {
            return Ok(header);
        }
    }
}

/// A v2 header's whole length once its fixed part is in; fails as soon as the
/// bytes cannot start a v2 header.
fn v2_len(header: &[u8]) -> Result<Option<usize>, ProxyError> {
    let k = header.len().min(V2_SIGNATURE.len());
    if header[..k] != V2_SIGNATURE[..k] {
        return Err(ProxyError::Invalid);
    }
    if header.len() < V2_FIXED {
        return Ok(None);
    }
    let len = V2_FIXED + usize::from(u16::from_be_bytes([header[14], header[15]]));
    if len > MAX_HEADER {
        return Err(ProxyError::Invalid);
    }
    Ok(Some(len))
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

    const WAIT: Duration = Duration::from_secs(5);

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
        let addr = loopback()
            .client_address(&mut server, peer, WAIT)
            .await
            .unwrap();
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
        let addr = loopback()
            .client_address(&mut server, peer, WAIT)
            .await
            .unwrap();
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
            policy
                .client_address(&mut server, peer, WAIT)
                .await
                .unwrap(),
            peer
        );
    }

    #[tokio::test]
    async fn garbage_from_trusted_proxy_is_refused() {
        let (mut client, mut server, peer) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(matches!(
            loopback().client_address(&mut server, peer, WAIT).await,
            Err(ProxyError::Invalid)
        ));
    }

    #[tokio::test]
    async fn header_trickled_byte_by_byte_is_read_exactly() {
        let (mut client, mut server, peer) = pair().await;
        let writer = tokio::spawn(async move {
            for b in b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 8899\r\nhi\n" {
                client.write_all(&[*b]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            client
        });
        let addr = loopback()
            .client_address(&mut server, peer, WAIT)
            .await
            .unwrap();
        assert_eq!(addr, "192.0.2.7:40000".parse().unwrap());
        let _client = writer.await.unwrap();
        let mut rest = [0u8; 3];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"hi\n");
    }

    #[tokio::test]
    async fn a_partial_header_then_silence_times_out() {
        let (mut client, mut server, peer) = pair().await;
        client.write_all(b"PROXY TCP4 198.5").await.unwrap();
        assert!(matches!(
            loopback()
                .client_address(&mut server, peer, Duration::from_millis(300))
                .await,
            Err(ProxyError::Timeout(_))
        ));
    }
}
