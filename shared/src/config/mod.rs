//! Configuration, read once from environment variables at cold start into typed structs.
//! A missing or malformed value stops the function with a message naming the variable.
//!
//! Configuration parsing sits below everything it configures: this module depends on no
//! adapter, and each adapter is built from the plain values parsed here (see `crate::setup`).
use std::str::FromStr;
use std::time::Duration;

pub mod claims;
#[cfg(feature = "jwks-sync")]
pub mod jwks_sync;
#[cfg(feature = "jwks-sync")]
pub use jwks_sync::{JwksSyncConfig, SyncSource};
#[cfg(feature = "predict")]
mod predict;
#[cfg(feature = "predict")]
pub use predict::{
    GuardrailConfig, GuardrailScope, ModelBackendKind, PredictConfig, SuspensionConfig,
    parse_model_map,
};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {name} has an invalid value: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Reads variables through a lookup function so tests need not touch the process environment.
pub struct Env<F: Fn(&str) -> Option<String>>(pub F);

impl Env<fn(&str) -> Option<String>> {
    pub fn process() -> Self {
        Env(|k| std::env::var(k).ok())
    }
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        match (self.0)(name) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(ConfigError::Missing(name)),
        }
    }

    pub fn parsed<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match (self.0)(name) {
            None => Ok(default),
            Some(v) if v.trim().is_empty() => Ok(default),
            Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
                name,
                reason: e.to_string(),
            }),
        }
    }

    pub fn secs(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.parsed(name, default).map(Duration::from_secs)
    }
}

/// `GATEHOUSE_LEEWAY_SECS`: clock skew tolerated on exp/nbf/iat, at most (and by default) 30 s.
/// Read by the authorizer (token checks) and predict (the `exp` it receives in the context).
pub fn token_leeway<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Duration, ConfigError> {
    let leeway = env.secs("GATEHOUSE_LEEWAY_SECS", 30)?;
    if leeway > Duration::from_secs(30) {
        return Err(ConfigError::Invalid {
            name: "GATEHOUSE_LEEWAY_SECS",
            reason: "leeway above 30 s weakens expiry checks".into(),
        });
    }
    Ok(leeway)
}

/// Token checks shared by the authorizer's configuration and its tests.
#[derive(Debug, Clone)]
pub struct AuthorizerConfig {
    pub jwks_secret_id: String,
    pub issuer: String,
    pub audience: String,
    /// Roles, tenant, scopes, clients and access-token checks (`claims::ClaimMapping::from_env`).
    pub claims: claims::ClaimMapping,
    /// Clock skew tolerated on exp/nbf/iat: at most (and by default) 30 s.
    pub leeway: Duration,
    pub max_token_lifetime: Duration,
    pub keys_refresh: Duration,
    pub keys_max_staleness: Duration,
    pub unknown_kid_refresh_interval: Duration,
}

impl AuthorizerConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let leeway = token_leeway(env)?;
        let keys_refresh = env.secs("GATEHOUSE_KEYS_REFRESH_SECS", 300)?;
        let keys_max_staleness = env.secs("GATEHOUSE_KEYS_MAX_STALENESS_SECS", 3600)?;
        let unknown_kid_refresh_interval = env.secs("GATEHOUSE_UNKNOWN_KID_REFRESH_SECS", 30)?;
        // A zero period would let random kids trigger a Secrets Manager call per request, and a
        // staleness below the refresh period would deny everyone between the two.
        if keys_refresh.is_zero() || unknown_kid_refresh_interval.is_zero() {
            return Err(ConfigError::Invalid {
                name: "GATEHOUSE_KEYS_REFRESH_SECS",
                reason: "key refresh periods (GATEHOUSE_KEYS_REFRESH_SECS, GATEHOUSE_UNKNOWN_KID_REFRESH_SECS) must be at least 1 s".into(),
            });
        }
        if keys_max_staleness < keys_refresh {
            return Err(ConfigError::Invalid {
                name: "GATEHOUSE_KEYS_MAX_STALENESS_SECS",
                reason: "must be at least GATEHOUSE_KEYS_REFRESH_SECS".into(),
            });
        }
        Ok(Self {
            jwks_secret_id: env.required("GATEHOUSE_JWKS_SECRET_ID")?,
            issuer: env.required("GATEHOUSE_ISSUER")?,
            audience: env.required("GATEHOUSE_AUDIENCE")?,
            claims: claims::ClaimMapping::from_env(env)?,
            leeway,
            max_token_lifetime: env.secs("GATEHOUSE_MAX_TOKEN_LIFETIME_SECS", 3600)?,
            keys_refresh,
            keys_max_staleness,
            unknown_kid_refresh_interval,
        })
    }
}

/// How much of the prompt and output the audit record keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentMode {
    /// Lengths only.
    None,
    /// Lengths and SHA-256 (the default).
    Hash,
    /// Lengths, SHA-256 and the text itself, capped.
    Full,
}

impl FromStr for ContentMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "hash" => Ok(Self::Hash),
            "full" => Ok(Self::Full),
            other => Err(format!(
                "unknown audit content mode {other:?} (expected none | hash | full)"
            )),
        }
    }
}

/// Largest `full`-mode text kept per field: two of them plus the record stay far below
/// DynamoDB's 400 KB item limit (and GSI copies of it).
pub const MAX_FULL_TEXT_BYTES: usize = 100_000;

/// The rate-limit counter table and how to behave when it is unreachable.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    pub table: String,
    /// Serve requests without limits when the counter store fails (default: fail closed, 503).
    pub fail_open: bool,
    pub timeout: Duration,
}

impl RateLimitConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            table: env.required("GATEHOUSE_RATE_TABLE")?,
            fail_open: env.parsed("GATEHOUSE_RATE_FAIL_OPEN", false)?,
            timeout: Duration::from_millis(env.parsed("GATEHOUSE_RATE_TIMEOUT_MS", 1000)?),
        })
    }
}

/// The authorizer's per-source-IP limit on denied tokens (credential stuffing).
#[derive(Debug, Clone, Copy)]
pub struct AuthFailureConfig {
    /// Denials per IP per window before the IP is refused without verifying; 0 turns it off.
    pub limit: u32,
    pub window: Duration,
}

impl AuthFailureConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let window = env.secs("GATEHOUSE_AUTH_FAIL_WINDOW_SECS", 300)?;
        if window.is_zero() || window > Duration::from_secs(86_400) {
            return Err(ConfigError::Invalid {
                name: "GATEHOUSE_AUTH_FAIL_WINDOW_SECS",
                reason: "must be between 1 and 86400".into(),
            });
        }
        Ok(Self {
            limit: env.parsed("GATEHOUSE_AUTH_FAIL_LIMIT", 20)?,
            window,
        })
    }
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub table: String,
    pub key_secret_id: String,
    pub content_mode: ContentMode,
    pub full_text_max_bytes: usize,
    /// Days until TTL may delete a record; 0 keeps records forever.
    pub retention_days: u32,
    pub decision_shards: u32,
    pub timeout: Duration,
}

impl AuditConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let full_text_max_bytes = env.parsed("GATEHOUSE_AUDIT_FULL_TEXT_MAX_BYTES", 32 * 1024)?;
        if full_text_max_bytes > MAX_FULL_TEXT_BYTES {
            return Err(ConfigError::Invalid {
                name: "GATEHOUSE_AUDIT_FULL_TEXT_MAX_BYTES",
                reason: format!("at most {MAX_FULL_TEXT_BYTES} (DynamoDB items are <= 400 KB)"),
            });
        }
        let decision_shards = env.parsed("GATEHOUSE_AUDIT_DECISION_SHARDS", 4)?;
        if !(1..=64).contains(&decision_shards) {
            return Err(ConfigError::Invalid {
                name: "GATEHOUSE_AUDIT_DECISION_SHARDS",
                reason: "must be 1..=64".into(),
            });
        }
        Ok(Self {
            table: env.required("GATEHOUSE_AUDIT_TABLE")?,
            key_secret_id: env.required("GATEHOUSE_AUDIT_KEY_SECRET_ID")?,
            content_mode: env.parsed("GATEHOUSE_AUDIT_CONTENT", ContentMode::Hash)?,
            full_text_max_bytes,
            retention_days: env.parsed("GATEHOUSE_AUDIT_RETENTION_DAYS", 400)?,
            decision_shards,
            timeout: Duration::from_millis(env.parsed("GATEHOUSE_AUDIT_TIMEOUT_MS", 2000)?),
        })
    }
}

/// The audit anchor: where the sentinel's digests live and which KMS key signs them.
#[derive(Debug, Clone)]
pub struct AnchorConfig {
    pub audit_table: String,
    /// The Object Lock bucket of the digests.
    pub digest_bucket: String,
    /// The KMS key (id, ARN or alias) that signs digests (the sentinel) or whose public key
    /// checks them (the reader).
    pub digest_key_id: String,
}

impl AnchorConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            audit_table: env.required("GATEHOUSE_AUDIT_TABLE")?,
            digest_bucket: env.required("GATEHOUSE_DIGEST_BUCKET")?,
            digest_key_id: env.required("GATEHOUSE_DIGEST_KEY_ID")?,
        })
    }
}

/// `audit-sentinel`: the anchor plus the OCSF export's bucket and prefix.
#[derive(Debug, Clone)]
pub struct SentinelConfig {
    pub anchor: AnchorConfig,
    pub export_bucket: String,
    /// Key prefix of the OCSF export (default `ocsf/api-activity`).
    pub export_prefix: String,
}

impl SentinelConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let export_prefix: String =
            env.parsed("GATEHOUSE_EXPORT_PREFIX", "ocsf/api-activity".to_owned())?;
        let export_prefix = export_prefix.trim_matches('/').to_owned();
        if export_prefix.is_empty()
            || !export_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./=".contains(&b))
        {
            return Err(ConfigError::Invalid {
                name: "GATEHOUSE_EXPORT_PREFIX",
                reason: "letters, digits and - _ . / = only".into(),
            });
        }
        Ok(Self {
            anchor: AnchorConfig::from_env(env)?,
            export_bucket: env.required("GATEHOUSE_EXPORT_BUCKET")?,
            export_prefix,
        })
    }
}

/// `audit-reader`: the anchor (to mark records verified), the by-decision shard count and the
/// problem type base (`GATEHOUSE_PROBLEM_BASE_URL`, as predict reads it).
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    pub anchor: AnchorConfig,
    pub decision_shards: u32,
    pub problem_base: String,
    /// `GATEHOUSE_LEEWAY_SECS`, as the authorizer reads it.
    pub token_leeway: Duration,
}

impl ReaderConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let decision_shards = env.parsed("GATEHOUSE_AUDIT_DECISION_SHARDS", 4)?;
        if !(1..=64).contains(&decision_shards) {
            return Err(ConfigError::Invalid {
                name: "GATEHOUSE_AUDIT_DECISION_SHARDS",
                reason: "must be 1..=64".into(),
            });
        }
        Ok(Self {
            anchor: AnchorConfig::from_env(env)?,
            decision_shards,
            problem_base: problem_base(env)?,
            token_leeway: token_leeway(env)?,
        })
    }
}

/// Default base of the problem `type` URIs: a placeholder (RFC 6761 `.invalid`) until the
/// deployment points `GATEHOUSE_PROBLEM_BASE_URL` at where it publishes `docs/problems.md`.
pub const DEFAULT_PROBLEM_BASE: &str = "https://gatehouse.invalid/problems/";

/// The problem type base: an absolute `https`/`http` URL or a `tag:`/`urn:` URI (RFC 9457 §3.1.1
/// wants an absolute URI), printable ASCII without spaces or quotes.
pub(crate) fn problem_base<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<String, ConfigError> {
    let v = env.parsed(
        "GATEHOUSE_PROBLEM_BASE_URL",
        DEFAULT_PROBLEM_BASE.to_owned(),
    )?;
    let scheme_ok = ["https://", "http://", "tag:", "urn:"]
        .iter()
        .any(|s| v.starts_with(s));
    let chars_ok = v
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'<' | b'>' | b'\\'));
    if scheme_ok && chars_ok {
        Ok(v)
    } else {
        Err(ConfigError::Invalid {
            name: "GATEHOUSE_PROBLEM_BASE_URL",
            reason: "must be an absolute https://, http://, tag: or urn: URI without spaces".into(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    pub(crate) fn env(pairs: &[(&str, &str)]) -> Env<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env(move |k: &str| map.get(k).cloned())
    }

    #[test]
    fn authorizer_config_requires_issuer_and_rejects_large_leeway() {
        let e = env(&[
            ("GATEHOUSE_JWKS_SECRET_ID", "s"),
            ("GATEHOUSE_AUDIENCE", "a"),
        ]);
        assert!(matches!(
            AuthorizerConfig::from_env(&e),
            Err(ConfigError::Missing("GATEHOUSE_ISSUER"))
        ));
        let e = env(&[
            ("GATEHOUSE_JWKS_SECRET_ID", "s"),
            ("GATEHOUSE_ISSUER", "i"),
            ("GATEHOUSE_AUDIENCE", "a"),
            ("GATEHOUSE_LEEWAY_SECS", "120"),
        ]);
        assert!(matches!(
            AuthorizerConfig::from_env(&e),
            Err(ConfigError::Invalid {
                name: "GATEHOUSE_LEEWAY_SECS",
                ..
            })
        ));
    }

    #[test]
    fn key_refresh_settings_must_be_coherent() {
        let base = [
            ("GATEHOUSE_JWKS_SECRET_ID", "s"),
            ("GATEHOUSE_ISSUER", "i"),
            ("GATEHOUSE_AUDIENCE", "a"),
        ];
        let with = |extra: (&'static str, &'static str)| {
            let mut v = base.to_vec();
            v.push(extra);
            AuthorizerConfig::from_env(&env(&v))
        };
        assert!(with(("GATEHOUSE_KEYS_REFRESH_SECS", "0")).is_err());
        assert!(with(("GATEHOUSE_UNKNOWN_KID_REFRESH_SECS", "0")).is_err());
        assert!(matches!(
            with(("GATEHOUSE_KEYS_MAX_STALENESS_SECS", "60")),
            Err(ConfigError::Invalid {
                name: "GATEHOUSE_KEYS_MAX_STALENESS_SECS",
                ..
            })
        ));
        assert!(with(("GATEHOUSE_KEYS_MAX_STALENESS_SECS", "300")).is_ok());
    }

    #[test]
    fn audit_and_rate_config_defaults_and_errors() {
        let base = [
            ("GATEHOUSE_AUDIT_TABLE", "A"),
            ("GATEHOUSE_AUDIT_KEY_SECRET_ID", "K"),
            ("GATEHOUSE_RATE_TABLE", "R"),
        ];
        let c = AuditConfig::from_env(&env(&base)).unwrap();
        assert_eq!(c.content_mode, ContentMode::Hash);
        assert_eq!((c.retention_days, c.decision_shards), (400, 4));
        let r = RateLimitConfig::from_env(&env(&base)).unwrap();
        assert!(!r.fail_open);
        let mut bad = base.to_vec();
        bad.push(("GATEHOUSE_AUDIT_CONTENT", "everything"));
        assert!(matches!(
            AuditConfig::from_env(&env(&bad)),
            Err(ConfigError::Invalid {
                name: "GATEHOUSE_AUDIT_CONTENT",
                ..
            })
        ));
        let mut big = base.to_vec();
        big.push(("GATEHOUSE_AUDIT_FULL_TEXT_MAX_BYTES", "500000"));
        assert!(AuditConfig::from_env(&env(&big)).is_err());
        let mut open = base.to_vec();
        open.push(("GATEHOUSE_RATE_FAIL_OPEN", "yes"));
        assert!(
            RateLimitConfig::from_env(&env(&open)).is_err(),
            "true|false only"
        );
        assert!(matches!(
            AuditConfig::from_env(&env(&[])),
            Err(ConfigError::Missing("GATEHOUSE_AUDIT_TABLE"))
        ));
        let a = AuthFailureConfig::from_env(&env(&[])).unwrap();
        assert_eq!((a.limit, a.window.as_secs()), (20, 300));
    }

    #[test]
    fn sentinel_and_reader_config() {
        let base = [
            ("GATEHOUSE_AUDIT_TABLE", "A"),
            ("GATEHOUSE_DIGEST_BUCKET", "d"),
            ("GATEHOUSE_DIGEST_KEY_ID", "alias/k"),
            ("GATEHOUSE_EXPORT_BUCKET", "e"),
        ];
        let c = SentinelConfig::from_env(&env(&base)).unwrap();
        assert_eq!(c.export_prefix, "ocsf/api-activity");
        let mut bad = base.to_vec();
        bad.push(("GATEHOUSE_EXPORT_PREFIX", "../x y"));
        assert!(SentinelConfig::from_env(&env(&bad)).is_err());
        assert!(matches!(
            SentinelConfig::from_env(&env(&base[..3])),
            Err(ConfigError::Missing("GATEHOUSE_EXPORT_BUCKET"))
        ));
        assert_eq!(
            ReaderConfig::from_env(&env(&base)).unwrap().decision_shards,
            4
        );
        assert!(matches!(
            ReaderConfig::from_env(&env(&base[..1])),
            Err(ConfigError::Missing("GATEHOUSE_DIGEST_BUCKET"))
        ));
    }
}
