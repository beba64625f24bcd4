//! The predict API's request and response shapes, and the validated newtypes that carry a
//! request past the edge. Validation happens before anything else touches the prompt.
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Temperature bounds accepted by every backend we support.
pub const TEMPERATURE_RANGE: std::ops::RangeInclusive<f64> = 0.0..=2.0;
pub const DEFAULT_MODEL: &str = "echo";
pub const DEFAULT_MAX_TOKENS: u32 = 512;

/// The body as sent. Unknown fields, duplicate fields and wrong types are rejected by serde.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPredictRequest {
    pub prompt: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

/// A prompt of 1..=max characters (Unicode scalar values), not yet sanitized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt(String);

impl Prompt {
    pub fn parse(raw: String, max_chars: usize) -> Result<Self, ApiError> {
        let n = raw.chars().count();
        if n == 0 || raw.trim().is_empty() {
            return Err(ApiError::invalid("prompt", "must not be empty"));
        }
        if n > max_chars {
            return Err(ApiError::invalid(
                "prompt",
                format!("is {n} characters; the limit for your role is {max_chars}"),
            ));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A model id of the policy's vocabulary: `[a-z0-9][a-z0-9._-]{0,63}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelId(String);

impl ModelId {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let ok_len = (1..=64).contains(&raw.len());
        let ok_chars = raw.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || (i > 0 && matches!(b, b'.' | b'_' | b'-'))
        });
        if ok_len && ok_chars {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ApiError::invalid(
                "model",
                "must match [a-z0-9][a-z0-9._-]{0,63}",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A request that passed schema and range checks. Model authorization comes next.
#[derive(Debug, Clone)]
pub struct PredictRequest {
    pub prompt: Prompt,
    pub model: ModelId,
    pub temperature: f64,
    pub max_tokens: u32,
}

/// Bounds that depend on configuration and on the principal's role.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub max_prompt_chars: usize,
    /// The deployment's range for `max_tokens` (outside it: 400). What a role may use is a
    /// policy question, checked later (403).
    pub max_tokens_cap: u32,
    /// Used when the body names no `max_tokens`.
    pub default_max_tokens: u32,
}

impl PredictRequest {
    pub fn parse(body: &[u8], limits: RequestLimits) -> Result<Self, ApiError> {
        let text = std::str::from_utf8(body).map_err(|e| {
            ApiError::invalid(
                "body",
                format!("is not valid UTF-8 (at byte {})", e.valid_up_to()),
            )
        })?;
        let raw: RawPredictRequest = serde_json::from_str(text).map_err(|e| {
            // serde_json's message names the field and position, never more than the input we hold.
            ApiError::invalid("body", e.to_string())
        })?;
        let prompt = Prompt::parse(raw.prompt, limits.max_prompt_chars)?;
        let model = ModelId::parse(raw.model.as_deref().unwrap_or(DEFAULT_MODEL))?;
        let temperature = raw.temperature.unwrap_or(1.0);
        if !temperature.is_finite() || !TEMPERATURE_RANGE.contains(&temperature) {
            return Err(ApiError::invalid("temperature", "must be between 0 and 2"));
        }
        let max_tokens = raw.max_tokens.unwrap_or(limits.default_max_tokens);
        if max_tokens == 0 || max_tokens > limits.max_tokens_cap {
            return Err(ApiError::invalid(
                "max_tokens",
                format!("must be between 1 and {}", limits.max_tokens_cap),
            ));
        }
        Ok(Self {
            prompt,
            model,
            temperature,
            max_tokens,
        })
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
}

/// What a client learns about the screen: the verdict only (`allow`, or `flag` where the
/// deployment shows flags: `GATEHOUSE_SCREEN_SHOW_FLAG`). The exact score and the rule ids stay
/// in the audit record and the log: a score in every answer would be an oracle for paraphrasing
/// an attack until it slips just under the threshold.
#[derive(Debug, Serialize)]
pub struct ScreenSummary {
    pub verdict: crate::screen::Verdict,
}

#[derive(Debug, Serialize)]
pub struct PredictResponse {
    pub request_id: String,
    pub model: String,
    pub output: String,
    pub usage: Usage,
    pub screen: ScreenSummary,
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RequestLimits = RequestLimits {
        max_prompt_chars: 10,
        max_tokens_cap: 100,
        default_max_tokens: 100,
    };

    fn field_of(r: Result<PredictRequest, ApiError>) -> String {
        match r {
            Err(ApiError::Invalid { field, .. }) => field.to_string(),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn table_of_invalid_bodies() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"prompt":"hi","extra":1}"#, "body"),
            (br#"{"prompt":"hi","prompt":"again"}"#, "body"),
            (b"\xff\xfe", "body"),
            (br#"{"prompt":""}"#, "prompt"),
            (br#"{"prompt":"   "}"#, "prompt"),
            (br#"{"prompt":"01234567890"}"#, "prompt"),
            (br#"{"prompt":"hi","temperature":2.5}"#, "temperature"),
            (br#"{"prompt":"hi","temperature":1e400}"#, "body"),
            (br#"{"prompt":"hi","max_tokens":0}"#, "max_tokens"),
            (br#"{"prompt":"hi","max_tokens":101}"#, "max_tokens"),
            (br#"{"prompt":"hi","max_tokens":99999999999999999999}"#, "body"),
            (br#"{"prompt":"hi","model":"../etc"}"#, "model"),
            (br#"{"prompt":"hi","model":"Echo"}"#, "model"),
            (br#"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["#, "body"),
        ];
        for (body, field) in cases {
            assert_eq!(
                field_of(PredictRequest::parse(body, LIMITS)),
                *field,
                "body {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn valid_body_gets_defaults_and_counts_chars_not_bytes() {
        let r = PredictRequest::parse("{\"prompt\":\"héllo wörld\"}".as_bytes(), LIMITS);
        assert!(r.is_err(), "11 chars is over a limit of 10");
        let r = PredictRequest::parse("{\"prompt\":\"héllo\"}".as_bytes(), LIMITS).unwrap();
        assert_eq!(r.model.as_str(), "echo");
        assert_eq!(r.max_tokens, 100);
        assert_eq!(r.temperature, 1.0);
    }
}
