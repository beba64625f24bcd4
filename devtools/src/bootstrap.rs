//! Creates the template's DynamoDB tables (and the audit stream), S3 buckets, KMS key and Secrets Manager secrets in the emulator, with
//! exactly the key schema, attributes, indexes and TTL the template declares.
use anyhow::{Context, Result, anyhow};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};

use crate::template::{BucketDef, KeyElement, KmsKeyDef, SecretInit, TableDef, Template};

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
    if let Some(view) = &t.stream_view_type {
        req = req.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(view.as_str()))
                .build()
                .map_err(|e| anyhow!("stream: {e}"))?,
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

/// Creates a bucket as the template declares it: versioning, Object Lock and its default
/// retention (which the emulator enforces: a locked version cannot be deleted).
pub async fn create_bucket(s3: &aws_sdk_s3::Client, b: &BucketDef) -> Result<()> {
    use aws_sdk_s3::types::{
        BucketVersioningStatus, DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled,
        ObjectLockRetentionMode, ObjectLockRule, VersioningConfiguration,
    };
    s3.create_bucket()
        .bucket(&b.name)
        .object_lock_enabled_for_bucket(b.object_lock.is_some())
        .send()
        .await
        .with_context(|| format!("CreateBucket {}", b.name))?;
    if b.versioned && b.object_lock.is_none() {
        s3.put_bucket_versioning()
            .bucket(&b.name)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .with_context(|| format!("PutBucketVersioning {}", b.name))?;
    }
    if let Some((mode, days)) = &b.object_lock {
        let rule = ObjectLockRule::builder()
            .default_retention(
                DefaultRetention::builder()
                    .mode(ObjectLockRetentionMode::from(mode.as_str()))
                    .days(i32::try_from(*days).unwrap_or(i32::MAX))
                    .build(),
            )
            .build();
        s3.put_object_lock_configuration()
            .bucket(&b.name)
            .object_lock_configuration(
                ObjectLockConfiguration::builder()
                    .object_lock_enabled(ObjectLockEnabled::Enabled)
                    .rule(rule)
                    .build(),
            )
            .send()
            .await
            .with_context(|| format!("PutObjectLockConfiguration {}", b.name))?;
    }
    Ok(())
}

/// Creates a KMS key with the template's spec and usage, under its local alias.
pub async fn create_kms_key(kms: &aws_sdk_kms::Client, k: &KmsKeyDef) -> Result<()> {
    use aws_sdk_kms::types::{KeySpec, KeyUsageType};
    let key = kms
        .create_key()
        .key_spec(KeySpec::from(k.key_spec.as_str()))
        .key_usage(KeyUsageType::from(k.key_usage.as_str()))
        .description(format!("local stand-in for {}", k.logical_id))
        .send()
        .await
        .with_context(|| format!("CreateKey {}", k.logical_id))?;
    let id = key
        .key_metadata()
        .map(|m| m.key_id().to_owned())
        .context("CreateKey returned no key id")?;
    kms.create_alias()
        .alias_name(&k.alias)
        .target_key_id(id)
        .send()
        .await
        .with_context(|| format!("CreateAlias {}", k.alias))?;
    Ok(())
}

/// Creates every table, bucket, KMS key and secret of the template. Returns nothing: locally each
/// resource is named by its logical id (see `template`).
pub async fn bootstrap(sdk: &SdkConfig, template: &Template) -> Result<()> {
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    for t in template.tables() {
        create_table(&ddb, &t).await?;
    }
    let s3 = gatehouse::audit::anchor_aws::s3_client(sdk);
    for b in template.buckets()? {
        create_bucket(&s3, &b).await?;
    }
    let kms = aws_sdk_kms::Client::new(sdk);
    for k in template.kms_keys() {
        create_kms_key(&kms, &k).await?;
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
