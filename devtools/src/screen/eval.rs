//! Quality measurements of the screen: recall at a fixed false-positive rate, ROC AUC, block and
//! flag rates, per category and per held-out source (leave-one-source-out).

use std::fmt::{self, Write as _};
use std::io::{BufRead, Write};

use gatehouse::screen::{Screener, Verdict};
use serde::Deserialize;

use super::corpus::Row;

/// Best recall with at most `max_fpr` of negatives scoring at or above the threshold.
/// Returns (recall, threshold); ties with a negative count against the threshold.
pub fn recall_at_fpr(pos: &[f32], neg_desc: &[f32], max_fpr: f64) -> (f64, f32) {
    let t = threshold_at_fpr(neg_desc, max_fpr);
    let hit = pos.iter().filter(|&&s| s >= t).count();
    (hit as f64 / pos.len().max(1) as f64, t)
}

/// Lowest threshold at which at most `max_fpr` of `neg_desc` (sorted high to low) score at or
/// above it.
pub fn threshold_at_fpr(neg_desc: &[f32], max_fpr: f64) -> f32 {
    let allowed = (max_fpr * neg_desc.len() as f64).floor() as usize;
    match neg_desc.get(allowed) {
        // Smallest f32 strictly above the first negative that must be rejected.
        Some(&cut) => f32::from_bits(cut.max(0.0).to_bits() + 1).min(1.0),
        None => 0.0,
    }
}

/// ROC AUC as the Mann-Whitney statistic (ties count half), O(n log n).
pub fn auc(pos: &[f32], neg: &[f32]) -> f64 {
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

/// Score and verdict of every row.
pub fn screen_rows(screener: &Screener, rows: &[&Row]) -> Vec<(f32, Verdict)> {
    rows.iter()
        .map(|r| {
            let s = screener.screen_text(&r.text);
            (s.score, s.verdict)
        })
        .collect()
}

pub fn share(xs: impl Iterator<Item = bool>) -> f64 {
    let (mut hit, mut n) = (0usize, 0usize);
    for x in xs {
        n += 1;
        hit += usize::from(x);
    }
    if n == 0 { 0.0 } else { hit as f64 / n as f64 }
}

pub fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

#[derive(Debug, Clone)]
pub struct CategoryRow {
    pub category: String,
    pub label: u8,
    pub n: usize,
    pub blocked: f64,
    pub flagged: f64,
}

/// In-corpus report for one labelled file.
#[derive(Debug, Clone)]
pub struct EvalReport {
    pub positives: usize,
    pub negatives: usize,
    pub auc: f64,
    pub recall_at_fpr1: f64,
    pub threshold_fpr1: f32,
    pub recall_at_fpr2: f64,
    pub threshold_fpr2: f32,
    pub block_recall: f64,
    pub block_fpr: f64,
    pub flag_recall: f64,
    pub flag_fpr: f64,
    pub categories: Vec<CategoryRow>,
}

pub fn evaluate(screener: &Screener, rows: &[&Row]) -> EvalReport {
    let scored = screen_rows(screener, rows);
    let pos: Vec<f32> = rows
        .iter()
        .zip(&scored)
        .filter(|(r, _)| r.label != 0)
        .map(|(_, s)| s.0)
        .collect();
    let mut neg: Vec<f32> = rows
        .iter()
        .zip(&scored)
        .filter(|(r, _)| r.label == 0)
        .map(|(_, s)| s.0)
        .collect();
    neg.sort_by(|a, b| b.total_cmp(a));
    let verdicts = |label: u8, v: fn(Verdict) -> bool| {
        share(
            rows.iter()
                .zip(&scored)
                .filter(|(r, _)| r.label == label)
                .map(|(_, s)| v(s.1)),
        )
    };
    let blocked = |v: Verdict| v == Verdict::Block;
    let flagged = |v: Verdict| v != Verdict::Allow;
    let (recall_at_fpr1, threshold_fpr1) = recall_at_fpr(&pos, &neg, 0.01);
    let (recall_at_fpr2, threshold_fpr2) = recall_at_fpr(&pos, &neg, 0.02);
    let mut names: Vec<(String, u8)> = rows
        .iter()
        .map(|r| {
            (
                r.category.clone().unwrap_or_else(|| "(none)".into()),
                r.label,
            )
        })
        .collect();
    names.sort();
    names.dedup();
    let categories = names
        .into_iter()
        .map(|(category, label)| {
            let members: Vec<Verdict> = rows
                .iter()
                .zip(&scored)
                .filter(|(r, _)| {
                    r.label == label && r.category.as_deref().unwrap_or("(none)") == category
                })
                .map(|(_, s)| s.1)
                .collect();
            CategoryRow {
                n: members.len(),
                blocked: share(members.iter().map(|&v| blocked(v))),
                flagged: share(members.iter().map(|&v| flagged(v))),
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
        recall_at_fpr2,
        threshold_fpr2,
        block_recall: verdicts(1, blocked),
        block_fpr: verdicts(0, blocked),
        flag_recall: verdicts(1, flagged),
        flag_fpr: verdicts(0, flagged),
        categories,
    }
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
            "| recall @ FPR <= 2% | {} (threshold {:.4}) |",
            pct(self.recall_at_fpr2),
            self.threshold_fpr2
        )?;
        writeln!(
            f,
            "| block: recall / FPR | {} / {} |",
            pct(self.block_recall),
            pct(self.block_fpr)
        )?;
        writeln!(
            f,
            "| flag or block: recall / FPR | {} / {} |",
            pct(self.flag_recall),
            pct(self.flag_fpr)
        )?;
        if self.categories.len() > 1 {
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
        }
        Ok(())
    }
}

/// One row of the leave-one-source-out table.
#[derive(Debug, Clone)]
pub struct FoldRow {
    pub source: &'static str,
    pub attacks: usize,
    pub benign: usize,
    /// Recall of the held-out attacks at the thresholds that give FPR <= 1% and <= 2% on the
    /// benign rows of the development validation split (scored by the same fold's screen).
    pub recall_fpr1: f64,
    pub recall_fpr2: f64,
    /// Held-out benign rows at or above those thresholds.
    pub fpr_at_fpr1: f64,
    pub fpr_at_fpr2: f64,
    /// At the shipped block / flag thresholds.
    pub attack_block: f64,
    pub attack_flag: f64,
    pub benign_block: f64,
    pub benign_flag: f64,
    pub auc: f64,
}

/// Measures one fold: `screener` was trained without `source`; `held` are its rows and
/// `dev_val_benign` the development validation split's benign rows.
pub fn fold_row(
    screener: &Screener,
    source: &'static str,
    held: &[&Row],
    dev_val_benign: &[&Row],
) -> FoldRow {
    let mut neg: Vec<f32> = screen_rows(screener, dev_val_benign)
        .into_iter()
        .map(|s| s.0)
        .collect();
    neg.sort_by(|a, b| b.total_cmp(a));
    let (t1, t2) = (threshold_at_fpr(&neg, 0.01), threshold_at_fpr(&neg, 0.02));
    let scored = screen_rows(screener, held);
    let of = |label: u8| -> Vec<(f32, Verdict)> {
        held.iter()
            .zip(&scored)
            .filter(|(r, _)| r.label == label)
            .map(|(_, s)| *s)
            .collect()
    };
    let (a, b) = (of(1), of(0));
    let rate = |xs: &[(f32, Verdict)], f: &dyn Fn(&(f32, Verdict)) -> bool| share(xs.iter().map(f));
    let ascores: Vec<f32> = a.iter().map(|s| s.0).collect();
    let bscores: Vec<f32> = if b.is_empty() {
        neg.clone()
    } else {
        b.iter().map(|s| s.0).collect()
    };
    FoldRow {
        source,
        attacks: a.len(),
        benign: b.len(),
        recall_fpr1: rate(&a, &|s| s.0 >= t1),
        recall_fpr2: rate(&a, &|s| s.0 >= t2),
        fpr_at_fpr1: rate(&b, &|s| s.0 >= t1),
        fpr_at_fpr2: rate(&b, &|s| s.0 >= t2),
        attack_block: rate(&a, &|s| s.1 == Verdict::Block),
        attack_flag: rate(&a, &|s| s.1 != Verdict::Allow),
        benign_block: rate(&b, &|s| s.1 == Verdict::Block),
        benign_flag: rate(&b, &|s| s.1 != Verdict::Allow),
        auc: auc(&ascores, &bscores),
    }
}

/// Markdown table of fold rows.
pub fn fold_table(rows: &[FoldRow]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| held-out source | attacks / benign | recall @ FPR≤1% | recall @ FPR≤2% | attacks blocked | attacks flagged or blocked | benign FPR @ FPR≤1% / ≤2% thresholds | benign blocked | benign flagged or blocked | ROC AUC |"
    );
    let _ = writeln!(
        s,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for r in rows {
        let dash = |n: usize, x: f64| if n == 0 { "–".to_owned() } else { pct(x) };
        let _ = writeln!(
            s,
            "| {} | {} / {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.source,
            r.attacks,
            r.benign,
            dash(r.attacks, r.recall_fpr1),
            dash(r.attacks, r.recall_fpr2),
            dash(r.attacks, r.attack_block),
            dash(r.attacks, r.attack_flag),
            if r.benign == 0 {
                "–".to_owned()
            } else {
                format!("{} / {}", pct(r.fpr_at_fpr1), pct(r.fpr_at_fpr2))
            },
            dash(r.benign, r.benign_block),
            dash(r.benign, r.benign_flag),
            if r.auc.is_nan() {
                "–".to_owned()
            } else {
                format!("{:.3}", r.auc)
            },
        );
    }
    s
}

#[derive(Deserialize)]
struct TextLine {
    text: String,
}

/// JSON Lines `{"text": ...}` in, one `{"verdict","score","rules","window"}` line out per input
/// line, in order (the score is for operators at the shell; the API never returns it). A bad
/// line yields `{"error": "..."}` and processing continues.
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
        // 1% of 100 negatives: one negative (0.99) may pass; the cut is just above 0.98.
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
