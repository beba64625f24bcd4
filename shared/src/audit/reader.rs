//! `GET /v1/audit`: the audit log for auditors, served by its own function
//! (`audit-reader`) whose role may only `Query` the audit table, read the digests and fetch the
//! sentinel's public key. It never writes anything and holds no HMAC key: a reader that could
//! write the table would be one more writer to distrust.
//!
//! Query parameters (all optional; anything else, or a repeated one, is a 400):
//! - `principal`: records of that principal (index `by_principal`);
//! - `decision`: one of [`Decision::ALL`] (index `by_decision`, one query per day and shard);
//! - `since`, `until`: RFC 3339 times (default: the 24 h before now; at most 400 days apart);
//! - `limit`: 1..=100 records per page (default 50);
//! - `cursor`: the `next_cursor` of the previous page, with the same other parameters.
//!
//! Order is oldest first. A page can be short, even empty, with a `next_cursor`: each request
//! reads at most [`MAX_DAYS_PER_PAGE`] days of partitions (without a principal the records of a
//! day are spread over every decision and shard), so a client follows `next_cursor` until it is
//! absent. The cursor is opaque (base64url JSON: the last position returned and a fingerprint of
//! the query); it only says where to continue, and never widens what the caller may see.
//!
//! Scope: an auditor whose token names a tenant sees only that tenant's records (a DynamoDB
//! filter on `tenant`; authorizer denials carry no tenant and are not shown to them); an auditor
//! without a tenant sees every record. `prompt_text`/`output_text` (stored only in `full`
//! content mode) are returned only when Cedar permits `read_audit_content` to this principal;
//! otherwise they are removed and `content_withheld: true` says so.
//!
//! Each record carries `verified` and `verification`: `anchored` when a signed digest (checked
//! with the sentinel's public key) lists the record's seq with the record's exact SHA-256;
//! `not_anchored_yet` when no digest covers it yet (the sentinel's batching window);
//! `mismatch` when the covering digest anchors another hash (the record changed after the
//! sentinel saw it); `digest_invalid` when the covering digest's signature fails. This is the
//! public check: the HMAC (was the writer genuine?) is `cargo xtask audit-verify`'s, with the key.
use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use http::{Response, StatusCode};
use serde_json::{Map, Value, json};

use super::digest::{DigestPublicKey, DigestStore, SignedDigest, StoreError};
use super::dynamo::{INDEX_BY_DECISION, INDEX_BY_PRINCIPAL};
use super::record::{self, Field, Fields};
use super::{Decision, decision_day_key, millis};
use crate::error::ApiError;
use crate::http::{json_response, problem_response};
use crate::policy::PolicyStore;
use crate::principal::Principal;

pub const ROUTE: &str = "GET /v1/audit";
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 100;
/// Days of partitions one request reads at most (see the module docs).
pub const MAX_DAYS_PER_PAGE: u64 = 7;
/// Widest time range one query may span.
pub const MAX_RANGE_DAYS: u64 = 400;
const DAY_MS: u64 = 86_400_000;
const DEFAULT_RANGE_MS: u64 = DAY_MS;

/// One partition's slice: `ts_rid` in `(after, until]` (sort-key order), with filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionQuery {
    pub index: &'static str,
    pub partition_attr: &'static str,
    pub partition: String,
    /// Exclusive lower bound on `ts_rid` (a position, or a time prefix).
    pub after: String,
    /// Inclusive upper bound on `ts_rid`.
    pub until: String,
    pub decision: Option<String>,
    pub tenant: Option<String>,
    /// Items DynamoDB evaluates in one call (before the filter).
    pub limit: usize,
}

/// What one `Query` call returned.
#[derive(Debug, Default)]
pub struct PartitionPage {
    pub items: Vec<Fields>,
    /// `ts_rid` of the last item evaluated when the partition has more (DynamoDB's
    /// `LastEvaluatedKey`), else `None`.
    pub last_evaluated: Option<String>,
}

/// Read-only queries on the audit table's indexes (DynamoDB, or memory in tests).
#[async_trait::async_trait]
pub trait AuditIndex: Send + Sync {
    async fn query(&self, q: &PartitionQuery) -> Result<PartitionPage, StoreError>;
}

/// The parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    pub principal: Option<String>,
    pub decision: Option<Decision>,
    pub since_ms: u64,
    pub until_ms: u64,
    pub limit: usize,
    /// Exclusive position to continue after (from the cursor).
    pub after: Option<String>,
}

/// The lowest `ts_rid` of a millisecond (every real one sorts after it).
fn ts_floor(ms: u64) -> String {
    format!("{ms:013}")
}

/// The highest `ts_rid` of a millisecond ('~' sorts after '#' and every request-id character).
fn ts_ceil(ms: u64) -> String {
    format!("{ms:013}~")
}

fn parse_time(name: &'static str, v: &str) -> Result<u64, ApiError> {
    use aws_sdk_dynamodb::primitives::{DateTime, DateTimeFormat};
    let t = DateTime::from_str(v, DateTimeFormat::DateTime).map_err(|_| {
        ApiError::invalid(name, "must be an RFC 3339 time, e.g. 2026-11-28T09:00:00Z")
    })?;
    u64::try_from(
        t.to_millis()
            .map_err(|_| ApiError::invalid(name, "out of range"))?,
    )
    .map_err(|_| ApiError::invalid(name, "must be after 1970"))
}

/// What the cursor binds to: the query without its position.
fn fingerprint(q: &AuditQuery, tenant: Option<&str>) -> String {
    let text = format!(
        "{:?}|{:?}|{}|{}|{}|{:?}",
        q.principal,
        q.decision.map(Decision::as_str),
        q.since_ms,
        q.until_ms,
        q.limit,
        tenant
    );
    record::sha256_hex(text.as_bytes())[..16].to_owned()
}

/// The cursor carries the time range the first page resolved, so a query that leaves `until`
/// (now) or `since` to their defaults pages through the same window however late the next page
/// is asked for.
fn encode_cursor(after: &str, q: &AuditQuery, tenant: Option<&str>) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        json!({
            "v": 1,
            "after": after,
            "since": q.since_ms,
            "until": q.until_ms,
            "q": fingerprint(q, tenant),
        })
        .to_string(),
    )
}

/// Continues `q` from `cursor`: takes the cursor's range for the bounds the request left to
/// their defaults, then requires the same query (fingerprint) as the page that returned it.
fn apply_cursor(
    cursor: &str,
    q: &mut AuditQuery,
    explicit: (bool, bool),
    tenant: Option<&str>,
) -> Result<(), ApiError> {
    use base64::Engine;
    let bad = || ApiError::invalid("cursor", "not a cursor this query returned");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let (Some(since), Some(until)) = (v["since"].as_u64(), v["until"].as_u64()) else {
        return Err(bad());
    };
    if !explicit.0 {
        q.since_ms = since;
    }
    if !explicit.1 {
        q.until_ms = until;
    }
    if v["v"] != 1 || v["q"] != fingerprint(q, tenant).as_str() {
        return Err(bad());
    }
    let after = v["after"].as_str().ok_or_else(bad)?;
    // A position is a ts_rid: 13 digits, '#' or '~', then a request id.
    if after.len() < 13 || !after.as_bytes()[..13].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    q.after = Some(after.to_owned());
    Ok(())
}

/// Parses the query string parameters (first value of each; a repeated or unknown one is a 400).
pub fn parse_query(
    params: &[(String, String)],
    now: SystemTime,
    tenant: Option<&str>,
) -> Result<AuditQuery, ApiError> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in params {
        if !["principal", "decision", "since", "until", "limit", "cursor"].contains(&k.as_str()) {
            return Err(ApiError::invalid(k, "unknown parameter"));
        }
        if seen.insert(k.as_str(), v.as_str()).is_some() {
            return Err(ApiError::invalid(k, "given more than once"));
        }
    }
    let principal = match seen.get("principal") {
        Some(p) if p.is_empty() || p.len() > 512 => {
            return Err(ApiError::invalid("principal", "1 to 512 characters"));
        }
        Some(p) => Some((*p).to_owned()),
        None => None,
    };
    let decision = match seen.get("decision") {
        Some(d) => Some(Decision::parse(d).ok_or_else(|| {
            ApiError::invalid(
                "decision",
                format!("one of {}", Decision::ALL.map(Decision::as_str).join(", ")),
            )
        })?),
        None => None,
    };
    let now_ms = millis(now);
    let until_ms = match seen.get("until") {
        Some(v) => parse_time("until", v)?,
        None => now_ms,
    };
    let since_ms = match seen.get("since") {
        Some(v) => parse_time("since", v)?,
        None => until_ms.saturating_sub(DEFAULT_RANGE_MS),
    };
    if since_ms > until_ms {
        return Err(ApiError::invalid("since", "is after until"));
    }
    if until_ms - since_ms > MAX_RANGE_DAYS * DAY_MS {
        return Err(ApiError::invalid(
            "since",
            format!("the range may span at most {MAX_RANGE_DAYS} days"),
        ));
    }
    let limit = match seen.get("limit") {
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| ApiError::invalid("limit", format!("an integer 1..={MAX_LIMIT}")))?,
        None => DEFAULT_LIMIT,
    };
    let mut q = AuditQuery {
        principal,
        decision,
        since_ms,
        until_ms,
        limit,
        after: None,
    };
    if let Some(c) = seen.get("cursor") {
        let explicit = (seen.contains_key("since"), seen.contains_key("until"));
        apply_cursor(c, &mut q, explicit, tenant)?;
    }
    Ok(q)
}

/// The partitions holding one day's (or, by principal, the whole range's) records.
fn partitions(q: &AuditQuery, day: u64, shards: u32) -> Vec<(&'static str, &'static str, String)> {
    if let Some(p) = &q.principal {
        return vec![(INDEX_BY_PRINCIPAL, "principal", p.clone())];
    }
    let day_text = record::day_of(day * DAY_MS);
    let decisions: Vec<Decision> = match q.decision {
        Some(d) => vec![d],
        None => Decision::ALL.to_vec(),
    };
    let mut out = Vec::new();
    for d in decisions {
        for shard in 0..shards.max(1) {
            out.push((
                INDEX_BY_DECISION,
                "decision_day",
                decision_day_key(d.as_str(), &day_text, shard),
            ));
        }
    }
    out
}

/// One page of records (oldest first) and where to continue.
pub async fn page(
    index: &dyn AuditIndex,
    q: &AuditQuery,
    tenant: Option<&str>,
    shards: u32,
) -> Result<(Vec<Fields>, Option<String>), StoreError> {
    let end = ts_ceil(q.until_ms);
    let mut after = q
        .after
        .clone()
        .unwrap_or_else(|| ts_floor(q.since_ms.saturating_sub(1)) + "~");
    let mut out: Vec<Fields> = Vec::new();
    // By principal: one partition spans the whole range. By decision: one day at a time.
    let mut days_read = 0;
    while after < end && days_read < MAX_DAYS_PER_PAGE {
        let pos_ms: u64 = after
            .get(..13)
            .and_then(|t| t.parse().ok())
            .unwrap_or(q.since_ms);
        // "<ms>~" is past every record of that millisecond: continue at the next one.
        let pos_ms = if after.len() == 14 && after.ends_with('~') {
            pos_ms + 1
        } else {
            pos_ms
        };
        let day = pos_ms.max(q.since_ms) / DAY_MS;
        let hi = if q.principal.is_some() {
            end.clone()
        } else {
            end.clone().min(ts_ceil((day + 1) * DAY_MS - 1))
        };
        let want = q.limit - out.len();
        let mut frontier = hi.clone();
        let mut found: Vec<(String, Fields)> = Vec::new();
        for (ix, attr, key) in partitions(q, day, shards) {
            let part = index
                .query(&PartitionQuery {
                    index: ix,
                    partition_attr: attr,
                    partition: key,
                    after: after.clone(),
                    until: hi.clone(),
                    decision: if q.principal.is_some() {
                        q.decision.map(|d| d.as_str().to_owned())
                    } else {
                        None
                    },
                    tenant: tenant.map(str::to_owned),
                    limit: want,
                })
                .await?;
            if let Some(last) = part.last_evaluated
                && last < frontier
            {
                frontier = last;
            }
            for f in part.items {
                if let Some(Field::S(t)) = f.get("ts_rid") {
                    found.push((t.clone(), f));
                }
            }
        }
        // Everything up to the lowest frontier is complete in every partition.
        found.retain(|(t, _)| *t <= frontier);
        found.sort_by(|a, b| a.0.cmp(&b.0));
        if found.len() >= want {
            found.truncate(want);
            let last = found.last().map(|(t, _)| t.clone());
            out.extend(found.into_iter().map(|(_, f)| f));
            return Ok((out, last.filter(|t| *t < end)));
        }
        out.extend(found.into_iter().map(|(_, f)| f));
        after = frontier;
        days_read += 1;
        if out.len() == q.limit {
            break;
        }
    }
    Ok((out, (after < end).then_some(after)))
}

/// Per-page cache of digests and their signature checks.
#[derive(Default)]
struct DigestCache {
    by_key: HashMap<String, Option<(SignedDigest, bool)>>,
}

/// `verified` / `verification` for one record (see the module docs).
async fn verification(
    f: &Fields,
    digests: &dyn DigestStore,
    key: &DigestPublicKey,
    cache: &mut DigestCache,
) -> Result<&'static str, StoreError> {
    let (Some(Field::S(segment)), Some(Field::N(seq))) = (f.get("segment"), f.get("seq")) else {
        return Ok("malformed");
    };
    // Cached by the key of the digest that covers this seq, found once per page.
    let lookup = format!("{segment}/{seq}");
    let entry = match cache.by_key.get(&lookup) {
        Some(e) => e.clone(),
        None => {
            let d = digests.covering(segment, *seq).await?;
            let e = d.map(|d| {
                let ok = d.verify(key).is_ok();
                (d, ok)
            });
            cache.by_key.insert(lookup, e.clone());
            e
        }
    };
    Ok(match entry {
        None => "not_anchored_yet",
        Some((_, false)) => "digest_invalid",
        Some((d, true)) => match d.payload.hash_of(*seq) {
            Some(h) if h == record::record_hash(f) => "anchored",
            Some(_) => "mismatch",
            // The digest covers a later seq but does not list this one (the sentinel did not
            // see it in the stream): nothing anchors it.
            None => "not_anchored_yet",
        },
    })
}

/// The record as the API shows it: index keys dropped, `screen_score` a number, text withheld
/// unless permitted.
fn view(f: &Fields, show_content: bool) -> (Map<String, Value>, bool) {
    let mut withheld = false;
    let mut out = Map::new();
    for (k, v) in f {
        if k == "ts_rid" || k == "decision_day" {
            continue;
        }
        if (k == "prompt_text" || k == "output_text") && !show_content {
            withheld = true;
            continue;
        }
        let j = match v {
            Field::S(s) if k == "screen_score" => s
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| Value::String(s.clone()), Value::Number),
            Field::S(s) => Value::String(s.clone()),
            Field::N(n) => Value::from(*n),
            Field::L(l) => Value::from(l.clone()),
        };
        out.insert(k.to_string(), j);
    }
    (out, withheld)
}

/// The audit reader's state: built once at cold start.
pub struct Reader {
    pub policy: PolicyStore,
    pub index: Box<dyn AuditIndex>,
    pub digests: Box<dyn DigestStore>,
    pub digest_key: DigestPublicKey,
    pub decision_shards: u32,
    /// Base of the problem `type` URIs (see `crate::http`).
    pub problem_base: String,
    /// Clock skew allowed on the token's `exp` (the authorizer's leeway): as in predict, a
    /// cached Allow from API Gateway's authorizer cache must not outlive the token.
    pub token_leeway: std::time::Duration,
}

/// What the edge hands the reader.
pub struct ReadRequest<'a> {
    pub request_id: &'a str,
    pub principal: Option<Principal>,
    pub params: Vec<(String, String)>,
    pub now: SystemTime,
}

impl Reader {
    pub async fn handle(&self, req: ReadRequest<'_>) -> Response<String> {
        let request_id = req.request_id;
        match self.run(&req).await {
            Ok((body, count, content)) => {
                tracing::info!(
                    request_id,
                    principal = req
                        .principal
                        .as_ref()
                        .map(Principal::key)
                        .unwrap_or_default(),
                    tenant = req
                        .principal
                        .as_ref()
                        .and_then(|p| p.tenant.as_deref())
                        .unwrap_or_default(),
                    records = count,
                    content_shown = content,
                    "audit read"
                );
                json_response(StatusCode::OK, &body, "application/json")
            }
            Err(e) => {
                tracing::warn!(request_id, error = %e, reason = e.reason(), "audit read refused");
                problem_response(&e, request_id, &self.problem_base)
            }
        }
    }

    async fn run(&self, req: &ReadRequest<'_>) -> Result<(Value, usize, bool), ApiError> {
        let p = req.principal.as_ref().ok_or(ApiError::Unauthenticated)?;
        if p.is_expired(req.now, self.token_leeway) {
            return Err(ApiError::TokenExpired);
        }
        // Defence in depth: the authorizer already checked this route with the same policies.
        if !self.policy.authorize_route(p, ROUTE).allowed {
            return Err(ApiError::Forbidden {
                reason: "your roles may not read the audit log".into(),
            });
        }
        let show_content = self.policy.authorize_audit_content(p, ROUTE).allowed;
        let tenant = p.tenant.as_deref();
        let q = parse_query(&req.params, req.now, tenant)?;
        let unavailable = |e: StoreError| ApiError::Unavailable(e.0);
        let (records, next) = page(self.index.as_ref(), &q, tenant, self.decision_shards)
            .await
            .map_err(unavailable)?;
        let mut cache = DigestCache::default();
        let mut views = Vec::with_capacity(records.len());
        for f in &records {
            let v = verification(f, self.digests.as_ref(), &self.digest_key, &mut cache)
                .await
                .map_err(unavailable)?;
            let (mut obj, withheld) = view(f, show_content);
            obj.insert("verified".into(), json!(v == "anchored"));
            obj.insert("verification".into(), json!(v));
            if withheld {
                obj.insert("content_withheld".into(), json!(true));
            }
            views.push(Value::Object(obj));
        }
        let count = views.len();
        let body = json!({
            "records": views,
            "next_cursor": next.map(|a| encode_cursor(&a, &q, tenant)),
        });
        Ok((body, count, show_content))
    }
}

/// The DynamoDB adapter of [`AuditIndex`].
pub struct DynamoIndex {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
}

#[async_trait::async_trait]
impl AuditIndex for DynamoIndex {
    async fn query(&self, q: &PartitionQuery) -> Result<PartitionPage, StoreError> {
        use aws_sdk_dynamodb::types::AttributeValue as Av;
        // (after, until]: BETWEEN is inclusive, so start just past `after` (every real ts_rid
        // that sorts after it also sorts at or after after+"\u{1}": ids hold no control chars).
        let mut req = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(q.index)
            .key_condition_expression("#p = :p AND #t BETWEEN :lo AND :hi")
            .expression_attribute_names("#p", q.partition_attr)
            .expression_attribute_names("#t", "ts_rid")
            .expression_attribute_values(":p", Av::S(q.partition.clone()))
            .expression_attribute_values(":lo", Av::S(format!("{}\u{1}", q.after)))
            .expression_attribute_values(":hi", Av::S(q.until.clone()))
            .limit(i32::try_from(q.limit.max(1)).unwrap_or(i32::MAX));
        let mut filters = Vec::new();
        if let Some(d) = &q.decision {
            filters.push("#d = :d");
            req = req
                .expression_attribute_names("#d", "decision")
                .expression_attribute_values(":d", Av::S(d.clone()));
        }
        if let Some(t) = &q.tenant {
            filters.push("#tn = :tn");
            req = req
                .expression_attribute_names("#tn", "tenant")
                .expression_attribute_values(":tn", Av::S(t.clone()));
        }
        if !filters.is_empty() {
            req = req.filter_expression(filters.join(" AND "));
        }
        let out = req.send().await.map_err(|e| {
            StoreError(format!(
                "Query {}: {}",
                q.index,
                aws_sdk_dynamodb::error::DisplayErrorContext(&e)
            ))
        })?;
        Ok(PartitionPage {
            items: out.items().iter().map(super::dynamo::from_item).collect(),
            last_evaluated: out
                .last_evaluated_key()
                .and_then(|k| k.get("ts_rid"))
                .and_then(|v| v.as_s().ok())
                .cloned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::digest::{LocalSigner, MemoryDigests, sign};
    use std::sync::Arc;
    use std::time::Duration;

    /// The indexes in memory, with DynamoDB's Limit-before-filter semantics.
    #[derive(Default)]
    struct MemIndex(Vec<Fields>);

    fn st<'a>(f: &'a Fields, k: &str) -> Option<&'a str> {
        match f.get(k) {
            Some(Field::S(v)) => Some(v),
            _ => None,
        }
    }

    #[async_trait::async_trait]
    impl AuditIndex for MemIndex {
        async fn query(&self, q: &PartitionQuery) -> Result<PartitionPage, StoreError> {
            let lo = format!("{}\u{1}", q.after);
            let mut part: Vec<&Fields> = self
                .0
                .iter()
                .filter(|f| st(f, q.partition_attr) == Some(q.partition.as_str()))
                .filter(|f| {
                    st(f, "ts_rid").is_some_and(|t| t >= lo.as_str() && t <= q.until.as_str())
                })
                .collect();
            part.sort_by_key(|f| st(f, "ts_rid").unwrap_or_default().to_owned());
            let more = part.len() > q.limit;
            part.truncate(q.limit);
            let last_evaluated =
                more.then(|| st(part[part.len() - 1], "ts_rid").unwrap().to_owned());
            let items = part
                .into_iter()
                .filter(|f| {
                    q.decision
                        .as_deref()
                        .is_none_or(|d| st(f, "decision") == Some(d))
                })
                .filter(|f| {
                    q.tenant
                        .as_deref()
                        .is_none_or(|t| st(f, "tenant") == Some(t))
                })
                .cloned()
                .collect();
            Ok(PartitionPage {
                items,
                last_evaluated,
            })
        }
    }

    const T0: u64 = 1_800_000_000_000;

    fn rec(i: u64, decision: Decision, principal: &str, tenant: Option<&str>) -> Fields {
        let mut f = Fields::new();
        let ts = T0 + i * 3_600_000;
        let rid = format!("r{i:03}");
        f.insert("segment".into(), Field::S("seg".into()));
        f.insert("seq".into(), Field::N(i + 1));
        f.insert("request_id".into(), Field::S(rid.clone()));
        f.insert("ts_ms".into(), Field::N(ts));
        f.insert("ts_rid".into(), Field::S(record::ts_rid(ts, &rid)));
        f.insert("principal".into(), Field::S(principal.into()));
        f.insert("decision".into(), Field::S(decision.as_str().into()));
        f.insert(
            "decision_day".into(),
            Field::S(decision_day_key(
                decision.as_str(),
                &record::day_of(ts),
                super::super::shard_of(&rid, 2),
            )),
        );
        if let Some(t) = tenant {
            f.insert("tenant".into(), Field::S(t.into()));
        }
        f.insert("prompt_text".into(), Field::S("the prompt".into()));
        f.insert("screen_score".into(), Field::S("0.1250".into()));
        f
    }

    fn principal(roles: &[&str], tenant: Option<&str>) -> Principal {
        Principal {
            issuer: "https://issuer.test/".into(),
            sub: "auditor-1".into(),
            exp: u64::MAX,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            tenant: tenant.map(str::to_owned),
            token_id: "t".into(),
        }
    }

    async fn reader(records: Vec<Fields>, anchor_first: usize) -> Reader {
        let originals = records.clone();
        reader_with(records, &originals, anchor_first).await
    }

    /// Serves `records`, with a digest anchoring the first `anchor_first` of `originals`.
    async fn reader_with(
        records: Vec<Fields>,
        originals: &[Fields],
        anchor_first: usize,
    ) -> Reader {
        let signer = LocalSigner::generate().unwrap();
        let digests = Arc::new(MemoryDigests::default());
        if anchor_first > 0 {
            let recs: Vec<crate::audit::digest::AnchoredRecord> = originals[..anchor_first]
                .iter()
                .enumerate()
                .map(|(i, f)| crate::audit::digest::AnchoredRecord {
                    seq: i as u64 + 1,
                    hash: record::record_hash(f),
                    request_id: st(f, "request_id").unwrap().into(),
                    expires_at: None,
                })
                .collect();
            let p = crate::audit::digest::DigestPayload {
                version: 1,
                segment: "seg".into(),
                first_seq: 1,
                last_seq: anchor_first as u64,
                last_record_hash: recs.last().unwrap().hash.clone(),
                records: recs,
                prev_digest_hash: crate::audit::digest::GENESIS_DIGEST.into(),
                last_ts_ms: 0,
            };
            digests
                .put_new(&sign(p, &signer).await.unwrap())
                .await
                .unwrap();
        }
        Reader {
            policy: PolicyStore::embedded().unwrap(),
            index: Box::new(MemIndex(records)),
            digests: Box::new(digests),
            digest_key: signer.public_key().unwrap(),
            decision_shards: 2,
            problem_base: crate::http::DEFAULT_PROBLEM_BASE.into(),
            token_leeway: Duration::from_secs(30),
        }
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    async fn get(r: &Reader, p: Principal, q: &[(&str, &str)]) -> (u16, Value) {
        let resp = r
            .handle(ReadRequest {
                request_id: "rid",
                principal: Some(p),
                params: params(q),
                now: SystemTime::UNIX_EPOCH + Duration::from_millis(T0 + 30 * DAY_MS),
            })
            .await;
        (
            resp.status().as_u16(),
            serde_json::from_str(resp.body()).unwrap(),
        )
    }

    fn since_until() -> [(&'static str, &'static str); 2] {
        // T0 = 2027-01-15T08:00:00Z; the records span 40 hours from there.
        [
            ("since", "2027-01-15T00:00:00Z"),
            ("until", "2027-01-20T00:00:00Z"),
        ]
    }

    #[tokio::test]
    async fn pages_through_every_decision_oldest_first_and_marks_verification() {
        let decisions = [Decision::Allowed, Decision::Denied, Decision::Blocked];
        let recs: Vec<Fields> = (0..40)
            .map(|i| rec(i, decisions[i as usize % 3], "alice", None))
            .collect();
        let mut tampered = recs.clone();
        tampered[1].insert("reason".into(), Field::S("edited".into()));
        let r = reader_with(tampered, &recs, 10).await;
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut q = since_until().to_vec();
            q.push(("limit", "7"));
            let c;
            if let Some(cur) = &cursor {
                c = cur.clone();
                q.push(("cursor", &c));
            }
            let (status, body) = get(&r, principal(&["auditor"], None), &q).await;
            assert_eq!(status, 200, "{body}");
            for rec in body["records"].as_array().unwrap() {
                seen.push((
                    rec["request_id"].as_str().unwrap().to_owned(),
                    rec["verification"].as_str().unwrap().to_owned(),
                ));
                assert!(rec.get("prompt_text").is_none() && rec["content_withheld"] == true);
                assert_eq!(rec["screen_score"], 0.125);
                assert!(rec.get("ts_rid").is_none());
            }
            pages += 1;
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
            assert!(pages < 50);
        }
        let ids: Vec<&str> = seen.iter().map(|(i, _)| i.as_str()).collect();
        let want: Vec<String> = (0..40).map(|i| format!("r{i:03}")).collect();
        assert_eq!(
            ids,
            want.iter().map(String::as_str).collect::<Vec<_>>(),
            "all, once, oldest first"
        );
        assert_eq!(seen[0].1, "anchored");
        assert_eq!(seen[1].1, "mismatch");
        assert_eq!(seen[9].1, "anchored");
        assert_eq!(seen[10].1, "not_anchored_yet");
    }

    #[tokio::test]
    async fn filters_scope_and_content_permission() {
        let recs = vec![
            rec(0, Decision::Allowed, "alice", Some("acme")),
            rec(1, Decision::Blocked, "alice", Some("acme")),
            rec(2, Decision::Blocked, "bob", Some("globex")),
            rec(3, Decision::Denied, "carol", None),
        ];
        let r = reader(recs, 0).await;
        let ids = |b: &Value| -> Vec<String> {
            b["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["request_id"].as_str().unwrap().to_owned())
                .collect()
        };
        let su = since_until();
        let (_, b) = get(
            &r,
            principal(&["auditor"], None),
            &[su[0], su[1], ("decision", "blocked")],
        )
        .await;
        assert_eq!(ids(&b), ["r001", "r002"]);
        let (_, b) = get(
            &r,
            principal(&["auditor"], None),
            &[
                su[0],
                su[1],
                ("principal", "alice"),
                ("decision", "blocked"),
            ],
        )
        .await;
        assert_eq!(ids(&b), ["r001"]);
        // A tenant's auditor sees its tenant only (no authorizer denials, no other tenant).
        let (_, b) = get(&r, principal(&["auditor"], Some("acme")), &[su[0], su[1]]).await;
        assert_eq!(ids(&b), ["r000", "r001"]);
        let (_, b) = get(
            &r,
            principal(&["auditor"], Some("acme")),
            &[su[0], su[1], ("principal", "bob")],
        )
        .await;
        assert_eq!(ids(&b), Vec::<String>::new());
        // Prompt text only with audit_content_reader.
        let (_, b) = get(
            &r,
            principal(&["auditor", "audit_content_reader"], None),
            &[su[0], su[1]],
        )
        .await;
        assert_eq!(b["records"][0]["prompt_text"], "the prompt");
        assert!(b["records"][0].get("content_withheld").is_none());
        let (_, b) = get(
            &r,
            principal(&["audit_content_reader"], None),
            &[su[0], su[1]],
        )
        .await;
        assert_eq!(b["status"], 403, "content role alone opens nothing");
        let (_, b) = get(&r, principal(&["ai_operator"], None), &[]).await;
        assert_eq!(b["status"], 403);
    }

    #[tokio::test]
    async fn an_expired_token_is_refused_even_through_a_cached_allow() {
        let r = reader(vec![rec(0, Decision::Allowed, "alice", None)], 1).await;
        // `get` reads at T0 + 30 days; the leeway is 30 s.
        let now_s = (T0 + 30 * DAY_MS) / 1000;
        for (exp, status) in [(now_s - 29, 200), (now_s - 30, 401)] {
            let mut p = principal(&["auditor"], None);
            p.exp = exp;
            let (code, b) = get(&r, p, &since_until()).await;
            assert_eq!(code, status, "exp {exp}: {b}");
            if status == 401 {
                assert_eq!(b["title"], "Token expired");
            }
        }
    }

    #[tokio::test]
    async fn bad_parameters_are_400_and_cursors_bind_to_their_query() {
        let r = reader(vec![], 0).await;
        let a = principal(&["auditor"], None);
        for q in [
            vec![("decision", "block")],
            vec![("since", "yesterday")],
            vec![("limit", "0")],
            vec![("limit", "101")],
            vec![("cursor", "%%%")],
            vec![("cursor", "eyJ2IjoxfQ")],
            vec![("color", "red")],
            vec![
                ("since", "2027-01-02T00:00:00Z"),
                ("until", "2027-01-01T00:00:00Z"),
            ],
            vec![
                ("since", "2020-01-01T00:00:00Z"),
                ("until", "2027-01-01T00:00:00Z"),
            ],
            vec![("principal", "a"), ("principal", "b")],
        ] {
            let (status, b) = get(&r, a.clone(), &q).await;
            assert_eq!(status, 400, "{q:?}: {b}");
            assert_eq!(b["title"], "Invalid request");
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(T0);
        let q = parse_query(&params(&[("decision", "denied")]), now, None).unwrap();
        let c = encode_cursor("1800000000000#x", &q, None);
        // Asked later, with `until` left to its default (now): the first page's window holds.
        let later = now + Duration::from_secs(90);
        let next = parse_query(
            &params(&[("decision", "denied"), ("cursor", &c)]),
            later,
            None,
        )
        .unwrap();
        assert_eq!((next.since_ms, next.until_ms), (q.since_ms, q.until_ms));
        assert_eq!(next.after.as_deref(), Some("1800000000000#x"));
        // An explicit bound that differs from the first page's is another query.
        assert!(
            parse_query(
                &params(&[
                    ("decision", "denied"),
                    ("until", "2027-01-20T00:00:00Z"),
                    ("cursor", &c)
                ]),
                later,
                None
            )
            .is_err()
        );
        assert!(
            parse_query(
                &params(&[("decision", "allowed"), ("cursor", &c)]),
                now,
                None
            )
            .is_err()
        );
        assert!(
            parse_query(
                &params(&[("decision", "denied"), ("cursor", &c)]),
                now,
                Some("acme")
            )
            .is_err()
        );
    }
}
