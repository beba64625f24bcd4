//! `cargo xtask bench`: Gatehouse's hot paths as ratios against the Python pipeline it replaces,
//! measured in one session. Runs `devtools/bench/seed_pipeline.py` (own venv) once to warm up,
//! then, [`ROUNDS`] times, each path's `seed_compare` criterion bench (short: 1 s warm-up, 2 s
//! measured) followed by a seed run: seed, path 1, seed, path 2, seed, path 1, … Each path's
//! ratio in a round is taken against the mean of the two seed runs on either side of it, a few
//! seconds apart rather than around ~16 s of criterion runs. On this shared host the rounds
//! still spread widely (0.39–0.64× for one build, against 0.34–0.61× with three long rounds), so
//! the median of seven is quoted, with the range. Prints every round and, per path, the round
//! with the median ratio (its µs, seed and ratio, which the README quotes) with the range.
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

/// Rounds of (each path, seed). Seven short ones keep a slow spell from deciding the figure.
pub const ROUNDS: usize = 7;

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

/// One path's median µs, from a short criterion run of that bench alone.
fn run_criterion(id: &str) -> Result<f64> {
    let status = Command::new(cargo())
        .current_dir(paths::repo_root())
        .args([
            "bench",
            "--quiet",
            "-p",
            "gatehouse-shared",
            "--bench",
            "seed_compare",
            "--",
            "--warm-up-time",
            "1",
            "--measurement-time",
            "2",
            "--noplot",
            id,
        ])
        .status()
        .context("running cargo bench")?;
    if !status.success() {
        bail!("cargo bench failed ({status})");
    }
    criterion_median_us(id)
}

/// One round of one path: its ratio to the seed, its median µs, the seed's µs around it.
type Round = (f64, f64, f64);

/// The round with the median ratio (the upper middle one for an even count), then the lowest and
/// the highest ratio; `None` without rounds. The median round is quoted whole, so its µs, seed
/// and ratio belong together.
pub fn median_round(mut rounds: Vec<Round>) -> Option<(Round, f64, f64)> {
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some((
        *rounds.get(rounds.len() / 2)?,
        rounds.first()?.0,
        rounds.last()?.0,
    ))
}

pub fn run() -> Result<()> {
    tools::ensure_venv_at(
        &paths::local_dir().join("venv-seedbench"),
        SEED_REQUIREMENTS,
    )?;
    // Right after a build the seed ran 30-60% slower than a minute later (82-84 µs against
    // 50-55 µs, three sessions of 2026-11-30), which flattered every ratio: one run to warm up,
    // not counted.
    eprintln!("==> seed Python pipeline (warm-up, not counted)");
    run_seed()?;
    eprintln!("==> seed Python pipeline (before round 1)");
    let mut seed_before = run_seed()?;
    // rounds[r][k]: path k in round r, as (ratio, µs, seed mean around it).
    let mut rounds: Vec<Vec<Round>> = Vec::new();
    for round in 1..=ROUNDS {
        let mut this = Vec::new();
        for (id, what, _) in CASES {
            eprintln!("==> seed_compare/{id} ({what}), round {round}");
            let us = run_criterion(id)?;
            eprintln!("==> seed Python pipeline");
            let seed_after = run_seed()?;
            let seed = (seed_before + seed_after) / 2.0;
            this.push((us / seed, us, seed));
            seed_before = seed_after;
        }
        rounds.push(this);
    }
    println!("| round | {} |", {
        let names: Vec<String> = CASES
            .iter()
            .map(|(_, what, _)| format!("{what}: µs / seed around it"))
            .collect();
        names.join(" | ")
    });
    println!("|---|{}", "---|".repeat(CASES.len()));
    for (i, per_case) in rounds.iter().enumerate() {
        let cells: Vec<String> = per_case
            .iter()
            .map(|(ratio, us, seed)| format!("{us:.1} / {seed:.1} µs = {ratio:.2}×"))
            .collect();
        println!("| {} | {} |", i + 1, cells.join(" | "));
    }
    println!();
    println!(
        "| Gatehouse path | median round: µs | its seed µs | its ratio (range over {ROUNDS} rounds) | target |"
    );
    println!("|---|---|---|---|---|");
    for (k, (_, what, target)) in CASES.iter().enumerate() {
        let per_round: Vec<Round> = rounds.iter().filter_map(|r| r.get(k).copied()).collect();
        let Some(((ratio, us, seed), lo, hi)) = median_round(per_round) else {
            bail!("no figures for {what}");
        };
        println!(
            "| {what} | {us:.1} | {seed:.1} | {ratio:.2}× ({lo:.2}–{hi:.2}×) | ≤ {target:.1}× {} |",
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
    use super::{median_round, parse_seed};

    #[test]
    fn the_median_round_is_quoted_whole() {
        // (ratio, µs, seed): the middle ratio's own µs and seed come with it.
        let rounds = vec![(0.45, 30.9, 68.0), (0.56, 29.2, 52.4), (0.55, 28.8, 52.3)];
        assert_eq!(median_round(rounds), Some(((0.55, 28.8, 52.3), 0.45, 0.56)));
        assert_eq!(
            median_round(vec![(2.0, 1.0, 1.0), (1.0, 1.0, 1.0)]),
            Some(((2.0, 1.0, 1.0), 1.0, 2.0))
        );
        assert_eq!(median_round(Vec::new()), None);
    }

    #[test]
    fn reads_the_seed_figure() {
        let out = "seed python pipeline: 48.7 us/request (min 47.9, max 50.2), prompt 1024 B\n\
                   seed python authorizer part (jose HS256 + role): 20.1 us/request\n";
        assert_eq!(parse_seed(out), Some(48.7));
        assert_eq!(parse_seed("nothing"), None);
    }
}
