//! The API layer's error enum. `crate::http` is the one place it becomes an HTTP answer; each
//! variant is one problem type of `docs/problems.md`.
use std::time::Duration;

/// Why a model was refused. The caller always gets the same answer ("model not available"), so
/// the status never tells whether another tenant's private model exists; the audit record and the
/// log keep the real cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelRefusal {
    /// Not a model of the policy.
    Unknown,
    /// `enabled: false` in the policy.
    Disabled,
    /// Owned by another tenant (or the principal has no tenant).
    OtherTenant,
    /// The principal's roles do not open its tier.
    NotPermitted,
    /// A policy model this deployment has no backend for (e.g. not in GATEHOUSE_BEDROCK_MODELS).
    NoBackend,
}

impl ModelRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown_model",
            Self::Disabled => "model_disabled",
            Self::OtherTenant => "model_other_tenant",
            Self::NotPermitted => "model_not_permitted",
            Self::NoBackend => "model_no_backend",
        }
    }
}

/// Which limit refused a request (the IETF RateLimit policy name that reports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitName {
    /// The request limit of the principal's roles.
    Role,
    /// A model's own request limit.
    Model,
    /// The principal's daily token budget.
    Tokens,
    /// The principal's monthly token budget.
    TokensMonth,
    /// The tenant's daily token budget.
    TenantTokens,
    /// The tenant's monthly token budget.
    TenantTokensMonth,
}

impl LimitName {
    /// The policy name in `RateLimit-Policy` / `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Role => "role",
            Self::Model => "model",
            Self::Tokens => "tokens",
            Self::TokensMonth => "tokens-month",
            Self::TenantTokens => "tenant-tokens",
            Self::TenantTokensMonth => "tenant-tokens-month",
        }
    }
}

/// One problem with one part of a request, as an entry of the problem's `errors` member.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// `#` + an RFC 6901 JSON pointer (`#/max_tokens`); `#` alone is the whole body.
    pub pointer: String,
    pub detail: String,
}

impl FieldError {
    /// An error about the top-level member `member` ("" = the whole body).
    pub fn at(member: &str, detail: impl Into<String>) -> Self {
        let pointer = if member.is_empty() {
            "#".to_owned()
        } else {
            // RFC 6901 §3: `~` → `~0`, `/` → `~1`; then §6 (URI fragment form): `%`, control
            // characters and the line/paragraph separators percent-encoded, so a pointer is always
            // one printable line (a parameter name is attacker-controlled).
            let escaped = member.replace('~', "~0").replace('/', "~1");
            let mut out = String::with_capacity(escaped.len() + 2);
            out.push_str("#/");
            for c in escaped.chars() {
                if c == '%' || c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("%{b:02X}"));
                    }
                } else {
                    out.push(c);
                }
            }
            out
        };
        Self {
            pointer,
            detail: detail.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No principal in the authorizer context: API Gateway should never let this through.
    #[error("no authenticated principal")]
    Unauthenticated,
    /// The token's `exp` (from the authorizer context) has passed: an authorizer-cache hit
    /// outlived the token.
    #[error("the token has expired")]
    TokenExpired,
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    #[error("body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The body breaks the API's schema or the deployment's or the model's ranges.
    #[error("invalid request: {errors:?}")]
    Invalid { errors: Vec<FieldError> },
    /// None of the principal's roles grants this at all.
    #[error("forbidden: {reason}")]
    Forbidden { reason: String },
    /// The request asks for more than the principal's roles allow (prompt length, max_tokens).
    #[error("role limit exceeded: {errors:?}")]
    RoleLimit { errors: Vec<FieldError> },
    /// The model is not available to this principal; `cause` is for the audit record only.
    #[error("model {model:?} not available ({})", cause.as_str())]
    ModelUnavailable { model: String, cause: ModelRefusal },
    /// A repeat offender, refused until `until` (Unix seconds).
    #[error("principal suspended until {until}")]
    Suspended { until: u64 },
    /// A request limit (role or model) is spent for this window.
    #[error("rate limit exceeded ({})", limit.as_str())]
    RateLimited {
        limit: LimitName,
        quota: u64,
        window: Duration,
        retry_after: Duration,
    },
    /// A token budget cannot hold this request's worst case.
    #[error("token budget exhausted ({}): needs {requested}, {remaining} left", limit.as_str())]
    TokenBudget {
        limit: LimitName,
        requested: u64,
        remaining: u64,
        retry_after: Duration,
    },
    #[error("prompt blocked by the screen")]
    SuspiciousPrompt { rules: Vec<&'static str> },
    #[error("model backend failed: {0}")]
    Backend(String),
    #[error("model backend timed out")]
    BackendTimeout,
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
    /// The function was invoked for a route it does not serve (API Gateway misconfigured).
    #[error("no such route: {0}")]
    NotFound(String),
}

impl ApiError {
    /// One invalid member (`""` = the whole body).
    pub fn invalid(member: &str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            errors: vec![FieldError::at(member, detail)],
        }
    }

    /// The audit decision (and metric) of this error.
    pub fn decision(&self) -> crate::audit::Decision {
        use crate::audit::Decision;
        match self {
            Self::Unauthenticated | Self::TokenExpired => Decision::Unauthenticated,
            Self::Forbidden { .. }
            | Self::RoleLimit { .. }
            | Self::ModelUnavailable { .. }
            | Self::Suspended { .. } => Decision::Forbidden,
            Self::UnsupportedMediaType
            | Self::PayloadTooLarge { .. }
            | Self::Invalid { .. }
            | Self::NotFound(_) => Decision::Invalid,
            Self::RateLimited { .. } | Self::TokenBudget { .. } => Decision::RateLimited,
            Self::SuspiciousPrompt { .. } => Decision::Blocked,
            Self::Backend(_) | Self::BackendTimeout => Decision::BackendError,
            Self::Unavailable(_) => Decision::Unavailable,
        }
    }

    /// Stable reason code for logs and audit records (finer than the caller's answer).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::TokenExpired => "token_expired",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Invalid { .. } => "invalid_request",
            Self::Forbidden { .. } => "forbidden",
            Self::RoleLimit { .. } => "role_limit",
            Self::ModelUnavailable { cause, .. } => cause.as_str(),
            Self::Suspended { .. } => "suspended",
            Self::RateLimited { .. } => "rate_limited",
            Self::TokenBudget { .. } => "token_budget",
            Self::SuspiciousPrompt { .. } => "suspicious_prompt",
            Self::Backend(_) => "backend_error",
            Self::BackendTimeout => "backend_timeout",
            Self::Unavailable(_) => "unavailable",
            Self::NotFound(_) => "no_such_route",
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pointers_are_one_printable_line_whatever_the_member_name() {
        let e = super::FieldError::at("a/b~c%\nd\u{2028}", "x");
        assert_eq!(e.pointer, "#/a~1b~0c%25%0Ad%E2%80%A8");
        assert_eq!(super::FieldError::at("prompt", "x").pointer, "#/prompt");
    }
}
