//! However a byte stream is cut into writes, the server answers the lines a
//! local split would find: a property over real connections.

use std::thread;
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::support::{reply_texts, Peer, Server};

/// The lines of `stream` as the server should echo them: split at `\n`, one
/// `\r` before it dropped, and a trailing partial line answered at end of stream.
fn local_lines(stream: &[u8]) -> Vec<Vec<u8>> {
    let strip_cr = |l: &[u8]| l.strip_suffix(b"\r").unwrap_or(l).to_vec();
    let mut pieces: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    let partial = pieces.pop().unwrap_or_default();
    let mut lines: Vec<Vec<u8>> = pieces.into_iter().map(strip_cr).collect();
    if !partial.is_empty() {
        lines.push(strip_cr(partial));
    }
    lines
}

/// Cuts `stream` at `cuts` (positions, in any order, clamped to its length).
fn split_at(stream: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(stream.len())).collect();
    cuts.sort_unstable();
    cuts.push(stream.len());
    let mut start = 0;
    let mut writes = Vec::new();
    for end in cuts {
        writes.push(stream[start..end].to_vec());
        start = end;
    }
    writes
}

fn show(lines: &[Vec<u8>]) -> String {
    let shown: Vec<String> = lines
        .iter()
        .map(|l| format!("\"{}\"", l.escape_ascii()))
        .collect();
    format!("[{}]", shown.join(", "))
}

#[test]
fn replies_match_local_line_splitting_for_any_bytes_and_any_writes() {
    // Partial timeouts off: only the bytes, not the timing of the writes, decide
    // where lines end. Half-closing flushes the trailing partial line.
    let server = Server::start(&["--partial-timeout", "0"]);
    let addr = server.tcp_addr();
    let byte = prop_oneof![
        Just(b'\n'),
        Just(b'\r'),
        Just(0u8),
        Just(0xffu8),
        any::<u8>(),
    ];
    let case = (vec(byte, 0..200), vec(0usize..200, 0..12));
    let mut runner = TestRunner::new(Config {
        cases: 16,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    });
    let outcome = runner.run(&case, |(stream, cuts)| {
        let mut peer = Peer::tcp(addr);
        for write in split_at(&stream, &cuts).iter().filter(|w| !w.is_empty()) {
            peer.send(write);
            // Without a pause, the writes could reach the server as one read.
            thread::sleep(Duration::from_millis(2));
        }
        peer.close_write();
        let got = reply_texts(&peer.read_to_end());
        let want = local_lines(&stream);
        prop_assert!(
            got == want,
            "stream \"{}\" cut at {cuts:?}\n  replies: {}\n  lines:   {}",
            stream.escape_ascii(),
            show(&got),
            show(&want)
        );
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

#[test]
fn local_line_splitting_follows_the_protocol() {
    // The oracle above, checked on its own.
    assert_eq!(
        local_lines(b"a\r\nb\n\r\nc\r\r\nend\r"),
        [&b"a"[..], b"b", b"", b"c\r", b"end"].map(<[u8]>::to_vec)
    );
    assert_eq!(local_lines(b""), Vec::<Vec<u8>>::new());
    assert_eq!(local_lines(b"\n"), vec![Vec::<u8>::new()]);
    assert_eq!(
        split_at(b"abcdef", &[4, 1, 9]),
        [&b"a"[..], b"bcd", b"ef", b""].map(<[u8]>::to_vec)
    );
}
