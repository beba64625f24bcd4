//! Error types. Display strings are fixed text plus, at most, static claim names: never token
//! bytes, kids or key material, so they are safe to log.

use std::borrow::Cow;

use thiserror::Error;

/// Why a request was not authenticated. `reason()` gives a short, stable snake_case code for
/// metrics and alarms; `Display` names the failing check precisely (which claim, what was
/// expected) for logs and audit records. Neither ever contains token bytes, a claim value taken
/// from the token, or key material: only claim names, configured expectations and numbers.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("authorization header missing")]
    MissingHeader,
    #[error("authorization header is not exactly `Bearer <jws>`")]
    MalformedHeader,
    #[error("token exceeds the size limit")]
    TokenTooLarge,
    #[error("token is not a well-formed compact JWS")]
    MalformedToken,
    #[error("token header or claims contain a duplicate JSON key")]
    DuplicateKey,
    #[error("token header carries key material or a key reference (jwk/jku/x5u/x5c)")]
    ForbiddenHeader,
    #[error("token header carries a `crit` parameter")]
    UnsupportedCrit,
    /// A `cty` header (RFC 7515 §4.1.10): `"JWT"` announces a nested token, which this verifier
    /// does not unwrap; no other content type is implemented either.
    #[error("token header `cty` is not supported (only plain JWT claims sets are)")]
    UnsupportedCty,
    #[error("token key id is missing or not in the key ring")]
    UnknownKid,
    #[error("token alg does not match the key's alg")]
    AlgMismatch,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("claim `exp`: expired at {exp}, now {now} (leeway {leeway} s)")]
    Expired { exp: u64, now: u64, leeway: u64 },
    #[error("claim `nbf`: not valid before {nbf}, now {now} (leeway {leeway} s)")]
    NotYetValid { nbf: u64, now: u64, leeway: u64 },
    #[error("claim `iat`: issued at {iat}, in the future (now {now}, leeway {leeway} s)")]
    IssuedInFuture { iat: u64, now: u64, leeway: u64 },
    #[error("claims `exp` - `iat`: lifetime {lifetime} s exceeds the maximum {max} s")]
    LifetimeTooLong { lifetime: u64, max: u64 },
    #[error("claim `{0}`: required but missing")]
    MissingClaim(Cow<'static, str>),
    #[error("claim `{claim}`: expected {expected}")]
    InvalidClaim {
        claim: Cow<'static, str>,
        expected: Cow<'static, str>,
    },
    #[error("claim `iss`: expected exactly {expected:?}")]
    WrongIssuer { expected: String },
    #[error("claim `{claim}`: expected {expected}")]
    WrongAudience {
        claim: Cow<'static, str>,
        expected: String,
    },
    /// Not an access token (an ID token, or a `typ` other than the configured one).
    #[error("{claim}: expected {expected:?} (access tokens only)")]
    WrongTokenType {
        claim: Cow<'static, str>,
        expected: String,
    },
    #[error("claim `{claim}`: expected exactly {expected:?}")]
    WrongClaimValue {
        claim: Cow<'static, str>,
        expected: String,
    },
    /// RFC 6750 §3.1 `insufficient_scope`: the route requires a scope the token does not hold.
    #[error("scopes: route {route:?} requires {missing:?}, not granted")]
    InsufficientScope { route: String, missing: String },
    #[error("verification keys are unavailable")]
    KeysUnavailable,
}

impl AuthError {
    /// A claim that failed its JSON type check, with what was expected.
    pub fn invalid(
        claim: impl Into<Cow<'static, str>>,
        expected: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::InvalidClaim {
            claim: claim.into(),
            expected: expected.into(),
        }
    }

    /// Stable, short, log- and metric-friendly reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingHeader => "missing_header",
            Self::MalformedHeader => "malformed_header",
            Self::TokenTooLarge => "token_too_large",
            Self::MalformedToken => "malformed_token",
            Self::DuplicateKey => "duplicate_key",
            Self::ForbiddenHeader => "forbidden_header",
            Self::UnsupportedCrit => "unsupported_crit",
            Self::UnsupportedCty => "unsupported_cty",
            Self::UnknownKid => "unknown_kid",
            Self::AlgMismatch => "alg_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::IssuedInFuture { .. } => "issued_in_future",
            Self::LifetimeTooLong { .. } => "lifetime_too_long",
            Self::MissingClaim(_) => "missing_claim",
            Self::InvalidClaim { .. } => "invalid_claim",
            Self::WrongIssuer { .. } => "wrong_issuer",
            Self::WrongAudience { .. } => "wrong_audience",
            Self::WrongTokenType { .. } => "wrong_token_type",
            Self::WrongClaimValue { .. } => "wrong_claim_value",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }

    /// True when the token itself failed verification (a bad credential), as opposed to our own
    /// key outage: what the per-IP failed-auth guard counts.
    pub fn is_credential_failure(&self) -> bool {
        !matches!(self, Self::KeysUnavailable | Self::InsufficientScope { .. })
    }
}

/// Why a JWKS document could not become a key ring.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("JWKS is not valid JSON")]
    InvalidJson,
    #[error("JWKS contains a duplicate JSON key")]
    DuplicateJsonKey,
    #[error("JWKS is not an object with a `keys` array")]
    NotAJwks,
}

/// A failure of the JWKS source (e.g. Secrets Manager). Carries no secret material.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("JWKS source failed: {message}")]
pub struct SourceError {
    pub message: String,
}

impl SourceError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}
