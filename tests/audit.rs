//! The audit chain against the emulator: verification passes on an untouched table and fails
//! after a modified, a deleted and an inserted (forged) record; with the emulator cut off
//! mid-run, requests get 503, no 200 goes out without its record, and nothing is half-written.
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use gatehouse::audit::dynamo::{scan_all, to_item};
use gatehouse::audit::record::record_hash;
use gatehouse::audit::verify::ProblemKind;
use gatehouse::audit::{AuditKey, Field, Fields, HMAC_ATTR};
use gatehouse::predict::Predictor;
use gatehouse_dev::audit::verify_table;
use gatehouse_tests::ddb::{AUDIT_SECRET, AUDIT_TABLE, Partition, emulator, port};

async fn send(p: &Predictor, rid: &str, sub: &str) -> http::Response<String> {
    gatehouse_tests::ddb::send_as_operator(
        p,
        rid,
        sub,
        br#"{"prompt":"hello audit"}"#,
        "10.0.0.2",
        "audit-test",
    )
    .await
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

fn key_of(f: &Fields) -> Result<(String, u64)> {
    match (f.get("segment"), f.get("seq")) {
        (Some(Field::S(s)), Some(Field::N(n))) => Ok((s.clone(), *n)),
        _ => anyhow::bail!("record without key"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_detects_modified_deleted_and_inserted_records() -> Result<()> {
    let (mut emu, sdk) = emulator(port(4791)).await?;
    let result = tamper_run(&sdk).await;
    emu.stop().await;
    result
}

async fn tamper_run(sdk: &SdkConfig) -> Result<()> {
    let p =
        gatehouse_tests::ddb::predictor(sdk, gatehouse::policy::PolicyStore::embedded()?).await?;
    for i in 0..20 {
        ensure!(send(&p, &format!("r{i}"), "auditee").await.status() == 200);
    }
    let clean = verify_table(sdk, AUDIT_TABLE, AUDIT_SECRET).await?;
    ensure!(
        clean.is_clean() && clean.records == 20 && clean.segments == 1,
        "{clean:?}"
    );
    let mut records = scan_all(&aws_sdk_dynamodb::Client::new(sdk), AUDIT_TABLE).await?;
    records.sort_by_key(|r| key_of(r).map(|k| k.1).unwrap_or(0));
    let (segment, _) = key_of(&records[0])?;
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let key = |seq: u64| {
        HashMap::from([
            ("segment".to_owned(), AttributeValue::S(segment.clone())),
            ("seq".to_owned(), AttributeValue::N(seq.to_string())),
        ])
    };

    // Modified: a record's decision rewritten in place.
    ddb.update_item()
        .table_name(AUDIT_TABLE)
        .set_key(Some(key(10)))
        .update_expression("SET decision = :d")
        .expression_attribute_values(":d", AttributeValue::S("forbidden".into()))
        .send()
        .await?;
    let r = verify_table(sdk, AUDIT_TABLE, AUDIT_SECRET).await?;
    ensure!(!r.is_clean(), "{r:?}");
    ensure!(
        r.count(ProblemKind::Modified) == 1 && r.problems[0].seq == 10,
        "{r:?}"
    );
    put(sdk, &records[9]).await?;
    ensure!(
        verify_table(sdk, AUDIT_TABLE, AUDIT_SECRET)
            .await?
            .is_clean()
    );

    // Deleted: a record removed from the middle.
    ddb.delete_item()
        .table_name(AUDIT_TABLE)
        .set_key(Some(key(7)))
        .send()
        .await?;
    let r = verify_table(sdk, AUDIT_TABLE, AUDIT_SECRET).await?;
    ensure!(
        r.count(ProblemKind::Deleted) == 1 && r.problems.len() == 1,
        "{r:?}"
    );
    ensure!(r.problems[0].seq == 7);
    put(sdk, &records[6]).await?;
    ensure!(
        verify_table(sdk, AUDIT_TABLE, AUDIT_SECRET)
            .await?
            .is_clean()
    );

    // Inserted: a well-linked record appended with an HMAC under a guessed key.
    let mut forged = records[19].clone();
    forged.insert("seq".into(), Field::N(21));
    forged.insert("request_id".into(), Field::S("forged".into()));
    forged.insert("prev_hash".into(), Field::S(record_hash(&records[19])));
    forged.remove(HMAC_ATTR);
    let sig = AuditKey::new(b"a guessed key, not the real one, 32+ bytes")?.sign(&forged);
    forged.insert(HMAC_ATTR.into(), Field::S(sig));
    put(sdk, &forged).await?;
    let r = verify_table(sdk, AUDIT_TABLE, AUDIT_SECRET).await?;
    ensure!(
        r.count(ProblemKind::Inserted) == 1 && r.problems.len() == 1,
        "{r:?}"
    );
    ensure!(r.problems[0].seq == 21);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn emulator_outage_gives_503_and_no_unaudited_200() -> Result<()> {
    let (mut emu, direct) = emulator(port(4792)).await?;
    let result = outage_run(&mut emu, &direct).await;
    emu.stop().await;
    result
}

async fn outage_run(emu: &mut gatehouse_dev::emulator::Emulator, direct: &SdkConfig) -> Result<()> {
    let proxy = Arc::new(Partition::start(([127, 0, 0, 1], emu.port).into()).await?);
    let via_proxy = gatehouse_dev::emulator::sdk_config(&proxy.endpoint).await;
    let policy = gatehouse_tests::ddb::policy_with_operator_limit(100_000)?;
    let p = Arc::new(gatehouse_tests::ddb::predictor(&via_proxy, policy).await?);
    // Outage driven by what the requests see, not by wall-clock guesses (the machine may be slow):
    // cut the emulator off once some requests have succeeded, restore it once some have failed.
    let seen = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    for t in 0..6 {
        let (p, seen) = (p.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..25 {
                let rid = format!("o{t}-{i}");
                let r = send(&p, &rid, "outage").await;
                match r.status().as_u16() {
                    200 => seen.0.fetch_add(1, Ordering::SeqCst),
                    _ => seen.1.fetch_add(1, Ordering::SeqCst),
                };
                out.push((rid, r.status().as_u16(), r.body().clone()));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            out
        }));
    }
    let wait_for = |counter: usize, n: usize| {
        let seen = seen.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while tokio::time::Instant::now() < deadline {
                let v = if counter == 0 {
                    seen.0.load(Ordering::SeqCst)
                } else {
                    seen.1.load(Ordering::SeqCst)
                };
                if v >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_for(0, 12).await;
    proxy.set_up(false);
    wait_for(1, 6).await;
    proxy.set_up(true);
    let mut results = Vec::new();
    for t in tasks {
        results.extend(t.await?);
    }
    let count = |s: u16| results.iter().filter(|r| r.1 == s).count();
    eprintln!(
        "outage run: {} x 200, {} x 503, {} total",
        count(200),
        count(503),
        results.len()
    );
    ensure!(count(200) > 0 && count(503) > 0, "{results:?}");
    ensure!(count(200) + count(503) == results.len());
    for (_, status, body) in &results {
        if *status == 503 {
            ensure!(!body.contains("hello audit"), "503 leaked output: {body}");
        }
    }
    // Every 200 has its record; every record is whole (HMAC, links, no gaps).
    let records = scan_all(&aws_sdk_dynamodb::Client::new(direct), AUDIT_TABLE).await?;
    let audited: HashMap<String, String> = records
        .iter()
        .filter_map(|r| match (r.get("request_id"), r.get("decision")) {
            (Some(Field::S(rid)), Some(Field::S(d))) => Some((rid.clone(), d.clone())),
            _ => None,
        })
        .collect();
    for (rid, status, _) in results.iter().filter(|r| r.1 == 200) {
        let d = audited
            .get(rid)
            .with_context(|| format!("200 without record: {rid}"))?;
        ensure!(d == "allowed", "{rid}: {d} ({status})");
    }
    let report = verify_table(direct, AUDIT_TABLE, AUDIT_SECRET).await?;
    eprintln!(
        "after outage: {} records in {} segments, problems {:?}",
        report.records, report.segments, report.problems
    );
    ensure!(report.is_clean(), "{report:?}");

    // The emulator really stopped: every request is refused, none answered without a record.
    emu.stop().await;
    for i in 0..3 {
        let r = send(&p, &format!("down-{i}"), "outage").await;
        ensure!(r.status() == 503, "{}", r.status());
        ensure!(!r.body().contains("hello audit"));
    }
    Ok(())
}
