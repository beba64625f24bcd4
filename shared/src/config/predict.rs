//! predict's configuration: request limits, model backend and the screen's thresholds.
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use super::{ConfigError, Env};

/// Which model backend predict calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelBackendKind {
    Echo,
    Bedrock,
}

impl FromStr for ModelBackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "echo" => Ok(Self::Echo),
            "bedrock" => Ok(Self::Bedrock),
            other => Err(format!(
                "unknown model backend {other:?} (expected echo | bedrock)"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PredictConfig {
    pub model_backend: ModelBackendKind,
    /// Bodies larger than this are refused with 413 before parsing.
    pub max_body_bytes: usize,
    /// Prompt cap when the principal's roles set none.
    pub default_max_prompt_chars: usize,
    pub max_tokens_cap: u32,
    pub model_timeout: Duration,
    pub screen: crate::screen::ScreenConfig,
    /// Our model id → Bedrock model id (only for the `bedrock` backend).
    pub bedrock_models: HashMap<String, String>,
    /// Clock skew allowed on the token `exp` the authorizer passes (`GATEHOUSE_LEEWAY_SECS`, as
    /// the authorizer reads it).
    pub token_leeway: Duration,
}

impl PredictConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            model_backend: env.parsed("GATEHOUSE_MODEL_BACKEND", ModelBackendKind::Echo)?,
            max_body_bytes: env.parsed("GATEHOUSE_MAX_BODY_BYTES", 64 * 1024)?,
            default_max_prompt_chars: env.parsed("GATEHOUSE_MAX_PROMPT_CHARS", 8000)?,
            max_tokens_cap: env.parsed("GATEHOUSE_MAX_TOKENS_CAP", 4096)?,
            model_timeout: Duration::from_millis(env.parsed("GATEHOUSE_MODEL_TIMEOUT_MS", 8000)?),
            screen: screen_config(env)?,
            bedrock_models: bedrock_models(env)?,
            token_leeway: super::token_leeway(env)?,
        })
    }
}

fn bedrock_models<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<HashMap<String, String>, ConfigError> {
    let backend: ModelBackendKind =
        env.parsed("GATEHOUSE_MODEL_BACKEND", ModelBackendKind::Echo)?;
    let spec = env.parsed("GATEHOUSE_BEDROCK_MODELS", String::new())?;
    let map = parse_model_map(&spec).map_err(|reason| ConfigError::Invalid {
        name: "GATEHOUSE_BEDROCK_MODELS",
        reason,
    })?;
    if backend == ModelBackendKind::Bedrock && map.is_empty() {
        return Err(ConfigError::Missing("GATEHOUSE_BEDROCK_MODELS"));
    }
    Ok(map)
}

/// Screen thresholds: scores at or above `GATEHOUSE_SCREEN_BLOCK` are refused, at or above
/// `GATEHOUSE_SCREEN_FLAG` pass but are flagged in the audit record and the log.
fn screen_config<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<crate::screen::ScreenConfig, ConfigError> {
    let d = crate::screen::ScreenConfig::default();
    let c = crate::screen::ScreenConfig {
        flag_threshold: env.parsed("GATEHOUSE_SCREEN_FLAG", d.flag_threshold)?,
        block_threshold: env.parsed("GATEHOUSE_SCREEN_BLOCK", d.block_threshold)?,
        max_input_bytes: env.parsed("GATEHOUSE_SCREEN_MAX_BYTES", d.max_input_bytes)?,
    };
    let in_range = |t: f32| (0.0..=1.0).contains(&t);
    if !in_range(c.flag_threshold)
        || !in_range(c.block_threshold)
        || c.flag_threshold > c.block_threshold
    {
        return Err(ConfigError::Invalid {
            name: "GATEHOUSE_SCREEN_FLAG",
            reason: "thresholds must satisfy 0 <= flag <= block <= 1".into(),
        });
    }
    Ok(c)
}

/// Parses `name=bedrock-id,name2=bedrock-id2` (`GATEHOUSE_BEDROCK_MODELS`): our model ids (the
/// policy's vocabulary) → Bedrock model ids or inference-profile ARNs.
pub fn parse_model_map(spec: &str) -> Result<HashMap<String, String>, String> {
    spec.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                Ok((k.trim().to_owned(), v.trim().to_owned()))
            }
            _ => Err(format!("expected name=bedrock-model-id, got {pair:?}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::env;

    #[test]
    fn predict_config_defaults_and_bad_backend() {
        let c = PredictConfig::from_env(&env(&[])).unwrap();
        assert_eq!(c.model_backend, ModelBackendKind::Echo);
        assert_eq!(c.default_max_prompt_chars, 8000);
        let bad = PredictConfig::from_env(&env(&[("GATEHOUSE_MODEL_BACKEND", "gpt")]));
        assert!(matches!(bad, Err(ConfigError::Invalid { .. })));
    }

    #[test]
    fn model_map_parsing() {
        let m = parse_model_map(
            "claude-haiku=anthropic.claude-3-haiku-20240307-v1:0, x=arn:aws:bedrock:us-east-1::y",
        )
        .unwrap();
        assert_eq!(m["claude-haiku"], "anthropic.claude-3-haiku-20240307-v1:0");
        assert_eq!(m["x"], "arn:aws:bedrock:us-east-1::y");
        assert!(parse_model_map("nonsense").is_err());
        assert!(parse_model_map("a=").is_err());
        assert!(parse_model_map("").unwrap().is_empty());
    }
}
