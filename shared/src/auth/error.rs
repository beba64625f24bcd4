//! Error types. Display strings are fixed text plus, at most, static claim names: never token
//! bytes, kids or key material, so they are safe to log.

use thiserror::Error;

/// Why a request was not authenticated. `reason()` gives a short, stable snake_case code.
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
    #[error("token key id is missing or not in the key ring")]
    UnknownKid,
    #[error("token alg does not match the key's alg")]
    AlgMismatch,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not yet valid")]
    NotYetValid,
    #[error("token was issued in the future")]
    IssuedInFuture,
    #[error("token lifetime exceeds the maximum")]
    LifetimeTooLong,
    #[error("required claim `{0}` is missing")]
    MissingClaim(&'static str),
    #[error("claim `{0}` has an invalid type or value")]
    InvalidClaim(&'static str),
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token audience is not accepted")]
    WrongAudience,
    #[error("verification keys are unavailable")]
    KeysUnavailable,
}

impl AuthError {
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
            Self::UnknownKid => "unknown_kid",
            Self::AlgMismatch => "alg_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::LifetimeTooLong => "lifetime_too_long",
            Self::MissingClaim(_) => "missing_claim",
            Self::InvalidClaim(_) => "invalid_claim",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::KeysUnavailable => "keys_unavailable",
        }
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
