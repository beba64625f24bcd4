//! CloudWatch Embedded Metric Format (EMF): one JSON line on stdout per decision, which CloudWatch
//! Logs turns into metrics with no SDK call and no extra permission. Namespace `Gatehouse`,
//! dimension `Function` (the Lambda function's name, so stacks in one account do not mix); one
//! count metric named after the decision (`Allowed`, `Denied`, `Blocked`, `RateLimited`, `Invalid`,
//! `Forbidden`, `BackendError`, `Unavailable`) and `LatencyMs`. The alarms in
//! `infra/template.yaml` use these names.
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

pub const NAMESPACE: &str = "Gatehouse";
/// Counted once when a repeat offender's suspension starts (predict); alarmed in the template.
pub const SUSPENSION_STARTED: &str = "SuspensionStarted";

/// The EMF document counting one event under metric `name`, with its latency.
pub fn emf_line(function: &str, name: &str, latency: Duration, timestamp_ms: u64) -> Value {
    let mut doc = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": [
                    {"Name": name, "Unit": "Count"},
                    {"Name": "LatencyMs", "Unit": "Milliseconds"}
                ]
            }]
        },
        "Function": function,
        "LatencyMs": u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
    });
    if let Some(obj) = doc.as_object_mut() {
        obj.insert(name.to_owned(), json!(1));
    }
    doc
}

/// Prints the EMF line of one event (a decision's `metric_name()`, for instance).
/// `fallback_function` names the function outside Lambda (where `AWS_LAMBDA_FUNCTION_NAME` is unset).
pub fn emit(fallback_function: &str, metric: &str, latency: Duration) {
    let function =
        std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| fallback_function.to_owned());
    let ts = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    // println! locks stdout for the whole line, so it never interleaves with a log line (and
    // the test harness captures it).
    println!("{}", emf_line(&function, metric, latency, ts));
}

/// The EMF document of `count` occurrences of metric `name` (a plain count, no latency): the
/// sentinel's `VerificationFailures`, for instance.
pub fn emf_count_line(function: &str, name: &str, count: u64, timestamp_ms: u64) -> Value {
    let mut doc = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": [{"Name": name, "Unit": "Count"}]
            }]
        },
        "Function": function,
    });
    if let Some(obj) = doc.as_object_mut() {
        obj.insert(name.to_owned(), json!(count));
    }
    doc
}

/// Prints the EMF line of `count` occurrences of `metric` (see `emit`).
pub fn emit_count(fallback_function: &str, metric: &str, count: u64) {
    let function =
        std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| fallback_function.to_owned());
    let ts = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    println!("{}", emf_count_line(&function, metric, count, ts));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_declares_what_it_carries() {
        let v = emf_line(
            "gatehouse-dev-PredictFunction-x",
            "RateLimited",
            Duration::from_millis(12),
            1_700_000_000_000,
        );
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
        assert!(!v.to_string().contains('\n'));
    }

    #[test]
    fn count_document_carries_its_count() {
        let v = emf_count_line("sentinel", "VerificationFailures", 3, 1);
        assert_eq!(v["VerificationFailures"], 3);
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "VerificationFailures"
        );
    }
}
