//! Cold-start wiring shared by the functions' `main`: configuration, clients, secrets, policy,
//! built once and handed to the handlers by reference.
use std::sync::Arc;
use std::time::SystemTime;

use aws_config::SdkConfig;

use crate::audit::dynamo::DynamoAuditSink;
use crate::audit::{AuditLog, AuditSettings};
use crate::auth::{AuthError, CacheConfig, KeyCache, TokenPolicy};
use crate::authorizer::Gate;
use crate::aws::SecretsClient;
use crate::clock::{Clock, SystemClock};
use crate::config::{
    AuditConfig, AuthFailureConfig, AuthorizerConfig, ConfigError, Env, PredictConfig,
    RateLimitConfig,
};
use crate::policy::{PolicyError, PolicyStore};
use crate::predict::Predictor;
use crate::ratelimit::RateLimiter;
use crate::ratelimit::dynamo::DynamoCounter;
use crate::ratelimit::guard::FailureGuard;
use crate::secrets::{SecretError, SecretsManagerJwks, audit_key};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("audit key: {0}")]
    Secret(#[from] SecretError),
    #[error("signing keys: {0}")]
    Keys(#[from] AuthError),
    #[error("prompt screen: {0}")]
    Screen(#[from] crate::screen::ScreenError),
}

type ProcessEnv = Env<fn(&str) -> Option<String>>;

async fn audit_log(
    sdk: &SdkConfig,
    config: &AuditConfig,
    source: &'static str,
    now: SystemTime,
) -> Result<AuditLog, SetupError> {
    let key = audit_key(&SecretsClient::new(sdk), &config.key_secret_id).await?;
    Ok(AuditLog::new(
        Box::new(DynamoAuditSink::new(sdk, &config.table, config.timeout)),
        key,
        AuditSettings {
            content_mode: config.content_mode,
            full_text_max_bytes: config.full_text_max_bytes,
            retention_days: config.retention_days,
            decision_shards: config.decision_shards,
        },
        source,
        now,
    ))
}

fn limiter(sdk: &SdkConfig, config: &RateLimitConfig) -> RateLimiter {
    RateLimiter::new(Box::new(DynamoCounter::new(
        sdk,
        &config.table,
        config.timeout,
    )))
}

pub async fn predictor(sdk: &SdkConfig, env: &ProcessEnv) -> Result<Predictor, SetupError> {
    let config = PredictConfig::from_env(env)?;
    let rate = RateLimitConfig::from_env(env)?;
    let audit = AuditConfig::from_env(env)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Ok(Predictor {
        policy: PolicyStore::embedded()?,
        screener: crate::screen::Screener::new(config.screen)?,
        model: crate::model::backend(&config, sdk),
        config,
        limiter: limiter(sdk, &rate),
        rate_fail_open: rate.fail_open,
        audit: audit_log(sdk, &audit, "predict", clock.now()).await?,
        clock,
    })
}

pub async fn gate(
    sdk: &SdkConfig,
    env: &ProcessEnv,
) -> Result<Gate<SecretsManagerJwks>, SetupError> {
    let config = AuthorizerConfig::from_env(env)?;
    let rate = RateLimitConfig::from_env(env)?;
    let failures = AuthFailureConfig::from_env(env)?;
    let audit = AuditConfig::from_env(env)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let source = SecretsManagerJwks::new(SecretsClient::new(sdk), &config.jwks_secret_id);
    let cache = CacheConfig {
        refresh_ttl: config.keys_refresh,
        max_staleness: config.keys_max_staleness,
        unknown_kid_min_interval: config.unknown_kid_refresh_interval,
    };
    // Secrets at cold start: JWKS AWSCURRENT + AWSPREVIOUS and the audit key, fetched concurrently
    // (one round trip of latency). BatchGetSecretValue is not used: it cannot select a version
    // stage (AWSPREVIOUS still needs GetSecretValue) and its IAM action takes no resource scope,
    // so it would add a `Resource: "*"` statement to save one concurrent call.
    let (keys, audit_log) = tokio::join!(
        KeyCache::load(source, cache, clock.clone()),
        audit_log(sdk, &audit, "authorizer", clock.now())
    );
    Ok(Gate {
        keys: keys?,
        policy: PolicyStore::embedded()?,
        token_policy: TokenPolicy {
            issuer: config.issuer,
            audience: config.audience,
            leeway: config.leeway,
            max_lifetime: config.max_token_lifetime,
        },
        failures: FailureGuard::new(limiter(sdk, &rate), failures),
        audit: audit_log?,
        clock,
    })
}

/// An audit log writing to memory, for tests, benchmarks and local tools (never deployed wiring).
pub fn in_memory_audit(source: &'static str, now: SystemTime) -> AuditLog {
    AuditLog::new(
        Box::new(crate::audit::MemorySink::default()),
        crate::audit::AuditKey::new(b"in-memory-audit-key"),
        AuditSettings {
            content_mode: crate::config::ContentMode::Hash,
            full_text_max_bytes: crate::config::MAX_FULL_TEXT_BYTES,
            retention_days: 1,
            decision_shards: 1,
        },
        source,
        now,
    )
}

/// A predictor whose rate counter and audit sink are in-memory fakes, for tests and benchmarks.
pub fn in_memory_predictor(config: PredictConfig) -> Result<Predictor, SetupError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Ok(Predictor {
        policy: PolicyStore::embedded()?,
        screener: crate::screen::Screener::new(config.screen)?,
        model: Box::new(crate::model::EchoModel),
        config,
        limiter: RateLimiter::new(Box::new(crate::ratelimit::MemoryCounter::default())),
        rate_fail_open: false,
        audit: in_memory_audit("predict", clock.now()),
        clock,
    })
}
