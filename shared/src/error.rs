//! The API layer's error enum. `crate::http` is the one place it becomes an HTTP answer.
use std::borrow::Cow;
use std::time::Duration;

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
    #[error("invalid {field}: {detail}")]
    Invalid {
        field: Cow<'static, str>,
        detail: String,
    },
    #[error("forbidden: {reason}")]
    Forbidden { reason: String },
    #[error("rate limit exceeded")]
    RateLimited {
        limit: u32,
        window: Duration,
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
}

impl ApiError {
    pub fn invalid(field: impl Into<Cow<'static, str>>, detail: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            detail: detail.into(),
        }
    }

    /// The audit decision (and metric) of this error.
    pub fn decision(&self) -> crate::audit::Decision {
        use crate::audit::Decision;
        match self {
            Self::Unauthenticated | Self::TokenExpired => Decision::Unauthenticated,
            Self::Forbidden { .. } => Decision::Forbidden,
            Self::UnsupportedMediaType | Self::PayloadTooLarge { .. } | Self::Invalid { .. } => {
                Decision::Invalid
            }
            Self::RateLimited { .. } => Decision::RateLimited,
            Self::SuspiciousPrompt { .. } => Decision::Blocked,
            Self::Backend(_) | Self::BackendTimeout => Decision::BackendError,
            Self::Unavailable(_) => Decision::Unavailable,
        }
    }

    /// Stable reason code for logs and audit records.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::TokenExpired => "token_expired",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Invalid { .. } => "invalid_request",
            Self::Forbidden { .. } => "forbidden",
            Self::RateLimited { .. } => "rate_limited",
            Self::SuspiciousPrompt { .. } => "suspicious_prompt",
            Self::Backend(_) => "backend_error",
            Self::BackendTimeout => "backend_timeout",
            Self::Unavailable(_) => "unavailable",
        }
    }
}
