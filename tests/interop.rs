//! Interop: the clients people use, unmodified, against a real `timecho serve`.
//! TCP: nc and socat. WebSocket (`/ws`): Python's `websockets` and
//! `websocket-client`, node's `ws`, websocat and Chromium, each with no
//! subprotocol and with `binary`. Replies are checked byte for byte (stamps
//! with the shared parser), and so are the close codes a client shows.
//!
//! `cargo xtask test` installs the clients, pinned (xtask/src/tools.rs); a
//! missing one fails its tests and says so. The scripted clients all run the
//! same [`Session`] (tests/interop_support/outcome.py, ws_session.js).

// Only the driver and the gateway of the browser tests are used here.
#[allow(unused_imports)]
use std::process::Command;
use std::time::Duration;

use crate::browser_support::{browser_test, page_url, start_gateway};
use crate::interop_support::{
    debian_program, Close, Conversation, Ended, Frame, Outcome, ScriptClient, Session,
    SlowUpstream, WS_SESSION_JS,
};
use crate::support::{assert_texts, reply_texts, Server};

/// Text messages, each one reply: non-ASCII UTF-8, tabs and spaces kept as sent.
const TEXTS: [&str; 4] = ["hello", "Grüße, ünïcode ✓ 日本語", "🎉\tand  spaces ", "5"];

/// The binary stream as the client writes it: lines split across frames (one
/// inside a UTF-8 character), and bytes that are not UTF-8, NUL among them.
const CHUNKS: [&[u8]; 3] = [
    b"hel",
    b"lo\nGr\xc3",
    b"\xbc\xc3\x9fe \xe2\x9c\x93\n\xff\xfe\x80 raw\x00nul\n",
];
/// What the stream's lines come back as.
const STREAM_ECHOES: [&[u8]; 3] = [b"hello", "Grüße ✓".as_bytes(), b"\xff\xfe\x80 raw\x00nul"];

/// Lines for the TCP clients: UTF-8, bytes that are not, CRLF (answered
/// without the CR), and a last line without a newline (answered at EOF).
const TCP_INPUT: &[u8] =
    b"hello\nGr\xc3\xbc\xc3\x9fe \xe2\x9c\x93\n\xff\xfe\x80 raw\x00nul\ncrlf\r\ntail";
const TCP_ECHOES: [&[u8]; 5] = [
    b"hello",
    "Grüße ✓".as_bytes(),
    b"\xff\xfe\x80 raw\x00nul",
    b"crlf",
    b"tail",
];

fn ws_url(server: &Server) -> String {
    format!("ws://{}/ws", server.http_addr())
}

fn text_frames() -> Vec<Frame> {
    TEXTS.iter().map(|t| Frame::text(t)).collect()
}

fn binary_frames() -> Vec<Frame> {
    CHUNKS.iter().map(|c| Frame::binary(c)).collect()
}

/// How many more messages a client sends right before its Close: enough that
/// a gateway that stops relaying at the Close cannot answer them all in time.
const OWED: usize = 20;

fn owed_lines() -> Vec<String> {
    (1..=OWED).map(|n| format!("owed {n}")).collect()
}

/// How late the slow timestamp server answers: far longer than a client takes
/// to send its Close, far shorter than the gateway's drain deadline.
const UPSTREAM_DELAY: Duration = Duration::from_millis(300);

/// A gateway in front of a slow timestamp server, so that a client that
/// closes right after sending has every reply still owed (issue 11 item 2).
struct OwingGateway {
    gateway: Server,
    _link: SlowUpstream,
    _upstream: Server,
}

impl OwingGateway {
    fn start() -> OwingGateway {
        let upstream = Server::start(&["--no-http"]);
        let link = SlowUpstream::start(upstream.tcp_addr(), UPSTREAM_DELAY);
        let gateway = Server::start(&["--upstream", &link.addr().to_string()]);
        OwingGateway {
            gateway,
            _link: link,
            _upstream: upstream,
        }
    }

    fn url(&self) -> String {
        ws_url(&self.gateway)
    }
}

/// Session checks shared by every client that runs a [`Session`].
mod checks {
    use super::*;

    pub fn text_round_trips<T: AsRef<[u8]>>(outcome: &Outcome, expected: &[T]) {
        outcome.assert_opened(None);
        assert_texts(&outcome.echoed_texts(), expected);
        assert_eq!(outcome.close_code, Some(1000), "{outcome:?}");
    }

    pub fn binary_round_trips<T: AsRef<[u8]>>(outcome: &Outcome, expected: &[T]) {
        outcome.assert_opened(Some("binary"));
        assert_texts(&outcome.echoed_stream(), expected);
        assert_eq!(outcome.close_code, Some(1000), "{outcome:?}");
    }

    pub fn binary_on_text_session_closes_1003(outcome: &Outcome) {
        outcome.assert_opened(None);
        assert!(outcome.received.is_empty(), "{outcome:?}");
        assert_eq!(outcome.close_code, Some(1003), "{outcome:?}");
        // The reason says what to do instead, whichever client read it.
        let reason = outcome.close_reason.as_deref().unwrap_or_default();
        assert!(reason.contains("send text"), "{outcome:?}");
    }
}

fn text_session(url: &str, close: Close) -> Session {
    Session::new(url, &[], text_frames(), close).replies(TEXTS.len())
}

fn binary_session(url: &str, close: Close) -> Session {
    Session::new(url, &["binary"], binary_frames(), close).replies(STREAM_ECHOES.len())
}

fn script_text_round_trips(client: ScriptClient) {
    let server = Server::start(&[]);
    let outcome = client.run(&text_session(&ws_url(&server), Close::AfterReplies));
    checks::text_round_trips(&outcome, &TEXTS);
}

fn script_binary_round_trips(client: ScriptClient) {
    let server = Server::start(&[]);
    let outcome = client.run(&binary_session(&ws_url(&server), Close::AfterReplies));
    checks::binary_round_trips(&outcome, &STREAM_ECHOES);
}

/// Issue 11 item 2: Close(1000) right after the last frame still gets every
/// reply, then the server's Close(1000).
fn script_text_owed_replies(client: ScriptClient) {
    let gateway = OwingGateway::start();
    let mut session = text_session(&gateway.url(), Close::AtOnce);
    session
        .send
        .extend(owed_lines().iter().map(|l| Frame::text(l)));
    let mut expected: Vec<String> = TEXTS.map(String::from).into();
    expected.extend(owed_lines());
    checks::text_round_trips(&client.run(&session), &expected);
}

fn script_binary_owed_replies(client: ScriptClient) {
    let gateway = OwingGateway::start();
    let mut session = binary_session(&gateway.url(), Close::AtOnce);
    let owed: String = owed_lines().iter().map(|l| format!("{l}\n")).collect();
    session.send.push(Frame::binary(owed.as_bytes()));
    let mut expected: Vec<Vec<u8>> = STREAM_ECHOES.map(<[u8]>::to_vec).into();
    expected.extend(owed_lines().into_iter().map(String::into_bytes));
    checks::binary_round_trips(&client.run(&session), &expected);
}

fn script_binary_on_text_session(client: ScriptClient) {
    let server = Server::start(&[]);
    let session = Session::new(
        &ws_url(&server),
        &[],
        vec![Frame::binary(b"bytes\n")],
        Close::ServerCloses,
    );
    checks::binary_on_text_session_closes_1003(&client.run(&session));
}

fn script_unknown_subprotocol(client: ScriptClient) {
    let server = Server::start(&[]);
    let session = Session::new(
        &ws_url(&server),
        &["mqtt", "soap"],
        text_frames(),
        Close::AtOnce,
    );
    let outcome = client.run(&session);
    let refusal = outcome
        .refused
        .as_ref()
        .unwrap_or_else(|| panic!("the handshake was accepted: {outcome:?}"));
    client.assert_400(refusal);
    assert!(outcome.received.is_empty(), "{outcome:?}");
}

macro_rules! script_client_tests {
    ($($module:ident => $client:expr;)*) => {$(
        mod $module {
            use super::*;

            #[test]
            fn text_messages_echo_byte_exact_and_close_with_1000() {
                script_text_round_trips($client);
            }

            #[test]
            fn binary_subprotocol_echoes_the_byte_stream_exactly_and_closes_with_1000() {
                script_binary_round_trips($client);
            }

            #[test]
            fn close_right_after_sending_gets_every_owed_reply_then_1000() {
                script_text_owed_replies($client);
            }

            #[test]
            fn binary_close_right_after_sending_gets_every_owed_reply_then_1000() {
                script_binary_owed_replies($client);
            }

            #[test]
            fn binary_frame_without_the_binary_subprotocol_closes_with_1003() {
                script_binary_on_text_session($client);
            }

            #[test]
            fn only_unknown_subprotocols_are_refused_with_400() {
                script_unknown_subprotocol($client);
            }
        }
    )*};
}

script_client_tests! {
    python_websockets => ScriptClient::PythonWebsockets;
    python_websocket_client => ScriptClient::PythonWebsocketClient;
    node_ws => ScriptClient::NodeWs;
}

/// websocat 1.x: stdin lines (text) or stdin bytes (`-b`) go out, messages
/// come back on stdout (text ones with a newline added). It shows no close
/// codes; its exit status and output are what a user sees.
mod websocat {
    use super::*;

    fn command(url: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(crate::interop_support::websocat());
        cmd.args(args).arg(url);
        cmd
    }

    #[track_caller]
    fn assert_success(ended: &Ended) {
        assert!(
            ended.status.success(),
            "websocat failed ({}): {}",
            ended.status,
            ended.stderr
        );
    }

    #[test]
    fn text_lines_echo_byte_exact() {
        let server = Server::start(&[]);
        let mut client = Conversation::start(command(&ws_url(&server), &[]));
        for text in TEXTS {
            client.send(format!("{text}\n").as_bytes());
        }
        client.wait_for_lines(TEXTS.len());
        let ended = client.finish();
        assert_success(&ended);
        assert_texts(&reply_texts(&ended.stdout), &TEXTS);
    }

    #[test]
    fn binary_subprotocol_echoes_the_byte_stream_exactly() {
        let server = Server::start(&[]);
        let mut client =
            Conversation::start(command(&ws_url(&server), &["-b", "--protocol", "binary"]));
        for chunk in CHUNKS {
            client.send(chunk);
        }
        client.wait_for_lines(STREAM_ECHOES.len());
        let ended = client.finish();
        assert_success(&ended);
        assert_texts(&reply_texts(&ended.stdout), &STREAM_ECHOES);
    }

    /// The issue's own example: websocat closes at the end of its input, so
    /// every reply is owed (issue 11 item 2).
    #[test]
    fn piped_lines_are_all_answered_before_it_exits() {
        let gateway = OwingGateway::start();
        let mut client = Conversation::start(command(&gateway.url(), &[]));
        client.send(b"1\n2\n3\n4\n5\n");
        let ended = client.finish();
        assert_success(&ended);
        assert_texts(&reply_texts(&ended.stdout), &["1", "2", "3", "4", "5"]);
    }

    #[test]
    fn piped_bytes_are_all_answered_before_it_exits() {
        let gateway = OwingGateway::start();
        let mut client =
            Conversation::start(command(&gateway.url(), &["-b", "--protocol", "binary"]));
        client.send(&CHUNKS.concat());
        for line in owed_lines() {
            client.send(format!("{line}\n").as_bytes());
        }
        let ended = client.finish();
        assert_success(&ended);
        let mut expected: Vec<Vec<u8>> = STREAM_ECHOES.map(<[u8]>::to_vec).into();
        expected.extend(owed_lines().into_iter().map(String::into_bytes));
        assert_texts(&reply_texts(&ended.stdout), &expected);
    }

    #[test]
    fn only_unknown_subprotocols_are_refused_with_400() {
        let server = Server::start(&[]);
        let mut client = Conversation::start(command(&ws_url(&server), &["--protocol", "mqtt"]));
        client.send(b"hello\n");
        let ended = client.finish();
        assert!(!ended.status.success(), "websocat succeeded: {ended:?}");
        assert!(ended.stdout.is_empty(), "{ended:?}");
        assert!(
            ended.stderr.contains("400 Bad Request"),
            "websocat does not say 400: {}",
            ended.stderr
        );
    }
}

/// Plain TCP clients: lines in, `[stamp] line\n` out, byte for byte.
mod tcp {
    use super::*;

    /// Sends all of `TCP_INPUT`, half-closes, and checks every reply.
    fn echoes_byte_exact(cmd: Command) {
        let shown = format!("{cmd:?}");
        let mut client = Conversation::start(cmd);
        client.send(TCP_INPUT);
        let ended = client.finish();
        assert!(
            ended.status.success(),
            "{shown} failed ({}): {}",
            ended.status,
            ended.stderr
        );
        assert_texts(&reply_texts(&ended.stdout), &TCP_ECHOES);
    }

    #[test]
    fn nc_lines_and_raw_bytes_echo_byte_exact() {
        let server = Server::start(&["--no-http"]);
        let addr = server.tcp_addr();
        let mut nc = Command::new(debian_program("nc", "netcat-openbsd"));
        // -N: shut down the socket's sending side at the end of the input.
        nc.args(["-N", &addr.ip().to_string(), &addr.port().to_string()]);
        echoes_byte_exact(nc);
    }

    #[test]
    fn socat_lines_and_raw_bytes_echo_byte_exact() {
        let server = Server::start(&["--no-http"]);
        let mut socat = Command::new(debian_program("socat", "socat"));
        // -t: after the input ends, wait this long for the server to finish
        // answering (it closes as soon as it has).
        socat.args(["-t", "10", "-", &format!("TCP:{}", server.tcp_addr())]);
        echoes_byte_exact(socat);
    }
}

/// Chromium's own WebSocket, from a page the gateway serves (so its origin is
/// allowed). Browsers drop messages that arrive after `close()` (the HTML
/// standard's "if readyState is not OPEN, return"), so owed replies cannot be
/// seen from here; the script clients check those.
mod chromium {
    use super::*;

    async fn run_in_page(test: &str, server: &Server, session: Session) -> Outcome {
        let url = page_url(server);
        let (tx, rx) = tokio::sync::oneshot::channel();
        browser_test(test, |browser| async move {
            let page = browser.page("interop").await;
            page.open(&url).await;
            let script = format!(
                "{WS_SESSION_JS}\nwsSession(WebSocket, arguments[0], arguments[arguments.length - 1]);"
            );
            let spec = serde_json::to_value(&session).expect("the session as JSON");
            let value = page
                .client()
                .execute_async(&script, vec![spec])
                .await
                .unwrap_or_else(|e| panic!("the session script failed: {e}"));
            let outcome: Outcome = serde_json::from_value(value.clone())
                .unwrap_or_else(|e| panic!("unexpected outcome {value}: {e}"));
            let _ = tx.send(outcome);
        })
        .await;
        rx.await.expect("the browser test produced an outcome")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn text_messages_echo_byte_exact_and_close_with_1000() {
        let server = start_gateway(&[]);
        let session = text_session(&ws_url(&server), Close::AfterReplies);
        let outcome = run_in_page("interop_chromium_text", &server, session).await;
        checks::text_round_trips(&outcome, &TEXTS);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn binary_subprotocol_echoes_the_byte_stream_exactly_and_closes_with_1000() {
        let server = start_gateway(&[]);
        let session = binary_session(&ws_url(&server), Close::AfterReplies);
        let outcome = run_in_page("interop_chromium_binary", &server, session).await;
        checks::binary_round_trips(&outcome, &STREAM_ECHOES);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn binary_frame_without_the_binary_subprotocol_closes_with_1003() {
        let server = start_gateway(&[]);
        let session = Session::new(
            &ws_url(&server),
            &[],
            vec![Frame::binary(b"bytes\n")],
            Close::ServerCloses,
        );
        let outcome = run_in_page("interop_chromium_1003", &server, session).await;
        checks::binary_on_text_session_closes_1003(&outcome);
    }

    /// A browser is told nothing about a refused handshake but that the
    /// socket closed abnormally (1006) without opening.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_unknown_subprotocols_never_open_and_close_with_1006() {
        let server = start_gateway(&[]);
        let session = Session::new(&ws_url(&server), &["mqtt"], text_frames(), Close::AtOnce);
        let outcome = run_in_page("interop_chromium_refused", &server, session).await;
        assert!(outcome.refused.is_some(), "it opened: {outcome:?}");
        assert!(outcome.received.is_empty(), "{outcome:?}");
        assert_eq!(outcome.close_code, Some(1006), "{outcome:?}");
    }
}
