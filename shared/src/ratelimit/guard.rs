//! The authorizer's guard against credential stuffing: denied tokens are counted per source IP
//! with the same conditional counter as the request limits; after `limit` denials in a window
//! the IP is refused before any token is verified.
//!
//! Cost: an ALLOWED request makes no DynamoDB call at all: the pre-verify check reads only a
//! per-environment blocklist in memory. Each DENIAL makes one `UpdateItem` (1 WRU). The update's
//! answer tells whether the IP has reached the limit (count returned == limit, or the condition
//! failed), and the environment then blocks the IP locally until the window ends. So each
//! execution environment verifies at most one token from a blocked IP per window (the one whose
//! denial taught it) before it refuses that IP unverified; the shared count itself is exact.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use super::{RateError, RateLimiter, Window};
use crate::clock::unix_secs;
use crate::config::AuthFailureConfig;

/// Blocked IPs kept per environment; beyond it new blocks are not cached (the shared count
/// still holds them at the limit).
const MAX_BLOCKED: usize = 10_000;

pub struct FailureGuard {
    limiter: RateLimiter,
    config: AuthFailureConfig,
    /// IP → Unix second its block ends.
    blocked: Mutex<HashMap<String, u64>>,
}

impl FailureGuard {
    pub fn new(limiter: RateLimiter, config: AuthFailureConfig) -> Self {
        Self {
            limiter,
            config,
            blocked: Mutex::new(HashMap::new()),
        }
    }

    fn enabled(&self) -> bool {
        self.config.limit > 0
    }

    /// Zero-cost check before verification.
    pub fn is_blocked(&self, ip: &str, now: SystemTime) -> bool {
        if !self.enabled() {
            return false;
        }
        let blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        blocked.get(ip).is_some_and(|until| unix_secs(now) < *until)
    }

    /// Counts one denial from `ip`; `Ok(true)` when the IP is now blocked.
    pub async fn record_failure(&self, ip: &str, now: SystemTime) -> Result<bool, RateError> {
        if !self.enabled() {
            return Ok(false);
        }
        let secs = self.config.window.as_secs();
        let s = self
            .limiter
            .count_failure(ip, self.config.limit, secs, now)
            .await?;
        let reached = !s.allowed || s.role.remaining == 0;
        if reached {
            let until = Window::containing(now, secs)?.end();
            let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
            if blocked.len() >= MAX_BLOCKED {
                let t = unix_secs(now);
                blocked.retain(|_, u| *u > t);
            }
            if blocked.len() < MAX_BLOCKED {
                blocked.insert(ip.to_owned(), until);
            }
        }
        Ok(reached)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::MemoryCounter;
    use std::time::Duration;

    #[tokio::test]
    async fn blocks_after_limit_until_the_window_ends() {
        let g = FailureGuard::new(
            RateLimiter::new(Box::new(MemoryCounter::default())),
            AuthFailureConfig {
                limit: 3,
                window: Duration::from_secs(60),
            },
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(6_000_000);
        for i in 1..=3 {
            assert!(!g.is_blocked("1.2.3.4", now));
            assert_eq!(g.record_failure("1.2.3.4", now).await.unwrap(), i == 3);
        }
        assert!(g.is_blocked("1.2.3.4", now));
        assert!(!g.is_blocked("5.6.7.8", now));
        assert!(!g.is_blocked("1.2.3.4", now + Duration::from_secs(60)));
    }
}
