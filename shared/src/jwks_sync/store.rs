//! The Secrets Manager adapter of `JwksStore`: GetSecretValue (AWSCURRENT) and PutSecretValue,
//! the only two calls the function's role allows, on the JWKS secret only.
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use secrecy::SecretString;

use super::{JwksStore, StoreError, StoredJwks};
use crate::secrets::AWSCURRENT;

pub struct SecretsManagerStore {
    client: Client,
    secret_id: String,
}

impl SecretsManagerStore {
    pub fn new(client: Client, secret_id: impl Into<String>) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
        }
    }
}

#[async_trait::async_trait]
impl JwksStore for SecretsManagerStore {
    async fn current(&self) -> Result<StoredJwks, StoreError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_stage(AWSCURRENT)
            .send()
            .await
            .map_err(|e| StoreError(DisplayErrorContext(&e).to_string()))?;
        let document = out
            .secret_string
            .map(SecretString::from)
            .ok_or_else(|| StoreError(format!("secret {} has no SecretString", self.secret_id)))?;
        let version_id = out
            .version_id
            .ok_or_else(|| StoreError(format!("secret {} has no version id", self.secret_id)))?;
        Ok(StoredJwks {
            version_id,
            document,
        })
    }

    async fn put(&self, document: &str, request_token: &str) -> Result<String, StoreError> {
        let out = self
            .client
            .put_secret_value()
            .secret_id(&self.secret_id)
            .secret_string(document)
            .client_request_token(request_token)
            .send()
            .await
            .map_err(|e| StoreError(DisplayErrorContext(&e).to_string()))?;
        out.version_id
            .ok_or_else(|| StoreError("PutSecretValue returned no version id".into()))
    }
}
