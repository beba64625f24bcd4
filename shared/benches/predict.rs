//! The whole predict pipeline in-process, with in-memory fakes for the rate counter and the audit
//! sink and the echo model: content type → size → schema → model policy → rate limit → sanitize +
//! screen → model → audit record (hashing + HMAC chain) → response.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gatehouse::auth::Principal;
use gatehouse::config::{Env, PredictConfig};
use gatehouse::predict::Inbound;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let predictor =
        gatehouse::setup::in_memory_predictor(PredictConfig::from_env(&Env(|_| None)).unwrap())
            .unwrap();
    // A fresh subject per request keeps every call under its rate limit (the fake counter is
    // per subject, like the real one), so each iteration runs the full allowed path.
    let n = AtomicU64::new(0);
    let mut group = c.benchmark_group("predict_pipeline");
    // Up to the 8,000-character prompt limit of the role.
    for size in [100usize, 1024, 7 * 1024] {
        let prompt: String = "Summarise the meeting notes for the team; list owners & dates. "
            .chars()
            .cycle()
            .take(size)
            .collect();
        let body = serde_json::json!({ "prompt": prompt }).to_string();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &body, |b, body| {
            b.iter(|| {
                let i = n.fetch_add(1, Ordering::Relaxed);
                let resp = rt.block_on(predictor.handle(Inbound {
                    request_id: "bench",
                    principal: Some(Principal {
                        sub: format!("bench-{i}"),
                        roles: vec!["ai_operator".into()],
                        tenant: None,
                        token_id: "t".into(),
                        issuer: "https://issuer.test/".into(),
                        // Far in the future (2096): these principals never expire mid-test.
                        exp: 4_000_000_000,
                    }),
                    content_type: Some("application/json"),
                    body: body.as_bytes(),
                    source_ip: Some("203.0.113.7"),
                    user_agent: Some("bench"),
                }));
                assert_eq!(resp.status(), 200);
                resp
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
