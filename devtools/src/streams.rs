//! A local stand-in for Lambda's DynamoDB stream event source mapping (the dev stack's part, as
//! the gateway plays API Gateway's): it reads the table's stream from the emulator
//! (`DescribeStream`, `GetShardIterator`, `GetRecords`), gathers records into batches of at most
//! `batch_size` or until `batching_window` has passed since the first one, and delivers each
//! batch as the Lambda DynamoDB event (`{"Records": [...]}`, images in DynamoDB JSON,
//! `ApproximateCreationDateTime` in epoch seconds, `eventSourceARN`, `userIdentity` when set).
//!
//! Like the real mapping with `MaximumRetryAttempts: -1`: a batch whose delivery fails (a
//! function error, or the function unreachable) is delivered again, the same records in the same
//! order, until it succeeds; only then does the shard's position move past it. Shards are read
//! parents first. The position lives in memory: a restarted poller starts again at the trim
//! horizon, which the sentinel tolerates (a record it has anchored is recognised, not re-done).
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use aws_config::SdkConfig;
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use base64::Engine;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

/// Where batches go: the function under `cargo lambda watch`, or a closure in tests.
#[async_trait::async_trait]
pub trait Deliver: Send + Sync {
    async fn deliver(&self, event: &Value) -> Result<()>;
}

/// Delivery through the Lambda invoke API (what the dev stack uses).
pub struct InvokeApi {
    pub client: reqwest::Client,
    pub invoke_url: String,
    pub function: String,
}

#[async_trait::async_trait]
impl Deliver for InvokeApi {
    async fn deliver(&self, event: &Value) -> Result<()> {
        crate::gateway::invoke_function(&self.client, &self.invoke_url, &self.function, event)
            .await
            .map(|_| ())
    }
}

#[derive(Debug, Clone)]
pub struct PollerConfig {
    pub table: String,
    pub batch_size: usize,
    pub batching_window: Duration,
    /// Pause between reads of an idle shard, and before redelivering a failed batch.
    pub poll_interval: Duration,
}

/// Counters the tests (and the dev stack's log) read.
#[derive(Debug, Default)]
pub struct PollerStats {
    pub batches: AtomicU64,
    pub records: AtomicU64,
    pub failures: AtomicU64,
}

pub struct PollerHandle {
    pub stats: Arc<PollerStats>,
    task: tokio::task::JoinHandle<()>,
}

impl PollerHandle {
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for PollerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// DynamoDB JSON of a stream attribute value (the form Lambda events carry).
pub fn attribute_json(v: &AttributeValue) -> Value {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    match v {
        AttributeValue::S(s) => json!({"S": s}),
        AttributeValue::N(n) => json!({"N": n}),
        AttributeValue::B(b) => json!({"B": b64(b.as_ref())}),
        AttributeValue::Bool(b) => json!({"BOOL": b}),
        AttributeValue::Null(n) => json!({"NULL": n}),
        AttributeValue::Ss(v) => json!({"SS": v}),
        AttributeValue::Ns(v) => json!({"NS": v}),
        AttributeValue::Bs(v) => {
            json!({"BS": v.iter().map(|b| b64(b.as_ref())).collect::<Vec<_>>()})
        }
        AttributeValue::L(items) => {
            json!({"L": items.iter().map(attribute_json).collect::<Vec<_>>()})
        }
        AttributeValue::M(m) => json!({"M": item_json(m)}),
        _ => json!({"NULL": true}),
    }
}

fn item_json(item: &HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), attribute_json(v)))
            .collect::<Map<String, Value>>(),
    )
}

/// One stream record as a Lambda DynamoDB event record.
pub fn event_record(r: &Record, stream_arn: &str) -> Value {
    let mut out = json!({
        "eventID": r.event_id(),
        "eventName": r.event_name().map(|n| n.as_str()),
        "eventVersion": r.event_version().unwrap_or("1.1"),
        "eventSource": r.event_source().unwrap_or("aws:dynamodb"),
        "awsRegion": r.aws_region().unwrap_or(crate::emulator::REGION),
        "eventSourceARN": stream_arn,
    });
    if let Some(d) = r.dynamodb() {
        let mut dynamodb = json!({
            "SequenceNumber": d.sequence_number(),
            "SizeBytes": d.size_bytes(),
            "StreamViewType": d.stream_view_type().map(|v| v.as_str()),
        });
        if let Some(t) = d.approximate_creation_date_time() {
            dynamodb["ApproximateCreationDateTime"] = json!(t.secs() as f64);
        }
        for (name, item) in [
            ("Keys", d.keys()),
            ("NewImage", d.new_image()),
            ("OldImage", d.old_image()),
        ] {
            if let Some(item) = item {
                dynamodb[name] = item_json(item);
            }
        }
        out["dynamodb"] = dynamodb;
    }
    if let Some(u) = r.user_identity() {
        out["userIdentity"] = json!({"type": u.r#type(), "principalId": u.principal_id()});
    }
    out
}

struct Shard {
    id: String,
    parent: Option<String>,
    iterator: Option<String>,
    /// Last sequence number delivered (the position a new iterator resumes after).
    position: Option<String>,
    pending: Vec<Record>,
    first_pending_at: Option<Instant>,
    closed: bool,
}

/// Starts polling `config.table`'s stream in a background task.
pub async fn start(
    sdk: &SdkConfig,
    config: PollerConfig,
    deliver: Arc<dyn Deliver>,
) -> Result<PollerHandle> {
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let stream_arn = ddb
        .describe_table()
        .table_name(&config.table)
        .send()
        .await
        .with_context(|| format!("DescribeTable {}", config.table))?
        .table()
        .and_then(|t| t.latest_stream_arn())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("table {} has no stream", config.table))?;
    let streams = aws_sdk_dynamodbstreams::Client::new(sdk);
    let stats = Arc::new(PollerStats::default());
    let task_stats = stats.clone();
    let task = tokio::spawn(async move {
        let mut shards: Vec<Shard> = Vec::new();
        loop {
            if let Err(e) = poll_once(
                &streams,
                &stream_arn,
                &config,
                &mut shards,
                deliver.as_ref(),
                &task_stats,
            )
            .await
            {
                task_stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %format!("{e:#}"), "stream poller: will retry");
            }
            tokio::time::sleep(config.poll_interval).await;
        }
    });
    Ok(PollerHandle { stats, task })
}

async fn poll_once(
    streams: &aws_sdk_dynamodbstreams::Client,
    stream_arn: &str,
    config: &PollerConfig,
    shards: &mut Vec<Shard>,
    deliver: &dyn Deliver,
    stats: &PollerStats,
) -> Result<()> {
    // New shards (a split, or the first call).
    let desc = streams
        .describe_stream()
        .stream_arn(stream_arn)
        .send()
        .await
        .context("DescribeStream")?;
    if let Some(d) = desc.stream_description() {
        for s in d.shards() {
            let Some(id) = s.shard_id() else { continue };
            if !shards.iter().any(|k| k.id == id) {
                shards.push(Shard {
                    id: id.to_owned(),
                    parent: s.parent_shard_id().map(str::to_owned),
                    iterator: None,
                    position: None,
                    pending: Vec::new(),
                    first_pending_at: None,
                    closed: false,
                });
            }
        }
    }
    let open: HashSet<String> = shards
        .iter()
        .filter(|s| !s.closed)
        .map(|s| s.id.clone())
        .collect();
    for shard in shards.iter_mut() {
        // Parents first: a child waits until its parent is drained.
        if shard.closed || shard.parent.as_ref().is_some_and(|p| open.contains(p)) {
            continue;
        }
        if shard.iterator.is_none() {
            let mut req = streams
                .get_shard_iterator()
                .stream_arn(stream_arn)
                .shard_id(&shard.id);
            req = match &shard.position {
                Some(seq) => req
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .sequence_number(seq),
                None => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
            };
            shard.iterator = req
                .send()
                .await
                .context("GetShardIterator")?
                .shard_iterator()
                .map(str::to_owned);
        }
        let room = config.batch_size.saturating_sub(shard.pending.len());
        if room > 0
            && let Some(it) = shard.iterator.clone()
        {
            let out = streams
                .get_records()
                .shard_iterator(it)
                .limit(i32::try_from(room).unwrap_or(1000).min(1000))
                .send()
                .await;
            match out {
                Ok(out) => {
                    if !out.records().is_empty() && shard.pending.is_empty() {
                        shard.first_pending_at = Some(Instant::now());
                    }
                    shard.pending.extend(out.records().iter().cloned());
                    shard.iterator = out.next_shard_iterator().map(str::to_owned);
                    if shard.iterator.is_none() && shard.pending.is_empty() {
                        shard.closed = true;
                    }
                }
                Err(e) => {
                    // An expired iterator: get a new one from the position next time.
                    shard.iterator = None;
                    return Err(anyhow!("GetRecords: {e}"));
                }
            }
        }
        let due = shard.pending.len() >= config.batch_size
            || shard
                .first_pending_at
                .is_some_and(|t| t.elapsed() >= config.batching_window)
            || (shard.iterator.is_none() && !shard.pending.is_empty());
        if !due || shard.pending.is_empty() {
            continue;
        }
        let batch: Vec<Value> = shard
            .pending
            .iter()
            .map(|r| event_record(r, stream_arn))
            .collect();
        let n = batch.len();
        deliver
            .deliver(&json!({ "Records": batch }))
            .await
            .with_context(|| format!("delivering {n} stream records"))?;
        shard.position = shard
            .pending
            .last()
            .and_then(|r| r.dynamodb())
            .and_then(|d| d.sequence_number())
            .map(str::to_owned)
            .or(shard.position.take());
        shard.pending.clear();
        shard.first_pending_at = None;
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.records.fetch_add(n as u64, Ordering::Relaxed);
    }
    Ok(())
}
