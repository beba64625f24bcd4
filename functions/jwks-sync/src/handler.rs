//! Thin edge: any event → one sync run (or a CloudFormation custom-resource answer) → its report.
//! A failed sync is a report with `"outcome": "failed"`, not a function error: the secret is
//! untouched, and the EMF metric `JwksSyncFailed` (alarmed) counts it.
use gatehouse::jwks_sync::{Http, JwksStore, Syncer, handle_event};
use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;

pub async fn handle<H: Http, S: JwksStore>(
    syncer: &Syncer<H, S>,
    event: LambdaEvent<Value>,
) -> Result<Value, Error> {
    Ok(handle_event(syncer, &event.payload).await)
}
