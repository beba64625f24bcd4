//! `cargo xtask test`: the one command CI runs.
use std::process::Command;

use anyhow::{Context, Result, bail};
use gatehouse_dev::paths;
use gatehouse_dev::stack::{Ports, Stack, StackOptions};
use gatehouse_dev::tools;

pub const TEST_REQUIREMENTS: &[&str] = &["requirements.txt", "requirements-infra.txt"];

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
    // Compile every test before the stack starts, so the build does not compete with it.
    step(
        "build tests",
        Command::new(cargo()).args(["test", "--workspace", "--no-run", "--quiet"]),
    )?;
    infra_checks()?;

    let mut stack = Stack::start(StackOptions {
        ports: Ports::TEST.offset_from_env(),
        reload: false,
        // Short key refresh periods so the rotation test sees rotations within seconds.
        extra_env: &[
            ("GATEHOUSE_KEYS_REFRESH_SECS", "2"),
            ("GATEHOUSE_UNKNOWN_KID_REFRESH_SECS", "1"),
        ],
    })
    .await?;
    let (emulator, gateway) = (stack.emulator.endpoint.clone(), stack.gateway.url());
    // Blocking wait off the async workers: the gateway serves the tests from this process.
    let tests = tokio::task::spawn_blocking(move || {
        step(
            "cargo test --workspace",
            Command::new(cargo())
                .args(["test", "--workspace"])
                .env("GATEHOUSE_EMULATOR_URL", emulator)
                .env("GATEHOUSE_GATEWAY_URL", gateway)
                .env(
                    "GATEHOUSE_INVOKE_URL",
                    format!("http://127.0.0.1:{}", Ports::TEST.offset_from_env().invoke),
                ),
        )
    });
    // Stop the stack on Ctrl-C or SIGTERM too (a cancelled CI job), so no emulator or watch
    // process outlives the run and blocks the next one's ports.
    let result = tokio::select! {
        r = tests => r.context("test runner task").and_then(|r| r),
        _ = shutdown_signal() => Err(anyhow::anyhow!("interrupted")),
    };
    stack.stop().await;
    result?;
    eprintln!("==> all checks passed");
    Ok(())
}
