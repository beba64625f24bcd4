//! Cold-start wiring for the functions' `main`: configuration, clients, secrets, policy, built
//! once and handed to the handlers by reference. Each function's constructor sits behind that
//! function's feature, so a binary links only its own wiring.
#[cfg(any(feature = "authorizer", feature = "predict"))]
use std::sync::Arc;
#[cfg(feature = "audit")]
use std::time::SystemTime;

#[cfg(any(feature = "authorizer", feature = "predict"))]
use aws_config::SdkConfig;

#[cfg(feature = "audit")]
use crate::audit::{AuditLog, AuditSettings};
#[cfg(any(feature = "authorizer", feature = "predict"))]
use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, Env};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[cfg(feature = "policy")]
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error("secret: {0}")]
    Secret(#[from] crate::secrets::SecretError),
    #[cfg(feature = "audit-core")]
    #[error(transparent)]
    AuditKey(#[from] crate::audit::record::KeyTooShort),
    #[cfg(feature = "audit-anchor")]
    #[error("audit anchor: {0}")]
    Anchor(String),
    #[cfg(feature = "auth")]
    #[error("signing keys: {0}")]
    Keys(#[from] crate::auth::AuthError),
    #[cfg(feature = "screen")]
    #[error("prompt screen: {0}")]
    Screen(#[from] crate::screen::ScreenError),
    #[cfg(feature = "jwks-sync")]
    #[error("{0}")]
    Http(String),
}

/// The process environment, read through `Env`.
pub type ProcessEnv = Env<fn(&str) -> Option<String>>;

#[cfg(any(feature = "authorizer", feature = "predict"))]
async fn audit_log(
    sdk: &SdkConfig,
    config: &crate::config::AuditConfig,
    source: &'static str,
    now: SystemTime,
) -> Result<AuditLog, SetupError> {
    let client = crate::aws::SecretsClient::new(sdk);
    let key = crate::secrets::audit_key(&client, &config.key_secret_id).await?;
    Ok(AuditLog::new(
        Box::new(crate::audit::dynamo::DynamoAuditSink::new(
            sdk,
            &config.table,
            config.timeout,
        )),
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

#[cfg(feature = "authorizer")]
fn limiter(
    sdk: &SdkConfig,
    config: &crate::config::RateLimitConfig,
) -> crate::ratelimit::RateLimiter {
    crate::ratelimit::RateLimiter::new(Box::new(crate::ratelimit::dynamo::DynamoCounter::new(
        sdk,
        &config.table,
        config.timeout,
    )))
}

/// The model backend the configuration names.
#[cfg(feature = "predict")]
pub fn model_backend(
    config: &crate::config::PredictConfig,
    sdk: &SdkConfig,
) -> Box<dyn crate::model::ModelBackend> {
    use crate::config::ModelBackendKind;
    match config.model_backend {
        ModelBackendKind::Echo => Box::new(crate::model::EchoModel),
        ModelBackendKind::Bedrock => Box::new(crate::bedrock::BedrockModel::new(
            aws_sdk_bedrockruntime::Client::new(sdk),
            config.bedrock_models.clone(),
        )),
    }
}

/// Cold start refuses a deployment whose requests without `model` could never be served: the
/// default model must be a policy model that is enabled and that the backend runs. Every Bedrock
/// mapping must name a policy model (a typo would silently serve nothing). Enabled models the
/// backend cannot run are logged; predict refuses them per request, before any quota is spent,
/// with the same answer as an unknown model (issue 10.1).
#[cfg(feature = "predict")]
pub fn check_models(
    policy: &crate::policy::PolicyStore,
    backend: &dyn crate::model::ModelBackend,
    config: &crate::config::PredictConfig,
) -> Result<(), ConfigError> {
    let default = config.default_model.as_str();
    match policy.model(default) {
        None => {
            return Err(ConfigError::Invalid {
                name: "GATEHOUSE_DEFAULT_MODEL",
                reason: format!("{default:?} is not a model of infra/policy/entities.json"),
            });
        }
        Some(m) if !m.enabled => {
            return Err(ConfigError::Invalid {
                name: "GATEHOUSE_DEFAULT_MODEL",
                reason: format!("{default:?} is disabled in the policy"),
            });
        }
        Some(_) if !backend.serves(default) => {
            return Err(ConfigError::Invalid {
                name: "GATEHOUSE_DEFAULT_MODEL",
                reason: format!(
                    "the {:?} backend cannot run {default:?} (with bedrock, name one of GATEHOUSE_BEDROCK_MODELS)",
                    config.model_backend
                ),
            });
        }
        Some(_) => {}
    }
    if let Some(unknown) = config
        .bedrock_models
        .keys()
        .find(|k| policy.model(k).is_none())
    {
        return Err(ConfigError::Invalid {
            name: "GATEHOUSE_BEDROCK_MODELS",
            reason: format!("{unknown:?} is not a model of infra/policy/entities.json"),
        });
    }
    let unserved: Vec<&str> = policy
        .models()
        .filter(|(id, m)| m.enabled && !backend.serves(id))
        .map(|(id, _)| id)
        .collect();
    if !unserved.is_empty() {
        tracing::warn!(models = ?unserved, "enabled policy models without a backend here: refused per request");
    }
    Ok(())
}

/// The Bedrock Guardrails second opinion, when the configuration names a guardrail.
#[cfg(all(feature = "predict", feature = "bedrock"))]
pub fn second_opinion(
    config: &crate::config::PredictConfig,
    sdk: &SdkConfig,
) -> Option<crate::guardrail::SecondOpinion> {
    config
        .guardrail
        .as_ref()
        .map(|g| crate::guardrail::SecondOpinion {
            guardrail: Box::new(crate::bedrock::BedrockGuardrail::new(
                aws_sdk_bedrockruntime::Client::new(sdk),
                g.id.clone(),
                g.version.clone(),
            )),
            config: g.clone(),
        })
}

/// predict's state: policy, screen, model backend, rate limiter, token budgets, audit log
/// (with its key).
#[cfg(feature = "predict")]
pub async fn predictor(
    sdk: &SdkConfig,
    env: &ProcessEnv,
) -> Result<crate::predict::Predictor, SetupError> {
    use crate::config::{AuditConfig, PredictConfig, RateLimitConfig};
    let config = PredictConfig::from_env(env)?;
    let rate = RateLimitConfig::from_env(env)?;
    let audit = AuditConfig::from_env(env)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // Building the screen's rule sets is the longest piece of CPU work at cold start: started
    // first, on the blocking pool, it overlaps the policy parse and the audit key's network
    // round trip, so cold start pays the longest of them, not their sum.
    let screen = config.screen;
    let screener = tokio::task::spawn_blocking(move || crate::screen::Screener::new(screen));
    let policy = crate::policy::PolicyStore::embedded()?;
    let model = model_backend(&config, sdk);
    check_models(&policy, model.as_ref(), &config)?;
    let counter = crate::ratelimit::dynamo::DynamoCounter::new(sdk, &rate.table, rate.timeout);
    let audit = audit_log(sdk, &audit, "predict", clock.now()).await?;
    let screener = screener.await.map_err(|e| {
        crate::screen::ScreenError::Rules(format!("building the rule sets did not finish: {e}"))
    })??;
    Ok(crate::predict::Predictor {
        policy,
        screener,
        model,
        limiter: crate::ratelimit::RateLimiter::new(Box::new(counter.clone())),
        budgets: crate::ratelimit::budget::Budgets::new(Box::new(counter), config.suspension),
        second_opinion: second_opinion(&config, sdk),
        config,
        rate_fail_open: rate.fail_open,
        audit,
        clock,
    })
}

/// The authorizer's state: key ring (JWKS AWSCURRENT + AWSPREVIOUS), policy, failed-auth guard,
/// audit log.
#[cfg(feature = "authorizer")]
pub async fn gate(
    sdk: &SdkConfig,
    env: &ProcessEnv,
) -> Result<crate::authorizer::Gate<crate::secrets::SecretsManagerJwks>, SetupError> {
    use crate::auth::{CacheConfig, KeyCache, TokenPolicy};
    use crate::config::{AuditConfig, AuthFailureConfig, AuthorizerConfig, RateLimitConfig};
    let config = AuthorizerConfig::from_env(env)?;
    let rate = RateLimitConfig::from_env(env)?;
    let failures = AuthFailureConfig::from_env(env)?;
    let audit = AuditConfig::from_env(env)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let source = crate::secrets::SecretsManagerJwks::new(
        crate::aws::SecretsClient::new(sdk),
        &config.jwks_secret_id,
    );
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
    Ok(crate::authorizer::Gate {
        keys: keys?,
        policy: crate::policy::PolicyStore::embedded()?,
        token_policy: TokenPolicy {
            issuer: config.issuer,
            audience: config.audience,
            leeway: config.leeway,
            max_lifetime: config.max_token_lifetime,
            claims: config.claims,
        },
        failures: crate::ratelimit::guard::FailureGuard::new(limiter(sdk, &rate), failures),
        audit: audit_log?,
        clock,
    })
}

/// jwks-sync's state: configuration, the HTTPS client with the sync's limits, the JWKS secret.
#[cfg(feature = "jwks-sync")]
pub fn jwks_syncer(
    sdk: &aws_config::SdkConfig,
    env: &ProcessEnv,
) -> Result<
    crate::jwks_sync::Syncer<
        crate::jwks_sync::http::HyperHttp,
        crate::jwks_sync::store::SecretsManagerStore,
    >,
    SetupError,
> {
    let config = crate::config::JwksSyncConfig::from_env(env)?;
    let http = crate::jwks_sync::http::HyperHttp::new(config.timeout, config.max_bytes)
        .map_err(SetupError::Http)?;
    let store = crate::jwks_sync::store::SecretsManagerStore::new(
        crate::aws::SecretsClient::new(sdk),
        &config.jwks_secret_id,
    );
    Ok(crate::jwks_sync::Syncer {
        config,
        http,
        store,
    })
}

/// `audit-sentinel`'s state: the digest store (S3), the signer (KMS), the predecessor lookup
/// (DynamoDB GetItem) and the OCSF export (S3). Nothing is fetched at cold start: the first
/// batch opens the connections.
#[cfg(feature = "audit-sentinel")]
pub fn sentinel<F: Fn(&str) -> Option<String>>(
    sdk: &aws_config::SdkConfig,
    env: &Env<F>,
) -> Result<crate::audit::sentinel::Sentinel, SetupError> {
    use crate::audit::anchor_aws::{DynamoLookup, KmsSigner, S3Digests, S3Export, s3_client};
    let config = crate::config::SentinelConfig::from_env(env)?;
    let s3 = s3_client(sdk);
    Ok(crate::audit::sentinel::Sentinel::new(
        Box::new(S3Digests::new(s3.clone(), &config.anchor.digest_bucket)),
        Box::new(KmsSigner::new(
            aws_sdk_kms::Client::new(sdk),
            &config.anchor.digest_key_id,
        )),
        Box::new(DynamoLookup::new(
            aws_sdk_dynamodb::Client::new(sdk),
            &config.anchor.audit_table,
        )),
        Box::new(S3Export::new(s3, &config.export_bucket)),
        config.export_prefix,
        crate::audit::ocsf::OcsfContext {
            product_version: env!("CARGO_PKG_VERSION").to_owned(),
        },
    ))
}

/// `audit-reader`'s state: policy, the table's indexes (read-only), the digests and the
/// sentinel's public key (fetched once, at cold start: `kms:GetPublicKey`).
#[cfg(feature = "audit-reader")]
pub async fn reader<F: Fn(&str) -> Option<String>>(
    sdk: &aws_config::SdkConfig,
    env: &Env<F>,
) -> Result<crate::audit::reader::Reader, SetupError> {
    use crate::audit::anchor_aws::{S3Digests, kms_public_key, s3_client};
    let config = crate::config::ReaderConfig::from_env(env)?;
    let digest_key = kms_public_key(&aws_sdk_kms::Client::new(sdk), &config.anchor.digest_key_id)
        .await
        .map_err(|e| SetupError::Anchor(e.0))?;
    Ok(crate::audit::reader::Reader {
        policy: crate::policy::PolicyStore::embedded()?,
        index: Box::new(crate::audit::reader::DynamoIndex {
            client: aws_sdk_dynamodb::Client::new(sdk),
            table: config.anchor.audit_table,
        }),
        digests: Box::new(S3Digests::new(s3_client(sdk), config.anchor.digest_bucket)),
        digest_key,
        decision_shards: config.decision_shards,
        problem_base: config.problem_base,
        token_leeway: config.token_leeway,
    })
}

/// The in-memory audit log's key: a fixed test value, never deployed.
#[cfg(feature = "audit")]
const IN_MEMORY_AUDIT_KEY: &[u8] = b"in-memory-audit-key-for-tests-only-0123";

/// An audit log writing to memory, for tests, benchmarks and local tools (never deployed wiring).
#[cfg(feature = "audit")]
pub fn in_memory_audit(source: &'static str, now: SystemTime) -> Result<AuditLog, SetupError> {
    Ok(AuditLog::new(
        Box::new(crate::audit::MemorySink::default()),
        crate::audit::AuditKey::new(IN_MEMORY_AUDIT_KEY)?,
        AuditSettings {
            content_mode: crate::config::ContentMode::Hash,
            full_text_max_bytes: crate::config::MAX_FULL_TEXT_BYTES,
            retention_days: 1,
            decision_shards: 1,
        },
        source,
        now,
    ))
}

/// A predictor whose rate table and audit sink are in-memory fakes, for tests and benchmarks.
#[cfg(feature = "predict")]
pub fn in_memory_predictor(
    config: crate::config::PredictConfig,
) -> Result<crate::predict::Predictor, SetupError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // One in-memory store plays the whole rate table: counters, budgets, suspensions.
    let table = Arc::new(crate::ratelimit::budget::MemoryLedger::default());
    Ok(crate::predict::Predictor {
        policy: crate::policy::PolicyStore::embedded()?,
        screener: crate::screen::Screener::new(config.screen)?,
        model: Box::new(crate::model::EchoModel),
        limiter: crate::ratelimit::RateLimiter::new(Box::new(table.clone())),
        budgets: crate::ratelimit::budget::Budgets::new(Box::new(table), config.suspension),
        second_opinion: None,
        config,
        rate_fail_open: false,
        audit: in_memory_audit("predict", clock.now())?,
        clock,
    })
}
