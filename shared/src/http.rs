//! The one place that turns errors into RFC 9457 problem responses, and limits into IETF
//! RateLimit fields. 5xx bodies carry no internal detail: the detail goes to the log, keyed by
//! request id.
//!
//! Problem types: `type` = the configured base (`GATEHOUSE_PROBLEM_BASE_URL`) + a slug; each slug
//! is a section of `docs/problems.md` (meaning, typical cause, fix). Extension members (RFC 9457
//! §3.2): `errors` (invalid request, role limit), `model`, `suspended_until`, `limit`,
//! `requested`, `remaining`.
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::fmt::Write as _;

use crate::error::ApiError;

pub const PROBLEM_JSON: &str = "application/problem+json";
pub use crate::config::DEFAULT_PROBLEM_BASE;

/// Every problem type: (slug, status, title). The slugs are the section anchors of
/// `docs/problems.md`; a test holds the document to this table.
pub const PROBLEM_TYPES: [(&str, u16, &str); 16] = [
    ("unauthenticated", 401, "Unauthenticated"),
    ("token-expired", 401, "Token expired"),
    ("unsupported-media-type", 415, "Unsupported media type"),
    ("payload-too-large", 413, "Payload too large"),
    ("invalid-request", 400, "Invalid request"),
    ("suspicious-prompt", 400, "Suspicious prompt"),
    ("forbidden", 403, "Forbidden"),
    ("role-limit", 403, "Role limit exceeded"),
    ("model-not-available", 403, "Model not available"),
    ("suspended", 403, "Suspended"),
    ("not-found", 404, "Not found"),
    ("rate-limited", 429, "Too many requests"),
    ("token-budget-exhausted", 429, "Token budget exhausted"),
    ("bad-gateway", 502, "Bad gateway"),
    ("service-unavailable", 503, "Service unavailable"),
    ("gateway-timeout", 504, "Gateway timeout"),
];

#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub request_id: String,
    /// RFC 9457 §3.2 extension members.
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

/// RFC 3339 UTC of a Unix time in seconds.
pub fn rfc3339_secs(secs: u64) -> String {
    crate::audit::record::rfc3339(secs.saturating_mul(1000))
}

fn joined(errors: &[crate::error::FieldError]) -> String {
    errors
        .iter()
        .map(|e| {
            let at = e.pointer.trim_start_matches('#');
            if at.is_empty() {
                e.detail.clone()
            } else {
                format!("{at}: {}", e.detail)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Slug, public detail and extension members of an error.
fn describe(err: &ApiError) -> (&'static str, String, Map<String, Value>) {
    use ApiError as E;
    let mut ext = Map::new();
    let (slug, detail) = match err {
        E::Unauthenticated => ("unauthenticated", "no authenticated principal".into()),
        E::TokenExpired => (
            "token-expired",
            "the token has expired; get a new one".into(),
        ),
        E::UnsupportedMediaType => (
            "unsupported-media-type",
            "Content-Type must be application/json".into(),
        ),
        E::PayloadTooLarge { limit } => (
            "payload-too-large",
            format!("the body must be at most {limit} bytes"),
        ),
        E::Invalid { errors } => {
            ext.insert("errors".into(), json!(errors));
            ("invalid-request", joined(errors))
        }
        E::Forbidden { reason } => ("forbidden", reason.clone()),
        E::RoleLimit { errors } => {
            ext.insert("errors".into(), json!(errors));
            ("role-limit", joined(errors))
        }
        E::ModelUnavailable { model, .. } => {
            ext.insert("model".into(), json!(model));
            (
                "model-not-available",
                // The same words whatever the cause: unknown, disabled, another tenant's, a tier
                // the roles do not open, or no backend in this deployment.
                format!(
                    "model {model:?} is not available to you; GET /v1/models lists the models you may use"
                ),
            )
        }
        E::Suspended { until } => {
            let at = rfc3339_secs(*until);
            ext.insert("suspended_until".into(), json!(at));
            (
                "suspended",
                format!("too many refused requests: predict is suspended for you until {at}"),
            )
        }
        E::RateLimited {
            limit,
            quota,
            window,
            retry_after,
        } => {
            ext.insert("limit".into(), json!(limit.as_str()));
            (
                "rate-limited",
                format!(
                    "the {} limit of {quota} requests per {} s is spent; retry in {} s",
                    limit.as_str(),
                    window.as_secs(),
                    retry_after.as_secs().max(1)
                ),
            )
        }
        E::TokenBudget {
            limit,
            requested,
            remaining,
            retry_after,
        } => {
            ext.insert("limit".into(), json!(limit.as_str()));
            ext.insert("requested".into(), json!(requested));
            ext.insert("remaining".into(), json!(remaining));
            (
                "token-budget-exhausted",
                format!(
                    "this request may use up to {requested} budget tokens and the {} budget has {remaining} left; lower max_tokens or the prompt, or retry in {} s",
                    limit.as_str(),
                    retry_after.as_secs().max(1)
                ),
            )
        }
        E::SuspiciousPrompt { .. } => (
            "suspicious-prompt",
            "the prompt was blocked by the prompt-injection screen".into(),
        ),
        E::Backend(_) => ("bad-gateway", "the model backend failed".into()),
        E::BackendTimeout => ("gateway-timeout", "the model backend timed out".into()),
        E::Unavailable(_) => (
            "service-unavailable",
            "a dependency is unavailable; retry later".into(),
        ),
        E::NotFound(_) => (
            "not-found",
            "this function does not serve that route".into(),
        ),
    };
    (slug, detail, ext)
}

/// Status and title of a problem type.
pub fn problem_type(slug: &str) -> (StatusCode, &'static str) {
    PROBLEM_TYPES
        .iter()
        .find(|(s, _, _)| *s == slug)
        .and_then(|(_, status, title)| Some((StatusCode::from_u16(*status).ok()?, *title)))
        .unwrap_or((StatusCode::INTERNAL_SERVER_ERROR, "Internal error"))
}

/// The problem response of `err`; `base` is the problem type base URL.
pub fn problem_response(err: &ApiError, request_id: &str, base: &str) -> Response<String> {
    let (slug, detail, extensions) = describe(err);
    let (status, title) = problem_type(slug);
    let problem = Problem {
        kind: format!("{base}{slug}"),
        title,
        status: status.as_u16(),
        detail,
        request_id: request_id.to_owned(),
        extensions,
    };
    let mut resp = json_response(status, &problem, PROBLEM_JSON);
    let retry = match err {
        ApiError::RateLimited { retry_after, .. } | ApiError::TokenBudget { retry_after, .. } => {
            Some(*retry_after)
        }
        _ => None,
    };
    if let Some(r) = retry {
        insert(
            resp.headers_mut(),
            "retry-after",
            &r.as_secs().max(1).to_string(),
        );
    }
    resp
}

/// One IETF RateLimit policy as a response reports it (draft-ietf-httpapi-ratelimit-headers):
/// `RateLimit-Policy: "<name>";q=<quota>;w=<window s>` and `RateLimit: "<name>";r=<remaining>;t=<s to reset>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatePolicy {
    pub name: crate::error::LimitName,
    pub quota: u64,
    pub window_secs: u64,
    pub remaining: u64,
    pub reset_secs: u64,
}

/// `RateLimit-Policy` and `RateLimit` listing every policy that applied to the request, in order.
pub fn set_rate_policies(h: &mut http::HeaderMap, policies: &[RatePolicy]) {
    if policies.is_empty() {
        return;
    }
    // Each header's list written into one String (a header value per policy, then joined,
    // cost a dozen allocations per request).
    let (mut policy, mut state) = (String::new(), String::new());
    for (i, p) in policies.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let name = p.name.as_str();
        let _ = write!(policy, "{sep}\"{name}\";q={};w={}", p.quota, p.window_secs);
        let _ = write!(
            state,
            "{sep}\"{name}\";r={};t={}",
            p.remaining, p.reset_secs
        );
    }
    insert(h, "ratelimit-policy", &policy);
    insert(h, "ratelimit", &state);
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
    use crate::error::{LimitName, ModelRefusal};
    use std::time::Duration;

    const BASE: &str = "https://docs.example/problems#";

    #[test]
    fn five_hundreds_carry_no_internal_detail() {
        let r = problem_response(
            &ApiError::Unavailable("dynamodb: connection refused to 10.0.0.1".into()),
            "rid",
            BASE,
        );
        assert_eq!(r.status(), 503);
        assert!(!r.body().contains("10.0.0.1") && !r.body().contains("dynamodb"));
        let r = problem_response(
            &ApiError::Backend("bedrock AccessDenied arn:aws:...".into()),
            "rid",
            BASE,
        );
        assert_eq!(r.status(), 502);
        assert!(!r.body().contains("arn:aws"));
    }

    #[test]
    fn problem_shape_type_base_and_retry_after() {
        let e = ApiError::RateLimited {
            limit: LimitName::Role,
            quota: 60,
            window: Duration::from_secs(60),
            retry_after: Duration::from_secs(17),
        };
        let r = problem_response(&e, "req-1", BASE);
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["content-type"], PROBLEM_JSON);
        assert_eq!(r.headers()["retry-after"], "17");
        let v: serde_json::Value = serde_json::from_str(r.body()).unwrap();
        assert_eq!(v["status"], 429);
        assert_eq!(v["request_id"], "req-1");
        assert_eq!(v["limit"], "role");
        assert_eq!(v["type"], "https://docs.example/problems#rate-limited");
    }

    #[test]
    fn every_model_refusal_reads_the_same_to_the_caller() {
        let bodies: Vec<(u16, String)> = [
            ModelRefusal::Unknown,
            ModelRefusal::Disabled,
            ModelRefusal::OtherTenant,
            ModelRefusal::NotPermitted,
            ModelRefusal::NoBackend,
        ]
        .into_iter()
        .map(|cause| {
            let r = problem_response(
                &ApiError::ModelUnavailable {
                    model: "m".into(),
                    cause,
                },
                "rid",
                BASE,
            );
            (r.status().as_u16(), r.body().clone())
        })
        .collect();
        assert!(bodies.iter().all(|b| b == &bodies[0]), "{bodies:?}");
        assert_eq!(bodies[0].0, 403);
    }

    #[test]
    fn several_policies_are_all_listed() {
        let mut h = http::HeaderMap::new();
        set_rate_policies(
            &mut h,
            &[
                RatePolicy {
                    name: LimitName::Role,
                    quota: 60,
                    window_secs: 60,
                    remaining: 59,
                    reset_secs: 40,
                },
                RatePolicy {
                    name: LimitName::Tokens,
                    quota: 1000,
                    window_secs: 86_400,
                    remaining: 990,
                    reset_secs: 3600,
                },
            ],
        );
        assert_eq!(
            h["ratelimit-policy"],
            "\"role\";q=60;w=60, \"tokens\";q=1000;w=86400"
        );
        assert_eq!(
            h["ratelimit"],
            "\"role\";r=59;t=40, \"tokens\";r=990;t=3600"
        );
    }

    #[test]
    fn slugs_and_titles_are_unique_per_type() {
        let mut slugs: Vec<&str> = PROBLEM_TYPES.iter().map(|t| t.0).collect();
        slugs.sort_unstable();
        slugs.dedup();
        assert_eq!(slugs.len(), PROBLEM_TYPES.len());
    }
}
