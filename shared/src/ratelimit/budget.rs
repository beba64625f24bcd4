//! Token budgets and repeat-offender suspension (issue 13), on the rate table.
//!
//! **Budgets.** A principal has a daily (UTC) and optionally a monthly (UTC calendar month)
//! budget of weighted tokens from its roles; a tenant has its own from its `Gatehouse::Tenant`
//! entity. Both windows of one owner live in ONE item per calendar month:
//! `user#tokens#<YYYY-MM>#<principal>` / `tenant#tokens#<YYYY-MM>#<tenant>`, attributes
//! `month` (the month's spend) and `d01`..`d31` (each day's). So each owner costs one write:
//!
//! 1. before the model call, **reserve** the weighted worst case (input bound + max_tokens) with
//!    one conditional `UpdateItem`: `ADD month :n, dDD :n` if every limited counter stays within
//!    its limit (`attribute_not_exists(c) OR c <= limit − n`) and, on the principal's item, the
//!    principal is not suspended (`attribute_not_exists(suspended_until) OR suspended_until <= now`).
//!    A refusal reads the current values from the failed condition (`ALL_OLD`): no read, ever;
//! 2. after it, **reconcile**: one unconditional `ADD` of `used − reserved` (normally negative:
//!    the unused part goes back). If the model failed, `used` = 0: a full refund.
//!
//! Conditional writes on one item are atomic, so concurrent requests can never reserve more than
//! the budget; reconciliation only ever lowers a reservation to the real use, so the stored spend
//! ends as the exact sum of the reported (weighted) usage. A failed reconcile keeps the whole
//! reservation (an over-count, never an over-spend) and is logged. If a principal's reservation
//! succeeds and its tenant's is refused, the principal's is refunded at once.
//!
//! **Input bound.** Byte-level BPE tokenizers never emit more tokens than the text has bytes, so
//! the prompt's UTF-8 length plus `INPUT_OVERHEAD_TOKENS` (the chat template's own tokens) bounds
//! the input; the backend caps the output at `max_tokens`. Should a backend still report more, the
//! reconcile adds the excess (the stored spend stays exact) and logs it; the next reservation then
//! sees the budget spent.
//!
//! **Suspension.** Blocked prompts and forbidden-model answers are counted per principal in a
//! fixed window (`user#offences#<window s>#<start>#<principal>`, one unconditional `ADD` per
//! offence). At K of one kind the principal's current token item (and the next month's, when the
//! period crosses into it) gets `suspended_until`, with a condition that it is not suspended
//! already, so a suspension starts (and is audited) once. The check costs nothing per request:
//! it is a condition of the reservation write every allowed request makes anyway.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::{PRINCIPAL_PREFIX, RateError, TENANT_PREFIX};
use crate::clock::unix_secs;
use crate::error::LimitName;
use crate::http::RatePolicy;
use crate::policy::{RoleLimits, TenantBudget};

/// Tokens a chat template adds around a prompt, on top of its bytes (see the module doc).
pub const INPUT_OVERHEAD_TOKENS: u64 = 32;
/// Month spend attribute of a token item.
pub const MONTH_ATTR: &str = "month";
/// Suspension end (Unix seconds) on a principal's token item.
pub const SUSPENDED_ATTR: &str = "suspended_until";
/// Longest suspension: a period crosses at most one month boundary, so at most two items.
pub const MAX_SUSPENSION_SECS: u64 = 7 * 86_400;
/// Token items are kept this long after their month ends before TTL may collect them.
const TTL_AFTER_MONTH_SECS: u64 = 35 * 86_400;

/// The worst-case input tokens of a prompt (the text the model receives).
pub fn input_bound(prompt: &str) -> u64 {
    u64::try_from(prompt.len())
        .unwrap_or(u64::MAX)
        .saturating_add(INPUT_OVERHEAD_TOKENS)
}

/// One counter of an item and its limit (`None`: counted, not limited).
#[derive(Debug, Clone)]
pub struct Counter {
    pub attr: String,
    pub limit: Option<u64>,
}

/// One conditional reservation on one item.
#[derive(Debug, Clone)]
pub struct Reserve<'a> {
    pub key: &'a str,
    pub amount: u64,
    pub counters: &'a [Counter],
    /// Refuse when the item's `suspended_until` is after this Unix second.
    pub suspended_after: Option<u64>,
    pub expires_at: u64,
}

/// What a reservation answered. `values[i]` belongs to `counters[i]`: after the ADD when
/// allowed, before it (the failed condition's item) when refused; `None` when the counter does
/// not exist (nothing spent yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveOutcome {
    pub allowed: bool,
    pub values: Vec<Option<u64>>,
    pub suspended_until: Option<u64>,
}

/// The budget side of the rate table: the DynamoDB adapter (`super::dynamo::DynamoCounter`), or
/// `MemoryLedger` in unit tests.
#[async_trait::async_trait]
pub trait LedgerStore: Send + Sync {
    /// One conditional `UpdateItem` (see the module doc).
    async fn reserve(&self, r: &Reserve<'_>) -> Result<ReserveOutcome, RateError>;
    /// One unconditional `ADD delta` to each of `attrs`; the new values (`UPDATED_NEW`).
    async fn add(
        &self,
        key: &str,
        attrs: &[&str],
        delta: i64,
        expires_at: u64,
    ) -> Result<Vec<Option<i64>>, RateError>;
    /// Sets `suspended_until = until` unless the item is suspended after `now` already;
    /// `Ok(true)` when it set it.
    async fn suspend(
        &self,
        key: &str,
        until: u64,
        now: u64,
        expires_at: u64,
    ) -> Result<bool, RateError>;
    /// Removes `suspended_until`; returns the value it had.
    async fn lift(&self, key: &str) -> Result<Option<u64>, RateError>;
    /// The item's numeric attributes (empty when there is none). Never on the predict path:
    /// `GET /v1/usage` and the operator tools only.
    async fn read(&self, key: &str) -> Result<HashMap<String, i64>, RateError>;
}

/// A shared store (tests keep a handle on the store they hand to `Budgets`).
#[async_trait::async_trait]
impl<T: LedgerStore + ?Sized> LedgerStore for std::sync::Arc<T> {
    async fn reserve(&self, r: &Reserve<'_>) -> Result<ReserveOutcome, RateError> {
        (**self).reserve(r).await
    }
    async fn add(
        &self,
        key: &str,
        attrs: &[&str],
        delta: i64,
        expires_at: u64,
    ) -> Result<Vec<Option<i64>>, RateError> {
        (**self).add(key, attrs, delta, expires_at).await
    }
    async fn suspend(
        &self,
        key: &str,
        until: u64,
        now: u64,
        expires_at: u64,
    ) -> Result<bool, RateError> {
        (**self).suspend(key, until, now, expires_at).await
    }
    async fn lift(&self, key: &str) -> Result<Option<u64>, RateError> {
        (**self).lift(key).await
    }
    async fn read(&self, key: &str) -> Result<HashMap<String, i64>, RateError> {
        (**self).read(key).await
    }
}

/// Repeat-offender settings (`GATEHOUSE_SUSPEND_*`), parsed in `crate::config`.
pub use crate::config::SuspensionConfig;

/// What counts towards a suspension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offence {
    /// A prompt the screen blocked.
    Blocked,
    /// A model the principal may not use (unknown, disabled, another tenant's, a closed tier):
    /// all of them count, so suspension cannot tell a caller which ones exist.
    ForbiddenModel,
}

impl Offence {
    fn attr(self) -> &'static str {
        match self {
            Self::Blocked => "blocked",
            Self::ForbiddenModel => "forbidden_model",
        }
    }
}

/// A UTC day and month of a Unix time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub day_start: u64,
    pub month_start: u64,
    pub month_end: u64,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Calendar {
    pub fn of(t: u64) -> Self {
        let days = i64::try_from(t / 86_400).unwrap_or(i64::MAX / 2);
        let (year, month, day) = crate::audit::record::civil_from_days(days);
        let secs = |d: i64| u64::try_from(d).unwrap_or(0).saturating_mul(86_400);
        let (ny, nm) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
        Self {
            year,
            month,
            day,
            day_start: t - t % 86_400,
            month_start: secs(days_from_civil(year, month, 1)),
            month_end: secs(days_from_civil(ny, nm, 1)),
        }
    }

    pub fn month_id(&self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }

    pub fn day_attr(&self) -> String {
        format!("d{:02}", self.day)
    }

    pub fn day_end(&self) -> u64 {
        self.day_start + 86_400
    }

    pub fn month_secs(&self) -> u64 {
        self.month_end - self.month_start
    }
}

pub fn principal_tokens_key(principal: &str, month_id: &str) -> String {
    format!("{PRINCIPAL_PREFIX}tokens#{month_id}#{principal}")
}

pub fn tenant_tokens_key(tenant: &str, month_id: &str) -> String {
    format!("{TENANT_PREFIX}tokens#{month_id}#{tenant}")
}

fn offences_key(principal: &str, window_secs: u64, start: u64) -> String {
    format!("{PRINCIPAL_PREFIX}offences#{window_secs}#{start}#{principal}")
}

/// Whose budgets a request draws on, with their limits from the policy.
#[derive(Debug, Clone, Copy)]
pub struct BudgetScope<'a> {
    pub principal: &'a str,
    pub role: &'a RoleLimits,
    pub tenant: Option<(&'a str, TenantBudget)>,
}

/// One owner's item as reserved: where, which counters, and what they read after the reservation.
#[derive(Debug, Clone)]
struct Held {
    key: String,
    counters: Vec<Counter>,
    /// (policy name, window seconds, reset Unix second) per counter.
    names: Vec<(LimitName, u64, u64)>,
    values: Vec<Option<u64>>,
    expires_at: u64,
}

/// A reservation to reconcile after the model call.
#[derive(Debug, Clone)]
pub struct Reservation {
    pub amount: u64,
    held: Vec<Held>,
    now: u64,
}

/// The result of reconciling: whether every write landed, and the budgets' state for headers.
#[derive(Debug, Clone)]
pub struct Reconciled {
    pub ok: bool,
    pub policies: Vec<RatePolicy>,
}

/// Why a reservation was refused.
#[derive(Debug)]
pub enum Refusal {
    Suspended {
        until: u64,
    },
    Exhausted {
        limit: LimitName,
        requested: u64,
        remaining: u64,
        retry_after: Duration,
        /// Every budget's state as read from the refusal (for the RateLimit fields).
        policies: Vec<RatePolicy>,
    },
    Store(RateError),
}

fn policies_of(held: &[Held], now: u64) -> Vec<RatePolicy> {
    held.iter()
        .flat_map(|h| {
            h.counters.iter().zip(&h.names).zip(&h.values).filter_map(
                move |((c, (name, window, reset)), v)| {
                    let quota = c.limit?;
                    Some(RatePolicy {
                        name: *name,
                        quota,
                        window_secs: *window,
                        remaining: quota.saturating_sub(v.unwrap_or(0)),
                        reset_secs: reset.saturating_sub(now).max(1),
                    })
                },
            )
        })
        .collect()
}

/// Token budgets and suspensions over a `LedgerStore`.
pub struct Budgets {
    store: Box<dyn LedgerStore>,
    pub suspension: SuspensionConfig,
}

impl Budgets {
    pub fn new(store: Box<dyn LedgerStore>, suspension: SuspensionConfig) -> Self {
        Self { store, suspension }
    }

    fn items(scope: &BudgetScope<'_>, cal: &Calendar) -> Vec<Held> {
        let month = cal.month_id();
        let expires_at = cal.month_end + TTL_AFTER_MONTH_SECS;
        let mut items = vec![Held {
            key: principal_tokens_key(scope.principal, &month),
            counters: vec![
                Counter {
                    attr: cal.day_attr(),
                    limit: Some(scope.role.tokens_per_day),
                },
                Counter {
                    attr: MONTH_ATTR.into(),
                    limit: scope.role.tokens_per_month,
                },
            ],
            names: vec![
                (LimitName::Tokens, 86_400, cal.day_end()),
                (LimitName::TokensMonth, cal.month_secs(), cal.month_end),
            ],
            values: vec![None, None],
            expires_at,
        }];
        if let Some((tenant, b)) = scope.tenant {
            items.push(Held {
                key: tenant_tokens_key(tenant, &month),
                counters: vec![
                    Counter {
                        attr: cal.day_attr(),
                        limit: Some(b.tokens_per_day),
                    },
                    Counter {
                        attr: MONTH_ATTR.into(),
                        limit: b.tokens_per_month,
                    },
                ],
                names: vec![
                    (LimitName::TenantTokens, 86_400, cal.day_end()),
                    (
                        LimitName::TenantTokensMonth,
                        cal.month_secs(),
                        cal.month_end,
                    ),
                ],
                values: vec![None, None],
                expires_at,
            });
        }
        items
    }

    /// Reserves `amount` weighted tokens on the principal's budgets, then the tenant's.
    pub async fn reserve(
        &self,
        scope: &BudgetScope<'_>,
        amount: u64,
        now: SystemTime,
    ) -> Result<Reservation, Refusal> {
        let now = unix_secs(now);
        let cal = Calendar::of(now);
        let mut held = Self::items(scope, &cal);
        for i in 0..held.len() {
            let h = &held[i];
            let out = self
                .store
                .reserve(&Reserve {
                    key: &h.key,
                    amount,
                    counters: &h.counters,
                    // Only the principal's own item carries a suspension.
                    suspended_after: (i == 0).then_some(now),
                    expires_at: h.expires_at,
                })
                .await;
            let out = match out {
                Ok(o) => o,
                Err(e) => {
                    self.release(&held[..i], amount).await;
                    return Err(Refusal::Store(e));
                }
            };
            held[i].values = out.values.clone();
            if out.allowed {
                continue;
            }
            self.release(&held[..i], amount).await;
            if let Some(until) = out.suspended_until.filter(|u| *u > now) {
                return Err(Refusal::Suspended { until });
            }
            // The counter that cannot take `amount`; of several, the one that frees up last.
            let h = &held[i];
            let failing = h
                .counters
                .iter()
                .zip(&h.names)
                .zip(&out.values)
                .filter_map(|((c, (name, _, reset)), v)| {
                    let limit = c.limit?;
                    let spent = v.unwrap_or(0);
                    (spent.saturating_add(amount) > limit).then_some((
                        *name,
                        limit.saturating_sub(spent),
                        *reset,
                    ))
                })
                .max_by_key(|(_, _, reset)| *reset);
            let (limit, remaining, reset) = failing.unwrap_or((h.names[0].0, 0, h.names[0].2));
            return Err(Refusal::Exhausted {
                limit,
                requested: amount,
                remaining,
                retry_after: Duration::from_secs(reset.saturating_sub(now).max(1)),
                policies: policies_of(&held[..=i], now),
            });
        }
        Ok(Reservation { amount, held, now })
    }

    /// Gives `amount` back on each of `held` (a reservation undone). A failure is logged and the
    /// reservation stays: an over-count, never an over-spend.
    async fn release(&self, held: &[Held], amount: u64) {
        let delta = -i64::try_from(amount).unwrap_or(i64::MAX);
        for h in held {
            let attrs: Vec<&str> = h.counters.iter().map(|c| c.attr.as_str()).collect();
            if let Err(e) = self.store.add(&h.key, &attrs, delta, h.expires_at).await {
                tracing::error!(key = %h.key, amount, error = %e, "token refund failed; the reservation stays");
            }
        }
    }

    /// Settles a reservation at `used` weighted tokens (0 when the model was not called or
    /// failed: a full refund). One unconditional ADD per item; none when nothing changes.
    pub async fn reconcile(&self, r: &Reservation, used: u64) -> Reconciled {
        let delta = i128::from(used) - i128::from(r.amount);
        let mut held = r.held.clone();
        let mut ok = true;
        if delta > 0 {
            tracing::warn!(
                reserved = r.amount,
                used,
                "the backend reported more tokens than the reservation bound; spend recorded as reported"
            );
        }
        if delta != 0 {
            let delta = i64::try_from(delta).unwrap_or(if delta < 0 { i64::MIN } else { i64::MAX });
            for h in &mut held {
                let attrs: Vec<&str> = h.counters.iter().map(|c| c.attr.as_str()).collect();
                match self.store.add(&h.key, &attrs, delta, h.expires_at).await {
                    Ok(values) => {
                        h.values = values
                            .into_iter()
                            .map(|v| v.map(|n| u64::try_from(n).unwrap_or(0)))
                            .collect();
                    }
                    Err(e) => {
                        ok = false;
                        tracing::error!(key = %h.key, reserved = r.amount, used, error = %e,
                            "token reconcile failed; the reservation stays (over-counted, never over-spent)");
                    }
                }
            }
        }
        Reconciled {
            ok,
            policies: policies_of(&held, r.now),
        }
    }

    /// Counts one offence; `Ok(Some(until))` when it started a suspension (exactly once per
    /// suspension, whatever the concurrency).
    pub async fn record_offence(
        &self,
        principal: &str,
        offence: Offence,
        now: SystemTime,
    ) -> Result<Option<u64>, RateError> {
        let cfg = self.suspension;
        if cfg.after == 0 {
            return Ok(None);
        }
        let now = unix_secs(now);
        let w = cfg.window.as_secs().max(1);
        let start = now - now % w;
        let counted = self
            .store
            .add(
                &offences_key(principal, w, start),
                &[offence.attr()],
                1,
                start + w + 3600,
            )
            .await?;
        let count = counted.first().copied().flatten().unwrap_or(0);
        if count < i64::from(cfg.after) {
            return Ok(None);
        }
        let until = now.saturating_add(cfg.period.as_secs().clamp(1, MAX_SUSPENSION_SECS));
        self.suspend(principal, until, now).await
    }

    /// Suspends `principal` until `until` (Unix s) unless already suspended; `Some(until)` if
    /// this call started it. Writes the current month's item and, when the period reaches into
    /// the next month, that one too.
    pub async fn suspend(
        &self,
        principal: &str,
        until: u64,
        now: u64,
    ) -> Result<Option<u64>, RateError> {
        let mut started = false;
        for (i, cal) in Self::months_until(now, until).iter().enumerate() {
            let key = principal_tokens_key(principal, &cal.month_id());
            let set = self
                .store
                .suspend(&key, until, now, cal.month_end + TTL_AFTER_MONTH_SECS)
                .await?;
            if i == 0 {
                started = set;
            }
        }
        Ok(started.then_some(until))
    }

    fn months_until(now: u64, until: u64) -> Vec<Calendar> {
        let first = Calendar::of(now);
        let mut out = vec![first];
        if until > first.month_end {
            out.push(Calendar::of(first.month_end));
        }
        out
    }

    /// Lifts a suspension (both months it may be written in); the end it had, if it was active.
    pub async fn lift(&self, principal: &str, now: SystemTime) -> Result<Option<u64>, RateError> {
        let now = unix_secs(now);
        let mut active = None;
        for cal in Self::months_until(now, now + MAX_SUSPENSION_SECS) {
            let prev = self
                .store
                .lift(&principal_tokens_key(principal, &cal.month_id()))
                .await?;
            if let Some(u) = prev.filter(|u| *u > now) {
                active = Some(active.map_or(u, |a: u64| a.max(u)));
            }
        }
        Ok(active)
    }

    /// The budgets' state without reserving (reads; `GET /v1/usage` only).
    pub async fn usage(
        &self,
        scope: &BudgetScope<'_>,
        now: SystemTime,
    ) -> Result<BudgetUsage, RateError> {
        let now = unix_secs(now);
        let cal = Calendar::of(now);
        let mut held = Self::items(scope, &cal);
        let mut suspended_until = None;
        for (i, h) in held.iter_mut().enumerate() {
            let item = self.store.read(&h.key).await?;
            h.values = h
                .counters
                .iter()
                .map(|c| {
                    Some(
                        item.get(&c.attr)
                            .map_or(0, |v| u64::try_from(*v).unwrap_or(0)),
                    )
                })
                .collect();
            if i == 0 {
                suspended_until = item
                    .get(SUSPENDED_ATTR)
                    .and_then(|v| u64::try_from(*v).ok())
                    .filter(|u| *u > now);
            }
        }
        Ok(BudgetUsage {
            policies: policies_of(&held, now),
            spent: held
                .iter()
                .map(|h| h.values.iter().map(|v| v.unwrap_or(0)).collect())
                .collect(),
            suspended_until,
        })
    }

    /// The store, for reads of other rate-table items (`GET /v1/usage`).
    pub fn store(&self) -> &dyn LedgerStore {
        self.store.as_ref()
    }
}

/// What `Budgets::usage` read.
#[derive(Debug, Clone)]
pub struct BudgetUsage {
    /// The limited budgets, as RateLimit policies (quota, remaining, reset).
    pub policies: Vec<RatePolicy>,
    /// Per item (principal, then tenant): [day spend, month spend].
    pub spent: Vec<Vec<u64>>,
    pub suspended_until: Option<u64>,
}

/// In-memory ledger with the DynamoDB adapter's semantics, for unit tests of the logic.
#[derive(Default)]
pub struct MemoryLedger {
    items: Mutex<HashMap<String, HashMap<String, i64>>>,
    /// Fail every `add` while set (to test failed reconciles).
    pub failing_adds: std::sync::atomic::AtomicBool,
}

impl MemoryLedger {
    pub fn value(&self, key: &str, attr: &str) -> Option<i64> {
        let items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        items.get(key).and_then(|i| i.get(attr)).copied()
    }
}

#[async_trait::async_trait]
impl LedgerStore for MemoryLedger {
    async fn reserve(&self, r: &Reserve<'_>) -> Result<ReserveOutcome, RateError> {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        let item = items.entry(r.key.to_owned()).or_default();
        let get = |a: &str| item.get(a).map(|v| u64::try_from(*v).unwrap_or(0));
        let suspended_until = get(SUSPENDED_ATTR);
        let fits = r.counters.iter().all(|c| match c.limit {
            None => true,
            Some(l) => l
                .checked_sub(r.amount)
                .is_some_and(|room| get(&c.attr).is_none_or(|v| v <= room)),
        });
        let free = r
            .suspended_after
            .is_none_or(|now| suspended_until.is_none_or(|u| u <= now));
        if !(fits && free) {
            let values = r.counters.iter().map(|c| get(&c.attr)).collect();
            return Ok(ReserveOutcome {
                allowed: false,
                values,
                suspended_until,
            });
        }
        let add = i64::try_from(r.amount).unwrap_or(i64::MAX);
        let values = r
            .counters
            .iter()
            .map(|c| {
                let v = item.entry(c.attr.clone()).or_insert(0);
                *v += add;
                Some(u64::try_from(*v).unwrap_or(0))
            })
            .collect();
        Ok(ReserveOutcome {
            allowed: true,
            values,
            suspended_until,
        })
    }

    async fn add(
        &self,
        key: &str,
        attrs: &[&str],
        delta: i64,
        _expires_at: u64,
    ) -> Result<Vec<Option<i64>>, RateError> {
        if self.failing_adds.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(RateError::Unavailable("memory ledger set to fail".into()));
        }
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        let item = items.entry(key.to_owned()).or_default();
        Ok(attrs
            .iter()
            .map(|a| {
                let v = item.entry((*a).to_owned()).or_insert(0);
                *v += delta;
                Some(*v)
            })
            .collect())
    }

    async fn suspend(
        &self,
        key: &str,
        until: u64,
        now: u64,
        _expires_at: u64,
    ) -> Result<bool, RateError> {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        let item = items.entry(key.to_owned()).or_default();
        let active = item
            .get(SUSPENDED_ATTR)
            .is_some_and(|u| u64::try_from(*u).unwrap_or(0) > now);
        if active {
            return Ok(false);
        }
        item.insert(
            SUSPENDED_ATTR.into(),
            i64::try_from(until).unwrap_or(i64::MAX),
        );
        Ok(true)
    }

    async fn lift(&self, key: &str) -> Result<Option<u64>, RateError> {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        Ok(items
            .get_mut(key)
            .and_then(|i| i.remove(SUSPENDED_ATTR))
            .and_then(|v| u64::try_from(v).ok()))
    }

    async fn read(&self, key: &str) -> Result<HashMap<String, i64>, RateError> {
        let items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        Ok(items.get(key).cloned().unwrap_or_default())
    }
}

/// The request counter on the same in-memory items, so one `MemoryLedger` plays the whole rate
/// table (as `GET /v1/usage` reads it), with `MemoryCounter`'s semantics.
#[async_trait::async_trait]
impl super::RateCounter for MemoryLedger {
    async fn hit(&self, hit: &super::Hit<'_>) -> Result<super::HitOutcome, RateError> {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        let item = items.entry(hit.key.to_owned()).or_default();
        let get = |a: &str| item.get(a).map(|v| u32::try_from(*v).unwrap_or(u32::MAX));
        let count = get("count");
        let sub_count = hit.sub.and_then(|(a, _)| get(a));
        let main_ok = count.is_none_or(|c| c < hit.limit);
        let sub_ok = hit.sub.is_none_or(|(_, l)| sub_count.is_none_or(|c| c < l));
        if !(main_ok && sub_ok) {
            return Ok(super::HitOutcome {
                allowed: false,
                count,
                sub_count,
            });
        }
        let c = count.unwrap_or(0) + 1;
        item.insert("count".into(), i64::from(c));
        let s = hit.sub.map(|(a, _)| {
            let s = sub_count.unwrap_or(0) + 1;
            item.insert(a.to_owned(), i64::from(s));
            s
        });
        Ok(super::HitOutcome {
            allowed: true,
            count: Some(c),
            sub_count: s,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn role(day: u64, month: Option<u64>) -> RoleLimits {
        RoleLimits {
            requests_per_window: 100,
            window_seconds: 60,
            max_prompt_chars: 100,
            max_tokens: 100,
            tokens_per_day: day,
            tokens_per_month: month,
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// 2027-01-31T23:00:00Z: one hour before both the day and the month end.
    const JAN31_23H: u64 = 1_801_436_400;

    fn budgets(after: u32) -> (Budgets, Arc<MemoryLedger>) {
        let ledger = Arc::new(MemoryLedger::default());
        (
            Budgets::new(
                Box::new(ledger.clone()),
                SuspensionConfig {
                    after,
                    window: Duration::from_secs(600),
                    period: Duration::from_secs(7200),
                },
            ),
            ledger,
        )
    }

    #[test]
    fn calendar_arithmetic() {
        let c = Calendar::of(JAN31_23H);
        assert_eq!((c.year, c.month, c.day), (2027, 1, 31));
        assert_eq!(c.month_id(), "2027-01");
        assert_eq!(c.day_attr(), "d31");
        assert_eq!(c.day_end() - JAN31_23H, 3600);
        assert_eq!(c.month_end, c.day_end());
        assert_eq!(c.month_secs(), 31 * 86_400);
        let feb = Calendar::of(c.month_end);
        assert_eq!((feb.month, feb.day, feb.month_secs()), (2, 1, 28 * 86_400));
        let dec = Calendar::of(1_798_761_600 - 1); // 2026-12-31T23:59:59Z
        assert_eq!((dec.year, dec.month, dec.day), (2026, 12, 31));
        assert_eq!(Calendar::of(dec.month_end).year, 2027);
        for d in [-1000, 0, 19_000, 20_454] {
            let (y, m, dd) = crate::audit::record::civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[tokio::test]
    async fn reserve_refuses_what_would_overrun_and_reconcile_returns_the_rest() {
        let (b, ledger) = budgets(0);
        let r = role(1000, None);
        let scope = BudgetScope {
            principal: "alice",
            role: &r,
            tenant: None,
        };
        let now = at(JAN31_23H);
        let first = b.reserve(&scope, 600, now).await.unwrap();
        // 600 held: 400 left, so a second 600 is refused with what is left and when it frees up.
        match b.reserve(&scope, 600, now).await {
            Err(Refusal::Exhausted {
                limit,
                requested,
                remaining,
                retry_after,
                ..
            }) => {
                assert_eq!((limit, requested, remaining), (LimitName::Tokens, 600, 400));
                assert_eq!(retry_after, Duration::from_secs(3600));
            }
            other => panic!("{other:?}"),
        }
        let done = b.reconcile(&first, 150).await;
        assert!(done.ok);
        assert_eq!(done.policies[0].remaining, 850);
        let key = principal_tokens_key("alice", "2027-01");
        assert_eq!(ledger.value(&key, "d31"), Some(150));
        assert_eq!(ledger.value(&key, MONTH_ATTR), Some(150));
        // A request bigger than the whole budget is refused without ever fitting.
        assert!(matches!(
            b.reserve(&scope, 1001, now).await,
            Err(Refusal::Exhausted { remaining: 850, .. })
        ));
        // The next day starts empty; the month keeps counting.
        let next = b.reserve(&scope, 1000, at(JAN31_23H + 3600)).await.unwrap();
        b.reconcile(&next, 0).await;
        assert_eq!(
            ledger.value(&principal_tokens_key("alice", "2027-02"), "d01"),
            Some(0)
        );
    }

    #[tokio::test]
    async fn a_tenant_refusal_refunds_the_principal_and_a_failed_reconcile_keeps_the_reservation() {
        let (b, ledger) = budgets(0);
        let r = role(10_000, Some(50_000));
        let tenant = TenantBudget {
            tokens_per_day: 500,
            tokens_per_month: None,
        };
        let scope = BudgetScope {
            principal: "bob",
            role: &r,
            tenant: Some(("acme", tenant)),
        };
        let now = at(JAN31_23H);
        let pkey = principal_tokens_key("bob", "2027-01");
        match b.reserve(&scope, 600, now).await {
            Err(Refusal::Exhausted { limit, .. }) => assert_eq!(limit, LimitName::TenantTokens),
            other => panic!("{other:?}"),
        }
        assert_eq!(ledger.value(&pkey, "d31"), Some(0), "principal refunded");
        let held = b.reserve(&scope, 400, now).await.unwrap();
        ledger
            .failing_adds
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let done = b.reconcile(&held, 100).await;
        assert!(!done.ok);
        assert_eq!(ledger.value(&pkey, "d31"), Some(400), "reservation kept");
        assert_eq!(
            ledger.value(&tenant_tokens_key("acme", "2027-01"), "d31"),
            Some(400)
        );
        let names: Vec<_> = done.policies.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                LimitName::Tokens,
                LimitName::TokensMonth,
                LimitName::TenantTokens
            ]
        );
    }

    #[tokio::test]
    async fn k_offences_suspend_once_and_the_reservation_refuses_until_lifted() {
        let (b, _) = budgets(3);
        let r = role(1000, None);
        let scope = BudgetScope {
            principal: "eve",
            role: &r,
            tenant: None,
        };
        let now = at(JAN31_23H);
        assert_eq!(
            b.record_offence("eve", Offence::Blocked, now)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            b.record_offence("eve", Offence::ForbiddenModel, now)
                .await
                .unwrap(),
            None,
            "kinds are counted apart"
        );
        assert_eq!(
            b.record_offence("eve", Offence::Blocked, now)
                .await
                .unwrap(),
            None
        );
        let until = JAN31_23H + 7200;
        assert_eq!(
            b.record_offence("eve", Offence::Blocked, now)
                .await
                .unwrap(),
            Some(until)
        );
        assert_eq!(
            b.record_offence("eve", Offence::Blocked, now)
                .await
                .unwrap(),
            None,
            "a running suspension does not start again"
        );
        match b.reserve(&scope, 10, now).await {
            Err(Refusal::Suspended { until: u }) => assert_eq!(u, until),
            other => panic!("{other:?}"),
        }
        // The period reaches into February: the next month's item carries it too.
        match b.reserve(&scope, 10, at(until - 1)).await {
            Err(Refusal::Suspended { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(b.reserve(&scope, 10, at(until)).await.is_ok());
        assert_eq!(b.lift("eve", now).await.unwrap(), Some(until));
        assert!(b.reserve(&scope, 10, now).await.is_ok());
        assert_eq!(b.lift("eve", now).await.unwrap(), None);
    }
}
