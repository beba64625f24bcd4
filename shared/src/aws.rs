//! AWS SDK configuration, built once at cold start from the environment Lambda gives every
//! function (AWS Lambda developer guide, "Defined runtime environment variables"): `AWS_REGION`,
//! and the execution role's `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`.
//! `AWS_ENDPOINT_URL`, when set, points every client at one endpoint (the local emulator).
//!
//! Why not `aws_config::load_defaults`: its provider chains (shared config and credentials files,
//! SSO, STS web identity, ECS and IMDS) are code a Lambda function never runs, yet it is linked
//! into every binary that calls it. Reading the three variables Lambda sets keeps the
//! credentials provider a library one (`EnvironmentVariableCredentialsProvider`, re-read on each
//! resolve) and leaves the rest out of the binaries.
use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::config::SharedCredentialsProvider;

pub use aws_config::SdkConfig;
#[cfg(any(feature = "audit", feature = "ratelimit"))]
pub use aws_sdk_dynamodb::Client as DynamoClient;
pub use aws_sdk_secretsmanager::Client as SecretsClient;

use crate::config::{ConfigError, Env};

/// The SDK configuration from the Lambda environment. Errors when `AWS_REGION` (or
/// `AWS_DEFAULT_REGION`) is unset: without a region no request can be signed.
pub fn sdk_config<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<SdkConfig, ConfigError> {
    let region = env
        .required("AWS_REGION")
        .or_else(|_| env.required("AWS_DEFAULT_REGION"))
        .map_err(|_| ConfigError::Missing("AWS_REGION"))?;
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.trim().to_owned()))
        .credentials_provider(SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ));
    if let Ok(endpoint) = env.required("AWS_ENDPOINT_URL") {
        builder = builder.endpoint_url(endpoint.trim());
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::env;

    #[test]
    fn region_is_required_and_the_endpoint_is_optional() {
        assert!(matches!(
            sdk_config(&env(&[])),
            Err(ConfigError::Missing("AWS_REGION"))
        ));
        let c = sdk_config(&env(&[("AWS_REGION", "eu-west-1")])).unwrap();
        assert_eq!(c.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(c.endpoint_url(), None);
        assert!(c.credentials_provider().is_some());
        let c = sdk_config(&env(&[
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        ]))
        .unwrap();
        assert_eq!(c.endpoint_url(), Some("http://127.0.0.1:4566"));
    }
}
