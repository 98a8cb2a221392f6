//! A slow timestamp server: a TCP relay in front of a real one that holds each
//! of its replies back for a while. A client that closes right after sending
//! then surely has replies owed, instead of only when it wins a race.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub struct SlowUpstream {
    addr: SocketAddr,
}

impl SlowUpstream {
    /// Relays every connection to `server`; its replies arrive `delay` late.
    pub fn start(server: SocketAddr, delay: Duration) -> SlowUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the slow upstream");
        let addr = listener.local_addr().expect("its address");
        // Lives as long as the test process: it only ever accepts on loopback.
        thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(server) else {
                    continue;
                };
                relay(client, server, delay);
            }
        });
        SlowUpstream { addr }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn relay(client: TcpStream, server: TcpStream, delay: Duration) {
    let (Ok(client_in), Ok(server_out)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    thread::spawn(move || copy(client_in, server_out));
    // Each read from the server is written on once it is `delay` old.
    let (late_tx, late) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut server = server;
        let mut chunk = [0u8; 16 * 1024];
        while let Ok(n @ 1..) = server.read(&mut chunk) {
            if late_tx
                .send((Instant::now() + delay, chunk[..n].to_vec()))
                .is_err()
            {
                return;
            }
        }
    });
    thread::spawn(move || {
        let mut client = client;
        for (due, bytes) in late {
            thread::sleep(due.saturating_duration_since(Instant::now()));
            if client.write_all(&bytes).is_err() {
                return;
            }
        }
        let _ = client.shutdown(Shutdown::Write);
    });
}

/// Copies until end of stream, then passes the end on as a half-close.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}
