//! One transcript entry. The classes and the `stamp`/`text` split are what the
//! browser tests select on, so they stay stable.

use std::rc::Rc;

use timecho_shared::clock::duration_words;
use yew::prelude::*;

use crate::state::{Delivery, Entry, EntryKind, Outgoing};

#[derive(Properties, PartialEq)]
pub struct MessageProps {
    pub entry: Rc<Entry>,
}

#[component]
pub fn Message(props: &MessageProps) -> Html {
    match &props.entry.kind {
        EntryKind::Sent(Outgoing { text, delivery, .. }) => {
            let (state, badge) = match delivery {
                Delivery::Queued => (
                    Some("pending"),
                    Some(("queued", "Sent when the connection is back")),
                ),
                Delivery::Undelivered => (
                    Some("undelivered"),
                    Some((
                        "not delivered",
                        "The gateway or server refused this message",
                    )),
                ),
                Delivery::InFlight | Delivery::Echoed => (None, None),
            };
            html! {
                <li class={classes!("entry", "sent", state)}>
                    <span class="text">{ text }</span>
                    if let Some((label, title)) = badge {
                        <span class="badge" {title}>{ label }</span>
                    }
                </li>
            }
        }
        EntryKind::Reply {
            stamp,
            time,
            text,
            rtt,
        } => {
            // The short time shows; the whole stamp (its date too) is the
            // tooltip, and is shown in place while the stamp has focus, which
            // a tap or the keyboard gives it: no hovering needed.
            let shown = match time {
                Some(t) => html! {
                    <time class="stamp" datetime={t.iso.clone()} title={stamp.clone()}
                        data-stamp={stamp.clone()} tabindex="0">
                        <span class="stamp-short" aria-hidden="true">{ t.short.clone() }</span>
                        <span class="stamp-full">{ stamp.clone() }</span>
                    </time>
                },
                None => html! {
                    <time class="stamp" data-stamp={stamp.clone()}>{ stamp.clone() }</time>
                },
            };
            html! {
                <li class="entry reply">
                    { shown }
                    <span class="text">{ text }</span>
                    if let Some(rtt) = rtt {
                        <span class="rtt" title="Round trip: from sending to this reply"
                            data-rtt-ms={format!("{:.3}", *rtt as f64 / 1e6)}>
                            { duration_words(*rtt) }
                        </span>
                    }
                </li>
            }
        }
        EntryKind::Error(reason) => html! {
            <li class="entry error">
                <span class="label">{ "Error" }</span>
                <span class="text">{ reason }</span>
            </li>
        },
        EntryKind::Other(line) => html! {
            <li class="entry other"><span class="text">{ line }</span></li>
        },
        EntryKind::Notice(text) => html! {
            <li class="entry notice"><span class="text">{ text }</span></li>
        },
    }
}
