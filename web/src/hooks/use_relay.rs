//! The socket to the gateway's `/ws` relay, as a hook: it connects, reconnects
//! with backoff, turns socket events into `Action`s, delivers the outbox, and
//! sends the clock probes when the panel's model says one is due (and the page
//! is visible). After an idle close it waits for a reason to connect: a
//! message to send, or the page being looked at again.
//!
//! The hook only ties the page's state to the [`Relay`], which keeps the
//! connection across sessions (`relay.rs`); each socket and its handlers is a
//! `Session` (`session.rs`). Yew may render (and run effects) inside a
//! `dispatch`, so no `RefCell` borrow is ever held across one.

mod relay;
mod session;

use wasm_bindgen::prelude::*;
use yew::prelude::*;

use self::relay::Relay;
use crate::browser::{js_reason, now_nanos};
use crate::state::Chat;

/// The relay's address for a page loaded with this protocol from this host:
/// same host, `wss` when the page itself is https.
pub fn relay_url_for(protocol: &str, host: &str) -> String {
    let scheme = if protocol == "https:" { "wss" } else { "ws" };
    format!("{scheme}://{host}/ws")
}

fn page_relay_url() -> Result<String, String> {
    let location = web_sys::window()
        .ok_or("this page has no window")?
        .location();
    let protocol = location.protocol().map_err(js_reason)?;
    let host = location.host().map_err(js_reason)?;
    Ok(relay_url_for(&protocol, &host))
}

/// Connects while the page may (see `Access::may_connect`), reconnects until
/// it may not or is unmounted, and sends whatever the outbox holds while
/// connected. Returns a callback that retries at once.
#[hook]
pub fn use_relay(chat: &UseReducerHandle<Chat>) -> Callback<()> {
    let relay = {
        let dispatch = chat.dispatcher();
        use_memo((), move |_| Relay::new(page_relay_url(), dispatch))
    };
    {
        // The clock probes need the socket: a page looked at again after an
        // idle close connects.
        let relay = relay.clone();
        use_effect_with((), move |_| {
            let listener = Closure::<dyn FnMut()>::new(move || {
                if page_visible() {
                    relay.wake();
                }
            });
            let document = web_sys::window().and_then(|w| w.document());
            if let Some(d) = &document {
                let _ = d.add_event_listener_with_callback(
                    "visibilitychange",
                    listener.as_ref().unchecked_ref(),
                );
            }
            move || {
                if let Some(d) = &document {
                    let _ = d.remove_event_listener_with_callback(
                        "visibilitychange",
                        listener.as_ref().unchecked_ref(),
                    );
                }
            }
        });
    }
    {
        let relay = relay.clone();
        use_effect_with(chat.access.may_connect(), move |may_connect| {
            if *may_connect {
                relay.start();
            }
            move || relay.stop()
        });
    }
    // The outbox itself is the dependency: the effect runs again whenever a
    // message is queued or the socket comes up.
    let outbox: Vec<(u64, String)> = chat
        .outbox()
        .map(|(id, text)| (id, text.to_owned()))
        .collect();
    {
        let relay = relay.clone();
        let connected = chat.connection.is_connected();
        use_effect_with((connected, outbox), move |(connected, outbox)| {
            if *connected {
                relay.deliver(outbox);
            } else if !outbox.is_empty() {
                relay.wake();
            }
        });
    }
    {
        // The due time is the dependency: the effect runs again after each
        // probe, echo and reconnection.
        let relay = relay.clone();
        let due = chat.probe_due(now_nanos());
        let line = chat.clock.next_probe_line();
        use_effect_with((due, line), move |(due, line)| {
            relay.schedule_probe(*due, line.clone());
            move || relay.cancel_probe()
        });
    }
    Callback::from(move |()| relay.retry_now())
}

fn page_visible() -> bool {
    web_sys::window()
        .and_then(|w| w.document())
        .is_none_or(|d| d.visibility_state() == web_sys::VisibilityState::Visible)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_is_on_the_pages_host_and_secure_when_the_page_is() {
        assert_eq!(
            relay_url_for("http:", "127.0.0.1:8080"),
            "ws://127.0.0.1:8080/ws"
        );
        assert_eq!(
            relay_url_for("https:", "echo.example"),
            "wss://echo.example/ws"
        );
    }
}
