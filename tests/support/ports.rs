//! Free ports, for the few listeners that cannot be given port 0. Any other
//! listener of our own server is started on port 0 and its address read back
//! from the start-up banner ([`super::Server::listener`]), which cannot race.

use std::net::{SocketAddr, TcpListener};

/// How many times a start is tried on fresh addresses when another process
/// took the one it was given first.
const ATTEMPTS: usize = 3;

/// A loopback address (127.0.0.1) that nothing listened on a moment ago.
///
/// Racy: the port is found by binding port 0 and letting it go, so another
/// process (a server of a test running beside this one, or the kernel's pick
/// for any outgoing connection) may take it before it is used. It is right
/// only where port 0 cannot be used:
/// - an address nothing listens on, for a "connection refused" test (should
///   a process take the port meanwhile, that test fails: rare, and nothing
///   starts there that could notice and try again);
/// - a listener whose address must be known before it starts: of a program
///   that cannot say which port it got from port 0 (HAProxy, redis-server),
///   or of our server when its other flags name the same port (`--upstream`
///   naming its own listener, a host name bound on one port on every address).
///
/// Start those with [`on_free_addrs`], which tries fresh addresses when the
/// port was lost.
pub fn free_addr() -> SocketAddr {
    let [addr] = free_addrs();
    addr
}

/// `N` distinct free addresses: all are bound before any is let go, so the
/// kernel cannot hand out the same port twice.
fn free_addrs<const N: usize>() -> [SocketAddr; N] {
    let listeners: [TcpListener; N] = std::array::from_fn(|_| {
        TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port")
    });
    listeners.map(|l| l.local_addr().expect("the bound address"))
}

/// Starts `what` on `N` free addresses (see [`free_addr`] for when that is
/// right). `start` returns `Err` with what the program said only when one of
/// its addresses was taken before it could bind it; it is then started again
/// on fresh ones, at most [`ATTEMPTS`] times. Any other failure is `start`'s
/// to report.
pub fn on_free_addrs<const N: usize, T>(
    what: &str,
    mut start: impl FnMut([SocketAddr; N]) -> Result<T, String>,
) -> T {
    let mut lost = Vec::new();
    for _ in 0..ATTEMPTS {
        let addrs = free_addrs();
        match start(addrs) {
            Ok(started) => return started,
            Err(said) => lost.push(format!("{addrs:?}: {said}")),
        }
    }
    panic!(
        "{what} lost its free port to another process {ATTEMPTS} times:\n{}",
        lost.join("\n")
    )
}
