//! Rate limits against a real DynamoDB wire protocol (moto, one request at a time): exact
//! admission under concurrency, the count stored, ALL_OLD on denial, one audit record per
//! request, and the authorizer's per-IP failure guard.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, ensure};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use gatehouse::audit::Field;
use gatehouse::audit::dynamo::scan_all;
use gatehouse::auth::{CacheConfig, JwksSource, JwksVersions, KeyCache, SourceError, TokenPolicy};
use gatehouse::authorizer::{AuthRequest, Gate};
use gatehouse::clock::{Clock, SystemClock, unix_secs};
use gatehouse::config::AuthFailureConfig;
use gatehouse::policy::PolicyStore;
use gatehouse::predict::Predictor;
use gatehouse::ratelimit::dynamo::DynamoCounter;
use gatehouse::ratelimit::guard::FailureGuard;
use gatehouse::ratelimit::{Hit, RateCounter, RateLimiter};
use gatehouse_dev::devkeys::{self, DevKey, TokenSpec};
use gatehouse_tests::ddb::{AUDIT_TABLE, RATE_TABLE, emulator, policy_with_operator_limit, port};

const TASKS: usize = 64;
const PER_TASK: usize = 5;
const LIMIT: u32 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_tasks_by_five_admit_exactly_one_hundred() -> Result<()> {
    let (mut emu, sdk) = emulator(port(4790)).await?;
    let result = concurrent_run(&sdk).await;
    emu.stop().await;
    result
}

async fn concurrent_run(sdk: &SdkConfig) -> Result<()> {
    // The whole run must sit in one fixed window: start in a fresh one if this one is ending.
    let left = gatehouse_tests::ddb::secs_left_in_window(60);
    if left < 30 {
        tokio::time::sleep(Duration::from_secs(left + 1)).await;
    }
    let window_start = {
        let t = unix_secs(SystemTime::now());
        t - t % 60
    };
    let p =
        Arc::new(gatehouse_tests::ddb::predictor(sdk, policy_with_operator_limit(LIMIT)?).await?);
    let sub = format!("load-{}", uuid_like());
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (p, sub) = (p.clone(), sub.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..PER_TASK {
                let rid = format!("t{t}-r{i}");
                let r = send(&p, &rid, &sub).await;
                out.push((rid, r.status().as_u16(), r.headers().clone()));
            }
            out
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.extend(t.await?);
    }
    let ok = results.iter().filter(|r| r.1 == 200).count();
    let limited: Vec<_> = results.iter().filter(|r| r.1 == 429).collect();
    eprintln!("{ok} allowed, {} denied", limited.len());
    ensure!(ok == 100, "allowed {ok}");
    ensure!(limited.len() == 220, "denied {}", limited.len());
    for (_, _, h) in &limited {
        let retry: u64 = h["retry-after"].to_str()?.parse()?;
        ensure!((1..=60).contains(&retry));
        // The request limit is named "role" and listed first; no token budget was touched.
        ensure!(h["ratelimit"].to_str()? == format!("\"role\";r=0;t={retry}"));
        ensure!(h["ratelimit-policy"] == "\"role\";q=100;w=60");
    }

    // The stored count is exactly the limit: denials never incremented it.
    // Counters are keyed on the principal key (issuer hash, tenant, sub), as the audit index is.
    let principal = gatehouse::principal::principal_key("https://issuer.test/", None, &sub);
    let key = format!("user#60#{window_start}#{principal}");
    let item = aws_sdk_dynamodb::Client::new(sdk)
        .get_item()
        .table_name(RATE_TABLE)
        .key("pk", AttributeValue::S(key.clone()))
        .consistent_read(true)
        .send()
        .await?
        .item
        .context("no counter item")?;
    ensure!(
        item["count"].as_n().ok() == Some(&"100".to_owned()),
        "{item:?}"
    );
    ensure!(item.contains_key("expires_at"));

    // A denial returns the stored item (ReturnValuesOnConditionCheckFailure = ALL_OLD).
    let counter = DynamoCounter::new(sdk, RATE_TABLE, Duration::from_secs(2));
    let out = counter
        .hit(&Hit {
            key: &key,
            limit: LIMIT,
            sub: None,
            expires_at: 0,
        })
        .await?;
    ensure!(!out.allowed && out.count == Some(100), "{out:?}");

    // Exactly one audit record per request, and the chain verifies.
    let records = scan_all(&aws_sdk_dynamodb::Client::new(sdk), AUDIT_TABLE).await?;
    let mut per_rid: HashMap<String, Vec<&str>> = HashMap::new();
    for r in &records {
        if let (Some(Field::S(rid)), Some(Field::S(d))) = (r.get("request_id"), r.get("decision")) {
            per_rid.entry(rid.clone()).or_default().push(d);
        }
    }
    ensure!(records.len() == 320, "{} records", records.len());
    for (rid, status, _) in &results {
        let d = per_rid.get(rid).context("request without record")?;
        let want = if *status == 200 {
            "allowed"
        } else {
            "rate_limited"
        };
        ensure!(d.as_slice() == [want], "{rid}: {d:?}");
    }
    let report = gatehouse_dev::audit::verify_table(sdk, AUDIT_TABLE, "AuditHmacSecret").await?;
    ensure!(report.is_clean() && report.records == 320, "{report:?}");
    Ok(())
}

async fn send(p: &Predictor, rid: &str, sub: &str) -> http::Response<String> {
    gatehouse_tests::ddb::send_as_operator(
        p,
        rid,
        sub,
        br#"{"prompt":"hello"}"#,
        "10.0.0.1",
        "ratelimit-test",
    )
    .await
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    )
}

struct StaticJwks(String);

#[async_trait::async_trait]
impl JwksSource for StaticJwks {
    async fn fetch(&self) -> Result<JwksVersions, SourceError> {
        Ok(JwksVersions {
            current: secrecy::SecretString::from(self.0.clone()),
            previous: None,
        })
    }
}

const ISS: &str = "https://issuer.test/";
const AUD: &str = "gatehouse-test";

async fn gate(sdk: &SdkConfig, key: &DevKey, limit: u32) -> Result<Gate<StaticJwks>> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let cache = CacheConfig {
        refresh_ttl: Duration::from_secs(300),
        max_staleness: Duration::from_secs(3600),
        unknown_kid_min_interval: Duration::from_secs(30),
    };
    Ok(Gate {
        keys: KeyCache::load(StaticJwks(devkeys::public_jwks(key)), cache, clock.clone()).await?,
        policy: PolicyStore::embedded()?,
        token_policy: TokenPolicy {
            leeway: Duration::from_secs(5),
            ..TokenPolicy::new(ISS, AUD)
        },
        failures: FailureGuard::new(
            RateLimiter::new(Box::new(DynamoCounter::new(
                sdk,
                RATE_TABLE,
                Duration::from_secs(2),
            ))),
            AuthFailureConfig {
                limit,
                window: Duration::from_secs(600),
            },
        ),
        audit: gatehouse_tests::ddb::audit_log(sdk, "authorizer").await?,
        clock,
    })
}

fn bearer(key: &DevKey, roles: &[&str]) -> Result<String> {
    let t = devkeys::mint(
        key,
        &TokenSpec::new("alice", roles, None, 300, ISS.into(), AUD.into()),
    )?;
    Ok(format!("Bearer {t}"))
}

/// (allowed, reason, ip_blocked) of one decision.
async fn ask(g: &Gate<StaticJwks>, auth: &str, ip: &str, rid: &str) -> (bool, &'static str, bool) {
    let d = g
        .decide(&AuthRequest {
            authorization: Some(auth),
            route_key: "POST /v1/predict",
            request_id: rid,
            source_ip: Some(ip),
            user_agent: Some("stuffer"),
        })
        .await;
    (d.allowed, d.reason, d.ip_blocked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_verifications_are_counted_per_ip_and_valid_tokens_never_refused() -> Result<()> {
    let (mut emu, sdk) = emulator(port(4793)).await?;
    let result = guard_run(&sdk).await;
    emu.stop().await;
    result
}

async fn guard_run(sdk: &SdkConfig) -> Result<()> {
    // The run must sit in one 600 s failure window: start in a fresh one if this one is ending.
    let left = gatehouse_tests::ddb::secs_left_in_window(600);
    if left < 30 {
        tokio::time::sleep(Duration::from_secs(left + 1)).await;
    }
    let key = DevKey::generate("kid-1")?;
    let forger = DevKey::generate("kid-1")?;
    let (good, bad) = (
        bearer(&key, &["ai_operator"])?,
        bearer(&forger, &["ai_operator"])?,
    );
    let auditor = bearer(&key, &["auditor"])?;
    let g = gate(sdk, &key, 3).await?;
    let ip = "203.0.113.7";
    ensure!(ask(&g, &good, ip, "a0").await == (true, "allowed", false));
    // A verified token on a route its roles do not open is not a failed verification.
    ensure!(ask(&g, &auditor, ip, "a1").await == (false, "forbidden_route", false));
    for i in 1..=3 {
        let got = ask(&g, &bad, ip, &format!("b{i}")).await;
        ensure!(got == (false, "bad_signature", false), "b{i}: {got:?}");
    }
    // Over the limit: further failures from the IP are marked and no longer counted...
    ensure!(ask(&g, &bad, ip, "b4").await == (false, "bad_signature", true));
    // ...but a token whose signature and claims verify is judged on its own, whatever its
    // address shares (a carrier NAT, a company's egress).
    ensure!(ask(&g, &good, ip, "c1").await == (true, "allowed", false));
    ensure!(ask(&g, &auditor, ip, "c2").await == (false, "forbidden_route", false));
    ensure!(ask(&g, &good, "203.0.113.8", "c3").await == (true, "allowed", false));

    // Another execution environment learns the block from its first failure's failed condition.
    let g2 = gate(sdk, &key, 3).await?;
    ensure!(ask(&g2, &bad, ip, "d1").await == (false, "bad_signature", false));
    ensure!(ask(&g2, &bad, ip, "d2").await == (false, "bad_signature", true));
    ensure!(ask(&g2, &good, ip, "d3").await == (true, "allowed", false));

    // The shared count stopped at the limit.
    let window_start = {
        let t = unix_secs(SystemTime::now());
        t - t % 600
    };
    let item = aws_sdk_dynamodb::Client::new(sdk)
        .get_item()
        .table_name(RATE_TABLE)
        .key(
            "pk",
            AttributeValue::S(format!("authfail#600#{window_start}#{ip}")),
        )
        .consistent_read(true)
        .send()
        .await?
        .item
        .context("no failure counter")?;
    ensure!(
        item["count"].as_n().ok() == Some(&"3".to_owned()),
        "{item:?}"
    );

    // Every denial was audited with its precise detail, allows were not; the signature-verified
    // denial names its principal, the forged ones do not.
    let records = scan_all(&aws_sdk_dynamodb::Client::new(sdk), AUDIT_TABLE).await?;
    let denied: Vec<_> = records
        .iter()
        .filter(|r| r.get("decision") == Some(&Field::S("denied".into())))
        .collect();
    ensure!(denied.len() == 8 && records.len() == 8, "{records:?}");
    let field = |r: &&gatehouse::audit::Fields, k: &str| match r.get(k) {
        Some(Field::S(s)) => s.clone(),
        _ => String::new(),
    };
    for r in &denied {
        ensure!(field(r, "source_ip") == ip, "{r:?}");
        match field(r, "reason").as_str() {
            "bad_signature" => {
                ensure!(!r.contains_key("principal"), "{r:?}");
                let blocked = ["b4", "d2"].contains(&field(r, "request_id").as_str());
                ensure!(
                    field(r, "detail").contains("over its failed-verification limit") == blocked,
                    "{r:?}"
                );
            }
            "forbidden_route" => {
                ensure!(field(r, "sub") == "alice", "{r:?}");
                ensure!(
                    field(r, "principal")
                        == gatehouse::principal::principal_key(ISS, None, "alice"),
                    "{r:?}"
                );
                ensure!(
                    field(r, "detail").contains("no policy permits roles [auditor]"),
                    "{r:?}"
                );
            }
            other => anyhow::bail!("unexpected reason {other}: {r:?}"),
        }
    }
    let report = gatehouse_dev::audit::verify_table(sdk, AUDIT_TABLE, "AuditHmacSecret").await?;
    ensure!(report.is_clean() && report.segments == 2, "{report:?}");
    Ok(())
}
