//! One socket to the relay. Its handlers report each event, with the
//! session's id, to whoever opened it, so that a late event of a replaced
//! socket can be told apart; the session knows nothing of its owner.

use std::rc::Rc;

use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::browser::js_reason;

/// What a socket reports.
pub(super) enum Event {
    Opened,
    Message(MessageEvent),
    Closed { code: u16, reason: String },
}

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
    pub(super) fn open(
        url: &str,
        id: u64,
        report: impl Fn(u64, Event) + 'static,
    ) -> Result<Session, String> {
        let socket = WebSocket::new(url).map_err(js_reason)?;
        socket.set_binary_type(BinaryType::Arraybuffer);

        let report = Rc::new(report);
        let on_open = {
            let report = report.clone();
            Closure::<dyn FnMut()>::new(move || report(id, Event::Opened))
        };
        let on_message = {
            let report = report.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                report(id, Event::Message(event));
            })
        };
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            report(
                id,
                Event::Closed {
                    code: event.code(),
                    reason: event.reason(),
                },
            );
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
