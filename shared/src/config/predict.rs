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

/// Repeat-offender suspension (issue 13): `after` offences of one kind (blocked prompts, or
/// forbidden-model answers) within `window` suspend the principal from predict for `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuspensionConfig {
    /// K; 0 turns suspension off.
    pub after: u32,
    pub window: Duration,
    pub period: Duration,
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
    /// Whether a 200 answer says `flag` for a flagged prompt (`GATEHOUSE_SCREEN_SHOW_FLAG`,
    /// default false: clients see `allow`, the audit record keeps the flag).
    pub screen_show_flag: bool,
    /// The optional Bedrock Guardrails second opinion (`GATEHOUSE_GUARDRAIL_ID` set).
    pub guardrail: Option<GuardrailConfig>,
    /// Our model id → Bedrock model id (only for the `bedrock` backend).
    pub bedrock_models: HashMap<String, String>,
    /// The model of a request that names none (`GATEHOUSE_DEFAULT_MODEL`); cold start refuses
    /// one the policy does not enable or the backend cannot run.
    pub default_model: String,
    /// Base of the problem `type` URIs (`GATEHOUSE_PROBLEM_BASE_URL`); the type is base + slug,
    /// the slug being the section of `docs/problems.md`.
    pub problem_base: String,
    pub suspension: SuspensionConfig,
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
            screen_show_flag: env.parsed("GATEHOUSE_SCREEN_SHOW_FLAG", false)?,
            guardrail: guardrail_config(env)?,
            bedrock_models: bedrock_models(env)?,
            default_model: env.parsed("GATEHOUSE_DEFAULT_MODEL", "echo".to_owned())?,
            problem_base: super::problem_base(env)?,
            suspension: suspension(env)?,
            token_leeway: super::token_leeway(env)?,
        })
    }
}

fn suspension<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<SuspensionConfig, ConfigError> {
    let c = SuspensionConfig {
        after: env.parsed("GATEHOUSE_SUSPEND_AFTER", 5)?,
        window: env.secs("GATEHOUSE_SUSPEND_WINDOW_SECS", 900)?,
        period: env.secs("GATEHOUSE_SUSPEND_SECS", 3600)?,
    };
    let week = Duration::from_secs(crate::ratelimit::budget::MAX_SUSPENSION_SECS);
    if c.window.is_zero() || c.window > Duration::from_secs(86_400) {
        return Err(ConfigError::Invalid {
            name: "GATEHOUSE_SUSPEND_WINDOW_SECS",
            reason: "must be between 1 and 86400".into(),
        });
    }
    if c.period.is_zero() || c.period > week {
        return Err(ConfigError::Invalid {
            name: "GATEHOUSE_SUSPEND_SECS",
            reason: format!("must be between 1 and {}", week.as_secs()),
        });
    }
    Ok(c)
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

/// Screen thresholds (template parameters `ScreenFlagThreshold`, `ScreenBlockThreshold`,
/// `ScreenModelBlockThreshold`, `ScreenRuleBlockMin`): scores at or above `GATEHOUSE_SCREEN_BLOCK`
/// are refused when rules add up to `GATEHOUSE_SCREEN_RULE_BLOCK_MIN` or the learned layer alone
/// reaches `GATEHOUSE_SCREEN_MODEL_BLOCK`; scores at or above `GATEHOUSE_SCREEN_FLAG` pass but are
/// flagged in the audit record and the log.
fn screen_config<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<crate::screen::ScreenConfig, ConfigError> {
    let d = crate::screen::ScreenConfig::default();
    let c = crate::screen::ScreenConfig {
        flag_threshold: env.parsed("GATEHOUSE_SCREEN_FLAG", d.flag_threshold)?,
        block_threshold: env.parsed("GATEHOUSE_SCREEN_BLOCK", d.block_threshold)?,
        model_block_threshold: env
            .parsed("GATEHOUSE_SCREEN_MODEL_BLOCK", d.model_block_threshold)?,
        rule_block_min: env.parsed("GATEHOUSE_SCREEN_RULE_BLOCK_MIN", d.rule_block_min)?,
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
    for (name, v) in [
        ("GATEHOUSE_SCREEN_MODEL_BLOCK", c.model_block_threshold),
        ("GATEHOUSE_SCREEN_RULE_BLOCK_MIN", c.rule_block_min),
    ] {
        if !in_range(v) {
            return Err(ConfigError::Invalid {
                name,
                reason: "must be between 0 and 1".into(),
            });
        }
    }
    Ok(c)
}

/// Which prompts the guardrail is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardrailScope {
    /// Only prompts the fast screen flagged (its unsure band): the default.
    FlagBand,
    /// Every prompt the screen did not block.
    All,
}

impl FromStr for GuardrailScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "flag" => Ok(Self::FlagBand),
            "all" => Ok(Self::All),
            other => Err(format!("{other:?} is not one of flag, all")),
        }
    }
}

/// Amazon Bedrock Guardrails as a second opinion (template parameters `GuardrailId`,
/// `GuardrailVersion`, `GuardrailScope`, `GuardrailTimeoutMs`, `GuardrailFailOpen`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardrailConfig {
    /// Guardrail id or ARN (`GATEHOUSE_GUARDRAIL_ID`).
    pub id: String,
    /// Guardrail version, a number or `DRAFT` (`GATEHOUSE_GUARDRAIL_VERSION`, default `1`).
    pub version: String,
    /// `GATEHOUSE_GUARDRAIL_SCOPE`: `flag` (default) or `all`.
    pub scope: GuardrailScope,
    /// `GATEHOUSE_GUARDRAIL_TIMEOUT_MS` (default 1500).
    pub timeout: Duration,
    /// `GATEHOUSE_GUARDRAIL_FAIL_OPEN` (default false: an error or timeout answers 503).
    pub fail_open: bool,
}

fn guardrail_config<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<Option<GuardrailConfig>, ConfigError> {
    let id = env.parsed("GATEHOUSE_GUARDRAIL_ID", String::new())?;
    if id.trim().is_empty() {
        return Ok(None);
    }
    let version = env.parsed("GATEHOUSE_GUARDRAIL_VERSION", "1".to_owned())?;
    if !(version == "DRAFT" || (!version.is_empty() && version.bytes().all(|b| b.is_ascii_digit())))
    {
        return Err(ConfigError::Invalid {
            name: "GATEHOUSE_GUARDRAIL_VERSION",
            reason: "must be a version number or DRAFT".into(),
        });
    }
    let timeout_ms: u64 = env.parsed("GATEHOUSE_GUARDRAIL_TIMEOUT_MS", 1500)?;
    if timeout_ms == 0 {
        return Err(ConfigError::Invalid {
            name: "GATEHOUSE_GUARDRAIL_TIMEOUT_MS",
            reason: "must be > 0".into(),
        });
    }
    Ok(Some(GuardrailConfig {
        id: id.trim().to_owned(),
        version,
        scope: env.parsed("GATEHOUSE_GUARDRAIL_SCOPE", GuardrailScope::FlagBand)?,
        timeout: Duration::from_millis(timeout_ms),
        fail_open: env.parsed("GATEHOUSE_GUARDRAIL_FAIL_OPEN", false)?,
    }))
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
    fn problem_base_and_suspension_settings_are_checked() {
        let c = PredictConfig::from_env(&env(&[])).unwrap();
        assert_eq!(c.problem_base, crate::http::DEFAULT_PROBLEM_BASE);
        assert_eq!(c.default_model, "echo");
        assert_eq!(
            (
                c.suspension.after,
                c.suspension.window.as_secs(),
                c.suspension.period.as_secs()
            ),
            (5, 900, 3600)
        );
        for bad in [
            "docs/problems",
            "https://x y/",
            "javascript:alert(1)",
            "https://a\"b",
        ] {
            assert!(
                matches!(
                    PredictConfig::from_env(&env(&[("GATEHOUSE_PROBLEM_BASE_URL", bad)])),
                    Err(ConfigError::Invalid {
                        name: "GATEHOUSE_PROBLEM_BASE_URL",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        let ok = PredictConfig::from_env(&env(&[(
            "GATEHOUSE_PROBLEM_BASE_URL",
            "https://docs.example.com/gatehouse/problems#",
        )]))
        .unwrap();
        assert_eq!(
            ok.problem_base,
            "https://docs.example.com/gatehouse/problems#"
        );
        assert!(PredictConfig::from_env(&env(&[("GATEHOUSE_SUSPEND_SECS", "0")])).is_err());
        assert!(PredictConfig::from_env(&env(&[("GATEHOUSE_SUSPEND_SECS", "999999")])).is_err());
        let off = PredictConfig::from_env(&env(&[("GATEHOUSE_SUSPEND_AFTER", "0")])).unwrap();
        assert_eq!(off.suspension.after, 0);
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

    #[test]
    fn screen_thresholds_and_guardrail_settings() {
        let c = PredictConfig::from_env(&env(&[])).unwrap();
        assert!(c.guardrail.is_none());
        assert!(!c.screen_show_flag);
        let c = PredictConfig::from_env(&env(&[
            ("GATEHOUSE_SCREEN_MODEL_BLOCK", "0.995"),
            ("GATEHOUSE_GUARDRAIL_ID", "abc123"),
            ("GATEHOUSE_GUARDRAIL_SCOPE", "all"),
            ("GATEHOUSE_GUARDRAIL_FAIL_OPEN", "true"),
        ]))
        .unwrap();
        assert_eq!(c.screen.model_block_threshold, 0.995);
        let g = c.guardrail.unwrap();
        assert_eq!((g.id.as_str(), g.version.as_str()), ("abc123", "1"));
        assert_eq!(g.scope, GuardrailScope::All);
        assert!(g.fail_open);
        assert_eq!(g.timeout, Duration::from_millis(1500));
        for bad in [
            ("GATEHOUSE_SCREEN_MODEL_BLOCK", "1.5"),
            ("GATEHOUSE_SCREEN_RULE_BLOCK_MIN", "-0.1"),
            ("GATEHOUSE_SCREEN_FLAG", "0.95"),
        ] {
            assert!(PredictConfig::from_env(&env(&[bad])).is_err(), "{bad:?}");
        }
        for bad in [
            ("GATEHOUSE_GUARDRAIL_VERSION", "latest"),
            ("GATEHOUSE_GUARDRAIL_SCOPE", "some"),
            ("GATEHOUSE_GUARDRAIL_TIMEOUT_MS", "0"),
        ] {
            let vars = [("GATEHOUSE_GUARDRAIL_ID", "abc123"), bad];
            let e = env(&vars);
            assert!(PredictConfig::from_env(&e).is_err(), "{bad:?}");
        }
    }
}
