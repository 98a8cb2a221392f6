//! The clock panel: the server's time, ticking; how far this device's clock is
//! from it, in words and with its error bound; the round trips of the last
//! minute as a sparkline. The browser tests read `data-offset-ms` and
//! `data-error-ms`.

use gloo_timers::callback::Interval;
use timecho_shared::clock::{describe, duration_words};
use yew::prelude::*;

use crate::now_nanos;
use crate::state::StampSettings;
use crate::state::{measurable, sparkline_points, wall_clock_text, ClockPanel as Panel};

/// The sparkline's box, in SVG units.
const WIDTH: f64 = 120.0;
const HEIGHT: f64 = 24.0;
/// How often the shown time is redrawn: its second changes within this.
const REDRAW_MS: u32 = 200;

#[derive(Properties, PartialEq)]
pub struct ClockPanelProps {
    pub panel: Panel,
    pub stamp: Option<StampSettings>,
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
    let caption = match best {
        Some(best) => format!("round trips, last minute: best {}", duration_words(best)),
        None => "round trips, last minute".to_owned(),
    };
    let zone = if stamp.format.utc {
        0
    } else {
        stamp.utc_offset_seconds
    };
    match props.panel.bounds() {
        None => html! {
            <section class="clock" aria-label="Server clock" data-state="measuring">
                <p class="offset">{ "Measuring this device's clock against the server's…" }</p>
            </section>
        },
        Some(bounds) => {
            let ms = |nanos: i64| format!("{:.3}", nanos as f64 / 1e6);
            html! {
                <section class="clock" aria-label="Server clock" data-state="measured"
                    data-offset-ms={ms(bounds.offset())} data-error-ms={ms(bounds.error())}>
                    <span class="server-clock">
                        <span class="label">{ "server time" }</span>
                        <time class="server-time" title="The server's time: this device's clock plus the offset">
                            { wall_clock_text(now + bounds.offset(), zone) }
                        </time>
                    </span>
                    <p class="offset">{ describe(&bounds) }</p>
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
                    <span class="best-rtt">{ caption }</span>
                    </span>
                </section>
            }
        }
    }
}
