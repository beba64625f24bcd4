//! A minimal AWS Lambda Runtime API (version 2018-06-01) on loopback, to start a release
//! `bootstrap` exactly as Lambda does and time it: the process is spawned with
//! `AWS_LAMBDA_RUNTIME_API` pointing here, initialises, polls `GET …/invocation/next`, handles the
//! one event it gets and posts `…/invocation/{id}/response` (or `…/error`, or `…/init/error`).
//! A second poll is never answered: by then the measurement is taken and the process is killed.
//! Dev-only (used by `cargo xtask coldstart`); the API shape follows the AWS Lambda developer
//! guide, "Using the Lambda runtime API for custom runtimes".
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::Notify;

/// How the one invocation ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Response(Value),
    Error(Value),
    InitError(Value),
}

#[derive(Default)]
struct Shared {
    /// The event the next poll receives (taken by it).
    event: Option<Value>,
    /// When the first poll arrived: the end of init.
    polled_at: Option<Instant>,
    /// When the response (or error) arrived, and what it was.
    finished: Option<(Instant, Outcome)>,
}

#[derive(Clone)]
struct AppState {
    shared: Arc<Mutex<Shared>>,
    done: Arc<Notify>,
}

/// The stand-in server. One invocation at a time: `arm` an event, start the process, `wait`.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    state: AppState,
    server: tokio::task::JoinHandle<()>,
}

/// Timings of one cold start, from process spawn.
#[derive(Debug, Clone)]
pub struct ColdStart {
    /// Spawn → first `next` poll (init: runtime, config, SDK clients, Secrets Manager reads).
    pub init: Duration,
    /// First `next` answered → response posted (the first invocation).
    pub first_invoke: Duration,
    pub outcome: Outcome,
}

impl RuntimeApi {
    pub async fn start() -> Result<Self> {
        let state = AppState {
            shared: Arc::new(Mutex::new(Shared::default())),
            done: Arc::new(Notify::new()),
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            state,
            server,
        })
    }

    /// Queues the event the next process will receive, and clears the previous run.
    pub fn arm(&self, event: Value) {
        if let Ok(mut s) = self.state.shared.lock() {
            *s = Shared {
                event: Some(event),
                ..Shared::default()
            };
        }
    }

    /// Waits for the run that started at `spawned` to finish (or `timeout`).
    pub async fn wait(&self, spawned: Instant, timeout: Duration) -> Result<ColdStart> {
        let deadline = tokio::time::Instant::from_std(spawned + timeout);
        loop {
            let notified = self.state.done.notified();
            {
                let s = self
                    .state
                    .shared
                    .lock()
                    .map_err(|_| anyhow::anyhow!("runtime API state poisoned"))?;
                if let Some((at, outcome)) = &s.finished {
                    let init_end = s.polled_at.unwrap_or(*at);
                    return Ok(ColdStart {
                        init: init_end.saturating_duration_since(spawned),
                        first_invoke: at.saturating_duration_since(init_end),
                        outcome: outcome.clone(),
                    });
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                bail!("the function neither answered nor failed within {timeout:?}");
            }
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(st): State<AppState>) -> impl IntoResponse {
    let event = st.shared.lock().ok().and_then(|mut s| {
        let e = s.event.take();
        if e.is_some() {
            s.polled_at = Some(Instant::now());
        }
        e
    });
    let Some(event) = event else {
        // The process handled its event and polls again: keep it waiting until it is killed.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return (StatusCode::GONE, HeaderMap::new(), String::new());
    };
    let mut h = HeaderMap::new();
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() + 30_000)
        .unwrap_or(0);
    let pairs = [
        ("lambda-runtime-aws-request-id", "coldstart-0001".to_owned()),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:coldstart".to_owned(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned(),
        ),
    ];
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    (StatusCode::OK, h, event.to_string())
}

fn finish(st: &AppState, outcome: Outcome) -> StatusCode {
    if let Ok(mut s) = st.shared.lock() {
        s.finished.get_or_insert((Instant::now(), outcome));
    }
    st.done.notify_waiters();
    StatusCode::ACCEPTED
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()))
}

async fn response(State(st): State<AppState>, Path(_id): Path<String>, body: String) -> StatusCode {
    finish(&st, Outcome::Response(json(&body)))
}

async fn error(State(st): State<AppState>, Path(_id): Path<String>, body: String) -> StatusCode {
    finish(&st, Outcome::Error(json(&body)))
}

async fn init_error(State(st): State<AppState>, body: String) -> StatusCode {
    finish(&st, Outcome::InitError(json(&body)))
}

/// The environment Lambda gives a function process (AWS Lambda developer guide, "Defined
/// runtime environment variables"), for a function of `memory_mb`.
pub fn lambda_env(api: SocketAddr, function: &str, memory_mb: u32) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", format!("coldstart-{function}")),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{function}"),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "coldstart".to_owned()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_rust".to_owned()),
        ("LAMBDA_TASK_ROOT", "/var/task".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Peak resident set size of a live process in KiB (`VmHWM` in /proc/<pid>/status).
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM line")
}
