//! jwks-sync: copies the identity provider's public JWKS into the JWKS secret on a schedule
//! (EventBridge) and once right after a deploy (a CloudFormation custom resource). Cold start
//! builds the configuration, the HTTPS client and the Secrets Manager client once, in
//! `gatehouse::setup::jwks_syncer`; each invocation borrows them.
mod handler;

use gatehouse::config::Env;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    gatehouse::logging::init();
    let env = Env::process();
    let sdk = gatehouse::aws::sdk_config(&env)?;
    let syncer = gatehouse::setup::jwks_syncer(&sdk, &env)?;
    let syncer = &syncer;
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        handler::handle(syncer, event)
    }))
    .await
}
