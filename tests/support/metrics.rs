//! The server's `/metrics`, read over plain HTTP, and waiting for a series to
//! reach a value (gauges settle asynchronously after a client leaves).

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use super::http;

/// The Prometheus text the server exposes on `addr`.
pub fn scrape(addr: SocketAddr) -> String {
    let response = http::get("/metrics").send(addr);
    assert_eq!(response.status, 200, "/metrics answered: {response}");
    response.text()
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
