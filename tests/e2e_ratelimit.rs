//! End to end through the local gateway (`cargo xtask test` starts the stack and exports
//! GATEHOUSE_GATEWAY_URL / GATEHOUSE_EMULATOR_URL): 70 sequential requests of a 60-a-minute role
//! give 60 × 200 then 10 × 429 with the rate-limit headers, and 70 audit records.
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, ensure};
use gatehouse::audit::Decision;
use gatehouse::audit::Field;
use gatehouse_dev::audit::{Filters, query, verify_table};
use gatehouse_dev::devkeys::{self, TokenSpec};
use gatehouse_dev::oidc::dev_token_claims;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seventy_requests_at_sixty_a_minute() -> Result<()> {
    // Fails rather than skips without the stack: a silent pass would prove nothing.
    let var = |n: &str| {
        std::env::var(n).with_context(|| {
            format!("{n} is not set: run this test with `cargo xtask test` (starts the stack)")
        })
    };
    let (gateway, emulator) = (
        var("GATEHOUSE_GATEWAY_URL")?,
        var("GATEHOUSE_EMULATOR_URL")?,
    );
    let key = devkeys::ensure_dev_key()?;
    let (issuer, audience) = dev_token_claims()?;
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_nanos();
    let sub = format!("e2e-rl-{nanos:x}");
    let token = devkeys::mint(
        &key,
        &TokenSpec::new(&sub, &["ai_operator"], None, 600, issuer.clone(), audience),
    )?;
    // Counters and the audit index are keyed on issuer + tenant + sub.
    let principal = gatehouse::principal::principal_key(&issuer, None, &sub);
    // 70 requests must fall in one fixed minute: start a fresh one if this one is ending.
    let left = gatehouse_tests::ddb::secs_left_in_window(60);
    if left < 45 {
        tokio::time::sleep(Duration::from_secs(left + 1)).await;
    }
    let started = SystemTime::now();
    let client = reqwest::Client::new();
    let mut answers = Vec::new();
    for _ in 0..70 {
        let r = client
            .post(format!("{gateway}/v1/predict"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(r#"{"prompt":"count me"}"#)
            .send()
            .await?;
        let h = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        answers.push((
            r.status().as_u16(),
            h("ratelimit"),
            h("ratelimit-policy"),
            h("retry-after"),
        ));
    }
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    let limited = answers.iter().filter(|a| a.0 == 429).count();
    eprintln!("e2e: {ok} x 200, {limited} x 429");
    for (i, (status, rl, policy, retry)) in answers.iter().enumerate() {
        if i < 60 {
            // The role's request limit first, then the token budgets (named, all listed).
            ensure!(
                policy.starts_with("\"role\";q=60;w=60, \"tokens\";q="),
                "#{i}: policy {policy:?}"
            );
            ensure!(*status == 200, "#{i}: {status}");
            ensure!(
                rl.starts_with(&format!("\"role\";r={};t=", 59 - i)),
                "#{i}: {rl}"
            );
        } else {
            // Refused at the request counter: no budget was touched, so only the role's policy.
            ensure!(policy == "\"role\";q=60;w=60", "#{i}: policy {policy:?}");
            ensure!(*status == 429, "#{i}: {status}");
            let secs: u64 = retry.parse().context("Retry-After")?;
            ensure!((1..=60).contains(&secs), "#{i}: retry-after {secs}");
            ensure!(*rl == format!("\"role\";r=0;t={secs}"), "#{i}: {rl}");
        }
    }

    let sdk = gatehouse_dev::emulator::sdk_config(&emulator).await;
    let records = query(
        &sdk,
        "AuditTable",
        &Filters {
            principal: Some(principal.clone()),
            ..Filters::default()
        },
        started - Duration::from_secs(5),
        SystemTime::now() + Duration::from_secs(5),
        4,
    )
    .await?;
    let decision = |d: &str| {
        records
            .iter()
            .filter(|r| r.get("decision") == Some(&Field::S(d.into())))
            .count()
    };
    eprintln!("e2e: {} audit records for {sub}", records.len());
    ensure!(records.len() == 70, "{} records", records.len());
    ensure!(decision("allowed") == 60 && decision("rate_limited") == 10);
    let by_decision = query(
        &sdk,
        "AuditTable",
        &Filters {
            decision: Some(Decision::RateLimited),
            ..Filters::default()
        },
        started - Duration::from_secs(5),
        SystemTime::now() + Duration::from_secs(5),
        4,
    )
    .await?;
    let mine = by_decision
        .iter()
        .filter(|r| r.get("principal") == Some(&Field::S(principal.clone())))
        .count();
    ensure!(mine == 10, "by-decision query found {mine} of 10");
    // The filters combine: principal and decision at once.
    let both = query(
        &sdk,
        "AuditTable",
        &Filters {
            principal: Some(principal.clone()),
            decision: Some(Decision::RateLimited),
            ..Filters::default()
        },
        started - Duration::from_secs(5),
        SystemTime::now() + Duration::from_secs(5),
        4,
    )
    .await?;
    ensure!(
        both.len() == 10,
        "principal + decision found {}",
        both.len()
    );
    let report = verify_table(&sdk, "AuditTable", "AuditHmacSecret").await?;
    ensure!(report.is_clean(), "{report:?}");
    Ok(())
}
