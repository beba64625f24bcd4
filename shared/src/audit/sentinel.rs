//! `audit-sentinel`: the audit table's stream consumer.
//!
//! For each batch the event source mapping delivers (at most `BatchSize` records, at most
//! `MaximumBatchingWindowInSeconds` after the first: the template's `DigestMaxRecords` and
//! `DigestIntervalSecs`), in stream order:
//!
//! 1. **Re-verifies every new record** with public material. The sentinel does not hold the
//!    writers' HMAC key (a third holder of it would be a third place to forge seals from), so it
//!    checks what needs no key: the record is well formed; its `prev_hash` is the SHA-256 of its
//!    predecessor (kept from the previous record, else read with `GetItem`); a segment starts at
//!    seq 1 on the genesis hash or names a predecessor segment that exists; nothing is replayed
//!    with other content. And it sees what no seal can show: a `MODIFY` event is an overwrite
//!    (writers only insert, with `attribute_not_exists`), a `REMOVE` not made by the TTL service
//!    after `expires_at` is a deletion. The HMAC itself (is the writer genuine?) stays with the
//!    keyed `cargo xtask audit-verify`. Each failure is a [`Finding`]: an error log line naming
//!    segment and seq, and the EMF metric `VerificationFailures` (alarmed in the template).
//! 2. **Exports** every new record as an OCSF API Activity event (`ocsf` module), gzip JSON
//!    lines under `<prefix>/eventDay=YYYYMMDD/<first>-<last stream sequence number>.json.gz`.
//! 3. **Anchors**: per segment seen in the batch, one digest of the new records and the head,
//!    chained to the segment's previous digest, signed with the KMS key only the sentinel may
//!    use, stored once (`If-None-Match`) in the Object Lock bucket (`digest` module). A record
//!    counts as done once anchored: a later delivery of it is checked against the digest and
//!    neither exported nor anchored again.
//!
//! A failed S3, KMS or DynamoDB call fails the batch: the event source mapping retries it from
//! the same stream position (records stay in the stream for 24 h; the `IteratorAge` alarm says
//! when the sentinel falls behind), so an outage delays verification but loses nothing. The
//! in-memory segment state is committed only once the whole batch succeeded, and a retried batch
//! finds its digests already stored with the same payload.
use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use tokio::sync::Mutex;

use super::digest::{
    self, AnchoredRecord, DIGEST_VERSION, DigestPayload, DigestSigner, DigestStore, GENESIS_DIGEST,
    PutOutcome, StoreError, is_hex64,
};
use super::ocsf::{self, OcsfContext};
use super::record::{self, Field, Fields, GENESIS_HASH, HMAC_ATTR, number as n, string as s};

/// The metric a finding counts under (namespace `Gatehouse`, dimension `Function`).
pub const FINDINGS_METRIC: &str = "VerificationFailures";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Insert,
    Modify,
    Remove,
}

/// One stream record, free of Lambda types.
#[derive(Debug, Clone)]
pub struct Change {
    pub kind: ChangeKind,
    /// The stream's `SequenceNumber`.
    pub stream_seq: String,
    pub new: Option<Fields>,
    pub old: Option<Fields>,
    /// `userIdentity` says the DynamoDB TTL service removed the item.
    pub by_ttl: bool,
    /// `ApproximateCreationDateTime`, Unix seconds.
    pub at_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// Missing or ill-typed chain fields.
    Malformed,
    /// `prev_hash` is not the hash of the predecessor.
    BrokenLink,
    /// The predecessor (in this segment, or the one `prev_segment` names) is not in the table.
    MissingPredecessor,
    /// A stored record was overwritten (`MODIFY` event).
    Overwritten,
    /// A record was deleted by someone (a `REMOVE` not made by TTL).
    Deleted,
    /// TTL removed a record whose `expires_at` had not passed.
    RemovedBeforeExpiry,
    /// A seq already seen or anchored came again with other content.
    Replayed,
    /// The digest key held another digest than the one this batch computed.
    DigestConflict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    pub segment: String,
    pub seq: u64,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub verified: usize,
    pub findings: Vec<Finding>,
    pub digests_written: usize,
    pub exported: usize,
    pub ttl_removals: usize,
}

/// Reads a record by key (DynamoDB `GetItem`, strongly consistent).
#[async_trait::async_trait]
pub trait RecordLookup: Send + Sync {
    async fn get(&self, segment: &str, seq: u64) -> Result<Option<Fields>, StoreError>;
}

/// Where the OCSF export goes (S3, or memory in tests).
#[async_trait::async_trait]
pub trait ExportSink: Send + Sync {
    async fn put(&self, key: &str, gzip_body: Vec<u8>) -> Result<(), StoreError>;
}

/// What the sentinel knows of a segment between batches.
#[derive(Debug, Clone)]
struct SegmentState {
    anchored_last: u64,
    last_digest_hash: String,
    /// The newest record seen: (seq, hash).
    head: Option<(u64, String)>,
    /// The newest digest's payload (duplicate deliveries are checked against it).
    latest: Option<DigestPayload>,
}

impl SegmentState {
    fn fresh() -> Self {
        Self {
            anchored_last: 0,
            last_digest_hash: GENESIS_DIGEST.to_owned(),
            head: None,
            latest: None,
        }
    }
}

/// A bound on the segments kept in memory (an environment sees one new segment per writer cold
/// start); a forgotten segment is reloaded from its latest digest.
const MAX_CACHED_SEGMENTS: usize = 10_000;

pub struct Sentinel {
    pub digests: Box<dyn DigestStore>,
    pub signer: Box<dyn DigestSigner>,
    pub lookup: Box<dyn RecordLookup>,
    pub export: Box<dyn ExportSink>,
    /// Key prefix of the OCSF export, without a trailing slash.
    pub export_prefix: String,
    pub ocsf: OcsfContext,
    cache: Mutex<HashMap<String, SegmentState>>,
}

fn key_of(f: &Fields) -> Option<(String, u64)> {
    Some((s(f, "segment")?.to_owned(), n(f, "seq")?))
}

/// What a record written by our writers always has, with the right types.
fn shape_problem(f: &Fields) -> Option<&'static str> {
    for k in ["request_id", "decision", "route", "key_id", "source"] {
        if s(f, k).is_none() {
            return Some("a required string field is missing");
        }
    }
    if n(f, "ts_ms").is_none() || n(f, "segment_started_ms").is_none() {
        return Some("ts_ms / segment_started_ms missing");
    }
    if !s(f, "prev_hash").is_some_and(is_hex64) || !s(f, HMAC_ATTR).is_some_and(is_hex64) {
        return Some("prev_hash / hmac are not 64 hex digits");
    }
    None
}

impl Sentinel {
    pub fn new(
        digests: Box<dyn DigestStore>,
        signer: Box<dyn DigestSigner>,
        lookup: Box<dyn RecordLookup>,
        export: Box<dyn ExportSink>,
        export_prefix: impl Into<String>,
        ocsf: OcsfContext,
    ) -> Self {
        Self {
            digests,
            signer,
            lookup,
            export,
            export_prefix: export_prefix.into().trim_end_matches('/').to_owned(),
            ocsf,
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn state(
        &self,
        cache: &HashMap<String, SegmentState>,
        working: &mut HashMap<String, SegmentState>,
        segment: &str,
    ) -> Result<(), StoreError> {
        if working.contains_key(segment) {
            return Ok(());
        }
        let st = match cache.get(segment) {
            Some(st) => st.clone(),
            None => match self.digests.latest(segment).await? {
                Some(d) => SegmentState {
                    anchored_last: d.payload.last_seq,
                    last_digest_hash: d.payload.hash(),
                    head: Some((d.payload.last_seq, d.payload.last_record_hash.clone())),
                    latest: Some(d.payload),
                },
                None => SegmentState::fresh(),
            },
        };
        working.insert(segment.to_owned(), st);
        Ok(())
    }

    /// Verifies, anchors and exports one batch. `Err` means the batch must be retried (nothing
    /// was committed to the in-memory state; digests already stored are recognised on retry).
    pub async fn process(&self, changes: &[Change]) -> Result<BatchOutcome, StoreError> {
        let mut cache = self.cache.lock().await;
        let mut working: HashMap<String, SegmentState> = HashMap::new();
        let mut pending: BTreeMap<String, Vec<AnchoredRecord>> = BTreeMap::new();
        let mut last_ts: HashMap<String, u64> = HashMap::new();
        let mut exports: BTreeMap<String, (Vec<Value>, String, String)> = BTreeMap::new();
        let mut out = BatchOutcome::default();
        let finding = |kind, segment: &str, seq, detail: String| Finding {
            kind,
            segment: segment.to_owned(),
            seq,
            detail,
        };

        for change in changes {
            match change.kind {
                ChangeKind::Insert => {
                    let Some(f) = &change.new else { continue };
                    let Some((segment, seq)) = key_of(f) else {
                        out.findings.push(finding(
                            FindingKind::Malformed,
                            s(f, "segment").unwrap_or("?"),
                            0,
                            "no segment or integer seq".into(),
                        ));
                        continue;
                    };
                    self.state(&cache, &mut working, &segment).await?;
                    let hash = record::record_hash(f);
                    let Some(st) = working.get_mut(&segment) else {
                        continue;
                    };
                    // Seen before: a retried batch, or a replay with other content.
                    let seen = if seq <= st.anchored_last {
                        st.latest
                            .as_ref()
                            .and_then(|d| d.hash_of(seq))
                            .map(str::to_owned)
                    } else {
                        pending
                            .get(&segment)
                            .and_then(|p| p.iter().find(|r| r.seq == seq))
                            .map(|r| r.hash.clone())
                    };
                    if seq <= st.anchored_last || seen.is_some() {
                        if seen.is_some_and(|h| h != hash) {
                            out.findings.push(finding(
                                FindingKind::Replayed,
                                &segment,
                                seq,
                                "delivered again with other content".into(),
                            ));
                        }
                        continue;
                    }
                    if st.head.as_ref().is_some_and(|(h, _)| *h >= seq) {
                        out.findings.push(finding(
                            FindingKind::Replayed,
                            &segment,
                            seq,
                            "arrived after a later seq of its segment".into(),
                        ));
                        continue;
                    }
                    out.verified += 1;
                    if let Some(why) = shape_problem(f) {
                        out.findings.push(finding(
                            FindingKind::Malformed,
                            &segment,
                            seq,
                            why.into(),
                        ));
                    }
                    // The link to the predecessor.
                    let expected = if seq == 1 {
                        Some(GENESIS_HASH.to_owned())
                    } else if let Some((h, hh)) = &st.head
                        && *h == seq - 1
                    {
                        Some(hh.clone())
                    } else {
                        match self.lookup.get(&segment, seq - 1).await? {
                            Some(p) => Some(record::record_hash(&p)),
                            None => {
                                out.findings.push(finding(
                                    FindingKind::MissingPredecessor,
                                    &segment,
                                    seq,
                                    format!("seq {} is not in the table", seq - 1),
                                ));
                                None
                            }
                        }
                    };
                    if let Some(want) = expected
                        && s(f, "prev_hash") != Some(want.as_str())
                    {
                        out.findings.push(finding(
                            FindingKind::BrokenLink,
                            &segment,
                            seq,
                            "prev_hash is not the hash of the previous record".into(),
                        ));
                    }
                    if let (Some(ps), Some(pq)) = (s(f, "prev_segment"), n(f, "prev_segment_seq"))
                        && pq > 0
                        && self.lookup.get(ps, pq).await?.is_none()
                    {
                        out.findings.push(finding(
                            FindingKind::MissingPredecessor,
                            &segment,
                            seq,
                            format!("predecessor segment {ps} has no seq {pq}"),
                        ));
                    }
                    st.head = Some((seq, hash.clone()));
                    pending
                        .entry(segment.clone())
                        .or_default()
                        .push(AnchoredRecord {
                            seq,
                            hash,
                            request_id: s(f, "request_id").unwrap_or_default().to_owned(),
                            expires_at: n(f, "expires_at"),
                        });
                    last_ts.insert(segment, n(f, "ts_ms").unwrap_or(0));
                    let entry = exports
                        .entry(ocsf::event_day(f))
                        .or_insert_with(|| (Vec::new(), change.stream_seq.clone(), String::new()));
                    entry.0.push(ocsf::api_activity(f, &self.ocsf));
                    entry.2 = change.stream_seq.clone();
                }
                ChangeKind::Modify => {
                    let (Some(old), Some(new)) = (&change.old, &change.new) else {
                        continue;
                    };
                    let (segment, seq) = key_of(new)
                        .or_else(|| key_of(old))
                        .unwrap_or_else(|| ("?".into(), 0));
                    let (ho, hn) = (record::record_hash(old), record::record_hash(new));
                    if ho != hn || s(old, HMAC_ATTR) != s(new, HMAC_ATTR) {
                        out.findings.push(finding(
                            FindingKind::Overwritten,
                            &segment,
                            seq,
                            format!("record rewritten: hash {}… -> {}…", &ho[..12], &hn[..12]),
                        ));
                    }
                }
                ChangeKind::Remove => {
                    let Some(old) = &change.old else { continue };
                    let (segment, seq) = key_of(old).unwrap_or_else(|| ("?".into(), 0));
                    match (change.by_ttl, n(old, "expires_at")) {
                        (true, Some(t)) if t <= change.at_secs => out.ttl_removals += 1,
                        (true, _) => out.findings.push(finding(
                            FindingKind::RemovedBeforeExpiry,
                            &segment,
                            seq,
                            "TTL removed a record before its expires_at".into(),
                        )),
                        (false, _) => out.findings.push(finding(
                            FindingKind::Deleted,
                            &segment,
                            seq,
                            "record deleted (not by TTL)".into(),
                        )),
                    }
                }
            }
        }

        // Export before anchoring, one object per day in this batch: a record counts as done
        // once anchored, so it must already be exported then. The key is fixed by the batch's
        // stream positions, so a retried batch rewrites the same object.
        for (day, (events, first, last)) in exports {
            let body = ocsf::gzip_lines(&events).map_err(|e| StoreError(e.to_string()))?;
            let key = format!("{}/{day}/{first}-{last}.json.gz", self.export_prefix);
            self.export.put(&key, body).await?;
            out.exported += events.len();
        }

        // Anchor: one digest per segment with new records.
        for (segment, records) in pending {
            let Some(st) = working.get_mut(&segment) else {
                continue;
            };
            let (Some(first), Some(last)) = (records.first(), records.last()) else {
                continue;
            };
            let payload = DigestPayload {
                version: DIGEST_VERSION,
                segment: segment.clone(),
                first_seq: first.seq,
                last_seq: last.seq,
                last_record_hash: last.hash.clone(),
                prev_digest_hash: st.last_digest_hash.clone(),
                last_ts_ms: last_ts.get(&segment).copied().unwrap_or(0),
                records,
            };
            let signed = digest::sign(payload, self.signer.as_ref())
                .await
                .map_err(|e| StoreError(e.to_string()))?;
            let stored = match self.digests.put_new(&signed).await? {
                PutOutcome::Created => {
                    out.digests_written += 1;
                    signed.payload
                }
                PutOutcome::Existing(e) if e.payload == signed.payload => e.payload,
                PutOutcome::Existing(e) => {
                    out.findings.push(finding(
                        FindingKind::DigestConflict,
                        &segment,
                        signed.payload.last_seq,
                        format!("{} already holds another digest", e.payload.object_key()),
                    ));
                    e.payload
                }
            };
            st.anchored_last = stored.last_seq;
            st.last_digest_hash = stored.hash();
            st.latest = Some(stored);
        }

        if cache.len() + working.len() > MAX_CACHED_SEGMENTS {
            cache.clear();
        }
        cache.extend(working);
        Ok(out)
    }
}

/// Logs each finding (one error line naming segment and seq) and counts them as the EMF metric
/// `VerificationFailures` (a zero count too, so the alarm's metric always has data).
pub fn report(outcome: &BatchOutcome) {
    for f in &outcome.findings {
        tracing::error!(
            audit_segment = f.segment,
            audit_seq = f.seq,
            finding = ?f.kind,
            detail = f.detail,
            "audit record failed verification"
        );
    }
    crate::metrics::emit_count(
        "audit-sentinel",
        FINDINGS_METRIC,
        outcome.findings.len() as u64,
    );
}

/// Converts the Lambda DynamoDB stream event (`aws_lambda_events`) into [`Change`]s.
pub mod lambda {
    use aws_lambda_events::event::dynamodb::{Event, EventRecord};
    use serde_dynamo::AttributeValue as Av;

    use super::{Change, ChangeKind, Field, Fields};

    fn field(v: &Av) -> Field {
        match v {
            Av::S(s) => Field::S(s.clone()),
            Av::N(n) => match n.parse::<u64>() {
                Ok(x) if x.to_string() == *n => Field::N(x),
                _ => Field::S(format!("\u{0}N:{n}")),
            },
            Av::L(items) => Field::L(
                items
                    .iter()
                    .map(|i| match i {
                        Av::S(s) => s.clone(),
                        other => format!("\u{0}{other:?}"),
                    })
                    .collect(),
            ),
            // Our writers never store these: kept as a marker, so hashes and seals fail on them.
            other => Field::S(format!("\u{0}{other:?}")),
        }
    }

    /// The item's attributes (the inverse of `dynamo::to_item`, as `dynamo::from_item` does).
    pub fn fields(item: &serde_dynamo::Item) -> Option<Fields> {
        let map: &std::collections::HashMap<String, Av> = item.as_ref();
        if map.is_empty() {
            return None;
        }
        Some(
            map.iter()
                .map(|(k, v)| (k.clone().into(), field(v)))
                .collect(),
        )
    }

    pub fn change(r: &EventRecord) -> Option<Change> {
        let kind = match r.event_name.as_str() {
            "INSERT" => ChangeKind::Insert,
            "MODIFY" => ChangeKind::Modify,
            "REMOVE" => ChangeKind::Remove,
            _ => return None,
        };
        let by_ttl = r
            .user_identity
            .as_ref()
            .is_some_and(|u| u.type_ == "Service" && u.principal_id == "dynamodb.amazonaws.com");
        Some(Change {
            kind,
            stream_seq: r.change.sequence_number.clone().unwrap_or_default(),
            new: fields(&r.change.new_image),
            old: fields(&r.change.old_image),
            by_ttl,
            at_secs: u64::try_from(r.change.approximate_creation_date_time.timestamp())
                .unwrap_or(0),
        })
    }

    pub fn changes(event: &Event) -> Vec<Change> {
        event.records.iter().filter_map(change).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::MemorySink;
    use crate::audit::digest::{LocalSigner, MemoryDigests, SignedDigest};
    use crate::audit::record::TEST_KEY;
    use crate::audit::{AuditEvent, AuditKey, AuditLog, AuditSettings, Decision};
    use crate::config::ContentMode;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    #[derive(Default)]
    struct Table(std::sync::Mutex<Vec<Fields>>);

    #[async_trait::async_trait]
    impl RecordLookup for Arc<Table> {
        async fn get(&self, segment: &str, seq: u64) -> Result<Option<Fields>, StoreError> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|f| key_of(f) == Some((segment.to_owned(), seq)))
                .cloned())
        }
    }

    #[derive(Default)]
    struct Exports(
        std::sync::Mutex<Vec<(String, Vec<u8>)>>,
        std::sync::atomic::AtomicBool,
    );

    #[async_trait::async_trait]
    impl ExportSink for Arc<Exports> {
        async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
            if self.1.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError("export bucket unavailable".into()));
            }
            self.0.lock().unwrap().push((key.to_owned(), body));
            Ok(())
        }
    }

    struct Rig {
        sentinel: Sentinel,
        digests: Arc<MemoryDigests>,
        exports: Arc<Exports>,
        table: Arc<Table>,
        signer_key: crate::audit::digest::DigestPublicKey,
    }

    fn rig() -> Rig {
        let signer = LocalSigner::generate().unwrap();
        let signer_key = signer.public_key().unwrap();
        let digests = Arc::new(MemoryDigests::default());
        let exports = Arc::new(Exports::default());
        let table = Arc::new(Table::default());
        Rig {
            sentinel: Sentinel::new(
                Box::new(digests.clone()),
                Box::new(signer),
                Box::new(table.clone()),
                Box::new(exports.clone()),
                "ocsf/api-activity/",
                OcsfContext {
                    product_version: "test".into(),
                },
            ),
            digests,
            exports,
            table,
            signer_key,
        }
    }

    async fn records(n: usize) -> Vec<Fields> {
        let sink = Arc::new(MemorySink::default());
        let log = AuditLog::new(
            Box::new(sink.clone()),
            AuditKey::new(TEST_KEY).unwrap(),
            AuditSettings {
                content_mode: ContentMode::Hash,
                full_text_max_bytes: 10,
                retention_days: 30,
                decision_shards: 1,
            },
            "predict",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        );
        for i in 0..n {
            let ev = AuditEvent {
                request_id: &format!("r{i}"),
                time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
                principal: None,
                route: "POST /v1/predict",
                model: None,
                decision: Decision::Denied,
                reason: "bad_signature",
                detail: None,
                policy_ids: &[],
                screen: None,
                prompt: None,
                output: None,
                source_ip: Some("10.0.0.1"),
                user_agent: None,
                latency: Duration::ZERO,
                extra: &[],
            };
            log.record(&ev).await.unwrap();
        }
        sink.records.lock().unwrap().clone()
    }

    fn insert(f: &Fields, i: usize) -> Change {
        Change {
            kind: ChangeKind::Insert,
            stream_seq: format!("{:021}", 100 + i),
            new: Some(f.clone()),
            old: None,
            by_ttl: false,
            at_secs: 1_800_000_000,
        }
    }

    #[tokio::test]
    async fn a_clean_stream_is_verified_anchored_and_exported() {
        let r = rig();
        let recs = records(5).await;
        *r.table.0.lock().unwrap() = recs.clone();
        let (a, b) = recs.split_at(3);
        let out = r
            .sentinel
            .process(
                &a.iter()
                    .enumerate()
                    .map(|(i, f)| insert(f, i))
                    .collect::<Vec<_>>(),
            )
            .await
            .unwrap();
        assert!(out.findings.is_empty(), "{out:?}");
        assert_eq!((out.verified, out.digests_written, out.exported), (3, 1, 3));
        // A fresh sentinel (another execution environment) continues the digest chain from S3.
        let fresh = Sentinel::new(
            Box::new(r.digests.clone()),
            Box::new(LocalSigner::generate().unwrap()),
            Box::new(r.table.clone()),
            Box::new(r.exports.clone()),
            "ocsf",
            OcsfContext {
                product_version: "t".into(),
            },
        );
        let out = fresh
            .process(
                &b.iter()
                    .enumerate()
                    .map(|(i, f)| insert(f, i + 3))
                    .collect::<Vec<_>>(),
            )
            .await
            .unwrap();
        assert!(out.findings.is_empty(), "{out:?}");
        let ds: Vec<SignedDigest> = r
            .digests
            .objects
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect();
        assert_eq!(ds.len(), 2);
        assert_eq!(ds[1].payload.prev_digest_hash, ds[0].payload.hash());
        assert_eq!((ds[1].payload.first_seq, ds[1].payload.last_seq), (4, 5));
        ds[0].verify(&r.signer_key).unwrap();
        let exported = r.exports.0.lock().unwrap();
        assert!(
            exported[0]
                .0
                .starts_with("ocsf/api-activity/eventDay=20270115/"),
            "{}",
            exported[0].0
        );
    }

    #[tokio::test]
    async fn tampering_in_the_stream_is_found() {
        let r = rig();
        let recs = records(4).await;
        *r.table.0.lock().unwrap() = recs.clone();
        // A forged link, an overwrite, a deletion and a TTL removal before expiry.
        let mut bad = recs[2].clone();
        bad.insert("prev_hash".into(), Field::S(GENESIS_HASH.into()));
        let mut changes = vec![insert(&recs[0], 0), insert(&recs[1], 1), insert(&bad, 2)];
        let mut edited = recs[1].clone();
        edited.insert("decision".into(), Field::S("allowed".into()));
        changes.push(Change {
            kind: ChangeKind::Modify,
            stream_seq: "900".into(),
            new: Some(edited),
            old: Some(recs[1].clone()),
            by_ttl: false,
            at_secs: 0,
        });
        changes.push(Change {
            kind: ChangeKind::Remove,
            stream_seq: "901".into(),
            new: None,
            old: Some(recs[0].clone()),
            by_ttl: false,
            at_secs: 0,
        });
        changes.push(Change {
            kind: ChangeKind::Remove,
            stream_seq: "902".into(),
            new: None,
            old: Some(recs[1].clone()),
            by_ttl: true,
            at_secs: 1_800_000_000,
        });
        let out = r.sentinel.process(&changes).await.unwrap();
        let kinds: Vec<(FindingKind, u64)> = out.findings.iter().map(|f| (f.kind, f.seq)).collect();
        assert_eq!(
            kinds,
            vec![
                (FindingKind::BrokenLink, 3),
                (FindingKind::Overwritten, 2),
                (FindingKind::Deleted, 1),
                (FindingKind::RemovedBeforeExpiry, 2),
            ]
        );
        // A record whose predecessor is gone from the table (and was never streamed here).
        let r2 = rig();
        *r2.table.0.lock().unwrap() = vec![recs[0].clone()];
        let out = r2.sentinel.process(&[insert(&recs[2], 0)]).await.unwrap();
        assert_eq!(out.findings[0].kind, FindingKind::MissingPredecessor);
    }

    #[tokio::test]
    async fn a_failed_batch_is_retried_without_loss_or_double_anchoring() {
        let r = rig();
        let recs = records(3).await;
        *r.table.0.lock().unwrap() = recs.clone();
        let batch: Vec<Change> = recs.iter().enumerate().map(|(i, f)| insert(f, i)).collect();
        r.exports.1.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(
            r.sentinel.process(&batch).await.is_err(),
            "export down: batch fails"
        );
        r.exports
            .1
            .store(false, std::sync::atomic::Ordering::SeqCst);
        // The retry finds the digest the failed attempt stored; nothing is reported twice.
        let out = r.sentinel.process(&batch).await.unwrap();
        assert!(out.findings.is_empty(), "{out:?}");
        assert_eq!(out.exported, 3);
        assert_eq!(r.digests.objects.lock().unwrap().len(), 1);
        // Redelivered once more after success: already anchored, not exported again.
        let out = r.sentinel.process(&batch).await.unwrap();
        assert_eq!((out.verified, out.exported, out.findings.len()), (0, 0, 0));
        // ...unless the content differs.
        let mut other = recs[1].clone();
        other.insert("reason".into(), Field::S("edited".into()));
        let out = r.sentinel.process(&[insert(&other, 9)]).await.unwrap();
        assert_eq!(out.findings[0].kind, FindingKind::Replayed);
    }

    #[test]
    fn lambda_event_converts_with_ttl_identity() {
        let event: aws_lambda_events::event::dynamodb::Event = serde_json::from_value(serde_json::json!({
            "Records": [{
                "eventID": "1", "eventName": "REMOVE", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"},
                "dynamodb": {"ApproximateCreationDateTime": 1800000000.0,
                    "Keys": {"segment": {"S": "a"}, "seq": {"N": "1"}},
                    "OldImage": {"segment": {"S": "a"}, "seq": {"N": "1"}, "roles": {"L": [{"S": "x"}]}, "n": {"N": "1.5"}},
                    "SequenceNumber": "42", "SizeBytes": 10, "StreamViewType": "NEW_AND_OLD_IMAGES"},
                "eventSourceARN": "arn:aws:dynamodb:us-east-1:1:table/AuditTable/stream/x"
            }]
        }))
        .unwrap();
        let c = lambda::changes(&event);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].kind, ChangeKind::Remove);
        assert!(c[0].by_ttl && c[0].new.is_none());
        let old = c[0].old.as_ref().unwrap();
        assert_eq!(old["seq"], Field::N(1));
        assert_eq!(old["roles"], Field::L(vec!["x".into()]));
        assert!(matches!(&old["n"], Field::S(v) if v.starts_with('\u{0}')));
        assert_eq!(
            (c[0].stream_seq.as_str(), c[0].at_secs),
            ("42", 1_800_000_000)
        );
    }
}
