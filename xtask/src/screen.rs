//! `cargo xtask screen`, `screen-eval` and `train-screen`: the prompt screen from the shell.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use gatehouse::screen::eval::{data_dir, evaluate, load_jsonl, screen_jsonl};
use gatehouse::screen::train::{TrainParams, encode, train};
use gatehouse::screen::{ScreenConfig, Screener};

/// JSON Lines `{"text": ...}` on stdin → `{"verdict","score","rules"}` per line on stdout.
pub fn screen_stdin() -> Result<()> {
    let screener = Screener::new(ScreenConfig::default())?;
    screen_jsonl(&screener, std::io::stdin().lock(), std::io::stdout().lock())?;
    Ok(())
}

/// Recall at FPR ≤ 1% and ≤ 5%, AUC and per-category recall for a labelled JSONL file.
pub fn eval(file: &Path) -> Result<()> {
    let screener = Screener::new(ScreenConfig::default())?;
    let rows = load_jsonl(file).with_context(|| format!("reading {}", file.display()))?;
    print!("{}", evaluate(&screener, &rows));
    Ok(())
}

/// Retrains the learned layer on the train split (deterministic) and writes the weights that
/// `shared/src/screen/model.bin` embeds.
pub fn train_model(input: Option<PathBuf>, out: Option<PathBuf>) -> Result<()> {
    let input = input.unwrap_or_else(|| data_dir().join("train.jsonl"));
    let out = out
        .unwrap_or_else(|| gatehouse_dev::paths::repo_root().join("shared/src/screen/model.bin"));
    let rows = load_jsonl(&input).with_context(|| format!("reading {}", input.display()))?;
    let bytes = encode(&train(&rows, &TrainParams::default()));
    std::fs::write(&out, &bytes)?;
    eprintln!(
        "trained on {} rows; wrote {} bytes to {}",
        rows.len(),
        bytes.len(),
        out.display()
    );
    Ok(())
}
