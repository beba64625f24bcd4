//! Test-only module: its parent declares it `#[cfg(test)] mod tests;`.
//! The sync's rules with fakes (HTTP and the secret), then the real HTTP adapter against a
//! local server for its limits (size, time, redirects, status), and the custom-resource answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;

use super::http::HyperHttp;
use super::*;
use crate::config::JwksSyncConfig;
use crate::config::tests::env;

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn ec_jwk(kid: &str) -> Value {
    let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let pt = kp.public_key().as_ref();
    json!({"kty": "EC", "kid": kid, "alg": "ES256", "use": "sig", "crv": "P-256",
           "x": b64(&pt[1..33]), "y": b64(&pt[33..65])})
}

/// An Entra-ID-shaped RSA key: `kty`, `use`, `kid`, `x5t`, `n`, `e`, `x5c`, `issuer`, no `alg`.
fn entra_jwk(kid: &str) -> Value {
    static PAIR: OnceLock<RsaKeyPair> = OnceLock::new();
    let p = PAIR.get_or_init(|| RsaKeyPair::generate(KeySize::Rsa2048).unwrap());
    let c = RsaPublicKeyComponents::<Vec<u8>>::from(p.public_key());
    json!({"kty": "RSA", "use": "sig", "kid": kid, "x5t": kid, "n": b64(&c.n), "e": b64(&c.e),
           "x5c": ["MIIC..."], "issuer": "https://login.microsoftonline.com/t/v2.0"})
}

fn jwks(keys: &[Value]) -> Vec<u8> {
    json!({ "keys": keys }).to_string().into_bytes()
}

// ---- prepare: what a fetched document must be ----

#[test]
fn prepare_keeps_signing_keys_in_canonical_order() {
    let (a, b) = (ec_jwk("b-key"), ec_jwk("a-key"));
    let mut enc = ec_jwk("enc");
    enc["use"] = json!("enc");
    let mut ops = ec_jwk("wrap");
    ops["key_ops"] = json!(["wrapKey"]);
    let set = prepare(&jwks(&[a.clone(), enc, b.clone(), ops]), None).unwrap();
    assert_eq!(set.kids, ["a-key", "b-key"]);
    assert_eq!(set.dropped.len(), 2, "encryption keys left out, not fatal");
    let stored: Value = serde_json::from_str(&set.canonical).unwrap();
    assert_eq!(stored["keys"][0]["kid"], "a-key");
    // Reordering or extra members in the provider's document do not change the stored set.
    let mut a2 = a.clone();
    a2["x5c"] = json!(["MII"]);
    let again = prepare(&jwks(&[b, a2]), None).unwrap();
    assert_eq!(again.canonical, set.canonical);
}

#[test]
fn prepare_fills_alg_only_where_the_provider_omits_it() {
    let e = entra_jwk("entra-1");
    assert_eq!(
        prepare(&jwks(std::slice::from_ref(&e)), None)
            .unwrap_err()
            .reason(),
        "invalid_jwks"
    );
    let set = prepare(&jwks(std::slice::from_ref(&e)), Some("RS256")).unwrap();
    let stored: Value = serde_json::from_str(&set.canonical).unwrap();
    assert_eq!(stored["keys"][0]["alg"], "RS256");
    assert!(stored["keys"][0].get("x5c").is_none() && stored["keys"][0].get("issuer").is_none());
    // A stated alg is never overridden (the default RS256 does not turn an ES256 key into RS256).
    let ec = prepare(&jwks(&[ec_jwk("ec")]), Some("RS256")).unwrap();
    assert!(ec.canonical.contains("\"ES256\""));
    // A default that does not fit the key type fails the run instead of storing a dead key.
    assert!(prepare(&jwks(&[e]), Some("ES256")).is_err());
}

#[test]
fn prepare_refuses_what_the_authorizer_could_not_use() {
    let good = ec_jwk("good");
    let mut off_curve = ec_jwk("off-curve");
    off_curve["y"] = json!(b64(&[1u8; 32]));
    let mut private = ec_jwk("private");
    private["d"] = json!(b64(&[1u8; 32]));
    let oct = json!({"kty": "oct", "kid": "hs", "alg": "HS256", "k": b64(&[7u8; 32])});
    let mut es512 = ec_jwk("es512");
    es512["alg"] = json!("ES512");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"<html>".to_vec()),
        ("duplicate key", br#"{"keys":[],"keys":[]}"#.to_vec()),
        ("no keys array", br#"{"key":[]}"#.to_vec()),
        ("empty set", jwks(&[])),
        ("only encryption keys", {
            let mut e = ec_jwk("e");
            e["use"] = json!("enc");
            jwks(&[e])
        }),
        ("point off the curve", jwks(&[good.clone(), off_curve])),
        ("private key material", jwks(&[good.clone(), private])),
        ("symmetric key at a URL", jwks(&[good.clone(), oct])),
        ("unsupported alg", jwks(&[good.clone(), es512])),
        ("key not an object", br#"{"keys":[1]}"#.to_vec()),
        ("too many keys", jwks(&vec![good; MAX_KEYS + 1])),
    ];
    for (name, body) in cases {
        let e = prepare(&body, None).unwrap_err();
        assert_eq!(e.reason(), "invalid_jwks", "{name}: {e}");
    }
}

// ---- the run, with fakes ----

type Answers = HashMap<String, Result<Vec<u8>, FetchError>>;

#[derive(Clone, Default)]
struct FakeHttp {
    answers: Arc<Mutex<Answers>>,
    gets: Arc<Mutex<Vec<String>>>,
    puts: Arc<Mutex<Vec<(String, String)>>>,
}

impl FakeHttp {
    fn serve(&self, url: &str, answer: Result<Vec<u8>, FetchError>) {
        self.answers.lock().unwrap().insert(url.to_owned(), answer);
    }
}

#[async_trait::async_trait]
impl Http for FakeHttp {
    async fn get(&self, url: &Url) -> Result<Vec<u8>, FetchError> {
        self.gets.lock().unwrap().push(url.to_string());
        self.answers
            .lock()
            .unwrap()
            .get(url.as_str())
            .cloned()
            .unwrap_or(Err(FetchError::Status {
                url: url.to_string(),
                status: 404,
            }))
    }
    async fn put(&self, url: &Url, body: String) -> Result<(), FetchError> {
        self.puts.lock().unwrap().push((url.to_string(), body));
        Ok(())
    }
}

#[derive(Clone)]
struct FakeStore {
    versions: Arc<Mutex<Vec<(String, String)>>>,
    fail_put: Arc<Mutex<bool>>,
}

impl FakeStore {
    fn new(initial: &str) -> Self {
        Self {
            versions: Arc::new(Mutex::new(vec![("v0".into(), initial.into())])),
            fail_put: Arc::default(),
        }
    }
    fn current(&self) -> (String, String) {
        self.versions.lock().unwrap().last().cloned().unwrap()
    }
    fn count(&self) -> usize {
        self.versions.lock().unwrap().len()
    }
}

#[async_trait::async_trait]
impl JwksStore for FakeStore {
    async fn current(&self) -> Result<StoredJwks, StoreError> {
        let (version_id, doc) = FakeStore::current(self);
        Ok(StoredJwks {
            version_id,
            document: SecretString::from(doc),
        })
    }
    async fn put(&self, document: &str, request_token: &str) -> Result<String, StoreError> {
        if *self.fail_put.lock().unwrap() {
            return Err(StoreError("AccessDeniedException".into()));
        }
        assert!((32..=64).contains(&request_token.len()));
        let mut v = self.versions.lock().unwrap();
        let id = format!("v{}", v.len());
        v.push((id.clone(), document.to_owned()));
        Ok(id)
    }
}

const ISSUER: &str = "https://login.example.com/tenant/v2.0";
const DISCOVERY: &str = "https://login.example.com/tenant/v2.0/.well-known/openid-configuration";
const KEYS: &str = "https://login.example.com/tenant/discovery/v2.0/keys";

fn syncer(extra: &[(&str, &str)]) -> (Syncer<FakeHttp, FakeStore>, FakeHttp, FakeStore) {
    let mut vars = vec![
        ("GATEHOUSE_JWKS_SECRET_ID", "JwksSecret"),
        ("GATEHOUSE_ISSUER", ISSUER),
        ("GATEHOUSE_OIDC_DISCOVERY", "true"),
    ];
    vars.extend_from_slice(extra);
    let config = JwksSyncConfig::from_env(&env(&vars)).unwrap();
    let (http, store) = (FakeHttp::default(), FakeStore::new(r#"{"keys":[]}"#));
    (
        Syncer {
            config,
            http: http.clone(),
            store: store.clone(),
        },
        http,
        store,
    )
}

fn discovery(issuer: &str, jwks_uri: &str) -> Result<Vec<u8>, FetchError> {
    Ok(
        json!({"issuer": issuer, "jwks_uri": jwks_uri, "token_endpoint": "x"})
            .to_string()
            .into_bytes(),
    )
}

#[tokio::test]
async fn discovery_then_put_only_when_the_set_changes() {
    let (s, http, store) = syncer(&[]);
    let (k1, k2) = (ec_jwk("k1"), ec_jwk("k2"));
    http.serve(DISCOVERY, discovery(ISSUER, KEYS));
    http.serve(KEYS, Ok(jwks(std::slice::from_ref(&k1))));
    let first = s.run().await.unwrap();
    assert!(
        matches!(&first, Outcome::Updated { kids, version_id } if kids == &["k1"] && version_id == "v1")
    );
    assert_eq!(
        s.run().await.unwrap(),
        Outcome::Unchanged {
            kids: vec!["k1".into()]
        }
    );
    assert_eq!(store.count(), 2, "no put when nothing changed");
    // The provider rotates: the new set becomes AWSCURRENT (the old one AWSPREVIOUS).
    http.serve(KEYS, Ok(jwks(&[k2.clone(), k1.clone()])));
    assert!(matches!(s.run().await.unwrap(), Outcome::Updated { .. }));
    assert_eq!(store.count(), 3);
    assert_eq!(
        *http.gets.lock().unwrap(),
        [DISCOVERY, KEYS, DISCOVERY, KEYS, DISCOVERY, KEYS]
    );
    // The stored set is what the authorizer's ring loads, with every kid.
    let (ring, report) = KeyRing::from_jwks(&store.current().1, None).unwrap();
    assert_eq!((ring.kids(), report.warnings()), (vec!["k1", "k2"], 0));
}

#[tokio::test]
async fn every_failure_leaves_the_secret_untouched() {
    let good = jwks(&[ec_jwk("k1")]);
    let timeout = || FetchError::Timeout { url: KEYS.into() };
    type Setup = Box<dyn Fn(&FakeHttp)>;
    let cases: Vec<(&str, Setup, &str)> = vec![
        (
            "discovery 500",
            Box::new(|h: &FakeHttp| {
                h.serve(
                    DISCOVERY,
                    Err(FetchError::Status {
                        url: DISCOVERY.into(),
                        status: 500,
                    }),
                )
            }),
            "http_status",
        ),
        (
            "issuer mismatch",
            Box::new(|h: &FakeHttp| {
                h.serve(
                    DISCOVERY,
                    discovery("https://login.example.com/other/v2.0", KEYS),
                )
            }),
            "invalid_discovery",
        ),
        (
            "issuer with a trailing slash",
            Box::new(|h: &FakeHttp| h.serve(DISCOVERY, discovery(&format!("{ISSUER}/"), KEYS))),
            "invalid_discovery",
        ),
        (
            "no jwks_uri",
            Box::new(|h: &FakeHttp| {
                h.serve(
                    DISCOVERY,
                    Ok(json!({"issuer": ISSUER}).to_string().into_bytes()),
                )
            }),
            "invalid_discovery",
        ),
        (
            "jwks_uri on another host",
            Box::new(|h: &FakeHttp| {
                h.serve(
                    DISCOVERY,
                    discovery(ISSUER, "https://keys.evil.example/jwks"),
                )
            }),
            "url_refused",
        ),
        (
            "jwks_uri over http",
            Box::new(|h: &FakeHttp| {
                h.serve(
                    DISCOVERY,
                    discovery(ISSUER, "http://login.example.com/keys"),
                )
            }),
            "url_refused",
        ),
        (
            "jwks timeout",
            Box::new(move |h: &FakeHttp| {
                h.serve(DISCOVERY, discovery(ISSUER, KEYS));
                h.serve(KEYS, Err(timeout()))
            }),
            "timeout",
        ),
        (
            "jwks malformed",
            Box::new(|h: &FakeHttp| {
                h.serve(DISCOVERY, discovery(ISSUER, KEYS));
                h.serve(KEYS, Ok(b"{\"keys\": [".to_vec()))
            }),
            "invalid_jwks",
        ),
        (
            "jwks oversized",
            Box::new(|h: &FakeHttp| {
                h.serve(DISCOVERY, discovery(ISSUER, KEYS));
                h.serve(
                    KEYS,
                    Err(FetchError::TooLarge {
                        url: KEYS.into(),
                        limit: 65536,
                    }),
                )
            }),
            "too_large",
        ),
        (
            "jwks redirected away",
            Box::new(|h: &FakeHttp| {
                h.serve(DISCOVERY, discovery(ISSUER, KEYS));
                h.serve(
                    KEYS,
                    Err(FetchError::Redirect {
                        url: KEYS.into(),
                        why: "to another host".into(),
                    }),
                )
            }),
            "redirect_refused",
        ),
    ];
    for (name, setup, reason) in cases {
        let (s, http, store) = syncer(&[]);
        setup(&http);
        let before = store.current();
        let report = s.run_and_report().await;
        assert_eq!(
            (report.outcome, report.reason),
            ("failed", Some(reason)),
            "{name}: {report}"
        );
        assert_eq!(store.current(), before, "{name}: secret touched");
        assert_eq!(store.count(), 1, "{name}");
    }
    // A put that fails is reported as such (the SDK call is the last step: nothing half done).
    let (s, http, store) = syncer(&[]);
    http.serve(DISCOVERY, discovery(ISSUER, KEYS));
    http.serve(KEYS, Ok(good));
    *store.fail_put.lock().unwrap() = true;
    assert_eq!(s.run().await.unwrap_err().reason(), "secret_write_failed");
}

#[tokio::test]
async fn explicit_url_allow_list_and_manual_mode() {
    // An explicit JWKS URL on another host needs the allow-list.
    let keys = "https://www.googleapis.com/oauth2/v3/certs";
    let (s, http, _) = syncer(&[("GATEHOUSE_JWKS_URL", keys)]);
    http.serve(keys, Ok(jwks(&[ec_jwk("g1")])));
    assert_eq!(s.run().await.unwrap_err().reason(), "url_refused");
    assert!(
        http.gets.lock().unwrap().is_empty(),
        "refused before any fetch"
    );
    let (s, http, _) = syncer(&[
        ("GATEHOUSE_JWKS_URL", keys),
        ("GATEHOUSE_JWKS_ALLOWED_HOSTS", "www.googleapis.com"),
    ]);
    http.serve(keys, Ok(jwks(&[ec_jwk("g1")])));
    assert!(matches!(s.run().await.unwrap(), Outcome::Updated { .. }));
    // No issuer URL configured: today's manual JWKS, nothing fetched or written.
    let config = JwksSyncConfig::from_env(&env(&[("GATEHOUSE_JWKS_SECRET_ID", "s")])).unwrap();
    let (http, store) = (FakeHttp::default(), FakeStore::new("{\"keys\":[]}"));
    let s = Syncer {
        config,
        http: http.clone(),
        store: store.clone(),
    };
    assert_eq!(s.run().await.unwrap(), Outcome::Manual);
    assert!(http.gets.lock().unwrap().is_empty() && store.count() == 1);
}

#[test]
fn request_tokens_are_idempotent_per_set_and_predecessor() {
    let a = request_token("{\"keys\":[1]}", "v1");
    assert_eq!(a.len(), 64);
    assert_eq!(a, request_token("{\"keys\":[1]}", "v1"));
    assert_ne!(a, request_token("{\"keys\":[1]}", "v2"));
    assert_ne!(a, request_token("{\"keys\":[2]}", "v1"));
}

// ---- the custom resource ----

#[tokio::test]
async fn custom_resource_runs_on_create_and_answers_cloudformation() {
    let (s, http, store) = syncer(&[]);
    http.serve(DISCOVERY, discovery(ISSUER, KEYS));
    http.serve(KEYS, Ok(jwks(&[ec_jwk("k1")])));
    let event = |t: &str| {
        json!({"RequestType": t, "ResponseURL": "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x?X-Amz-Signature=abc",
               "StackId": "arn:aws:cloudformation:us-east-1:1:stack/s/1", "RequestId": "r1",
               "ResourceType": "Custom::JwksSync", "LogicalResourceId": "JwksInitialSync",
               "ResourceProperties": {"ServiceToken": "arn"}})
    };
    let out = handle_event(&s, &event("Create")).await;
    assert_eq!(out["Status"], "SUCCESS");
    assert_eq!(out["PhysicalResourceId"], cfn::PHYSICAL_ID);
    assert_eq!(out["Data"]["outcome"], "updated");
    assert_eq!(store.count(), 2);
    let puts = http.puts.lock().unwrap().clone();
    assert_eq!(puts.len(), 1);
    let sent: Value = serde_json::from_str(&puts[0].1).unwrap();
    assert_eq!(
        (sent["RequestId"].as_str(), sent["Status"].as_str()),
        (Some("r1"), Some("SUCCESS"))
    );

    // Delete never syncs and always succeeds. A failing sync fails a Create, with its reason; an
    // Update reports it in Data but succeeds (failing it would wedge the stack's rollback).
    let out = handle_event(&s, &event("Delete")).await;
    assert_eq!(
        (out["Status"].as_str(), store.count()),
        (Some("SUCCESS"), 2)
    );
    http.serve(
        KEYS,
        Err(FetchError::Status {
            url: KEYS.into(),
            status: 500,
        }),
    );
    let out = handle_event(&s, &event("Create")).await;
    assert_eq!(out["Status"], "FAILED");
    assert!(
        out["Reason"].as_str().unwrap().contains("http_status"),
        "{out}"
    );
    let out = handle_event(&s, &event("Update")).await;
    assert_eq!(out["Status"], "SUCCESS");
    assert_eq!(out["Data"]["reason"], "http_status");
    assert_eq!(store.count(), 2, "failed syncs changed nothing");

    // Only CloudFormation's response URL is answered.
    let mut evil = event("Create");
    evil["ResponseURL"] = json!("https://attacker.example/collect");
    let out = handle_event(&s, &evil).await;
    assert_eq!(out["reason"], "bad_event");
    assert_eq!(http.puts.lock().unwrap().len(), 4);
    // A scheduled event (anything else) just runs the sync.
    let out = handle_event(
        &s,
        &json!({"source": "aws.events", "detail-type": "Scheduled Event"}),
    )
    .await;
    assert_eq!(out["outcome"], "failed");
}

// ---- the real HTTP adapter against a local server ----

async fn local_server(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn http_adapter_enforces_size_time_redirect_and_status() {
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::get;

    let body = String::from_utf8(jwks(&[ec_jwk("k1")])).unwrap();
    let small = body.clone();
    let other =
        local_server(axum::Router::new().route("/jwks", get(move || async move { small }))).await;
    let ok = body.clone();
    let app = axum::Router::new()
        .route("/jwks", get(move || async move { ok }))
        .route("/big", get(|| async { "x".repeat(70_000) }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/500",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/loop",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/loop")]) }),
        )
        .route(
            "/same-host",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/jwks")]) }),
        )
        .route(
            "/away",
            get(move || async move {
                let mut h = HeaderMap::new();
                h.insert(
                    header::LOCATION,
                    format!("http://127.0.0.2:{}/jwks", other.port())
                        .parse()
                        .unwrap(),
                );
                (StatusCode::FOUND, h).into_response()
            }),
        );
    let addr = local_server(app).await;
    let http = HyperHttp::new(Duration::from_millis(800), 65_536).unwrap();
    let url = |p: &str| Url::parse(&format!("http://{addr}{p}")).unwrap();
    assert_eq!(http.get(&url("/jwks")).await.unwrap(), body.as_bytes());
    assert_eq!(http.get(&url("/same-host")).await.unwrap(), body.as_bytes());
    let err = |p: &'static str| {
        let http = &http;
        let u = url(p);
        async move { http.get(&u).await.unwrap_err() }
    };
    assert!(matches!(
        err("/big").await,
        FetchError::TooLarge { limit: 65_536, .. }
    ));
    let chunked = chunked_server(200_000).await;
    let e = http
        .get(&Url::parse(&format!("http://{chunked}/jwks")).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::TooLarge { .. }), "{e:?}");
    assert!(matches!(err("/slow").await, FetchError::Timeout { .. }));
    assert!(matches!(
        err("/500").await,
        FetchError::Status { status: 500, .. }
    ));
    match err("/away").await {
        FetchError::Redirect { why, .. } => assert!(why.contains("another host"), "{why}"),
        other => panic!("redirect to another host followed or misreported: {other:?}"),
    }
    assert!(matches!(
        err("/missing").await,
        FetchError::Status { status: 404, .. }
    ));
    match err("/loop").await {
        FetchError::Redirect { why, .. } => assert!(why.contains("more than 3"), "{why}"),
        other => panic!("a redirect loop: {other:?}"),
    }
}

/// A server that answers every connection with a chunked (no Content-Length) body of `total`
/// bytes, so only the adapter's running count can stop it.
async fn chunked_server(total: usize) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 1000, "y".repeat(1000));
                for _ in 0..total / 1000 {
                    if sock.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                }
                let _ = sock.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    addr
}
