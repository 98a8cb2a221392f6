//! The connection's state, always visible, announced politely (`role=status`).
//! One line at any width: a long reason ends in an ellipsis, and the whole of
//! it is the box's tooltip.

use gloo_timers::callback::Interval;
use yew::prelude::*;

use crate::state::Connection;

/// How often the retry countdown is redrawn.
const COUNTDOWN_TICK_MS: u32 = 100;

#[derive(Properties, PartialEq)]
pub struct StatusBarProps {
    pub connection: Connection,
    /// Messages waiting for a connection.
    pub queued: usize,
    pub on_retry: Callback<()>,
    /// The server instance that answered `/api/config`, shown on hover.
    #[prop_or_default]
    pub instance: Option<String>,
}

#[component]
pub fn StatusBar(props: &StatusBarProps) -> Html {
    let state = props.connection.state_name();
    let (label, reason, retry_in_ms) = match &props.connection {
        Connection::Connecting {
            attempt: 0,
            last_error,
        } => ("Connecting…", last_error.as_deref(), None),
        Connection::Connecting { last_error, .. } => ("Reconnecting…", last_error.as_deref(), None),
        Connection::Connected => ("Connected", None, None),
        Connection::Idle => ("Idle", Some("reconnects when you type"), None),
        Connection::Disconnected {
            reason,
            retry_in_ms,
            ..
        } => ("Disconnected", Some(reason.as_str()), *retry_in_ms),
    };
    let code = match &props.connection {
        Connection::Disconnected { code, .. } => Some(code.to_string()),
        _ => None,
    };
    let left_ms = use_countdown(&props.connection, retry_in_ms);
    let on_retry = props.on_retry.reform(|_: MouseEvent| ());
    let left = left_ms.map(seconds);
    let retry_text = left.as_ref().map(|left| format!("retrying in {left}"));
    // The whole status, which one line may cut short, and which instance
    // answered (behind a balancer).
    let instance = props
        .instance
        .as_ref()
        .map(|i| format!("Server instance: {i}"));
    let title = [
        Some(label.to_owned()),
        retry_text,
        reason.map(str::to_owned),
        instance,
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" · ");

    html! {
        <div class="status-bar">
            <div id="status" class={classes!("status", state)} role="status"
                data-state={state} data-code={code} {title}>
                <span class="status-dot" aria-hidden="true"></span>
                <span class="status-label">{ label }</span>
                // Counters change often; screen readers hear the state and
                // the reason, not every tick of them.
                if let Some(left) = left {
                    // Narrow screens show the seconds alone.
                    <span class="status-retry" aria-live="off">
                        <span class="words">{ "retrying in " }</span>{ left }
                    </span>
                }
                if props.queued > 0 {
                    <span class="status-queued" aria-live="off">{ queued_text(props.queued) }</span>
                }
                if let Some(reason) = reason {
                    <span class="status-reason">{ reason }</span>
                }
            </div>
            // Always laid out, shown only while a retry waits: the header does
            // not move when it comes and goes.
            <button type="button" class={classes!("retry", retry_in_ms.is_none().then_some("hidden"))}
                onclick={on_retry} aria-hidden={retry_in_ms.is_none().then_some("true")}>
                { "Retry" }<span class="words">{ " now" }</span>
            </button>
        </div>
    }
}

/// The milliseconds left of `retry_in_ms`, counted from the moment the
/// connection took this state and redrawn while any are left.
#[hook]
fn use_countdown(connection: &Connection, retry_in_ms: Option<u32>) -> Option<u32> {
    let since = use_memo(connection.clone(), |_| js_sys::Date::now());
    let now = use_state(js_sys::Date::now);
    {
        let now = now.clone();
        use_effect_with(
            (connection.clone(), retry_in_ms.is_some()),
            move |(_, waiting)| {
                now.set(js_sys::Date::now());
                let timer = waiting.then(|| {
                    Interval::new(COUNTDOWN_TICK_MS, move || now.set(js_sys::Date::now()))
                });
                move || drop(timer)
            },
        );
    }
    retry_in_ms.map(|ms| remaining_ms(ms, *now - *since))
}

/// What is left of a `total` ms wait after `elapsed` ms, never below zero.
fn remaining_ms(total: u32, elapsed: f64) -> u32 {
    (f64::from(total) - elapsed.max(0.0)).max(0.0) as u32
}

/// `0.5 s`, `5.8 s`: tenths, so the countdown moves visibly.
fn seconds(ms: u32) -> String {
    format!("{:.1} s", f64::from(ms) / 1000.0)
}

fn queued_text(n: usize) -> String {
    match n {
        1 => "1 queued".into(),
        n => format!("{n} queued"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_read_naturally() {
        assert_eq!(seconds(500), "0.5 s");
        assert_eq!(seconds(2_000), "2.0 s");
        assert_eq!(queued_text(1), "1 queued");
        assert_eq!(queued_text(3), "3 queued");
    }

    #[test]
    fn the_retry_countdown_counts_down_to_zero() {
        assert_eq!(remaining_ms(5_800, 0.0), 5_800);
        assert_eq!(remaining_ms(5_800, 1_200.5), 4_599);
        assert_eq!(remaining_ms(5_800, 9_000.0), 0);
        assert_eq!(remaining_ms(500, -3.0), 500);
    }
}
