//! Thin edge: DynamoDB stream event → changes → shared sentinel → batch response. A storage or
//! signing failure is a function error, so the event source mapping retries the batch from the
//! same stream position (nothing is lost; `IteratorAge` shows the delay).
use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use gatehouse::audit::sentinel::{self, Sentinel};
use lambda_runtime::{Error, LambdaEvent};

pub async fn handle(
    sentinel: &Sentinel,
    event: LambdaEvent<Event>,
) -> Result<DynamoDbEventResponse, Error> {
    let changes = sentinel::lambda::changes(&event.payload);
    let outcome = sentinel.process(&changes).await.map_err(|e| {
        tracing::error!(error = %e, records = changes.len(), "batch failed; it will be retried");
        e
    })?;
    sentinel::report(&outcome);
    tracing::info!(
        records = changes.len(),
        verified = outcome.verified,
        findings = outcome.findings.len(),
        digests = outcome.digests_written,
        exported = outcome.exported,
        ttl_removals = outcome.ttl_removals,
        "audit batch"
    );
    Ok(DynamoDbEventResponse::default())
}
