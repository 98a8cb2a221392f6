//! The scrolling list of entries, and the live region that reads new replies
//! to screen readers (only replies and errors: what was typed is known).

use std::cell::Cell;
use std::rc::Rc;

use web_sys::Element;
use yew::prelude::*;

use super::Message;
use crate::state::{Entry, EntryKind};

/// Within this many pixels of the bottom, new entries keep the view pinned there;
/// further up, the reader is reading and is left alone.
const PINNED_SLACK_PX: i32 = 48;

#[derive(Properties, PartialEq)]
pub struct TranscriptProps {
    pub entries: Vec<Rc<Entry>>,
}

#[component]
pub fn Transcript(props: &TranscriptProps) -> Html {
    let scroller = use_node_ref();
    let pinned = use_memo((), |_| Cell::new(true));

    let onscroll = {
        let scroller = scroller.clone();
        let pinned = pinned.clone();
        Callback::from(move |_: Event| {
            if let Some(el) = scroller.cast::<Element>() {
                let from_bottom = el.scroll_height() - el.scroll_top() - el.client_height();
                pinned.set(from_bottom <= PINNED_SLACK_PX);
            }
        })
    };
    {
        let scroller = scroller.clone();
        let last_id = props.entries.last().map(|e| e.id);
        use_effect_with(last_id, move |_| {
            if let Some(el) = scroller.cast::<Element>() {
                if pinned.get() {
                    el.set_scroll_top(el.scroll_height());
                }
            }
        });
    }

    let announcement = props
        .entries
        .iter()
        .rev()
        .find_map(|e| announcement(e).map(|text| (e.id, text)));

    html! {
        <main class="scroller" ref={scroller} {onscroll} tabindex="0" aria-label="Conversation">
            if props.entries.is_empty() {
                <p class="empty">
                    { "Type a message and press Enter: the server echoes it back with the time it arrived." }
                </p>
            }
            <ol id="transcript" class="transcript" aria-label="Messages">
                { for props.entries.iter().map(|e| html! { <Message key={e.id} entry={e.clone()} /> }) }
            </ol>
            <div class="sr-only" aria-live="polite" aria-atomic="true">
                if let Some((id, text)) = announcement {
                    // A new key is a new node, so a repeated reply is read again.
                    <p key={id}>{ text }</p>
                }
            </div>
        </main>
    }
}

/// What a screen reader hears when this entry arrives; `None` for our own words.
fn announcement(entry: &Entry) -> Option<String> {
    match &entry.kind {
        EntryKind::Reply {
            time, text, stamp, ..
        } => {
            let at = time.as_ref().map_or(stamp.as_str(), |t| t.short.as_str());
            Some(format!("{at}: {text}"))
        }
        EntryKind::Error(reason) => Some(format!("Error: {reason}")),
        EntryKind::Other(line) => Some(line.clone()),
        EntryKind::Notice(text) => Some(text.clone()),
        EntryKind::Sent(_) => None,
    }
}
