//! Secrets Manager adapter. Secrets are fetched at cold start (and on key refresh), held in
//! `secrecy` wrappers and never logged.
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use secrecy::SecretString;

#[cfg(feature = "audit-core")]
use crate::audit::AuditKey;
#[cfg(feature = "auth")]
use crate::auth::{JwksSource, JwksVersions, SourceError};
#[cfg(feature = "audit-core")]
use secrecy::ExposeSecret;

pub const AWSCURRENT: &str = "AWSCURRENT";
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {0} has no version staged {1}")]
    NoSuchStage(String, &'static str),
    #[error("secret {0} has no SecretString")]
    NotAString(String),
    #[error("Secrets Manager call failed: {0}")]
    Service(String),
    #[cfg(feature = "audit-core")]
    #[error("secret {0}: {1}")]
    WeakKey(String, crate::audit::record::KeyTooShort),
}

/// Reads one staged version of a secret. `Ok(None)` when no version carries that stage
/// (a fresh secret has no AWSPREVIOUS).
pub async fn get_staged(
    client: &Client,
    secret_id: &str,
    stage: &'static str,
) -> Result<Option<SecretString>, SecretError> {
    // VersionStage is always explicit: moto may answer an unstaged read with the old version after
    // a stage move, and being explicit is what we mean anyway.
    let out = client
        .get_secret_value()
        .secret_id(secret_id)
        .version_stage(stage)
        .send()
        .await;
    match out {
        Ok(o) => match o.secret_string {
            Some(s) => Ok(Some(SecretString::from(s))),
            None => Err(SecretError::NotAString(secret_id.to_owned())),
        },
        Err(e) => match e.as_service_error() {
            Some(GetSecretValueError::ResourceNotFoundException(_)) if stage != AWSCURRENT => {
                Ok(None)
            }
            Some(GetSecretValueError::ResourceNotFoundException(_)) => {
                Err(SecretError::NoSuchStage(secret_id.to_owned(), stage))
            }
            // Display of an SdkError carries no secret material, only the error code and message.
            _ => Err(SecretError::Service(
                aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
            )),
        },
    }
}

/// The JWKS secret: AWSCURRENT and, when present, AWSPREVIOUS, so tokens signed just before a
/// rotation keep verifying.
#[cfg(feature = "auth")]
pub struct SecretsManagerJwks {
    client: Client,
    secret_id: String,
}

#[cfg(feature = "auth")]
impl SecretsManagerJwks {
    pub fn new(client: Client, secret_id: impl Into<String>) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
        }
    }
}

#[cfg(feature = "auth")]
#[async_trait::async_trait]
impl JwksSource for SecretsManagerJwks {
    async fn fetch(&self) -> Result<JwksVersions, SourceError> {
        let (current, previous) = tokio::join!(
            get_staged(&self.client, &self.secret_id, AWSCURRENT),
            get_staged(&self.client, &self.secret_id, AWSPREVIOUS)
        );
        let current = current
            .map_err(|e| SourceError::new(e.to_string()))?
            .ok_or_else(|| {
                SourceError::new(format!("secret {} has no AWSCURRENT", self.secret_id))
            })?;
        let previous = previous.map_err(|e| SourceError::new(e.to_string()))?;
        Ok(JwksVersions { current, previous })
    }
}

/// The audit-chain HMAC key (AWSCURRENT), read once at cold start. The secret text lives only
/// inside this call; the returned key does not expose its bytes. A key under 32 bytes is an
/// error (`WeakKey`): the function refuses to start rather than seal with a guessable key.
#[cfg(feature = "audit-core")]
pub async fn audit_key(client: &Client, secret_id: &str) -> Result<AuditKey, SecretError> {
    let secret = get_staged(client, secret_id, AWSCURRENT)
        .await?
        .ok_or_else(|| SecretError::NoSuchStage(secret_id.to_owned(), AWSCURRENT))?;
    AuditKey::new(secret.expose_secret().as_bytes())
        .map_err(|e| SecretError::WeakKey(secret_id.to_owned(), e))
}

/// Every key version that may have signed records (AWSCURRENT and AWSPREVIOUS): the verifier's.
/// A too-short AWSPREVIOUS is an error too: records sealed with it prove nothing.
#[cfg(feature = "audit-core")]
pub async fn audit_keys(client: &Client, secret_id: &str) -> Result<Vec<AuditKey>, SecretError> {
    let mut keys = vec![audit_key(client, secret_id).await?];
    if let Some(prev) = get_staged(client, secret_id, AWSPREVIOUS).await? {
        keys.push(
            AuditKey::new(prev.expose_secret().as_bytes())
                .map_err(|e| SecretError::WeakKey(format!("{secret_id} (AWSPREVIOUS)"), e))?,
        );
    }
    Ok(keys)
}
