//! The predict API's request and response shapes, and the validated newtypes that carry a
//! request past the edge. Validation happens before anything else touches the prompt.
//!
//! Parse errors are reported in the caller's terms, all at once: "body must be a JSON object",
//! every unknown or repeated member, every member of the wrong type or out of range, each as an
//! entry `{"pointer": "#/temperature", "detail": "..."}` of the problem's `errors` extension
//! member (RFC 9457 §3 shows this shape; the pointer is an RFC 6901 JSON pointer in URI fragment
//! form). No Rust type name or parser internals reach the caller.
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Temperature bounds of the deployment; a model may accept less (`ModelInfo::temperature_max`).
pub const TEMPERATURE_RANGE: std::ops::RangeInclusive<f64> = 0.0..=2.0;
/// Temperature when the body names none (capped by the model's own maximum).
pub const DEFAULT_TEMPERATURE: f64 = 1.0;
/// `max_tokens` when the body names none (capped by the role's, the model's and the deployment's).
pub const DEFAULT_MAX_TOKENS: u32 = 512;

/// The members a predict body may have.
pub const MEMBERS: [&str; 4] = ["prompt", "model", "temperature", "max_tokens"];

pub use crate::error::FieldError;

/// A prompt of 1..=max characters (Unicode scalar values), not yet sanitized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt(String);

impl Prompt {
    fn parse(raw: String, max_chars: usize) -> Result<Self, FieldError> {
        let n = raw.chars().count();
        if n == 0 || raw.trim().is_empty() {
            return Err(FieldError::at("prompt", "must not be empty"));
        }
        if n > max_chars {
            return Err(FieldError::at(
                "prompt",
                format!("is {n} characters; this API accepts at most {max_chars}"),
            ));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Length in characters (Unicode scalar values), the unit of every prompt limit.
    pub fn chars(&self) -> usize {
        self.0.chars().count()
    }
}

/// A model id of the policy's vocabulary: `[a-z0-9][a-z0-9._-]{0,63}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelId(String);

impl ModelId {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        Self::check(raw).map_err(|e| ApiError::Invalid { errors: vec![e] })
    }

    fn check(raw: &str) -> Result<Self, FieldError> {
        let ok_len = (1..=64).contains(&raw.len());
        let ok_chars = raw.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || (i > 0 && matches!(b, b'.' | b'_' | b'-'))
        });
        if ok_len && ok_chars {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::at(
                "model",
                "must be a model id: 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A body that passed schema and the deployment's ranges. The model's and the role's own limits
/// come next, in the pipeline; members the body left out stay `None` until then.
#[derive(Debug, Clone)]
pub struct PredictRequest {
    pub prompt: Prompt,
    pub model: Option<ModelId>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
}

/// The deployment's bounds on a body (configuration, not policy).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// `GATEHOUSE_MAX_PROMPT_CHARS`: no role may send more.
    pub max_prompt_chars: usize,
    /// `GATEHOUSE_MAX_TOKENS_CAP`: the range of `max_tokens` (outside it: 400).
    pub max_tokens_cap: u32,
}

/// The top level of a body: an object's members in order (repeats kept, so they can be
/// reported), or the kind of JSON value it was instead.
enum TopLevel {
    Object(Vec<(String, serde_json::Value)>),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopLevel;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
                let mut members = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    members.push((k, map.next_value::<serde_json::Value>()?));
                }
                Ok(TopLevel::Object(members))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TopLevel, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(TopLevel::Other("an array"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<TopLevel, E> {
                Ok(TopLevel::Other("a boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<TopLevel, E> {
                Ok(TopLevel::Other("a number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<TopLevel, E> {
                Ok(TopLevel::Other("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<TopLevel, E> {
                Ok(TopLevel::Other("a number"))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<TopLevel, E> {
                Ok(TopLevel::Other("a string"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<TopLevel, E> {
                Ok(TopLevel::Other("null"))
            }
        }
        d.deserialize_any(V)
    }
}

/// The JSON type of a value, in the caller's words.
fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A JSON body's top-level members, in order and with repeats kept; or the one error that says,
/// in the caller's words, why the body is not a JSON object (not UTF-8, not JSON, another type).
pub fn object_members(body: &[u8]) -> Result<Vec<(String, serde_json::Value)>, ApiError> {
    let invalid = |e: FieldError| ApiError::Invalid { errors: vec![e] };
    let text = std::str::from_utf8(body).map_err(|e| {
        invalid(FieldError::at(
            "",
            format!("body is not valid UTF-8 (at byte {})", e.valid_up_to()),
        ))
    })?;
    match serde_json::from_str::<TopLevel>(text) {
        Ok(TopLevel::Object(m)) => Ok(m),
        Ok(TopLevel::Other(what)) => Err(invalid(FieldError::at(
            "",
            format!("body must be a JSON object, not {what}"),
        ))),
        // Only syntax errors are left here ("expected value at line 1 column 9"): the visitor
        // above accepts every well-formed value.
        Err(e) => Err(invalid(FieldError::at(
            "",
            format!("body is not valid JSON: {e}"),
        ))),
    }
}

impl PredictRequest {
    /// Parses and checks a body against the deployment's limits, reporting every problem found.
    pub fn parse(body: &[u8], limits: BodyLimits) -> Result<Self, ApiError> {
        let members = object_members(body)?;
        let mut errors = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        let (mut prompt, mut model, mut temperature, mut max_tokens) = (None, None, None, None);
        for (name, value) in &members {
            if seen.contains(&name.as_str()) {
                errors.push(FieldError::at(name, "appears more than once"));
                continue;
            }
            seen.push(name);
            match name.as_str() {
                "prompt" => match value {
                    serde_json::Value::String(s) => {
                        match Prompt::parse(s.clone(), limits.max_prompt_chars) {
                            Ok(p) => prompt = Some(p),
                            Err(e) => errors.push(e),
                        }
                    }
                    other => errors.push(FieldError::at(
                        "prompt",
                        format!("must be a string, not {}", kind(other)),
                    )),
                },
                "model" => match value {
                    serde_json::Value::Null => {}
                    serde_json::Value::String(s) => match ModelId::check(s) {
                        Ok(m) => model = Some(m),
                        Err(e) => errors.push(e),
                    },
                    other => errors.push(FieldError::at(
                        "model",
                        format!("must be a string, not {}", kind(other)),
                    )),
                },
                "temperature" => match value {
                    serde_json::Value::Null => {}
                    serde_json::Value::Number(n) => match n.as_f64() {
                        Some(t) if t.is_finite() && TEMPERATURE_RANGE.contains(&t) => {
                            temperature = Some(t)
                        }
                        _ => errors.push(FieldError::at(
                            "temperature",
                            "must be a number from 0 to 2",
                        )),
                    },
                    other => errors.push(FieldError::at(
                        "temperature",
                        format!("must be a number, not {}", kind(other)),
                    )),
                },
                "max_tokens" => {
                    let range = format!("must be an integer from 1 to {}", limits.max_tokens_cap);
                    match value {
                        serde_json::Value::Null => {}
                        serde_json::Value::Number(n) => match n.as_u64() {
                            Some(v) if v >= 1 && v <= u64::from(limits.max_tokens_cap) => {
                                max_tokens = u32::try_from(v).ok()
                            }
                            _ => errors.push(FieldError::at("max_tokens", range)),
                        },
                        other => errors.push(FieldError::at(
                            "max_tokens",
                            format!("{range}, not {}", kind(other)),
                        )),
                    }
                }
                unknown => errors.push(FieldError::at(
                    unknown,
                    format!(
                        "is not a member of a predict request ({})",
                        MEMBERS.join(", ")
                    ),
                )),
            }
        }
        if !seen.contains(&"prompt") {
            errors.push(FieldError::at("prompt", "is required"));
        }
        match (prompt, errors.is_empty()) {
            (Some(prompt), true) => Ok(Self {
                prompt,
                model,
                temperature,
                max_tokens,
            }),
            _ => Err(ApiError::Invalid { errors }),
        }
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

    const LIMITS: BodyLimits = BodyLimits {
        max_prompt_chars: 10,
        max_tokens_cap: 100,
    };

    fn errors_of(body: &[u8]) -> Vec<FieldError> {
        match PredictRequest::parse(body, LIMITS) {
            Err(ApiError::Invalid { errors }) => errors,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn pointers(body: &[u8]) -> Vec<String> {
        errors_of(body).into_iter().map(|e| e.pointer).collect()
    }

    #[test]
    fn table_of_invalid_bodies() {
        let cases: &[(&[u8], &[&str])] = &[
            (br#"{"prompt":"hi","extra":1}"#, &["#/extra"]),
            (br#"{"prompt":"hi","prompt":"again"}"#, &["#/prompt"]),
            (b"\xff\xfe", &["#"]),
            (br#"{"prompt":""}"#, &["#/prompt"]),
            (br#"{"prompt":"   "}"#, &["#/prompt"]),
            (br#"{"prompt":"01234567890"}"#, &["#/prompt"]),
            (br#"{"prompt":"hi","temperature":2.5}"#, &["#/temperature"]),
            (br#"{"prompt":"hi","temperature":"1"}"#, &["#/temperature"]),
            (br#"{"prompt":"hi","temperature":1e400}"#, &["#"]),
            (br#"{"prompt":"hi","max_tokens":0}"#, &["#/max_tokens"]),
            (br#"{"prompt":"hi","max_tokens":101}"#, &["#/max_tokens"]),
            (br#"{"prompt":"hi","max_tokens":1.5}"#, &["#/max_tokens"]),
            (
                br#"{"prompt":"hi","max_tokens":99999999999999999999}"#,
                &["#/max_tokens"],
            ),
            (br#"{"prompt":"hi","model":"../etc"}"#, &["#/model"]),
            (br#"{"prompt":"hi","model":"Echo"}"#, &["#/model"]),
            (br#"{"prompt":"hi","model":7}"#, &["#/model"]),
            (br#"{"model":"echo"}"#, &["#/prompt"]),
            (br#"{"prompt":["hi"]}"#, &["#/prompt"]),
            (br#"{"prompt":"hi","a/b~c":1}"#, &["#/a~1b~0c"]),
            (br#"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["#, &["#"]),
            (b"{\"prompt\":\"hi\"} trailing", &["#"]),
        ];
        for (body, want) in cases {
            assert_eq!(
                pointers(body),
                want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "body {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn every_problem_is_listed_in_user_terms() {
        let errors = errors_of(br#"{"promt":"hi","temperature":"hot","admin":true,"x":null}"#);
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            ["#/promt", "#/temperature", "#/admin", "#/x", "#/prompt"]
        );
        assert_eq!(errors[4].detail, "is required");
        assert!(
            errors[0]
                .detail
                .contains("prompt, model, temperature, max_tokens")
        );
        for body in [
            &br#"[1,2]"#[..],
            br#""hello""#,
            br#"42"#,
            br#"null"#,
            br#"true"#,
        ] {
            let e = errors_of(body);
            assert_eq!(e.len(), 1);
            assert!(
                e[0].detail.starts_with("body must be a JSON object, not "),
                "{}",
                e[0].detail
            );
        }
        // No parser internals: serde's "expected struct ..." and Rust type names never appear.
        for body in [
            &br#"{"prompt":1}"#[..],
            br#"[]"#,
            br#"{"prompt":"hi","max_tokens":-1}"#,
            br#"{"#,
        ] {
            for e in errors_of(body) {
                for leak in [
                    "struct",
                    "RawPredict",
                    "u32",
                    "f64",
                    "String",
                    "invalid type",
                ] {
                    assert!(!e.detail.contains(leak), "{leak} in {:?}", e.detail);
                }
            }
        }
    }

    #[test]
    fn valid_body_keeps_absent_members_absent_and_counts_chars_not_bytes() {
        assert!(
            PredictRequest::parse("{\"prompt\":\"héllo wörld\"}".as_bytes(), LIMITS).is_err(),
            "11 chars is over a limit of 10"
        );
        let r = PredictRequest::parse("{\"prompt\":\"héllo\"}".as_bytes(), LIMITS).unwrap();
        assert_eq!(r.prompt.chars(), 5);
        assert!(r.model.is_none() && r.max_tokens.is_none() && r.temperature.is_none());
        let r = PredictRequest::parse(
            br#"{"prompt":"hi","model":null,"temperature":0,"max_tokens":100}"#,
            LIMITS,
        )
        .unwrap();
        assert_eq!((r.temperature, r.max_tokens), (Some(0.0), Some(100)));
        assert!(r.model.is_none());
    }
}
