#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The full authorizer decision — `auth::verify` (header parse + key selection + signature +
//! strict claims) then the Cedar route check — against a bare `jsonwebtoken::decode` of the same
//! token with a DecodingKey prepared in advance.
//! In-process, no I/O. After the criterion run, an interleaved A/B loop prints the ratio table.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{
    self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::Criterion;
use gatehouse::auth::{KeyRing, TokenPolicy, verify};
use gatehouse::policy::PolicyStore;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

const ISS: &str = "https://issuer.example";
const AUD: &str = "gatehouse-api";

#[allow(dead_code)]
#[derive(serde::Deserialize)]
struct BareClaims {
    iss: String,
    aud: String,
    sub: String,
    exp: u64,
    iat: u64,
    roles: Vec<String>,
    tenant: Option<String>,
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

struct Case {
    name: &'static str,
    jwk: Value,
    token: String,
    bare_key: DecodingKey,
    alg: Algorithm,
}

fn sign_token(alg: &str, kid: &str, claims: &Value, signer: &dyn Fn(&[u8]) -> Vec<u8>) -> String {
    let header = json!({"alg": alg, "kid": kid, "typ": "JWT"}).to_string();
    let input = format!(
        "{}.{}",
        b64(header.as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let s = signer(input.as_bytes());
    format!("{input}.{}", b64(&s))
}

fn cases(now: u64) -> Vec<Case> {
    let claims = json!({"iss": ISS, "aud": AUD, "sub": "user-1", "roles": ["ai_operator"],
                        "tenant": "t1", "iat": now - 10, "exp": now + 600});
    let rng = SystemRandom::new();
    let mut out = Vec::new();

    let mut secret = vec![0u8; 32];
    rng.fill(&mut secret).unwrap();
    let hk = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
    out.push(Case {
        name: "HS256",
        jwk: json!({"kty":"oct","kid":"hs","alg":"HS256","k":b64(&secret)}),
        token: sign_token("HS256", "hs", &claims, &|m| {
            aws_lc_rs::hmac::sign(&hk, m).as_ref().to_vec()
        }),
        bare_key: DecodingKey::from_secret(&secret),
        alg: Algorithm::HS256,
    });

    let ec = EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let pt = ec.public_key().as_ref();
    let (x, y) = (b64(&pt[1..33]), b64(&pt[33..]));
    out.push(Case {
        name: "ES256",
        jwk: json!({"kty":"EC","kid":"ec","alg":"ES256","crv":"P-256","x":x,"y":y}),
        token: sign_token("ES256", "ec", &claims, &|m| {
            ec.sign(&rng, m).unwrap().as_ref().to_vec()
        }),
        bare_key: DecodingKey::from_ec_components(&x, &y).unwrap(),
        alg: Algorithm::ES256,
    });

    let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let c = RsaPublicKeyComponents::<Vec<u8>>::from(rsa.public_key());
    let (n, e) = (b64(&c.n), b64(&c.e));
    out.push(Case {
        name: "RS256",
        jwk: json!({"kty":"RSA","kid":"rsa","alg":"RS256","n":n,"e":e}),
        token: sign_token("RS256", "rsa", &claims, &|m| {
            let mut s = vec![0; rsa.public_modulus_len()];
            rsa.sign(&sig::RSA_PKCS1_SHA256, &rng, m, &mut s).unwrap();
            s
        }),
        bare_key: DecodingKey::from_rsa_components(&n, &e).unwrap(),
        alg: Algorithm::RS256,
    });

    let ed = Ed25519KeyPair::generate().unwrap();
    let x = b64(ed.public_key().as_ref());
    out.push(Case {
        name: "EdDSA",
        jwk: json!({"kty":"OKP","kid":"ed","alg":"EdDSA","crv":"Ed25519","x":x}),
        token: sign_token("EdDSA", "ed", &claims, &|m| ed.sign(m).as_ref().to_vec()),
        bare_key: DecodingKey::from_ed_components(&x).unwrap(),
        alg: Algorithm::EdDSA,
    });
    out
}

fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = 30;
    v.validate_nbf = true;
    v.set_issuer(&[ISS]);
    v.set_audience(&[AUD]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    v
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn main() {
    let now = SystemTime::now();
    let now_secs = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let cases = cases(now_secs);
    let jwks = json!({"keys": cases.iter().map(|c| c.jwk.clone()).collect::<Vec<_>>()}).to_string();
    let (ring, _) = KeyRing::from_jwks(&jwks, None).unwrap();
    let policy = TokenPolicy::new(ISS, AUD);
    let store = PolicyStore::embedded().unwrap();
    let decide = |header: &str| {
        let principal = verify(&ring, &policy, header, now).unwrap().principal;
        let d = store.authorize_route(&principal, "POST /v1/predict");
        assert!(d.allowed);
        d
    };

    // Both paths must accept every token before anything is timed.
    for c in &cases {
        let header = format!("Bearer {}", c.token);
        verify(&ring, &policy, &header, now).unwrap();
        jsonwebtoken::decode::<BareClaims>(&c.token, &c.bare_key, &validation(c.alg)).unwrap();
    }

    let mut crit = Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    for c in &cases {
        let header = format!("Bearer {}", c.token);
        let val = validation(c.alg);
        let mut g = crit.benchmark_group(c.name);
        g.bench_function("decision", |b| b.iter(|| decide(black_box(&header))));
        g.bench_function("verify_only", |b| {
            b.iter(|| verify(&ring, &policy, black_box(&header), now).unwrap())
        });
        g.bench_function("bare_decode", |b| {
            b.iter(|| {
                jsonwebtoken::decode::<BareClaims>(black_box(&c.token), &c.bare_key, &val).unwrap()
            })
        });
        g.finish();
    }
    // The Cedar route check on a memo miss (a new principal each time): what the first request
    // of each (sub, roles, tenant, route) costs on top of the verify.
    let miss = std::sync::atomic::AtomicU64::new(0);
    crit.bench_function("cedar_route_cold", |b| {
        b.iter(|| {
            let i = miss.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = gatehouse::auth::Principal {
                sub: format!("user-{i}"),
                roles: vec!["ai_operator".into()],
                tenant: None,
                token_id: "t".into(),
                issuer: "https://issuer.test/".into(),
                // Far in the future (2096): these principals never expire mid-test.
                exp: 4_000_000_000,
            };
            assert!(store.authorize_route(&p, "POST /v1/predict").allowed);
        })
    });
    crit.final_summary();

    // Interleaved A/B rounds (alternating which side goes first), so load from other processes on
    // the shared machine hits both sides alike. Min is the least noise-sensitive estimate of the
    // intrinsic cost; the median is shown too.
    println!(
        "\n| alg | decision µs (min / median) | bare decode µs (min / median) | ratio (min) | ratio (median) |"
    );
    println!("|---|---|---|---|---|");
    for c in &cases {
        let header = format!("Bearer {}", c.token);
        let val = validation(c.alg);
        let iters = if c.alg == Algorithm::HS256 { 1000 } else { 100 };
        let (mut full, mut bare) = (Vec::new(), Vec::new());
        let run_full = |out: &mut Vec<f64>| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(decide(black_box(&header)));
            }
            out.push(t.elapsed().as_secs_f64() * 1e6 / iters as f64);
        };
        let run_bare = |out: &mut Vec<f64>| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(
                    jsonwebtoken::decode::<BareClaims>(black_box(&c.token), &c.bare_key, &val)
                        .unwrap(),
                );
            }
            out.push(t.elapsed().as_secs_f64() * 1e6 / iters as f64);
        };
        for round in 0..60 {
            if round % 2 == 0 {
                run_full(&mut full);
                run_bare(&mut bare);
            } else {
                run_bare(&mut bare);
                run_full(&mut full);
            }
        }
        let (fm, bm) = (min(&full), min(&bare));
        let (fd, bd) = (median(full), median(bare));
        println!(
            "| {} | {fm:.2} / {fd:.2} | {bm:.2} / {bd:.2} | {:.2}x | {:.2}x |",
            c.name,
            fm / bm,
            fd / bd
        );
    }
}
