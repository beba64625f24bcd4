//! Hardened JWT verification for the Lambda authorizer (DESIGN §3.1).
//!
//! Pipeline: `parse_authorization` (exact `Bearer <jws>`, 8 KiB cap) → `verify_signature`
//! (strict header, kid → ring key, header alg must equal the key's alg, signature via
//! jsonwebtoken/aws-lc) → `validate_claims` (typed claims, duplicate keys rejected, policy).
//! `KeyCache` wraps a `KeyRing` with TTL refresh, rate-limited unknown-kid refresh and a
//! fail-closed maximum staleness.

mod cache;
mod claims;
mod error;
mod keys;
mod strict_json;
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

pub use crate::principal::Principal;

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub issuer: String,
    pub audience: String,
    /// Clock-skew allowance for exp/nbf/iat (default 30 s). Values above `MAX_LEEWAY` (30 s) are
    /// clamped to it: the design allows seconds of skew, never a minute.
    pub leeway: Duration,
    /// Longest accepted `exp - iat` (default 3600 s).
    pub max_lifetime: Duration,
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
        }
    }
}

/// Full verification of an `Authorization` header value against a ring at time `now`.
pub fn verify(
    ring: &KeyRing,
    policy: &TokenPolicy,
    authorization_header: &str,
    now: SystemTime,
) -> Result<Principal, AuthError> {
    let token = parse_authorization(authorization_header)?;
    let verified = verify_signature(ring, token)?;
    validate_claims(&verified, policy, now)
}
