//! Audit-log tools behind `cargo xtask audit-verify` and `audit-query`: read the table (emulator
//! or real), verify the chain with the keys from Secrets Manager, query by principal or decision.
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use aws_config::{BehaviorVersion, SdkConfig};
use gatehouse::audit::dynamo;
use gatehouse::audit::verify::{self, Report};
use gatehouse::audit::{Fields, millis};

/// Local names of the template's resources (the emulator names them by logical id).
pub const DEFAULT_TABLE: &str = "AuditTable";
pub const DEFAULT_SECRET: &str = "AuditHmacSecret";

/// The emulator at `endpoint` when given, else the real AWS account of the environment.
pub async fn sdk_for(endpoint: Option<&str>) -> SdkConfig {
    match endpoint {
        Some(e) => crate::emulator::sdk_config(e).await,
        None => aws_config::defaults(BehaviorVersion::latest()).load().await,
    }
}

/// Scans the whole table and verifies every segment against AWSCURRENT and AWSPREVIOUS.
pub async fn verify_table(sdk: &SdkConfig, table: &str, secret_id: &str) -> Result<Report> {
    let keys = gatehouse::secrets::audit_keys(&aws_sdk_secretsmanager::Client::new(sdk), secret_id)
        .await
        .context("reading the audit HMAC key")?;
    let records = dynamo::scan_all(&aws_sdk_dynamodb::Client::new(sdk), table).await?;
    Ok(verify::verify(&records, &keys, SystemTime::now()))
}

pub enum Filter {
    Principal(String),
    Decision(String),
}

/// Records matching `filter` with a time in [since, until], oldest first.
pub async fn query(
    sdk: &SdkConfig,
    table: &str,
    filter: &Filter,
    since: SystemTime,
    until: SystemTime,
    shards: u32,
) -> Result<Vec<Fields>> {
    let client = aws_sdk_dynamodb::Client::new(sdk);
    let (lo, hi) = (millis(since), millis(until));
    if lo > hi {
        bail!("--since is after --until");
    }
    Ok(match filter {
        Filter::Principal(p) => dynamo::by_principal(&client, table, p, lo, hi).await?,
        Filter::Decision(d) => dynamo::by_decision(&client, table, d, shards, lo, hi).await?,
    })
}

/// `90s`, `15m`, `1h`, `7d` → a duration.
pub fn parse_ago(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s.len().saturating_sub(1);
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .with_context(|| format!("{s:?}: expected <number><s|m|h|d>"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("{s:?}: unit must be s, m, h or d"),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ago() {
        assert_eq!(parse_ago("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ago("90s").unwrap(), Duration::from_secs(90));
        assert!(parse_ago("1w").is_err());
        assert!(parse_ago("h").is_err());
    }
}
