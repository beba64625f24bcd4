//! Token verification against a JWKS key ring read from Secrets Manager.
//!
//! Foundation version: signature, kid → key with the key's own alg, iss, aud, exp, nbf, iat and a
//! size cap. The hardened version (duplicate keys, crit, rotation refresh) replaces this module.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::RwLock;

use crate::clock::{Clock, unix_secs};

pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Principal {
    pub sub: String,
    pub roles: Vec<String>,
    pub tenant: Option<String>,
    /// `jti` if present, else the first 16 hex chars of the token's SHA-256; never the token.
    pub token_id: String,
}

#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub issuer: String,
    pub audience: String,
    pub leeway: Duration,
    pub max_lifetime: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no Authorization header")]
    MissingHeader,
    #[error("Authorization header is not 'Bearer <token>'")]
    MalformedHeader,
    #[error("token larger than {MAX_TOKEN_BYTES} bytes")]
    TokenTooLarge,
    #[error("token is not a well-formed JWS")]
    MalformedToken,
    #[error("token names no known key")]
    UnknownKid,
    #[error("token alg does not match the key's alg")]
    AlgMismatch,
    #[error("signature does not verify")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issued in the future")]
    IssuedInFuture,
    #[error("token lifetime exceeds the maximum")]
    LifetimeTooLong,
    #[error("required claim missing or ill-typed")]
    InvalidClaim,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("signing keys unavailable")]
    KeysUnavailable,
}

impl AuthError {
    /// Stable reason code for logs, audit records and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingHeader => "missing_header",
            Self::MalformedHeader => "malformed_header",
            Self::TokenTooLarge => "token_too_large",
            Self::MalformedToken => "malformed_token",
            Self::UnknownKid => "unknown_kid",
            Self::AlgMismatch => "alg_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::LifetimeTooLong => "lifetime_too_long",
            Self::InvalidClaim => "invalid_claim",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("JWKS document is not valid JSON: {0}")]
    Json(String),
}

struct RingKey {
    alg: Algorithm,
    key: DecodingKey,
}

/// kid → (alg, key), merged from the AWSCURRENT and AWSPREVIOUS JWKS documents.
pub struct KeyRing {
    keys: HashMap<String, RingKey>,
}

#[derive(Debug, Default)]
pub struct RingReport {
    pub loaded: usize,
    pub skipped: usize,
}

fn jwk_alg(jwk: &Jwk) -> Option<Algorithm> {
    use KeyAlgorithm as K;
    Some(match jwk.common.key_algorithm? {
        K::HS256 => Algorithm::HS256,
        K::HS384 => Algorithm::HS384,
        K::HS512 => Algorithm::HS512,
        K::ES256 => Algorithm::ES256,
        K::ES384 => Algorithm::ES384,
        K::RS256 => Algorithm::RS256,
        K::RS384 => Algorithm::RS384,
        K::RS512 => Algorithm::RS512,
        K::PS256 => Algorithm::PS256,
        K::PS384 => Algorithm::PS384,
        K::PS512 => Algorithm::PS512,
        K::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

impl KeyRing {
    pub fn from_jwks(
        current: &str,
        previous: Option<&str>,
    ) -> Result<(Self, RingReport), KeyError> {
        let mut keys = HashMap::new();
        let mut report = RingReport::default();
        // PREVIOUS first so that CURRENT wins on a kid present in both.
        for doc in previous.into_iter().chain(std::iter::once(current)) {
            let set: JwkSet =
                serde_json::from_str(doc).map_err(|e| KeyError::Json(e.to_string()))?;
            for jwk in set.keys {
                let usable = matches!(
                    jwk.common.public_key_use,
                    None | Some(PublicKeyUse::Signature)
                );
                match (jwk.common.key_id.clone(), jwk_alg(&jwk), usable) {
                    (Some(kid), Some(alg), true) => match DecodingKey::from_jwk(&jwk) {
                        Ok(key) => {
                            keys.insert(kid, RingKey { alg, key });
                            report.loaded += 1;
                        }
                        Err(_) => report.skipped += 1,
                    },
                    _ => report.skipped += 1,
                }
            }
        }
        Ok((Self { keys }, report))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    tenant: Option<String>,
}

fn bearer_token(header: &str) -> Result<&str, AuthError> {
    let (scheme, token) = header.split_once(' ').ok_or(AuthError::MalformedHeader)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(AuthError::MalformedHeader);
    }
    Ok(token)
}

pub fn token_hash_id(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    hex::encode(&digest.as_ref()[..8])
}

pub fn verify(
    ring: &KeyRing,
    policy: &TokenPolicy,
    authorization_header: &str,
    now: SystemTime,
) -> Result<Principal, AuthError> {
    if authorization_header.len() > MAX_TOKEN_BYTES + 7 {
        return Err(AuthError::TokenTooLarge);
    }
    let token = bearer_token(authorization_header)?;
    let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::MalformedToken)?;
    let kid = header.kid.as_deref().ok_or(AuthError::UnknownKid)?;
    let key = ring.keys.get(kid).ok_or(AuthError::UnknownKid)?;
    if header.alg != key.alg {
        return Err(AuthError::AlgMismatch);
    }
    let mut validation = Validation::new(key.alg);
    validation.leeway = policy.leeway.as_secs();
    validation.validate_nbf = true;
    validation.set_issuer(&[&policy.issuer]);
    validation.set_audience(&[&policy.audience]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::InvalidSignature => AuthError::BadSignature,
            K::ExpiredSignature => AuthError::Expired,
            K::ImmatureSignature => AuthError::NotYetValid,
            K::InvalidIssuer => AuthError::WrongIssuer,
            K::InvalidAudience => AuthError::WrongAudience,
            K::MissingRequiredClaim(_) | K::Json(_) => AuthError::InvalidClaim,
            _ => AuthError::MalformedToken,
        }
    })?;
    let claims = data.claims;
    let now = unix_secs(now);
    if claims.iat > now + policy.leeway.as_secs() {
        return Err(AuthError::IssuedInFuture);
    }
    if claims.exp.saturating_sub(claims.iat) > policy.max_lifetime.as_secs() {
        return Err(AuthError::LifetimeTooLong);
    }
    if claims.sub.is_empty() {
        return Err(AuthError::InvalidClaim);
    }
    Ok(Principal {
        token_id: claims.jti.unwrap_or_else(|| token_hash_id(token)),
        sub: claims.sub,
        roles: claims.roles,
        tenant: claims.tenant,
    })
}

#[derive(Debug, thiserror::Error)]
#[error("could not fetch the JWKS secret: {0}")]
pub struct SourceError(pub String);

/// The two versions of the JWKS secret that are valid at a time.
pub struct JwksVersions {
    pub current: SecretString,
    pub previous: Option<SecretString>,
}

#[async_trait::async_trait]
pub trait JwksSource: Send + Sync {
    async fn fetch(&self) -> Result<JwksVersions, SourceError>;
}

pub struct CacheConfig {
    pub refresh_ttl: Duration,
    pub max_staleness: Duration,
    pub unknown_kid_min_interval: Duration,
}

struct Loaded {
    ring: Arc<KeyRing>,
    fetched_at: SystemTime,
}

/// The key ring, refreshed after a TTL; serves the last good ring up to a maximum staleness.
pub struct KeyCache<S: JwksSource> {
    source: S,
    config: CacheConfig,
    clock: Arc<dyn Clock>,
    state: RwLock<Loaded>,
}

impl<S: JwksSource> KeyCache<S> {
    pub async fn load(
        source: S,
        config: CacheConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AuthError> {
        let ring = Self::fetch_ring(&source).await?;
        let fetched_at = clock.now();
        Ok(Self {
            source,
            config,
            clock,
            state: RwLock::new(Loaded {
                ring: Arc::new(ring),
                fetched_at,
            }),
        })
    }

    async fn fetch_ring(source: &S) -> Result<KeyRing, AuthError> {
        let v = source.fetch().await.map_err(|e| {
            tracing::warn!(error = %e, "JWKS fetch failed");
            AuthError::KeysUnavailable
        })?;
        let previous = v.previous.as_ref().map(|p| p.expose_secret());
        let (ring, _report) = KeyRing::from_jwks(v.current.expose_secret(), previous)
            .map_err(|_| AuthError::KeysUnavailable)?;
        Ok(ring)
    }

    async fn ring(&self) -> Result<Arc<KeyRing>, AuthError> {
        let now = self.clock.now();
        {
            let s = self.state.read().await;
            let age = now.duration_since(s.fetched_at).unwrap_or_default();
            if age < self.config.refresh_ttl {
                return Ok(s.ring.clone());
            }
        }
        let mut s = self.state.write().await;
        let age = now.duration_since(s.fetched_at).unwrap_or_default();
        if age < self.config.refresh_ttl {
            return Ok(s.ring.clone());
        }
        match Self::fetch_ring(&self.source).await {
            Ok(ring) => {
                *s = Loaded {
                    ring: Arc::new(ring),
                    fetched_at: now,
                };
                Ok(s.ring.clone())
            }
            Err(e) if age >= self.config.max_staleness => Err(e),
            Err(_) => Ok(s.ring.clone()),
        }
    }

    pub async fn verify(
        &self,
        policy: &TokenPolicy,
        authorization_header: &str,
    ) -> Result<Principal, AuthError> {
        let ring = self.ring().await?;
        verify(&ring, policy, authorization_header, self.clock.now())
    }
}
