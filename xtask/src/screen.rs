//! `cargo xtask screen`, `screen-eval` and `train-screen`: the prompt screen from the shell.
//! The work is done by `gatehouse_dev::screen` (dev-only; never linked into a Lambda binary).
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use gatehouse::screen::{ScreenConfig, Screener};
use gatehouse_dev::screen::corpus::{self, Corpus, Row};
use gatehouse_dev::screen::eval::{evaluate, fold_table, screen_jsonl};
use gatehouse_dev::screen::train::TrainParams;

/// JSON Lines `{"text": ...}` on stdin → `{"verdict","score","rules","window"}` per line on
/// stdout.
pub fn screen_stdin() -> Result<()> {
    let screener = Screener::new(ScreenConfig::default())?;
    screen_jsonl(&screener, std::io::stdin().lock(), std::io::stdout().lock())?;
    Ok(())
}

/// With a file: recall at FPR ≤ 1% and ≤ 2%, AUC, block/flag rates and per-category figures of
/// the committed screen on that labelled JSONL file. With `--by-source`: the
/// leave-one-source-out table (one training run per source).
pub fn eval(file: Option<&Path>, by_source: bool, only: Option<&str>) -> Result<()> {
    if by_source {
        let corpus = Corpus::load(&corpus::data_root())?;
        let rows = gatehouse_dev::screen::leave_one_source_out(
            &corpus,
            &TrainParams::default(),
            ScreenConfig::default(),
            only,
        )?;
        print!("{}", fold_table(&rows));
        return Ok(());
    }
    let file = file.context("give a labelled JSONL file, or --by-source")?;
    let screener = Screener::new(ScreenConfig::default())?;
    let rows = corpus::load_jsonl(file, "file")?;
    let refs: Vec<&Row> = rows.iter().collect();
    print!("{}", evaluate(&screener, &refs));
    Ok(())
}

/// Retrains the learned layer from the vendored corpora (deterministic) and writes the weights
/// that `shared/screen/src/model.bin` embeds.
pub fn train_model(data: Option<PathBuf>, out: Option<PathBuf>) -> Result<()> {
    let data = data.unwrap_or_else(corpus::data_root);
    let out = out
        .unwrap_or_else(|| gatehouse_dev::paths::repo_root().join("shared/screen/src/model.bin"));
    let corpus = Corpus::load(&data)?;
    let rows = corpus.training_rows(None).len();
    let weights = gatehouse_dev::screen::train_committed(&corpus, &TrainParams::default())?;
    let bytes = gatehouse_dev::screen::encode(&weights);
    std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "trained on {rows} rows from {}; wrote {} bytes to {}",
        data.display(),
        bytes.len(),
        out.display()
    );
    Ok(())
}
