//! Prompt-injection screen: normalized views + decoders + rules + a small learned model.

pub mod decode;
pub mod eval;
pub mod features;
pub mod model;
pub mod normalize;
pub mod rules;
pub mod train;

use crate::text::cap;
use serde::Serialize;

use crate::sanitize::{Sanitized, sanitize};
use model::{ModelWeights, Quantized};
use rules::CompiledRules;

/// The committed model, produced by `screen-tool train` from the train split only.
const MODEL_BYTES: &[u8] = include_bytes!("model.bin");

/// Nested encodings deeper than this are not unwrapped (base64 of hex of ... is still caught
/// at the first levels, and each level costs a full screen).
const MAX_DECODE_DEPTH: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ScreenError {
    #[error("invalid rule set: {0}")]
    Rules(String),
    #[error("invalid model weights: {0}")]
    Model(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("data: {0}")]
    Data(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Flag,
    Block,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScreenResult {
    pub verdict: Verdict,
    pub score: f32,
    pub rules: Vec<&'static str>,
}

#[derive(Debug, Clone, Copy)]
pub struct ScreenConfig {
    pub flag_threshold: f32,
    pub block_threshold: f32,
    pub max_input_bytes: usize,
}

impl Default for ScreenConfig {
    /// Chosen on the validation split (see HANDOFF.md, "Generalization pass"). Flag = the
    /// FPR <= 1% point. Block sits higher (validation FPR 0.7%): between the two, a score
    /// usually comes from the learned model alone, which is least reliable on prompts unlike
    /// the corpus, so such prompts are flagged for review, not rejected.
    fn default() -> Self {
        Self {
            flag_threshold: 0.72,
            block_threshold: 0.85,
            max_input_bytes: 32 * 1024,
        }
    }
}

pub struct Screener {
    config: ScreenConfig,
    rules: CompiledRules,
    model: Quantized,
}

/// Evidence collected while screening one prompt.
#[derive(Default)]
struct Evidence {
    hits: Vec<(&'static str, f32)>,
    model: f32,
    /// Bytes of decoded payload still allowed, so nested decoding stays linear.
    budget: usize,
}

impl Evidence {
    fn hit(&mut self, id: &'static str, weight: f32) {
        if !self.hits.iter().any(|&(i, w)| i == id && w == weight) {
            self.hits.push((id, weight));
        }
    }
}

impl Screener {
    pub fn new(config: ScreenConfig) -> Result<Self, ScreenError> {
        Self::with_model(config, model::decode(MODEL_BYTES)?)
    }

    /// Screener with explicit weights (training and tests use this).
    pub fn with_model(config: ScreenConfig, model: ModelWeights) -> Result<Self, ScreenError> {
        let ok = |t: f32| (0.0..=1.0).contains(&t);
        if !ok(config.flag_threshold)
            || !ok(config.block_threshold)
            || config.flag_threshold > config.block_threshold
        {
            return Err(ScreenError::Config(
                "thresholds must satisfy 0 <= flag <= block <= 1".into(),
            ));
        }
        if config.max_input_bytes == 0 {
            return Err(ScreenError::Config("max_input_bytes must be > 0".into()));
        }
        Ok(Self {
            config,
            rules: CompiledRules::new()?,
            model: Quantized::new(&model),
        })
    }

    pub fn config(&self) -> ScreenConfig {
        self.config
    }

    /// Convenience: sanitize then screen.
    pub fn screen_text(&self, raw: &str) -> ScreenResult {
        // Cap before sanitizing too, so a huge body costs no more than the cap (with slack
        // for invisible characters the sanitizer will remove).
        let (head, over) = cap(raw, self.config.max_input_bytes.saturating_mul(2));
        let mut r = self.screen(&sanitize(head));
        if over && !r.rules.contains(&"oversize") {
            r.rules.push("oversize");
            r.verdict = r.verdict.max_with(Verdict::Flag);
        }
        r
    }

    pub fn screen(&self, input: &Sanitized) -> ScreenResult {
        let max = self.config.max_input_bytes;
        let mut ev = Evidence {
            budget: max,
            ..Evidence::default()
        };
        let (text, oversize) = cap(&input.text, max);
        let rm = &input.removed;
        if rm.tag > 0 {
            ev.hit("unicode_tags", 0.6);
        }
        if rm.variation_selector >= 3 {
            ev.hit("variation_selector_smuggling", 0.5);
        }
        if rm.bidi > 0 {
            ev.hit("bidi_control", 0.3);
        }
        if rm.zero_width >= 3 {
            ev.hit("zero_width", 0.25);
        }
        if rm.control >= 3 {
            ev.hit("control_chars", 0.2);
        }
        ev.model = self.layer(text, input, 0, &mut ev);
        if !input.hidden.is_empty() {
            let (hidden, _) = cap(&input.hidden, max);
            let inner = sanitize(hidden);
            let p = self.layer(&inner.text, &inner, 1, &mut ev);
            ev.model = ev.model.max(p);
        }
        if oversize {
            ev.hit("oversize", 0.0);
        }
        self.verdict(ev, oversize)
    }

    fn verdict(&self, ev: Evidence, oversize: bool) -> ScreenResult {
        let rule_score = 1.0 - ev.hits.iter().map(|&(_, w)| 1.0 - w).product::<f32>();
        let score = (1.0 - (1.0 - rule_score) * (1.0 - ev.model)).clamp(0.0, 1.0);
        let mut verdict = if score >= self.config.block_threshold {
            Verdict::Block
        } else if score >= self.config.flag_threshold {
            Verdict::Flag
        } else {
            Verdict::Allow
        };
        // Text past the cap was not screened: never let it through unreviewed.
        if oversize {
            verdict = verdict.max_with(Verdict::Flag);
        }
        let mut rules: Vec<&'static str> = Vec::new();
        for (id, _) in ev.hits {
            if !rules.contains(&id) {
                rules.push(id);
            }
        }
        ScreenResult {
            verdict,
            score,
            rules,
        }
    }

    /// Screens one layer (the prompt, or a payload decoded from it); returns the model's
    /// probability for it and records rule hits.
    fn layer(&self, text: &str, san: &Sanitized, depth: u32, ev: &mut Evidence) -> f32 {
        let lower = normalize::lower(text);
        let skel = normalize::skeleton_view(text);
        let leet = normalize::leet_view(&skel);
        let r = &self.rules;
        for i in r
            .latin
            .matches(&skel)
            .iter()
            .chain(r.leet.matches(&leet).iter())
        {
            if let Some(&(id, w)) = r.latin_ids.get(i) {
                ev.hit(id, w);
            }
        }
        for i in r.syntax.matches(&skel).iter() {
            if let Some(&(id, w)) = r.syntax_ids.get(i) {
                ev.hit(id, w);
            }
        }
        for i in r.multi.matches(&lower).iter() {
            if let Some(&(id, w)) = r.multi_ids.get(i) {
                ev.hit(id, w);
            }
        }
        let rot_hits: Vec<usize> = if normalize::maybe_rot13(&skel) {
            let rot = normalize::leet_view(&normalize::rot13(&skel));
            r.leet.matches(&rot).iter().collect()
        } else {
            Vec::new()
        };
        if !rot_hits.is_empty() {
            ev.hit("rot13", 0.3);
        }
        for i in rot_hits {
            if let Some(&(id, w)) = r.latin_ids.get(i) {
                ev.hit(id, w);
            }
        }
        if normalize::maybe_reversed(&skel) {
            let rev = normalize::leet_view(&normalize::reversed(&skel));
            let hits: Vec<usize> = r.leet.matches(&rev).iter().collect();
            if !hits.is_empty() {
                ev.hit("reversed_text", 0.3);
            }
            for i in hits {
                if let Some(&(id, w)) = r.latin_ids.get(i) {
                    ev.hit(id, w);
                }
            }
        }
        let joined = normalize::joined_letters(&leet);
        if !joined.is_empty() {
            let hits: Vec<usize> = r.squashed.matches(&joined).iter().collect();
            if !hits.is_empty() {
                ev.hit("spaced_letters", 0.3);
            }
            for i in hits {
                if let Some(&(id, w)) = r.latin_ids.get(i) {
                    ev.hit(id, w);
                }
            }
        }
        let (view, signals) = features::model_input_views(&skel, leet, san);
        if signals.mixed_script_words >= 2 {
            ev.hit("confusable_mixed_script", 0.4);
        }
        if signals.leet_words >= 2 {
            ev.hit("leetspeak", 0.25);
        }
        let mut p = features::score_quantized(&self.model, &view, signals);
        if depth < MAX_DECODE_DEPTH {
            for (enc, payload) in decode::payloads(text) {
                if payload.len() > ev.budget {
                    // Skip this one but keep decoding the rest (a big decoy must not hide a small
                    // payload after it), and say that something went unread.
                    ev.hit("decode_budget_exhausted", 0.3);
                    continue;
                }
                ev.budget -= payload.len();
                let inner = sanitize(&payload);
                let mark = ev.hits.len();
                let q = self.layer(&inner.text, &inner, depth + 1, ev);
                // Name the encoding only when what it hid looks like an attack.
                if ev.hits.len() > mark || q >= self.config.flag_threshold {
                    ev.hit(enc.rule_id(), 0.3);
                }
                p = p.max(q);
            }
        }
        p
    }
}

impl Verdict {
    fn max_with(self, other: Verdict) -> Verdict {
        let rank = |v: Verdict| match v {
            Verdict::Allow => 0,
            Verdict::Flag => 1,
            Verdict::Block => 2,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests;
