//! AWS SDK configuration, built once at cold start. `AWS_ENDPOINT_URL` (honoured by the SDK
//! itself) points local and test runs at the emulator.
use aws_config::BehaviorVersion;

pub use aws_config::SdkConfig;
#[cfg(any(feature = "audit", feature = "ratelimit"))]
pub use aws_sdk_dynamodb::Client as DynamoClient;
pub use aws_sdk_secretsmanager::Client as SecretsClient;

pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}
