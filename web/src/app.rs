//! The page: status on top, transcript in the middle, composer at the bottom;
//! or, when the server wants a sign-in, the sign-in form instead.

use gloo_timers::callback::Interval;
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use crate::api;
use crate::components::{
    Account, ClockPanel, Composer, Credentials, SignIn, StatusBar, Transcript,
};
use crate::hooks::use_relay;
use crate::state::{self, Access, Action, Chat, Connection};

#[component]
pub fn App() -> Html {
    let chat = use_reducer(Chat::default);
    let retry_now = use_relay(&chat);
    {
        // The socket waits for the session's answer (see `Access::may_connect`),
        // not for the settings: until they come the defaults apply.
        let dispatch = chat.dispatcher();
        use_effect_with((), move |_| {
            let configured = dispatch.clone();
            spawn_local(async move {
                if let Ok(config) = api::config().await {
                    configured.dispatch(Action::Configured(config));
                }
            });
            spawn_local(async move {
                let reply = api::session().await;
                dispatch.dispatch(state::session_checked(reply));
            })
        });
    }
    {
        // Signed in: ask the server again every so often, which renews the
        // sign-in token (a short-lived one, so that signing out elsewhere is
        // honoured everywhere soon); an ended session brings the form back.
        let dispatch = chat.dispatcher();
        let signed_in = chat.access.user().is_some();
        let every = chat.settings.renew_every_ms;
        use_effect_with((signed_in, every), move |&(signed_in, every)| {
            let timer = every.filter(|_| signed_in).map(|ms| {
                Interval::new(ms, move || {
                    let dispatch = dispatch.clone();
                    spawn_local(async move {
                        let reply = api::session().await;
                        dispatch.dispatch(state::session_checked(reply));
                    });
                })
            });
            move || drop(timer)
        });
    }
    let on_send = {
        let dispatch = chat.dispatcher();
        Callback::from(move |text: String| dispatch.dispatch(Action::Submit(text)))
    };
    let on_sign_in = {
        let dispatch = chat.dispatcher();
        Callback::from(move |c: Credentials| {
            dispatch.dispatch(Action::SigningIn);
            let dispatch = dispatch.clone();
            spawn_local(async move {
                let reply = api::login(&c.user, &c.password).await;
                dispatch.dispatch(state::signed_in(&c.user, reply));
            });
        })
    };
    let on_sign_out = {
        let dispatch = chat.dispatcher();
        Callback::from(move |()| {
            let dispatch = dispatch.clone();
            spawn_local(async move {
                let reply = api::logout().await;
                dispatch.dispatch(state::signed_out(reply));
            });
        })
    };

    let brand = html! {
        <h1 class="brand">
            <svg class="brand-mark" viewBox="0 0 24 24" aria-hidden="true">
                <circle cx="12" cy="13" r="8" />
                <path d="M12 9v4l2.5 2M10 3h4" />
            </svg>
            { "timecho" }
        </h1>
    };

    match &chat.access {
        // Brief, and better blank than a chat that turns into a form.
        Access::Checking => {
            return html! {
                <div class="app">
                    <header class="top">{ brand }</header>
                    <main class="checking" aria-busy="true"></main>
                </div>
            };
        }
        Access::SignedOut {
            error,
            busy,
            just_signed_out,
        } => {
            return html! {
                <div class="app">
                    <header class="top">{ brand }</header>
                    <SignIn error={error.clone()} busy={*busy} signed_out={*just_signed_out}
                        {on_sign_in} />
                </div>
            };
        }
        Access::Open | Access::SignedIn { .. } => {}
    }
    // After an idle close a message reconnects at once: no "not connected" hint.
    let sends_now = matches!(chat.connection, Connection::Connected | Connection::Idle);
    // The limit in force, for the browser tests to wait on.
    let max_message = chat.settings.max_message_bytes.to_string();
    html! {
        <div class="app" data-max-message-bytes={max_message}>
            <header class="top">
                { brand }
                if let Some(user) = chat.access.user() {
                    <Account user={AttrValue::from(user.to_owned())} {on_sign_out} />
                }
                <StatusBar connection={chat.connection.clone()} queued={chat.queued_count()}
                    on_retry={retry_now} instance={chat.settings.instance.clone()} />
            </header>
            <ClockPanel panel={chat.clock.clone()} stamp={chat.settings.stamp.clone()}
                connected={chat.connection.is_connected()} />
            <Transcript entries={chat.entries.clone()} />
            <Composer {on_send} connected={sends_now}
                max_bytes={chat.settings.max_message_bytes} />
        </div>
    }
}
