//! `cargo xtask`: the project's dev automation. Run `cargo xtask --help`.
use anyhow::Result;
use clap::{Parser, Subcommand};

mod audit;
mod bench;
mod checks;
mod coldstart;
mod dev;
mod screen;
mod smoke;
mod supply_chain;
mod suspend;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Gatehouse dev automation")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the local stack (emulator, local OIDC provider, the functions under cargo lambda
    /// watch, gateway on :3000).
    Dev(dev::DevArgs),
    /// Print a JWT signed with the dev key (.local/dev-keys/private-jwks.json) in a provider's
    /// claim shape; warns on stderr when the local authorizer would refuse it.
    Token(dev::TokenArgs),
    /// Print the principal key (<issuer hash>#<tenant>#<sub>) that rate-limit counters and the
    /// audit log's `principal` use (for `audit-query --principal`).
    PrincipalKey(dev::PrincipalKeyArgs),
    /// Install what is missing, start the emulator and the stack, run fmt, clippy, every test and
    /// the infra checks, then stop everything.
    Test,
    /// Screen JSON Lines prompts from stdin ({"text": ...}) → {"verdict","score","rules","window"} lines.
    Screen,
    /// Evaluate the screen: on a labelled JSONL file (text, label, optional category), or
    /// leave-one-source-out over the vendored corpora (--by-source).
    ScreenEval {
        file: Option<std::path::PathBuf>,
        /// Leave-one-source-out table: train without each source, measure on it.
        #[arg(long)]
        by_source: bool,
        /// With --by-source: only this source.
        #[arg(long)]
        only: Option<String>,
    },
    /// Retrain the screen's learned layer from the vendored corpora under data/ (deterministic).
    TrainScreen {
        /// Corpus root (default: data/ of this repository).
        #[arg(long)]
        data: Option<std::path::PathBuf>,
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Verify the audit log: the hash chain with the HMAC key (HMACs, sequence, links, TTL) and
    /// the table against the sentinel's signed digests with its public key; exits non-zero on any
    /// finding.
    AuditVerify(audit::VerifyArgs),
    /// Print audit records (JSON lines, oldest first) matching every filter given, each marked
    /// `verified` or not.
    AuditQuery(audit::QueryArgs),
    /// Hot-path benchmarks as ratios against the Python pipeline Gatehouse replaces
    /// (devtools/bench/seed_pipeline.py), measured in one run.
    Bench,
    /// Start each release bootstrap as Lambda would, N times, against the emulator: init and first
    /// invocation p50/p95 and peak RSS.
    Coldstart(coldstart::ColdstartArgs),
    /// Dependency gate: RustSec advisories (cargo audit), licences and sources (cargo deny),
    /// duplicate crate versions in each function binary.
    SupplyChain,
    /// Exercise a deployed stage: predict 200 / 401 / 403 / 400, GET /v1/models and /v1/usage,
    /// a token-budget refusal, 429 after the request limit.
    Smoke(smoke::SmokeArgs),
    /// Show, lift or impose a repeat offender's suspension from predict.
    Suspend(suspend::SuspendArgs),
}

/// The audit tools' errors as one line (`error: what: why`) and exit status 1, not a debug dump.
fn one_line(result: Result<()>) -> Result<()> {
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Dev(args) => dev::run(args).await,
        Cmd::Token(args) => dev::token(args),
        Cmd::PrincipalKey(args) => dev::principal_key_cmd(args),
        Cmd::Test => checks::run().await,
        Cmd::Screen => screen::screen_stdin(),
        Cmd::ScreenEval {
            file,
            by_source,
            only,
        } => screen::eval(file.as_deref(), by_source, only.as_deref()),
        Cmd::TrainScreen { data, out } => screen::train_model(data, out),
        Cmd::AuditVerify(args) => one_line(audit::verify(args).await),
        Cmd::AuditQuery(args) => one_line(audit::query(args).await),
        Cmd::Smoke(args) => smoke::run(&args).await,
        Cmd::Suspend(args) => suspend::run(args).await,
        Cmd::SupplyChain => supply_chain::run(),
        Cmd::Coldstart(args) => coldstart::run(&args).await,
        Cmd::Bench => bench::run(),
    }
}
