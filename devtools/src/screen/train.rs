//! Deterministic trainer for the screen's learned layer: L2-regularised logistic regression over
//! the windowed features of `gatehouse::screen::features`, fitted with AdaGrad SGD, a fixed-seed
//! shuffle and a fixed number of epochs, so the same rows always give byte-identical weights.

use gatehouse::sanitize::sanitize;
use gatehouse::screen::model::{self, LOG2_BUCKETS, ModelWeights, WINDOW_STRIDE, WINDOW_WORDS};
use gatehouse::screen::{ScreenConfig, Screener};

use super::corpus::Row;

#[derive(Debug, Clone, Copy)]
pub struct TrainParams {
    pub epochs: u32,
    pub learning_rate: f32,
    /// L2 penalty: keeps weights small so no single n-gram memorised from one corpus dominates.
    pub l2: f32,
    pub seed: u64,
    pub log2_buckets: u8,
    pub window_words: u16,
    pub window_stride: u16,
    /// Extra weight on the benign class (on top of class balancing): real traffic is mostly
    /// benign and far more varied than any corpus, so the model must need positive evidence.
    pub benign_weight: f32,
    /// Each source's rows together weigh at most this many times the smallest source's rows
    /// would at weight 1 each (0 = no cap), so one big source cannot set the model's style.
    pub source_cap: f32,
    /// Weight of the hand-written ordinary prompts.
    pub handwritten_weight: f32,
}

impl Default for TrainParams {
    fn default() -> Self {
        Self {
            epochs: 8,
            learning_rate: 0.1,
            l2: 3e-4,
            seed: 0x6761_7465_686f_7573,
            log2_buckets: LOG2_BUCKETS,
            window_words: WINDOW_WORDS,
            window_stride: WINDOW_STRIDE,
            benign_weight: 2.0,
            source_cap: 4000.0,
            handwritten_weight: 1.5,
        }
    }
}

/// xorshift64*: tiny, seeded, identical everywhere (no dependency on a rand crate).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// (sparse features, label, weight).
type Example = (Vec<(u32, f32)>, f32, f32);

/// The examples of one row: one per window of `window_words` (non-overlapping), sharing the
/// row's weight, so a long document counts as much as a short prompt, not more.
fn examples(screener: &Screener, row: &Row, weight: f32, p: &TrainParams, out: &mut Vec<Example>) {
    let san = sanitize(&row.text);
    let doc = screener.doc(&san.text, &san);
    let mut spans = Vec::new();
    let size = usize::from(p.window_words);
    doc.windows(size, size, |a, b| spans.push((a, b)));
    let y = if row.label != 0 { 1.0 } else { 0.0 };
    let w = weight / spans.len().max(1) as f32;
    for (a, b) in spans {
        out.push((doc.window_features(a, b, p.log2_buckets), y, w));
    }
}

pub fn train(rows: &[&Row], p: &TrainParams) -> anyhow::Result<ModelWeights> {
    // Only the feature extraction of the screener is used here; its own weights do not matter.
    let mut shape = ModelWeights::zeros(p.log2_buckets);
    shape.window_words = p.window_words;
    shape.window_stride = p.window_stride;
    let screener = Screener::with_model(ScreenConfig::default(), shape.clone())?;
    // Per-source weight so that no source outweighs `source_cap` rows.
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for r in rows {
        match counts.iter_mut().find(|(s, _)| *s == r.source) {
            Some(c) => c.1 += 1,
            None => counts.push((r.source, 1)),
        }
    }
    let source_weight = |s: &str| {
        let n = counts.iter().find(|(x, _)| *x == s).map_or(1, |c| c.1) as f32;
        let base = if p.source_cap > 0.0 && n > p.source_cap {
            p.source_cap / n
        } else {
            1.0
        };
        if s == super::corpus::HANDWRITTEN {
            base * p.handwritten_weight
        } else {
            base
        }
    };
    let mut data: Vec<Example> = Vec::new();
    for r in rows {
        examples(&screener, r, source_weight(r.source), p, &mut data);
    }
    // Balanced class weights so the attack/benign ratio of the mix does not set the bias.
    let mass = |pos: bool| {
        data.iter()
            .filter(|d| (d.1 > 0.5) == pos)
            .map(|d| d.2)
            .sum::<f32>()
            .max(1e-3)
    };
    let (pos, neg) = (mass(true), mass(false));
    let total = pos + neg;
    let (w_pos, w_neg) = (total / (2.0 * pos), p.benign_weight * total / (2.0 * neg));
    let mean_w = total / data.len().max(1) as f32;

    let mut w = shape;
    let mut g2 = vec![1e-6f32; w.weights.len()];
    let mut g2_bias = 1e-6f32;
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut rng = Rng(p.seed.max(1));
    for _ in 0..p.epochs {
        // Fisher-Yates with the seeded generator: a fixed order per epoch.
        for i in (1..order.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        for &k in &order {
            let (x, y, rw) = &data[k];
            let pr = w.predict(x);
            // Row weights are relative to the mean, so the learning rate means the same
            // whatever the mix.
            let cw = rw / mean_w * if *y > 0.5 { w_pos } else { w_neg };
            let g = (pr - y) * cw;
            for &(i, v) in x {
                let i = i as usize;
                let grad = g * v + p.l2 * w.weights[i];
                g2[i] += grad * grad;
                w.weights[i] -= p.learning_rate * grad / g2[i].sqrt();
            }
            g2_bias += g * g;
            w.bias -= p.learning_rate * g / g2_bias.sqrt();
        }
    }
    // Round-trip through the compact format so the in-memory model equals the committed one.
    Ok(model::decode(&model::encode(&w))?)
}
