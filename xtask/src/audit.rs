//! `cargo xtask audit-verify` and `cargo xtask audit-query`.
use std::io::Write;
use std::time::SystemTime;

use anyhow::{Result, bail};
use clap::Args;
use clap::builder::PossibleValuesParser;
use gatehouse::audit::Decision;
use gatehouse::audit::anchor_aws::{S3Digests, s3_client};
use gatehouse_dev::audit::{
    self, DEFAULT_DIGEST_BUCKET, DEFAULT_DIGEST_KEY, DEFAULT_SECRET, DEFAULT_TABLE, Filters,
    PublicKeySource,
};

/// Where the table is: flags first, then the environment.
#[derive(Args)]
pub struct Target {
    /// Audit table name [env: GATEHOUSE_AUDIT_TABLE; default AuditTable, the local name].
    #[arg(long)]
    table: Option<String>,
    /// Emulator endpoint, e.g. http://127.0.0.1:4566 for the dev stack [env:
    /// GATEHOUSE_EMULATOR_URL]. Without it: the real AWS account of your environment
    /// (AWS_PROFILE, AWS_REGION...).
    #[arg(long)]
    endpoint: Option<String>,
    /// Digest bucket of the sentinel (stack output AuditDigestBucketName) [env:
    /// GATEHOUSE_DIGEST_BUCKET; default auditdigestbucket, the local name].
    #[arg(long)]
    digest_bucket: Option<String>,
    /// The sentinel's KMS key, for its public key (kms:GetPublicKey; stack output
    /// AuditDigestKeyArn) [env: GATEHOUSE_DIGEST_KEY_ID; default alias/AuditDigestKey, local].
    #[arg(long, conflicts_with = "public_key")]
    digest_key: Option<String>,
    /// The sentinel's public key as a PEM or DER file, instead of asking KMS.
    #[arg(long)]
    public_key: Option<std::path::PathBuf>,
}

fn env_or(flag: &Option<String>, var: &str, default: &str) -> String {
    flag.clone()
        .or_else(|| std::env::var(var).ok())
        .unwrap_or_else(|| default.into())
}

impl Target {
    fn table(&self) -> String {
        env_or(&self.table, "GATEHOUSE_AUDIT_TABLE", DEFAULT_TABLE)
    }

    fn endpoint(&self) -> Option<String> {
        self.endpoint
            .clone()
            .or_else(|| std::env::var("GATEHOUSE_EMULATOR_URL").ok())
    }

    fn bucket(&self) -> String {
        env_or(
            &self.digest_bucket,
            "GATEHOUSE_DIGEST_BUCKET",
            DEFAULT_DIGEST_BUCKET,
        )
    }

    fn key_source(&self) -> PublicKeySource {
        match &self.public_key {
            Some(p) => PublicKeySource::File(p.clone()),
            None => PublicKeySource::Kms(env_or(
                &self.digest_key,
                "GATEHOUSE_DIGEST_KEY_ID",
                DEFAULT_DIGEST_KEY,
            )),
        }
    }
}

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    target: Target,
    /// Secret holding the HMAC key [env: GATEHOUSE_AUDIT_KEY_SECRET_ID; default AuditHmacSecret].
    #[arg(long)]
    secret: Option<String>,
    /// Check against the signed digests only, with public material (no HMAC key needed).
    #[arg(long)]
    public_only: bool,
}

fn decisions() -> PossibleValuesParser {
    PossibleValuesParser::new(Decision::ALL.map(Decision::as_str))
}

#[derive(Args)]
pub struct QueryArgs {
    #[command(flatten)]
    target: Target,
    /// Records of this principal (as the by_principal index keys it).
    #[arg(long)]
    principal: Option<String>,
    /// Records with this decision.
    #[arg(long, value_parser = decisions())]
    decision: Option<String>,
    /// Records naming this model.
    #[arg(long)]
    model: Option<String>,
    /// Records of this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// The record(s) of one request (the apigw-requestid header / request_id in bodies).
    #[arg(long)]
    request_id: Option<String>,
    /// How far back, e.g. 90s, 15m, 1h, 7d, 2w.
    #[arg(long, default_value = "1h")]
    since: String,
    /// Until how long ago (default: now).
    #[arg(long)]
    until: Option<String>,
    /// Shards of the by-decision partition (GATEHOUSE_AUDIT_DECISION_SHARDS of the functions).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    shards: u32,
    /// Secret holding the HMAC key, to check each record's seal [env:
    /// GATEHOUSE_AUDIT_KEY_SECRET_ID; default AuditHmacSecret].
    #[arg(long)]
    secret: Option<String>,
    /// Check records against the signed digests only (no HMAC key needed).
    #[arg(long)]
    public_only: bool,
}

pub async fn verify(args: VerifyArgs) -> Result<()> {
    let t = &args.target;
    let sdk = audit::sdk_for(t.endpoint().as_deref()).await?;
    let mut failed = false;
    if !args.public_only {
        let secret = env_or(
            &args.secret,
            "GATEHOUSE_AUDIT_KEY_SECRET_ID",
            DEFAULT_SECRET,
        );
        let report = audit::verify_table(&sdk, &t.table(), &secret).await?;
        for p in &report.problems {
            println!("{:?}\t{}\tseq {}\t{}", p.kind, p.segment, p.seq, p.detail);
        }
        for n in &report.notes {
            println!("note\t{n}");
        }
        println!(
            "chain (HMAC key): {} records in {} segments ({} expired by TTL, {} possibly): {}",
            report.records,
            report.segments,
            report.expired,
            report.maybe_expired,
            if report.is_clean() {
                "intact".to_owned()
            } else {
                format!("{} problems", report.problems.len())
            }
        );
        failed |= !report.is_clean();
    }
    let key = audit::public_key(&sdk, &t.key_source()).await?;
    let report = audit::verify_anchors(&sdk, &t.table(), &t.bucket(), &key).await?;
    for p in &report.problems {
        println!("{:?}\t{}\tseq {}\t{}", p.kind, p.segment, p.seq, p.detail);
    }
    for n in &report.notes {
        println!("note\t{n}");
    }
    for u in &report.unanchored {
        println!(
            "unanchored\t{}\tseq {}..={}\t{} records after the last digest",
            u.segment, u.first_seq, u.last_seq, u.records
        );
    }
    println!(
        "digests (public key): {} digests anchor {} records in {} segments, {} unanchored: {}",
        report.digests,
        report.records_anchored,
        report.segments_anchored,
        report.unanchored_records(),
        if report.is_clean() {
            "consistent".to_owned()
        } else {
            format!("{} problems", report.problems.len())
        }
    );
    failed |= !report.is_clean();
    if failed {
        bail!("audit verification failed");
    }
    Ok(())
}

pub async fn query(args: QueryArgs) -> Result<()> {
    let now = SystemTime::now();
    let since = audit::ago(now, &args.since)?;
    let until = match &args.until {
        Some(u) => audit::ago(now, u)?,
        None => now,
    };
    let filters = Filters {
        principal: args.principal.clone(),
        decision: args.decision.as_deref().and_then(Decision::parse),
        model: args.model.clone(),
        tenant: args.tenant.clone(),
        request_id: args.request_id.clone(),
    };
    let t = &args.target;
    let sdk = audit::sdk_for(t.endpoint().as_deref()).await?;
    let records = audit::query(&sdk, &t.table(), &filters, since, until, args.shards).await?;
    let keys = if args.public_only {
        None
    } else {
        let secret = env_or(
            &args.secret,
            "GATEHOUSE_AUDIT_KEY_SECRET_ID",
            DEFAULT_SECRET,
        );
        Some(audit::keys(&sdk, &secret).await?)
    };
    let key = audit::public_key(&sdk, &t.key_source()).await?;
    let digests = S3Digests::new(s3_client(&sdk), t.bucket());
    let checks = audit::check_records(&records, keys.as_deref(), Some((&digests, &key))).await?;
    // Written by hand, not println!: a closed pipe (`| head`) ends the output instead of panicking.
    let mut out = std::io::stdout().lock();
    for (r, c) in records.iter().zip(&checks) {
        if writeln!(out, "{}", audit::json_line(r, c)).is_err() {
            break;
        }
    }
    let unverified = checks.iter().filter(|c| !c.verified()).count();
    if unverified > 0 {
        eprintln!(
            "{unverified} of {} records are NOT verified (see `verification`)",
            records.len()
        );
    }
    Ok(())
}
