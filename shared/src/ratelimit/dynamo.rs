//! The DynamoDB counter: one conditional `UpdateItem` per hit.
//!
//! Idempotency: `ADD` is not idempotent, so an SDK retry after a timeout whose write DID land
//! would count one request twice. This client therefore never retries (`RetryConfig::disabled`)
//! and bounds the call with an operation timeout; any error or timeout is `RateError::Unavailable`
//! (503, fail closed). The only ambiguity left is a timeout after the write landed: the request
//! is then counted once and answered 503, never counted twice. We chose this over keeping recent
//! request ids in the item (`NOT contains(rids, :rid)`) because that list grows with the limit
//! (60 ids ≈ 2.4 KB ≈ 3 WRU per call instead of 1) and cannot be trimmed in the same update.
//!
//! On a failed condition, `ReturnValuesOnConditionCheckFailure = ALL_OLD` returns the item at no
//! read cost (moto 5.2.5 honours it for UpdateItem; verified by `tests/ratelimit.rs`). If a store
//! ever omits it, the outcome has no counts and the limiter reports "0 remaining", which the
//! failed condition proves anyway.
use std::collections::HashMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::{Hit, HitOutcome, RateCounter, RateError};

pub const COUNT_ATTR: &str = "count";
pub const TTL_ATTR: &str = "expires_at";

pub struct DynamoCounter {
    client: Client,
    table: String,
}

impl DynamoCounter {
    /// A client of its own: no retries (see the module doc) and a hard per-call timeout.
    pub fn new(sdk: &SdkConfig, table: impl Into<String>, timeout: Duration) -> Self {
        let conf = aws_sdk_dynamodb::config::Builder::from(sdk)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(timeout)
                    .operation_attempt_timeout(timeout)
                    .build(),
            )
            .build();
        Self {
            client: Client::from_conf(conf),
            table: table.into(),
        }
    }
}

fn number(item: &HashMap<String, AttributeValue>, attr: &str) -> Option<u32> {
    item.get(attr)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

#[async_trait::async_trait]
impl RateCounter for DynamoCounter {
    async fn hit(&self, hit: &Hit<'_>) -> Result<HitOutcome, RateError> {
        let mut update = "ADD #c :one".to_owned();
        let mut condition = "(attribute_not_exists(#c) OR #c < :limit)".to_owned();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(hit.key.to_owned()))
            .expression_attribute_names("#c", COUNT_ATTR)
            .expression_attribute_names("#exp", TTL_ATTR)
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":limit", AttributeValue::N(hit.limit.to_string()))
            .expression_attribute_values(":exp", AttributeValue::N(hit.expires_at.to_string()));
        if let Some((attr, limit)) = hit.sub {
            update.push_str(", #m :one");
            condition.push_str(" AND (attribute_not_exists(#m) OR #m < :mlimit)");
            req = req
                .expression_attribute_names("#m", attr)
                .expression_attribute_values(":mlimit", AttributeValue::N(limit.to_string()));
        }
        update.push_str(" SET #exp = :exp");
        let out = req
            .update_expression(update)
            .condition_expression(condition)
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let sub_attr = hit.sub.map(|(a, _)| a);
        match out {
            Ok(o) => {
                let attrs = o.attributes.unwrap_or_default();
                Ok(HitOutcome {
                    allowed: true,
                    count: number(&attrs, COUNT_ATTR),
                    sub_count: sub_attr.and_then(|a| number(&attrs, a)),
                })
            }
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => {
                    let item = c.item.clone().unwrap_or_default();
                    Ok(HitOutcome {
                        allowed: false,
                        count: number(&item, COUNT_ATTR),
                        sub_count: sub_attr.and_then(|a| number(&item, a)),
                    })
                }
                _ => Err(RateError::Unavailable(DisplayErrorContext(&e).to_string())),
            },
        }
    }
}
