//! The one place that turns errors into RFC 9457 problem responses. 5xx bodies carry no
//! internal detail: the detail goes to the log, keyed by request id.
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use crate::error::ApiError;

pub const PROBLEM_JSON: &str = "application/problem+json";
pub const PROBLEM_BASE: &str = "https://gatehouse.dev/problems/";

#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub request_id: String,
}

/// Status, title and public detail of an error.
fn describe(err: &ApiError) -> (StatusCode, &'static str, String) {
    use ApiError as E;
    match err {
        E::Unauthenticated => (
            StatusCode::UNAUTHORIZED,
            "Unauthenticated",
            "no authenticated principal".into(),
        ),
        E::UnsupportedMediaType => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            "Content-Type must be application/json".into(),
        ),
        E::PayloadTooLarge { limit } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload too large",
            format!("the body must be at most {limit} bytes"),
        ),
        E::Invalid { field, detail } => (
            StatusCode::BAD_REQUEST,
            "Invalid request",
            format!("{field}: {detail}"),
        ),
        E::Forbidden { reason } => (StatusCode::FORBIDDEN, "Forbidden", reason.clone()),
        E::RateLimited { retry_after, .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            format!("rate limit exceeded; retry in {} s", retry_after.as_secs()),
        ),
        E::SuspiciousPrompt { .. } => (
            StatusCode::BAD_REQUEST,
            "Suspicious prompt",
            "the prompt was blocked by the prompt-injection screen".into(),
        ),
        E::Backend(_) => (
            StatusCode::BAD_GATEWAY,
            "Bad gateway",
            "the model backend failed".into(),
        ),
        E::BackendTimeout => (
            StatusCode::GATEWAY_TIMEOUT,
            "Gateway timeout",
            "the model backend timed out".into(),
        ),
        E::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Service unavailable",
            "a dependency is unavailable; retry later".into(),
        ),
    }
}

fn slug(title: &str) -> String {
    title.to_ascii_lowercase().replace(' ', "-")
}

pub fn problem_response(err: &ApiError, request_id: &str) -> Response<String> {
    let (status, title, detail) = describe(err);
    let problem = Problem {
        kind: format!("{PROBLEM_BASE}{}", slug(title)),
        title,
        status: status.as_u16(),
        detail,
        request_id: request_id.to_owned(),
    };
    let mut resp = json_response(status, &problem, PROBLEM_JSON);
    if let ApiError::RateLimited {
        limit,
        window,
        retry_after,
    } = err
    {
        let h = resp.headers_mut();
        let secs = retry_after.as_secs().max(1);
        insert(h, "retry-after", &secs.to_string());
        set_rate_headers(h, *limit, window.as_secs(), 0, secs);
    }
    resp
}

/// `RateLimit-Policy` and `RateLimit` on any response (allowed ones too).
pub fn set_rate_headers(
    h: &mut http::HeaderMap,
    limit: u32,
    window_secs: u64,
    remaining: u32,
    reset_secs: u64,
) {
    insert(
        h,
        "ratelimit-policy",
        &rate_limit_policy(limit, window_secs),
    );
    insert(h, "ratelimit", &rate_limit(remaining, reset_secs));
}

/// The rate-limit fields of a limiter answer on a response.
#[cfg(feature = "ratelimit")]
pub fn with_rate_status(
    mut resp: Response<String>,
    s: &crate::ratelimit::RateStatus,
) -> Response<String> {
    set_rate_headers(
        resp.headers_mut(),
        s.limit,
        s.window_secs,
        s.remaining,
        s.reset_secs,
    );
    resp
}

/// The 429 of a denied limiter answer.
#[cfg(feature = "ratelimit")]
pub fn rate_limited(s: &crate::ratelimit::RateStatus) -> ApiError {
    ApiError::RateLimited {
        limit: s.limit,
        window: std::time::Duration::from_secs(s.window_secs),
        retry_after: std::time::Duration::from_secs(s.reset_secs),
    }
}

/// `RateLimit-Policy` per draft-ietf-httpapi-ratelimit-headers.
pub fn rate_limit_policy(limit: u32, window_secs: u64) -> String {
    format!("\"default\";q={limit};w={window_secs}")
}

/// `RateLimit` per draft-ietf-httpapi-ratelimit-headers: remaining quota and seconds to reset.
pub fn rate_limit(remaining: u32, reset_secs: u64) -> String {
    format!("\"default\";r={remaining};t={reset_secs}")
}

fn insert(h: &mut http::HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

pub fn json_response<T: Serialize>(
    status: StatusCode,
    body: &T,
    content_type: &'static str,
) -> Response<String> {
    // Serializing our own plain structs cannot fail; fall back to an empty object rather than panic.
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned());
    let mut resp = Response::new(text);
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn five_hundreds_carry_no_internal_detail() {
        let r = problem_response(
            &ApiError::Unavailable("dynamodb: connection refused to 10.0.0.1".into()),
            "rid",
        );
        assert_eq!(r.status(), 503);
        assert!(!r.body().contains("10.0.0.1") && !r.body().contains("dynamodb"));
        let r = problem_response(
            &ApiError::Backend("bedrock AccessDenied arn:aws:...".into()),
            "rid",
        );
        assert_eq!(r.status(), 502);
        assert!(!r.body().contains("arn:aws"));
    }

    #[test]
    fn problem_shape_and_rate_limit_headers() {
        let e = ApiError::RateLimited {
            limit: 60,
            window: Duration::from_secs(60),
            retry_after: Duration::from_secs(17),
        };
        let r = problem_response(&e, "req-1");
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["content-type"], PROBLEM_JSON);
        assert_eq!(r.headers()["retry-after"], "17");
        assert_eq!(r.headers()["ratelimit-policy"], "\"default\";q=60;w=60");
        assert_eq!(r.headers()["ratelimit"], "\"default\";r=0;t=17");
        let v: serde_json::Value = serde_json::from_str(r.body()).unwrap();
        assert_eq!(v["status"], 429);
        assert_eq!(v["request_id"], "req-1");
        assert_eq!(
            v["type"],
            "https://gatehouse.dev/problems/too-many-requests"
        );
    }
}
