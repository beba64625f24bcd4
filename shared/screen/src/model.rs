//! The learned layer: logistic regression over hashed character and word n-grams and
//! cross-lingual concepts of the leet view, scored per window of words (see `features`).
//! Hashing keeps the model a fixed size and needs no vocabulary file.

use crate::error::ScreenError;

/// 2^17 buckets: the word and concept features of ~25,000 training prompts fit with few
/// collisions (2^15..2^17 measured alike on the leave-one-source-out table), 256 KiB as i16.
pub const LOG2_BUCKETS: u8 = 17;
const MAGIC: &[u8; 4] = b"GHSM";
const VERSION: u8 = 2;
/// Header: magic (4), version, log2 buckets, window words (u16), window stride (u16), bias
/// (f32), scale (f32).
const HEADER: usize = 18;
/// Default window: long enough for a whole ordinary attack sentence or two, short enough that
/// a page of harmless text around it cannot outvote it.
pub const WINDOW_WORDS: u16 = 48;
pub const WINDOW_STRIDE: u16 = 8;

#[derive(Debug, Clone, PartialEq)]
pub struct ModelWeights {
    pub log2_buckets: u8,
    /// Words per scored window, and the step between windows.
    pub window_words: u16,
    pub window_stride: u16,
    pub bias: f32,
    pub weights: Vec<f32>,
}

impl ModelWeights {
    pub fn zeros(log2_buckets: u8) -> Self {
        Self {
            log2_buckets,
            window_words: WINDOW_WORDS,
            window_stride: WINDOW_STRIDE,
            bias: 0.0,
            weights: vec![0.0; 1usize << log2_buckets],
        }
    }

    /// Probability of attack for a feature vector (index, value).
    pub fn predict(&self, features: &[(u32, f32)]) -> f32 {
        let z = self.bias
            + features
                .iter()
                .map(|&(i, v)| self.weights.get(i as usize).copied().unwrap_or(0.0) * v)
                .sum::<f32>();
        sigmoid(z)
    }
}

/// The weights as the i16 values of the committed format, for scoring: half the memory of
/// f32, so the random bucket lookups of a prompt's n-grams stay in cache (the lookups are
/// the largest single cost of a screen).
#[derive(Debug, Clone)]
pub struct Quantized {
    pub log2_buckets: u8,
    pub window_words: u16,
    pub window_stride: u16,
    pub bias: f32,
    pub scale: f32,
    pub q: Vec<i16>,
}

impl Quantized {
    /// Same quantization as `encode`, so weights decoded from `model.bin` map back exactly.
    pub fn new(w: &ModelWeights) -> Self {
        let scale = scale_of(w);
        Self {
            log2_buckets: w.log2_buckets,
            window_words: w.window_words,
            window_stride: w.window_stride,
            bias: w.bias,
            scale,
            q: w.weights.iter().map(|&x| quantize(x, scale)).collect(),
        }
    }
}

fn scale_of(w: &ModelWeights) -> f32 {
    let max = w.weights.iter().fold(0f32, |m, x| m.max(x.abs()));
    if max > 0.0 {
        max / f32::from(i16::MAX)
    } else {
        1.0
    }
}

fn quantize(x: f32, scale: f32) -> i16 {
    // Clamped and rounded, so the cast cannot overflow.
    (x / scale).round().clamp(-32767.0, 32767.0) as i16
}

pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// Compact format: the header (see `HEADER`), then one i16 per bucket (little endian). i16
/// quantization loses nothing measurable and halves the size.
pub fn encode(w: &ModelWeights) -> Vec<u8> {
    let scale = scale_of(w);
    let mut out = Vec::with_capacity(HEADER + w.weights.len() * 2);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(w.log2_buckets);
    out.extend_from_slice(&w.window_words.to_le_bytes());
    out.extend_from_slice(&w.window_stride.to_le_bytes());
    out.extend_from_slice(&w.bias.to_le_bytes());
    out.extend_from_slice(&scale.to_le_bytes());
    for x in &w.weights {
        out.extend_from_slice(&quantize(*x, scale).to_le_bytes());
    }
    out
}

pub fn decode(bytes: &[u8]) -> Result<ModelWeights, ScreenError> {
    let bad = |why: &str| ScreenError::Model(why.to_owned());
    let header = bytes.get(..HEADER).ok_or_else(|| bad("truncated header"))?;
    if &header[..4] != MAGIC {
        return Err(bad("bad magic"));
    }
    if header[4] != VERSION {
        return Err(bad("unsupported version"));
    }
    let log2 = header[5];
    if !(8..=24).contains(&log2) {
        return Err(bad("bucket count out of range"));
    }
    let window_words = u16::from_le_bytes([header[6], header[7]]);
    let window_stride = u16::from_le_bytes([header[8], header[9]]);
    if window_words == 0 || window_stride == 0 || window_stride > window_words {
        return Err(bad("window size out of range"));
    }
    let f32_at = |i: usize| -> Result<f32, ScreenError> {
        let b: [u8; 4] = header
            .get(i..i + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| bad("truncated header"))?;
        Ok(f32::from_le_bytes(b))
    };
    let bias = f32_at(10)?;
    let scale = f32_at(14)?;
    let n = 1usize << log2;
    let body = &bytes[HEADER..];
    if body.len() != n * 2 {
        return Err(bad("weight count does not match header"));
    }
    let weights = body
        .chunks_exact(2)
        .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) * scale)
        .collect();
    Ok(ModelWeights {
        log2_buckets: log2,
        window_words,
        window_stride,
        bias,
        weights,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_roundtrip_within_quantization() {
        let mut w = ModelWeights::zeros(8);
        w.bias = -0.5;
        w.weights[3] = 1.25;
        w.weights[200] = -2.0;
        let back = decode(&encode(&w)).expect("roundtrip");
        assert_eq!(back.bias, -0.5);
        assert!((back.weights[3] - 1.25).abs() < 1e-3);
        assert!((back.weights[200] + 2.0).abs() < 1e-3);
    }

    #[test]
    fn quantized_matches_decoded_weights() {
        let mut w = ModelWeights::zeros(8);
        w.weights[1] = 0.75;
        w.weights[9] = -3.0;
        let back = decode(&encode(&w)).expect("roundtrip");
        let q = Quantized::new(&back);
        for (i, &x) in back.weights.iter().enumerate() {
            assert!(
                (f32::from(q.q[i]) * q.scale - x).abs() <= 1e-6,
                "bucket {i}"
            );
        }
        assert_eq!(q.q[9], -32767);
    }

    #[test]
    fn rejects_corrupt_files() {
        assert!(decode(b"GHSM").is_err());
        let mut bytes = encode(&ModelWeights::zeros(8));
        bytes.pop();
        assert!(decode(&bytes).is_err());
        bytes[0] = b'X';
        assert!(decode(&bytes).is_err());
    }
}
