//! Audit records as OCSF 1.5.0 "API Activity" events (class_uid 6003, category 6 Application
//! Activity; schema.ocsf.io), one JSON object per record, for Security Lake or a SIEM.
//!
//! Mapping (OCSF attribute ← record field):
//! - `activity_id` ← the route's method: GET 2 Read, POST 1 Create, PUT/PATCH 3 Update, DELETE 4
//!   Delete; `type_uid` = 600300 + activity_id. (`POST /v1/predict` creates a completion.)
//! - `time` ← `ts_ms`; `duration` ← `latency_ms`; `message` ← "<decision> <route>: <reason>".
//! - `status_id` 1 Success for `allowed`, else 2 Failure; `status_code` ← `decision`;
//!   `status_detail` ← `reason`; `severity_id` ← decision (see [`severity`]).
//! - `actor.user` ← `principal` (uid) and `roles` (groups); `actor.session.uid` ← `token_id`;
//!   `actor.authorizations` ← one `{decision, policy.uid}` per matched Cedar policy id (or one
//!   without a policy); `actor.app_name` ← `source` (the writing function).
//! - `metadata.tenant_uid` ← `tenant`; `metadata.uid` ← `<segment>:<seq>` (unique: dedupe on it,
//!   the export is at-least-once); `metadata.correlation_uid` ← `request_id`.
//! - `api.operation` ← `route`; `api.request.uid` ← `request_id`; `api.service.name` "gatehouse".
//! - `src_endpoint.ip` ← `source_ip`; `http_request.user_agent` ← `user_agent`.
//! - `resources` ← `[{type: "model", uid: model}]` when the record names a model.
//! - `unmapped` ← what OCSF 1.5 has no attribute for: screen verdict, score and rules, prompt and
//!   output lengths and SHA-256, the chain position. Prompt and output TEXT never leave the
//!   table (a SIEM is a wider audience than the auditors of `GET /v1/audit`).
use serde_json::{Map, Value, json};

use super::record::{Field, Fields, number as n, string as s};

pub const OCSF_VERSION: &str = "1.5.0";
pub const CLASS_UID: u64 = 6003;
pub const CATEGORY_UID: u64 = 6;

/// Where the events come from.
#[derive(Debug, Clone)]
pub struct OcsfContext {
    /// `metadata.product.version`: the Gatehouse version that exported the event.
    pub product_version: String,
}

fn l<'a>(f: &'a Fields, k: &str) -> &'a [String] {
    match f.get(k) {
        Some(Field::L(v)) => v,
        _ => &[],
    }
}

/// (activity_id, activity_name) from the route's method.
pub fn activity(route: &str) -> (u64, &'static str) {
    match route.split(' ').next().unwrap_or_default() {
        "GET" | "HEAD" => (2, "Read"),
        "POST" => (1, "Create"),
        "PUT" | "PATCH" => (3, "Update"),
        "DELETE" => (4, "Delete"),
        _ => (99, "Other"),
    }
}

/// (severity_id, severity): informational for served and malformed requests, low for refusals
/// by policy or limit, medium for a prompt the screen blocked and for a service failure.
pub fn severity(decision: &str) -> (u64, &'static str) {
    match decision {
        "allowed" | "invalid" => (1, "Informational"),
        "forbidden" | "rate_limited" | "denied" | "unauthenticated" => (2, "Low"),
        "blocked" | "backend_error" | "unavailable" => (3, "Medium"),
        _ => (99, "Other"),
    }
}

/// The OCSF API Activity event of one audit record.
pub fn api_activity(f: &Fields, ctx: &OcsfContext) -> Value {
    let route = s(f, "route").unwrap_or_default();
    let decision = s(f, "decision").unwrap_or("unknown");
    let reason = s(f, "reason").unwrap_or_default();
    let (activity_id, activity_name) = activity(route);
    let (severity_id, severity_name) = severity(decision);
    let allowed = decision == "allowed";

    let mut metadata = json!({
        "version": OCSF_VERSION,
        "product": {"name": "Gatehouse", "vendor_name": "Gatehouse", "version": ctx.product_version},
        "log_name": "gatehouse-audit",
        "uid": format!("{}:{}", s(f, "segment").unwrap_or_default(), n(f, "seq").unwrap_or(0)),
    });
    if let Some(rid) = s(f, "request_id") {
        metadata["correlation_uid"] = json!(rid);
    }
    if let Some(t) = s(f, "tenant") {
        metadata["tenant_uid"] = json!(t);
    }
    if let Some(t) = s(f, "time") {
        metadata["original_time"] = json!(t);
    }

    let mut actor = Map::new();
    if let Some(p) = s(f, "principal") {
        let groups: Vec<Value> = l(f, "roles").iter().map(|r| json!({"name": r})).collect();
        actor.insert("user".into(), json!({"uid": p, "groups": groups}));
    }
    if let Some(t) = s(f, "token_id") {
        actor.insert("session".into(), json!({"uid": t}));
    }
    let policies = l(f, "policy_ids");
    let auth_decision = if allowed { "allow" } else { "deny" };
    let authorizations: Vec<Value> = if policies.is_empty() {
        vec![json!({"decision": auth_decision})]
    } else {
        policies
            .iter()
            .map(|p| json!({"decision": auth_decision, "policy": {"uid": p, "name": p}}))
            .collect()
    };
    actor.insert("authorizations".into(), Value::Array(authorizations));
    // The writing function: an actor always names something (OCSF: at least one of user,
    // session, app_name, ...), authorizer denials included.
    actor.insert(
        "app_name".into(),
        json!(s(f, "source").unwrap_or("gatehouse")),
    );

    let mut api = json!({"operation": route, "service": {"name": "gatehouse"}});
    if let Some(rid) = s(f, "request_id") {
        api["request"] = json!({"uid": rid});
    }
    // OCSF wants at least one identifying attribute of the source endpoint.
    let src_endpoint = match s(f, "source_ip") {
        Some(ip) => json!({"ip": ip}),
        None => json!({"name": "unknown"}),
    };
    let (method, path) = route.split_once(' ').unwrap_or(("", route));
    let mut http_request = json!({"http_method": method, "url": {"path": path}});
    if let Some(ua) = s(f, "user_agent") {
        http_request["user_agent"] = json!(ua);
    }

    let mut unmapped = Map::new();
    for k in [
        "decision",
        "screen_verdict",
        "screen_rules",
        "prompt_len",
        "prompt_sha256",
        "output_len",
        "output_sha256",
        "segment",
        "seq",
        "key_id",
    ] {
        match f.get(k) {
            Some(Field::S(v)) => unmapped.insert(k.into(), json!(v)),
            Some(Field::N(v)) => unmapped.insert(k.into(), json!(v)),
            Some(Field::L(v)) => unmapped.insert(k.into(), json!(v)),
            None => None,
        };
    }
    if let Some(score) = s(f, "screen_score").and_then(|v| v.parse::<f64>().ok()) {
        unmapped.insert("screen_score".into(), json!(score));
    }

    let mut event = json!({
        "class_uid": CLASS_UID,
        "class_name": "API Activity",
        "category_uid": CATEGORY_UID,
        "category_name": "Application Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": format!("API Activity: {activity_name}"),
        "time": n(f, "ts_ms").unwrap_or(0),
        "severity_id": severity_id,
        "severity": severity_name,
        "status_id": if allowed { 1 } else { 2 },
        "status": if allowed { "Success" } else { "Failure" },
        "status_code": decision,
        "status_detail": reason,
        "message": format!("{decision} {route}: {reason}"),
        "metadata": metadata,
        "actor": Value::Object(actor),
        "api": api,
        "src_endpoint": src_endpoint,
        "http_request": http_request,
        "unmapped": Value::Object(unmapped),
    });
    if let Some(ms) = n(f, "latency_ms") {
        event["duration"] = json!(ms);
    }
    if let Some(m) = s(f, "model") {
        event["resources"] = json!([{"type": "model", "uid": m, "name": m}]);
    }
    event
}

/// `eventDay=YYYYMMDD` of a record (its `ts_ms`, UTC): the export's date partition (the Hive
/// style Security Lake and Athena read).
pub fn event_day(f: &Fields) -> String {
    let day = super::record::day_of(n(f, "ts_ms").unwrap_or(0));
    format!("eventDay={}", day.replace('-', ""))
}

/// Gzip of JSON lines (one event per line, `\n` after each).
pub fn gzip_lines(events: &[Value]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for e in events {
        serde_json::to_writer(&mut gz, e)?;
        gz.write_all(b"\n")?;
    }
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Fields {
        let mut f = Fields::new();
        let s = |v: &str| Field::S(v.into());
        f.insert("segment".into(), s("seg"));
        f.insert("seq".into(), Field::N(7));
        f.insert("request_id".into(), s("rid-1"));
        f.insert("ts_ms".into(), Field::N(1_800_000_000_123));
        f.insert("time".into(), s("2027-01-15T08:00:00.123Z"));
        f.insert("principal".into(), s("alice"));
        f.insert("roles".into(), Field::L(vec!["ai_operator".into()]));
        f.insert("tenant".into(), s("acme"));
        f.insert("token_id".into(), s("jti-1"));
        f.insert("route".into(), s("POST /v1/predict"));
        f.insert("model".into(), s("echo"));
        f.insert("decision".into(), s("blocked"));
        f.insert("reason".into(), s("suspicious_prompt"));
        f.insert("policy_ids".into(), Field::L(vec!["model-standard".into()]));
        f.insert("screen_verdict".into(), s("block"));
        f.insert("screen_score".into(), s("0.9731"));
        f.insert("source_ip".into(), s("203.0.113.9"));
        f.insert("user_agent".into(), s("curl/8"));
        f.insert("source".into(), s("predict"));
        f.insert("prompt_text".into(), s("secret prompt"));
        f.insert("latency_ms".into(), Field::N(12));
        f
    }

    #[test]
    fn maps_the_fields_the_issue_names() {
        let ctx = OcsfContext {
            product_version: "0.1.0".into(),
        };
        let e = api_activity(&record(), &ctx);
        assert_eq!(e["class_uid"], 6003);
        assert_eq!(e["type_uid"], 600301);
        assert_eq!(e["time"], 1_800_000_000_123u64);
        assert_eq!(e["status_id"], 2);
        assert_eq!(e["status_code"], "blocked");
        assert_eq!(e["status_detail"], "suspicious_prompt");
        assert_eq!(e["actor"]["user"]["uid"], "alice");
        assert_eq!(
            e["actor"]["authorizations"][0]["policy"]["uid"],
            "model-standard"
        );
        assert_eq!(e["metadata"]["tenant_uid"], "acme");
        assert_eq!(e["metadata"]["uid"], "seg:7");
        assert_eq!(e["resources"][0]["uid"], "echo");
        assert_eq!(e["src_endpoint"]["ip"], "203.0.113.9");
        assert_eq!(e["unmapped"]["screen_verdict"], "block");
        assert_eq!(e["unmapped"]["screen_score"], 0.9731);
        assert!(
            !e.to_string().contains("secret prompt"),
            "never the prompt text"
        );
        assert_eq!(event_day(&record()), "eventDay=20270115");
    }

    #[test]
    fn an_authorizer_denial_still_names_an_actor_and_an_endpoint() {
        let mut f = Fields::new();
        f.insert("route".into(), Field::S("GET /v1/audit".into()));
        f.insert("decision".into(), Field::S("denied".into()));
        f.insert("source".into(), Field::S("authorizer".into()));
        let e = api_activity(
            &f,
            &OcsfContext {
                product_version: "x".into(),
            },
        );
        assert_eq!(e["activity_id"], 2);
        assert_eq!(e["actor"]["app_name"], "authorizer");
        assert_eq!(e["src_endpoint"]["name"], "unknown");
        assert_eq!(e["severity_id"], 2);
    }

    #[test]
    fn gzip_lines_round_trip() {
        use std::io::Read;
        let body = gzip_lines(&[json!({"a": 1}), json!({"b": 2})]).unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"b\":2}\n");
    }
}
