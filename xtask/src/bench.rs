//! `cargo xtask bench`: Gatehouse's hot paths as ratios against the Python pipeline it replaces,
//! measured in one session. Runs `devtools/bench/seed_pipeline.py` (own venv), then the
//! `seed_compare` criterion bench, then the seed again; prints the medians and the ratios
//! against the mean of the two seed runs (which also shows how much the machine drifted).
use std::process::Command;

use anyhow::{Context, Result, bail};
use gatehouse_dev::{paths, tools};

const SEED_REQUIREMENTS: &[&str] = &["requirements-seedbench.txt"];

/// Targets from the lean-functions issue: (criterion id, what, target ratio to the seed's whole
/// pipeline).
const CASES: &[(&str, &str, f64)] = &[
    ("sanitize_screen_1KiB", "sanitize + screen, 1 KiB", 0.5),
    (
        "authorizer_and_predict_1KiB",
        "authorizer decision + predict pipeline, 1 KiB",
        1.0,
    ),
];

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// µs per request of the seed's whole pipeline, from its first output line.
pub fn parse_seed(output: &str) -> Option<f64> {
    output
        .lines()
        .find(|l| l.starts_with("seed python pipeline:"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

fn run_seed() -> Result<f64> {
    let python = paths::local_dir()
        .join("venv-seedbench")
        .join("bin")
        .join("python");
    let out = Command::new(python)
        .arg(paths::repo_root().join("devtools/bench/seed_pipeline.py"))
        .arg("3000")
        .output()
        .context("running the seed pipeline")?;
    let text = String::from_utf8_lossy(&out.stdout);
    eprint!("{text}");
    parse_seed(&text).context("the seed pipeline printed no figure")
}

/// Median in µs from criterion's `estimates.json` of `seed_compare/<id>`.
fn criterion_median_us(id: &str) -> Result<f64> {
    let path = paths::target_dir()
        .join("criterion")
        .join("seed_compare")
        .join(id)
        .join("new")
        .join("estimates.json");
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    v["median"]["point_estimate"]
        .as_f64()
        .map(|ns| ns / 1000.0)
        .context("no median in estimates.json")
}

pub fn run() -> Result<()> {
    tools::ensure_venv_at(
        &paths::local_dir().join("venv-seedbench"),
        SEED_REQUIREMENTS,
    )?;
    eprintln!("==> seed Python pipeline (before)");
    let before = run_seed()?;
    eprintln!("==> cargo bench -p gatehouse-shared --bench seed_compare");
    let status = Command::new(cargo())
        .current_dir(paths::repo_root())
        .args([
            "bench",
            "--quiet",
            "-p",
            "gatehouse-shared",
            "--bench",
            "seed_compare",
        ])
        .status()
        .context("running cargo bench")?;
    if !status.success() {
        bail!("cargo bench failed ({status})");
    }
    eprintln!("==> seed Python pipeline (after)");
    let after = run_seed()?;
    let seed = (before + after) / 2.0;
    println!(
        "seed Python pipeline (whole, 1 KiB): {before:.1} µs before, {after:.1} µs after; mean {seed:.1} µs"
    );
    println!("| Gatehouse path | median µs | ratio to the seed's whole pipeline | target |");
    println!("|---|---|---|---|");
    for (id, what, target) in CASES {
        let us = criterion_median_us(id)?;
        let ratio = us / seed;
        println!(
            "| {what} | {us:.1} | {ratio:.2}× | ≤ {target:.1}× {} |",
            if ratio <= *target {
                "(met)"
            } else {
                "(missed)"
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_seed;

    #[test]
    fn reads_the_seed_figure() {
        let out = "seed python pipeline: 48.7 us/request (min 47.9, max 50.2), prompt 1024 B\n\
                   seed python authorizer part (jose HS256 + role): 20.1 us/request\n";
        assert_eq!(parse_seed(out), Some(48.7));
        assert_eq!(parse_seed("nothing"), None);
    }
}
