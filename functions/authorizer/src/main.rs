//! API Gateway HTTP API Lambda authorizer (payload 2.0, simple responses).
//! Cold start builds everything once: config, SDK client, key ring, Cedar policy set.
mod handler;

use std::sync::Arc;

use gatehouse::auth::{CacheConfig, KeyCache, TokenPolicy};
use gatehouse::authorizer::Gate;
use gatehouse::aws::SecretsClient;
use gatehouse::clock::SystemClock;
use gatehouse::config::{AuthorizerConfig, Env};
use gatehouse::policy::PolicyStore;
use gatehouse::secrets::SecretsManagerJwks;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    gatehouse::logging::init();
    let config = AuthorizerConfig::from_env(&Env::process())?;
    let sdk = gatehouse::aws::sdk_config().await;
    let source = SecretsManagerJwks::new(SecretsClient::new(&sdk), &config.jwks_secret_id);
    let cache = CacheConfig {
        refresh_ttl: config.keys_refresh,
        max_staleness: config.keys_max_staleness,
        unknown_kid_min_interval: config.unknown_kid_refresh_interval,
    };
    let gate = Gate {
        keys: KeyCache::load(source, cache, Arc::new(SystemClock)).await?,
        policy: PolicyStore::embedded()?,
        token_policy: TokenPolicy {
            issuer: config.issuer,
            audience: config.audience,
            leeway: config.leeway,
            max_lifetime: config.max_token_lifetime,
        },
    };
    let gate = &gate;
    run(service_fn(move |event: LambdaEvent<_>| {
        handler::handle(gate, event)
    }))
    .await
}
