//! The audit writer (authorizer, predict): builds each record, seals it into the execution
//! environment's chain segment and stores it with an append-only `PutItem`. See the module docs
//! of `crate::audit` for the chain design.
use std::time::{Duration, SystemTime};

use tokio::sync::Mutex;

use super::record::{self, AuditKey, Field, Fields, GENESIS_HASH, HMAC_ATTR};
use super::{Decision, decision_day_key, millis, shard_of};
use crate::config::ContentMode;
use crate::principal::Principal;
use crate::text::cap;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The record may or may not have been stored; the caller must fail closed.
    #[error("audit sink unavailable: {0}")]
    Unavailable(String),
    /// A record already holds this (segment, seq) and it is not ours.
    #[error("audit key collision at {segment}/{seq}")]
    Collision { segment: String, seq: u64 },
}

/// What `AuditSink::put` can report.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The condition failed: an item with this key exists. `existing_hmac` is its HMAC when the
    /// store returned the old item (an SDK retry of our own write shows up as our own HMAC).
    #[error("an item with this key exists")]
    Exists { existing_hmac: Option<String> },
    #[error("{0}")]
    Unavailable(String),
}

/// Append-only storage of sealed records: the DynamoDB adapter, or `MemorySink` in tests.
#[async_trait::async_trait]
pub trait AuditSink: Send + Sync {
    async fn put(&self, fields: &Fields) -> Result<(), SinkError>;
}

/// The prompt screen's result as audited (predict fills it in once the prompt was screened;
/// outcomes decided before the screen, and the authorizer's, carry `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct ScreenAudit {
    /// The screen's own verdict (allow / flag / block), before the mode is applied.
    pub verdict: String,
    pub score: f32,
    pub rule_ids: Vec<String>,
    /// The screen mode that applied (`block`, `flag-only`, `off`), from the policy entities.
    pub mode: String,
    /// The learned layer's highest-scoring window: (layer, byte offset, byte length) in the
    /// screened text. Locates the evidence without storing the prompt.
    pub window: Option<(String, u64, u64)>,
    /// The Amazon Bedrock Guardrails second opinion, when one was asked: (verdict, latency ms).
    pub guardrail: Option<(String, u64)>,
}

/// Everything a caller knows about one terminal outcome. Never a token or a secret.
#[derive(Debug, Clone, Copy)]
pub struct AuditEvent<'a> {
    pub request_id: &'a str,
    pub time: SystemTime,
    pub principal: Option<&'a Principal>,
    pub route: &'a str,
    pub model: Option<&'a str>,
    pub decision: Decision,
    pub reason: &'a str,
    /// The failing check in words (the authorizer's deny detail: which claim, which
    /// expectation); never a token or a secret. Stored capped, control characters replaced.
    pub detail: Option<&'a str>,
    pub policy_ids: &'a [String],
    pub screen: Option<&'a ScreenAudit>,
    pub prompt: Option<&'a str>,
    pub output: Option<&'a str>,
    pub source_ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub latency: Duration,
    /// Further attributes of this outcome (token reservation and use, a suspension that
    /// started, ...). They never replace a standard attribute of the same name.
    pub extra: &'a [(&'static str, Field)],
}

#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub content_mode: ContentMode,
    /// Cap on each stored text in `full` mode (bytes, cut at a char boundary).
    pub full_text_max_bytes: usize,
    /// 0 = keep forever (no TTL attribute).
    pub retention_days: u32,
    /// Shards of the by-decision index partition (see `decision_day`).
    pub decision_shards: u32,
}

/// Where a written record sits in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRef {
    pub segment: String,
    pub seq: u64,
}

struct Chain {
    segment: String,
    started_ms: u64,
    next_seq: u64,
    prev_hash: String,
    /// Set on the first record of a segment that replaced a failed one.
    prev_segment: Option<(String, u64)>,
}

impl Chain {
    fn fresh(now: SystemTime, prev_segment: Option<(String, u64)>) -> Self {
        Self {
            segment: uuid::Uuid::new_v4().simple().to_string(),
            started_ms: millis(now),
            next_seq: 1,
            prev_hash: GENESIS_HASH.to_owned(),
            prev_segment,
        }
    }
}

/// Longest user agent kept; longer ones are cut (they are attacker-controlled).
const MAX_USER_AGENT: usize = 512;
/// Longest decision detail kept.
const MAX_DETAIL: usize = 512;

/// Control characters (CR/LF among them) replaced, so a stored value never forges a line.
fn neutral(s: &str) -> String {
    // Most values hold no control character: copy them as they are.
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// The record body (everything but the chain fields), built from an event.
pub fn build_fields(ev: &AuditEvent<'_>, settings: &AuditSettings, source: &str) -> Fields {
    let mut f = Fields::new();
    let s = |v: &str| Field::S(v.to_owned());
    let ts = millis(ev.time);
    f.insert("source".into(), s(source));
    f.insert("request_id".into(), s(ev.request_id));
    f.insert("ts_ms".into(), Field::N(ts));
    f.insert("time".into(), Field::S(record::rfc3339(ts)));
    f.insert("ts_rid".into(), Field::S(record::ts_rid(ts, ev.request_id)));
    if let Some(p) = ev.principal {
        // Keyed on issuer + tenant + sub (`Principal::key`): the `by_principal` index never mixes
        // two issuers' or tenants' users who share a `sub`.
        f.insert("principal".into(), s(&p.key()));
        f.insert("sub".into(), Field::S(neutral(&p.sub)));
        f.insert("roles".into(), Field::L(p.roles.clone()));
        f.insert("token_id".into(), s(&p.token_id));
        if let Some(t) = &p.tenant {
            f.insert("tenant".into(), s(t));
        }
    }
    f.insert("route".into(), s(ev.route));
    if let Some(m) = ev.model {
        f.insert("model".into(), s(m));
    }
    let decision = ev.decision.as_str();
    f.insert("decision".into(), s(decision));
    f.insert(
        "decision_day".into(),
        Field::S(decision_day_key(
            decision,
            &record::day_of(ts),
            shard_of(ev.request_id, settings.decision_shards),
        )),
    );
    f.insert("reason".into(), s(ev.reason));
    if let Some(d) = ev.detail {
        f.insert("detail".into(), Field::S(neutral(cap(d, MAX_DETAIL).0)));
    }
    f.insert("policy_ids".into(), Field::L(ev.policy_ids.to_vec()));
    if let Some(sc) = ev.screen {
        f.insert("screen_verdict".into(), s(&sc.verdict));
        // A string, not a number: DynamoDB would renormalise a float's text.
        f.insert("screen_score".into(), Field::S(format!("{:.4}", sc.score)));
        f.insert("screen_rules".into(), Field::L(sc.rule_ids.clone()));
        f.insert("screen_mode".into(), s(&sc.mode));
        if let Some((layer, offset, len)) = &sc.window {
            f.insert("screen_window_layer".into(), s(layer));
            f.insert("screen_window_offset".into(), Field::N(*offset));
            f.insert("screen_window_len".into(), Field::N(*len));
        }
        if let Some((verdict, ms)) = &sc.guardrail {
            f.insert("guardrail_verdict".into(), s(verdict));
            f.insert("guardrail_latency_ms".into(), Field::N(*ms));
        }
    }
    // Attribute names spelled out (not formatted): a record's keys are all static strings.
    for (text, [len, sha256, full, truncated]) in [
        (
            ev.prompt,
            [
                "prompt_len",
                "prompt_sha256",
                "prompt_text",
                "prompt_truncated",
            ],
        ),
        (
            ev.output,
            [
                "output_len",
                "output_sha256",
                "output_text",
                "output_truncated",
            ],
        ),
    ] {
        let Some(text) = text else { continue };
        f.insert(len.into(), Field::N(text.chars().count() as u64));
        if settings.content_mode != ContentMode::None {
            f.insert(sha256.into(), Field::S(record::sha256_hex(text.as_bytes())));
        }
        if settings.content_mode == ContentMode::Full {
            let (kept, cut) = cap(text, settings.full_text_max_bytes);
            f.insert(full.into(), s(kept));
            if cut {
                f.insert(truncated.into(), s("true"));
            }
        }
    }
    if let Some(ip) = ev.source_ip {
        f.insert("source_ip".into(), Field::S(neutral(ip)));
    }
    if let Some(ua) = ev.user_agent {
        f.insert(
            "user_agent".into(),
            Field::S(neutral(cap(ua, MAX_USER_AGENT).0)),
        );
    }
    f.insert(
        "latency_ms".into(),
        Field::N(u64::try_from(ev.latency.as_millis()).unwrap_or(u64::MAX)),
    );
    for (name, value) in ev.extra {
        f.entry((*name).into()).or_insert_with(|| value.clone());
    }
    if settings.retention_days > 0 {
        f.insert(
            "retention_days".into(),
            Field::N(settings.retention_days.into()),
        );
        f.insert(
            "expires_at".into(),
            Field::N(ts / 1000 + u64::from(settings.retention_days) * 86_400),
        );
    }
    f
}

/// The writer: builds, seals and stores one record per terminal outcome.
pub struct AuditLog {
    sink: Box<dyn AuditSink>,
    key: AuditKey,
    settings: AuditSettings,
    source: &'static str,
    chain: Mutex<Chain>,
}

impl AuditLog {
    /// `source` names the writer ("predict", "authorizer"); `now` is the cold-start time.
    pub fn new(
        sink: Box<dyn AuditSink>,
        key: AuditKey,
        settings: AuditSettings,
        source: &'static str,
        now: SystemTime,
    ) -> Self {
        Self {
            sink,
            key,
            settings,
            source,
            chain: Mutex::new(Chain::fresh(now, None)),
        }
    }

    pub fn settings(&self) -> &AuditSettings {
        &self.settings
    }

    /// Seals the event into the chain and writes it. `Err` means the record may not exist: the
    /// caller must not hand out the result it describes.
    pub async fn record(&self, ev: &AuditEvent<'_>) -> Result<RecordRef, AuditError> {
        let mut fields = build_fields(ev, &self.settings, self.source);
        let mut chain = self.chain.lock().await;
        fields.insert("segment".into(), Field::S(chain.segment.clone()));
        fields.insert("seq".into(), Field::N(chain.next_seq));
        fields.insert("segment_started_ms".into(), Field::N(chain.started_ms));
        fields.insert("prev_hash".into(), Field::S(chain.prev_hash.clone()));
        fields.insert("key_id".into(), Field::S(self.key.id().to_owned()));
        if let Some((seg, seq)) = &chain.prev_segment {
            fields.insert("prev_segment".into(), Field::S(seg.clone()));
            fields.insert("prev_segment_seq".into(), Field::N(*seq));
        }
        // One canonical form for both the HMAC and the chain hash (it leaves the HMAC out).
        let canonical = record::canonical(&fields);
        let hmac = self.key.sign_canonical(&canonical);
        fields.insert(HMAC_ATTR.into(), Field::S(hmac.clone()));
        let at = RecordRef {
            segment: chain.segment.clone(),
            seq: chain.next_seq,
        };
        let stored = match self.sink.put(&fields).await {
            Ok(()) => Ok(()),
            // Our own earlier attempt (an SDK retry after a lost response) landed: same record.
            Err(SinkError::Exists {
                existing_hmac: Some(h),
            }) if h == hmac => Ok(()),
            Err(SinkError::Exists { .. }) => Err(AuditError::Collision {
                segment: at.segment.clone(),
                seq: at.seq,
            }),
            Err(SinkError::Unavailable(e)) => Err(AuditError::Unavailable(e)),
        };
        match stored {
            Ok(()) => {
                chain.prev_hash = record::sha256_hex(canonical.as_bytes());
                chain.next_seq += 1;
                chain.prev_segment = None;
                Ok(at)
            }
            Err(e) => {
                // Unknown whether it landed: continue in a new segment that points back at the
                // last record we KNOW exists, instead of leaving a gap or a fork in this one.
                let confirmed = chain.next_seq - 1;
                let old = std::mem::take(&mut chain.segment);
                // Nothing confirmed in this segment: keep pointing at the last record known to
                // exist (in its predecessor), so a second failure in a row cannot cut the link.
                let link = if confirmed == 0 {
                    chain.prev_segment.take()
                } else {
                    Some((old, confirmed))
                };
                *chain = Chain::fresh(ev.time, link);
                Err(e)
            }
        }
    }
}

/// In-memory sink for unit tests: stores records, or fails while `failing` is set.
#[derive(Default)]
pub struct MemorySink {
    pub records: std::sync::Mutex<Vec<Fields>>,
    pub failing: std::sync::atomic::AtomicBool,
    /// (segment, seq) → index in `records`: the attribute_not_exists check in O(1), so long runs
    /// (benchmarks) do not go quadratic.
    index: std::sync::Mutex<std::collections::HashMap<(String, u64), usize>>,
}

fn chain_key(f: &Fields) -> Option<(String, u64)> {
    match (f.get("segment"), f.get("seq")) {
        (Some(Field::S(s)), Some(Field::N(n))) => Some((s.clone(), *n)),
        _ => None,
    }
}

#[async_trait::async_trait]
impl AuditSink for MemorySink {
    async fn put(&self, fields: &Fields) -> Result<(), SinkError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SinkError::Unavailable("memory sink set to fail".into()));
        }
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let key = chain_key(fields)
            .ok_or_else(|| SinkError::Unavailable("record without segment/seq".into()))?;
        if let Some(old) = index.get(&key).and_then(|i| records.get(*i)) {
            let existing_hmac = match old.get(HMAC_ATTR) {
                Some(Field::S(h)) => Some(h.clone()),
                _ => None,
            };
            return Err(SinkError::Exists { existing_hmac });
        }
        index.insert(key, records.len());
        records.push(fields.clone());
        Ok(())
    }
}

/// Shared handle so tests can keep a reference to the sink they gave an `AuditLog`.
#[async_trait::async_trait]
impl<T: AuditSink> AuditSink for std::sync::Arc<T> {
    async fn put(&self, fields: &Fields) -> Result<(), SinkError> {
        (**self).put(fields).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::TEST_KEY;
    use crate::audit::verify;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    #[test]
    fn neutral_replaces_control_characters_only() {
        assert_eq!(neutral("curl/8.5 (x86_64) é"), "curl/8.5 (x86_64) é");
        assert_eq!(
            neutral("a\r\nb\u{7}\u{85}"),
            "a\u{fffd}\u{fffd}b\u{fffd}\u{fffd}"
        );
    }

    fn settings(mode: ContentMode) -> AuditSettings {
        AuditSettings {
            content_mode: mode,
            full_text_max_bytes: 8,
            retention_days: 30,
            decision_shards: 4,
        }
    }

    fn event<'a>(rid: &'a str, p: &'a Principal) -> AuditEvent<'a> {
        AuditEvent {
            request_id: rid,
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            principal: Some(p),
            route: "POST /v1/predict",
            model: Some("echo"),
            decision: Decision::Allowed,
            reason: "ok",
            detail: None,
            policy_ids: &[],
            screen: None,
            prompt: Some("héllo wörld, a long prompt"),
            output: Some("out"),
            source_ip: Some("10.0.0.1"),
            user_agent: Some("curl\r\nX-Injected: 1"),
            latency: Duration::from_millis(12),
            extra: &[],
        }
    }

    fn alice() -> Principal {
        Principal {
            issuer: "https://issuer.test/".into(),
            sub: "alice".into(),
            roles: vec!["ai_operator".into()],
            tenant: None,
            token_id: "jti-1".into(),
            exp: 1_800_000_600,
        }
    }

    #[test]
    fn every_decision_has_a_distinct_metric() {
        let names: std::collections::BTreeSet<_> =
            Decision::ALL.iter().map(|d| d.metric_name()).collect();
        assert_eq!(names.len(), Decision::ALL.len());
        for alarm_metric in ["Denied", "Blocked", "RateLimited"] {
            assert!(names.contains(alarm_metric));
        }
    }

    #[test]
    fn content_modes() {
        let p = alice();
        let none = build_fields(&event("r", &p), &settings(ContentMode::None), "predict");
        assert_eq!(none["prompt_len"], Field::N(26));
        assert!(!none.contains_key("prompt_sha256") && !none.contains_key("prompt_text"));
        let hash = build_fields(&event("r", &p), &settings(ContentMode::Hash), "predict");
        assert!(hash.contains_key("prompt_sha256") && !hash.contains_key("prompt_text"));
        let full = build_fields(&event("r", &p), &settings(ContentMode::Full), "predict");
        assert_eq!(
            full["prompt_text"],
            Field::S("héllo w".into()),
            "cut at 8 bytes"
        );
        assert_eq!(full["prompt_truncated"], Field::S("true".into()));
        assert_eq!(full["output_text"], Field::S("out".into()));
        let Field::S(ua) = &full["user_agent"] else {
            panic!("user agent")
        };
        assert!(!ua.contains('\n') && !ua.contains('\r'));
        assert_eq!(
            full["expires_at"],
            Field::N(1_800_000_000 + 30 * 86_400),
            "TTL from the retention setting"
        );
    }

    #[tokio::test]
    async fn chain_links_and_a_failed_write_starts_a_linked_segment() {
        let sink = Arc::new(MemorySink::default());
        let log = AuditLog::new(
            Box::new(sink.clone()),
            AuditKey::new(TEST_KEY).unwrap(),
            settings(ContentMode::Hash),
            "predict",
            SystemTime::UNIX_EPOCH,
        );
        let p = alice();
        let a = log.record(&event("r1", &p)).await.unwrap();
        let b = log.record(&event("r2", &p)).await.unwrap();
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_eq!(a.segment, b.segment);
        sink.failing.store(true, Ordering::SeqCst);
        assert!(log.record(&event("r3", &p)).await.is_err());
        // A second failure in a row (the new segment's first write) must not cut the link back
        // to the last record known to exist.
        assert!(log.record(&event("r3b", &p)).await.is_err());
        sink.failing.store(false, Ordering::SeqCst);
        let c = log.record(&event("r4", &p)).await.unwrap();
        assert_ne!(c.segment, a.segment);
        assert_eq!(c.seq, 1);
        let recs = sink.records.lock().unwrap().clone();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0]["prev_hash"], Field::S(GENESIS_HASH.into()));
        assert_eq!(
            recs[1]["prev_hash"],
            Field::S(record::record_hash(&recs[0]))
        );
        assert_eq!(recs[2]["prev_segment"], Field::S(a.segment.clone()));
        assert_eq!(recs[2]["prev_segment_seq"], Field::N(2));
        let report = verify::verify(
            &recs,
            &[AuditKey::new(TEST_KEY).unwrap()],
            SystemTime::UNIX_EPOCH,
        );
        assert!(report.is_clean(), "{report:?}");
    }

    #[tokio::test]
    async fn concurrent_records_get_distinct_consecutive_seqs() {
        let sink = Arc::new(MemorySink::default());
        let log = Arc::new(AuditLog::new(
            Box::new(sink.clone()),
            AuditKey::new(TEST_KEY).unwrap(),
            settings(ContentMode::Hash),
            "predict",
            SystemTime::UNIX_EPOCH,
        ));
        let p = Arc::new(alice());
        let mut tasks = Vec::new();
        for i in 0..50 {
            let (log, p) = (log.clone(), p.clone());
            tasks.push(tokio::spawn(async move {
                let rid = format!("r{i}");
                log.record(&event(&rid, &p)).await.unwrap().seq
            }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap());
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=50).collect::<Vec<u64>>());
        let recs = sink.records.lock().unwrap().clone();
        let report = verify::verify(
            &recs,
            &[AuditKey::new(TEST_KEY).unwrap()],
            SystemTime::UNIX_EPOCH,
        );
        assert!(report.is_clean() && report.records == 50, "{report:?}");
    }
}
