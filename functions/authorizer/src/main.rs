//! API Gateway HTTP API Lambda authorizer (payload 2.0, simple responses).
//! Cold start builds everything once (config, SDK clients, key ring, policy, audit key) in
//! `gatehouse::setup::gate`; each event borrows it.
mod handler;

use gatehouse::config::Env;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    gatehouse::logging::init();
    let env = Env::process();
    let sdk = gatehouse::aws::sdk_config(&env)?;
    let gate = gatehouse::setup::gate(&sdk, &env).await?;
    let gate = &gate;
    run(service_fn(move |event: LambdaEvent<_>| {
        handler::handle(gate, event)
    }))
    .await
}
