//! DynamoDB adapter of the audit log: conditional `PutItem` (`attribute_not_exists`; the writer's
//! only action on the table), and the reads the dev tools use (scan for verification, GSI queries
//! by principal and by decision).
//!
//! Audit writes keep the SDK's retries: `attribute_not_exists` makes a retried put harmless,
//! and the failed condition returns the stored item (`ALL_OLD`), whose HMAC tells our own landed
//! attempt from a collision.
use std::collections::HashMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::DisplayErrorContext;
#[cfg(feature = "audit")]
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
#[cfg(feature = "audit")]
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;

#[cfg(feature = "audit")]
use super::record::HMAC_ATTR;
use super::record::{Field, Fields};
#[cfg(feature = "audit")]
use super::{AuditSink, SinkError};

pub const INDEX_BY_PRINCIPAL: &str = "by_principal";
pub const INDEX_BY_DECISION: &str = "by_decision";

#[cfg(feature = "audit")]
pub struct DynamoAuditSink {
    client: Client,
    table: String,
}

/// A client whose every call is bounded by `timeout` (retries included).
pub fn client_with_timeout(sdk: &SdkConfig, timeout: Duration) -> Client {
    let conf = aws_sdk_dynamodb::config::Builder::from(sdk)
        .timeout_config(TimeoutConfig::builder().operation_timeout(timeout).build())
        .build();
    Client::from_conf(conf)
}

#[cfg(feature = "audit")]
impl DynamoAuditSink {
    pub fn new(sdk: &SdkConfig, table: impl Into<String>, timeout: Duration) -> Self {
        Self {
            client: client_with_timeout(sdk, timeout),
            table: table.into(),
        }
    }
}

pub fn to_item(fields: &Fields) -> HashMap<String, AttributeValue> {
    fields
        .iter()
        .map(|(k, v)| {
            let av = match v {
                Field::S(s) => AttributeValue::S(s.clone()),
                Field::N(n) => AttributeValue::N(n.to_string()),
                Field::L(l) => {
                    AttributeValue::L(l.iter().cloned().map(AttributeValue::S).collect())
                }
            };
            (k.to_string(), av)
        })
        .collect()
}

/// The inverse of `to_item`. An attribute of another type, or a number that is not a plain
/// non-negative integer, is kept as a marker string so the HMAC check fails on it (tampering)
/// rather than silently dropping it.
pub fn from_item(item: &HashMap<String, AttributeValue>) -> Fields {
    item.iter()
        .map(|(k, v)| {
            let f = match v {
                AttributeValue::S(s) => Field::S(s.clone()),
                AttributeValue::N(n) => match n.parse::<u64>() {
                    Ok(x) if x.to_string() == *n => Field::N(x),
                    _ => Field::S(format!("\u{0}N:{n}")),
                },
                AttributeValue::L(l) => Field::L(
                    l.iter()
                        .map(|e| match e {
                            AttributeValue::S(s) => s.clone(),
                            other => format!("\u{0}{other:?}"),
                        })
                        .collect(),
                ),
                other => Field::S(format!("\u{0}{other:?}")),
            };
            (k.clone().into(), f)
        })
        .collect()
}

#[cfg(feature = "audit")]
#[async_trait::async_trait]
impl AuditSink for DynamoAuditSink {
    async fn put(&self, fields: &Fields) -> Result<(), SinkError> {
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(fields)))
            .condition_expression("attribute_not_exists(#seg)")
            .expression_attribute_names("#seg", "segment")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => Err(SinkError::Exists {
                    existing_hmac: c
                        .item
                        .as_ref()
                        .and_then(|i| i.get(HMAC_ATTR))
                        .and_then(|v| v.as_s().ok())
                        .cloned(),
                }),
                _ => Err(SinkError::Unavailable(DisplayErrorContext(&e).to_string())),
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("audit table read failed: {0}")]
pub struct ReadError(pub String);

/// Every record of the table (paginated scan): what the verifier needs. Reads the whole table.
pub async fn scan_all(client: &Client, table: &str) -> Result<Vec<Fields>, ReadError> {
    let items = client
        .scan()
        .table_name(table)
        .consistent_read(true)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| ReadError(DisplayErrorContext(&e).to_string()))?;
    Ok(items.iter().map(from_item).collect())
}

/// Records of one index partition with `ts_rid` in [since_ms, until_ms], oldest first.
pub async fn query_range(
    client: &Client,
    table: &str,
    index: &str,
    partition_attr: &str,
    partition: &str,
    since_ms: u64,
    until_ms: u64,
) -> Result<Vec<Fields>, ReadError> {
    let items = client
        .query()
        .table_name(table)
        .index_name(index)
        .key_condition_expression("#p = :p AND #t BETWEEN :lo AND :hi")
        .expression_attribute_names("#p", partition_attr)
        .expression_attribute_names("#t", "ts_rid")
        .expression_attribute_values(":p", AttributeValue::S(partition.to_owned()))
        .expression_attribute_values(":lo", AttributeValue::S(format!("{since_ms:013}")))
        // '~' sorts after '#' and every request-id character.
        .expression_attribute_values(":hi", AttributeValue::S(format!("{until_ms:013}~")))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| ReadError(DisplayErrorContext(&e).to_string()))?;
    Ok(items.iter().map(from_item).collect())
}

/// Records of `principal` in the time range (one query on `by_principal`).
pub async fn by_principal(
    client: &Client,
    table: &str,
    principal: &str,
    since_ms: u64,
    until_ms: u64,
) -> Result<Vec<Fields>, ReadError> {
    query_range(
        client,
        table,
        INDEX_BY_PRINCIPAL,
        "principal",
        principal,
        since_ms,
        until_ms,
    )
    .await
}

/// Records of `decision` in the time range: one query per (UTC day, shard), merged by time.
pub async fn by_decision(
    client: &Client,
    table: &str,
    decision: &str,
    shards: u32,
    since_ms: u64,
    until_ms: u64,
) -> Result<Vec<Fields>, ReadError> {
    let mut out = Vec::new();
    let (first, last) = (since_ms / 86_400_000, until_ms / 86_400_000);
    for day in first..=last {
        let day = super::record::day_of(day * 86_400_000);
        for shard in 0..shards.max(1) {
            let key = super::decision_day_key(decision, &day, shard);
            out.extend(
                query_range(
                    client,
                    table,
                    INDEX_BY_DECISION,
                    "decision_day",
                    &key,
                    since_ms,
                    until_ms,
                )
                .await?,
            );
        }
    }
    let ts = |f: &Fields| match f.get("ts_rid") {
        Some(Field::S(t)) => t.clone(),
        _ => String::new(),
    };
    out.sort_by_key(ts);
    Ok(out)
}

/// A record as one JSON object (for JSON-lines output). Numbers are JSON numbers, `screen_score`
/// included (stored as text so DynamoDB cannot renormalise it, see `record`).
pub fn to_json(fields: &Fields) -> serde_json::Value {
    let map = fields
        .iter()
        .map(|(k, v)| {
            let j = match v {
                Field::S(s) if k == "screen_score" => s
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or_else(
                        || serde_json::Value::String(s.clone()),
                        serde_json::Value::Number,
                    ),
                Field::S(s) => serde_json::Value::String(s.clone()),
                Field::N(n) => serde_json::Value::from(*n),
                Field::L(l) => serde_json::Value::from(l.clone()),
            };
            (k.to_string(), j)
        })
        .collect();
    serde_json::Value::Object(map)
}
