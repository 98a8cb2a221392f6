//! What the end-to-end tests share: the server process, client sockets (raw
//! HTTP and WebSocket frames among them), and reading replies back with the
//! same parser the clients use.

pub mod balancer;
pub mod http;
mod metrics;
mod ports;
pub mod process;
pub mod redis;
mod socket;
mod terminal;
mod ws;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{Local, TimeDelta, Utc};
use timecho_shared::reply::ReplyBytes;
use timecho_shared::Stamp;

pub use metrics::{metric, scrape, wait_for_metric};
pub use ports::{free_addr, on_free_addrs};
pub use process::{bin, run_to_exit, serve_expecting_exit, timecho, Exited, Server};
pub use socket::{Datagrams, Peer, REPLY_TIMEOUT};
pub use terminal::Terminal;
pub use ws::{
    client_header, frame, masked_frame, server_frames, ws_close_frame, ws_connect, ws_connect_with,
    ws_exchange, ws_next, ws_reply, RawWs, Ws,
};

/// A `basic:FILE` for `--auth` with one user, made as the README says:
/// `printf 'PASSWORD\n' | timecho hash-password USER`.
pub fn basic_users_file(dir: &TempDir, user: &str, password: &str) -> String {
    let mut cmd = timecho();
    cmd.args(["hash-password", user]);
    let out = run_to_exit(
        cmd,
        format!("{password}\n").as_bytes(),
        std::time::Duration::from_secs(30),
    );
    assert!(out.status.success(), "hash-password: {out:?}");
    let path = dir.path().join(format!("users-{user}.txt"));
    std::fs::write(&path, &out.stdout).expect("write the users file");
    format!("basic:{}", path.display())
}

/// Writes a session key made as the README says (32 random bytes, base64).
pub fn write_session_key(path: &Path) {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").expect("/dev/urandom"),
        &mut bytes,
    )
    .expect("32 random bytes");
    let key = base64::engine::general_purpose::STANDARD.encode(bytes) + "\n";
    std::fs::write(path, key).expect("write the session key");
}

/// Splits a reply line (no `\n`) into its stamp text and its echoed bytes, which
/// need not be UTF-8, with the parser the clients use. Fails the test if the
/// line is not a stamped reply.
pub fn split_reply(line: &[u8]) -> (String, Vec<u8>) {
    match ReplyBytes::parse(line) {
        ReplyBytes::Stamped { stamp, text } => match std::str::from_utf8(stamp) {
            Ok(stamp) => (stamp.to_owned(), text.to_vec()),
            Err(_) => panic!("stamp is not UTF-8: \"{}\"", line.escape_ascii()),
        },
        other => panic!(
            "not a stamped reply: \"{}\" ({other:?})",
            line.escape_ascii()
        ),
    }
}

/// A reply in one of the built-in stamp formats, stamped within seconds of now.
pub fn parse_reply(line: &[u8]) -> (Stamp, Vec<u8>) {
    let (stamp_text, text) = split_reply(line);
    let stamp = Stamp::parse_any(&stamp_text).unwrap_or_else(|| {
        panic!(
            "stamp {stamp_text:?} in \"{}\" is in no built-in format",
            line.escape_ascii()
        )
    });
    assert_recent(&stamp);
    (stamp, text)
}

/// The echoed texts of a whole reply stream, which must end with a newline.
pub fn reply_texts(stream: &[u8]) -> Vec<Vec<u8>> {
    let Some(body) = stream.strip_suffix(b"\n") else {
        assert!(
            stream.is_empty(),
            "replies end without a newline: \"{}\"",
            stream.escape_ascii()
        );
        return Vec::new();
    };
    body.split(|&b| b == b'\n')
        .map(|line| parse_reply(line).1)
        .collect()
}

/// Compares echoed texts, showing both sides readably (bytes escaped) on failure.
#[track_caller]
pub fn assert_texts<T: AsRef<[u8]>>(actual: &[Vec<u8>], expected: &[T]) {
    let show = |texts: &mut dyn Iterator<Item = &[u8]>| {
        texts
            .map(|t| format!("\"{}\"", t.escape_ascii()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let same =
        actual.len() == expected.len() && actual.iter().zip(expected).all(|(a, e)| a == e.as_ref());
    assert!(
        same,
        "replies differ\n  actual:   [{}]\n  expected: [{}]",
        show(&mut actual.iter().map(Vec::as_slice)),
        show(&mut expected.iter().map(AsRef::as_ref)),
    );
}

/// Fails unless `stamp` is within seconds of now: a wrong zone or a stale
/// clock is hours off. Stamps are truncated to their precision, and a test
/// may read a reply seconds after it was stamped (a backlog answered during a
/// drain, on a loaded machine: 3.0 s was seen), so up to 10 s late passes.
#[track_caller]
pub fn assert_recent(stamp: &Stamp) {
    let lag = match stamp {
        Stamp::Local(t) => Local::now().naive_local() - *t,
        Stamp::Zoned(t) => Utc::now() - t.to_utc(),
        Stamp::Instant(t) => Utc::now() - *t,
    };
    assert!(
        lag >= TimeDelta::milliseconds(-500) && lag <= TimeDelta::seconds(10),
        "stamp {stamp:?} is {lag} away from now"
    );
}

/// A fresh directory, removed with everything in it when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("timecho-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
