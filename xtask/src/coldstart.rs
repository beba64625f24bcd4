//! `cargo xtask coldstart`: what a user pays on a cold start. Each release `bootstrap` (built by
//! `cargo lambda build --release`) is started N times as Lambda starts it — a fresh process with
//! the Lambda environment, talking to a Runtime API stand-in (`gatehouse_dev::runtime_api`) —
//! against the emulator (tables, secrets, bucket and key from the template) and the local OIDC
//! provider, and handles one real event: the authorizer a fresh token, predict a prompt with the
//! authorizer's context, the audit reader an auditor's `GET /v1/audit`, the sentinel an empty
//! stream batch, jwks-sync a scheduled sync.
//! Printed per function: init duration p50/p95 (process start → first poll for an event,
//! including configuration, SDK clients and the Secrets Manager reads), the first invocation's
//! duration p50/p95, and peak RSS. This machine runs each process on a full core; Lambda at
//! 128 MB gets about 0.07 vCPU, so CPU-bound init takes longer there.
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use gatehouse_dev::runtime_api::{ColdStart, Outcome, RuntimeApi, lambda_env, peak_rss_kib};
use gatehouse_dev::{bootstrap, devkeys, emulator::Emulator, paths, stack, template::Template};
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct ColdstartArgs {
    /// Cold starts per function.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// AWS_LAMBDA_FUNCTION_MEMORY_SIZE given to the process (informational: no CPU cap here).
    #[arg(long, default_value_t = 128)]
    pub memory_mb: u32,
    /// Use the bootstraps already built instead of running `cargo lambda build --release`.
    #[arg(long)]
    pub no_build: bool,
}

/// One function's measurements.
pub struct Summary {
    pub function: &'static str,
    pub init_ms: Vec<f64>,
    pub invoke_ms: Vec<f64>,
    pub rss_kib: Vec<u64>,
    pub bootstrap_bytes: u64,
}

/// Nearest-rank percentile of a sorted slice.
pub fn percentile<T: Copy>(sorted: &[T], p: usize) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One cold start of `bootstrap` with its own Runtime API stand-in: the previous process, killed
/// right after it answered, may have sent its next poll already; served by a shared stand-in
/// after the next run was armed, that stale poll took the new event and left the new process
/// waiting (two of nine runs hung so, in jwks-sync).
async fn one_run(
    function: &str,
    memory_mb: u32,
    bootstrap: &std::path::Path,
    fn_env: &[(String, String)],
    event: Value,
    log: &std::path::Path,
) -> Result<(ColdStart, u64)> {
    let api = RuntimeApi::start().await?;
    let mut env = fn_env.to_vec();
    env.extend(lambda_env(api.addr, function, memory_mb));
    env.retain(|(k, _)| k != "RUST_LOG");
    env.push(("RUST_LOG".into(), "warn".into()));
    api.arm(event);
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let spawned = Instant::now();
    let mut child = tokio::process::Command::new(bootstrap)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bootstrap.display()))?;
    let pid = child.id().context("no pid")?;
    let result = api.wait(spawned, Duration::from_secs(60)).await;
    let rss = peak_rss_kib(pid).unwrap_or(0);
    let _ = child.kill().await;
    // Name the function: a hang is read in its log.
    let run = result
        .with_context(|| format!("{} (its output: {})", bootstrap.display(), log.display()))?;
    Ok((run, rss))
}

/// Every function, in the order measured (predict and the reader reuse the authorizer's
/// context).
const FUNCTIONS: [&str; 5] = [
    "authorizer",
    "predict",
    "audit-reader",
    "audit-sentinel",
    "jwks-sync",
];

fn authorizer_event(token: &str, n: usize) -> Result<Value> {
    let text = std::fs::read_to_string(
        paths::repo_root().join("tests/fixtures/authorizer-v2-request.json"),
    )?;
    let mut e: Value = serde_json::from_str(&text)?;
    e["headers"]["authorization"] = json!(format!("Bearer {token}"));
    e["identitySource"] = json!([format!("Bearer {token}"), "POST /v1/predict"]);
    e["requestContext"]["requestId"] = json!(format!("coldstart-authorizer-{n}"));
    Ok(e)
}

/// An auditor's `GET /v1/audit` (the authorizer's context with the auditor role).
fn audit_reader_event(context: &Value, n: usize) -> Result<Value> {
    let mut e = predict_event(context, n)?;
    e["requestContext"]["authorizer"]["lambda"]["roles"] = json!("auditor");
    e["routeKey"] = json!("GET /v1/audit");
    e["requestContext"]["routeKey"] = json!("GET /v1/audit");
    e["rawPath"] = json!("/v1/audit");
    e["requestContext"]["http"]["path"] = json!("/v1/audit");
    e["requestContext"]["http"]["method"] = json!("GET");
    e["requestContext"]["requestId"] = json!(format!("coldstart-audit-reader-{n}"));
    if let Some(o) = e.as_object_mut() {
        o.remove("body");
    }
    if let Some(h) = e["headers"].as_object_mut() {
        h.remove("content-type");
    }
    Ok(e)
}

fn predict_event(context: &Value, n: usize) -> Result<Value> {
    let text =
        std::fs::read_to_string(paths::repo_root().join("tests/fixtures/predict-v2-request.json"))?;
    let mut e: Value = serde_json::from_str(&text)?;
    e["requestContext"]["authorizer"]["lambda"] = context.clone();
    e["requestContext"]["requestId"] = json!(format!("coldstart-predict-{n}"));
    Ok(e)
}

pub async fn run(args: &ColdstartArgs) -> Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if !args.no_build {
        crate::checks::lambda_release_builds()?;
    }
    let dir = paths::target_dir().join("lambda").join("x86_64");
    let offset: u16 = std::env::var("GATEHOUSE_PORT_OFFSET")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let template = Template::load(&paths::template_path())?;
    let mut emu = Emulator::start(4588 + offset).await?;
    let result = measure(args, &dir, &template, &emu).await;
    emu.stop().await;
    let summaries = result?;
    print_table(&summaries, args);
    Ok(())
}

async fn measure(
    args: &ColdstartArgs,
    dir: &std::path::Path,
    template: &Template,
    emu: &Emulator,
) -> Result<Vec<Summary>> {
    let sdk = emu.sdk_config().await;
    bootstrap::bootstrap(&sdk, template).await?;
    let key = devkeys::ensure_dev_key()?;
    let jwks_secret = template
        .function_env("AuthorizerFunction")?
        .get("GATEHOUSE_JWKS_SECRET_ID")
        .cloned()
        .context("the authorizer has no GATEHOUSE_JWKS_SECRET_ID")?;
    bootstrap::put_secret(&sdk, &jwks_secret, &devkeys::public_jwks(&key)).await?;
    // The provider jwks-sync reads (on an ephemeral port); tokens carry its issuer.
    let oidc = gatehouse_dev::oidc::serve(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        vec![key.public_jwk()],
    )
    .await?;
    let issuer = oidc.issuer.clone();
    let (_, audience) = gatehouse_dev::oidc::dev_token_claims()?;
    let fn_env = stack::functions_env(
        template,
        &emu.endpoint,
        &issuer,
        gatehouse::config::claims::Preset::Gatehouse,
    )?;
    let log = paths::logs_dir().join("coldstart.log");
    std::fs::create_dir_all(paths::logs_dir())?;
    let _ = std::fs::remove_file(&log);
    eprintln!(
        "==> {} cold starts per function against the emulator (logs: {})",
        args.runs,
        log.display()
    );

    let mut out = Vec::new();
    let mut context = Value::Null;
    for function in FUNCTIONS {
        let bootstrap = dir.join(function).join("bootstrap");
        let bootstrap_bytes = std::fs::metadata(&bootstrap)
            .with_context(|| format!("no {} (build it first)", bootstrap.display()))?
            .len();
        let env: Vec<(String, String)> = fn_env.clone().into_iter().collect();
        let mut s = Summary {
            function,
            init_ms: vec![],
            invoke_ms: vec![],
            rss_kib: vec![],
            bootstrap_bytes,
        };
        for n in 0..args.runs {
            let event = match function {
                "authorizer" => {
                    let spec = devkeys::TokenSpec::new(
                        &format!("coldstart-{n}"),
                        &["ai_operator"],
                        None,
                        900,
                        issuer.clone(),
                        audience.clone(),
                    );
                    authorizer_event(&devkeys::mint(&key, &spec)?, n)?
                }
                "predict" => predict_event(&context, n)?,
                "audit-reader" => audit_reader_event(&context, n)?,
                "audit-sentinel" => json!({ "Records": [] }),
                _ => {
                    json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})
                }
            };
            let (run, rss) =
                one_run(function, args.memory_mb, &bootstrap, &env, event, &log).await?;
            let Outcome::Response(v) = &run.outcome else {
                bail!("{function} failed its cold start: {:?}", run.outcome);
            };
            // Each cold start must have done its real work, not failed fast.
            match function {
                "authorizer" => {
                    if v["isAuthorized"] != json!(true) {
                        bail!("the authorizer denied the cold-start token: {v}");
                    }
                    context = v["context"].clone();
                }
                "predict" | "audit-reader" if v["statusCode"] != json!(200) => {
                    bail!(
                        "{function} answered {} on its cold start: {v}",
                        v["statusCode"]
                    );
                }
                "jwks-sync" if v["outcome"] == json!("failed") => {
                    bail!("jwks-sync failed its cold-start sync: {v}");
                }
                _ => {}
            }
            s.init_ms.push(ms(run.init));
            s.invoke_ms.push(ms(run.first_invoke));
            s.rss_kib.push(rss);
        }
        s.init_ms.sort_by(f64::total_cmp);
        s.invoke_ms.sort_by(f64::total_cmp);
        s.rss_kib.sort_unstable();
        out.push(s);
    }
    Ok(out)
}

fn print_table(summaries: &[Summary], args: &ColdstartArgs) {
    println!(
        "cold starts: {} per function, x86_64 release bootstraps, emulator on loopback, one full core",
        args.runs
    );
    println!(
        "| function | bootstrap MiB | init p50 ms | init p95 ms | first invoke p50 ms | first invoke p95 ms | peak RSS p50 MiB | peak RSS max MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for s in summaries {
        let f = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.1}"));
        let mib = |v: Option<u64>| v.map_or("-".into(), |x| format!("{:.1}", x as f64 / 1024.0));
        println!(
            "| {} | {:.2} | {} | {} | {} | {} | {} | {} |",
            s.function,
            s.bootstrap_bytes as f64 / (1024.0 * 1024.0),
            f(percentile(&s.init_ms, 50)),
            f(percentile(&s.init_ms, 95)),
            f(percentile(&s.invoke_ms, 50)),
            f(percentile(&s.invoke_ms, 95)),
            mib(percentile(&s.rss_kib, 50)),
            mib(s.rss_kib.last().copied()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=20).collect();
        assert_eq!(percentile(&v, 50), Some(10));
        assert_eq!(percentile(&v, 95), Some(19));
        assert_eq!(percentile(&v, 100), Some(20));
        assert_eq!(percentile(&[7u32], 95), Some(7));
        assert_eq!(percentile::<u32>(&[], 50), None);
    }
}
