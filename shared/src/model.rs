//! Model backends behind one trait: the deterministic local echo model here, Amazon Bedrock in
//! `crate::bedrock`. `crate::setup` builds the one the configuration names.
use crate::api::Usage;

#[derive(Debug, Clone)]
pub struct ModelRequest<'a> {
    pub model: &'a str,
    pub prompt: &'a str,
    pub temperature: f64,
    pub max_tokens: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelOutput {
    pub text: String,
    pub usage: Usage,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("backend error: {0}")]
    Backend(String),
    #[error("backend timed out")]
    Timeout,
}

#[async_trait::async_trait]
pub trait ModelBackend: Send + Sync {
    /// Whether this backend can run `model` (a model id of the policy). predict refuses other
    /// models before any quota is spent, and cold start refuses a default model it cannot run.
    fn serves(&self, model: &str) -> bool;
    /// Runs one prompt. The output must stay within `max_tokens` tokens: token budgets reserve
    /// on that bound.
    async fn complete(&self, req: &ModelRequest<'_>) -> Result<ModelOutput, ModelError>;
}

/// Rough token count (4 bytes a token), for usage figures of backends that give none.
pub fn approx_tokens(text: &str) -> u32 {
    u32::try_from(text.len().div_ceil(4)).unwrap_or(u32::MAX)
}

/// The local default: answers with the prompt, labelled, cut so that its token count
/// (`approx_tokens`) stays within `max_tokens`. Deterministic. It serves every model id, so the
/// whole policy can be exercised locally.
pub struct EchoModel;

pub const ECHO_LABEL: &str = "[gatehouse local echo model]";

#[async_trait::async_trait]
impl ModelBackend for EchoModel {
    fn serves(&self, _model: &str) -> bool {
        true
    }

    async fn complete(&self, req: &ModelRequest<'_>) -> Result<ModelOutput, ModelError> {
        let budget = usize::try_from(req.max_tokens)
            .unwrap_or(usize::MAX)
            .saturating_mul(4);
        let full = format!("{ECHO_LABEL} {}", req.prompt);
        let text = crate::text::cap(&full, budget).0.to_owned();
        Ok(ModelOutput {
            usage: Usage {
                input_tokens: approx_tokens(req.prompt),
                output_tokens: approx_tokens(&text),
            },
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn echo_output_stays_within_max_tokens() {
        for max_tokens in [1u32, 3, 8, 512] {
            let out = EchoModel
                .complete(&ModelRequest {
                    model: "echo",
                    prompt: "héllo wörld, a prompt of some length ✓",
                    temperature: 1.0,
                    max_tokens,
                })
                .await
                .unwrap();
            assert!(
                out.usage.output_tokens <= max_tokens,
                "{max_tokens}: {out:?}"
            );
        }
    }
}
