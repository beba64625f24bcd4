//! The local gateway against a stand-in Lambda invoke API: identity sources, per-route caching,
//! context hand-off, and API Gateway's answers for missing identity, deny, errors, unknown routes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use gatehouse_dev::gateway::{self, GatewayConfig};
use gatehouse_dev::template::{AuthorizerDef, RouteDef};
use serde_json::{Value, json};

#[derive(Default)]
struct Calls {
    authorizer: AtomicU64,
    function: AtomicU64,
}

async fn invoke(
    State(calls): State<Arc<Calls>>,
    Path(name): Path<String>,
    Json(event): Json<Value>,
) -> Response {
    if name == "authorizer" {
        calls.authorizer.fetch_add(1, Ordering::SeqCst);
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["type"], "REQUEST");
        let auth = event["headers"]["authorization"].as_str().unwrap_or("");
        assert_eq!(event["identitySource"][1], event["routeKey"]);
        // The identity source is the header exactly as the event carries it.
        assert_eq!(
            event["identitySource"][0],
            event["headers"]["authorization"]
        );
        return match auth {
            "Bearer good" => Json(
                json!({"isAuthorized": true, "context": {"sub": "alice", "roles": "ai_operator"}}),
            )
            .into_response(),
            "Bearer boom" => (
                [("x-amz-function-error", "Unhandled")],
                Json(json!({"errorType": "Panic", "errorMessage": "secret internals"})),
            )
                .into_response(),
            _ => Json(json!({"isAuthorized": false, "context": {}})).into_response(),
        };
    }
    calls.function.fetch_add(1, Ordering::SeqCst);
    let body = json!({"lambda": event["requestContext"]["authorizer"]["lambda"], "routeKey": event["routeKey"], "body": event["body"]});
    Json(json!({"statusCode": 201, "headers": {"x-from": "function", "content-type": "application/json"}, "body": body.to_string()}))
        .into_response()
}

async fn setup() -> (String, Arc<Calls>, gateway::GatewayHandle) {
    let calls = Arc::new(Calls::default());
    let app = axum::Router::new()
        .route(
            "/2015-03-31/functions/{name}/invocations",
            axum::routing::post(invoke),
        )
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let invoke_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let route = |method: &str, path: &str| RouteDef {
        method: method.into(),
        path: path.into(),
        function: "PredictFunction".into(),
        binary: "predict".into(),
    };
    let config = GatewayConfig {
        routes: vec![route("POST", "/v1/predict"), route("GET", "/v1/other")],
        authorizer: AuthorizerDef {
            function: "AuthorizerFunction".into(),
            binary: "authorizer".into(),
            headers: vec!["Authorization".into()],
            context: vec!["routeKey".into()],
            ttl_secs: 300,
        },
        invoke_url,
    };
    let gw = gateway::serve(config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    (gw.url(), calls, gw)
}

async fn call(
    method: reqwest::Method,
    url: &str,
    auth: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .body("{\"prompt\":\"hi\"}");
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn missing_identity_is_401_without_calling_the_authorizer() {
    let (url, calls, _gw) = setup().await;
    let (status, _, body) = call(reqwest::Method::POST, &format!("{url}/v1/predict"), None).await;
    assert_eq!(status, 401);
    assert_eq!(body, json!({"message": "Unauthorized"}));
    assert_eq!(calls.authorizer.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn allow_hands_context_to_the_function_and_is_cached_per_route() {
    let (url, calls, gw) = setup().await;
    let predict = format!("{url}/v1/predict");
    let (status, headers, body) = call(reqwest::Method::POST, &predict, Some("Bearer good")).await;
    assert_eq!(status, 201, "the function's statusCode passes through");
    assert_eq!(headers["x-from"], "function");
    assert_eq!(body["lambda"]["sub"], "alice");
    assert_eq!(body["routeKey"], "POST /v1/predict");
    assert_eq!(body["body"], "{\"prompt\":\"hi\"}");
    call(reqwest::Method::POST, &predict, Some("Bearer good")).await;
    assert_eq!(
        calls.authorizer.load(Ordering::SeqCst),
        1,
        "second call served from the cache"
    );
    assert_eq!(gw.authorizer_calls(), 1);
    // Same token, other route: the cache key includes routeKey, so the authorizer decides again.
    call(
        reqwest::Method::GET,
        &format!("{url}/v1/other"),
        Some("Bearer good"),
    )
    .await;
    assert_eq!(calls.authorizer.load(Ordering::SeqCst), 2);
    assert_eq!(calls.function.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn deny_is_403_and_function_error_is_a_generic_500() {
    let (url, calls, _gw) = setup().await;
    let predict = format!("{url}/v1/predict");
    let (status, _, body) = call(reqwest::Method::POST, &predict, Some("Bearer bad")).await;
    assert_eq!((status, body), (403, json!({"message": "Forbidden"})));
    let (status, _, body) = call(reqwest::Method::POST, &predict, Some("Bearer boom")).await;
    assert_eq!(
        (status, body),
        (500, json!({"message": "Internal Server Error"}))
    );
    assert_eq!(
        calls.function.load(Ordering::SeqCst),
        0,
        "the function never ran"
    );
}

#[tokio::test]
async fn unknown_route_is_404() {
    let (url, calls, _gw) = setup().await;
    let (status, _, body) = call(
        reqwest::Method::POST,
        &format!("{url}/v2/predict"),
        Some("Bearer good"),
    )
    .await;
    assert_eq!((status, body), (404, json!({"message": "Not Found"})));
    let (status, _, _) = call(
        reqwest::Method::DELETE,
        &format!("{url}/v1/predict"),
        Some("Bearer good"),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(calls.authorizer.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn repeated_authorization_headers_are_one_comma_joined_identity() {
    let (url, calls, _gw) = setup().await;
    let predict = format!("{url}/v1/predict");
    let send = |values: &'static [&'static str]| {
        let predict = predict.clone();
        async move {
            let mut req = reqwest::Client::new().post(&predict).body("{}");
            for v in values {
                req = req.header("Authorization", *v);
            }
            req.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(send(&["Bearer good"]).await, 201);
    assert_eq!(calls.authorizer.load(Ordering::SeqCst), 1);
    // API Gateway joins the two values ("Bearer good,Bearer evil") for the authorizer AND for
    // the cache key: the cached allow of "Bearer good" must not answer for them.
    assert_eq!(send(&["Bearer good", "Bearer evil"]).await, 403);
    assert_eq!(calls.authorizer.load(Ordering::SeqCst), 2);
    // The joined value is cached under itself.
    assert_eq!(send(&["Bearer good", "Bearer evil"]).await, 403);
    assert_eq!(calls.authorizer.load(Ordering::SeqCst), 2);
    assert_eq!(send(&["Bearer good"]).await, 201);
    assert_eq!(calls.authorizer.load(Ordering::SeqCst), 2);
    assert_eq!(calls.function.load(Ordering::SeqCst), 2);
}
