//! One socket to the relay. Its handlers hand each event to the [`Relay`]
//! with the session's id, so that a late event of a replaced socket changes
//! nothing.

use std::rc::Weak;

use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use super::relay::Relay;
use crate::js_reason;

/// One socket, and the handlers that must live exactly as long as it does.
pub(super) struct Session {
    pub(super) id: u64,
    pub(super) socket: WebSocket,
    pub(super) opened_at: Option<f64>,
    pub(super) heard_anything: bool,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Session {
    pub(super) fn open(url: &str, id: u64, relay: Weak<Relay>) -> Result<Session, String> {
        let socket = WebSocket::new(url).map_err(js_reason)?;
        socket.set_binary_type(BinaryType::Arraybuffer);

        let on_open = {
            let relay = relay.clone();
            Closure::<dyn FnMut()>::new(move || {
                if let Some(relay) = relay.upgrade() {
                    relay.opened(id);
                }
            })
        };
        let on_message = {
            let relay = relay.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                if let Some(relay) = relay.upgrade() {
                    relay.received(id, event);
                }
            })
        };
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            if let Some(relay) = relay.upgrade() {
                relay.closed(Some(id), event.code(), event.reason());
            }
        });
        socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));

        Ok(Session {
            id,
            socket,
            opened_at: None,
            heard_anything: false,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    }

    /// Unhooks the handlers, so nothing calls into closures about to be dropped.
    pub(super) fn detach(&self) {
        self.socket.set_onopen(None);
        self.socket.set_onmessage(None);
        self.socket.set_onclose(None);
    }
}
