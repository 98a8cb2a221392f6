//! Tests of the server's settings as the page takes them from `/api/config`.

use timecho_shared::api::StampInfo;
use timecho_shared::{Precision, TimeFormat};

use super::*;

fn config(max_line: usize, max_frame: usize, stamp: StampInfo) -> ServerConfig {
    ServerConfig::new(max_line, max_frame, stamp, false)
}

#[test]
fn until_the_server_says_the_default_line_limit_applies() {
    let settings = Settings::default();
    assert_eq!(settings.max_message_bytes, DEFAULT_MAX_LINE);
    assert_eq!(settings.stamp, None);
}

#[test]
fn the_limit_is_the_smaller_of_the_line_and_the_frame() {
    let stamp = StampInfo::new(&StampFormat::default(), 0);
    let settings = Settings::from_config(&config(100, 4096, stamp.clone()));
    assert_eq!(settings.max_message_bytes, 100);
    let settings = Settings::from_config(&config(4096, 200, stamp));
    assert_eq!(settings.max_message_bytes, 200);
}

#[test]
fn the_stamp_layout_and_zone_are_kept() {
    let format = StampFormat {
        format: TimeFormat::Rfc3339,
        precision: Precision::Millis,
        utc: false,
    };
    let settings = Settings::from_config(&config(10, 10, StampInfo::new(&format, -18_000)));
    assert_eq!(
        settings.stamp,
        Some(StampSettings {
            format,
            utc_offset_seconds: -18_000
        })
    );
}

#[test]
fn a_layout_the_page_cannot_read_is_left_unknown() {
    let mut stamp = StampInfo::new(&StampFormat::default(), 0);
    stamp.format = "tai64n".into();
    let settings = Settings::from_config(&config(100, 100, stamp));
    assert_eq!(settings.stamp, None);
    assert_eq!(settings.max_message_bytes, 100);
}
