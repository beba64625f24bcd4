//! Hardened JWT verification for the Lambda authorizer.
//!
//! Pipeline: `parse_authorization` (exact `Bearer <jws>`, 8 KiB cap) → `verify_signature`
//! (strict header, kid → ring key, header alg must equal the key's alg, no `crit`, no `cty`,
//! signature via jsonwebtoken/aws-lc) → `validate_claims` (typed claims, duplicate keys
//! rejected, the claim mapping of `crate::config::claims`, policy).
//! `KeyCache` wraps a `KeyRing` with TTL refresh, rate-limited unknown-kid refresh and a
//! fail-closed maximum staleness.

mod cache;
mod claims;
mod error;
mod keys;
pub(crate) mod strict_json;
mod token;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod wycheproof_tests;

use std::time::{Duration, SystemTime};

pub use cache::{CacheConfig, JwksSource, JwksVersions, KeyCache};
pub use claims::validate_claims;
pub use error::{AuthError, KeyError, SourceError};
pub use keys::{KeyOrigin, KeyRing, RingReport, SkipReason, SkippedKey};
pub use token::{MAX_TOKEN_BYTES, VerifiedToken, parse_authorization, verify_signature};

pub use crate::config::claims::ClaimMapping;
pub use crate::principal::Principal;

/// A token whose signature and claims verified: the principal, and the scopes it grants (scopes
/// stay in the authorizer, where routes are decided; predict does not need them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub principal: Principal,
    pub scopes: Vec<String>,
}

impl Identity {
    /// The first scope of `required` this identity lacks (RFC 6750 `insufficient_scope`).
    pub fn missing_scope<'r>(&self, required: &'r [String]) -> Option<&'r str> {
        required
            .iter()
            .find(|r| !self.scopes.iter().any(|s| s == *r))
            .map(String::as_str)
    }
}

/// A failed verification: what failed and, when the signature verified and the token named a
/// subject, who it was (for the deny log and audit record; never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct AuthFailure {
    pub error: AuthError,
    pub principal: Option<Box<Principal>>,
}

impl AuthFailure {
    pub fn reason(&self) -> &'static str {
        self.error.reason()
    }
}

impl From<AuthError> for AuthFailure {
    fn from(error: AuthError) -> Self {
        Self {
            error,
            principal: None,
        }
    }
}

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub issuer: String,
    /// Expected in `aud` (a token without `aud` may instead name one of
    /// `claims.allowed_clients`).
    pub audience: String,
    /// Clock-skew allowance for exp/nbf/iat (default 30 s). Values above `MAX_LEEWAY` (30 s) are
    /// clamped to it: the design allows seconds of skew, never a minute.
    pub leeway: Duration,
    /// Longest accepted `exp - iat` (default 3600 s).
    pub max_lifetime: Duration,
    /// Where roles, tenant, scopes and the client come from; access-token checks.
    pub claims: ClaimMapping,
}

impl TokenPolicy {
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
    pub const MAX_LEEWAY: Duration = Duration::from_secs(30);
    pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(3600);

    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: Self::DEFAULT_LEEWAY,
            max_lifetime: Self::DEFAULT_MAX_LIFETIME,
            claims: ClaimMapping::default(),
        }
    }
}

/// Full verification of an `Authorization` header value against a ring at time `now`.
pub fn verify(
    ring: &KeyRing,
    policy: &TokenPolicy,
    authorization_header: &str,
    now: SystemTime,
) -> Result<Identity, AuthFailure> {
    let token = parse_authorization(authorization_header)?;
    let verified = verify_signature(ring, token)?;
    validate_claims(&verified, policy, now)
}
