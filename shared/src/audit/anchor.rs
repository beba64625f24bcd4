//! The table checked against the signed digests, with public material only (the sentinel's
//! public key; no HMAC key). What this finds, a party holding the HMAC key cannot hide: the
//! anchored hash of a record is fixed in a digest it cannot rewrite or delete (Object Lock,
//! COMPLIANCE mode) and cannot re-sign (only the sentinel may use the KMS key).
//!
//! Per segment, every seq a digest lists is compared with the table:
//! - `Deleted`: an anchored record (its request id) is gone from the segment and its anchored
//!   `expires_at` has not passed (after it: a note, `expired`, since TTL may have removed it).
//! - `Modified`: the anchored record is at its seq with another hash (an edit, even re-sealed with
//!   the real key; records re-linked after an edit change too, so each is reported).
//! - `Inserted`: an anchored seq holds a request no digest anchors (the chain was shifted up to
//!   make room, or the record replaced).
//! - `Moved`: an anchored record sits at another seq (the chain was shifted over a deletion or an
//!   insertion).
//! - `DigestInvalid`, `DigestChainBroken`, `DigestConflict`: a digest whose signature or shape
//!   fails, a segment whose digests do not chain (`prev_digest_hash`), or one digest key holding
//!   versions with different payloads.
//! - `BrokenLink`: past the last digest (the unanchored tail), a record whose `prev_hash` is not
//!   the hash of its predecessor (a public check; the keyed verifier adds the HMACs).
//!
//! Records after a segment's last digest, and segments with no digest at all, are the
//! **unanchored tail**: reported as ranges, not problems (the sentinel anchors them within its
//! batching window). The limits are in docs/ratelimit-audit.md.
use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use super::digest::{AnchoredRecord, DigestPublicKey, GENESIS_DIGEST, SignedDigest};
use super::record::{self, Fields, GENESIS_HASH, number as n, string as s};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnchorProblemKind {
    Deleted,
    Modified,
    Inserted,
    Moved,
    BrokenLink,
    DigestInvalid,
    DigestChainBroken,
    DigestConflict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorProblem {
    pub kind: AnchorProblemKind,
    pub segment: String,
    pub seq: u64,
    pub detail: String,
}

/// Records of one segment not (yet) covered by a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unanchored {
    pub segment: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub records: usize,
}

#[derive(Debug, Default)]
pub struct AnchorReport {
    pub digests: usize,
    pub segments_anchored: usize,
    pub records_anchored: usize,
    pub problems: Vec<AnchorProblem>,
    pub unanchored: Vec<Unanchored>,
    pub notes: Vec<String>,
}

impl AnchorReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn count(&self, kind: AnchorProblemKind) -> usize {
        self.problems.iter().filter(|p| p.kind == kind).count()
    }

    pub fn unanchored_records(&self) -> usize {
        self.unanchored.iter().map(|u| u.records).sum()
    }
}

/// One stored digest object version (several versions of one key are possible in a versioned
/// bucket; Object Lock keeps every one).
#[derive(Debug, Clone)]
pub struct StoredDigest {
    pub key: String,
    pub digest: SignedDigest,
}

/// Checks `records` (a whole table's scan) against `digests` (every version of every digest
/// object). `now` decides whether an anchored record's TTL has passed.
pub fn check(
    records: &[Fields],
    digests: &[StoredDigest],
    key: &DigestPublicKey,
    now: SystemTime,
) -> AnchorReport {
    let now_secs = super::millis(now) / 1000;
    let mut report = AnchorReport {
        digests: digests.len(),
        ..AnchorReport::default()
    };
    let problem = |kind, segment: &str, seq, detail: String| AnchorProblem {
        kind,
        segment: segment.to_owned(),
        seq,
        detail,
    };

    // Valid digests per segment, keyed by last_seq; diverging versions of one key are a conflict.
    let mut by_segment: BTreeMap<String, BTreeMap<u64, &SignedDigest>> = BTreeMap::new();
    let mut by_key: HashMap<&str, &SignedDigest> = HashMap::new();
    for d in digests {
        if let Err(e) = d.digest.verify(key) {
            report.problems.push(problem(
                AnchorProblemKind::DigestInvalid,
                &d.digest.payload.segment,
                d.digest.payload.last_seq,
                format!("{}: {e}", d.key),
            ));
            continue;
        }
        if d.key != d.digest.payload.object_key() {
            report.problems.push(problem(
                AnchorProblemKind::DigestInvalid,
                &d.digest.payload.segment,
                d.digest.payload.last_seq,
                format!(
                    "{} holds the digest of {}",
                    d.key,
                    d.digest.payload.object_key()
                ),
            ));
            continue;
        }
        if let Some(prev) = by_key.get(d.key.as_str()) {
            if prev.payload != d.digest.payload {
                report.problems.push(problem(
                    AnchorProblemKind::DigestConflict,
                    &d.digest.payload.segment,
                    d.digest.payload.last_seq,
                    format!("{} has versions with different payloads", d.key),
                ));
            }
            continue;
        }
        by_key.insert(&d.key, &d.digest);
        by_segment
            .entry(d.digest.payload.segment.clone())
            .or_default()
            .insert(d.digest.payload.last_seq, &d.digest);
    }

    // The table, per segment.
    let mut table: BTreeMap<&str, BTreeMap<u64, &Fields>> = BTreeMap::new();
    for f in records {
        if let (Some(seg), Some(seq)) = (s(f, "segment"), n(f, "seq")) {
            table.entry(seg).or_default().insert(seq, f);
        }
    }

    for (segment, chain) in &by_segment {
        report.segments_anchored += 1;
        // The digests of a segment chain: each names the hash of the one before.
        let mut prev_hash = GENESIS_DIGEST.to_owned();
        let mut prev_last = 0u64;
        let mut anchored: BTreeMap<u64, &AnchoredRecord> = BTreeMap::new();
        for (last, d) in chain {
            let p = &d.payload;
            if p.prev_digest_hash != prev_hash || p.first_seq <= prev_last {
                report.problems.push(problem(
                    AnchorProblemKind::DigestChainBroken,
                    segment,
                    *last,
                    format!(
                        "digest {} does not follow the digest ending at seq {prev_last}",
                        p.object_key()
                    ),
                ));
            }
            for r in &p.records {
                anchored.insert(r.seq, r);
            }
            prev_hash = p.hash();
            prev_last = *last;
        }
        report.records_anchored += anchored.len();
        let empty = BTreeMap::new();
        let rows = table.get(segment.as_str()).unwrap_or(&empty);
        let rid_of = |f: &Fields| s(f, "request_id").unwrap_or_default().to_owned();
        // Where each request sits in the table, and which requests the digests anchor.
        let table_rid: HashMap<String, u64> = rows.iter().map(|(q, f)| (rid_of(f), *q)).collect();
        let anchored_rids: HashMap<&str, u64> = anchored
            .iter()
            .map(|(q, a)| (a.request_id.as_str(), *q))
            .collect();
        for (seq, a) in &anchored {
            let row = rows.get(seq);
            if row.is_some_and(|f| record::record_hash(f) == a.hash) {
                continue;
            }
            // Where did the anchored record go?
            match table_rid.get(a.request_id.as_str()) {
                None if a.expires_at.is_some_and(|t| now_secs >= t) => report
                    .notes
                    .push(format!("{segment} seq {seq}: absent, expired by TTL")),
                None => report.problems.push(problem(
                    AnchorProblemKind::Deleted,
                    segment,
                    *seq,
                    format!("anchored record {} is missing", a.request_id),
                )),
                Some(q) if q == seq => report.problems.push(problem(
                    AnchorProblemKind::Modified,
                    segment,
                    *seq,
                    format!(
                        "anchored hash {}…, table has {}…",
                        &a.hash[..12],
                        row.map(|f| record::record_hash(f))
                            .unwrap_or_default()
                            .get(..12)
                            .unwrap_or("")
                    ),
                )),
                Some(q) => report.problems.push(problem(
                    AnchorProblemKind::Moved,
                    segment,
                    *seq,
                    format!("anchored record {} now sits at seq {q}", a.request_id),
                )),
            }
            // What sits at this anchored seq instead?
            if let Some(f) = row {
                let rid = rid_of(f);
                if rid != a.request_id && !anchored_rids.contains_key(rid.as_str()) {
                    report.problems.push(problem(
                        AnchorProblemKind::Inserted,
                        segment,
                        *seq,
                        format!("request {rid} is in no digest"),
                    ));
                }
            }
        }
        // The tail past the last digest: reported, and its links checked publicly.
        let tail: Vec<(&u64, &&Fields)> = rows.range(prev_last + 1..).collect();
        let last_hash = anchored.get(&prev_last).map(|a| a.hash.as_str());
        tail_report(&mut report, segment, prev_last, last_hash, rows, &tail);
    }

    // Segments no digest names: all unanchored.
    for (segment, rows) in &table {
        if by_segment.contains_key(*segment) {
            continue;
        }
        let tail: Vec<(&u64, &&Fields)> = rows.range(..).collect();
        tail_report(&mut report, segment, 0, None, rows, &tail);
    }
    report
}

fn tail_report(
    report: &mut AnchorReport,
    segment: &str,
    anchored_last: u64,
    anchored_last_hash: Option<&str>,
    rows: &BTreeMap<u64, &Fields>,
    tail: &[(&u64, &&Fields)],
) {
    let (Some(first), Some(last)) = (tail.first(), tail.last()) else {
        return;
    };
    report.unanchored.push(Unanchored {
        segment: segment.to_owned(),
        first_seq: *first.0,
        last_seq: *last.0,
        records: tail.len(),
    });
    for (seq, f) in tail {
        let want = if **seq == 1 {
            Some(GENESIS_HASH.to_owned())
        } else if **seq == anchored_last + 1 && anchored_last > 0 {
            anchored_last_hash.map(str::to_owned)
        } else {
            rows.get(&(**seq - 1)).map(|p| record::record_hash(p))
        };
        if let Some(want) = want
            && s(f, "prev_hash") != Some(want.as_str())
        {
            report.problems.push(AnchorProblem {
                kind: AnchorProblemKind::BrokenLink,
                segment: segment.to_owned(),
                seq: **seq,
                detail: "prev_hash is not the hash of the previous record".into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::digest::{AnchoredRecord, DIGEST_VERSION, DigestPayload, LocalSigner, sign};
    use crate::audit::record::{AuditKey, Field, HMAC_ATTR, TEST_KEY};
    use std::time::Duration;

    fn chain(segment: &str, n: u64, expires_at: u64) -> Vec<Fields> {
        let key = AuditKey::new(TEST_KEY).unwrap();
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let mut f = Fields::new();
                f.insert("segment".into(), Field::S(segment.into()));
                f.insert("seq".into(), Field::N(seq));
                f.insert("prev_hash".into(), Field::S(prev.clone()));
                f.insert("key_id".into(), Field::S(key.id().into()));
                f.insert("decision".into(), Field::S("allowed".into()));
                f.insert("request_id".into(), Field::S(format!("{segment}-r{seq}")));
                f.insert("expires_at".into(), Field::N(expires_at));
                f.insert(HMAC_ATTR.into(), Field::S(key.sign(&f)));
                prev = record::record_hash(&f);
                f
            })
            .collect()
    }

    async fn digests(
        records: &[Fields],
        spans: &[(u64, u64)],
        signer: &LocalSigner,
    ) -> Vec<StoredDigest> {
        let mut out = Vec::new();
        let mut prev = GENESIS_DIGEST.to_owned();
        for (a, b) in spans {
            let recs: Vec<AnchoredRecord> = records[(*a - 1) as usize..*b as usize]
                .iter()
                .map(|f| AnchoredRecord {
                    seq: n(f, "seq").unwrap(),
                    hash: record::record_hash(f),
                    request_id: s(f, "request_id").unwrap().into(),
                    expires_at: n(f, "expires_at"),
                })
                .collect();
            let p = DigestPayload {
                version: DIGEST_VERSION,
                segment: s(&records[0], "segment").unwrap().into(),
                first_seq: *a,
                last_seq: *b,
                last_record_hash: recs.last().unwrap().hash.clone(),
                records: recs,
                prev_digest_hash: prev.clone(),
                last_ts_ms: 0,
            };
            prev = p.hash();
            let d = sign(p, signer).await.unwrap();
            out.push(StoredDigest {
                key: d.payload.object_key(),
                digest: d,
            });
        }
        out
    }

    fn reseal(f: &mut Fields) {
        f.remove(HMAC_ATTR);
        let sig = AuditKey::new(TEST_KEY).unwrap().sign(f);
        f.insert(HMAC_ATTR.into(), Field::S(sig));
    }

    fn relink(recs: &mut [Fields], from: usize) {
        for i in from..recs.len() {
            if i > 0 {
                let h = record::record_hash(&recs[i - 1]);
                recs[i].insert("prev_hash".into(), Field::S(h));
            }
            let seq = i as u64 + 1;
            recs[i].insert("seq".into(), Field::N(seq));
            reseal(&mut recs[i]);
        }
    }

    const FUTURE: u64 = 4_000_000_000;

    #[tokio::test]
    async fn untouched_table_is_clean_and_the_tail_is_reported() {
        let signer = LocalSigner::generate().unwrap();
        let key = signer.public_key().unwrap();
        let recs = chain("s", 12, FUTURE);
        let ds = digests(&recs, &[(1, 5), (6, 10)], &signer).await;
        let r = check(&recs, &ds, &key, SystemTime::now());
        assert!(r.is_clean(), "{r:?}");
        assert_eq!((r.records_anchored, r.unanchored_records()), (10, 2));
        assert_eq!(r.unanchored[0].first_seq, 11);
    }

    #[tokio::test]
    async fn a_record_rewritten_and_resealed_with_the_real_key_is_modified() {
        let signer = LocalSigner::generate().unwrap();
        let key = signer.public_key().unwrap();
        let mut recs = chain("s", 10, FUTURE);
        let ds = digests(&recs, &[(1, 10)], &signer).await;
        // The attacker holds the HMAC key: edit seq 4, re-seal, re-link everything after it.
        recs[3].insert("decision".into(), Field::S("forbidden".into()));
        relink(&mut recs, 3);
        assert!(
            crate::audit::verify::verify(
                &recs,
                &[AuditKey::new(TEST_KEY).unwrap()],
                SystemTime::now()
            )
            .is_clean(),
            "the keyed check alone is fooled"
        );
        let r = check(&recs, &ds, &key, SystemTime::now());
        assert!(r.count(AnchorProblemKind::Modified) >= 1, "{r:?}");
        assert_eq!(r.problems[0].seq, 4);
    }

    #[tokio::test]
    async fn deleted_inserted_and_expired_records() {
        let signer = LocalSigner::generate().unwrap();
        let key = signer.public_key().unwrap();
        let recs = chain("s", 8, FUTURE);
        let ds = digests(&recs, &[(1, 8)], &signer).await;
        // Deleted in the middle, no cover-up.
        let mut del = recs.clone();
        del.remove(4);
        let r = check(&del, &ds, &key, SystemTime::now());
        assert_eq!(r.count(AnchorProblemKind::Deleted), 1, "{r:?}");
        assert_eq!(r.problems[0].seq, 5);
        // Deleted and the chain shifted down and re-sealed to hide it.
        let mut shifted = recs.clone();
        shifted.remove(2);
        relink(&mut shifted, 2);
        let r = check(&shifted, &ds, &key, SystemTime::now());
        assert_eq!(r.count(AnchorProblemKind::Deleted), 1, "{r:?}");
        assert_eq!(r.problems[0].seq, 3, "{r:?}");
        assert_eq!(
            r.count(AnchorProblemKind::Moved),
            5,
            "seqs 4..=8 moved down: {r:?}"
        );
        assert_eq!(r.count(AnchorProblemKind::Inserted), 0, "{r:?}");
        // Inserted at seq 3, the rest shifted up and re-sealed.
        let mut ins = recs.clone();
        let mut forged = recs[2].clone();
        forged.insert("decision".into(), Field::S("forged".into()));
        forged.insert("request_id".into(), Field::S("forged".into()));
        ins.insert(2, forged);
        relink(&mut ins, 2);
        let r = check(&ins, &ds, &key, SystemTime::now());
        assert_eq!(r.count(AnchorProblemKind::Inserted), 1, "{r:?}");
        assert!(
            r.problems
                .iter()
                .any(|p| p.kind == AnchorProblemKind::Inserted && p.seq == 3)
        );
        assert_eq!(
            r.count(AnchorProblemKind::Moved),
            6,
            "seqs 3..=8 moved up: {r:?}"
        );
        assert_eq!(r.count(AnchorProblemKind::Deleted), 0, "{r:?}");
        assert_eq!(
            r.unanchored_records(),
            1,
            "the shifted last record is unanchored: {r:?}"
        );
        // Expired: missing but past its anchored expires_at.
        let old = chain("s", 3, 1_000);
        let ds_old = digests(&old, &[(1, 3)], &signer).await;
        let mut gone = old.clone();
        gone.remove(0);
        let r = check(
            &gone,
            &ds_old,
            &key,
            SystemTime::UNIX_EPOCH + Duration::from_secs(2_000),
        );
        assert!(r.is_clean() && r.notes.len() == 1, "{r:?}");
        let r = check(
            &gone,
            &ds_old,
            &key,
            SystemTime::UNIX_EPOCH + Duration::from_secs(500),
        );
        assert_eq!(r.count(AnchorProblemKind::Deleted), 1, "{r:?}");
    }

    #[tokio::test]
    async fn digests_must_verify_chain_and_agree() {
        let signer = LocalSigner::generate().unwrap();
        let key = signer.public_key().unwrap();
        let recs = chain("s", 6, FUTURE);
        let mut ds = digests(&recs, &[(1, 3), (4, 6)], &signer).await;
        // A forged digest (another key) and a gap in the digest chain.
        let forger = LocalSigner::generate().unwrap();
        let forged = digests(&recs, &[(1, 6)], &forger).await;
        let r = check(&recs, &forged, &key, SystemTime::now());
        assert_eq!(r.count(AnchorProblemKind::DigestInvalid), 1, "{r:?}");
        let r = check(&recs, &ds[1..], &key, SystemTime::now());
        assert_eq!(r.count(AnchorProblemKind::DigestChainBroken), 1, "{r:?}");
        // A second version of a digest key with another payload.
        let mut other = recs.clone();
        other[1].insert("decision".into(), Field::S("x".into()));
        relink(&mut other, 1);
        let alt = digests(&other, &[(1, 3)], &signer).await;
        ds.push(alt[0].clone());
        let r = check(&recs, &ds, &key, SystemTime::now());
        assert_eq!(r.count(AnchorProblemKind::DigestConflict), 1, "{r:?}");
        // A broken link in the unanchored tail.
        let mut tail = chain("t", 3, FUTURE);
        tail[2].insert("prev_hash".into(), Field::S(GENESIS_HASH.into()));
        let r = check(&tail, &[], &key, SystemTime::now());
        assert_eq!(r.count(AnchorProblemKind::BrokenLink), 1, "{r:?}");
    }
}
