//! The Bedrock adapter against a local HTTP endpoint that speaks the Converse JSON wire format
//! (the AWS emulator has no Bedrock runtime). Requests go through the real SDK: SigV4, routing
//! (`POST /model/{id}/converse`), serialization and error parsing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse::bedrock::BedrockModel;
use gatehouse::model::{ModelBackend, ModelError, ModelRequest};
use serde_json::{Value, json};

async fn converse(
    Path(model): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    assert!(
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256")),
        "requests are SigV4-signed"
    );
    let prompt = body["messages"][0]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    match model.as_str() {
        "ok-model" => {
            assert_eq!(body["messages"][0]["role"], "user");
            assert_eq!(body["inferenceConfig"]["maxTokens"], 64);
            Json(json!({
                "output": {"message": {"role": "assistant", "content": [{"text": format!("bedrock says: {prompt}")}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": 7, "outputTokens": 5, "totalTokens": 12},
                "metrics": {"latencyMs": 3}
            }))
            .into_response()
        }
        "throttled-model" => (
            StatusCode::TOO_MANY_REQUESTS,
            [("x-amzn-errortype", "ThrottlingException")],
            Json(json!({"message": "Too many requests"})),
        )
            .into_response(),
        "slow-model" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            StatusCode::OK.into_response()
        }
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"message": "boom"})),
        )
            .into_response(),
    }
}

async fn backend(timeout: Duration) -> BedrockModel {
    let app = axum::Router::new().route("/model/{model}/converse", axum::routing::post(converse));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_bedrockruntime::config::Credentials::new(
            "k", "s", None, None, "test",
        ))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(timeout)
                .build(),
        )
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let models: HashMap<String, String> = [
        ("ok", "ok-model"),
        ("throttled", "throttled-model"),
        ("slow", "slow-model"),
        ("broken", "broken-model"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    BedrockModel::new(aws_sdk_bedrockruntime::Client::new(&sdk), models)
}

fn req(model: &str) -> ModelRequest<'_> {
    ModelRequest {
        model,
        prompt: "hello there",
        temperature: 0.5,
        max_tokens: 64,
    }
}

#[tokio::test]
async fn converse_answer_and_usage_are_mapped() {
    let b = backend(Duration::from_secs(5)).await;
    let out = b.complete(&req("ok")).await.unwrap();
    assert_eq!(out.text, "bedrock says: hello there");
    assert_eq!((out.usage.input_tokens, out.usage.output_tokens), (7, 5));
}

#[tokio::test]
async fn service_errors_and_unmapped_models_are_backend_errors_and_slowness_a_timeout() {
    let b = backend(Duration::from_millis(300)).await;
    assert!(
        matches!(b.complete(&req("throttled")).await, Err(ModelError::Backend(e)) if e.contains("Throttling"))
    );
    assert!(matches!(
        b.complete(&req("broken")).await,
        Err(ModelError::Backend(_))
    ));
    assert!(
        matches!(b.complete(&req("not-configured")).await, Err(ModelError::Backend(e)) if e.contains("no Bedrock model"))
    );
    assert!(matches!(
        b.complete(&req("slow")).await,
        Err(ModelError::Timeout)
    ));
}
