//! `cargo xtask audit-verify` and `cargo xtask audit-query`.
use std::io::Write;
use std::time::SystemTime;

use anyhow::{Result, bail};
use clap::Args;
use gatehouse::audit::dynamo::to_json;
use gatehouse_dev::audit::{self, DEFAULT_SECRET, DEFAULT_TABLE, Filter};

/// Where the table is: flags first, then the environment.
#[derive(Args)]
pub struct Target {
    /// Audit table name [env: GATEHOUSE_AUDIT_TABLE; default AuditTable, the local name].
    #[arg(long)]
    table: Option<String>,
    /// Emulator endpoint, e.g. http://127.0.0.1:4566 [env: GATEHOUSE_EMULATOR_URL]. Without it:
    /// the real AWS account of your environment (AWS_PROFILE, AWS_REGION...).
    #[arg(long)]
    endpoint: Option<String>,
}

impl Target {
    fn table(&self) -> String {
        self.table
            .clone()
            .or_else(|| std::env::var("GATEHOUSE_AUDIT_TABLE").ok())
            .unwrap_or_else(|| DEFAULT_TABLE.into())
    }

    fn endpoint(&self) -> Option<String> {
        self.endpoint
            .clone()
            .or_else(|| std::env::var("GATEHOUSE_EMULATOR_URL").ok())
    }
}

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    target: Target,
    /// Secret holding the HMAC key [env: GATEHOUSE_AUDIT_KEY_SECRET_ID; default AuditHmacSecret].
    #[arg(long)]
    secret: Option<String>,
}

#[derive(Args)]
pub struct QueryArgs {
    #[command(flatten)]
    target: Target,
    #[arg(
        long,
        conflicts_with = "decision",
        required_unless_present = "decision"
    )]
    principal: Option<String>,
    /// allowed | invalid | forbidden | rate_limited | blocked | backend_error | unavailable | denied
    #[arg(long)]
    decision: Option<String>,
    /// How far back, e.g. 15m, 1h, 7d.
    #[arg(long, default_value = "1h")]
    since: String,
    /// Until how long ago (default: now).
    #[arg(long)]
    until: Option<String>,
    /// Shards of the by-decision partition (GATEHOUSE_AUDIT_DECISION_SHARDS of the functions).
    #[arg(long, default_value_t = 4)]
    shards: u32,
}

pub async fn verify(args: VerifyArgs) -> Result<()> {
    let secret = args
        .secret
        .or_else(|| std::env::var("GATEHOUSE_AUDIT_KEY_SECRET_ID").ok())
        .unwrap_or_else(|| DEFAULT_SECRET.into());
    let sdk = audit::sdk_for(args.target.endpoint().as_deref()).await;
    let report = audit::verify_table(&sdk, &args.target.table(), &secret).await?;
    for p in &report.problems {
        println!("{:?}\t{}\tseq {}\t{}", p.kind, p.segment, p.seq, p.detail);
    }
    for n in &report.notes {
        println!("note\t{n}");
    }
    println!(
        "{} records in {} segments: {}",
        report.records,
        report.segments,
        if report.is_clean() {
            "chain intact".to_owned()
        } else {
            format!("{} problems", report.problems.len())
        }
    );
    if !report.is_clean() {
        bail!("audit chain verification failed");
    }
    Ok(())
}

pub async fn query(args: QueryArgs) -> Result<()> {
    let now = SystemTime::now();
    let since = now - audit::parse_ago(&args.since)?;
    let until = match &args.until {
        Some(u) => now - audit::parse_ago(u)?,
        None => now,
    };
    let filter = match (args.principal, args.decision) {
        (Some(p), _) => Filter::Principal(p),
        (None, Some(d)) => Filter::Decision(d),
        (None, None) => bail!("give --principal or --decision"),
    };
    let sdk = audit::sdk_for(args.target.endpoint().as_deref()).await;
    let records = audit::query(
        &sdk,
        &args.target.table(),
        &filter,
        since,
        until,
        args.shards,
    )
    .await?;
    // Written by hand, not println!: a closed pipe (`| head`) ends the output instead of panicking.
    let mut out = std::io::stdout().lock();
    for r in &records {
        if writeln!(out, "{}", to_json(r)).is_err() {
            break;
        }
    }
    Ok(())
}
