//! The clock panel: the server's time, ticking; how far this device's clock is
//! from it, in words and with its error bound; the round trips of the last
//! minute as a sparkline, with its scale and its latest and best values.
//! It says "measuring" until the bound means something (`ClockPanel::settled`)
//! and marks the estimate stale, not ticking, while disconnected. The browser
//! tests read `data-state`, `data-offset-ms`, `data-error-ms` and
//! `data-best-rtt-ms`.

use gloo_timers::callback::Interval;
use timecho_shared::clock::{describe, duration_words};
use yew::prelude::*;

use crate::browser::now_nanos;
use crate::state::StampSettings;
use crate::state::{
    measurable, sparkline_points, sparkline_scale, wall_clock_text, ClockPanel as Panel,
};

/// The sparkline's box, in SVG units.
const WIDTH: f64 = 120.0;
const HEIGHT: f64 = 24.0;
/// How often the shown time is redrawn: its second changes within this.
const REDRAW_MS: u32 = 200;

#[derive(Properties, PartialEq)]
pub struct ClockPanelProps {
    pub panel: Panel,
    pub stamp: Option<StampSettings>,
    /// Without a socket the estimate is not being checked: shown as stale.
    pub connected: bool,
}

#[component]
pub fn ClockPanel(props: &ClockPanelProps) -> Html {
    let now = use_state(now_nanos);
    {
        let now = now.clone();
        use_effect_with((), move |_| {
            let timer = Interval::new(REDRAW_MS, move || now.set(now_nanos()));
            move || drop(timer)
        });
    }
    let now = *now;
    let Some(stamp) = measurable(props.stamp.as_ref()) else {
        let why = if props.stamp.is_some() {
            "The clock needs the server's stamps in ctime, rfc3339 or unix format."
        } else {
            "Waiting for the server's stamp format…"
        };
        return html! { <section class="clock" aria-label="Server clock"><p class="offset">{ why }</p></section> };
    };
    let rtts: Vec<(i64, i64)> = props.panel.recent_rtts(now).collect();
    // A margin keeps the dots whole at the edges.
    let points = sparkline_points(&rtts, now, WIDTH - 4.0, HEIGHT - 4.0);
    let line = points
        .iter()
        .map(|(x, y)| format!("{:.1},{:.1}", x + 2.0, y + 2.0))
        .collect::<Vec<_>>()
        .join(" ");
    let best = rtts.iter().map(|&(_, rtt)| rtt).min();
    let latest = rtts.last().map(|&(_, rtt)| rtt);
    let caption = match (latest, best) {
        (Some(latest), Some(best)) => format!(
            "round trips: latest {}, best {}",
            duration_words(latest),
            duration_words(best)
        ),
        _ => "round trips: none yet".to_owned(),
    };
    let scale = (!rtts.is_empty()).then(|| duration_words(sparkline_scale(&rtts)));
    let zone = if stamp.format.utc {
        0
    } else {
        stamp.utc_offset_seconds
    };
    match props.panel.settled() {
        None if !props.connected => html! {
            <section class="clock" aria-label="Server clock" data-state="offline">
                <p class="offset">{ "Not connected: the clock is measured once the connection is back." }</p>
            </section>
        },
        None => html! {
            <section class="clock" aria-label="Server clock" data-state="measuring">
                <p class="offset">{ "Measuring this device's clock against the server's…" }</p>
            </section>
        },
        Some(bounds) => {
            let ms = |nanos: i64| format!("{:.3}", nanos as f64 / 1e6);
            let stale = !props.connected;
            let (state, label, time, words) = if stale {
                (
                    "stale",
                    "server time (not connected)",
                    "--:--:--".to_owned(),
                    format!("last measured: {}", describe(&bounds)),
                )
            } else {
                (
                    "measured",
                    "server time",
                    wall_clock_text(now + bounds.offset(), zone),
                    describe(&bounds),
                )
            };
            html! {
                <section class={classes!("clock", stale.then_some("stale"))} aria-label="Server clock"
                    data-state={state}
                    data-offset-ms={ms(bounds.offset())} data-error-ms={ms(bounds.error())}
                    data-best-rtt-ms={best.map(ms)}>
                    <span class="server-clock">
                        <span class="label">{ label }</span>
                        <time class="server-time" title="The server's time: this device's clock plus the offset">
                            { time }
                        </time>
                    </span>
                    <p class="offset">{ words }</p>
                    <span class="round-trips">
                    <svg class="sparkline" viewBox={format!("0 0 {WIDTH} {HEIGHT}")}
                        preserveAspectRatio="none" role="img"
                        aria-label="Round trips of the last minute">
                        <rect class="sparkline-box" width={WIDTH.to_string()} height={HEIGHT.to_string()} rx="3" />
                        <polyline points={line} />
                        { for points.iter().map(|(x, y)| html! {
                            <circle cx={format!("{:.1}", x + 2.0)} cy={format!("{:.1}", y + 2.0)} r="1.6" />
                        }) }
                    </svg>
                    if let Some(scale) = scale {
                        <span class="spark-scale" title="The sparkline's top">{ format!("top {scale}") }</span>
                    }
                    <span class="best-rtt">{ caption }</span>
                    </span>
                </section>
            }
        }
    }
}
