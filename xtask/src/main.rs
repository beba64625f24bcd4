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

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Gatehouse dev automation")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the local stack (emulator, functions under cargo lambda watch, gateway on :3000).
    Dev,
    /// Print a JWT signed with the dev key (.local/dev-keys/private-jwks.json).
    Token {
        #[arg(long)]
        sub: String,
        /// Comma-separated roles, e.g. ai_operator,analyst
        #[arg(long, default_value = "")]
        roles: String,
        #[arg(long)]
        tenant: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 900)]
        ttl: u64,
    },
    /// Install what is missing, start the emulator and the stack, run fmt, clippy, every test and
    /// the infra checks, then stop everything.
    Test,
    /// Screen JSON Lines prompts from stdin ({"text": ...}) → {"verdict","score","rules"} lines.
    Screen,
    /// Evaluate the screen on a labelled JSONL file (text, label, optional category).
    ScreenEval { file: std::path::PathBuf },
    /// Retrain the screen's learned layer from the corpus train split (deterministic).
    TrainScreen {
        #[arg(long)]
        input: Option<std::path::PathBuf>,
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
    /// Exercise a deployed stage: 200, 401, 403, 400 (suspicious prompt), 429 after the limit.
    Smoke(smoke::SmokeArgs),
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
        Cmd::Dev => dev::run().await,
        Cmd::Token {
            sub,
            roles,
            tenant,
            ttl,
        } => {
            let roles: Vec<&str> = roles
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .collect();
            println!("{}", dev::mint_token(&sub, &roles, tenant.as_deref(), ttl)?);
            Ok(())
        }
        Cmd::Test => checks::run().await,
        Cmd::Screen => screen::screen_stdin(),
        Cmd::ScreenEval { file } => screen::eval(&file),
        Cmd::TrainScreen { input, out } => screen::train_model(input, out),
        Cmd::AuditVerify(args) => one_line(audit::verify(args).await),
        Cmd::AuditQuery(args) => one_line(audit::query(args).await),
        Cmd::Smoke(args) => smoke::run(&args).await,
        Cmd::SupplyChain => supply_chain::run(),
        Cmd::Coldstart(args) => coldstart::run(&args).await,
        Cmd::Bench => bench::run(),
    }
}
