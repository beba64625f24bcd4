//! `audit-sentinel`: consumes the audit table's DynamoDB Stream (an event source mapping sends
//! batches), re-verifies each record, anchors signed digests in the Object Lock bucket and exports
//! OCSF events. Cold start builds the clients once in `gatehouse::setup::sentinel`; the logic is
//! `gatehouse::audit::sentinel`.
mod handler;

use gatehouse::config::Env;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    gatehouse::logging::init();
    let env = Env::process();
    let sdk = gatehouse::aws::sdk_config(&env)?;
    let sentinel = gatehouse::setup::sentinel(&sdk, &env)?;
    let sentinel = &sentinel;
    run(service_fn(move |event: LambdaEvent<_>| {
        handler::handle(sentinel, event)
    }))
    .await
}
