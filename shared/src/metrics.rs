//! CloudWatch Embedded Metric Format (EMF): one JSON line on stdout per decision, which CloudWatch
//! Logs turns into metrics with no SDK call and no extra permission. Namespace `Gatehouse`,
//! dimension `Function` (the Lambda function's name, so stacks in one account do not mix); one
//! count metric named after the decision (`Allowed`, `Denied`, `Blocked`, `RateLimited`, `Invalid`,
//! `Forbidden`, `BackendError`, `Unavailable`) and `LatencyMs`. The alarms in
//! `infra/template.yaml` use these names.
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

pub const NAMESPACE: &str = "Gatehouse";
/// Counted once when a repeat offender's suspension starts (predict); alarmed in the template.
pub const SUSPENSION_STARTED: &str = "SuspensionStarted";

/// One metric definition of the EMF metric directive.
#[derive(Serialize)]
struct MetricDefinition<'a> {
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "Unit")]
    unit: &'a str,
}

/// The EMF metric directive (`CloudWatchMetrics` entry).
#[derive(Serialize)]
struct Directive<'a> {
    #[serde(rename = "Namespace")]
    namespace: &'a str,
    #[serde(rename = "Dimensions")]
    dimensions: [[&'a str; 1]; 1],
    #[serde(rename = "Metrics")]
    metrics: &'a [MetricDefinition<'a>],
}

#[derive(Serialize)]
struct Metadata<'a> {
    #[serde(rename = "Timestamp")]
    timestamp: u64,
    #[serde(rename = "CloudWatchMetrics")]
    cloud_watch_metrics: [Directive<'a>; 1],
}

/// One EMF document: `_aws` metadata, the `Function` dimension, `LatencyMs` when measured, and
/// the counted metric under its own name (a key that varies, hence the hand-written map).
struct Document<'a> {
    function: &'a str,
    name: &'a str,
    count: u64,
    latency_ms: Option<u64>,
    timestamp_ms: u64,
}

impl Serialize for Document<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let count = MetricDefinition {
            name: self.name,
            unit: "Count",
        };
        let latency = MetricDefinition {
            name: "LatencyMs",
            unit: "Milliseconds",
        };
        let both = [count, latency];
        let metrics = if self.latency_ms.is_some() {
            &both[..]
        } else {
            &both[..1]
        };
        let mut map = s.serialize_map(None)?;
        map.serialize_entry(
            "_aws",
            &Metadata {
                timestamp: self.timestamp_ms,
                cloud_watch_metrics: [Directive {
                    namespace: NAMESPACE,
                    dimensions: [["Function"]],
                    metrics,
                }],
            },
        )?;
        map.serialize_entry("Function", self.function)?;
        if let Some(ms) = self.latency_ms {
            map.serialize_entry("LatencyMs", &ms)?;
        }
        map.serialize_entry(self.name, &self.count)?;
        map.end()
    }
}

fn render(doc: &Document<'_>) -> String {
    // Serializing plain structs and strings into a String cannot fail.
    serde_json::to_string(doc).unwrap_or_default()
}

/// The EMF line (JSON, no newline) counting one event under metric `name`, with its latency.
/// Written straight from typed fields, without an intermediate `serde_json::Value`: this runs
/// on every request.
pub fn emf_line(function: &str, name: &str, latency: Duration, timestamp_ms: u64) -> String {
    render(&Document {
        function,
        name,
        count: 1,
        latency_ms: Some(u64::try_from(latency.as_millis()).unwrap_or(u64::MAX)),
        timestamp_ms,
    })
}

/// The function's name for the `Function` dimension: `AWS_LAMBDA_FUNCTION_NAME`, read once
/// (Lambda sets it before the process starts), or `fallback` outside Lambda.
fn function_name(fallback: &str) -> &str {
    static NAME: OnceLock<Option<String>> = OnceLock::new();
    NAME.get_or_init(|| std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok())
        .as_deref()
        .unwrap_or(fallback)
}

fn now_ms() -> u64 {
    crate::clock::unix_millis(SystemTime::now())
}

/// Prints the EMF line of one event (a decision's `metric_name()`, for instance).
/// `fallback_function` names the function outside Lambda (where `AWS_LAMBDA_FUNCTION_NAME` is unset).
pub fn emit(fallback_function: &str, metric: &str, latency: Duration) {
    let line = emf_line(function_name(fallback_function), metric, latency, now_ms());
    // println! locks stdout for the whole line, so it never interleaves with a log line (and
    // the test harness captures it).
    println!("{line}");
}

/// The EMF line of `count` occurrences of metric `name` (a plain count, no latency): the
/// sentinel's `VerificationFailures`, for instance.
pub fn emf_count_line(function: &str, name: &str, count: u64, timestamp_ms: u64) -> String {
    render(&Document {
        function,
        name,
        count,
        latency_ms: None,
        timestamp_ms,
    })
}

/// Prints the EMF line of `count` occurrences of `metric` (see `emit`).
pub fn emit_count(fallback_function: &str, metric: &str, count: u64) {
    println!(
        "{}",
        emf_count_line(function_name(fallback_function), metric, count, now_ms())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::{Value, json};

    #[test]
    fn emf_document_declares_what_it_carries() {
        let line = emf_line(
            "gatehouse-dev-PredictFunction-x",
            "RateLimited",
            Duration::from_millis(12),
            1_700_000_000_000,
        );
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        let m = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], "Gatehouse");
        assert_eq!(m["Dimensions"], json!([["Function"]]));
        assert_eq!(m["Metrics"][0]["Name"], "RateLimited");
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000u64);
        // Every declared metric and dimension must be a member of the root object, or CloudWatch
        // drops the metric.
        assert_eq!(v["RateLimited"], 1);
        assert_eq!(v["LatencyMs"], 12);
        assert_eq!(v["Function"], "gatehouse-dev-PredictFunction-x");
        assert_eq!(
            m["Metrics"][1],
            json!({"Name": "LatencyMs", "Unit": "Milliseconds"})
        );
        // A function name with characters JSON must escape stays one valid line.
        let odd: Value =
            serde_json::from_str(&emf_line("a\"b\n", "Allowed", Duration::ZERO, 0)).unwrap();
        assert_eq!(odd["Function"], "a\"b\n");
    }

    #[test]
    fn count_document_carries_its_count() {
        let v: Value =
            serde_json::from_str(&emf_count_line("sentinel", "VerificationFailures", 3, 1))
                .unwrap();
        assert!(v.get("LatencyMs").is_none());
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        assert_eq!(v["VerificationFailures"], 3);
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "VerificationFailures"
        );
    }
}
