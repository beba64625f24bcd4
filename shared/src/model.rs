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
    async fn complete(&self, req: &ModelRequest<'_>) -> Result<ModelOutput, ModelError>;
}

/// Rough token count (4 bytes a token), for usage figures of backends that give none.
pub fn approx_tokens(text: &str) -> u32 {
    u32::try_from(text.len().div_ceil(4)).unwrap_or(u32::MAX)
}

/// The local default: answers with the prompt, labelled, truncated to `max_tokens`. Deterministic.
pub struct EchoModel;

pub const ECHO_LABEL: &str = "[gatehouse local echo model]";

#[async_trait::async_trait]
impl ModelBackend for EchoModel {
    async fn complete(&self, req: &ModelRequest<'_>) -> Result<ModelOutput, ModelError> {
        let budget = usize::try_from(req.max_tokens)
            .unwrap_or(usize::MAX)
            .saturating_mul(4);
        let echoed: String = req.prompt.chars().take(budget).collect();
        let text = format!("{ECHO_LABEL} {echoed}");
        Ok(ModelOutput {
            usage: Usage {
                input_tokens: approx_tokens(req.prompt),
                output_tokens: approx_tokens(&text),
            },
            text,
        })
    }
}
