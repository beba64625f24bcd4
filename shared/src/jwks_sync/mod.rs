//! `jwks-sync`: copies the identity provider's public JWKS into the JWKS secret,
//! so the authorizer never calls out per request and rotation stays the provider's own.
//!
//! One run: (discovery document →) JWKS URL → fetch → validate → compare with AWSCURRENT → put
//! only when the key set changed (the old set then sits in AWSPREVIOUS, which the authorizer
//! still accepts). Every step is fail-closed: any error leaves the secret untouched, is logged
//! with its reason and counted as the EMF metric `JwksSyncFailed` (alarmed in the template).
//!
//! Validation (`prepare`): HTTPS only (plain HTTP for loopback addresses alone), the JWKS host is
//! the issuer's unless allow-listed, redirects never leave the host they started on, a size cap
//! and a timeout on every fetch (`http::HyperHttp`); the document is strict JSON (duplicate
//! keys refused) with a `keys` array; keys marked for encryption (`use: enc`, `key_ops` without
//! `verify`: Keycloak publishes an RSA-OAEP key beside its signing key) are left out; every other
//! key must be a public signing key the authorizer's own key ring accepts, or the run fails; a
//! symmetric (`oct`) or private key at a URL fails the run; `alg` comes from
//! `GATEHOUSE_JWKS_DEFAULT_ALG` only where the provider omits it (Entra ID).
use std::fmt;
use std::time::Instant;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use url::Url;

use crate::auth::KeyRing;
use crate::auth::strict_json::parse_value as strict_json_value;
use crate::config::jwks_sync::check_fetch_url;
use crate::config::{JwksSyncConfig, SyncSource};

pub mod cfn;
pub mod http;
pub mod store;

#[cfg(test)]
mod tests;

/// Most keys a synced JWKS may hold (providers publish a handful).
pub const MAX_KEYS: usize = 100;

/// Why a fetch failed. Carries no response body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: timed out")]
    Timeout { url: String },
    #[error("{url}: answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("{url}: redirect refused ({why})")]
    Redirect { url: String, why: String },
    #[error("{url}: {why}")]
    Transport { url: String, why: String },
}

/// HTTP for the sync: GET with the redirect, size and time limits; PUT for CloudFormation's
/// custom-resource response.
#[async_trait::async_trait]
pub trait Http: Send + Sync {
    async fn get(&self, url: &Url) -> Result<Vec<u8>, FetchError>;
    async fn put(&self, url: &Url, body: String) -> Result<(), FetchError>;
}

/// The JWKS secret's AWSCURRENT version.
pub struct StoredJwks {
    pub version_id: String,
    pub document: SecretString,
}

/// Why the secret could not be read or written (no secret material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// The JWKS secret (Secrets Manager in production, a fake in unit tests).
#[async_trait::async_trait]
pub trait JwksStore: Send + Sync {
    async fn current(&self) -> Result<StoredJwks, StoreError>;
    /// Puts `document` as the new AWSCURRENT version; `request_token` (32-64 characters) makes
    /// the put idempotent (`ClientRequestToken`), so two overlapping runs cannot push the same
    /// set twice and lose the previous one from AWSPREVIOUS. Returns the new version id.
    async fn put(&self, document: &str, request_token: &str) -> Result<String, StoreError>;
}

/// Why a run failed; `reason()` is the stable code in logs and the handler's answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("fetch failed: {0}")]
    Fetch(#[from] FetchError),
    #[error("{url}: {why}")]
    UrlRefused { url: String, why: String },
    #[error("discovery document: {0}")]
    Discovery(String),
    #[error("JWKS: {0}")]
    Jwks(String),
    #[error("reading the JWKS secret failed: {0}")]
    SecretRead(String),
    #[error("writing the JWKS secret failed: {0}")]
    SecretWrite(String),
}

impl SyncError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Fetch(FetchError::Timeout { .. }) => "timeout",
            Self::Fetch(FetchError::Status { .. }) => "http_status",
            Self::Fetch(FetchError::TooLarge { .. }) => "too_large",
            Self::Fetch(FetchError::Redirect { .. }) => "redirect_refused",
            Self::Fetch(FetchError::Transport { .. }) => "transport",
            Self::UrlRefused { .. } => "url_refused",
            Self::Discovery(_) => "invalid_discovery",
            Self::Jwks(_) => "invalid_jwks",
            Self::SecretRead(_) => "secret_read_failed",
            Self::SecretWrite(_) => "secret_write_failed",
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No provider configured (manual JWKS): nothing fetched, nothing written.
    Manual,
    /// The provider's key set equals AWSCURRENT: nothing written.
    Unchanged { kids: Vec<String> },
    /// A new AWSCURRENT version; the previous one is now AWSPREVIOUS.
    Updated {
        kids: Vec<String>,
        version_id: String,
    },
}

impl Outcome {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Unchanged { .. } => "unchanged",
            Self::Updated { .. } => "updated",
        }
    }
}

/// A validated key set, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    /// Canonical JSON: keys sorted by `kid`, each with only the members a verifier uses.
    pub canonical: String,
    pub kids: Vec<String>,
    /// Keys left out because they are not for signatures (kid, why).
    pub dropped: Vec<(String, &'static str)>,
}

/// Members a public verification key keeps; everything else (`x5c`, `x5t`, `issuer`, ...) is
/// left out of the stored set.
const KEPT: [&str; 9] = ["kty", "kid", "alg", "use", "crv", "n", "e", "x", "y"];
/// Private or symmetric key members: never acceptable from a URL.
const SECRET_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The canonical form of a JWKS value: `keys` sorted by `kid`, each key reduced to `KEPT`.
/// `None` if it is not a JWKS.
fn canonical_of(doc: &Value) -> Option<String> {
    let keys = doc.get("keys")?.as_array()?;
    let mut out: Vec<(String, Map<String, Value>)> = Vec::with_capacity(keys.len());
    for k in keys {
        let o = k.as_object()?;
        let kept: Map<String, Value> = KEPT
            .iter()
            .filter_map(|m| o.get(*m).map(|v| ((*m).to_owned(), v.clone())))
            .collect();
        let kid = o
            .get("kid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        out.push((kid, kept));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let keys: Vec<Value> = out.into_iter().map(|(_, m)| Value::Object(m)).collect();
    Some(json!({ "keys": keys }).to_string())
}

/// Validates a fetched JWKS and returns the set to store (module doc: the rules).
pub fn prepare(body: &[u8], default_alg: Option<&str>) -> Result<KeySet, SyncError> {
    let bad = |m: String| SyncError::Jwks(m);
    let doc = strict_json_value(body).map_err(|e| bad(e.to_string()))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("not an object with a `keys` array".into()))?;
    if keys.len() > MAX_KEYS {
        return Err(bad(format!("{} keys, more than {MAX_KEYS}", keys.len())));
    }
    let mut kept = Vec::with_capacity(keys.len());
    let mut dropped = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let o = k
            .as_object()
            .ok_or_else(|| bad(format!("keys[{i}] is not an object")))?;
        let kid = o
            .get("kid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let name = if kid.is_empty() {
            format!("keys[{i}]")
        } else {
            format!("key {kid:?}")
        };
        match o.get("use") {
            None => {}
            Some(Value::String(u)) if u == "sig" => {}
            Some(Value::String(_)) => {
                dropped.push((kid, "use is not sig"));
                continue;
            }
            Some(_) => return Err(bad(format!("{name}: `use` is not a string"))),
        }
        if let Some(ops) = o.get("key_ops") {
            let ops = ops
                .as_array()
                .ok_or_else(|| bad(format!("{name}: `key_ops` is not an array")))?;
            if !ops.iter().any(|op| op.as_str() == Some("verify")) {
                dropped.push((kid, "key_ops without verify"));
                continue;
            }
        }
        if o.get("kty").and_then(Value::as_str) == Some("oct") {
            return Err(bad(format!(
                "{name} is a symmetric (oct) key: a shared secret published at a URL is compromised"
            )));
        }
        if let Some(m) = SECRET_MEMBERS.iter().find(|m| o.contains_key(**m)) {
            return Err(bad(format!("{name} carries private key material (`{m}`)")));
        }
        let mut key = o.clone();
        match (o.get("alg"), default_alg) {
            (Some(Value::String(a)), _) if !a.is_empty() => {}
            (None, Some(alg)) => {
                key.insert("alg".into(), Value::String(alg.to_owned()));
            }
            (None, None) => {
                return Err(bad(format!(
                    "{name} has no `alg` (set GATEHOUSE_JWKS_DEFAULT_ALG for providers that omit it, e.g. RS256 for Entra ID)"
                )));
            }
            (Some(_), _) => return Err(bad(format!("{name}: `alg` is not a non-empty string"))),
        }
        kept.push(Value::Object(key));
    }
    if kept.is_empty() {
        // An empty set would revoke every token at once: that is the owner's decision (a manual
        // put), never the result of a fetch.
        return Err(bad("no signing key in the document".into()));
    }
    let canonical =
        canonical_of(&json!({ "keys": kept })).ok_or_else(|| bad("not a JWKS".into()))?;
    // The authorizer's own rules decide what is usable: a key it would skip fails the run here,
    // rather than silently denying that key's tokens later.
    let (ring, report) = KeyRing::from_jwks(&canonical, None).map_err(|e| bad(e.to_string()))?;
    if let Some(s) = report.skipped.first() {
        return Err(bad(format!(
            "key {:?} is not usable for signatures: {}",
            s.kid.as_deref().unwrap_or(""),
            s.reason.as_str()
        )));
    }
    Ok(KeySet {
        canonical,
        kids: ring.kids().into_iter().map(str::to_owned).collect(),
        dropped,
    })
}

/// `ClientRequestToken` of a put: hex SHA-256 of the set and the version it replaces, so racing
/// runs that saw the same AWSCURRENT make the same (idempotent) put, while a set that comes back
/// after another one still gets a new version.
pub fn request_token(canonical: &str, replaces_version: &str) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(replaces_version.as_bytes());
    ctx.update(b"\n");
    ctx.update(canonical.as_bytes());
    hex::encode(ctx.finish().as_ref())
}

/// The sync: configuration, HTTP and the secret.
pub struct Syncer<H: Http, S: JwksStore> {
    pub config: JwksSyncConfig,
    pub http: H,
    pub store: S,
}

fn excerpt(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 120 {
        let mut end = 120;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

impl<H: Http, S: JwksStore> Syncer<H, S> {
    /// The URL must be fetchable (https, or loopback http) and on the issuer's or an
    /// allow-listed host.
    fn check_url(&self, url: &Url) -> Result<(), SyncError> {
        let refused = |why: String| SyncError::UrlRefused {
            url: url.to_string(),
            why,
        };
        check_fetch_url(url).map_err(refused)?;
        if !self.config.host_allowed(url) {
            return Err(refused(format!(
                "host is neither the issuer's ({}) nor in GATEHOUSE_JWKS_ALLOWED_HOSTS",
                self.config.issuer_host
            )));
        }
        Ok(())
    }

    /// Reads the discovery document and returns its `jwks_uri`.
    async fn discover(&self, document: &Url) -> Result<Url, SyncError> {
        self.check_url(document)?;
        let body = self.http.get(document).await?;
        let bad = |m: String| SyncError::Discovery(m);
        let doc = strict_json_value(&body).map_err(|e| bad(e.to_string()))?;
        let issuer = doc.get("issuer").ok_or_else(|| bad("no `issuer`".into()))?;
        // OpenID Connect Discovery 1.0 §4.3: the issuer must be exactly ours.
        if issuer.as_str() != Some(self.config.issuer.as_str()) {
            return Err(bad(format!(
                "`issuer` is {}, expected exactly {:?}",
                excerpt(issuer),
                self.config.issuer
            )));
        }
        let uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no `jwks_uri` string".into()))?;
        Url::parse(uri).map_err(|e| bad(format!("`jwks_uri` is not a URL: {e}")))
    }

    /// One sync run.
    pub async fn run(&self) -> Result<Outcome, SyncError> {
        let url = match &self.config.source {
            SyncSource::Manual => return Ok(Outcome::Manual),
            SyncSource::JwksUrl { url } => url.clone(),
            SyncSource::Discovery { document } => self.discover(document).await?,
        };
        self.check_url(&url)?;
        let body = self.http.get(&url).await?;
        let set = prepare(&body, self.config.default_alg.as_deref())?;
        for (kid, why) in &set.dropped {
            tracing::info!(kid = kid.as_str(), why, "JWK left out (not a signing key)");
        }
        let current = self
            .store
            .current()
            .await
            .map_err(|e| SyncError::SecretRead(e.0))?;
        let same = strict_json_value(current.document.expose_secret().as_bytes())
            .ok()
            .and_then(|v| canonical_of(&v))
            .is_some_and(|c| c == set.canonical);
        if same {
            return Ok(Outcome::Unchanged { kids: set.kids });
        }
        let token = request_token(&set.canonical, &current.version_id);
        let version_id = self
            .store
            .put(&set.canonical, &token)
            .await
            .map_err(|e| SyncError::SecretWrite(e.0))?;
        Ok(Outcome::Updated {
            kids: set.kids,
            version_id,
        })
    }

    /// A run with its log line and EMF metric (`JwksSyncUpdated`, `JwksSyncUnchanged`,
    /// `JwksSyncFailed`); the answer is the report the handler returns.
    pub async fn run_and_report(&self) -> Report {
        let started = Instant::now();
        let result = self.run().await;
        let report = Report::from_result(&result);
        match &result {
            Ok(Outcome::Manual) => {
                tracing::info!("no identity provider configured (manual JWKS): nothing to sync");
            }
            Ok(o) => {
                tracing::info!(outcome = o.name(), kids = ?report.kids, version_id = report.version_id.as_deref().unwrap_or(""), "JWKS sync");
            }
            Err(e) => {
                tracing::error!(outcome = "failed", reason = e.reason(), error = %e, "JWKS sync failed; the secret is unchanged");
            }
        }
        if let Some(metric) = report.metric() {
            crate::metrics::emit("jwks-sync", metric, started.elapsed());
        }
        report
    }
}

/// What a run answers (the function's result, and the custom resource's `Data`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Report {
    pub fn from_result(r: &Result<Outcome, SyncError>) -> Self {
        let base = |outcome| Report {
            outcome,
            kids: Vec::new(),
            version_id: None,
            reason: None,
            detail: None,
        };
        match r {
            Ok(Outcome::Manual) => base("manual"),
            Ok(Outcome::Unchanged { kids }) => Report {
                kids: kids.clone(),
                ..base("unchanged")
            },
            Ok(Outcome::Updated { kids, version_id }) => Report {
                kids: kids.clone(),
                version_id: Some(version_id.clone()),
                ..base("updated")
            },
            Err(e) => Report {
                reason: Some(e.reason()),
                detail: Some(e.to_string()),
                ..base("failed")
            },
        }
    }

    pub fn failed(&self) -> bool {
        self.outcome == "failed"
    }

    fn metric(&self) -> Option<&'static str> {
        match self.outcome {
            "updated" => Some("JwksSyncUpdated"),
            "unchanged" => Some("JwksSyncUnchanged"),
            "failed" => Some("JwksSyncFailed"),
            _ => None,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.reason, &self.detail) {
            (Some(r), Some(d)) => write!(f, "{}: {r}: {d}", self.outcome),
            _ => write!(f, "{} [{}]", self.outcome, self.kids.join(", ")),
        }
    }
}

/// One invocation: a CloudFormation custom-resource event (`RequestType` + `ResponseURL`) runs
/// the sync on Create/Update and answers CloudFormation (on Create, FAILED with the reason when
/// the sync fails, so a first deploy pointing at a wrong issuer stops with a clear message; see
/// `cfn::CustomResourceEvent::response`; Delete always succeeds and changes nothing); anything else (the EventBridge schedule, `aws lambda invoke`)
/// runs the sync and returns the report.
pub async fn handle_event<H: Http, S: JwksStore>(syncer: &Syncer<H, S>, event: &Value) -> Value {
    match cfn::CustomResourceEvent::parse(event) {
        Some(Ok(cr)) => {
            let report = if cr.request_type == cfn::RequestType::Delete {
                None
            } else {
                Some(syncer.run_and_report().await)
            };
            let response = cr.response(report.as_ref());
            if let Err(e) = cfn::send(&syncer.http, &cr.response_url, &response).await {
                tracing::error!(error = %e, "could not answer CloudFormation");
            }
            serde_json::to_value(&response).unwrap_or(Value::Null)
        }
        Some(Err(why)) => {
            tracing::error!(why, "malformed CloudFormation custom-resource event");
            json!({"outcome": "failed", "reason": "bad_event", "detail": why})
        }
        None => serde_json::to_value(syncer.run_and_report().await).unwrap_or(Value::Null),
    }
}
