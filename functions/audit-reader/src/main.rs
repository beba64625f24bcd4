//! `audit-reader`: `GET /v1/audit` for auditors (API Gateway HTTP API, payload 2.0). Its role
//! may only query the audit table, read the digests and fetch the sentinel's public key. Cold
//! start builds everything once in `gatehouse::setup::reader`; the logic is
//! `gatehouse::audit::reader`.
mod handler;

use gatehouse::config::Env;
use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    gatehouse::logging::init();
    let env = Env::process();
    let sdk = gatehouse::aws::sdk_config(&env)?;
    let reader = gatehouse::setup::reader(&sdk, &env).await?;
    let reader = &reader;
    run(service_fn(move |request: Request| {
        handler::handle(reader, request)
    }))
    .await
}
