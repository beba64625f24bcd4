//! Shared, refreshing key ring.
//!
//! - Hot path: a read lock held only long enough to clone an `Arc<KeyRing>`.
//! - TTL refresh: when the ring is older than `refresh_ttl`, one request refreshes while the others
//!   keep using the current ring (try-lock); once past `max_staleness` they wait for it instead.
//! - Unknown kid: one refresh, and at most one per `unknown_kid_min_interval`, so random kids
//!   cannot turn the authorizer into a Secrets Manager amplifier.
//! - A failed refresh keeps the last good ring, retried no more often than the same interval;
//!   past `max_staleness` every request fails closed with `keys_unavailable`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Mutex, RwLock};

use super::error::{AuthError, SourceError};
use super::keys::KeyRing;
use super::{AuthFailure, Identity, TokenPolicy, verify};
use crate::clock::Clock;

/// Where the JWKS comes from (Secrets Manager in production, a fake in tests).
#[async_trait::async_trait]
pub trait JwksSource: Send + Sync {
    async fn fetch(&self) -> Result<JwksVersions, SourceError>;
}

/// The AWSCURRENT and AWSPREVIOUS secret strings (oct keys are secrets, so they stay wrapped and
/// are zeroized on drop).
pub struct JwksVersions {
    pub current: SecretString,
    pub previous: Option<SecretString>,
}

impl JwksVersions {
    pub fn new(current: impl Into<String>, previous: Option<String>) -> Self {
        Self {
            current: SecretString::from(current.into()),
            previous: previous.map(SecretString::from),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub refresh_ttl: Duration,
    pub max_staleness: Duration,
    pub unknown_kid_min_interval: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            refresh_ttl: Duration::from_secs(300),
            max_staleness: Duration::from_secs(3600),
            unknown_kid_min_interval: Duration::from_secs(30),
        }
    }
}

#[derive(Clone)]
struct Snapshot {
    ring: Arc<KeyRing>,
    /// When the source last answered successfully.
    fetched_at: SystemTime,
    /// Bumped on every successful refresh, so waiters can tell someone else already refreshed.
    generation: u64,
}

#[derive(Default)]
struct RefreshState {
    last_unknown_kid_refresh: Option<SystemTime>,
    last_failure: Option<SystemTime>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Ttl,
    UnknownKid,
}

pub struct KeyCache<S: JwksSource> {
    source: S,
    config: CacheConfig,
    clock: Arc<dyn Clock>,
    snapshot: RwLock<Snapshot>,
    // Held for the whole fetch: only one refresh is ever in flight.
    refresh: Mutex<RefreshState>,
}

/// Elapsed time from `earlier` to `now`; a clock that went backwards counts as no time.
fn elapsed(earlier: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(earlier).unwrap_or(Duration::ZERO)
}

async fn fetch_ring<S: JwksSource>(source: &S) -> Result<KeyRing, SourceError> {
    let versions = source.fetch().await?;
    let built = KeyRing::from_jwks(
        versions.current.expose_secret(),
        versions.previous.as_ref().map(|p| p.expose_secret()),
    );
    match built {
        Ok((ring, report)) => {
            if report.warnings() > 0 {
                tracing::warn!(
                    loaded = report.loaded,
                    warnings = report.warnings(),
                    "JWKS loaded with warnings"
                );
            }
            Ok(ring)
        }
        Err(e) => Err(SourceError::new(format!("JWKS rejected: {e}"))),
    }
}

impl<S: JwksSource> KeyCache<S> {
    /// Fetches and builds the first ring. Failure is an error: the function must not start
    /// without keys.
    pub async fn load(
        source: S,
        config: CacheConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AuthError> {
        let ring = fetch_ring(&source).await.map_err(|e| {
            tracing::error!(error = %e, "initial JWKS load failed");
            AuthError::KeysUnavailable
        })?;
        let fetched_at = clock.now();
        Ok(Self {
            source,
            config,
            clock,
            snapshot: RwLock::new(Snapshot {
                ring: Arc::new(ring),
                fetched_at,
                generation: 0,
            }),
            refresh: Mutex::new(RefreshState::default()),
        })
    }

    async fn snapshot(&self) -> Snapshot {
        self.snapshot.read().await.clone()
    }

    /// The current ring (for diagnostics and tests).
    pub async fn ring(&self) -> Arc<KeyRing> {
        self.snapshot().await.ring
    }

    pub async fn verify(
        &self,
        policy: &TokenPolicy,
        authorization_header: &str,
    ) -> Result<Identity, AuthFailure> {
        let now = self.clock.now();
        let mut snap = self.snapshot().await;
        let age = elapsed(snap.fetched_at, now);
        if age >= self.config.refresh_ttl {
            let must_wait = age > self.config.max_staleness;
            if self.refresh(Trigger::Ttl, snap.generation, must_wait).await {
                snap = self.snapshot().await;
            }
        }
        if elapsed(snap.fetched_at, now) > self.config.max_staleness {
            return Err(AuthError::KeysUnavailable.into());
        }
        match verify(&snap.ring, policy, authorization_header, now) {
            Err(f) if f.error == AuthError::UnknownKid => {
                if self
                    .refresh(Trigger::UnknownKid, snap.generation, true)
                    .await
                {
                    let snap = self.snapshot().await;
                    verify(&snap.ring, policy, authorization_header, now)
                } else {
                    Err(f)
                }
            }
            other => other,
        }
    }

    /// Refreshes if allowed. Returns true when a newer ring is available than `seen_generation`.
    async fn refresh(&self, trigger: Trigger, seen_generation: u64, wait: bool) -> bool {
        let mut state = if wait {
            self.refresh.lock().await
        } else {
            match self.refresh.try_lock() {
                Ok(g) => g,
                // Another request is already refreshing; keep serving the current ring.
                Err(_) => return false,
            }
        };
        if self.snapshot.read().await.generation != seen_generation {
            return true;
        }
        let now = self.clock.now();
        let min_interval = self.config.unknown_kid_min_interval;
        if state
            .last_failure
            .is_some_and(|t| elapsed(t, now) < min_interval)
        {
            return false;
        }
        if trigger == Trigger::UnknownKid {
            if state
                .last_unknown_kid_refresh
                .is_some_and(|t| elapsed(t, now) < min_interval)
            {
                return false;
            }
            // Counted before fetching, so a failing fetch is rate-limited too.
            state.last_unknown_kid_refresh = Some(now);
        }
        match fetch_ring(&self.source).await {
            Ok(ring) => {
                let mut snap = self.snapshot.write().await;
                snap.generation = snap.generation.wrapping_add(1);
                snap.ring = Arc::new(ring);
                snap.fetched_at = now;
                state.last_failure = None;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS refresh failed; serving last good keys");
                state.last_failure = Some(now);
                false
            }
        }
    }
}
