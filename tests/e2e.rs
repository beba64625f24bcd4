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
