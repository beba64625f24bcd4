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

/// Cheap to clone (the SDK client is shared): predict uses one for its request counter and one
/// for its token budgets.
#[derive(Clone)]
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

/// The token budgets and suspensions (`super::budget`) on the same table and client: no retries
/// here either (an `ADD` retried after a lost answer would count twice).
#[cfg(feature = "predict")]
mod ledger {
    use std::collections::HashMap;

    use aws_sdk_dynamodb::error::DisplayErrorContext;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
    use aws_sdk_dynamodb::types::{
        AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure,
    };

    use super::super::RateError;
    use super::super::budget::{LedgerStore, Reserve, ReserveOutcome, SUSPENDED_ATTR};
    use super::{DynamoCounter, TTL_ATTR};

    fn n(v: impl ToString) -> AttributeValue {
        AttributeValue::N(v.to_string())
    }

    fn int(item: &HashMap<String, AttributeValue>, attr: &str) -> Option<i64> {
        item.get(attr)
            .and_then(|v| v.as_n().ok())
            .and_then(|s| s.parse().ok())
    }

    fn unsigned(item: &HashMap<String, AttributeValue>, attr: &str) -> Option<u64> {
        int(item, attr).map(|v| u64::try_from(v).unwrap_or(0))
    }

    fn unavailable<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> RateError
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        RateError::Unavailable(DisplayErrorContext(e).to_string())
    }

    #[async_trait::async_trait]
    impl LedgerStore for DynamoCounter {
        async fn reserve(&self, r: &Reserve<'_>) -> Result<ReserveOutcome, RateError> {
            let amount = i64::try_from(r.amount).unwrap_or(i64::MAX);
            let mut adds = Vec::new();
            let mut conds = Vec::new();
            let mut req = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(r.key.to_owned()))
                .expression_attribute_names("#exp", TTL_ATTR)
                .expression_attribute_values(":n", n(amount))
                .expression_attribute_values(":exp", n(r.expires_at));
            for (i, c) in r.counters.iter().enumerate() {
                let name = format!("#c{i}");
                adds.push(format!("{name} :n"));
                req = req.expression_attribute_names(&name, &c.attr);
                if let Some(limit) = c.limit {
                    let room = i128::from(limit) - i128::from(r.amount);
                    let val = format!(":room{i}");
                    req = req.expression_attribute_values(&val, n(room));
                    // With no room at all the condition can never hold, item or not.
                    conds.push(if room >= 0 {
                        format!("(attribute_not_exists({name}) OR {name} <= {val})")
                    } else {
                        format!("{name} <= {val}")
                    });
                }
            }
            if let Some(now) = r.suspended_after {
                conds.push("(attribute_not_exists(#s) OR #s <= :now)".into());
                req = req
                    .expression_attribute_names("#s", SUSPENDED_ATTR)
                    .expression_attribute_values(":now", n(now));
            }
            req = req.update_expression(format!("ADD {} SET #exp = :exp", adds.join(", ")));
            if !conds.is_empty() {
                req = req.condition_expression(conds.join(" AND "));
            }
            let out = req
                .return_values(ReturnValue::UpdatedNew)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let values = |item: &HashMap<String, AttributeValue>| {
                r.counters
                    .iter()
                    .map(|c| unsigned(item, &c.attr))
                    .collect::<Vec<_>>()
            };
            match out {
                Ok(o) => {
                    let item = o.attributes.unwrap_or_default();
                    Ok(ReserveOutcome {
                        allowed: true,
                        values: values(&item),
                        suspended_until: None,
                    })
                }
                Err(e) => match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(c)) => {
                        let item = c.item.clone().unwrap_or_default();
                        Ok(ReserveOutcome {
                            allowed: false,
                            values: values(&item),
                            suspended_until: unsigned(&item, SUSPENDED_ATTR),
                        })
                    }
                    _ => Err(unavailable(&e)),
                },
            }
        }

        async fn add(
            &self,
            key: &str,
            attrs: &[&str],
            delta: i64,
            expires_at: u64,
        ) -> Result<Vec<Option<i64>>, RateError> {
            let mut req = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(key.to_owned()))
                .expression_attribute_names("#exp", TTL_ATTR)
                .expression_attribute_values(":d", n(delta))
                .expression_attribute_values(":exp", n(expires_at));
            let mut adds = Vec::new();
            for (i, a) in attrs.iter().enumerate() {
                let name = format!("#a{i}");
                adds.push(format!("{name} :d"));
                req = req.expression_attribute_names(&name, *a);
            }
            let out = req
                .update_expression(format!("ADD {} SET #exp = :exp", adds.join(", ")))
                .return_values(ReturnValue::UpdatedNew)
                .send()
                .await
                .map_err(|e| unavailable(&e))?;
            let item = out.attributes.unwrap_or_default();
            Ok(attrs.iter().map(|a| int(&item, a)).collect())
        }

        async fn suspend(
            &self,
            key: &str,
            until: u64,
            now: u64,
            expires_at: u64,
        ) -> Result<bool, RateError> {
            let out = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(key.to_owned()))
                .update_expression("SET #s = :until, #exp = if_not_exists(#exp, :exp)")
                .condition_expression("attribute_not_exists(#s) OR #s <= :now")
                .expression_attribute_names("#s", SUSPENDED_ATTR)
                .expression_attribute_names("#exp", TTL_ATTR)
                .expression_attribute_values(":until", n(until))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":exp", n(expires_at))
                .send()
                .await;
            match out {
                Ok(_) => Ok(true),
                Err(e) => match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(false),
                    _ => Err(unavailable(&e)),
                },
            }
        }

        async fn lift(&self, key: &str) -> Result<Option<u64>, RateError> {
            let out = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(key.to_owned()))
                .update_expression("REMOVE #s")
                // Never create an item just to remove an attribute from it.
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_names("#s", SUSPENDED_ATTR)
                .return_values(ReturnValue::UpdatedOld)
                .send()
                .await;
            match out {
                Ok(o) => Ok(unsigned(&o.attributes.unwrap_or_default(), SUSPENDED_ATTR)),
                Err(e) => match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(None),
                    _ => Err(unavailable(&e)),
                },
            }
        }

        async fn read(&self, key: &str) -> Result<HashMap<String, i64>, RateError> {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(key.to_owned()))
                .send()
                .await
                .map_err(|e| unavailable(&e))?;
            Ok(out
                .item
                .unwrap_or_default()
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_n().ok()?.parse().ok()?)))
                .collect())
        }
    }
}
