//! Optional second opinion on prompts: a managed guardrail (Amazon Bedrock Guardrails'
//! ApplyGuardrail with a prompt-attack filter; adapter in `crate::bedrock`) asked about the
//! prompts the fast screen is unsure of (its flag band) or about every prompt, with a timeout.
//!
//! Its verdict and latency go into the screen result of the audit record and the log
//! (`guardrail_verdict`, `guardrail_latency_ms`). An intervention blocks (a `flag-only` screen
//! mode turns it into a flag). Whether an error or a timeout lets the prompt through (fail open)
//! or refuses it with 503 (fail closed, the default) is configuration.
use std::time::{Duration, Instant};

use crate::config::{GuardrailConfig, GuardrailScope};
use crate::screen::Verdict;

/// What the guardrail said about one prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardrailVerdict {
    /// No policy matched (ApplyGuardrail `action` = `NONE`).
    Pass,
    /// A policy matched (`GUARDRAIL_INTERVENED`).
    Intervened,
}

#[derive(Debug, thiserror::Error)]
pub enum GuardrailError {
    #[error("guardrail timed out")]
    Timeout,
    #[error("guardrail: {0}")]
    Backend(String),
}

/// A managed content guardrail. One real adapter (`crate::bedrock::BedrockGuardrail`).
#[async_trait::async_trait]
pub trait Guardrail: Send + Sync {
    async fn assess(&self, prompt: &str) -> Result<GuardrailVerdict, GuardrailError>;
}

/// The guardrail and how predict uses it.
pub struct SecondOpinion {
    pub guardrail: Box<dyn Guardrail>,
    pub config: GuardrailConfig,
}

/// The outcome of asking (or not asking) the guardrail, for the screen's audit fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opinion {
    /// `pass`, `intervened`, `timeout` or `error`.
    pub verdict: &'static str,
    pub latency_ms: u64,
    /// The prompt must be refused: an intervention, or an error under fail-closed.
    pub block: bool,
    /// The guardrail could not answer and the configuration fails closed (answer 503).
    pub unavailable: bool,
}

impl SecondOpinion {
    /// Whether the guardrail is asked about a prompt the fast screen judged `verdict`.
    pub fn applies_to(&self, verdict: Verdict) -> bool {
        match self.config.scope {
            GuardrailScope::All => true,
            GuardrailScope::FlagBand => verdict == Verdict::Flag,
        }
    }

    pub async fn ask(&self, prompt: &str) -> Opinion {
        let started = Instant::now();
        let answer = tokio::time::timeout(self.config.timeout, self.guardrail.assess(prompt)).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let failed = |verdict| Opinion {
            verdict,
            latency_ms,
            block: false,
            unavailable: !self.config.fail_open,
        };
        match answer {
            Ok(Ok(GuardrailVerdict::Pass)) => Opinion {
                verdict: "pass",
                latency_ms,
                block: false,
                unavailable: false,
            },
            Ok(Ok(GuardrailVerdict::Intervened)) => Opinion {
                verdict: "intervened",
                latency_ms,
                block: true,
                unavailable: false,
            },
            Err(_) | Ok(Err(GuardrailError::Timeout)) => failed("timeout"),
            Ok(Err(GuardrailError::Backend(e))) => {
                tracing::warn!(error = %e, "guardrail call failed");
                failed("error")
            }
        }
    }
}

/// A guardrail with fixed answers, for tests of the pipeline.
pub struct FakeGuardrail {
    pub answer: fn(&str) -> Result<GuardrailVerdict, GuardrailError>,
    pub delay: Duration,
}

#[async_trait::async_trait]
impl Guardrail for FakeGuardrail {
    async fn assess(&self, prompt: &str) -> Result<GuardrailVerdict, GuardrailError> {
        tokio::time::sleep(self.delay).await;
        (self.answer)(prompt)
    }
}
