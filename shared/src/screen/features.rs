//! Hashed features shared by training and screening, so both see exactly the same vector.

use super::model::{ModelWeights, Quantized, sigmoid};
use super::normalize;
use crate::sanitize::Sanitized;

/// FNV-1a, 64 bit: deterministic across runs and platforms (std's hasher is randomized).
fn fnv(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Extra generic signals about obfuscation, added as named features.
#[derive(Debug, Clone, Copy, Default)]
pub struct Signals {
    pub mixed_script_words: u32,
    pub leet_words: u32,
    pub removed_invisible: bool,
    pub hidden_payload: bool,
}

/// Calls `f(hash)` for every feature of the leet view: character 3/4/5-grams (with word
/// padding) and word uni/bigrams. Returns the feature count.
fn for_each_feature(view: &str, signals: Signals, mut f: impl FnMut(u64)) -> usize {
    // Collapse everything that is not a word char to one space: punctuation noise matters
    // less than the words, and this keeps n-grams comparable across formatting.
    let mut norm = Vec::with_capacity(view.len() + 2);
    norm.push(b' ');
    for c in view.chars() {
        if c.is_alphanumeric() {
            let mut buf = [0u8; 4];
            norm.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        } else if norm.last() != Some(&b' ') {
            norm.push(b' ');
        }
    }
    if norm.last() != Some(&b' ') {
        norm.push(b' ');
    }
    let mut count = 0;
    // One incremental FNV pass per start position emits the 3-, 4- and 5-gram hashes.
    for i in 0..norm.len() {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for (k, &b) in norm.iter().skip(i).take(5).enumerate() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
            if k >= 2 {
                f(h);
                count += 1;
            }
        }
    }
    let mut prev: &[u8] = b"^";
    for tok in norm.split(|&b| b == b' ').filter(|t| !t.is_empty()) {
        f(fnv(101, &[tok]));
        f(fnv(102, &[prev, tok]));
        count += 2;
        prev = tok;
    }
    let flags: [(bool, &[u8]); 4] = [
        (signals.mixed_script_words >= 2, b"mixed_script"),
        (signals.leet_words >= 2, b"leet"),
        (signals.removed_invisible, b"invisible"),
        (signals.hidden_payload, b"hidden"),
    ];
    for (on, name) in flags {
        if on {
            f(fnv(103, &[name]));
            count += 1;
        }
    }
    count
}

fn index_sign(h: u64, mask: u64) -> (usize, f32) {
    // Signed hashing (the top bit) makes collisions cancel on average instead of adding up.
    ((h & mask) as usize, if h >> 63 == 0 { 1.0 } else { -1.0 })
}

/// Sparse feature vector for training; each value is ±1/sqrt(n) so long prompts are not
/// scored higher just for being long.
pub fn extract(view: &str, signals: Signals, log2_buckets: u8) -> Vec<(u32, f32)> {
    let mask = (1u64 << log2_buckets) - 1;
    let mut out = Vec::with_capacity(view.len() * 3 + 16);
    for_each_feature(view, signals, |h| {
        let (i, s) = index_sign(h, mask);
        out.push((i as u32, s));
    });
    let scale = 1.0 / (out.len().max(1) as f32).sqrt();
    for f in &mut out {
        f.1 *= scale;
    }
    out
}

/// Model probability without materializing the feature vector (same value as
/// `model.predict(&extract(..))`, up to float summation order).
pub fn score(model: &ModelWeights, view: &str, signals: Signals) -> f32 {
    let mask = (1u64 << model.log2_buckets) - 1;
    let mut dot = 0.0f32;
    let n = for_each_feature(view, signals, |h| {
        let (i, s) = index_sign(h, mask);
        dot += model.weights.get(i).copied().unwrap_or(0.0) * s;
    });
    sigmoid(model.bias + dot / (n.max(1) as f32).sqrt())
}

/// `score` over the i16 weights the screener keeps (same value up to float rounding).
pub fn score_quantized(model: &Quantized, view: &str, signals: Signals) -> f32 {
    let mask = (1u64 << model.log2_buckets) - 1;
    let mut dot = 0i64;
    let n = for_each_feature(view, signals, |h| {
        let (i, s) = index_sign(h, mask);
        let w = i64::from(model.q.get(i).copied().unwrap_or(0));
        dot += if s > 0.0 { w } else { -w };
    });
    sigmoid(model.bias + dot as f32 * model.scale / (n.max(1) as f32).sqrt())
}

/// Counts words mixing ASCII letters with look-alike letters from other scripts ("pаypal"
/// with a Cyrillic "а"): ordinary text in any one language does not do that.
pub fn mixed_script_words(text: &str) -> u32 {
    if text.is_ascii() {
        return 0;
    }
    let mut count = 0;
    let (mut ascii, mut foreign) = (false, false);
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_alphabetic() {
            if c.is_ascii() {
                ascii = true;
            // U+1E00..1EFF is Latin (Vietnamese letters), not a look-alike script.
            } else if (c as u32) > 0x024f
                && !(0x1e00..=0x1eff).contains(&(c as u32))
                && normalize::folds_to_ascii(c)
            {
                foreign = true;
            }
        } else {
            if ascii && foreign {
                count += 1;
            }
            ascii = false;
            foreign = false;
        }
    }
    count
}

/// Counts words where digits or symbols sit between letters ("1gn0re", "pr3v10us").
pub fn leet_words(skel: &str) -> u32 {
    skel.split(|c: char| c.is_whitespace())
        .filter(|w| {
            let b = w
                .trim_matches(|c: char| !c.is_ascii_alphanumeric())
                .as_bytes();
            b.len() >= 4
                && b.windows(3).any(|t| {
                    t[0].is_ascii_alphabetic()
                        && matches!(
                            t[1],
                            b'0' | b'1'
                                | b'3'
                                | b'4'
                                | b'5'
                                | b'7'
                                | b'@'
                                | b'$'
                                | b'|'
                                | b'!'
                                | b'+'
                        )
                        && t[2].is_ascii_alphabetic()
                })
        })
        .count() as u32
}

/// The model's input view and signals for a sanitized prompt (used by train and screen).
pub fn model_input(s: &Sanitized) -> (String, Signals) {
    let skel = normalize::skeleton_view(&s.text);
    let leet = normalize::leet_view(&skel);
    model_input_views(&skel, leet, s)
}

/// Same as `model_input` when the views are already computed.
pub fn model_input_views(skel: &str, leet: String, s: &Sanitized) -> (String, Signals) {
    let signals = Signals {
        mixed_script_words: mixed_script_words(&s.text),
        leet_words: leet_words(skel),
        removed_invisible: s.removed.zero_width + s.removed.bidi + s.removed.tag > 0,
        hidden_payload: !s.hidden.is_empty(),
    };
    (leet, signals)
}
