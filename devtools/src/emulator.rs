//! The local AWS emulator: moto's server (DynamoDB with Streams, Secrets Manager, S3, KMS on one port), run one
//! request at a time (see `devtools/python/moto_serial.py` for why).
use std::time::Duration;

use anyhow::Result;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use tokio::process::Command;

use crate::paths;
use crate::procs::{Managed, ensure_port_free, wait_for_port};

pub const REGION: &str = "us-east-1";
/// Dummy credentials: moto wants SigV4-signed requests but checks no secret.
pub const ACCESS_KEY: &str = "gatehouse-local";
pub const SECRET_KEY: &str = "gatehouse-local-secret";

pub struct Emulator {
    pub endpoint: String,
    pub port: u16,
    proc: Managed,
}

impl Emulator {
    /// Starts the emulator on 127.0.0.1:`port` and waits until it answers.
    pub async fn start(port: u16) -> Result<Self> {
        ensure_port_free(port, "the AWS emulator").await?;
        let script = paths::repo_root()
            .join("devtools")
            .join("python")
            .join("moto_serial.py");
        let mut cmd = Command::new(paths::venv_bin().join("python"));
        cmd.arg(script)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let log = paths::logs_dir().join(format!("emulator-{port}.log"));
        let mut proc = Managed::spawn("AWS emulator (moto)", cmd, &log)?;
        wait_for_port(port, Duration::from_secs(60), &mut proc).await?;
        Ok(Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            proc,
        })
    }

    pub async fn stop(&mut self) {
        self.proc.stop().await;
    }

    pub async fn sdk_config(&self) -> SdkConfig {
        sdk_config(&self.endpoint).await
    }
}

/// SDK configuration for the emulator at `endpoint` (dummy keys, fixed region).
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            ACCESS_KEY,
            SECRET_KEY,
            None,
            None,
            "gatehouse-local",
        ))
        .load()
        .await
}

/// The environment a process needs to talk to the emulator through the AWS SDK.
pub fn client_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", REGION),
        ("AWS_DEFAULT_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}
