//! Audit-log tools behind `cargo xtask audit-verify` and `audit-query`: read the table (emulator
//! or real), verify the chain with the HMAC keys from Secrets Manager, check the table against
//! the sentinel's signed digests with public material only, and query records with every filter
//! combined, each record marked verified or not.
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::ProvideCredentials;
use gatehouse::audit::anchor::{self, AnchorReport};
use gatehouse::audit::anchor_aws::{S3Digests, kms_public_key, s3_client};
use gatehouse::audit::digest::{DigestPublicKey, DigestStore};
use gatehouse::audit::dynamo;
use gatehouse::audit::reader::{self, AuditQuery, DynamoIndex};
use gatehouse::audit::verify::{self, Report};
use gatehouse::audit::{AuditKey, Decision, Field, Fields, millis, record};

/// Local names of the template's resources (the emulator names them by logical id; buckets in
/// lower case, KMS keys by alias).
pub const DEFAULT_TABLE: &str = "AuditTable";
pub const DEFAULT_SECRET: &str = "AuditHmacSecret";
pub const DEFAULT_DIGEST_BUCKET: &str = "auditdigestbucket";
pub const DEFAULT_DIGEST_KEY: &str = "alias/AuditDigestKey";
/// The dev stack's emulator, for the hint when no credentials are found.
pub const DEV_ENDPOINT: &str = "http://127.0.0.1:4566";

/// The emulator at `endpoint` when given, else the real AWS account of the environment, whose
/// credentials and region are checked first: without them the answer is one line naming what is
/// missing (and the dev stack's `--endpoint`), not an SDK error dump.
pub async fn sdk_for(endpoint: Option<&str>) -> Result<SdkConfig> {
    if let Some(e) = endpoint {
        return Ok(crate::emulator::sdk_config(e).await);
    }
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let hint = format!("for the local dev stack pass --endpoint {DEV_ENDPOINT}");
    if sdk.region().is_none() {
        bail!("no AWS region configured (set AWS_REGION or a profile's region); {hint}");
    }
    let Some(provider) = sdk.credentials_provider() else {
        bail!("no AWS credentials provider available; {hint}");
    };
    if provider.provide_credentials().await.is_err() {
        bail!(
            "no AWS credentials found (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY, or run `aws sso login`); {hint}"
        );
    }
    Ok(sdk)
}

/// Scans the whole table and verifies every segment against AWSCURRENT and AWSPREVIOUS.
pub async fn verify_table(sdk: &SdkConfig, table: &str, secret_id: &str) -> Result<Report> {
    let keys = keys(sdk, secret_id).await?;
    let records = dynamo::scan_all(&aws_sdk_dynamodb::Client::new(sdk), table).await?;
    Ok(verify::verify(&records, &keys, SystemTime::now()))
}

pub async fn keys(sdk: &SdkConfig, secret_id: &str) -> Result<Vec<AuditKey>> {
    gatehouse::secrets::audit_keys(&aws_sdk_secretsmanager::Client::new(sdk), secret_id)
        .await
        .context("reading the audit HMAC key")
}

/// Where the sentinel's public key comes from.
pub enum PublicKeySource {
    /// `kms:GetPublicKey` on this key (id, ARN or alias).
    Kms(String),
    /// A PEM (or DER) SubjectPublicKeyInfo file an auditor keeps.
    File(std::path::PathBuf),
}

pub async fn public_key(sdk: &SdkConfig, source: &PublicKeySource) -> Result<DigestPublicKey> {
    match source {
        PublicKeySource::Kms(id) => kms_public_key(&aws_sdk_kms::Client::new(sdk), id)
            .await
            .map_err(|e| anyhow!("{e}")),
        PublicKeySource::File(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            match std::str::from_utf8(&bytes) {
                Ok(text) if text.contains("-----BEGIN") => DigestPublicKey::from_pem(text),
                _ => DigestPublicKey::from_spki_der(&bytes),
            }
            .map_err(|e| anyhow!("{}: {e}", path.display()))
        }
    }
}

/// The table checked against every version of every digest, with public material only.
pub async fn verify_anchors(
    sdk: &SdkConfig,
    table: &str,
    bucket: &str,
    key: &DigestPublicKey,
) -> Result<AnchorReport> {
    let digests = S3Digests::new(s3_client(sdk), bucket)
        .all_versions()
        .await
        .map_err(|e| anyhow!("reading the digests: {e}"))?;
    let records = dynamo::scan_all(&aws_sdk_dynamodb::Client::new(sdk), table).await?;
    Ok(anchor::check(&records, &digests, key, SystemTime::now()))
}

/// What `audit-query` filters on; every filter given must hold.
#[derive(Debug, Default, Clone)]
pub struct Filters {
    pub principal: Option<String>,
    pub decision: Option<Decision>,
    pub model: Option<String>,
    pub tenant: Option<String>,
    pub request_id: Option<String>,
}

fn s<'a>(f: &'a Fields, k: &str) -> Option<&'a str> {
    match f.get(k) {
        Some(Field::S(v)) => Some(v),
        _ => None,
    }
}

impl Filters {
    fn keeps(&self, f: &Fields) -> bool {
        let eq =
            |want: &Option<String>, k: &str| want.as_deref().is_none_or(|w| s(f, k) == Some(w));
        eq(&self.principal, "principal")
            && self
                .decision
                .is_none_or(|d| s(f, "decision") == Some(d.as_str()))
            && eq(&self.model, "model")
            && eq(&self.tenant, "tenant")
            && eq(&self.request_id, "request_id")
    }
}

/// Records matching every filter with a time in [since, until], oldest first: by principal
/// (index `by_principal`) when given, else by decision, else over every decision's partitions.
pub async fn query(
    sdk: &SdkConfig,
    table: &str,
    filters: &Filters,
    since: SystemTime,
    until: SystemTime,
    shards: u32,
) -> Result<Vec<Fields>> {
    let (lo, hi) = (millis(since), millis(until));
    if lo > hi {
        bail!("--since is after --until");
    }
    let index = DynamoIndex {
        client: aws_sdk_dynamodb::Client::new(sdk),
        table: table.to_owned(),
    };
    let mut q = AuditQuery {
        principal: filters.principal.clone(),
        decision: filters.decision,
        since_ms: lo,
        until_ms: hi,
        limit: reader::MAX_LIMIT,
        after: None,
    };
    let mut out = Vec::new();
    loop {
        let (records, next) = reader::page(&index, &q, filters.tenant.as_deref(), shards)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        out.extend(records.into_iter().filter(|f| filters.keeps(f)));
        match next {
            Some(after) => q.after = Some(after),
            None => return Ok(out),
        }
    }
}

/// How one record fared: its HMAC (with the keys, when given) and its anchor (with the
/// sentinel's public key, when given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordCheck {
    /// `ok`, `bad`, `unknown_key` or `not_checked`.
    pub hmac: &'static str,
    /// `anchored`, `not_anchored_yet`, `mismatch`, `digest_invalid` or `not_checked`.
    pub anchor: &'static str,
}

impl RecordCheck {
    /// Verified: every check made passed, at least one was made, and an anchor (if checked)
    /// does not contradict the record. An unanchored record with a good seal is verified by the
    /// seal alone (the sentinel anchors it within its batching window).
    pub fn verified(&self) -> bool {
        let hmac_ok = matches!(self.hmac, "ok" | "not_checked");
        let anchor_ok = matches!(self.anchor, "anchored" | "not_anchored_yet" | "not_checked");
        let any = self.hmac != "not_checked" || self.anchor == "anchored";
        hmac_ok && anchor_ok && any
    }
}

/// Checks each record: the HMAC against `keys` (by `key_id`), the anchor against the digests.
pub async fn check_records(
    records: &[Fields],
    keys: Option<&[AuditKey]>,
    anchor: Option<(&dyn DigestStore, &DigestPublicKey)>,
) -> Result<Vec<RecordCheck>> {
    let mut out = Vec::with_capacity(records.len());
    for f in records {
        let hmac = match keys {
            None => "not_checked",
            Some(keys) => match keys.iter().find(|k| Some(k.id()) == s(f, "key_id")) {
                None => "unknown_key",
                Some(k) if k.verify(f) => "ok",
                Some(_) => "bad",
            },
        };
        let anchor = match anchor {
            None => "not_checked",
            Some((store, key)) => {
                let (Some(Field::S(seg)), Some(Field::N(seq))) = (f.get("segment"), f.get("seq"))
                else {
                    out.push(RecordCheck {
                        hmac,
                        anchor: "mismatch",
                    });
                    continue;
                };
                match store
                    .covering(seg, *seq)
                    .await
                    .map_err(|e| anyhow!("{e}"))?
                {
                    None => "not_anchored_yet",
                    Some(d) if d.verify(key).is_err() => "digest_invalid",
                    Some(d) => match d.payload.hash_of(*seq) {
                        Some(h) if h == record::record_hash(f) => "anchored",
                        Some(_) => "mismatch",
                        None => "not_anchored_yet",
                    },
                }
            }
        };
        out.push(RecordCheck { hmac, anchor });
    }
    Ok(out)
}

/// `90s`, `15m`, `1h`, `7d`, `2w` → a duration. Never panics: any other input (a non-ASCII
/// unit, a number too large for the calendar, an empty string) is an error naming the format.
pub fn parse_ago(s: &str) -> Result<Duration> {
    let s = s.trim();
    let bad = || anyhow!("{s:?}: expected <number><s|m|h|d|w>, e.g. 15m, 1h, 7d");
    let unit_at = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = s.split_at(unit_at);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    // At most about 100 years back: beyond that no record exists, and SystemTime would overflow.
    let secs = n
        .checked_mul(per)
        .filter(|v| *v <= 100 * 366 * 86_400)
        .ok_or_else(|| anyhow!("{s:?}: more than 100 years"))?;
    Ok(Duration::from_secs(secs))
}

/// `now - ago`, never before the Unix epoch.
pub fn ago(now: SystemTime, s: &str) -> Result<SystemTime> {
    let d = parse_ago(s)?;
    Ok(now
        .checked_sub(d)
        .unwrap_or(SystemTime::UNIX_EPOCH)
        .max(SystemTime::UNIX_EPOCH))
}

/// A record as one JSON line: `screen_score` as a number (it is stored as text, see
/// `audit::record`), plus `verified` and `verification`.
pub fn json_line(f: &Fields, check: &RecordCheck) -> serde_json::Value {
    let mut v = dynamo::to_json(f);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("verified".into(), check.verified().into());
        obj.insert(
            "verification".into(),
            serde_json::json!({"hmac": check.hmac, "anchor": check.anchor}),
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ago() {
        assert_eq!(parse_ago("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ago("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ago("2w").unwrap(), Duration::from_secs(1_209_600));
        for bad in [
            "1y",
            "h",
            "",
            "1",
            "-1h",
            "1é",
            "é",
            "1.5h",
            "18446744073709551615d",
            "99999999999999999999999s",
        ] {
            assert!(parse_ago(bad).is_err(), "{bad:?}");
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(super::ago(now, "1d").unwrap(), SystemTime::UNIX_EPOCH);
    }

    proptest! {
        /// Whatever the text (any Unicode, any length of digits), parsing returns, never panics,
        /// and an accepted value is within the bound.
        #[test]
        fn since_parser_never_panics(s in "\\PC{0,12}", digits in "[0-9]{1,40}", unit in "\\PC?") {
            for input in [s.clone(), format!("{digits}{unit}"), format!("{digits}{s}")] {
                if let Ok(d) = parse_ago(&input) {
                    prop_assert!(d.as_secs() <= 100 * 366 * 86_400);
                }
                let _ = super::ago(SystemTime::now(), &input);
            }
        }
    }

    #[test]
    fn filters_combine() {
        let mut f = Fields::new();
        for (k, v) in [
            ("principal", "alice"),
            ("decision", "blocked"),
            ("model", "echo"),
            ("tenant", "acme"),
            ("request_id", "r1"),
        ] {
            f.insert(k.into(), Field::S(v.into()));
        }
        let all = Filters {
            principal: Some("alice".into()),
            decision: Some(Decision::Blocked),
            model: Some("echo".into()),
            tenant: Some("acme".into()),
            request_id: Some("r1".into()),
        };
        assert!(all.keeps(&f) && Filters::default().keeps(&f));
        for wrong in [
            Filters {
                principal: Some("bob".into()),
                ..all.clone()
            },
            Filters {
                decision: Some(Decision::Allowed),
                ..all.clone()
            },
            Filters {
                model: Some("other".into()),
                ..all.clone()
            },
            Filters {
                tenant: Some("globex".into()),
                ..all.clone()
            },
            Filters {
                request_id: Some("r2".into()),
                ..all.clone()
            },
        ] {
            assert!(!wrong.keeps(&f), "{wrong:?}");
        }
    }

    #[test]
    fn verified_needs_a_passing_check() {
        let c = |hmac, anchor| RecordCheck { hmac, anchor };
        assert!(c("ok", "anchored").verified());
        assert!(c("ok", "not_anchored_yet").verified());
        assert!(c("not_checked", "anchored").verified());
        assert!(!c("not_checked", "not_anchored_yet").verified());
        assert!(!c("bad", "anchored").verified());
        assert!(!c("ok", "mismatch").verified());
        assert!(!c("unknown_key", "not_checked").verified());
    }
}
