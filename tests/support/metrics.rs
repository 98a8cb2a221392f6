//! The server's `/metrics`, read over plain HTTP, and waiting for a series to
//! reach a value (gauges settle asynchronously after a client leaves).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// The Prometheus text the server exposes on `http`.
pub fn scrape(http: SocketAddr) -> String {
    let mut s = TcpStream::connect(http).unwrap_or_else(|e| panic!("connect to {http}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw)
        .unwrap_or_else(|e| panic!("read /metrics from {http}: {e}"));
    assert!(raw.starts_with("HTTP/1.1 200"), "/metrics answered: {raw}");
    raw
}

/// The sum of the samples of `name` whose labels contain every one of `labels`
/// (such as `kind="Stalled"`); 0 when there is none.
pub fn metric(http: SocketAddr, name: &str, labels: &[&str]) -> f64 {
    sum_of(&scrape(http), name, labels)
}

fn sum_of(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            let matches = (rest.is_empty() || rest.starts_with('{'))
                && labels.iter().all(|l| rest.contains(l));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Polls until the series equals `expected`; fails the test after `limit`,
/// showing the last value.
#[track_caller]
pub fn wait_for_metric(
    http: SocketAddr,
    name: &str,
    labels: &[&str],
    expected: f64,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    loop {
        let value = metric(http, name, labels);
        if value == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{labels:?} is {value}, not {expected}, after {limit:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}
