//! Amazon Bedrock adapter (the Converse API) behind `ModelBackend`.
//!
//! Our model ids (the policy's vocabulary, e.g. `claude-haiku`) map to Bedrock model ids or
//! inference-profile ARNs through `GATEHOUSE_BEDROCK_MODELS`
//! (`claude-haiku=anthropic.claude-3-haiku-20240307-v1:0,claude-sonnet=…`), parsed at cold start
//! by `crate::config::parse_model_map`.
use std::collections::HashMap;

use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::error::SdkError;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseOutput, InferenceConfiguration, Message,
};

use crate::api::Usage;
use crate::model::{ModelBackend, ModelError, ModelOutput, ModelRequest};

pub struct BedrockModel {
    client: Client,
    models: HashMap<String, String>,
}

impl BedrockModel {
    pub fn new(client: Client, models: HashMap<String, String>) -> Self {
        Self { client, models }
    }
}

fn tokens(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

#[async_trait::async_trait]
impl ModelBackend for BedrockModel {
    async fn complete(&self, req: &ModelRequest<'_>) -> Result<ModelOutput, ModelError> {
        let model_id = self.models.get(req.model).ok_or_else(|| {
            ModelError::Backend(format!("no Bedrock model configured for {:?}", req.model))
        })?;
        let message = Message::builder()
            .role(ConversationRole::User)
            .content(ContentBlock::Text(req.prompt.to_owned()))
            .build()
            .map_err(|e| ModelError::Backend(e.to_string()))?;
        let config = InferenceConfiguration::builder()
            .max_tokens(i32::try_from(req.max_tokens).unwrap_or(i32::MAX))
            .temperature(req.temperature as f32)
            .build();
        let out = self
            .client
            .converse()
            .model_id(model_id)
            .messages(message)
            .inference_config(config)
            .send()
            .await
            .map_err(|e| match e {
                SdkError::TimeoutError(_) => ModelError::Timeout,
                other => ModelError::Backend(
                    aws_sdk_bedrockruntime::error::DisplayErrorContext(&other).to_string(),
                ),
            })?;
        let text = match out.output() {
            Some(ConverseOutput::Message(m)) => m
                .content()
                .iter()
                .filter_map(|b| b.as_text().ok())
                .cloned()
                .collect::<Vec<_>>()
                .join(""),
            _ => return Err(ModelError::Backend("Converse returned no message".into())),
        };
        let usage = out.usage().map_or(
            Usage {
                input_tokens: 0,
                output_tokens: 0,
            },
            |u| Usage {
                input_tokens: tokens(u.input_tokens()),
                output_tokens: tokens(u.output_tokens()),
            },
        );
        Ok(ModelOutput { text, usage })
    }
}

/// Amazon Bedrock Guardrails (`ApplyGuardrail`, source `INPUT`) as the screen's second
/// opinion. The guardrail (id + version, template parameters) should have a prompt-attack
/// filter; any policy that intervenes counts as a block. IAM: `bedrock:ApplyGuardrail` on that
/// guardrail's ARN only (infra/template.yaml).
pub struct BedrockGuardrail {
    client: Client,
    id: String,
    version: String,
}

impl BedrockGuardrail {
    pub fn new(client: Client, id: String, version: String) -> Self {
        Self {
            client,
            id,
            version,
        }
    }
}

#[async_trait::async_trait]
impl crate::guardrail::Guardrail for BedrockGuardrail {
    async fn assess(
        &self,
        prompt: &str,
    ) -> Result<crate::guardrail::GuardrailVerdict, crate::guardrail::GuardrailError> {
        use crate::guardrail::{GuardrailError, GuardrailVerdict};
        use aws_sdk_bedrockruntime::types::{
            GuardrailAction, GuardrailContentBlock, GuardrailContentSource, GuardrailTextBlock,
        };
        let text = GuardrailTextBlock::builder()
            .text(prompt)
            .build()
            .map_err(|e| GuardrailError::Backend(e.to_string()))?;
        let out = self
            .client
            .apply_guardrail()
            .guardrail_identifier(&self.id)
            .guardrail_version(&self.version)
            .source(GuardrailContentSource::Input)
            .content(GuardrailContentBlock::Text(text))
            .send()
            .await
            .map_err(|e| match e {
                SdkError::TimeoutError(_) => GuardrailError::Timeout,
                other => GuardrailError::Backend(
                    aws_sdk_bedrockruntime::error::DisplayErrorContext(&other).to_string(),
                ),
            })?;
        match out.action() {
            GuardrailAction::GuardrailIntervened => Ok(GuardrailVerdict::Intervened),
            GuardrailAction::None => Ok(GuardrailVerdict::Pass),
            // An action this SDK does not know: treat as an intervention (fail closed).
            _ => Ok(GuardrailVerdict::Intervened),
        }
    }
}
