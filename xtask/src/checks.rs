//! `cargo xtask test`: the one command CI runs.
use std::process::Command;

use anyhow::{Context, Result, bail};
use gatehouse_dev::paths;
use gatehouse_dev::stack::{Ports, Stack, StackOptions};
use gatehouse_dev::tools;

pub const TEST_REQUIREMENTS: &[&str] = &["requirements.txt", "requirements-infra.txt"];
/// checkov has a venv of its own (its boto3 pin conflicts with the SAM CLI's).
pub const CHECKOV_REQUIREMENTS: &[&str] = &["requirements-checkov.txt"];
/// Sub-claim prefixes of the tokens the post-test steps mint: none of the tests use them, so
/// the smoke test's 429 and schemathesis's load never spend another test's quota.
const SMOKE_SUB: &str = "ci-smoke";
const SMOKE_RATE_SUB: &str = "ci-smoke-ratelimit";
const SMOKE_BUDGET_SUB: &str = "ci-smoke-budget";
const SCHEMATHESIS_SUB: &str = "ci-schemathesis";

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn step(what: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("==> {what}");
    let status = cmd
        .current_dir(paths::repo_root())
        .env("PATH", paths::path_with_venv())
        .status()
        .with_context(|| format!("could not run: {what}"))?;
    if !status.success() {
        bail!("{what}: failed ({status})");
    }
    Ok(())
}

pub fn infra_checks() -> Result<()> {
    let template = paths::template_path();
    let venv = paths::venv_bin();
    step(
        "sam validate --lint",
        Command::new(venv.join("sam"))
            .args([
                "validate",
                "--lint",
                "--region",
                "us-east-1",
                "--template-file",
            ])
            .arg(&template)
            .env("SAM_CLI_TELEMETRY", "0"),
    )?;
    let translated = paths::local_dir().join("template.translated.json");
    step(
        "translate the SAM template (samtranslator)",
        Command::new(venv.join("python"))
            .arg(paths::repo_root().join("devtools/python/sam_translate.py"))
            .arg(&template)
            .arg(&translated)
            .env("AWS_DEFAULT_REGION", "us-east-1"),
    )?;
    step(
        "cfn-lint (translated template)",
        Command::new(venv.join("cfn-lint")).arg(&translated),
    )?;
    // Suppressions live next to the resources they concern (Metadata.checkov.skip in
    // infra/template.yaml), each with its reason; SAM copies function Metadata through.
    step(
        "checkov (translated template, offline)",
        Command::new(paths::checkov_venv_dir().join("bin").join("checkov"))
            .args([
                "--skip-download",
                "--framework",
                "cloudformation",
                "--compact",
                "--quiet",
                "--file",
            ])
            .arg(&translated),
    )?;
    Ok(())
}

fn aarch64_target_installed() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("aarch64-unknown-linux-gnu"))
        .unwrap_or(false)
}

/// The deployed functions and the size budget of each release `bootstrap` (bytes). A binary
/// that grows past its budget fails `cargo xtask test`: every MiB is cold-start time and attack
/// surface, so growth must be a decision (raise the budget here, with the reason in the commit).
pub const FUNCTION_BUDGETS: &[(&str, u64)] = &[
    ("authorizer", 10 * 1024 * 1024),
    ("predict", 10 * 1024 * 1024),
    // Adds an HTTPS client (hyper-util + hyper-rustls, the SDK's own stack) to the shared core.
    ("jwks-sync", 10 * 1024 * 1024),
    ("audit-sentinel", 10 * 1024 * 1024),
    ("audit-reader", 10 * 1024 * 1024),
];

/// `cargo lambda build --release` of each function on its own (so each links only its own
/// features) per architecture, each into its own `--lambda-dir` under the target dir (reused
/// across runs); then the bootstrap sizes against their budgets.
pub fn lambda_release_builds() -> Result<()> {
    let mut arches = vec![("x86_64", "--x86-64")];
    if aarch64_target_installed() {
        arches.push(("arm64", "--arm64"));
    } else {
        eprintln!(
            "==> note: the aarch64-unknown-linux-gnu Rust target is not installed; skipping the \
             arm64 build (rustup target add aarch64-unknown-linux-gnu to include it)"
        );
    }
    let mut over = Vec::new();
    for (arch, flag) in arches {
        let dir = paths::target_dir().join("lambda").join(arch);
        for (function, budget) in FUNCTION_BUDGETS {
            step(
                &format!("cargo lambda build --release -p {function} ({arch})"),
                Command::new(cargo())
                    .args([
                        "lambda",
                        "build",
                        "--release",
                        "--quiet",
                        "-p",
                        function,
                        flag,
                        "--lambda-dir",
                    ])
                    .arg(&dir),
            )?;
            let bootstrap = dir.join(function).join("bootstrap");
            let size = std::fs::metadata(&bootstrap)
                .with_context(|| format!("no {}", bootstrap.display()))?
                .len();
            let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
            let verdict = if size > *budget { "OVER BUDGET" } else { "ok" };
            eprintln!(
                "    {arch:<7} {function:<15} bootstrap {:>6.2} MiB ({size} bytes), budget {:.2} MiB: {verdict}",
                mib(size),
                mib(*budget)
            );
            if size > *budget {
                over.push(format!("{function} ({arch}) {:.2} MiB", mib(size)));
            }
        }
    }
    if !over.is_empty() {
        bail!(
            "release bootstraps over their size budget: {}",
            over.join(", ")
        );
    }
    Ok(())
}

/// schemathesis against the running gateway with infra/openapi.yaml: no 5xx, and every response
/// (status, content type, headers, body) as documented.
fn schemathesis(gateway: &str, token: &str) -> Result<()> {
    let report = paths::local_dir().join("schemathesis");
    std::fs::create_dir_all(&report)?;
    let har = report.join("run.har");
    // A stale report from an earlier run must not stand in for this one.
    let _ = std::fs::remove_file(&har);
    step(
        "schemathesis (infra/openapi.yaml against the local gateway)",
        Command::new(paths::venv_bin().join("st"))
            .arg("run")
            .arg(paths::repo_root().join("infra").join("openapi.yaml"))
            .args(["--url", gateway])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_headers_conformance,response_schema_conformance",
                "--max-examples",
                "25",
                "--seed",
                "20261128",
                "--workers",
                "1",
                "--generation-database",
                "none",
                "--no-color",
                "--report-dir",
            ])
            .arg(&report)
            .arg("--report-har-path")
            .arg(&har)
            .args(["--report", "har"])
            // The run's token never reaches the output or the report.
            .args(["--output-sanitize", "true"]),
    )?;
    summarize_statuses(&har)
}

/// Prints how many responses of each status the run saw, and fails if none was a 200: a run
/// that only ever met 401/403/429 would pass every check without testing the API.
fn summarize_statuses(har: &std::path::Path) -> Result<()> {
    let text =
        std::fs::read_to_string(har).with_context(|| format!("reading {}", har.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).context("HAR report is not JSON")?;
    let mut counts = std::collections::BTreeMap::<u64, u32>::new();
    for e in v["log"]["entries"].as_array().into_iter().flatten() {
        if let Some(s) = e["response"]["status"].as_u64() {
            *counts.entry(s).or_default() += 1;
        }
    }
    let seen: Vec<String> = counts.iter().map(|(s, n)| format!("{s}×{n}")).collect();
    eprintln!("    schemathesis responses: {}", seen.join(", "));
    if !counts.contains_key(&200) {
        bail!("schemathesis got no 200 at all: the run did not exercise the API");
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

pub async fn run() -> Result<()> {
    tools::ensure_venv(TEST_REQUIREMENTS)?;
    tools::ensure_venv_at(&paths::checkov_venv_dir(), CHECKOV_REQUIREMENTS)?;
    step(
        "cargo fmt --check",
        Command::new(cargo()).args(["fmt", "--all", "--check"]),
    )?;
    step(
        "cargo clippy",
        Command::new(cargo()).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--quiet",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    crate::supply_chain::run()?;
    // Compile every test before the stack starts, so the build does not compete with it.
    step(
        "build tests",
        Command::new(cargo()).args(["test", "--workspace", "--no-run", "--quiet"]),
    )?;
    infra_checks()?;
    lambda_release_builds()?;

    let mut stack = Stack::start(StackOptions {
        ports: Ports::TEST.offset_from_env(),
        reload: false,
        // Short key refresh periods so the rotation tests see rotations within seconds; a short
        // fetch timeout so the provider-timeout test does not wait 5 s.
        extra_env: [
            ("GATEHOUSE_KEYS_REFRESH_SECS", "2"),
            ("GATEHOUSE_UNKNOWN_KID_REFRESH_SECS", "1"),
            ("GATEHOUSE_JWKS_TIMEOUT_MS", "1000"),
            // A 1 s leeway, so the expired-token test waits seconds, not half a minute.
            ("GATEHOUSE_LEEWAY_SECS", "1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec(),
        preset: gatehouse::config::claims::Preset::Gatehouse,
        // The tests run jwks-sync themselves (a schedule would undo the rotation test's puts).
        sync_every: None,
    })
    .await?;
    let (emulator, gateway) = (stack.emulator.endpoint.clone(), stack.gateway.url());
    let (issuer, invoke) = (stack.issuer.clone(), stack.invoke_url.clone());
    // Blocking wait off the async workers: the gateway serves the tests from this process.
    let tests = tokio::task::spawn_blocking(move || {
        step(
            "cargo test --workspace",
            Command::new(cargo())
                .args(["test", "--workspace", "--no-fail-fast"])
                .env("GATEHOUSE_EMULATOR_URL", emulator)
                .env("GATEHOUSE_GATEWAY_URL", gateway)
                .env("GATEHOUSE_INVOKE_URL", invoke)
                // The test stack's issuer (its local OIDC provider): what dev tokens carry.
                .env("GATEHOUSE_DEV_ISSUER", issuer),
        )
    });
    // Stop the stack on Ctrl-C or SIGTERM too (a cancelled CI job), so no emulator or watch
    // process outlives the run and blocks the next one's ports.
    let result = tokio::select! {
        r = tests => r.context("test runner task").and_then(|r| r),
        _ = shutdown_signal() => Err(anyhow::anyhow!("interrupted")),
    };
    let result = match result {
        Ok(()) => after_tests(&stack).await,
        Err(e) => Err(e),
    };
    stack.stop().await;
    result?;
    eprintln!("==> all checks passed");
    Ok(())
}

/// Against the test stack, after the tests: the deploy smoke test and schemathesis, each with
/// subjects of its own (see SMOKE_SUB).
async fn after_tests(stack: &Stack) -> Result<()> {
    let gateway = stack.gateway.url();
    let token = stack.token(SMOKE_SUB, &["ai_operator"], None, 900)?;
    // analyst: the smallest quota that may call predict (20 per minute), so the 429 comes fast.
    let rate_token = stack.token(SMOKE_RATE_SUB, &["analyst"], None, 900)?;
    // trial: a daily budget smaller than one worst-case request, for the budget refusal.
    let budget_token = stack.token(SMOKE_BUDGET_SUB, &["trial"], None, 900)?;
    crate::smoke::run(&crate::smoke::SmokeArgs {
        url: gateway.clone(),
        token,
        forbidden_token: None,
        rate_token: Some(rate_token),
        skip_rate_limit: false,
        model: None,
        budget_token: Some(budget_token),
    })
    .await?;
    // An operator who is also an auditor, so schemathesis exercises GET /v1/audit too.
    let st_token = stack.token(SCHEMATHESIS_SUB, &["ai_operator", "auditor"], None, 900)?;
    tokio::task::spawn_blocking(move || schemathesis(&gateway, &st_token))
        .await
        .context("schemathesis task")?
}
