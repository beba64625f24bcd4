//! The labelled prompt corpora vendored under `data/` (see each folder's README for provenance
//! and licence), loaded as one list of rows tagged with their source.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// One labelled prompt. `label` 1 = attack, 0 = benign.
#[derive(Debug, Clone, Deserialize)]
pub struct Row {
    pub text: String,
    pub label: u8,
    #[serde(default)]
    pub category: Option<String>,
    /// Filled in by the loader: which source (leave-one-source-out fold) the row belongs to.
    #[serde(skip)]
    pub source: &'static str,
}

/// The development corpus (neuralchemy, three splits).
pub const DEV: &str = "dev";
/// The extra public sources, one file each under `data/prompt-injection-extra/`.
pub const EXTRA: [&str; 5] = [
    "s_labs",
    "multilingual_injections",
    "jailbreaks_in_the_wild",
    "long_documents_benign",
    "wildguard_benign",
];
/// Our own hand-written ordinary prompts used as extra benign training rows
/// (`data/screen/benign_train.jsonl`).
pub const HANDWRITTEN: &str = "handwritten_benign";
/// Document-task prompts over permissively licensed text (`data/screen/documents_benign.jsonl`,
/// built by `data/screen/make_documents_benign.py`), extra benign training rows.
pub const DOCUMENTS: &str = "documents_benign";

/// Every source a leave-one-source-out fold can hold out.
pub fn sources() -> Vec<&'static str> {
    std::iter::once(DEV).chain(EXTRA).collect()
}

/// `data/` of this repository (`GATEHOUSE_SCREEN_DATA` overrides it).
pub fn data_root() -> PathBuf {
    std::env::var_os("GATEHOUSE_SCREEN_DATA")
        .map_or_else(|| crate::paths::repo_root().join("data"), PathBuf::from)
}

/// Reads a JSON Lines file of `{"text", "label", "category"?}` rows. Every line must parse.
pub fn load_jsonl(path: &Path, source: &'static str) -> Result<Vec<Row>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut rows = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let mut row: Row =
            serde_json::from_str(&line).with_context(|| format!("{}:{}", path.display(), n + 1))?;
        if row.label > 1 {
            bail!("{}:{}: label must be 0 or 1", path.display(), n + 1);
        }
        row.source = source;
        rows.push(row);
    }
    Ok(rows)
}

/// All vendored corpora.
pub struct Corpus {
    pub dev_train: Vec<Row>,
    pub dev_validation: Vec<Row>,
    pub dev_test: Vec<Row>,
    /// (source, rows) for each of [`EXTRA`].
    pub extra: Vec<(&'static str, Vec<Row>)>,
    /// Training-only benign rows of our own: [`HANDWRITTEN`] and [`DOCUMENTS`].
    pub own: Vec<Row>,
}

impl Corpus {
    pub fn load(root: &Path) -> Result<Self> {
        let dev = root.join("prompt-injection");
        let split = |name: &str| load_jsonl(&dev.join(format!("{name}.jsonl")), DEV);
        let mut extra = Vec::new();
        for name in EXTRA {
            let path = root
                .join("prompt-injection-extra")
                .join(format!("{name}.jsonl"));
            extra.push((name, load_jsonl(&path, name)?));
        }
        Ok(Self {
            dev_train: split("train")?,
            dev_validation: split("validation")?,
            dev_test: split("test")?,
            extra,
            own: [
                load_jsonl(&root.join("screen/benign_train.jsonl"), HANDWRITTEN)?,
                load_jsonl(&root.join("screen/documents_benign.jsonl"), DOCUMENTS)?,
            ]
            .concat(),
        })
    }

    /// Training rows with `held_out` (a source name, or none) left out: the development train
    /// split, every extra source and our own benign rows.
    pub fn training_rows(&self, held_out: Option<&str>) -> Vec<&Row> {
        let mut rows: Vec<&Row> = Vec::new();
        if held_out != Some(DEV) {
            rows.extend(&self.dev_train);
        }
        for (name, r) in &self.extra {
            if held_out != Some(*name) {
                rows.extend(r);
            }
        }
        rows.extend(&self.own);
        rows
    }

    /// The rows a fold evaluates: the held-out source (for the development corpus, its test
    /// split).
    pub fn held_out_rows(&self, source: &str) -> Vec<&Row> {
        if source == DEV {
            return self.dev_test.iter().collect();
        }
        self.extra
            .iter()
            .filter(|(n, _)| *n == source)
            .flat_map(|(_, r)| r)
            .collect()
    }
}
