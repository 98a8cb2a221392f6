//! Opening many connections: the open-files limit, loopback source addresses
//! (each has its own range of ephemeral ports), and the connect itself.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

/// Ephemeral ports when /proc does not say (Linux's default range).
const DEFAULT_EPHEMERAL_PORTS: usize = 28_232;

/// Raises the soft limit on open files to the hard limit, as `serve` does;
/// returns the limit in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The source addresses to spread `connections` over; empty means "let the kernel
/// choose". Only a loopback IPv4 target has a choice of source addresses
/// (127.0.0.0/8); by default as many are used as keep each below three quarters
/// of the ephemeral port range.
pub fn source_addrs(
    target: SocketAddr,
    connections: usize,
    requested: Option<u8>,
) -> Result<Vec<IpAddr>, String> {
    let loopback_v4 = matches!(target.ip(), IpAddr::V4(ip) if ip.is_loopback());
    let count = match requested {
        Some(n) if !loopback_v4 => {
            return Err(format!(
                "--source-addrs {n} needs a loopback IPv4 target (127.x.x.x), not {target}"
            ))
        }
        Some(n) => usize::from(n),
        None if !loopback_v4 => return Ok(Vec::new()),
        None => {
            let per_addr = (ephemeral_ports() * 3 / 4).max(1);
            let needed = connections.div_ceil(per_addr);
            if needed <= 1 {
                return Ok(Vec::new());
            }
            needed.min(usize::from(u8::MAX))
        }
    };
    Ok((1..=count)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i as u8)))
        .collect())
}

fn ephemeral_ports() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(str::parse::<usize>);
            match (it.next()?, it.next()?) {
                (Ok(low), Ok(high)) if high >= low => Some(high - low + 1),
                _ => None,
            }
        })
        .unwrap_or(DEFAULT_EPHEMERAL_PORTS)
}

/// Connects to `target`, from `source` if given, with Nagle off.
pub async fn connect(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        defer_port_choice(&socket)?;
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// IP_BIND_ADDRESS_NO_PORT: bind() fixes only the address and connect() picks
/// the port, so ports are shared between destinations as with a plain connect().
#[cfg(target_os = "linux")]
fn defer_port_choice(socket: &TcpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is open for the call's duration, and the option value
    // points to a c_int whose size is passed along.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn defer_port_choice(_socket: &TcpSocket) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn few_connections_use_the_kernels_choice() {
        assert!(source_addrs(addr("127.0.0.1:8899"), 1000, None)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn many_loopback_connections_are_spread() {
        let addrs = source_addrs(addr("127.0.0.1:8899"), 200_000, None).unwrap();
        assert!(addrs.len() >= 2);
        assert_eq!(addrs[0], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(addrs[1], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    }

    #[test]
    fn spreading_needs_a_loopback_target() {
        assert!(source_addrs(addr("[::1]:8899"), 10, Some(4)).is_err());
        assert!(source_addrs(addr("[::1]:8899"), 200_000, None)
            .unwrap()
            .is_empty());
        assert_eq!(
            source_addrs(addr("127.0.0.1:1"), 10, Some(3))
                .unwrap()
                .len(),
            3
        );
    }
}
