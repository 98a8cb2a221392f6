//! An input that has the focus when its component appears, so that a keyboard
//! user can type at once, and can be given it again after a click elsewhere.

use web_sys::HtmlInputElement;
use yew::prelude::*;

/// A reference for an `<input>` that takes the focus once it is mounted.
#[hook]
pub fn use_focus() -> NodeRef {
    let input = use_node_ref();
    {
        let input = input.clone();
        use_effect_with((), move |_| focus(&input));
    }
    input
}

/// Gives `input` the focus, if it is a mounted `<input>`.
pub fn focus(input: &NodeRef) {
    if let Some(el) = input.cast::<HtmlInputElement>() {
        let _ = el.focus();
    }
}
