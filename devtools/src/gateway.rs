//! A local stand-in for API Gateway HTTP API, for the routes `infra/template.yaml` declares.
//!
//! Like the real one: a missing identity source (the Authorization header) is a 401 without
//! calling the authorizer; otherwise it sends the payload-format-2.0 authorizer request to the
//! authorizer function, caches the simple response per identity-source values
//! (Authorization, routeKey) for the template's TTL (a repeated header counts as its
//! comma-joined values, in the cache key as in the event), answers 403 on deny, and on allow invokes
//! the route's function with a v2 proxy event whose `requestContext.authorizer.lambda` is the
//! authorizer's context. Unknown route → 404; a function error → 500 with a generic body.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Value, json};

use crate::template::{AuthorizerDef, RouteDef, Template};

/// HTTP API's payload limit.
const MAX_BODY: usize = 10 * 1024 * 1024;

pub struct GatewayConfig {
    pub routes: Vec<RouteDef>,
    pub authorizer: AuthorizerDef,
    /// Base URL of the Lambda invoke API (cargo lambda watch), e.g. http://127.0.0.1:9000
    pub invoke_url: String,
}

impl GatewayConfig {
    pub fn from_template(t: &Template, invoke_url: &str) -> Result<Self> {
        Ok(Self {
            routes: t.routes()?,
            authorizer: t.authorizer()?,
            invoke_url: invoke_url.to_owned(),
        })
    }
}

struct Cached {
    allowed: bool,
    context: Value,
    expires: Instant,
}

struct Gateway {
    config: GatewayConfig,
    client: reqwest::Client,
    cache: Mutex<HashMap<(String, String), Cached>>,
    /// How many times the authorizer was invoked (tests check the cache with it).
    authorizer_calls: std::sync::atomic::AtomicU64,
}

pub struct GatewayHandle {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    state: Arc<Gateway>,
}

impl GatewayHandle {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn authorizer_calls(&self) -> u64 {
        self.state
            .authorizer_calls
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` (use port 0 for any free port) and serves in a background task.
pub async fn serve(config: GatewayConfig, addr: SocketAddr) -> Result<GatewayHandle> {
    let state = Arc::new(Gateway {
        config,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(900))
            .build()?,
        cache: Mutex::new(HashMap::new()),
        authorizer_calls: Default::default(),
    });
    let app = Router::new().fallback(handle).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Ok(GatewayHandle { addr, task, state })
}

fn message(status: StatusCode, msg: &str, request_id: &str) -> Response {
    let mut r = Response::new(Body::from(json!({ "message": msg }).to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("apigw-requestid", v);
    }
    r
}

/// Headers as API Gateway v2 passes them: lower-case names, repeated values comma-joined.
fn header_map(headers: &HeaderMap) -> serde_json::Map<String, Value> {
    let mut out: serde_json::Map<String, Value> = serde_json::Map::new();
    for (name, value) in headers {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        let key = name.as_str().to_ascii_lowercase();
        match out.get_mut(&key) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                out.insert(key, Value::String(v));
            }
        }
    }
    out
}

/// `queryStringParameters` as API Gateway's HTTP API builds it (payload 2.0): names and values
/// percent-decoded (`rawQueryString` stays encoded), a repeated name's values joined with commas.
fn query_map(raw: &str) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k), percent_decode(v));
        match out.get_mut(&k) {
            Some(Value::String(prev)) => {
                prev.push(',');
                prev.push_str(&v);
            }
            _ => {
                out.insert(k, Value::String(v));
            }
        }
    }
    out
}

/// RFC 3986 §2.1 percent-decoding; a malformed escape is kept as written, invalid UTF-8 replaced.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Incoming {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
    source_ip: String,
    request_id: String,
    route_key: String,
}

fn request_context(i: &Incoming, authorizer: Option<&Value>) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ua = i
        .headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut ctx = json!({
        "accountId": "000000000000",
        "apiId": "local",
        "domainName": i.headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1"),
        "domainPrefix": "local",
        "http": {"method": i.method, "path": i.path, "protocol": "HTTP/1.1", "sourceIp": i.source_ip, "userAgent": ua},
        "requestId": i.request_id,
        "routeKey": i.route_key,
        "stage": "$default",
        "time": "",
        "timeEpoch": now.as_millis() as u64,
    });
    if let (Some(a), Some(obj)) = (authorizer, ctx.as_object_mut()) {
        obj.insert("authorizer".into(), json!({ "lambda": a }));
    }
    ctx
}

impl Gateway {
    /// Invokes a function through the Lambda invoke API. `Err` means a function or transport error.
    async fn invoke(&self, function: &str, payload: &Value) -> Result<Value> {
        invoke_function(&self.client, &self.config.invoke_url, function, payload).await
    }

    fn cache_get(&self, key: &(String, String)) -> Option<(bool, Value)> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match cache.get(key) {
            Some(c) if c.expires > Instant::now() => Some((c.allowed, c.context.clone())),
            Some(_) => {
                cache.remove(key);
                None
            }
            None => None,
        }
    }

    async fn authorize(&self, i: &Incoming, identity: &str) -> Result<(bool, Value)> {
        let key = (identity.to_owned(), i.route_key.clone());
        if let Some(hit) = self.cache_get(&key) {
            return Ok(hit);
        }
        let a = &self.config.authorizer;
        let payload = json!({
            "version": "2.0",
            "type": "REQUEST",
            "routeArn": format!("arn:aws:execute-api:us-east-1:000000000000:local/$default/{}{}", i.method, i.path),
            "identitySource": [identity, i.route_key],
            "routeKey": i.route_key,
            "rawPath": i.path,
            "rawQueryString": i.query,
            "headers": header_map(&i.headers),
            "queryStringParameters": query_map(&i.query),
            "requestContext": request_context(i, None),
            "pathParameters": {},
            "stageVariables": {},
        });
        self.authorizer_calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = self.invoke(&a.binary, &payload).await?;
        let allowed = out
            .get("isAuthorized")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let context = out.get("context").cloned().unwrap_or_else(|| json!({}));
        if a.ttl_secs > 0 {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.insert(
                key,
                Cached {
                    allowed,
                    context: context.clone(),
                    expires: Instant::now() + Duration::from_secs(a.ttl_secs),
                },
            );
        }
        Ok((allowed, context))
    }

    async fn proxy(
        &self,
        route: &RouteDef,
        i: &Incoming,
        authorizer_ctx: &Value,
    ) -> Result<Response> {
        let (body, encoded) = match std::str::from_utf8(&i.body) {
            Ok(s) => (s.to_owned(), false),
            Err(_) => (B64.encode(&i.body), true),
        };
        let payload = json!({
            "version": "2.0",
            "routeKey": i.route_key,
            "rawPath": i.path,
            "rawQueryString": i.query,
            "headers": header_map(&i.headers),
            "queryStringParameters": query_map(&i.query),
            "requestContext": request_context(i, Some(authorizer_ctx)),
            "body": body,
            "isBase64Encoded": encoded,
        });
        let out = self.invoke(&route.binary, &payload).await?;
        // Payload 2.0: a response without statusCode is a 200 JSON body.
        let Some(status) = out.get("statusCode").and_then(Value::as_u64) else {
            let mut r = Response::new(Body::from(out.to_string()));
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            return Ok(r);
        };
        let body = out.get("body").and_then(Value::as_str).unwrap_or("");
        let bytes = if out.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
            B64.decode(body)?
        } else {
            body.as_bytes().to_vec()
        };
        let mut r = Response::new(Body::from(bytes));
        *r.status_mut() = StatusCode::from_u16(u16::try_from(status)?)?;
        if let Some(h) = out.get("headers").and_then(Value::as_object) {
            for (k, v) in h {
                if let (Ok(name), Some(Ok(val))) = (
                    http::HeaderName::from_bytes(k.as_bytes()),
                    v.as_str().map(HeaderValue::from_str),
                ) {
                    r.headers_mut().insert(name, val);
                }
            }
        }
        Ok(r)
    }
}

/// Invokes `function` through a Lambda invoke API at `invoke_url` (cargo lambda watch).
/// `Err` on a function error (`X-Amz-Function-Error`, an `errorType` body) or a transport error.
pub async fn invoke_function(
    client: &reqwest::Client,
    invoke_url: &str,
    function: &str,
    payload: &Value,
) -> Result<Value> {
    let url = format!("{invoke_url}/2015-03-31/functions/{function}/invocations");
    let resp = client.post(&url).json(payload).send().await?;
    let function_error = resp.headers().contains_key("x-amz-function-error");
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .context("function answered with non-JSON")?;
    if function_error || !status.is_success() || body.get("errorType").is_some() {
        anyhow::bail!("function {function} failed: {status} {body}");
    }
    Ok(body)
}

fn find_route<'a>(routes: &'a [RouteDef], method: &str, path: &str) -> Option<&'a RouteDef> {
    routes
        .iter()
        .find(|r| (r.method == method || r.method == "ANY") && r.path == path)
}

async fn handle(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let Some(route) = find_route(&gw.config.routes, &method, &path) else {
        return message(StatusCode::NOT_FOUND, "Not Found", &request_id);
    };
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return message(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request Entity Too Large",
                &request_id,
            );
        }
    };
    let incoming = Incoming {
        method,
        path,
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts.headers,
        body,
        source_ip: peer.ip().to_string(),
        request_id: request_id.clone(),
        route_key: route.route_key(),
    };
    // Identity source: every configured header must be present (and non-empty), or 401. Its
    // value is the header as the authorizer receives it: repeated headers joined with commas, for
    // the cache key exactly as for the event (API Gateway does both alike).
    let joined = header_map(&incoming.headers);
    let mut identity = Vec::new();
    for h in &gw.config.authorizer.headers {
        match joined
            .get(&h.to_ascii_lowercase())
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
        {
            Some(v) => identity.push(v.to_owned()),
            None => return message(StatusCode::UNAUTHORIZED, "Unauthorized", &request_id),
        }
    }
    let (allowed, ctx) = match gw.authorize(&incoming, &identity.join(",")).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("[gateway] authorizer error: {e:#}");
            return message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
                &request_id,
            );
        }
    };
    if !allowed {
        return message(StatusCode::FORBIDDEN, "Forbidden", &request_id);
    }
    match gw.proxy(route, &incoming, &ctx).await {
        Ok(mut r) => {
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                r.headers_mut().insert("apigw-requestid", v);
            }
            r
        }
        Err(e) => {
            eprintln!("[gateway] integration error: {e:#}");
            message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
                &request_id,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_parameters_are_decoded_and_repeats_joined_as_api_gateway_does() {
        let m = super::query_map("principal=ab%23%23alice&d=1&d=2&bad=%zz&e=");
        assert_eq!(m["principal"], "ab##alice");
        assert_eq!(m["d"], "1,2");
        assert_eq!(m["bad"], "%zz");
        assert_eq!(m["e"], "");
    }
}
