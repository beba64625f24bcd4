//! Creates the template's DynamoDB tables and Secrets Manager secrets in the emulator, with
//! exactly the key schema, attributes, indexes and TTL the template declares.
use anyhow::{Context, Result, anyhow};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};

use crate::template::{KeyElement, SecretInit, TableDef, Template};

fn key_schema(keys: &[KeyElement]) -> Result<Vec<KeySchemaElement>> {
    keys.iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(&k.name)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()
                .map_err(|e| anyhow!("key schema: {e}"))
        })
        .collect()
}

pub async fn create_table(client: &aws_sdk_dynamodb::Client, t: &TableDef) -> Result<()> {
    let mut req = client
        .create_table()
        .table_name(&t.logical_id)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(&t.keys)?));
    for (name, ty) in &t.attributes {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::from(ty.as_str()))
                .build()
                .map_err(|e| anyhow!("attribute definition: {e}"))?,
        );
    }
    for ix in &t.indexes {
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(&ix.name)
                .set_key_schema(Some(key_schema(&ix.keys)?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(ix.projection.as_str()))
                        .build(),
                )
                .build()
                .map_err(|e| anyhow!("index {}: {e}", ix.name))?,
        );
    }
    req.send()
        .await
        .with_context(|| format!("CreateTable {}", t.logical_id))?;
    if let Some(attr) = &t.ttl_attribute {
        client
            .update_time_to_live()
            .table_name(&t.logical_id)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(attr)
                    .enabled(true)
                    .build()
                    .map_err(|e| anyhow!("ttl: {e}"))?,
            )
            .send()
            .await
            .with_context(|| format!("UpdateTimeToLive {}", t.logical_id))?;
    }
    Ok(())
}

fn random_alnum(len: u32) -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; len as usize];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow!("no randomness"))?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect())
}

/// Creates every table and secret of the template. Returns nothing: locally each resource is
/// named by its logical id.
pub async fn bootstrap(sdk: &SdkConfig, template: &Template) -> Result<()> {
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    for t in template.tables() {
        create_table(&ddb, &t).await?;
    }
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    for s in template.secrets() {
        let value = match &s.init {
            SecretInit::Value(v) => v.clone(),
            SecretInit::Generate { length } => random_alnum(*length)?,
        };
        sm.create_secret()
            .name(&s.logical_id)
            .secret_string(value)
            .send()
            .await
            .with_context(|| format!("CreateSecret {}", s.logical_id))?;
    }
    Ok(())
}

/// Stores `value` as the new AWSCURRENT version (the old one becomes AWSPREVIOUS).
pub async fn put_secret(sdk: &SdkConfig, secret_id: &str, value: &str) -> Result<()> {
    aws_sdk_secretsmanager::Client::new(sdk)
        .put_secret_value()
        .secret_id(secret_id)
        .secret_string(value)
        .send()
        .await
        .with_context(|| format!("PutSecretValue {secret_id}"))?;
    Ok(())
}
