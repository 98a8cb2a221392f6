//! The page in a real browser: headless Chromium through chromedriver, against
//! the real `timecho serve` binary. Needs Chromium and chromedriver (`cargo
//! xtask test` installs them) and the page built into the binary (`cargo
//! xtask web`); without either these tests fail and say so.
//!
//! A failing test leaves a screenshot, the browser console and the DOM of each
//! of its pages in `tests/artifacts/`.

use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::Locator;
use serde::Deserialize;
use timecho_shared::Stamp;

use crate::browser_support::{
    browser_test, page_url, save_docs_screenshot, start_gateway, wait_until, Page, View, Window,
    SHOW_TIMEOUT,
};
use crate::support::{assert_recent, Server, TempDir};

/// Reconnecting waits out the page's backoff (0.5 s, 1 s, 2 s, ...).
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Opens the chat at `url` and waits until it is connected.
async fn connected_chat(page: &Page, url: &str) {
    assert_eq!(page.open(url).await, View::Chat, "the chat, not a sign-in");
    page.wait_for_state("connected", SHOW_TIMEOUT).await;
}

/// A stamp the shared parser reads, from within seconds of now.
#[track_caller]
fn assert_stamp(stamp: &str) {
    let parsed = Stamp::parse_any(stamp)
        .unwrap_or_else(|| panic!("data-stamp {stamp:?} is in no format the parser knows"));
    assert_recent(&parsed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_loads_and_shows_connected() {
    let server = start_gateway(&[]);
    let url = page_url(&server);
    browser_test("the_page_loads_and_shows_connected", |browser| async move {
        let page = browser.page("chat").await;
        assert_eq!(page.open(&url).await, View::Chat);
        let status = page.wait_for_state("connected", SHOW_TIMEOUT).await;
        assert!(status.text.contains("Connected"), "{status:?}");
        assert_eq!(status.code, None, "no close code while connected");
        let title: String = page.eval("return document.title;").await;
        assert_eq!(title, "timecho");
        // A favicon the server serves: the tab shows the mark, not a blank.
        let icon: (u16, String) = page
            .eval(
                "const link = document.querySelector('link[rel=icon]');
                return fetch(link.href).then((r) => [r.status, r.headers.get('content-type')]);",
            )
            .await;
        assert_eq!(icon, (200, "image/svg+xml".to_owned()), "the favicon");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enter_sends_the_message_and_shows_the_stamped_reply() {
    let server = start_gateway(&[]);
    let url = page_url(&server);
    browser_test(
        "enter_sends_the_message_and_shows_the_stamped_reply",
        |browser| async move {
            let page = browser.page("chat").await;
            connected_chat(&page, &url).await;

            let reply = page.round_trip("hello from the browser").await;
            assert_stamp(&reply.stamp);
            let transcript = page.transcript().await;
            assert_eq!(transcript.sent, ["hello from the browser"]);
            assert!(transcript.errors.is_empty(), "{transcript:?}");
            let left: String = page
                .eval("return document.getElementById('message-input').value;")
                .await;
            assert_eq!(left, "", "the input is cleared for the next message");

            // A short conversation for the README's picture, with the clock measured.
            for text in ["what time is it?", "Grüße aus dem Browser ✓"] {
                let reply = page.round_trip(text).await;
                assert_stamp(&reply.stamp);
            }
            clock_measured(&page).await;
            let png = page.screenshot().await.expect("screenshot");
            save_docs_screenshot(&png);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_keeps_back_a_message_over_the_servers_max_line() {
    let server = start_gateway(&["--max-line", "20"]);
    let url = page_url(&server);
    browser_test(
        "the_page_keeps_back_a_message_over_the_servers_max_line",
        |browser| async move {
            let page = browser.page("chat").await;
            connected_chat(&page, &url).await;
            // The page has read /api/config: its limit is the server's, not the default.
            page.wait_for_element(r#".app[data-max-message-bytes="20"]"#)
                .await;

            let fits = "x".repeat(20);
            page.round_trip(&fits).await;
            let long = "y".repeat(21);
            page.send(&long).await;
            // It stays in the input, with the reason under it: nothing typed is lost,
            // and no 21-byte (or 70 kB) bubble fills the transcript.
            let hint = wait_until("the composer to say why", SHOW_TIMEOUT, || async {
                let (hint, kept): (String, String) = page
                    .eval(
                        "return [document.getElementById('composer-hint').innerText,
                            document.getElementById('message-input').value];",
                    )
                    .await;
                match hint.contains("Too long") {
                    true => Ok((hint, kept)),
                    false => Err(format!("{hint:?}")),
                }
            })
            .await;
            assert_eq!(
                hint.0,
                "Too long to send: 21 bytes, and the server takes at most 20 in one line."
            );
            assert_eq!(hint.1, long, "the message stays in the input");
            let transcript = page.transcript().await;
            assert_eq!(transcript.sent, [fits.as_str()], "{transcript:?}");
            assert!(transcript.errors.is_empty(), "{transcript:?}");
            page.eval::<()>("document.getElementById('message-input').value = '';")
                .await;

            // It never reached the gateway, which would have closed with 1009.
            let status = page.status().await.expect("#status");
            assert_eq!(status.state, "connected", "{status:?}");
            page.round_trip("still connected").await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pages_at_once_each_see_only_their_own_replies() {
    let server = start_gateway(&[]);
    let url = page_url(&server);
    browser_test(
        "two_pages_at_once_each_see_only_their_own_replies",
        |browser| async move {
            let (a, b) = tokio::join!(browser.page("a"), browser.page("b"));
            tokio::join!(connected_chat(&a, &url), connected_chat(&b, &url));
            for round in 1..=3 {
                a.send(&format!("a{round}")).await;
                b.send(&format!("b{round}")).await;
            }
            for round in 1..=3 {
                a.wait_for_reply(&format!("a{round}")).await;
                b.wait_for_reply(&format!("b{round}")).await;
            }
            for (page, own) in [(&a, "a"), (&b, "b")] {
                let t = page.transcript().await;
                let texts: Vec<_> = t.replies.iter().map(|r| r.text.as_str()).collect();
                let expected: Vec<_> = (1..=3).map(|n| format!("{own}{n}")).collect();
                assert_eq!(texts, expected, "page {own}: {t:?}");
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_upstream_shows_disconnected_with_the_reason_and_its_return_reconnects() {
    let mut upstream = Some(Server::start(&["--no-http"]));
    let upstream_addr = upstream.as_ref().map(Server::tcp_addr).expect("upstream");
    let gateway = start_gateway(&["--upstream", &upstream_addr.to_string()]);
    let url = page_url(&gateway);
    let upstream = &mut upstream;
    browser_test(
        "stopping_the_upstream_shows_disconnected_with_the_reason_and_its_return_reconnects",
        |browser| async move {
            // A narrow phone: the long reason must not grow the status box.
            let page = browser.page_with("phone", Window::phone(320, 640)).await;
            connected_chat(&page, &url).await;
            page.round_trip("before").await;
            let connected_heights = status_and_header_heights(&page).await;
            // The clock is measured, so that there is an estimate to go stale.
            clock_measured(&page).await;

            let mut stopped = upstream.take().expect("upstream running");
            stopped.terminate();
            let status = wait_until(
                "#status to say the upstream is unreachable",
                SHOW_TIMEOUT,
                || async {
                    match page.status().await {
                        Some(s) if s.state == "disconnected" && s.text.contains("unreachable") => {
                            Ok(s)
                        }
                        other => Err(format!("{other:?}")),
                    }
                },
            )
            .await;
            assert_eq!(status.code.as_deref(), Some("1011"), "{status:?}");
            // Visitors are not told the internal address (the log is).
            assert!(
                status.text.contains("unreachable")
                    && !status.text.contains(&upstream_addr.to_string()),
                "the reason is unreachable, without the address: {status:?}"
            );
            // The wait counts down (tenths of a second, at most 0.5 s apart at
            // the first failure... so read it twice, a few ticks apart).
            let first = retry_text(&page).await;
            let counted = wait_until("the retry countdown to move", SHOW_TIMEOUT, || async {
                match retry_text(&page).await {
                    t if t != first && !t.is_empty() => Ok(t),
                    t => Err(format!("{first:?} then {t:?}")),
                }
            })
            .await;
            assert!(counted.ends_with(" s"), "{counted:?}");
            // At 320 px the countdown is in view, not cut off by the box's edge.
            let (words, clipped): (String, bool) = page
                .eval(
                    "const r = document.querySelector('#status .status-retry');
                    const box = document.getElementById('status').getBoundingClientRect();
                    return [r.textContent, r.getBoundingClientRect().right > box.right];",
                )
                .await;
            assert!(words.starts_with("retrying in "), "{words:?}");
            assert!(!clipped, "the countdown is cut off: {counted:?}");
            // The clock panel does not present a stale estimate as live.
            let (clock, time): (String, String) = page
                .eval(
                    "const c = document.querySelector('.clock');
                    return [c.dataset.state, c.querySelector('.server-time').innerText];",
                )
                .await;
            assert_eq!(
                (clock.as_str(), time.as_str()),
                ("stale", "--:--:--"),
                "clock panel while disconnected"
            );
            assert_eq!(
                status_and_header_heights(&page).await,
                connected_heights,
                "one line, and the header does not move"
            );
            save_artifact(
                "outage-phone.png",
                &page.screenshot().await.expect("screenshot"),
            );

            // Back on the very same port: the page finds it by itself.
            let same_port = format!("127.0.0.1:{}", upstream_addr.port());
            *upstream = Some(Server::start(&["--no-http", "--tcp", &same_port]));
            page.wait_for_state("connected", RECONNECT_TIMEOUT).await;
            let reply = page.round_trip("after").await;
            assert_stamp(&reply.stamp);
        },
    )
    .await;
}

/// The retry countdown in the status, or "" when none shows.
async fn retry_text(page: &Page) -> String {
    page.eval(
        "const r = document.querySelector('#status .status-retry'); return r ? r.innerText : '';",
    )
    .await
}

/// The status box's height and the header's, in CSS pixels.
async fn status_and_header_heights(page: &Page) -> (f64, f64) {
    page.eval(
        "return [document.getElementById('status').getBoundingClientRect().height,
            document.querySelector('header.top').getBoundingClientRect().height];",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_close_is_quiet_and_typing_reconnects() {
    let server = start_gateway(&["--idle-timeout", "2s"]);
    let url = page_url(&server);
    browser_test(
        "an_idle_close_is_quiet_and_typing_reconnects",
        |browser| async move {
            let page = browser.page_with("phone", Window::phone(360, 740)).await;
            connected_chat(&page, &url).await;
            let connected_heights = status_and_header_heights(&page).await;
            page.round_trip("before the pause").await;
            // The probes slow to one per 10 s, so the 2 s timeout ends the session.
            let status = page.wait_for_state("idle", RECONNECT_TIMEOUT).await;
            assert!(
                status.text.contains("reconnects when you type"),
                "{status:?}"
            );
            assert_eq!(status.code, None, "{status:?}");
            assert_eq!(
                status_and_header_heights(&page).await,
                connected_heights,
                "one line, and the header does not move"
            );
            let transcript = page.transcript().await;
            assert!(transcript.errors.is_empty(), "{transcript:?}");
            let said = notices(&page).await;
            assert!(said.is_empty(), "no Disconnected/Reconnected: {said:?}");
            save_artifact(
                "idle-phone.png",
                &page.screenshot().await.expect("screenshot"),
            );

            // Looked at again (the tab comes to the front): it connects by itself.
            page.eval::<()>("document.dispatchEvent(new Event('visibilitychange'));")
                .await;
            page.wait_for_state("connected", SHOW_TIMEOUT).await;
            page.wait_for_state("idle", RECONNECT_TIMEOUT).await;

            // Typing connects too, and the message goes through.
            let reply = page.round_trip("after the pause").await;
            assert_stamp(&reply.stamp);
            let transcript = page.transcript().await;
            assert!(transcript.errors.is_empty(), "{transcript:?}");
            assert!(notices(&page).await.is_empty());
        },
    )
    .await;
}

/// Waits until the clock panel shows a measured offset (the boundary search
/// with whole-second stamps takes some seconds).
async fn clock_measured(page: &Page) {
    wait_until("the clock panel to be measured", CLOCK_TIMEOUT, || async {
        let state: String = page
            .eval("return document.querySelector('.clock').dataset.state;")
            .await;
        match state.as_str() {
            "measured" => Ok(()),
            other => Err(other.to_owned()),
        }
    })
    .await;
}

/// Keeps a screenshot to look at in `tests/artifacts/`, failing or not.
fn save_artifact(name: &str, png: &[u8]) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/artifacts");
    std::fs::create_dir_all(dir).expect("create tests/artifacts");
    std::fs::write(format!("{dir}/{name}"), png).expect("write the screenshot");
}

/// The focused reply's whole stamp as shown, its width in CSS pixels, and
/// the stamp as the server wrote it; `None` when no stamp has the focus.
async fn focused_stamp(page: &Page) -> Option<(String, f64, String)> {
    page.eval(
        "const s = document.activeElement;
        if (!s || !s.classList.contains('stamp')) return null;
        const full = s.querySelector('.stamp-full');
        return [full.innerText, full.getBoundingClientRect().width, s.dataset.stamp];",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_stamp_with_its_date_shows_on_focus_or_tap_without_hovering() {
    let server = start_gateway(&[]);
    let url = page_url(&server);
    browser_test(
        "the_whole_stamp_with_its_date_shows_on_focus_or_tap_without_hovering",
        |browser| async move {
            let page = browser.page_with("phone", Window::phone(360, 740)).await;
            connected_chat(&page, &url).await;
            page.round_trip("first").await;
            page.round_trip("second").await;
            let hidden: f64 = page
                .eval("return document.querySelector('.stamp-full').getBoundingClientRect().width;")
                .await;
            assert!(hidden <= 1.0, "the short time alone until asked: {hidden}");

            // The keyboard: from the input, Shift+Tab reaches the last reply's stamp.
            assert_eq!(page.focused_id().await, "message-input");
            let input = page.client().active_element().await.expect("the input");
            input
                .send_keys(&format!(
                    "{}{}",
                    char::from(Key::Shift),
                    char::from(Key::Tab)
                ))
                .await
                .expect("Shift+Tab");
            let (shown, width, stamp) = focused_stamp(&page).await.expect("a stamp has the focus");
            assert_eq!(shown, stamp, "the whole stamp, as the server wrote it");
            assert!(width > 100.0, "shown, not just read out: {width} px");
            let parsed = Stamp::parse_any(&shown).expect("a stamp");
            assert!(
                shown.contains(&parsed.wall_clock().format("%Y").to_string()),
                "{shown:?}"
            );
            save_artifact(
                "stamp-focused-phone.png",
                &page.screenshot().await.expect("screenshot"),
            );

            // A tap: the first reply's stamp takes the focus and shows itself.
            page.find("#transcript .reply .stamp")
                .await
                .click()
                .await
                .expect("tap the first stamp");
            let (shown, width, stamp) = focused_stamp(&page).await.expect("the tapped stamp");
            assert_eq!(shown, stamp);
            assert!(width > 100.0, "{width} px");
            let replies = page.transcript().await.replies;
            assert_eq!(replies[0].stamp, stamp, "the first reply's");
        },
    )
    .await;
}

/// The transcript's notices (orderly disconnects, reconnects), as shown.
async fn notices(page: &Page) -> Vec<String> {
    page.eval(r##"return [...document.querySelectorAll("#transcript .notice")].map((n) => n.innerText);"##)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_come_back_after_a_gateway_restart() {
    let first = start_gateway(&["--reconnect-window", "3s"]);
    // The restarted gateway comes back where the pages knew the first.
    let http = first.http_addr().to_string();
    let args = ["--http", http.as_str(), "--reconnect-window", "3s"];
    let mut server = Some(first);
    let url = format!("http://{http}/");
    let server = &mut server;
    browser_test(
        "pages_come_back_after_a_gateway_restart",
        |browser| async move {
            let (a, b, c) = tokio::join!(browser.page("a"), browser.page("b"), browser.page("c"));
            let pages = [a, b, c];
            for page in &pages {
                connected_chat(page, &url).await;
                page.round_trip("before").await;
            }
            // A planned restart: 1012 naming a 3 s window, each page back at its
            // own random moment within it.
            server.take().expect("gateway running").terminate();
            *server = Some(start_gateway(&args));
            for page in &pages {
                page.wait_for_state("connected", RECONNECT_TIMEOUT).await;
                page.round_trip("after").await;
                let said = notices(page).await;
                assert!(
                    said.iter().any(|n| n.contains("the gateway is restarting")),
                    "page {} told of the restart: {said:?}",
                    page.label
                );
            }
        },
    )
    .await;
}

/// A basic auth file with the user `ada`, password `pw`, made as the README
/// says: `printf 'pw\n' | timecho hash-password ada`.
fn users_file(dir: &TempDir) -> String {
    crate::support::basic_users_file(dir, "ada", "pw")
}

/// Fills in the sign-in form and submits it.
async fn sign_in(page: &Page, user: &str, password: &str) {
    for (css, text) in [("#login-user", user), ("#login-password", password)] {
        let input = page.wait_for_element(css).await;
        input.clear().await.expect("clear the input");
        input.send_keys(text).await.expect("type");
    }
    page.find("#login-submit")
        .await
        .click()
        .await
        .expect("click #login-submit");
}

async fn login_error(page: &Page) -> String {
    page.eval("const e = document.getElementById('login-error'); return e ? e.innerText : '';")
        .await
}

async fn shows_sign_in(page: &Page) -> bool {
    page.eval(
        "return !!document.getElementById('login-user') && !document.getElementById('status');",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_is_asked_for_refuses_a_wrong_password_and_sign_out_returns_to_it() {
    let dir = TempDir::new();
    let server = start_gateway(&["--auth", &users_file(&dir)]);
    let url = page_url(&server);
    browser_test(
        "sign_in_is_asked_for_refuses_a_wrong_password_and_sign_out_returns_to_it",
        |browser| async move {
            let page = browser.page("chat").await;
            assert_eq!(page.open(&url).await, View::SignIn);
            assert!(shows_sign_in(&page).await, "no chat before signing in");
            let focused = page.focused_id().await;
            assert_eq!(focused, "login-user", "typing starts in the user name");

            sign_in(&page, "ada", "not the password").await;
            let error = wait_until("#login-error to say why", SHOW_TIMEOUT, || async {
                match login_error(&page).await {
                    e if e.is_empty() => Err("no error yet".to_owned()),
                    e => Ok(e),
                }
            })
            .await;
            assert!(error.contains("wrong user name or password"), "{error:?}");
            assert!(shows_sign_in(&page).await, "still the form");

            sign_in(&page, "ada", "pw").await;
            page.wait_for_state("connected", SHOW_TIMEOUT).await;
            let user: String = page
                .eval("return document.querySelector('.account-user').innerText;")
                .await;
            assert!(user.contains("ada"), "{user:?}");
            let reply = page.round_trip("signed in").await;
            assert_stamp(&reply.stamp);

            page.find("#logout")
                .await
                .click()
                .await
                .expect("click #logout");
            wait_until(
                "the sign-in form after signing out",
                SHOW_TIMEOUT,
                || async {
                    if shows_sign_in(&page).await {
                        Ok(())
                    } else {
                        Err(format!("{:?}", page.status().await))
                    }
                },
            )
            .await;
            assert_eq!(login_error(&page).await, "", "signing out is no error");
            let note: String = page
                .eval("return document.getElementById('signed-out').innerText;")
                .await;
            assert_eq!(note, "You have signed out.", "signing out is confirmed");
            save_artifact(
                "signed-out.png",
                &page.screenshot().await.expect("screenshot"),
            );
            // The cookie is gone: a reload asks again.
            assert_eq!(page.open(&url).await, View::SignIn);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restart_ends_the_session_and_brings_the_sign_in_form_back() {
    let dir = TempDir::new();
    let auth = users_file(&dir);
    let first = Server::start(&["--auth", &auth]);
    // The restarted gateway comes back where the page knew the first.
    let http = first.http_addr().to_string();
    let mut server = Some(first);
    let url = format!("http://{http}/");
    let server = &mut server;
    browser_test(
        "a_gateway_restart_ends_the_session_and_brings_the_sign_in_form_back",
        |browser| async move {
            let page = browser.page("chat").await;
            assert_eq!(page.open(&url).await, View::SignIn);
            sign_in(&page, "ada", "pw").await;
            page.wait_for_state("connected", SHOW_TIMEOUT).await;
            page.round_trip("before the restart").await;

            // Sessions live in the gateway's memory: a new process knows none.
            server.take().expect("gateway running").terminate();
            *server = Some(Server::start(&["--http", &http, "--auth", &auth]));
            let error = wait_until(
                "the sign-in form saying the session ended",
                RECONNECT_TIMEOUT,
                || async {
                    match (shows_sign_in(&page).await, login_error(&page).await) {
                        (true, e) if !e.is_empty() => Ok(e),
                        seen => Err(format!("{seen:?}, status {:?}", page.status().await)),
                    }
                },
            )
            .await;
            assert!(error.contains("sign in first"), "{error:?}");

            sign_in(&page, "ada", "pw").await;
            page.wait_for_state("connected", SHOW_TIMEOUT).await;
            page.round_trip("after the restart").await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_the_page_connects_over_wss_and_messages_flow() {
    let server = Server::start(&["--http", "127.0.0.1:0", "--tls-self-signed"]);
    let url = format!("https://{}/", server.listener("https"));
    browser_test(
        "over_https_the_page_connects_over_wss_and_messages_flow",
        |browser| async move {
            let window = Window {
                ignore_certificate_errors: true,
                ..Window::DESKTOP
            };
            let page = browser.page_with("chat", window).await;
            connected_chat(&page, &url).await;
            let protocol: String = page.eval("return location.protocol;").await;
            assert_eq!(protocol, "https:");
            // An https page may only open wss: connected means wss worked.
            let reply = page.round_trip("over wss").await;
            assert_stamp(&reply.stamp);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_only_focus_starts_in_the_input_and_tab_reaches_send() {
    let server = start_gateway(&[]);
    let url = page_url(&server);
    browser_test(
        "keyboard_only_focus_starts_in_the_input_and_tab_reaches_send",
        |browser| async move {
            let page = browser.page("chat").await;
            connected_chat(&page, &url).await;
            assert_eq!(page.focused_id().await, "message-input");

            let focused = page.client().active_element().await.expect("focus");
            focused.send_keys("no mouse").await.expect("type");
            page.press(Key::Tab).await;
            assert_eq!(page.focused_id().await, "send", "Tab goes to Send");
            page.press(Key::Enter).await;
            page.wait_for_reply("no mouse").await;
            assert_eq!(
                page.focused_id().await,
                "message-input",
                "after sending, typing goes on in the input"
            );
        },
    )
    .await;
}

/// An element's box in CSS pixels.
#[derive(Debug, Deserialize)]
struct Rect {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

#[derive(Debug, Deserialize)]
struct Layout {
    width: f64,
    height: f64,
    scroll_width: f64,
    input: Rect,
    send: Rect,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_phone_width_the_input_and_send_button_are_in_view() {
    let server = start_gateway(&[]);
    let url = page_url(&server);
    browser_test(
        "at_phone_width_the_input_and_send_button_are_in_view",
        |browser| async move {
            let page = browser.page_with("phone", Window::phone(380, 800)).await;
            connected_chat(&page, &url).await;
            page.round_trip("small screen").await;
            let layout: Layout = page
                .eval(
                    r#"const rect = (id) => {
                        const r = document.getElementById(id).getBoundingClientRect();
                        return { left: r.left, right: r.right, top: r.top, bottom: r.bottom };
                    };
                    return {
                        width: window.innerWidth,
                        height: window.innerHeight,
                        scroll_width: document.documentElement.scrollWidth,
                        input: rect("message-input"),
                        send: rect("send"),
                    };"#,
                )
                .await;
            assert_eq!(
                layout.width, 380.0,
                "the viewport is phone-sized: {layout:?}"
            );
            assert!(
                layout.scroll_width <= layout.width,
                "nothing scrolls sideways: {layout:?}"
            );
            for (name, r) in [("input", &layout.input), ("send", &layout.send)] {
                let inside = r.left >= 0.0
                    && r.right <= layout.width
                    && r.top >= 0.0
                    && r.bottom <= layout.height
                    && r.right - r.left >= 40.0;
                assert!(inside, "{name} is not fully in view: {layout:?}");
            }
            assert!(
                layout.input.right <= layout.send.left,
                "input and button side by side: {layout:?}"
            );
            let send = page
                .client()
                .find(Locator::Id("send"))
                .await
                .expect("#send");
            assert!(send.is_displayed().await.expect("displayed"), "#send shows");
        },
    )
    .await;
}

/// Milliseconds from navigation start to first contentful paint, to the app's
/// first render, and to "connected", read in the page (2 ms polling there).
#[derive(Debug, Deserialize)]
struct LoadTimes {
    fcp: Option<f64>,
    app: f64,
    connected: f64,
}

async fn load_times(page: &Page, url: &str) -> LoadTimes {
    page.client()
        .goto(url)
        .await
        .unwrap_or_else(|e| panic!("cannot load {url}: {e}"));
    let script = r#"
        const done = arguments[arguments.length - 1];
        let app = null;
        const check = () => {
            const s = document.getElementById("status");
            if (s && app === null) app = performance.now();
            if (s && s.dataset.state === "connected") {
                const fcp = performance.getEntriesByName("first-contentful-paint")[0];
                done({ fcp: fcp ? fcp.startTime : null, app, connected: performance.now() });
            } else {
                setTimeout(check, 2);
            }
        };
        check();
    "#;
    let value = tokio::time::timeout(SHOW_TIMEOUT, page.client().execute_async(script, vec![]))
        .await
        .expect("connected in time")
        .expect("the timing script runs");
    serde_json::from_value(value).expect("load times")
}

/// Reported, not asserted (speed is shown by figures, not by timed tests):
/// how long the page takes to paint and to connect, with an empty cache and
/// then with the content-hashed assets cached (BENCHMARKS.md records them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_load_times_are_reported_cold_and_warm() {
    let server = start_gateway(&[]);
    let url = page_url(&server);
    browser_test("first_load_times_are_reported_cold_and_warm", |browser| async move {
        let page = browser.page("load").await;
        let cold = load_times(&page, &url).await;
        let warm = load_times(&page, &url).await;
        for (cache, t) in [("cold", &cold), ("warm", &warm)] {
            println!(
                "first load, {cache} cache: first contentful paint {}, app rendered {:.0} ms, connected {:.0} ms",
                t.fcp.map_or("n/a".to_owned(), |f| format!("{f:.0} ms")),
                t.app,
                t.connected
            );
            assert!(t.app <= t.connected, "{cache}: {t:?}");
        }
    })
    .await;
}

/// libfaketime, as in `tests/clock.rs`: the server's clock runs this far ahead.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const AHEAD_MS: f64 = 3_500.0;
/// Six probes (the first minute's budget) are out within about ten seconds;
/// room for a busy machine.
const CLOCK_TIMEOUT: Duration = Duration::from_secs(40);

/// `timecho serve` with the page, its clock 3.5 s ahead of the browser's.
fn ahead_gateway(args: &[&str]) -> Server {
    crate::browser_support::assert_page_built();
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: `cargo xtask test` installs it (apt-get install faketime)"
    );
    let server = Server::start_with_env(
        &[
            ("LD_PRELOAD", LIBFAKETIME),
            ("FAKETIME", "+3.5s"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
        args,
    );
    let response = crate::support::http::get("/").send(server.http_addr());
    assert_eq!(
        response.status, 200,
        "GET / (is the page built in?): {response}"
    );
    server
}

/// The clock panel's estimate, as its attributes say it.
#[derive(Debug, Deserialize)]
struct ClockReading {
    offset_ms: f64,
    error_ms: f64,
    /// The lowest round trip of the last minute; none before the first.
    best_rtt_ms: Option<f64>,
    words: String,
    sparkline_points: usize,
}

/// Waits until the panel states an error bound under `tight_ms` plus the best
/// round trip it saw (a bound cannot be narrower than the network allows,
/// and a busy machine's round trips are tens of milliseconds), and checks
/// that the true 3.5 s lies within it.
async fn assert_panel_finds_the_offset(page: &Page, tight_ms: f64) -> ClockReading {
    let reading = wait_until("an error bound that tight", CLOCK_TIMEOUT, || async {
        let r: Option<ClockReading> = page
            .eval(
                r#"const c = document.querySelector('.clock[data-state="measured"]');
                if (!c) return null;
                return {
                    offset_ms: parseFloat(c.dataset.offsetMs),
                    error_ms: parseFloat(c.dataset.errorMs),
                    best_rtt_ms: c.dataset.bestRttMs ? parseFloat(c.dataset.bestRttMs) : null,
                    words: c.querySelector('.offset').textContent,
                    sparkline_points: c.querySelectorAll('.sparkline circle').length,
                };"#,
            )
            .await;
        match r {
            Some(r) if r.error_ms < tight_ms + r.best_rtt_ms.unwrap_or(0.0) => Ok(r),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    eprintln!("clock panel: {reading:?}");
    assert!(
        (reading.offset_ms - AHEAD_MS).abs() <= reading.error_ms,
        "the panel's {} ms ± {} ms does not hold {AHEAD_MS} ms",
        reading.offset_ms,
        reading.error_ms
    );
    assert!(
        reading.words.contains("behind the server, ±"),
        "{reading:?}"
    );
    assert!(reading.sparkline_points >= 1, "{reading:?}");
    reading
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clock_panel_finds_the_servers_second_boundary_with_ctime_stamps() {
    let server = ahead_gateway(&["--utc"]);
    let url = page_url(&server);
    browser_test(
        "the_clock_panel_finds_the_servers_second_boundary_with_ctime_stamps",
        |browser| async move {
            let page = browser.page("chat").await;
            connected_chat(&page, &url).await;
            // One-second stamps: placed probes narrow the second's boundary;
            // the five after the first take ±500 ms to ±16 ms plus the round
            // trip, within the first minute's budget of six.
            let reading = assert_panel_finds_the_offset(&page, 50.0).await;
            // The panel's clock is the server's (UTC here), not this device's:
            // its seconds of the day against the browser's clock plus 3.5 s.
            let apart: f64 = page
                .eval(
                    "const [h, m, s] = document.querySelector('.server-time')
                        .textContent.split(':').map(Number);
                    const shown = h * 3600 + m * 60 + s;
                    const server = ((Date.now() + 3500) / 1000) % 86400;
                    const d = Math.abs(shown - server);
                    return Math.min(d, 86400 - d);",
                )
                .await;
            assert!(apart <= 2.0, "server time {reading:?} is {apart} s off");
            // The probes never show in the transcript.
            let transcript = page.transcript().await;
            assert!(transcript.replies.is_empty(), "{transcript:?}");
            let text: String = page
                .eval("return document.getElementById('transcript').textContent;")
                .await;
            assert!(!text.contains("timecho-clock-probe"), "{text:?}");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clock_panel_reads_microsecond_rfc3339_stamps_directly_and_replies_show_their_round_trip(
) {
    let server = ahead_gateway(&["--time-format", "rfc3339", "--precision", "us"]);
    let url = page_url(&server);
    browser_test(
        "the_clock_panel_reads_microsecond_rfc3339_stamps_directly_and_replies_show_their_round_trip",
        |browser| async move {
            let page = browser.page("chat").await;
            connected_chat(&page, &url).await;
            assert_panel_finds_the_offset(&page, 50.0).await;

            for text in ["what time is it?", "and how far off am I?", "ping"] {
                page.round_trip(text).await;
            }
            let rtts: Vec<f64> = page
                .eval(
                    "return [...document.querySelectorAll('#transcript .reply .rtt')]
                        .map((r) => parseFloat(r.dataset.rttMs));",
                )
                .await;
            assert_eq!(rtts.len(), 3, "{rtts:?}");
            assert!(
                rtts.iter().all(|&r| r > 0.0 && r < 5_000.0),
                "{rtts:?}"
            );
            let transcript = page.transcript().await;
            assert_eq!(transcript.replies.len(), 3, "only the messages: {transcript:?}");

            let png = page.screenshot().await.expect("screenshot");
            save_clock_screenshot(&png);
        },
    )
    .await;
}

/// The README's picture of the panel, written as `save_docs_screenshot` does
/// its own: when missing, or with `TIMECHO_UPDATE_SCREENSHOT` set.
fn save_clock_screenshot(png: &[u8]) {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/clock-panel.png");
    if !docs.exists() || std::env::var_os("TIMECHO_UPDATE_SCREENSHOT").is_some() {
        std::fs::write(&docs, png).expect("write docs/clock-panel.png");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_phone_width_the_measured_clock_panel_fits() {
    let server = ahead_gateway(&["--utc"]);
    let url = page_url(&server);
    browser_test(
        "at_phone_width_the_measured_clock_panel_fits",
        |browser| async move {
            let page = browser.page_with("phone", Window::phone(380, 800)).await;
            connected_chat(&page, &url).await;
            // Its longest words: a caption with a round trip, a bound in ms.
            assert_panel_finds_the_offset(&page, 1_000.0).await;
            page.round_trip("small screen").await;
            let (width, scroll_width, panel_right): (f64, f64, f64) = page
                .eval(
                    "return [window.innerWidth, document.documentElement.scrollWidth,
                        document.querySelector('.clock').getBoundingClientRect().right];",
                )
                .await;
            // A page wider than the phone would make it zoom out (a wider
            // layout viewport).
            assert_eq!(width, 380.0, "the viewport stays phone-sized");
            assert!(
                scroll_width <= width,
                "nothing scrolls sideways: {scroll_width}"
            );
            assert!(panel_right <= width, "the panel ends at {panel_right}");
        },
    )
    .await;
}

/// Prints the round trips the page shows for single messages and for a burst
/// of 25 sent at once, beside the clock probes' (the figures, not a speed
/// assertion). A reply is timed when its frame is read, before any rendering;
/// before that, the 25th of a burst on loopback showed 50 ms, the rendering of
/// the 24 before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_messages_shows_each_round_trip() {
    let server = start_gateway(&["--time-format", "rfc3339", "--precision", "us"]);
    let url = page_url(&server);
    browser_test(
        "a_burst_of_messages_shows_each_round_trip",
        |browser| async move {
            let page = browser.page("chat").await;
            connected_chat(&page, &url).await;
            clock_measured(&page).await;
            for i in 0..5 {
                page.round_trip(&format!("single {i}")).await;
            }
            page.eval::<()>(
                "const input = document.getElementById('message-input');
                for (let i = 0; i < 25; i++) {
                    input.value = 'burst ' + i;
                    input.form.requestSubmit();
                }",
            )
            .await;
            page.wait_for_reply("burst 24").await;
            let rtts: Vec<(String, Option<f64>)> = page
                .eval(
                    "return [...document.querySelectorAll('#transcript .reply')].map((r) => {
                        const rtt = r.querySelector('.rtt');
                        return [r.querySelector('.text').textContent,
                            rtt ? parseFloat(rtt.dataset.rttMs) : null];
                    });",
                )
                .await;
            let probes: String = page
                .eval("return document.querySelector('.best-rtt').innerText;")
                .await;
            let (texts, ms): (Vec<String>, Vec<Option<f64>>) = rtts.into_iter().unzip();
            let expected: Vec<String> = (0..5)
                .map(|i| format!("single {i}"))
                .chain((0..25).map(|i| format!("burst {i}")))
                .collect();
            assert_eq!(texts, expected, "every reply, in order");
            let ms: Vec<f64> = ms
                .into_iter()
                .map(|m| m.expect("every reply shows its round trip"))
                .collect();
            let fmt = |v: &[f64]| {
                v.iter()
                    .map(|m| format!("{m:.1}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            eprintln!(
                "round trips (ms): single {}; burst of 25 {}; probes: {probes}",
                fmt(&ms[..5]),
                fmt(&ms[5..])
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_tooltip_names_the_instance_that_answered() {
    let server = start_gateway(&["--instance", "web-2"]);
    let url = page_url(&server);
    browser_test(
        "the_status_tooltip_names_the_instance_that_answered",
        |browser| async move {
            let page = browser.page("chat").await;
            connected_chat(&page, &url).await;
            let title = wait_until("the status tooltip", SHOW_TIMEOUT, || async {
                let title: Option<String> = page
                    .eval("return document.getElementById('status').getAttribute('title');")
                    .await;
                match title {
                    Some(t) if t.contains("web-2") => Ok(t),
                    other => Err(format!("{other:?}")),
                }
            })
            .await;
            assert!(
                title.starts_with("Connected") && title.ends_with(" · Server instance: web-2"),
                "{title:?}"
            );
        },
    )
    .await;
}
