//! A local OpenID Connect provider on loopback, for jwks-sync in the dev and test stacks: the
//! discovery document (OpenID Connect Discovery 1.0) at `/.well-known/openid-configuration` and
//! the JWKS at `/jwks.json`, serving the dev key ring's public keys. Dev-only controls let tests
//! rotate the keys (`PUT /_dev/keys`) and make the provider misbehave (`PUT /_dev/fault`: HTTP
//! 500, a hang past jwks-sync's timeout, an oversized or malformed JWKS, a redirect to another
//! host), as a real provider might.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ports::Ports;

/// How the provider misbehaves (on its JWKS; `Status500` on the discovery document too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    None,
    Status500,
    /// Answers after 30 s (jwks-sync gives up long before).
    Timeout,
    /// A well-formed JWKS padded past 64 KiB (jwks-sync's default cap).
    Oversized,
    /// Truncated JSON.
    Malformed,
    /// 302 to the same path on `localhost` (another host, though the same machine).
    Redirect,
}

struct Provider {
    issuer: String,
    port: u16,
    keys: Mutex<Vec<Value>>,
    fault: Mutex<Fault>,
}

pub struct OidcHandle {
    pub issuer: String,
    task: tokio::task::JoinHandle<()>,
    state: Arc<Provider>,
}

impl OidcHandle {
    /// The public JWKs the provider publishes (a rotation, as the provider would do it).
    pub fn set_keys(&self, keys: Vec<Value>) {
        *self.state.keys.lock().unwrap_or_else(|p| p.into_inner()) = keys;
    }

    pub fn set_fault(&self, fault: Fault) {
        *self.state.fault.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for OidcHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn fault(p: &Provider) -> Fault {
    *p.fault.lock().unwrap_or_else(|e| e.into_inner())
}

async fn discovery(State(p): State<Arc<Provider>>) -> Response {
    if fault(&p) == Fault::Status500 {
        return (StatusCode::INTERNAL_SERVER_ERROR, "provider error").into_response();
    }
    Json(json!({
        "issuer": p.issuer,
        "jwks_uri": format!("{}/jwks.json", p.issuer),
        "authorization_endpoint": format!("{}/authorize", p.issuer),
        "token_endpoint": format!("{}/token", p.issuer),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    }))
    .into_response()
}

async fn jwks(State(p): State<Arc<Provider>>) -> Response {
    let keys = p.keys.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match fault(&p) {
        Fault::None => Json(json!({ "keys": keys })).into_response(),
        Fault::Status500 => (StatusCode::INTERNAL_SERVER_ERROR, "provider error").into_response(),
        Fault::Timeout => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Json(json!({ "keys": keys })).into_response()
        }
        Fault::Oversized => {
            Json(json!({ "keys": keys, "padding": "x".repeat(100 * 1024) })).into_response()
        }
        Fault::Malformed => {
            ([(header::CONTENT_TYPE, "application/json")], "{\"keys\": [").into_response()
        }
        Fault::Redirect => (
            StatusCode::FOUND,
            [(
                header::LOCATION,
                format!("http://localhost:{}/jwks.json", p.port),
            )],
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct KeysBody {
    keys: Vec<Value>,
}

async fn set_keys(State(p): State<Arc<Provider>>, Json(b): Json<KeysBody>) -> StatusCode {
    *p.keys.lock().unwrap_or_else(|e| e.into_inner()) = b.keys;
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct FaultBody {
    fault: Fault,
}

async fn set_fault(State(p): State<Arc<Provider>>, Json(b): Json<FaultBody>) -> StatusCode {
    *p.fault.lock().unwrap_or_else(|e| e.into_inner()) = b.fault;
    StatusCode::NO_CONTENT
}

/// Serves the provider on `addr` (loopback) with `keys` as its JWKS. Its issuer is
/// `http://<addr>` (plain HTTP is what jwks-sync allows for loopback addresses alone).
pub async fn serve(addr: SocketAddr, keys: Vec<Value>) -> Result<OidcHandle> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let addr = listener.local_addr()?;
    let issuer = format!("http://{addr}");
    let state = Arc::new(Provider {
        issuer: issuer.clone(),
        port: addr.port(),
        keys: Mutex::new(keys),
        fault: Mutex::new(Fault::None),
    });
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks.json", get(jwks))
        .route("/_dev/keys", put(set_keys))
        .route("/_dev/fault", put(set_fault))
        .with_state(state.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(OidcHandle {
        issuer,
        task,
        state,
    })
}

/// The provider's dev controls, from another process (the tests).
pub struct OidcAdmin {
    issuer: String,
    client: reqwest::Client,
}

impl OidcAdmin {
    pub fn new(issuer: &str) -> Self {
        Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
        }
    }

    pub async fn set_keys(&self, keys: &[Value]) -> Result<()> {
        let r = self
            .client
            .put(format!("{}/_dev/keys", self.issuer))
            .json(&json!({ "keys": keys }))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "set_keys: {}", r.status());
        Ok(())
    }

    pub async fn set_fault(&self, fault: Fault) -> Result<()> {
        let r = self
            .client
            .put(format!("{}/_dev/fault", self.issuer))
            .json(&json!({ "fault": fault }))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "set_fault: {}", r.status());
        Ok(())
    }
}

/// The issuer dev tokens carry: the running stack's local provider (`GATEHOUSE_DEV_ISSUER`, which
/// `cargo xtask test` sets for the tests), else the dev stack's (`cargo xtask dev`, shifted by
/// `GATEHOUSE_PORT_OFFSET`).
pub fn dev_issuer() -> String {
    std::env::var("GATEHOUSE_DEV_ISSUER").unwrap_or_else(|_| Ports::DEV.offset_from_env().issuer())
}

/// Issuer and audience dev tokens must carry for the local stack (the audience is the
/// template's).
pub fn dev_token_claims() -> Result<(String, String)> {
    let t = crate::template::Template::load(&crate::paths::template_path())?;
    let audience = t
        .function_env("AuthorizerFunction")?
        .get("GATEHOUSE_AUDIENCE")
        .cloned()
        .context("no GATEHOUSE_AUDIENCE")?;
    Ok((dev_issuer(), audience))
}
