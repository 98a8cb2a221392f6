//! Micro-benchmarks of the per-message work: framing a read full of lines,
//! building the replies, and producing the stamp (cached and uncached).
//! Run with `cargo bench -p timecho-shared`.

use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use timecho_shared::{reply, Frame, LineDecoder, StampCache, StampFormat, TimeFormat};

fn lines(count: usize, len: usize) -> Vec<u8> {
    let line: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
    let mut buf = Vec::with_capacity(count * (len + 1));
    for _ in 0..count {
        buf.extend_from_slice(&line);
        buf.push(b'\n');
    }
    buf
}

fn decode_and_reply(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_and_reply");
    for len in [16usize, 1024] {
        let input = lines(32, len);
        let mut out = Vec::with_capacity(input.len() * 2);
        group.throughput(Throughput::Elements(32));
        group.bench_with_input(BenchmarkId::new("32 lines", len), &input, |b, input| {
            let mut decoder = LineDecoder::new(64 * 1024);
            b.iter(|| {
                out.clear();
                let mut frames = decoder.frames(black_box(input));
                for frame in &mut frames {
                    if let Frame::Line(l) = frame {
                        reply::write_stamped(&mut out, "Wed Nov 25 08:47:03 2026", l);
                    }
                }
                black_box(frames.consumed());
                black_box(out.len())
            })
        });
    }
    group.finish();
}

fn stamp(c: &mut Criterion) {
    let mut group = c.benchmark_group("stamp");
    let t: DateTime<Utc> = DateTime::from_timestamp(1_793_783_101, 123_456_789).unwrap();
    for (name, format) in [
        ("ctime", TimeFormat::Ctime),
        ("rfc3339", TimeFormat::Rfc3339),
        ("unix", TimeFormat::Unix),
    ] {
        let f = StampFormat {
            format,
            ..StampFormat::default()
        };
        let mut text = String::with_capacity(64);
        group.bench_function(BenchmarkId::new("format", name), |b| {
            b.iter(|| {
                text.clear();
                f.write(black_box(t), &mut text);
                black_box(text.len())
            })
        });
        let mut cache = StampCache::new(f.clone());
        group.bench_function(BenchmarkId::new("cached", name), |b| {
            b.iter(|| black_box(cache.at(black_box(t)).len()))
        });
    }
    group.finish();
}

criterion_group!(benches, decode_and_reply, stamp);
criterion_main!(benches);
