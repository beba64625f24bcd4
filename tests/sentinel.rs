//! The audit sentinel against the emulator (DynamoDB Streams, S3 with Object Lock, KMS), fed by
//! the dev stack's stream poller (devtools::streams, the event source mapping's stand-in):
//! - the signed digests catch what the HMAC chain cannot: a record rewritten and re-sealed with
//!   the REAL key (and every later record re-linked), a deleted record, an inserted one — checked
//!   with the sentinel's public key only;
//! - the sentinel reports overwrites and deletions it sees in the stream;
//! - the OCSF export validates against the OCSF 1.5.0 API Activity schema;
//! - a sentinel outage (its S3/KMS/DynamoDB unreachable) loses nothing: the poller redelivers
//!   from the same stream position and every record ends up verified, exported and anchored.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use aws_config::SdkConfig;
use gatehouse::audit::anchor::{AnchorProblemKind, AnchorReport};
use gatehouse::audit::dynamo::{scan_all, to_item};
use gatehouse::audit::record::record_hash;
use gatehouse::audit::sentinel::{Finding, FindingKind, Sentinel};
use gatehouse::audit::{AuditKey, Field, Fields, HMAC_ATTR};
use gatehouse::config::Env;
use gatehouse_dev::audit::{DEFAULT_DIGEST_BUCKET, DEFAULT_DIGEST_KEY, PublicKeySource};
use gatehouse_dev::streams::{self, Deliver, PollerConfig, PollerHandle};
use gatehouse_dev::template::Template;
use gatehouse_tests::ddb::{AUDIT_SECRET, AUDIT_TABLE, Partition, emulator, port};
use serde_json::Value;

/// Delivers batches to a Sentinel in this process, the way the function's handler does.
struct InProcess {
    sentinel: Sentinel,
    findings: Mutex<Vec<Finding>>,
}

#[async_trait::async_trait]
impl Deliver for InProcess {
    async fn deliver(&self, event: &Value) -> Result<()> {
        let event: aws_lambda_events::event::dynamodb::Event =
            serde_json::from_value(event.clone()).context("not a DynamoDB stream event")?;
        let changes = gatehouse::audit::sentinel::lambda::changes(&event);
        let out = self
            .sentinel
            .process(&changes)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        self.findings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(out.findings);
        Ok(())
    }
}

impl InProcess {
    fn has(&self, kind: FindingKind, seq: u64) -> bool {
        self.findings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|f| f.kind == kind && f.seq == seq)
    }
}

/// The sentinel as the template configures it, its AWS calls through `sdk`.
fn sentinel(sdk: &SdkConfig) -> Result<Sentinel> {
    let t = Template::load(&gatehouse_dev::paths::template_path())?;
    let env: BTreeMap<String, String> = t.function_env("SentinelFunction")?;
    Ok(gatehouse::setup::sentinel(
        sdk,
        &Env(move |k: &str| env.get(k).cloned()),
    )?)
}

async fn poll(sdk: &SdkConfig, deliver: Arc<InProcess>) -> Result<PollerHandle> {
    streams::start(
        sdk,
        PollerConfig {
            table: AUDIT_TABLE.into(),
            batch_size: 40,
            batching_window: Duration::from_millis(300),
            poll_interval: Duration::from_millis(100),
        },
        deliver,
    )
    .await
}

async fn anchors(sdk: &SdkConfig) -> Result<AnchorReport> {
    let key =
        gatehouse_dev::audit::public_key(sdk, &PublicKeySource::Kms(DEFAULT_DIGEST_KEY.into()))
            .await?;
    gatehouse_dev::audit::verify_anchors(sdk, AUDIT_TABLE, DEFAULT_DIGEST_BUCKET, &key).await
}

/// Waits (at most 90 s: the machine may be busy) until `cond` holds.
async fn until<F, Fut>(what: &str, mut cond: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        if cond().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn fully_anchored(sdk: &SdkConfig, n: usize) -> Result<()> {
    until(&format!("{n} records anchored"), || async {
        let r = anchors(sdk).await?;
        Ok(r.records_anchored == n && r.unanchored_records() == 0)
    })
    .await
}

async fn send(p: &gatehouse::predict::Predictor, rid: &str) -> Result<()> {
    let r = gatehouse_tests::ddb::send_as_operator(
        p,
        rid,
        "sentinel-subject",
        br#"{"prompt":"hello sentinel"}"#,
        "198.51.100.7",
        "sentinel-test",
    )
    .await;
    ensure!(r.status() == 200, "{}: {}", r.status(), r.body());
    Ok(())
}

async fn put(sdk: &SdkConfig, f: &Fields) -> Result<()> {
    aws_sdk_dynamodb::Client::new(sdk)
        .put_item()
        .table_name(AUDIT_TABLE)
        .set_item(Some(to_item(f)))
        .send()
        .await?;
    Ok(())
}

fn seq_of(f: &Fields) -> u64 {
    match f.get("seq") {
        Some(Field::N(n)) => *n,
        _ => 0,
    }
}

async fn records(sdk: &SdkConfig) -> Result<Vec<Fields>> {
    let mut r = scan_all(&aws_sdk_dynamodb::Client::new(sdk), AUDIT_TABLE).await?;
    r.sort_by_key(seq_of);
    Ok(r)
}

/// Re-seals `recs[from..]` with the real key, re-linking each to its predecessor and renumbering
/// seq from `from + 1`: what a party holding the HMAC key does to hide an edit.
fn reseal_from(recs: &mut [Fields], from: usize, key: &AuditKey) {
    for i in from..recs.len() {
        if i > 0 {
            let h = record_hash(&recs[i - 1]);
            recs[i].insert("prev_hash".into(), Field::S(h));
        }
        recs[i].insert("seq".into(), Field::N(i as u64 + 1));
        recs[i].remove(HMAC_ATTR);
        let sig = key.sign(&recs[i]);
        recs[i].insert(HMAC_ATTR.into(), Field::S(sig));
    }
}

async fn keyed_clean(sdk: &SdkConfig) -> Result<bool> {
    Ok(
        gatehouse_dev::audit::verify_table(sdk, AUDIT_TABLE, AUDIT_SECRET)
            .await?
            .is_clean(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_catch_a_resealed_rewrite_a_deletion_and_an_insertion() -> Result<()> {
    let (mut emu, sdk) = emulator(port(4793)).await?;
    let result = tamper_run(&sdk).await;
    emu.stop().await;
    result
}

async fn tamper_run(sdk: &SdkConfig) -> Result<()> {
    let deliver = Arc::new(InProcess {
        sentinel: sentinel(sdk)?,
        findings: Mutex::new(Vec::new()),
    });
    let _poller = poll(sdk, deliver.clone()).await?;
    let p =
        gatehouse_tests::ddb::predictor(sdk, gatehouse::policy::PolicyStore::embedded()?).await?;
    for i in 0..30 {
        send(&p, &format!("t{i}")).await?;
    }
    fully_anchored(sdk, 30).await?;
    let clean = anchors(sdk).await?;
    ensure!(
        clean.is_clean() && clean.segments_anchored == 1,
        "{clean:?}"
    );
    ensure!(keyed_clean(sdk).await?);
    ensure!(
        deliver
            .findings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty(),
        "a clean stream has no findings"
    );
    let originals = records(sdk).await?;
    let key =
        gatehouse::secrets::audit_key(&aws_sdk_secretsmanager::Client::new(sdk), AUDIT_SECRET)
            .await?;

    // 1. Rewritten and re-sealed with the real HMAC key, every later record re-linked.
    let mut forged = originals.clone();
    forged[9].insert("decision".into(), Field::S("forbidden".into()));
    reseal_from(&mut forged, 9, &key);
    for f in &forged[9..] {
        put(sdk, f).await?;
    }
    ensure!(keyed_clean(sdk).await?, "the HMAC chain alone is fooled");
    let r = anchors(sdk).await?;
    ensure!(
        r.problems.first().map(|p| (p.kind, p.seq)) == Some((AnchorProblemKind::Modified, 10)),
        "{r:?}"
    );
    until("the sentinel to see the overwrite", || async {
        Ok(deliver.has(FindingKind::Overwritten, 10))
    })
    .await?;
    for f in &originals[9..] {
        put(sdk, f).await?;
    }
    ensure!(anchors(sdk).await?.is_clean(), "restored");

    // 2. Deleted.
    let key5 = HashMap::from([
        (
            "segment".to_owned(),
            aws_sdk_dynamodb::types::AttributeValue::S(match originals[4].get("segment") {
                Some(Field::S(s)) => s.clone(),
                _ => bail!("no segment"),
            }),
        ),
        (
            "seq".to_owned(),
            aws_sdk_dynamodb::types::AttributeValue::N("5".into()),
        ),
    ]);
    aws_sdk_dynamodb::Client::new(sdk)
        .delete_item()
        .table_name(AUDIT_TABLE)
        .set_key(Some(key5))
        .send()
        .await?;
    let r = anchors(sdk).await?;
    ensure!(
        r.count(AnchorProblemKind::Deleted) == 1 && r.problems[0].seq == 5,
        "{r:?}"
    );
    until("the sentinel to see the deletion", || async {
        Ok(deliver.has(FindingKind::Deleted, 5))
    })
    .await?;
    put(sdk, &originals[4]).await?;
    ensure!(anchors(sdk).await?.is_clean(), "restored");

    // 3. Inserted at seq 8, the chain shifted up and re-sealed with the real key.
    let mut shifted = originals.clone();
    let mut extra = originals[7].clone();
    extra.insert("request_id".into(), Field::S("inserted-later".into()));
    extra.insert("decision".into(), Field::S("allowed".into()));
    shifted.insert(7, extra);
    reseal_from(&mut shifted, 7, &key);
    for f in &shifted[7..] {
        put(sdk, f).await?;
    }
    ensure!(
        keyed_clean(sdk).await?,
        "the HMAC chain alone is fooled again"
    );
    let r = anchors(sdk).await?;
    ensure!(
        r.problems
            .iter()
            .any(|p| p.kind == AnchorProblemKind::Inserted && p.seq == 8),
        "{r:?}"
    );
    eprintln!(
        "inserted: {} problems ({} moved), {} unanchored",
        r.problems.len(),
        r.count(AnchorProblemKind::Moved),
        r.unanchored_records()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_is_valid_ocsf_and_an_outage_loses_nothing() -> Result<()> {
    let (mut emu, sdk) = emulator(port(4794)).await?;
    let result = outage_run(&emu, &sdk).await;
    emu.stop().await;
    result
}

async fn outage_run(emu: &gatehouse_dev::emulator::Emulator, sdk: &SdkConfig) -> Result<()> {
    // The sentinel reaches AWS through a proxy that can be cut; the poller (the Lambda service's
    // part) and the writers reach it directly.
    let proxy = Partition::start(([127, 0, 0, 1], emu.port).into()).await?;
    let via_proxy = gatehouse_dev::emulator::sdk_config(&proxy.endpoint).await;
    let deliver = Arc::new(InProcess {
        sentinel: sentinel(&via_proxy)?,
        findings: Mutex::new(Vec::new()),
    });
    let poller = poll(sdk, deliver.clone()).await?;
    let p =
        gatehouse_tests::ddb::predictor(sdk, gatehouse::policy::PolicyStore::embedded()?).await?;
    for i in 0..10 {
        send(&p, &format!("before-{i}")).await?;
    }
    fully_anchored(sdk, 10).await?;

    proxy.set_up(false);
    let failures_before = poller
        .stats
        .failures
        .load(std::sync::atomic::Ordering::Relaxed);
    for i in 0..15 {
        send(&p, &format!("during-{i}")).await?;
    }
    until("the poller to fail to deliver (sentinel down)", || async {
        Ok(poller
            .stats
            .failures
            .load(std::sync::atomic::Ordering::Relaxed)
            >= failures_before + 2)
    })
    .await?;
    let r = anchors(sdk).await?;
    ensure!(
        r.records_anchored == 10 && r.unanchored_records() == 15,
        "nothing anchored during the outage: {r:?}"
    );
    proxy.set_up(true);
    fully_anchored(sdk, 25).await?;
    ensure!(anchors(sdk).await?.is_clean());
    ensure!(
        deliver
            .findings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty(),
        "an outage is not tampering"
    );

    // Every record exported (at least once; `metadata.uid` identifies it), as valid OCSF.
    let events = exported_events(sdk).await?;
    let uids: HashSet<&str> = events
        .iter()
        .filter_map(|e| e["metadata"]["uid"].as_str())
        .collect();
    ensure!(uids.len() == 25, "{} distinct events exported", uids.len());
    let dir = gatehouse_dev::paths::local_dir().join("test-ocsf");
    std::fs::create_dir_all(&dir)?;
    let good = dir.join(format!("export-{}.jsonl", std::process::id()));
    let text: String = events.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(&good, text)?;
    ensure!(
        validate(&good)?,
        "the export is not valid OCSF API Activity"
    );
    // The validator can fail: an event without its required `api` and with a wrong type_uid.
    let mut broken = events[0].clone();
    if let Some(o) = broken.as_object_mut() {
        o.remove("api");
        o.insert("type_uid".into(), 600399.into());
    }
    let bad = dir.join(format!("broken-{}.jsonl", std::process::id()));
    std::fs::write(&bad, format!("{broken}\n"))?;
    ensure!(!validate(&bad)?, "a broken event passed validation");
    Ok(())
}

async fn exported_events(sdk: &SdkConfig) -> Result<Vec<Value>> {
    let t = Template::load(&gatehouse_dev::paths::template_path())?;
    let env = t.function_env("SentinelFunction")?;
    let bucket = env["GATEHOUSE_EXPORT_BUCKET"].clone();
    let prefix = env["GATEHOUSE_EXPORT_PREFIX"].clone();
    let s3 = gatehouse::audit::anchor_aws::s3_client(sdk);
    let list = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix(format!("{prefix}/eventDay="))
        .send()
        .await?;
    let mut events = Vec::new();
    for o in list.contents() {
        let key = o.key().context("object without key")?;
        ensure!(key.ends_with(".json.gz"), "{key}");
        let body = s3.get_object().bucket(&bucket).key(key).send().await?;
        let bytes = body.body.collect().await?.into_bytes();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text)?;
        for line in text.lines() {
            events.push(serde_json::from_str(line)?);
        }
    }
    Ok(events)
}

/// Runs devtools/python/ocsf_validate.py (OCSF 1.5.0 schema, from the pinned PyPI package).
fn validate(path: &std::path::Path) -> Result<bool> {
    let out = std::process::Command::new(gatehouse_dev::paths::venv_bin().join("python"))
        .arg(gatehouse_dev::paths::repo_root().join("devtools/python/ocsf_validate.py"))
        .arg(path)
        .output()
        .context("running ocsf_validate.py (is .local/venv installed? run cargo xtask test)")?;
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(out.status.success())
}
