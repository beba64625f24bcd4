//! Tamper-evident audit log.
//!
//! Chain design: each execution environment writes its own chain *segment* (a random id drawn at
//! cold start). Every record carries `segment`, `seq` (1, 2, 3, …), `prev_hash` (SHA-256 of the
//! previous record's canonical form, `GENESIS_HASH` for seq 1) and `hmac` (HMAC-SHA256 of its own
//! canonical form, key from Secrets Manager). The key is (segment, seq) and every write is a
//! `PutItem` with `attribute_not_exists`, so nothing is overwritten.
//!
//! The chain state sits behind a tokio `Mutex` held across the write: records are sealed and
//! written strictly in seq order even under concurrent calls. If a write fails (unknown whether
//! it landed), the environment starts a NEW segment whose first record names the old segment and
//! its last confirmed seq (`prev_segment`, `prev_segment_seq`): a segment never has a gap of our
//! own making, and the verifier can tell a truncated predecessor.
//!
//! Beyond the writers (who hold the key and whose `PutItem` can overwrite): `sentinel` consumes
//! the table's stream, re-verifies each record with public material and anchors signed digests
//! (`digest`) in an Object Lock bucket; `anchor` checks the table against them with the public
//! key only; `ocsf` exports records for a SIEM; `reader` serves `GET /v1/audit`. What each layer
//! proves and what it cannot is in docs/ratelimit-audit.md.
//!
//! Features: `audit-core` (record, canonical form, keyed verifier, table reads) is what every
//! audit tool needs; `audit` adds the writer; `audit-anchor` the digests and their S3/KMS
//! adapters; `audit-sentinel` and `audit-reader` the two functions' logic.

pub mod dynamo;
pub mod record;
pub mod verify;
#[cfg(feature = "audit")]
mod writer;

#[cfg(feature = "audit-anchor")]
pub mod anchor;
#[cfg(feature = "audit-anchor")]
pub mod anchor_aws;
#[cfg(feature = "audit-anchor")]
pub mod digest;
#[cfg(feature = "audit-sentinel")]
pub mod ocsf;
#[cfg(feature = "audit-reader")]
pub mod reader;
#[cfg(feature = "audit-sentinel")]
pub mod sentinel;

pub use record::{AuditKey, Field, Fields, GENESIS_HASH, HMAC_ATTR};
#[cfg(feature = "audit")]
pub use writer::*;

/// Terminal outcome of a request, as stored in `decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Invalid,
    Forbidden,
    RateLimited,
    Blocked,
    BackendError,
    /// A dependency (rate counter) failed: the request was refused with 503.
    Unavailable,
    /// The authorizer denied the token (or the source IP).
    Denied,
    /// Predict got no principal from the authorizer context (API Gateway misconfigured?): 401.
    Unauthenticated,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Invalid => "invalid",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::Blocked => "blocked",
            Self::BackendError => "backend_error",
            Self::Unavailable => "unavailable",
            Self::Denied => "denied",
            Self::Unauthenticated => "unauthenticated",
        }
    }

    /// The decision named `s` (its `as_str`), if any.
    pub fn parse(s: &str) -> Option<Decision> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }

    pub const ALL: [Decision; 9] = [
        Self::Allowed,
        Self::Invalid,
        Self::Forbidden,
        Self::RateLimited,
        Self::Blocked,
        Self::BackendError,
        Self::Unavailable,
        Self::Denied,
        Self::Unauthenticated,
    ];

    /// The CloudWatch metric this decision counts under (see `crate::metrics`); the alarms in
    /// `infra/template.yaml` use these names.
    pub fn metric_name(self) -> &'static str {
        match self {
            Decision::Allowed => "Allowed",
            Decision::Invalid => "Invalid",
            Decision::Forbidden => "Forbidden",
            Decision::RateLimited => "RateLimited",
            Decision::Blocked => "Blocked",
            Decision::BackendError => "BackendError",
            Decision::Unavailable => "Unavailable",
            Decision::Denied => "Denied",
            Decision::Unauthenticated => "Unauthenticated",
        }
    }
}

pub use crate::clock::unix_millis as millis;

/// Which by-decision partition a request lands in: spreads one day's writes over
/// `shards` partition keys, so no single key takes the whole request rate.
pub fn shard_of(request_id: &str, shards: u32) -> u32 {
    let h = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, request_id.as_bytes());
    let b = h.as_ref();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) % shards.max(1)
}

pub fn decision_day_key(decision: &str, day: &str, shard: u32) -> String {
    format!("{decision}#{day}#{shard}")
}
