//! The audit route and the sentinel through the local stack (gateway → authorizer → audit-reader,
//! and the stream poller → audit-sentinel under cargo lambda watch), over HTTP. Run by
//! `cargo xtask test`, which starts the stack and exports GATEHOUSE_GATEWAY_URL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use gatehouse_tests::{dev_token, stack_var};
use serde_json::Value;

async fn get(token: &str, query: &str) -> (u16, Value) {
    let url = format!("{}/v1/audit?{query}", stack_var("GATEHOUSE_GATEWAY_URL"));
    let resp = reqwest::Client::new()
        .get(url)
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn predict(token: &str, prompt: &str) -> String {
    let url = format!("{}/v1/predict", stack_var("GATEHOUSE_GATEWAY_URL"));
    let resp = reqwest::Client::new()
        .post(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "prompt": prompt }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    v["request_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn auditors_read_verified_records_and_only_their_tenants() {
    let sub = format!("e2e-audited-{}", uuid::Uuid::new_v4().simple());
    let operator = dev_token(&sub, &["ai_operator"], None, 300);
    let mut rids = Vec::new();
    for i in 0..3 {
        rids.push(predict(&operator, &format!("audited prompt {i}")).await);
    }
    let auditor = dev_token("e2e-auditor", &["auditor"], None, 300);
    // The sentinel anchors each batch within the local batching window (1 s): poll a while.
    // Records are keyed on the principal key (issuer hash#tenant#sub): `#` percent-encoded.
    let key = gatehouse_tests::dev_principal_key(&sub, None);
    let query = format!("principal={}", key.replace('#', "%23"));
    let mut body = Value::Null;
    for _ in 0..120 {
        let (status, b) = get(&auditor, &query).await;
        assert_eq!(status, 200, "{b}");
        body = b;
        let recs = body["records"].as_array().unwrap();
        if recs.len() == 3 && recs.iter().all(|r| r["verified"] == true) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let recs = body["records"].as_array().unwrap();
    let got: Vec<&str> = recs
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, rids, "oldest first, every one");
    for r in recs {
        assert_eq!(r["verification"], "anchored", "{r}");
        assert_eq!(r["decision"], "allowed");
        assert!(r.get("prompt_text").is_none());
        assert!(r["screen_score"].is_number(), "{r}");
    }
    assert!(body["next_cursor"].is_null());

    // Paginated: one record per page, a cursor between them.
    let (_, page1) = get(&auditor, &format!("{query}&limit=1")).await;
    let cursor = page1["next_cursor"].as_str().unwrap().to_owned();
    let (_, page2) = get(&auditor, &format!("{query}&limit=1&cursor={cursor}")).await;
    assert_eq!(page2["records"][0]["request_id"], rids[1].as_str());

    // A tenant's auditor does not see a tenant-less principal's records.
    let acme = dev_token("e2e-acme-auditor", &["auditor"], Some("acme"), 300);
    let (status, b) = get(&acme, &query).await;
    assert_eq!(status, 200);
    assert_eq!(b["records"].as_array().unwrap().len(), 0, "{b}");
}

#[tokio::test]
async fn only_auditors_may_read_and_bad_filters_are_400() {
    let operator = dev_token("e2e-not-an-auditor", &["ai_operator"], None, 300);
    let (status, _) = get(&operator, "decision=allowed").await;
    assert_eq!(status, 403, "the authorizer's route policy");
    let auditor = dev_token("e2e-auditor-2", &["auditor"], None, 300);
    let (status, b) = get(&auditor, "decision=block").await;
    assert_eq!(status, 400, "{b}");
    assert_eq!(b["title"], "Invalid request");
    assert!(b["detail"].as_str().unwrap().contains("rate_limited"));
    let (status, _) = get(&auditor, "cursor=not-a-cursor").await;
    assert_eq!(status, 400);
}
