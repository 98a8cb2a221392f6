//! The connection's state, always visible, announced politely (`role=status`).

use yew::prelude::*;

use crate::state::Connection;

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
    let on_retry = props.on_retry.reform(|_: MouseEvent| ());
    let title = props
        .instance
        .as_ref()
        .map(|i| format!("Server instance: {i}"));

    html! {
        <div class="status-bar">
            <div id="status" class={classes!("status", state)} role="status"
                data-state={state} data-code={code} {title}>
                <span class="status-dot" aria-hidden="true"></span>
                <span class="status-summary">
                    <span class="status-label">{ label }</span>
                    // Counters change often; screen readers hear the state and
                    // the reason, not every tick of them.
                    if let Some(ms) = retry_in_ms {
                        <span class="status-retry" aria-live="off">
                            { format!("retrying in {}", seconds(ms)) }
                        </span>
                    }
                    if props.queued > 0 {
                        <span class="status-queued" aria-live="off">{ queued_text(props.queued) }</span>
                    }
                </span>
                if let Some(reason) = reason {
                    <span class="status-reason">{ reason }</span>
                }
            </div>
            if retry_in_ms.is_some() {
                <button type="button" class="retry" onclick={on_retry}>{ "Retry now" }</button>
            }
        </div>
    }
}

/// `0.5 s`, `2 s`: whole seconds need no decimals.
fn seconds(ms: u32) -> String {
    match ms % 1000 {
        0 => format!("{} s", ms / 1000),
        _ => format!("{:.1} s", f64::from(ms) / 1000.0),
    }
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
        assert_eq!(seconds(2_000), "2 s");
        assert_eq!(queued_text(1), "1 queued");
        assert_eq!(queued_text(3), "3 queued");
    }
}
