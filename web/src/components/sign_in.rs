//! The sign-in form, shown instead of the chat when the server has `--auth`
//! and nobody is signed in. The ids are what the browser tests select on.

use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::hooks::{focus, use_focus};

/// What was typed into the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

#[derive(Properties, PartialEq)]
pub struct SignInProps {
    /// Why the last sign-in failed, or why the session ended.
    pub error: Option<String>,
    /// A sign-in is on its way: the button waits.
    pub busy: bool,
    /// The user has just signed out: the form confirms it.
    pub signed_out: bool,
    pub on_sign_in: Callback<Credentials>,
}

#[component]
pub fn SignIn(props: &SignInProps) -> Html {
    let user = use_focus();
    let password = use_node_ref();
    {
        // After a refusal the password goes, and typing starts there again;
        // the user name stays, it was most likely right.
        let user = user.clone();
        let password = password.clone();
        use_effect_with(props.error.clone(), move |error| {
            if error.is_some() {
                if let Some(el) = password.cast::<HtmlInputElement>() {
                    el.set_value("");
                }
                let user_empty = user
                    .cast::<HtmlInputElement>()
                    .is_none_or(|el| el.value().is_empty());
                focus(if user_empty { &user } else { &password });
            }
        });
    }

    let onsubmit = {
        let (user, password) = (user.clone(), password.clone());
        let on_sign_in = props.on_sign_in.clone();
        let busy = props.busy;
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let value = |r: &NodeRef| {
                r.cast::<HtmlInputElement>()
                    .map(|el| el.value())
                    .unwrap_or_default()
            };
            if !busy {
                on_sign_in.emit(Credentials {
                    user: value(&user),
                    password: value(&password),
                });
            }
        })
    };
    let invalid = props.error.is_some().then_some("true");

    html! {
        <main class="sign-in">
            <form class="sign-in-card" {onsubmit} aria-labelledby="sign-in-title">
                <h2 id="sign-in-title">{ "Sign in" }</h2>
                <p id="signed-out" class="sign-in-notice" role="status">
                    if props.signed_out {
                        { "You have signed out." }
                    }
                </p>
                <p class="sign-in-lead">{ "This server asks you to sign in before you send messages." }</p>
                <label for="login-user">{ "User name" }</label>
                <input id="login-user" ref={user} type="text" name="username" required=true
                    autocomplete="username" autocapitalize="none" spellcheck="false" />
                <label for="login-password">{ "Password" }</label>
                <input id="login-password" ref={password} type="password" name="password"
                    required=true autocomplete="current-password" aria-invalid={invalid}
                    aria-describedby="login-error" />
                <p id="login-error" class="login-error" role="alert">
                    { props.error.clone().unwrap_or_default() }
                </p>
                <button id="login-submit" type="submit" disabled={props.busy}>
                    { if props.busy { "Signing in…" } else { "Sign in" } }
                </button>
            </form>
        </main>
    }
}
