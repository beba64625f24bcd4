//! Gatehouse against the Python pipeline it replaces (`devtools/bench/seed_pipeline.py`: the
//! checklist's python-jose HS256 verify + role check, pydantic model, regex sanitizer, 3-substring
//! detector), on the seed's own 1 KiB prompt and an HS256 token:
//! - `sanitize_screen_1KiB`: our sanitizer + prompt screen (target ≤ 0.5× the seed's WHOLE pipeline);
//! - `authorizer_and_predict_1KiB`: the authorizer decision (token verify + Cedar route check)
//!   plus the whole predict pipeline with in-memory fakes for the rate counter and the audit sink
//!   (target ≤ 1.0× the seed's whole pipeline).
//!
//! `cargo xtask bench` runs this, runs the seed script in the same session and prints the ratios.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine;
use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse::auth::{CacheConfig, JwksSource, JwksVersions, KeyCache, SourceError, TokenPolicy};
use gatehouse::authorizer::{AuthRequest, Gate};
use gatehouse::clock::SystemClock;
use gatehouse::config::{AuthFailureConfig, Env, PredictConfig};
use gatehouse::policy::PolicyStore;
use gatehouse::predict::Inbound;
use gatehouse::ratelimit::guard::FailureGuard;
use gatehouse::ratelimit::{MemoryCounter, RateLimiter};
use gatehouse::screen::{ScreenConfig, Screener};

const SECRET: &[u8] = b"bench-hmac-key-of-at-least-32-bytes!!";
const ISS: &str = "https://issuer.bench/";
const AUD: &str = "gatehouse-api";

/// The seed script's prompt, byte for byte.
pub fn seed_prompt() -> String {
    "Summarise the following meeting notes and list the action items with owners. "
        .repeat(13)
        .chars()
        .take(1024)
        .collect()
}

struct StaticJwks;

#[async_trait::async_trait]
impl JwksSource for StaticJwks {
    async fn fetch(&self) -> Result<JwksVersions, SourceError> {
        let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET);
        Ok(JwksVersions {
            current: format!(
                r#"{{"keys":[{{"kty":"oct","kid":"k1","alg":"HS256","use":"sig","k":"{k}"}}]}}"#
            )
            .into(),
            previous: None,
        })
    }
}

fn token(sub: &str) -> String {
    let now = gatehouse::clock::unix_secs(SystemTime::now());
    let claims = serde_json::json!({"iss": ISS, "aud": AUD, "sub": sub, "roles": ["ai_operator"],
        "iat": now, "exp": now + 3600, "jti": format!("jti-{sub}")});
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k1".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let prompt = seed_prompt();
    let screener = Screener::new(ScreenConfig::default()).unwrap();
    let gate = rt.block_on(async {
        Gate {
            keys: KeyCache::load(
                StaticJwks,
                CacheConfig {
                    refresh_ttl: Duration::from_secs(3600),
                    max_staleness: Duration::from_secs(7200),
                    unknown_kid_min_interval: Duration::from_secs(30),
                },
                Arc::new(SystemClock),
            )
            .await
            .unwrap(),
            policy: PolicyStore::embedded().unwrap(),
            token_policy: TokenPolicy::new(ISS, AUD),
            failures: FailureGuard::new(
                RateLimiter::new(Box::new(MemoryCounter::default())),
                AuthFailureConfig {
                    limit: 20,
                    window: Duration::from_secs(300),
                },
            ),
            audit: gatehouse::setup::in_memory_audit("authorizer", SystemTime::now()).unwrap(),
            clock: Arc::new(SystemClock),
        }
    });
    let predictor =
        gatehouse::setup::in_memory_predictor(PredictConfig::from_env(&Env(|_| None)).unwrap())
            .unwrap();
    let body = serde_json::json!({ "prompt": prompt, "temperature": 0.2 }).to_string();
    // A few hundred subjects, each with its own token (the seed verifies one fixed token; a
    // varying subject keeps our in-memory rate counter under its limit, like real traffic).
    let tokens: Vec<String> = (0..512)
        .map(|i| format!("Bearer {}", token(&format!("u{i}"))))
        .collect();
    let n = AtomicU64::new(0);

    let mut group = c.benchmark_group("seed_compare");
    group.bench_function("sanitize_screen_1KiB", |b| {
        b.iter(|| screener.screen_text(std::hint::black_box(&prompt)))
    });
    group.bench_function("authorizer_and_predict_1KiB", |b| {
        b.iter(|| {
            let i = n.fetch_add(1, Ordering::Relaxed);
            let auth = &tokens[(i % 512) as usize];
            rt.block_on(async {
                let d = gate
                    .decide(&AuthRequest {
                        authorization: Some(auth),
                        route_key: "POST /v1/predict",
                        request_id: "bench",
                        source_ip: Some("203.0.113.7"),
                        user_agent: Some("bench"),
                    })
                    .await;
                assert!(d.allowed, "{}", d.reason);
                let mut principal = d.principal.unwrap();
                // Each call its own subject, so the per-subject limit never trips.
                principal.sub = format!("{}-{i}", principal.sub);
                let resp = predictor
                    .handle(Inbound {
                        request_id: "bench",
                        principal: Some(principal),
                        content_type: Some("application/json"),
                        body: body.as_bytes(),
                        source_ip: Some("203.0.113.7"),
                        user_agent: Some("bench"),
                    })
                    .await;
                assert_eq!(resp.status(), 200);
                resp
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
