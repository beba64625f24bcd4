//! Verification of the audit chain: HMACs, sequence numbers and links, per segment.
//!
//! Classification (a forger has no key, so any record it writes or edits fails its HMAC):
//! - `Modified`: a record whose HMAC fails while an authentic record follows it in the segment.
//! - `Inserted`: a record whose HMAC fails after the segment's last authentic record (or in a
//!   segment with no authentic record). A modified LAST record looks exactly like this.
//! - `Deleted`: a missing seq inside a segment, a missing prefix, or a predecessor segment that
//!   ends before the seq its successor's first record names (`prev_segment_seq`).
//! - `BrokenLink`: two authentic neighbours whose `prev_hash` does not match.
//! - `UnknownKey`, `Malformed`: no key for the record's `key_id`, or missing/ill-typed fields.
//!
//! TTL removes records once their `expires_at` has passed. A missing record's own `expires_at`
//! is gone with it, but a segment is written in time order with one retention, so it lies
//! between its neighbours': at least the predecessor's (or `segment_started_ms` + retention for
//! a missing prefix), at most the successor's. A missing seq is therefore `Deleted` while that
//! lower bound is in the future, **expired** (a note, counted in `Report::expired`) once the
//! successor's `expires_at` has passed, and **possibly expired** (a note) in between. A record
//! without `expires_at` (retention 0) never expires. Deleted records at the END of a segment are
//! invisible to a chain: the signed digests (`anchor`) and the sentinel's stream view cover
//! those (see docs/ratelimit-audit.md).
use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use super::record::{self, AuditKey, Fields, GENESIS_HASH, number as n, string as s};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    Modified,
    Inserted,
    Deleted,
    BrokenLink,
    UnknownKey,
    Malformed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    pub segment: String,
    pub seq: u64,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub segments: usize,
    pub records: usize,
    pub problems: Vec<Problem>,
    pub notes: Vec<String>,
    /// Missing seqs whose TTL had certainly passed (per the successor's `expires_at`).
    pub expired: usize,
    /// Missing seqs that may or may not have expired yet (between the neighbours' `expires_at`).
    pub maybe_expired: usize,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn count(&self, kind: ProblemKind) -> usize {
        self.problems.iter().filter(|p| p.kind == kind).count()
    }
}

struct Rec<'a> {
    fields: &'a Fields,
    authentic: bool,
}

/// Checks every record given (a whole table's scan). `keys`: every key version that may have
/// signed (AWSCURRENT and AWSPREVIOUS).
pub fn verify(records: &[Fields], keys: &[AuditKey], now: SystemTime) -> Report {
    let mut report = Report {
        records: records.len(),
        ..Report::default()
    };
    let keys: HashMap<&str, &AuditKey> = keys.iter().map(|k| (k.id(), k)).collect();
    let mut segments: BTreeMap<&str, BTreeMap<u64, Rec<'_>>> = BTreeMap::new();
    for f in records {
        let (Some(seg), Some(seq)) = (s(f, "segment"), n(f, "seq")) else {
            report.problems.push(Problem {
                kind: ProblemKind::Malformed,
                segment: s(f, "segment").unwrap_or("?").to_owned(),
                seq: 0,
                detail: "no segment or integer seq".into(),
            });
            continue;
        };
        let authentic = match s(f, "key_id").and_then(|id| keys.get(id)) {
            Some(k) => k.verify(f),
            None => {
                report.problems.push(Problem {
                    kind: ProblemKind::UnknownKey,
                    segment: seg.to_owned(),
                    seq,
                    detail: format!("key_id {:?} matches no key", s(f, "key_id")),
                });
                continue;
            }
        };
        segments.entry(seg).or_default().insert(
            seq,
            Rec {
                fields: f,
                authentic,
            },
        );
    }
    report.segments = segments.len();
    let now_ms = super::millis(now);
    let mut last_authentic: HashMap<&str, u64> = HashMap::new();
    for (seg, recs) in &segments {
        let problem = |kind, seq, detail: String| Problem {
            kind,
            segment: (*seg).to_owned(),
            seq,
            detail,
        };
        let max_auth = recs
            .iter()
            .filter(|(_, r)| r.authentic)
            .map(|(q, _)| *q)
            .max();
        if let Some(m) = max_auth {
            last_authentic.insert(seg, m);
        }
        let mut expected = 1u64;
        let mut prev: Option<&Fields> = None;
        for (seq, rec) in recs {
            if *seq > expected {
                let (first, last) = (expected, seq - 1);
                match missing_expiry(prev, rec.fields, now_ms / 1000) {
                    Expiry::Expired => {
                        report.expired += (last - first + 1) as usize;
                        report.notes.push(format!(
                            "{seg}: seq {first}..={last} absent, expired by TTL (expires_at passed)"
                        ));
                    }
                    Expiry::Maybe => {
                        report.maybe_expired += (last - first + 1) as usize;
                        report.notes.push(format!(
                            "{seg}: seq {first}..={last} absent; their expires_at lies between \
                             their neighbours', one passed, one not: TTL may have removed them"
                        ));
                    }
                    Expiry::NotYet => {
                        for q in first..=last {
                            report.problems.push(problem(
                                ProblemKind::Deleted,
                                q,
                                "missing seq (its TTL has not passed)".into(),
                            ));
                        }
                    }
                }
            }
            prev = Some(rec.fields);
            expected = seq + 1;
            if !rec.authentic {
                let kind = if max_auth.is_some_and(|m| m > *seq) {
                    ProblemKind::Modified
                } else {
                    ProblemKind::Inserted
                };
                report
                    .problems
                    .push(problem(kind, *seq, "HMAC does not verify".into()));
                continue;
            }
            let prev_ok = if *seq == 1 {
                s(rec.fields, "prev_hash") == Some(GENESIS_HASH)
            } else {
                match recs.get(&(seq - 1)) {
                    Some(p) if p.authentic => {
                        s(rec.fields, "prev_hash") == Some(record::record_hash(p.fields).as_str())
                    }
                    // A missing or forged predecessor is already reported.
                    _ => true,
                }
            };
            if !prev_ok {
                report.problems.push(problem(
                    ProblemKind::BrokenLink,
                    *seq,
                    "prev_hash does not match the previous record".into(),
                ));
            }
        }
    }
    // A segment replaced after a failed write must reach the seq its successor names.
    for (seg, recs) in &segments {
        for rec in recs.values().filter(|r| r.authentic) {
            let (Some(prev), Some(prev_seq)) = (
                s(rec.fields, "prev_segment"),
                n(rec.fields, "prev_segment_seq"),
            ) else {
                continue;
            };
            let reached = last_authentic.get(prev).copied().unwrap_or(0);
            if prev_seq > reached && !prefix_may_have_expired(rec.fields, now_ms) {
                for q in reached + 1..=prev_seq {
                    report.problems.push(Problem {
                        kind: ProblemKind::Deleted,
                        segment: prev.to_owned(),
                        seq: q,
                        detail: format!("segment {seg} says {prev} reached seq {prev_seq}"),
                    });
                }
            }
        }
    }
    report
}

enum Expiry {
    /// Certainly past `expires_at`: TTL may have removed them.
    Expired,
    /// Between the bounds.
    Maybe,
    /// Certainly not yet expired (or never expiring): a deletion.
    NotYet,
}

/// Where the `expires_at` of records missing between `prev` (None: a missing prefix) and `next`
/// stands at `now_secs` (see the module docs).
fn missing_expiry(prev: Option<&Fields>, next: &Fields, now_secs: u64) -> Expiry {
    let Some(upper) = n(next, "expires_at") else {
        // No TTL on this segment's records: nothing expires.
        return Expiry::NotYet;
    };
    let lower = match prev {
        Some(p) => n(p, "expires_at"),
        None => match (n(next, "segment_started_ms"), n(next, "retention_days")) {
            (Some(start), Some(days)) => {
                Some((start / 1000).saturating_add(days.saturating_mul(86_400)))
            }
            _ => None,
        },
    };
    if now_secs >= upper {
        Expiry::Expired
    } else if lower.is_some_and(|l| now_secs < l) {
        Expiry::NotYet
    } else {
        Expiry::Maybe
    }
}

/// TTL may have removed records of this segment written before `rec` only if the segment's
/// first record could already be past its retention.
fn prefix_may_have_expired(rec: &Fields, now_ms: u64) -> bool {
    match (n(rec, "segment_started_ms"), n(rec, "retention_days")) {
        (Some(start), Some(days)) => {
            now_ms >= start.saturating_add(days.saturating_mul(86_400_000))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::TEST_KEY;
    use crate::audit::{AuditEvent, AuditLog, AuditSettings, Decision, MemorySink};
    use crate::config::ContentMode;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    const T0: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    async fn write(log: &AuditLog, rid: &str) -> bool {
        write_at(log, rid, T0).await
    }

    async fn write_at(log: &AuditLog, rid: &str, secs: u64) -> bool {
        let ev = AuditEvent {
            request_id: rid,
            time: at(secs),
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
            source_ip: None,
            user_agent: None,
            latency: Duration::ZERO,
            extra: &[],
        };
        log.record(&ev).await.is_ok()
    }

    fn log(sink: &Arc<MemorySink>) -> AuditLog {
        AuditLog::new(
            Box::new(sink.clone()),
            AuditKey::new(TEST_KEY).unwrap(),
            AuditSettings {
                content_mode: ContentMode::Hash,
                full_text_max_bytes: 10,
                retention_days: 1,
                decision_shards: 1,
            },
            "authorizer",
            at(T0),
        )
    }

    #[tokio::test]
    async fn a_missing_prefix_is_deletion_until_the_retention_has_passed() {
        let sink = Arc::new(MemorySink::default());
        let l = log(&sink);
        for i in 0..5 {
            assert!(write(&l, &format!("r{i}")).await);
        }
        let mut recs = sink.records.lock().unwrap().clone();
        recs.drain(..2);
        let keys = [AuditKey::new(TEST_KEY).unwrap()];
        let early = verify(&recs, &keys, at(T0 + 3600));
        assert_eq!(early.count(ProblemKind::Deleted), 2, "{early:?}");
        let late = verify(&recs, &keys, at(T0 + 86_400));
        assert!(late.is_clean() && late.notes.len() == 1, "{late:?}");
        assert_eq!((late.expired, late.maybe_expired), (2, 0));
    }

    /// Records of one segment written over a day (retention 1 day): a missing record is
    /// deleted before its earliest possible expiry, expired after its latest, possible between.
    #[tokio::test]
    async fn expired_records_are_told_apart_from_deleted_ones() {
        let sink = Arc::new(MemorySink::default());
        let l = log(&sink);
        for (i, t) in [0u64, 3_600, 7_200, 10_800].iter().enumerate() {
            assert!(write_at(&l, &format!("r{i}"), T0 + t).await);
        }
        let mut recs = sink.records.lock().unwrap().clone();
        recs.remove(2); // seq 3, written at T0 + 2 h: expires at T0 + 1 d + 2 h
        let keys = [AuditKey::new(TEST_KEY).unwrap()];
        // Before the predecessor's expiry (T0 + 1 d + 1 h): a deletion.
        let r = verify(&recs, &keys, at(T0 + 86_400 + 1_800));
        assert_eq!(r.count(ProblemKind::Deleted), 1, "{r:?}");
        // Between the neighbours' expiry times: possibly expired.
        let r = verify(&recs, &keys, at(T0 + 86_400 + 3 * 1_800));
        assert!(r.is_clean() && r.maybe_expired == 1, "{r:?}");
        // After the successor's (T0 + 1 d + 3 h): expired.
        let r = verify(&recs, &keys, at(T0 + 86_400 + 3 * 3_600));
        assert!(r.is_clean() && r.expired == 1, "{r:?}");
    }

    #[tokio::test]
    async fn a_truncated_predecessor_segment_is_reported() {
        let sink = Arc::new(MemorySink::default());
        let l = log(&sink);
        for i in 0..3 {
            assert!(write(&l, &format!("a{i}")).await);
        }
        sink.failing.store(true, Ordering::SeqCst);
        assert!(!write(&l, "lost").await);
        sink.failing.store(false, Ordering::SeqCst);
        assert!(write(&l, "b0").await);
        let mut recs = sink.records.lock().unwrap().clone();
        let keys = [AuditKey::new(TEST_KEY).unwrap()];
        assert!(verify(&recs, &keys, at(T0)).is_clean());
        // Delete the old segment's LAST record: no chain link shows it, the marker does.
        recs.remove(2);
        let r = verify(&recs, &keys, at(T0));
        assert_eq!(r.count(ProblemKind::Deleted), 1, "{r:?}");
        assert_eq!(r.problems[0].seq, 3);
    }
}
