//! End to end through the local API Gateway, cargo lambda watch and the emulator, over HTTP.
//! Run by `cargo xtask test`, which starts the stack and exports GATEHOUSE_GATEWAY_URL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gatehouse_dev::devkeys::{DevKey, TokenSpec};
use gatehouse_tests::{dev_token, stack_var};
use serde_json::Value;

async fn post(
    token: Option<&str>,
    path: &str,
    body: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let url = format!("{}{path}", stack_var("GATEHOUSE_GATEWAY_URL"));
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

#[tokio::test]
async fn good_token_gets_the_echo_model_answer() {
    let token = dev_token("e2e-alice", &["ai_operator"], None, 300);
    let (status, headers, body) = post(
        Some(&token),
        "/v1/predict",
        r#"{"prompt":"Hello from e2e"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["model"], "echo");
    assert_eq!(v["output"], "[gatehouse local echo model] Hello from e2e");
    assert_eq!(
        v["request_id"].as_str().unwrap(),
        headers["apigw-requestid"].to_str().unwrap()
    );
}

#[tokio::test]
async fn missing_token_is_401() {
    let (status, _, body) = post(None, "/v1/predict", r#"{"prompt":"hi"}"#).await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn bad_signature_is_403() {
    // Same kid, issuer and audience as the dev key, but signed by a key the JWKS does not hold.
    let real = gatehouse_dev::devkeys::ensure_dev_key().unwrap();
    let forger = DevKey {
        kid: real.kid.clone(),
        ..DevKey::generate("x").unwrap()
    };
    let (issuer, audience) = gatehouse_dev::oidc::dev_token_claims().unwrap();
    let spec = TokenSpec::new("mallory", &["ai_operator"], None, 300, issuer, audience);
    let forged = gatehouse_dev::devkeys::mint(&forger, &spec).unwrap();
    let (status, _, body) = post(Some(&forged), "/v1/predict", r#"{"prompt":"hi"}"#).await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test]
async fn role_without_the_route_is_403_and_unknown_route_404() {
    let token = dev_token("e2e-auditor", &["auditor"], None, 300);
    let (status, _, _) = post(Some(&token), "/v1/predict", r#"{"prompt":"hi"}"#).await;
    assert_eq!(status, 403);
    let token = dev_token("e2e-alice", &["ai_operator"], None, 300);
    let (status, _, _) = post(Some(&token), "/v1/other", r#"{"prompt":"hi"}"#).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn invalid_body_is_a_problem_json_400_from_predict() {
    let token = dev_token("e2e-alice", &["ai_operator"], None, 300);
    let (status, headers, body) = post(
        Some(&token),
        "/v1/predict",
        r#"{"prompt":"hi","admin":true}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], 400);
    assert!(v["detail"].as_str().unwrap().contains("admin"), "{body}");
}

/// A token signed by a key the JWKS does not hold, under the dev key's kid (fresh each call, so
/// no gateway-cache hit: every one reaches the authorizer and fails verification).
fn forged(sub: &str) -> String {
    let real = gatehouse_dev::devkeys::ensure_dev_key().unwrap();
    let forger = DevKey {
        kid: real.kid.clone(),
        ..DevKey::generate("x").unwrap()
    };
    let (issuer, audience) = gatehouse_dev::oidc::dev_token_claims().unwrap();
    let spec = TokenSpec::new(sub, &["ai_operator"], None, 300, issuer, audience);
    gatehouse_dev::devkeys::mint(&forger, &spec).unwrap()
}

#[tokio::test]
async fn failed_verifications_from_an_address_never_lock_out_a_valid_client_behind_it() {
    // Client A and client B share one address (127.0.0.1), as behind a carrier NAT. A fails
    // verification past the per-IP limit (the template default, 20 per 5 minutes) ...
    let left = gatehouse_tests::ddb::secs_left_in_window(300);
    if left < 40 {
        tokio::time::sleep(std::time::Duration::from_secs(left + 1)).await;
    }
    let started = std::time::SystemTime::now();
    let url = format!("{}/v1/predict", stack_var("GATEHOUSE_GATEWAY_URL"));
    let (a, b) = (reqwest::Client::new(), reqwest::Client::new());
    let send = |client: &reqwest::Client, token: String| {
        client
            .post(&url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(r#"{"prompt":"hi"}"#)
            .send()
    };
    for i in 0..25 {
        let r = send(&a, forged(&format!("stuffer-{i}"))).await.unwrap();
        assert_eq!(r.status(), 403);
    }
    // ... and B's valid token is still allowed, from the same address.
    let good = dev_token("e2e-behind-nat", &["ai_operator"], None, 300);
    let r = send(&b, good).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // The block was in force around B's request: A's next failure is marked with it.
    let r = send(&a, forged("stuffer-last")).await.unwrap();
    assert_eq!(r.status(), 403);
    let rid = r.headers()["apigw-requestid"].to_str().unwrap().to_owned();
    let sdk = gatehouse_dev::emulator::sdk_config(&stack_var("GATEHOUSE_EMULATOR_URL")).await;
    let denied = gatehouse_dev::audit::query(
        &sdk,
        "AuditTable",
        &gatehouse_dev::audit::Filters {
            decision: Some(gatehouse::audit::Decision::Denied),
            ..Default::default()
        },
        started - std::time::Duration::from_secs(5),
        std::time::SystemTime::now() + std::time::Duration::from_secs(5),
        4,
    )
    .await
    .unwrap();
    let field = |r: &gatehouse::audit::Fields, k: &str| match r.get(k) {
        Some(gatehouse::audit::Field::S(s)) => s.clone(),
        _ => String::new(),
    };
    let last = denied
        .iter()
        .find(|r| field(r, "request_id") == rid)
        .expect("the denial is audited");
    assert_eq!(field(last, "reason"), "bad_signature");
    assert!(
        field(last, "detail").contains("over its failed-verification limit"),
        "{last:?}"
    );
}

#[tokio::test]
async fn a_cached_allow_does_not_outlive_the_token() {
    // The gateway caches the allow for the template's TTL (300 s); the token expires in 3 s.
    let token = dev_token("e2e-short-lived", &["ai_operator"], None, 3);
    let (status, _, body) = post(Some(&token), "/v1/predict", r#"{"prompt":"hi"}"#).await;
    assert_eq!(status, 200, "{body}");
    // Past exp and the test stack's 1 s leeway: the cached allow still reaches predict, which
    // refuses it (a new authorizer call would have been a 403 from the gateway instead).
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let (status, headers, body) = post(Some(&token), "/v1/predict", r#"{"prompt":"hi"}"#).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["title"], "Token expired");
}
