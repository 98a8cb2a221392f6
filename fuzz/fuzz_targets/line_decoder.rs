//! Any byte stream, split anywhere, gives the same frames as when fed whole, and
//! the caller's buffer never has to hold more than the decoder's limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use timecho_shared::{Frame, LineDecoder};

fn decode(max: usize, chunks: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
    let mut decoder = LineDecoder::new(max);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        let mut frames = decoder.frames(&buf);
        for frame in &mut frames {
            out.push(match frame {
                Frame::Line(l) => {
                    assert!(l.len() <= max);
                    Some(l.to_vec())
                }
                Frame::TooLong => None,
            });
        }
        let used = frames.consumed();
        buf.drain(..used);
        assert!(buf.len() < decoder.buffer_limit());
    }
    if let Some(l) = decoder.take_partial(&buf) {
        out.push(Some(l.to_vec()));
    }
    out
}

fuzz_target!(|input: &[u8]| {
    let Some((&head, data)) = input.split_first() else { return };
    let max = usize::from(head % 32) + 1;
    let whole = decode(max, &[data]);
    let step = usize::from(head / 32) + 1;
    let chunks: Vec<&[u8]> = data.chunks(step).collect();
    assert_eq!(decode(max, &chunks), whole);
});
