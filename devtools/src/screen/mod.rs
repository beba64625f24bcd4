//! Dev-only tooling for the prompt screen: corpus loading, deterministic training of the
//! learned layer and its evaluation (in-corpus and leave-one-source-out). Driven by
//! `cargo xtask train-screen`, `cargo xtask screen-eval` and `cargo xtask screen`; never linked
//! into a Lambda binary.

pub mod corpus;
pub mod eval;
pub mod train;

use anyhow::Result;
use gatehouse::screen::model::{self, ModelWeights};
use gatehouse::screen::{ScreenConfig, Screener};

use corpus::Corpus;
use eval::FoldRow;
use train::TrainParams;

/// The weights `shared/screen/src/model.bin` holds: trained on every source (the development
/// corpus's train split only) plus the hand-written benign rows.
pub fn train_committed(corpus: &Corpus, params: &TrainParams) -> Result<ModelWeights> {
    train::train(&corpus.training_rows(None), params)
}

/// The committed weights in their file format.
pub fn encode(weights: &ModelWeights) -> Vec<u8> {
    model::encode(weights)
}

/// Leave-one-source-out: for each source, train without it and measure on it.
pub fn leave_one_source_out(
    corpus: &Corpus,
    params: &TrainParams,
    config: ScreenConfig,
    only: Option<&str>,
) -> Result<Vec<FoldRow>> {
    let dev_val_benign: Vec<&corpus::Row> = corpus
        .dev_validation
        .iter()
        .filter(|r| r.label == 0)
        .collect();
    let mut rows = Vec::new();
    for source in corpus::sources() {
        if only.is_some_and(|o| o != source) {
            continue;
        }
        let weights = train::train(&corpus.training_rows(Some(source)), params)?;
        let screener = Screener::with_model(config, weights)?;
        let held = corpus.held_out_rows(source);
        rows.push(eval::fold_row(&screener, source, &held, &dev_val_benign));
    }
    Ok(rows)
}
