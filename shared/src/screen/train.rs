//! Deterministic trainer for the learned layer: L2-regularized logistic regression fitted with
//! AdaGrad SGD, a fixed-seed shuffle and a fixed number of epochs, so the same rows always
//! produce byte-identical weights.

use super::eval::LabelledRow;
use super::features;
use super::model::{self, LOG2_BUCKETS, ModelWeights};
use crate::sanitize::sanitize;

#[derive(Debug, Clone, Copy)]
pub struct TrainParams {
    pub epochs: u32,
    pub learning_rate: f32,
    /// L2 penalty: keeps weights small so no single n-gram memorized from the corpus
    /// dominates (the screen is judged on other corpora too).
    pub l2: f32,
    pub seed: u64,
    pub log2_buckets: u8,
    /// Extra weight on benign rows (on top of class balancing): real traffic is mostly
    /// benign and far more varied than the corpus, so the model must need positive evidence.
    pub benign_weight: f32,
    /// Buckets seen in fewer training prompts than this keep weight 0: rare n-grams are
    /// where a linear model memorizes its corpus instead of learning attack phrasing.
    pub min_df: u32,
    /// Weight of the committed hand-written ordinary prompts (`traindata/`) added as benign
    /// rows (0 = not used): the corpus's benign rows are narrow templates, so without them
    /// "unfamiliar" reads as "attack". They are disjoint from the held-out `testdata/` sets.
    pub extra_benign_weight: f32,
}

impl Default for TrainParams {
    fn default() -> Self {
        Self {
            epochs: 8,
            learning_rate: 0.1,
            l2: 3e-4,
            seed: 0x6761_7465_686f_7573,
            log2_buckets: LOG2_BUCKETS,
            benign_weight: 3.0,
            min_df: 1,
            extra_benign_weight: 1.5,
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

/// Hand-written ordinary prompts used as extra benign training rows.
const EXTRA_BENIGN: &str = include_str!("traindata/benign_extra.jsonl");

/// The extra benign rows; lines that fail to parse are skipped (a unit test checks there
/// are none, so a bad edit cannot silently shrink the set).
pub fn extra_benign_rows() -> Vec<LabelledRow> {
    EXTRA_BENIGN
        .lines()
        .filter_map(|l| serde_json::from_str::<LabelledRow>(l).ok())
        .filter(|r| r.label == 0)
        .collect()
}

/// (sparse features, label, row weight).
type Example = (Vec<(u32, f32)>, f32, f32);

pub fn train(rows: &[LabelledRow], params: &TrainParams) -> ModelWeights {
    let extra = if params.extra_benign_weight > 0.0 {
        extra_benign_rows()
    } else {
        Vec::new()
    };
    let featurize = |r: &LabelledRow| {
        let (view, signals) = features::model_input(&sanitize(&r.text));
        features::extract(&view, signals, params.log2_buckets)
    };
    let mut data: Vec<Example> = rows
        .iter()
        .map(|r| (featurize(r), if r.label != 0 { 1.0 } else { 0.0 }, 1.0))
        .chain(
            extra
                .iter()
                .map(|r| (featurize(r), 0.0, params.extra_benign_weight)),
        )
        .collect();
    if params.min_df > 1 {
        let mut df = vec![0u32; 1usize << params.log2_buckets];
        for (x, _, _) in &data {
            let mut seen: Vec<u32> = x.iter().map(|f| f.0).collect();
            seen.sort_unstable();
            seen.dedup();
            for i in seen {
                df[i as usize] += 1;
            }
        }
        for (x, _, _) in &mut data {
            x.retain(|f| df[f.0 as usize] >= params.min_df);
        }
    }
    // Balanced class weights so the split's attack/benign ratio does not set the bias.
    let mass = |pos: bool| {
        data.iter()
            .filter(|d| (d.1 > 0.5) == pos)
            .map(|d| d.2)
            .sum::<f32>()
            .max(1.0)
    };
    let (pos, neg) = (mass(true), mass(false));
    let total = pos + neg;
    let (w_pos, w_neg) = (
        total / (2.0 * pos),
        params.benign_weight * total / (2.0 * neg),
    );

    let mut w = ModelWeights::zeros(params.log2_buckets);
    let mut g2 = vec![1e-6f32; w.weights.len()];
    let mut g2_bias = 1e-6f32;
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut rng = Rng(params.seed.max(1));
    for _ in 0..params.epochs {
        // Fisher-Yates with the seeded generator: fixed order per epoch.
        for i in (1..order.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        for &k in &order {
            let (x, y, rw) = &data[k];
            let p = w.predict(x);
            let cw = rw * if *y > 0.5 { w_pos } else { w_neg };
            let g = (p - y) * cw;
            for &(i, v) in x {
                let i = i as usize;
                let grad = g * v + params.l2 * w.weights[i];
                g2[i] += grad * grad;
                w.weights[i] -= params.learning_rate * grad / g2[i].sqrt();
            }
            g2_bias += g * g;
            w.bias -= params.learning_rate * g / g2_bias.sqrt();
        }
    }
    // Round-trip through the compact format so the in-memory model equals the committed one.
    model::decode(&model::encode(&w)).unwrap_or(w)
}

/// Serializes weights in the committed compact format.
pub fn encode(weights: &ModelWeights) -> Vec<u8> {
    model::encode(weights)
}
