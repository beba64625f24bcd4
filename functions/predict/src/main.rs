//! The predict function behind API Gateway HTTP API (payload 2.0).
//! Cold start builds everything once (config, SDK clients, policy, model backend, rate limiter,
//! audit log with its key) in `gatehouse::setup::predictor`; each request borrows it.
mod handler;

use gatehouse::config::Env;
use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    gatehouse::logging::init();
    let env = Env::process();
    let sdk = gatehouse::aws::sdk_config(&env)?;
    let predictor = gatehouse::setup::predictor(&sdk, &env).await?;
    let predictor = &predictor;
    run(service_fn(move |request: Request| {
        handler::handle(predictor, request)
    }))
    .await
}
