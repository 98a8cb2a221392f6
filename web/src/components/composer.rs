//! The message input: Enter or the Send button sends; focus stays in the input
//! so a keyboard user can keep typing. A message over the server's line limit
//! stays in the input with the reason under it, so nothing typed is lost.

use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::hooks::{focus, use_focus};

#[derive(Properties, PartialEq)]
pub struct ComposerProps {
    pub on_send: Callback<String>,
    /// Offline messages are queued; the hint says so.
    pub connected: bool,
    /// The server's limit for one message (`/api/config`'s max_line).
    pub max_bytes: usize,
}

/// Why `text` cannot be sent, if it cannot.
fn refusal(text: &str, max_bytes: usize) -> Option<String> {
    (text.len() > max_bytes).then(|| {
        format!(
            "Too long to send: {} bytes, and the server takes at most {max_bytes} in one line.",
            text.len()
        )
    })
}

#[component]
pub fn Composer(props: &ComposerProps) -> Html {
    let input = use_focus();
    let refused = use_state(|| None::<String>);

    let onsubmit = {
        let input = input.clone();
        let on_send = props.on_send.clone();
        let refused = refused.clone();
        let max_bytes = props.max_bytes;
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if let Some(el) = input.cast::<HtmlInputElement>() {
                let text = el.value();
                let why = refusal(&text, max_bytes);
                if why.is_none() && !text.is_empty() {
                    el.set_value("");
                    on_send.emit(text);
                }
                refused.set(why);
            }
            // After a click on Send, typing should go on where it was.
            focus(&input);
        })
    };

    let oninput = {
        let refused = refused.clone();
        Callback::from(move |_: InputEvent| {
            if refused.is_some() {
                refused.set(None);
            }
        })
    };
    let hint = match (&*refused, props.connected) {
        (Some(why), _) => why.as_str(),
        (None, true) => "Press Enter to send.",
        (None, false) => "Not connected: messages wait and are sent when the connection is back.",
    };
    let invalid = refused.is_some();

    html! {
        <form class="composer" {onsubmit}>
            <label for="message-input" class="sr-only">{ "Message" }</label>
            <input id="message-input" ref={input} type="text" name="message"
                placeholder="Type a message…" autocomplete="off" enterkeyhint="send"
                spellcheck="false" aria-describedby="composer-hint" {oninput}
                aria-invalid={invalid.then_some("true")} />
            <button id="send" type="submit">{ "Send" }</button>
            <p id="composer-hint" class={classes!("hint", invalid.then_some("invalid"))}
                aria-live="polite">{ hint }</p>
        </form>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_message_over_the_limit_is_refused() {
        assert_eq!(refusal(&"x".repeat(20), 20), None);
        assert_eq!(
            refusal(&"y".repeat(21), 20).as_deref(),
            Some("Too long to send: 21 bytes, and the server takes at most 20 in one line.")
        );
    }
}
