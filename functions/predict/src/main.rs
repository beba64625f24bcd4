//! The predict function behind API Gateway HTTP API (payload 2.0).
//! Cold start builds everything once: config, SDK clients, policy set, model backend.
mod handler;

use gatehouse::config::{Env, PredictConfig};
use gatehouse::policy::PolicyStore;
use gatehouse::predict::Predictor;
use gatehouse::screen::Screener;
use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    gatehouse::logging::init();
    let config = PredictConfig::from_env(&Env::process())?;
    let sdk = gatehouse::aws::sdk_config().await;
    let predictor = Predictor {
        policy: PolicyStore::embedded()?,
        screener: Screener::new(config.screen)?,
        model: gatehouse::model::backend(&config, &sdk),
        config,
    };
    let predictor = &predictor;
    run(service_fn(move |request: Request| {
        handler::handle(predictor, request)
    }))
    .await
}
