//! The reducer's tests: a page state built from a list of actions, checked
//! without a browser. One file per idea; the helpers here build the actions.

mod closes;
mod messages;
mod probes;
mod settings;
mod sign_in;

use timecho_shared::api::StampInfo;
use timecho_shared::{StampFormat, DEFAULT_MAX_LINE};

use super::*;

fn after(actions: impl IntoIterator<Item = Action>) -> Chat {
    let mut chat = Chat::default();
    for a in actions {
        chat.apply(a);
    }
    chat
}

fn kinds(chat: &Chat) -> Vec<EntryKind> {
    chat.entries.iter().map(|e| e.kind.clone()).collect()
}

fn deliveries(chat: &Chat) -> Vec<(String, Delivery)> {
    chat.entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Sent(msg) => Some((msg.text.clone(), msg.delivery)),
            _ => None,
        })
        .collect()
}

fn closed(code: u16, reason: &str) -> Action {
    Action::Closed {
        code,
        reason: reason.into(),
        retry_in_ms: Some(500),
    }
}

fn submit(text: &str) -> Action {
    Action::Submit(text.into())
}

fn echo(text: &str) -> Action {
    Action::Received {
        line: format!("[Tue Nov 24 21:35:36 2026] {text}"),
        at: 0,
    }
}

fn ctime_config() -> Action {
    let utc_ctime = StampFormat {
        utc: true,
        ..StampFormat::default()
    };
    Action::Configured(ServerConfig::new(
        DEFAULT_MAX_LINE,
        DEFAULT_MAX_LINE,
        StampInfo::new(&utc_ctime, 0),
        false,
    ))
}
