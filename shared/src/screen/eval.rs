//! Evaluation on labelled JSON Lines and the stdin screening filter.

use std::fmt;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ScreenError, Screener};

#[derive(Debug, Clone, Deserialize)]
pub struct LabelledRow {
    pub text: String,
    pub label: u8,
    #[serde(default)]
    pub category: Option<String>,
}

/// Directory of the prompt-injection corpus: `GATEHOUSE_PI_DATA`, else
/// `$CARGO_MANIFEST_DIR/../../shared/data/prompt-injection`.
pub fn data_dir() -> PathBuf {
    std::env::var_os("GATEHOUSE_PI_DATA").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/prompt-injection"),
        PathBuf::from,
    )
}

pub fn load_jsonl(path: &Path) -> Result<Vec<LabelledRow>, ScreenError> {
    let file = std::fs::File::open(path)
        .map_err(|e| ScreenError::Data(format!("{}: {e}", path.display())))?;
    let mut rows = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let row = serde_json::from_str(&line)
            .map_err(|e| ScreenError::Data(format!("{}:{}: {e}", path.display(), n + 1)))?;
        rows.push(row);
    }
    Ok(rows)
}

#[derive(Debug, Clone)]
pub struct CategoryRow {
    pub category: String,
    pub label: u8,
    pub n: usize,
    /// Share of rows at or above the block threshold (recall for attacks, FPR for benign).
    pub blocked: f64,
    /// Share of rows at or above the flag threshold.
    pub flagged: f64,
}

#[derive(Debug, Clone)]
pub struct EvalReport {
    pub positives: usize,
    pub negatives: usize,
    pub auc: f64,
    pub recall_at_fpr1: f64,
    pub threshold_fpr1: f32,
    pub recall_at_fpr5: f64,
    pub threshold_fpr5: f32,
    pub block_threshold: f32,
    pub block_recall: f64,
    pub block_fpr: f64,
    pub flag_threshold: f32,
    pub flag_recall: f64,
    pub flag_fpr: f64,
    pub categories: Vec<CategoryRow>,
}

/// Best recall with at most `max_fpr` of negatives scoring at or above the threshold.
/// Returns (recall, threshold); ties with a negative are counted against the threshold.
fn recall_at_fpr(pos: &[f32], neg_desc: &[f32], max_fpr: f64) -> (f64, f32) {
    let allowed = (max_fpr * neg_desc.len() as f64).floor() as usize;
    let Some(&cut) = neg_desc.get(allowed) else {
        return (1.0, 0.0);
    };
    // Smallest f32 strictly above the first negative that must be rejected.
    let threshold = f32::from_bits(cut.to_bits() + 1).min(1.0);
    let hit = pos.iter().filter(|&&s| s > cut).count();
    (hit as f64 / pos.len().max(1) as f64, threshold)
}

/// ROC AUC as the Mann-Whitney statistic (ties count half), O(n log n).
fn auc(pos: &[f32], neg: &[f32]) -> f64 {
    let mut all: Vec<(f32, bool)> = pos
        .iter()
        .map(|&s| (s, true))
        .chain(neg.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let avg_rank = (i + j + 1) as f64 / 2.0;
        rank_sum += all[i..j].iter().filter(|x| x.1).count() as f64 * avg_rank;
        i = j;
    }
    let (np, nn) = (pos.len() as f64, neg.len() as f64);
    if np == 0.0 || nn == 0.0 {
        return f64::NAN;
    }
    (rank_sum - np * (np + 1.0) / 2.0) / (np * nn)
}

pub fn evaluate(screener: &Screener, rows: &[LabelledRow]) -> EvalReport {
    let scores: Vec<f32> = rows
        .iter()
        .map(|r| screener.screen_text(&r.text).score)
        .collect();
    report(screener, rows, &scores)
}

fn share(xs: impl Iterator<Item = bool>) -> f64 {
    let (mut hit, mut n) = (0usize, 0usize);
    for x in xs {
        n += 1;
        hit += usize::from(x);
    }
    if n == 0 { 0.0 } else { hit as f64 / n as f64 }
}

fn report(screener: &Screener, rows: &[LabelledRow], scores: &[f32]) -> EvalReport {
    let cfg = screener.config();
    let pos: Vec<f32> = rows
        .iter()
        .zip(scores)
        .filter(|(r, _)| r.label != 0)
        .map(|(_, &s)| s)
        .collect();
    let mut neg: Vec<f32> = rows
        .iter()
        .zip(scores)
        .filter(|(r, _)| r.label == 0)
        .map(|(_, &s)| s)
        .collect();
    neg.sort_by(|a, b| b.total_cmp(a));
    let (recall_at_fpr1, threshold_fpr1) = recall_at_fpr(&pos, &neg, 0.01);
    let (recall_at_fpr5, threshold_fpr5) = recall_at_fpr(&pos, &neg, 0.05);
    let mut names: Vec<(String, u8)> = rows
        .iter()
        .map(|r| {
            (
                r.category.clone().unwrap_or_else(|| "(none)".into()),
                r.label.min(1),
            )
        })
        .collect();
    names.sort();
    names.dedup();
    let categories = names
        .into_iter()
        .map(|(category, label)| {
            let members: Vec<f32> = rows
                .iter()
                .zip(scores)
                .filter(|(r, _)| {
                    r.label.min(1) == label && r.category.as_deref().unwrap_or("(none)") == category
                })
                .map(|(_, &s)| s)
                .collect();
            CategoryRow {
                n: members.len(),
                blocked: share(members.iter().map(|&s| s >= cfg.block_threshold)),
                flagged: share(members.iter().map(|&s| s >= cfg.flag_threshold)),
                category,
                label,
            }
        })
        .collect();
    EvalReport {
        positives: pos.len(),
        negatives: neg.len(),
        auc: auc(&pos, &neg),
        recall_at_fpr1,
        threshold_fpr1,
        recall_at_fpr5,
        threshold_fpr5,
        block_threshold: cfg.block_threshold,
        block_recall: share(pos.iter().map(|&s| s >= cfg.block_threshold)),
        block_fpr: share(neg.iter().map(|&s| s >= cfg.block_threshold)),
        flag_threshold: cfg.flag_threshold,
        flag_recall: share(pos.iter().map(|&s| s >= cfg.flag_threshold)),
        flag_fpr: share(neg.iter().map(|&s| s >= cfg.flag_threshold)),
        categories,
    }
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |x: f64| format!("{:.1}%", x * 100.0);
        writeln!(f, "| metric | value |")?;
        writeln!(f, "| --- | --- |")?;
        writeln!(
            f,
            "| rows (attack / benign) | {} / {} |",
            self.positives, self.negatives
        )?;
        writeln!(f, "| ROC AUC | {:.4} |", self.auc)?;
        writeln!(
            f,
            "| recall @ FPR <= 1% | {} (threshold {:.4}) |",
            pct(self.recall_at_fpr1),
            self.threshold_fpr1
        )?;
        writeln!(
            f,
            "| recall @ FPR <= 5% | {} (threshold {:.4}) |",
            pct(self.recall_at_fpr5),
            self.threshold_fpr5
        )?;
        writeln!(
            f,
            "| block (score >= {:.3}): recall / FPR | {} / {} |",
            self.block_threshold,
            pct(self.block_recall),
            pct(self.block_fpr)
        )?;
        writeln!(
            f,
            "| flag (score >= {:.3}): recall / FPR | {} / {} |",
            self.flag_threshold,
            pct(self.flag_recall),
            pct(self.flag_fpr)
        )?;
        writeln!(f)?;
        writeln!(f, "| category | label | n | blocked | flagged or blocked |")?;
        writeln!(f, "| --- | --- | --- | --- | --- |")?;
        for c in &self.categories {
            writeln!(
                f,
                "| {} | {} | {} | {} | {} |",
                c.category,
                c.label,
                c.n,
                pct(c.blocked),
                pct(c.flagged)
            )?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct TextLine {
    text: String,
}

/// JSON Lines `{"text": ...}` in, one `{"verdict","score","rules"}` line out per input line,
/// in order. A bad line yields `{"error": "..."}` and processing continues.
pub fn screen_jsonl(
    screener: &Screener,
    input: impl BufRead,
    mut out: impl Write,
) -> std::io::Result<()> {
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let json = match serde_json::from_str::<TextLine>(&line) {
            Ok(t) => serde_json::to_string(&screener.screen_text(&t.text)),
            Err(e) => serde_json::to_string(&serde_json::json!({ "error": e.to_string() })),
        }
        .map_err(std::io::Error::other)?;
        writeln!(out, "{json}")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_at_fpr_counts_ties_against_threshold() {
        let neg: Vec<f32> = (0..100).rev().map(|i| i as f32 / 100.0).collect();
        let pos = [0.995, 0.985, 0.5];
        // 1% of 100 negatives: one negative (0.99) may pass; the cut is at 0.98.
        let (r, t) = recall_at_fpr(&pos, &neg, 0.01);
        assert!((r - 2.0 / 3.0).abs() < 1e-9);
        assert!(t > 0.98 && t < 0.981);
    }

    #[test]
    fn auc_of_perfect_and_random_rankings() {
        assert_eq!(auc(&[0.9, 0.8], &[0.1, 0.2]), 1.0);
        assert_eq!(auc(&[0.5, 0.5], &[0.5, 0.5]), 0.5);
    }
}
