//! Features of the learned layer, shared by training (devtools) and screening, so both see
//! exactly the same vector.
//!
//! A prompt becomes a [`Doc`]: the words of its leet view (see `normalize`), each with the
//! hashed features anchored at it: its word unigram, the bigram it ends, and its cross-lingual
//! concept (see `concepts`) with the concept pairs it closes. (Character n-grams were dropped:
//! they learned each corpus's style and cost recall and false positives on held-out sources.) A window is a run of consecutive words; its
//! features are those anchored at its words plus the prompt's obfuscation flags, scaled by
//! 1/sqrt(count). A prompt is scored as the **maximum over windows** of
//! [`ModelWeights::window_words`](super::model::ModelWeights) words (every `stride` words), so a wall of
//! harmless text can neither dilute an attack nor, by sheer length, add up to one: a window's
//! score depends only on the words in it. Because the model is linear, every window costs two
//! prefix-sum lookups, not a rescan.

use super::concepts::{FNV_OFFSET, Lexicon, fnv_step};
use super::model::{ModelWeights, Quantized, sigmoid};

/// FNV-1a, 64 bit: deterministic across runs and platforms (std's hasher is randomized).
fn fnv(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h = FNV_OFFSET ^ seed;
    for p in parts {
        for &b in *p {
            h = fnv_step(h, b);
        }
        h = fnv_step(h, 0xff);
    }
    h
}

/// Extra generic signals about obfuscation, added as named features to every window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Signals {
    pub mixed_script_words: u32,
    pub leet_words: u32,
    pub removed_invisible: bool,
    pub hidden_payload: bool,
}

impl Signals {
    fn for_each(self, mut f: impl FnMut(u64)) {
        let flags: [(bool, &[u8]); 4] = [
            (self.mixed_script_words >= 2, b"mixed_script"),
            (self.leet_words >= 2, b"leet"),
            (self.removed_invisible, b"invisible"),
            (self.hidden_payload, b"hidden"),
        ];
        for (on, name) in flags {
            if on {
                f(fnv(103, &[name]));
            }
        }
    }
}

/// One word of the model view.
#[derive(Debug, Clone, Copy)]
struct Word {
    /// Byte range of the word in the screened text.
    src_start: u32,
    src_end: u32,
    /// `concepts::Concept` as u8, 0 = none.
    concept: u8,
    /// The word's unigram feature hash, `fnv(101, [word])`.
    unigram: u64,
    /// The bigram feature hash it ends, `fnv(102, [previous word or "^", word])`.
    bigram: u64,
}

/// Words further apart than this do not form a concept pair.
const PAIR_SPAN: usize = 4;

/// A prompt ready for the model.
pub struct Doc {
    words: Vec<Word>,
    pub signals: Signals,
    /// Words of one ASCII letter or digit, for an ASCII view only: there it is
    /// `normalize::single_letters` (the gate of `normalize::joined_letters`), counted here on
    /// the way instead of in a pass of its own. `None` for other views, where that count also
    /// treats non-ASCII bytes as word characters and the words here differ.
    pub single_letter_words: Option<usize>,
}

/// A window of words: byte offset and length in the screened text, and its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowScore {
    pub score: f32,
    pub offset: usize,
    pub len: usize,
}

impl Doc {
    /// `leet` is the leet view of the screened text. `char_offsets[i]` is the byte offset in the
    /// screened text of the character that produced the view's i-th character, plus one last
    /// entry for the text's length; `None` when the screened text is ASCII (then the view is
    /// aligned with it byte for byte).
    pub fn new(leet: &str, char_offsets: Option<&[u32]>, signals: Signals, lex: &Lexicon) -> Self {
        let bytes = leet.as_bytes();
        let mut words = Vec::with_capacity(leet.len() / 5 + 1);
        let src = |ci: usize, bi: usize| -> u32 {
            match char_offsets {
                Some(o) => o.get(ci).or(o.last()).copied().unwrap_or(0),
                None => bi as u32,
            }
        };
        // The bigram chain of each word continues from the previous word's seed-102 hash.
        let mut bigram_prefix = fnv(102, &[b"^"]);
        let mut single_letter_words = 0;
        // A word is a maximal run of alphanumeric characters: its bytes are a slice of the
        // view, so each word is read once, where it ends, for its concept and its hashes.
        let mut close = |(c0, b0): (usize, usize), ci: usize, bi: usize| {
            let word = bytes.get(b0..bi).unwrap_or_default();
            if let [c] = word
                && c.is_ascii_alphanumeric()
            {
                single_letter_words += 1;
            }
            // The unigram hash, the bigram hash and the next bigram's prefix advance together
            // over the word's bytes: three independent multiply chains.
            let (mut uni, mut bi_hash, mut next) =
                (FNV_OFFSET ^ 101, bigram_prefix, FNV_OFFSET ^ 102);
            for &b in word {
                uni = fnv_step(uni, b);
                bi_hash = fnv_step(bi_hash, b);
                next = fnv_step(next, b);
            }
            // Each part of a hashed feature ends with 0xff (see `fnv`).
            (uni, bi_hash, next) = (
                fnv_step(uni, 0xff),
                fnv_step(bi_hash, 0xff),
                fnv_step(next, 0xff),
            );
            bigram_prefix = next;
            let src_start = src(c0, b0);
            words.push(Word {
                src_start,
                src_end: src(ci, bi).max(src_start),
                concept: lex.concept(word).unwrap_or(0),
                unigram: uni,
                bigram: bi_hash,
            });
        };
        // (char index, byte index) where the open word starts.
        let mut open: Option<(usize, usize)> = None;
        let ascii = leet.is_ascii();
        if ascii {
            // One byte per character: char and byte indices coincide.
            for (i, &b) in bytes.iter().enumerate() {
                if b.is_ascii_alphanumeric() {
                    open.get_or_insert((i, i));
                } else if let Some(o) = open.take() {
                    close(o, i, i);
                }
            }
            if let Some(o) = open.take() {
                close(o, leet.len(), leet.len());
            }
        } else {
            let mut chars = 0;
            for (ci, (bi, c)) in leet.char_indices().enumerate() {
                chars = ci + 1;
                if c.is_alphanumeric() {
                    open.get_or_insert((ci, bi));
                } else if let Some(o) = open.take() {
                    close(o, ci, bi);
                }
            }
            if let Some(o) = open.take() {
                close(o, chars, leet.len());
            }
        }
        Self {
            words,
            signals,
            single_letter_words: ascii.then_some(single_letter_words),
        }
    }

    /// (word index, concept) of the words that carry a concept, in order.
    pub fn concepts(&self) -> Vec<(u32, u8)> {
        self.words
            .iter()
            .enumerate()
            .filter(|(_, w)| w.concept != 0)
            .map(|(i, w)| (i as u32, w.concept))
            .collect()
    }

    pub fn word_count(&self) -> usize {
        self.words.len()
    }

    /// Calls `f(hash)` for every feature anchored at word `t`.
    fn anchored(&self, t: usize, f: &mut impl FnMut(u64)) {
        let Some(w) = self.words.get(t) else { return };
        f(w.unigram);
        f(w.bigram);
        if w.concept != 0 {
            // Concept features are emitted twice: doubling their share of a window's norm
            // raised leave-one-source-out recall on the multilingual source (docs/screen.md).
            let c = fnv(104, &[&[w.concept]]);
            f(c);
            f(c);
            let mut pairs = 0;
            for back in 1..=PAIR_SPAN.min(t) {
                let p = self.words[t - back].concept;
                if p != 0 && p != w.concept {
                    let h = fnv(105, &[&[p, w.concept]]);
                    f(h);
                    f(h);
                    pairs += 1;
                    if pairs == 3 {
                        break;
                    }
                }
            }
        }
    }

    /// Windows of `size` words every `stride` words (the last one aligned to the end), or the
    /// whole prompt when it has at most `size` words. Calls `f(first, end)` (word indices).
    pub fn windows(&self, size: usize, stride: usize, mut f: impl FnMut(usize, usize)) {
        let n = self.words.len();
        let size = size.max(1);
        if n <= size {
            f(0, n);
            return;
        }
        let stride = stride.clamp(1, size);
        let mut a = 0;
        loop {
            f(a, a + size);
            if a + size >= n {
                break;
            }
            a = (a + stride).min(n - size);
        }
    }

    /// Sparse feature vector of words `a..b` (training): each feature ±1/sqrt(count).
    pub fn window_features(&self, a: usize, b: usize, log2_buckets: u8) -> Vec<(u32, f32)> {
        let mask = (1u64 << log2_buckets) - 1;
        let mut out = Vec::new();
        let mut push = |h: u64| {
            let (i, s) = index_sign(h, mask);
            out.push((i as u32, s));
        };
        for t in a..b {
            self.anchored(t, &mut push);
        }
        self.signals.for_each(&mut push);
        let scale = 1.0 / (out.len().max(1) as f32).sqrt();
        for x in &mut out {
            x.1 *= scale;
        }
        out
    }

    /// Highest window probability under f32 weights (training-time evaluation).
    pub fn score(&self, model: &ModelWeights) -> WindowScore {
        let mask = (1u64 << model.log2_buckets) - 1;
        let w = |h: u64| {
            let (i, s) = index_sign(h, mask);
            f64::from(model.weights.get(i).copied().unwrap_or(0.0) * s)
        };
        self.best_window(model.window_words, model.window_stride, model.bias, 1.0, w)
    }

    /// Highest window probability under the screener's i16 weights.
    pub fn score_quantized(&self, model: &Quantized) -> WindowScore {
        let mask = (1u64 << model.log2_buckets) - 1;
        let w = |h: u64| {
            let (i, s) = index_sign(h, mask);
            let q = f64::from(model.q.get(i).copied().unwrap_or(0));
            if s > 0.0 { q } else { -q }
        };
        self.best_window(
            model.window_words,
            model.window_stride,
            model.bias,
            model.scale,
            w,
        )
    }

    fn best_window(
        &self,
        size: u16,
        stride: u16,
        bias: f32,
        scale: f32,
        mut weight: impl FnMut(u64) -> f64,
    ) -> WindowScore {
        let n = self.words.len();
        // Prefix sums of the anchored features' weights and counts.
        let mut dot = Vec::with_capacity(n + 1);
        let mut cnt = Vec::with_capacity(n + 1);
        dot.push(0.0f64);
        cnt.push(0u32);
        let (mut d, mut c) = (0.0f64, 0u32);
        for t in 0..n {
            self.anchored(t, &mut |h| {
                d += weight(h);
                c += 1;
            });
            dot.push(d);
            cnt.push(c);
        }
        let (mut sd, mut sc) = (0.0f64, 0u32);
        self.signals.for_each(|h| {
            sd += weight(h);
            sc += 1;
        });
        let mut best = (f64::NEG_INFINITY, 0usize, 0usize);
        self.windows(usize::from(size), usize::from(stride), |a, b| {
            let num = dot[b] - dot[a] + sd;
            let den = f64::from(cnt[b] - cnt[a] + sc).max(1.0);
            let z = num / den.sqrt();
            if z > best.0 {
                best = (z, a, b);
            }
        });
        let (z, a, b) = best;
        let z = if z.is_finite() { z } else { 0.0 };
        let (offset, len) = self.span(a, b);
        WindowScore {
            score: sigmoid(bias + (z as f32) * scale),
            offset,
            len,
        }
    }

    /// Byte range in the screened text covered by words `a..b`.
    fn span(&self, a: usize, b: usize) -> (usize, usize) {
        let (Some(first), Some(last)) = (
            self.words.get(a),
            b.checked_sub(1).and_then(|l| self.words.get(l)),
        ) else {
            return (0, 0);
        };
        let start = first.src_start as usize;
        (start, (last.src_end as usize).saturating_sub(start))
    }
}

fn index_sign(h: u64, mask: u64) -> (usize, f32) {
    // Signed hashing (the top bit) makes collisions cancel on average instead of adding up.
    ((h & mask) as usize, if h >> 63 == 0 { 1.0 } else { -1.0 })
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
                && super::normalize::folds_to_ascii(c)
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
    // A leet word needs one of these between two letters (a table: most texts hold none, and
    // this scan reads all of them).
    const LEET: [bool; 256] = {
        let mut t = [false; 256];
        let marks = b"013457@$|!+";
        let mut i = 0;
        while i < marks.len() {
            t[marks[i] as usize] = true;
            i += 1;
        }
        t
    };
    if !skel.bytes().any(|b| LEET[usize::from(b)]) {
        return 0;
    }
    if skel.is_ascii() {
        // The same count over bytes: on ASCII, `char::is_whitespace` is exactly these six.
        let space = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
        return skel
            .as_bytes()
            .split(space)
            .filter(|w| is_leet_word(trim_to_alphanumeric(w)))
            .count() as u32;
    }
    leet_words_chars(skel)
}

/// `leet_words` splitting on Unicode whitespace (any text; ASCII takes the byte path above).
fn leet_words_chars(skel: &str) -> u32 {
    skel.split(|c: char| c.is_whitespace())
        .filter(|w| {
            is_leet_word(
                w.trim_matches(|c: char| !c.is_ascii_alphanumeric())
                    .as_bytes(),
            )
        })
        .count() as u32
}

fn trim_to_alphanumeric(w: &[u8]) -> &[u8] {
    let start = w
        .iter()
        .position(u8::is_ascii_alphanumeric)
        .unwrap_or(w.len());
    let end = w
        .iter()
        .rposition(u8::is_ascii_alphanumeric)
        .map_or(start, |e| e + 1);
    w.get(start..end).unwrap_or_default()
}

/// A digit or symbol between two letters, in a word of at least 4 bytes.
fn is_leet_word(b: &[u8]) -> bool {
    b.len() >= 4
        && b.windows(3).any(|t| {
            t[0].is_ascii_alphabetic()
                && matches!(
                    t[1],
                    b'0' | b'1' | b'3' | b'4' | b'5' | b'7' | b'@' | b'$' | b'|' | b'!' | b'+'
                )
                && t[2].is_ascii_alphabetic()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn ascii_leet_word_count_is_the_char_count(
            s in "[a-zA-Z0-9|!@$+ .\t\n\r\x0b\x0c\x1c-\x1f\x7f-]{0,40}"
        ) {
            proptest::prop_assert_eq!(leet_words(&s), leet_words_chars(&s));
        }

        // The hashes computed once per word are the features `fnv` gives for the word and
        // for the word with the one before it ("^" for the first).
        #[test]
        fn word_hashes_are_the_unigram_and_bigram_features(s in "[a-z0-9 .,!-]{0,48}") {
            let doc = Doc::new(&s, None, Signals::default(), &Lexicon::new());
            let words: Vec<&str> = s
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|w| !w.is_empty())
                .collect();
            proptest::prop_assert_eq!(doc.words.len(), words.len());
            for (i, (w, word)) in doc.words.iter().zip(&words).enumerate() {
                let prev = if i == 0 { "^" } else { words[i - 1] };
                proptest::prop_assert_eq!(w.unigram, fnv(101, &[word.as_bytes()]));
                proptest::prop_assert_eq!(w.bigram, fnv(102, &[prev.as_bytes(), word.as_bytes()]));
            }
        }

        // On an ASCII view the doc's count of one-letter words is the gate count of
        // `joined_letters` (which the screen then skips).
        #[test]
        fn one_letter_words_are_the_single_letters(
            s in "([a-zA-Z0-9]|[a-z]{2,3}|[ .\n_*/-]|[\x00-\x7f]){0,40}"
        ) {
            let doc = Doc::new(&s, None, Signals::default(), &Lexicon::new());
            proptest::prop_assert_eq!(
                doc.single_letter_words,
                Some(crate::normalize::single_letters(&s))
            );
        }
    }
}
