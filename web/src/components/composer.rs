//! The message input: Enter or the Send button sends; focus stays in the input
//! so a keyboard user can keep typing.

use web_sys::HtmlInputElement;
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct ComposerProps {
    pub on_send: Callback<String>,
    /// Offline messages are queued; the hint says so.
    pub connected: bool,
}

#[component]
pub fn Composer(props: &ComposerProps) -> Html {
    let input = use_node_ref();
    {
        let input = input.clone();
        use_effect_with((), move |_| focus(&input));
    }

    let onsubmit = {
        let input = input.clone();
        let on_send = props.on_send.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if let Some(el) = input.cast::<HtmlInputElement>() {
                let text = el.value();
                if !text.is_empty() {
                    el.set_value("");
                    on_send.emit(text);
                }
            }
            // After a click on Send, typing should go on where it was.
            focus(&input);
        })
    };

    let hint = if props.connected {
        "Press Enter to send."
    } else {
        "Not connected: messages wait and are sent when the connection is back."
    };

    html! {
        <form class="composer" {onsubmit}>
            <label for="message-input" class="sr-only">{ "Message" }</label>
            <input id="message-input" ref={input} type="text" name="message"
                placeholder="Type a message…" autocomplete="off" enterkeyhint="send"
                spellcheck="false" aria-describedby="composer-hint" />
            <button id="send" type="submit">{ "Send" }</button>
            <p id="composer-hint" class="hint">{ hint }</p>
        </form>
    }
}

fn focus(input: &NodeRef) {
    if let Some(el) = input.cast::<HtmlInputElement>() {
        let _ = el.focus();
    }
}
