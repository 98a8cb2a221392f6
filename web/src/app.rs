//! The page: status on top, transcript in the middle, composer at the bottom.

use yew::prelude::*;

use crate::components::{Composer, StatusBar, Transcript};
use crate::state::{Action, Chat};
use crate::ws::use_relay;

#[component]
pub fn App() -> Html {
    let chat = use_reducer(Chat::default);
    let retry_now = use_relay(&chat);
    let on_send = {
        let dispatch = chat.dispatcher();
        Callback::from(move |text: String| dispatch.dispatch(Action::Submit(text)))
    };

    html! {
        <div class="app">
            <header class="top">
                <h1 class="brand">
                    <svg class="brand-mark" viewBox="0 0 24 24" aria-hidden="true">
                        <circle cx="12" cy="13" r="8" />
                        <path d="M12 9v4l2.5 2M10 3h4" />
                    </svg>
                    { "timecho" }
                </h1>
                <StatusBar connection={chat.connection.clone()} queued={chat.queued_count()}
                    on_retry={retry_now} />
            </header>
            <Transcript entries={chat.entries.clone()} />
            <Composer {on_send} connected={chat.connection.is_connected()} />
        </div>
    }
}
