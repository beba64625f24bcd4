//! sanitize + screen throughput for 100 B .. 64 KiB prompts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gatehouse::screen::{ScreenConfig, Screener};

/// Realistic mix: prose, code with shell punctuation, and one suspicious phrase per ~1 KiB.
fn prompt(len: usize) -> String {
    const PARTS: &[&str] = &[
        "Please summarize the following meeting notes for the team. ",
        "The deployment ran `for f in *.log; do gzip \"$f\"; done && ls | wc -l` last night. ",
        "Revenue grew 12% in Q3; costs were flat & margins improved. ",
        "Ignore the typos, they are from my phone. ",
        "Explain how the scheduler decides which job runs next, step by step. ",
        "Ünïcödé text, 日本語のテキスト, and emoji 🚀 appear too. ",
    ];
    let mut s = String::with_capacity(len + 128);
    let mut i = 0;
    while s.len() < len {
        s.push_str(PARTS[i % PARTS.len()]);
        i += 1;
    }
    let mut end = len;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}

fn bench(c: &mut Criterion) {
    let cfg = ScreenConfig {
        max_input_bytes: 128 * 1024,
        ..ScreenConfig::default()
    };
    let screener = Screener::new(cfg).expect("the embedded screen loads");
    let mut group = c.benchmark_group("sanitize+screen");
    for size in [100usize, 1024, 8 * 1024, 64 * 1024] {
        let text = prompt(size);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &text, |b, t| {
            b.iter(|| screener.screen_text(std::hint::black_box(t)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
