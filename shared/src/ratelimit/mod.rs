//! Fixed-window rate limits on an atomic counter.
//!
//! One counter item per (subject, window): the window start is part of the key, so a new window
//! is a new item and nothing ever resets a count. Each request is ONE conditional increment
//! (`RateCounter::hit`); remaining and reset come from that call's answer (or, on denial, from
//! the item returned with the failed condition), never from an extra read. The reset time needs
//! no read at all: it is the end of the fixed window.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::clock::unix_secs;
use crate::policy::RoleLimits;

#[cfg(feature = "predict")]
pub mod budget;
pub mod dynamo;
pub mod guard;

/// Kept past the window's end before TTL may collect the item (TTL is clean-up only).
const TTL_SLACK_SECS: u64 = 3600;

/// Key prefixes of the rate table, one constant each. predict writes only keys under
/// `PRINCIPAL_PREFIX` (request counters, token budgets, offence counts, suspensions, all keyed by
/// principal) and `TENANT_PREFIX` (tenant token budgets); the authorizer only under
/// `AUTHFAIL_PREFIX`. The template's IAM holds each function's role to its own prefixes with
/// `dynamodb:LeadingKeys`, and `devtools/tests/template_security.rs` checks it against these.
pub const PRINCIPAL_PREFIX: &str = "user#";
pub const TENANT_PREFIX: &str = "tenant#";
pub const AUTHFAIL_PREFIX: &str = "authfail#";
/// The prefixes predict's role may write.
pub const PREDICT_PREFIXES: [&str; 2] = [PRINCIPAL_PREFIX, TENANT_PREFIX];
/// The prefixes the authorizer's role may write.
pub const AUTHORIZER_PREFIXES: [&str; 1] = [AUTHFAIL_PREFIX];

/// The counter key of a principal: [`crate::principal::Principal::key`] (issuer hash, tenant,
/// subject), the same key the audit trail uses, so the same `sub` from two issuers or tenants
/// never shares a counter.
pub fn principal_key(p: &crate::principal::Principal) -> String {
    p.key()
}

#[derive(Debug, thiserror::Error)]
pub enum RateError {
    /// The counter store did not answer (error, throttling or timeout): the caller fails closed.
    #[error("rate counter unavailable: {0}")]
    Unavailable(String),
    #[error("invalid rate limit: {0}")]
    Invalid(&'static str),
}

/// One conditional increment: count one more on `key` unless `count >= limit` (or, when `sub`
/// is set, unless that second counter of the same item is at its own limit).
#[derive(Debug, Clone)]
pub struct Hit<'a> {
    pub key: &'a str,
    pub limit: u32,
    /// A second limit kept in the same item (per-model limit): attribute name and limit.
    pub sub: Option<(&'a str, u32)>,
    /// Unix seconds after which TTL may delete the item.
    pub expires_at: u64,
}

/// What the counter answered. On a denial the counts come from the item returned with the failed
/// condition; `None` when the store did not return it (then the caller assumes "at the limit").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HitOutcome {
    pub allowed: bool,
    pub count: Option<u32>,
    pub sub_count: Option<u32>,
}

/// A counter store: the DynamoDB adapter, or `MemoryCounter` in unit tests.
#[async_trait::async_trait]
pub trait RateCounter: Send + Sync {
    async fn hit(&self, hit: &Hit<'_>) -> Result<HitOutcome, RateError>;
}

/// A shared counter (tests keep a handle on the store they hand to a limiter).
#[async_trait::async_trait]
impl<T: RateCounter + ?Sized> RateCounter for std::sync::Arc<T> {
    async fn hit(&self, hit: &Hit<'_>) -> Result<HitOutcome, RateError> {
        (**self).hit(hit).await
    }
}

/// The fixed window containing `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u64,
    pub secs: u64,
}

impl Window {
    pub fn containing(now: SystemTime, secs: u64) -> Result<Self, RateError> {
        if secs == 0 {
            return Err(RateError::Invalid("window of 0 seconds"));
        }
        let t = unix_secs(now);
        Ok(Self {
            start: t - t % secs,
            secs,
        })
    }

    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.secs)
    }

    /// Whole seconds until the window ends, at least 1 (what `Retry-After` and `t=` carry).
    pub fn reset_after(&self, now: SystemTime) -> u64 {
        self.end().saturating_sub(unix_secs(now)).max(1)
    }
}

/// One request limit and what is left of it in the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub remaining: u32,
}

/// The answer a caller turns into headers: the role's limit, the model's own limit when it has
/// one, and (on a denial) which of the two refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateStatus {
    pub allowed: bool,
    pub role: Quota,
    pub model: Option<Quota>,
    /// On a denial: the model's limit refused (the role's still had room).
    pub model_bound: bool,
    pub window_secs: u64,
    pub reset_secs: u64,
}

impl RateStatus {
    /// The quota that refused (denied) or has the least left (allowed).
    pub fn binding(&self) -> Quota {
        match self.model {
            Some(m) if self.model_bound || (self.allowed && m.remaining < self.role.remaining) => m,
            _ => self.role,
        }
    }
}

/// Per-principal limits for predict, and per-IP failure counts for the authorizer.
pub struct RateLimiter {
    counter: Box<dyn RateCounter>,
}

/// The counter attribute of a model's own limit inside the principal's item.
fn model_attr(model: &str) -> String {
    format!("m_{model}")
}

impl RateLimiter {
    pub fn new(counter: Box<dyn RateCounter>) -> Self {
        Self { counter }
    }

    /// Counts one predict request of `sub` on `model`. The role limit (most generous over the
    /// principal's roles, see `PolicyStore::limits_for`) covers all models; a model with its own
    /// `requests_per_window` adds a second, tighter counter in the same item, so this stays one
    /// write.
    pub async fn check_principal(
        &self,
        sub: &str,
        limits: &RoleLimits,
        model: &str,
        model_limit: Option<u32>,
        now: SystemTime,
    ) -> Result<RateStatus, RateError> {
        let window = Window::containing(now, u64::from(limits.window_seconds))?;
        let key = request_counter_key(sub, window);
        let attr = model_attr(model);
        let sub_limit = model_limit.map(|m| m.min(limits.requests_per_window));
        let hit = Hit {
            key: &key,
            limit: limits.requests_per_window,
            sub: sub_limit.map(|l| (attr.as_str(), l)),
            expires_at: window.end().saturating_add(TTL_SLACK_SECS),
        };
        let out = self.counter.hit(&hit).await?;
        Ok(status(&hit, &out, window, now))
    }

    /// Counts one authentication failure from `ip`. `allowed == false` means the IP had already
    /// reached `limit` failures in this window; `remaining == 0` means it has now.
    pub async fn count_failure(
        &self,
        ip: &str,
        limit: u32,
        window_secs: u64,
        now: SystemTime,
    ) -> Result<RateStatus, RateError> {
        let window = Window::containing(now, window_secs)?;
        let key = format!("{AUTHFAIL_PREFIX}{}#{}#{ip}", window.secs, window.start);
        let hit = Hit {
            key: &key,
            limit,
            sub: None,
            expires_at: window.end().saturating_add(TTL_SLACK_SECS),
        };
        let out = self.counter.hit(&hit).await?;
        Ok(status(&hit, &out, window, now))
    }
}

/// The request counter item of `sub` in `window`. The subject goes last and every field before
/// it is numeric, so no sub can forge another principal's key.
pub fn request_counter_key(sub: &str, window: Window) -> String {
    format!("{PRINCIPAL_PREFIX}{}#{}#{sub}", window.secs, window.start)
}

/// What is left of each limit. A denial without the item returned reads as "nothing left" on
/// the role's limit, which is what the failed condition proves.
fn status(hit: &Hit<'_>, out: &HitOutcome, window: Window, now: SystemTime) -> RateStatus {
    let role_left = match out.count {
        Some(c) => hit.limit.saturating_sub(c),
        None => 0,
    };
    let model = hit.sub.map(|(_, limit)| Quota {
        limit,
        remaining: match out.sub_count {
            Some(c) => limit.saturating_sub(c),
            None if out.allowed => limit,
            None => 0,
        },
    });
    RateStatus {
        allowed: out.allowed,
        role: Quota {
            limit: hit.limit,
            remaining: role_left,
        },
        model,
        model_bound: !out.allowed && role_left > 0 && model.is_some(),
        window_secs: window.secs,
        reset_secs: window.reset_after(now),
    }
}

/// In-memory counter with the same semantics, for unit tests of the logic.
#[derive(Default)]
pub struct MemoryCounter {
    items: Mutex<HashMap<String, HashMap<String, u32>>>,
}

impl MemoryCounter {
    pub fn count(&self, key: &str, attr: &str) -> Option<u32> {
        let items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        items.get(key).and_then(|i| i.get(attr)).copied()
    }
}

#[async_trait::async_trait]
impl RateCounter for MemoryCounter {
    async fn hit(&self, hit: &Hit<'_>) -> Result<HitOutcome, RateError> {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        let item = items.entry(hit.key.to_owned()).or_default();
        let count = item.get("count").copied();
        let sub_count = hit.sub.and_then(|(a, _)| item.get(a).copied());
        let main_ok = count.is_none_or(|c| c < hit.limit);
        let sub_ok = hit.sub.is_none_or(|(_, l)| sub_count.is_none_or(|c| c < l));
        if !(main_ok && sub_ok) {
            return Ok(HitOutcome {
                allowed: false,
                count,
                sub_count,
            });
        }
        let c = count.unwrap_or(0) + 1;
        item.insert("count".into(), c);
        let s = hit.sub.map(|(a, _)| {
            let s = sub_count.unwrap_or(0) + 1;
            item.insert(a.to_owned(), s);
            s
        });
        Ok(HitOutcome {
            allowed: true,
            count: Some(c),
            sub_count: s,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(n: u32) -> RoleLimits {
        RoleLimits {
            requests_per_window: n,
            window_seconds: 60,
            max_prompt_chars: 100,
            max_tokens: 100,
            tokens_per_day: 1000,
            tokens_per_month: None,
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[tokio::test]
    async fn counts_down_then_denies_and_a_new_window_starts_fresh() {
        let rl = RateLimiter::new(Box::new(MemoryCounter::default()));
        let now = at(6_000_020); // 20 s into a 60 s window
        for i in 1..=3u32 {
            let s = rl
                .check_principal("alice", &limits(3), "echo", None, now)
                .await
                .unwrap();
            assert!(s.allowed);
            assert_eq!(
                (s.role.limit, s.role.remaining, s.reset_secs),
                (3, 3 - i, 40)
            );
        }
        let s = rl
            .check_principal("alice", &limits(3), "echo", None, now)
            .await
            .unwrap();
        assert!(!s.allowed && !s.model_bound);
        assert_eq!((s.role.remaining, s.reset_secs, s.window_secs), (0, 40, 60));
        let other = rl
            .check_principal("bob", &limits(3), "echo", None, now)
            .await
            .unwrap();
        assert!(other.allowed, "counters are per principal");
        let next = rl
            .check_principal("alice", &limits(3), "echo", None, at(6_000_060))
            .await
            .unwrap();
        assert!(next.allowed && next.role.remaining == 2, "{next:?}");
    }

    #[tokio::test]
    async fn a_model_limit_binds_inside_the_role_limit() {
        let rl = RateLimiter::new(Box::new(MemoryCounter::default()));
        let now = at(6_000_000);
        for _ in 0..2 {
            let s = rl
                .check_principal("a", &limits(5), "sonnet", Some(2), now)
                .await
                .unwrap();
            assert!(s.allowed);
            assert_eq!(s.binding().limit, 2);
        }
        let s = rl
            .check_principal("a", &limits(5), "sonnet", Some(2), now)
            .await
            .unwrap();
        assert!(!s.allowed && s.model_bound);
        assert_eq!(
            s.model,
            Some(Quota {
                limit: 2,
                remaining: 0
            })
        );
        assert_eq!(
            s.role,
            Quota {
                limit: 5,
                remaining: 3
            },
            "both are reported"
        );
        // Other models still have the role's budget: 5 - 2 used.
        let s = rl
            .check_principal("a", &limits(5), "echo", None, now)
            .await
            .unwrap();
        assert!(s.allowed && s.model.is_none());
        assert_eq!(
            s.role,
            Quota {
                limit: 5,
                remaining: 2
            }
        );
    }

    #[test]
    fn window_arithmetic_and_zero_window() {
        let w = Window::containing(at(125), 60).unwrap();
        assert_eq!((w.start, w.end(), w.reset_after(at(125))), (120, 180, 55));
        assert_eq!(w.reset_after(at(180)), 1, "never 0");
        assert!(Window::containing(at(1), 0).is_err());
    }

    #[test]
    fn denial_without_returned_item_reads_as_exhausted() {
        let hit = Hit {
            key: "k",
            limit: 10,
            sub: None,
            expires_at: 0,
        };
        let out = HitOutcome {
            allowed: false,
            count: None,
            sub_count: None,
        };
        let s = status(&hit, &out, Window { start: 0, secs: 60 }, at(30));
        assert_eq!((s.allowed, s.role.remaining, s.reset_secs), (false, 0, 30));
    }
}
