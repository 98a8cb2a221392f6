//! The stamp and reply parsers take arbitrary text from the network: they must
//! never panic, whatever they are given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use timecho_shared::{Reply, Stamp, StampFormat, TimeFormat};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Reply::Stamped { stamp, .. } = Reply::parse(text) {
        let _ = Stamp::parse_any(stamp);
    }
    for format in [TimeFormat::Ctime, TimeFormat::Rfc3339, TimeFormat::Unix] {
        let f = StampFormat { format, ..StampFormat::default() };
        let _ = f.parse(text);
    }
    // Patterns come from the command line; a bad one must be refused, not crash.
    if let Ok(format) = text.parse::<TimeFormat>() {
        let f = StampFormat { format, utc: true, ..StampFormat::default() };
        let mut out = String::new();
        f.write(chrono::DateTime::UNIX_EPOCH, &mut out);
    }
});
