//! Tests of the clock panel's model: the probes' schedule, the estimate
//! from their echoes, and the sparkline's points.

use super::*;
use timecho_shared::{Precision, StampFormat};

const MS: i64 = 1_000_000;
const T0: i64 = 1_795_622_560 * SECOND;

fn settings(format: TimeFormat, precision: Precision) -> StampSettings {
    StampSettings {
        format: StampFormat {
            format,
            precision,
            utc: true,
        },
        utc_offset_seconds: 0,
    }
}

fn ctime() -> StampSettings {
    settings(TimeFormat::Ctime, Precision::Seconds)
}

#[test]
fn the_first_probe_goes_at_once_and_waits_for_its_echo() {
    let mut panel = ClockPanel::default();
    assert_eq!(panel.next_probe_at(T0), Some(T0));
    assert_eq!(panel.next_probe_line(), "timecho-clock-probe 1");
    assert_eq!(panel.probe_sent(T0), "timecho-clock-probe 1");
    assert_eq!(panel.next_probe_line(), "timecho-clock-probe 2");
    assert_eq!(panel.next_probe_at(T0 + SECOND), None);
}

#[test]
fn the_echo_of_a_probe_is_a_sample_and_not_shown() {
    let mut panel = ClockPanel::default();
    let probe = panel.probe_sent(T0);
    let s = ctime();
    // A message's echo is not the probe's.
    assert!(!panel.answered("[Wed Nov 25 16:02:43 2026] hello", T0 + MS, Some(&s)));
    let line = format!("[Wed Nov 25 16:02:43 2026] {probe}");
    assert!(panel.answered(&line, T0 + 2 * MS, Some(&s)));
    let b = panel.bounds().expect("a sample");
    // The server's 16:02:43 is 3 s after T0's 16:02:40.
    assert_eq!(b.low, 3 * SECOND - 2 * MS);
    assert_eq!(b.high, 4 * SECOND);
    // The same echo again is not awaited any more.
    assert!(!panel.answered(&line, T0 + 3 * MS, Some(&s)));
}

#[test]
fn without_a_known_format_an_echo_is_swallowed_but_not_measured() {
    let mut panel = ClockPanel::default();
    let probe = panel.probe_sent(T0);
    let line = format!("[Wed Nov 25 16:02:43 2026] {probe}");
    assert!(panel.answered(&line, T0 + MS, None));
    assert_eq!(panel.bounds(), None);
    let mut strftime = ClockPanel::default();
    let probe = strftime.probe_sent(T0);
    let s = settings(
        TimeFormat::Strftime("%Y-%m-%d %H:%M:%S".into()),
        Precision::Seconds,
    );
    let line = format!("[2026-11-25 16:02:43] {probe}");
    assert!(strftime.answered(&line, T0 + MS, Some(&s)));
    assert_eq!(strftime.bounds(), None);
    assert_eq!(strftime.recent_rtts(T0 + MS).count(), 1);
}

#[test]
fn one_second_stamps_place_the_next_probe_at_the_boundary() {
    let mut panel = ClockPanel::default();
    let probe = panel.probe_sent(T0);
    let line = format!("[Wed Nov 25 16:02:43 2026] {probe}");
    panel.answered(&line, T0 + 2 * MS, Some(&ctime()));
    // Offset 2.998..=4 s, middle 3.499 s: second 16:02:44 starts at client
    // T0 + 0.501 s, too soon after the first probe; 16:02:45 at T0 + 1.501 s.
    assert_eq!(panel.next_probe_at(T0 + 2 * MS), Some(T0 + 1_500 * MS));
}

#[test]
fn precise_stamps_take_a_few_quick_samples_then_one_every_ten_seconds() {
    let s = settings(TimeFormat::Rfc3339, Precision::Micros);
    let mut panel = ClockPanel::default();
    let mut now = T0;
    for n in 1..=4 {
        let due = panel.next_probe_at(now).unwrap();
        let expected = if n <= 3 {
            now
        } else {
            T0 + 2 * SECOND + 10 * SECOND
        };
        assert_eq!(due, expected, "probe {n}");
        let probe = panel.probe_sent(due);
        // The server is 3.5 s ahead.
        let second = 43 + (due - T0) / SECOND;
        let line = format!("[2026-11-25T16:02:{second:02}.500000Z] {probe}");
        assert!(panel.answered(&line, due + MS, Some(&s)));
        now = due + SECOND;
    }
}

#[test]
fn no_more_than_six_probes_leave_in_any_minute() {
    let mut panel = ClockPanel::default();
    for i in 0..6 {
        let at = T0 + i * 2 * SECOND;
        panel.probe_sent(at);
        panel.disconnected();
    }
    // The seventh waits until a minute after the first.
    assert_eq!(
        panel.next_probe_at(T0 + 11 * SECOND),
        Some(T0 + 60 * SECOND)
    );
    panel.probe_sent(T0 + 60 * SECOND);
    panel.disconnected();
    // Then a minute after the second.
    assert_eq!(
        panel.next_probe_at(T0 + 61 * SECOND),
        Some(T0 + 62 * SECOND)
    );
}

#[test]
fn probes_are_a_second_apart_at_least() {
    let mut panel = ClockPanel::default();
    panel.probe_sent(T0);
    panel.disconnected();
    assert_eq!(panel.next_probe_at(T0 + MS), Some(T0 + SECOND));
}

#[test]
fn round_trips_older_than_a_minute_leave_the_sparkline() {
    let mut panel = ClockPanel::default();
    panel.rtt(T0, 5 * MS);
    panel.rtt(T0 + 30 * SECOND, 7 * MS);
    assert_eq!(panel.recent_rtts(T0 + 59 * SECOND).count(), 2);
    assert_eq!(
        panel.recent_rtts(T0 + 60 * SECOND).collect::<Vec<_>>(),
        vec![(T0 + 30 * SECOND, 7 * MS)]
    );
    panel.rtt(T0 + 60 * SECOND, 9 * MS);
    assert_eq!(panel.rtts.len(), 2);
}

#[test]
fn the_servers_time_reads_in_its_zone() {
    assert_eq!(wall_clock_text(T0 + 999 * MS, 0), "16:02:40");
    assert_eq!(wall_clock_text(T0, 3_600 + 30 * 60), "17:32:40");
    assert_eq!(wall_clock_text(T0, -17 * 3_600), "23:02:40");
}

#[test]
fn sparkline_puts_the_longest_round_trip_at_the_top_and_now_at_the_right() {
    let rtts = [
        (T0, 2 * MS),
        (T0 + 30 * SECOND, 4 * MS),
        (T0 + 60 * SECOND, MS),
    ];
    assert_eq!(
        sparkline_points(&rtts, T0 + 60 * SECOND, 120.0, 20.0),
        vec![(0.0, 10.0), (60.0, 0.0), (120.0, 15.0)]
    );
    assert_eq!(sparkline_points(&[], T0, 120.0, 20.0), vec![]);
}

#[test]
fn a_young_sparkline_spreads_over_what_there_is() {
    // Twenty seconds of round trips span the whole box, not its right third.
    let rtts = [(T0, 2 * MS), (T0 + 10 * SECOND, 4 * MS)];
    assert_eq!(sparkline_span(&rtts, T0 + 20 * SECOND), 20 * SECOND);
    assert_eq!(
        sparkline_points(&rtts, T0 + 20 * SECOND, 120.0, 20.0),
        vec![(0.0, 10.0), (60.0, 0.0)]
    );
    // A lone point spans no less than two seconds; an old one no more than a minute.
    assert_eq!(sparkline_span(&rtts[..1], T0), MIN_SPARK_SPAN);
    assert_eq!(sparkline_span(&rtts, T0 + 90 * SECOND), RTT_WINDOW);
    assert_eq!(sparkline_scale(&rtts), 4 * MS);
}

#[test]
fn one_wide_sample_is_still_measuring() {
    let mut panel = ClockPanel::default();
    let probe = panel.probe_sent(T0);
    let line = format!("[Wed Nov 25 16:02:43 2026] {probe}");
    assert!(panel.answered(&line, T0 + 2 * MS, Some(&ctime())));
    assert!(panel.bounds().is_some());
    assert_eq!(panel.settled(), None, "±500 ms is not an answer yet");
    // Precise stamps narrow within two samples.
    let s = settings(TimeFormat::Rfc3339, Precision::Micros);
    let mut panel = ClockPanel::default();
    for n in 0..2 {
        let at = T0 + n * SECOND;
        let probe = panel.probe_sent(at);
        let line = format!("[2026-11-25T16:02:{:02}.500000Z] {probe}", 43 + n);
        assert!(panel.answered(&line, at + MS, Some(&s)));
        assert_eq!(panel.settled().is_some(), n == 1, "sample {}", n + 1);
    }
}

#[test]
fn a_slow_network_settles_after_enough_samples() {
    let mut panel = ClockPanel::default();
    for n in 0..SETTLED_SAMPLES as i64 {
        let at = T0 + n * 2 * SECOND;
        let probe = panel.probe_sent(at);
        // A 900 ms round trip: ctime stamps cannot narrow it below ±450 ms.
        let line = format!("[Wed Nov 25 16:02:{:02} 2026] {probe}", 43 + 2 * n);
        assert!(panel.answered(&line, at + 900 * MS, Some(&ctime())));
        let last = n as usize + 1 == SETTLED_SAMPLES;
        assert_eq!(panel.settled().is_some(), last, "sample {}", n + 1);
    }
}
