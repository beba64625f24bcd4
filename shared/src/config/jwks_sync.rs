//! `jwks-sync`'s configuration: where the identity provider's keys come from and the limits
//! every fetch is held to. URL rules (HTTPS, loopback-only HTTP, the issuer's host) are checked
//! here at cold start and again on every fetch and redirect (`crate::jwks_sync`).
use std::net::IpAddr;
use std::time::Duration;

use url::Url;

use super::{ConfigError, Env};

/// Where the key set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncSource {
    /// No provider configured: the JWKS secret is maintained by hand (`aws secretsmanager
    /// put-secret-value`), and a sync run changes nothing.
    Manual,
    /// OpenID Connect Discovery 1.0 §4: `<issuer>/.well-known/openid-configuration`, whose
    /// `issuer` must equal ours exactly and whose `jwks_uri` is then fetched.
    Discovery { document: Url },
    /// An explicit JWKS URL (`GATEHOUSE_JWKS_URL`).
    JwksUrl { url: Url },
}

#[derive(Debug, Clone)]
pub struct JwksSyncConfig {
    pub jwks_secret_id: String,
    pub source: SyncSource,
    /// Exact `iss` of the provider (`GATEHOUSE_ISSUER`); empty only in manual mode.
    pub issuer: String,
    /// The host the JWKS must be served from: the issuer's.
    pub issuer_host: String,
    /// Further hosts the JWKS may come from (`GATEHOUSE_JWKS_ALLOWED_HOSTS`, comma-separated),
    /// for providers that serve keys elsewhere (Google: accounts.google.com → www.googleapis.com).
    pub allowed_hosts: Vec<String>,
    /// Largest discovery document or JWKS accepted, in bytes (default 64 KiB, at most 1 MiB).
    pub max_bytes: usize,
    /// Whole-request timeout per fetch (connect, redirects and body), default 5 s.
    pub timeout: Duration,
    /// `alg` given to keys the provider publishes without one (Entra ID publishes RSA keys with
    /// no `alg`: set `RS256`); never overrides an `alg` the provider states.
    pub default_alg: Option<String>,
}

/// Algorithms a default may name (the ring's own list; `none` and HS* never come from a URL).
const DEFAULT_ALGS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// A URL the sync may fetch: `https`, or `http` to a loopback address only (a local provider);
/// no user info, no fragment.
pub fn check_fetch_url(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(url) => {}
        "http" => {
            return Err(format!(
                "{url}: plain http is allowed for loopback addresses only"
            ));
        }
        other => return Err(format!("{url}: scheme {other:?} is not https")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url}: no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{url}: credentials in the URL"));
    }
    if url.fragment().is_some() {
        return Err(format!("{url}: a fragment"));
    }
    Ok(())
}

/// 127.0.0.0/8 or ::1, written as an IP address (a name such as `localhost` is not trusted to
/// resolve to one).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(a)) => IpAddr::V4(a).is_loopback(),
        Some(url::Host::Ipv6(a)) => IpAddr::V6(a).is_loopback(),
        _ => false,
    }
}

/// The host of a URL as compared by the host rule (lower case; IPv6 without brackets).
pub fn host_of(url: &Url) -> String {
    match url.host() {
        Some(url::Host::Ipv6(a)) => a.to_string(),
        Some(h) => h.to_string().to_ascii_lowercase(),
        None => String::new(),
    }
}

/// `<issuer>/.well-known/openid-configuration`, with any trailing `/` of the issuer removed first
/// (OpenID Connect Discovery 1.0 §4).
pub fn discovery_url(issuer: &str) -> Result<Url, String> {
    let base = issuer.trim_end_matches('/');
    Url::parse(&format!("{base}/.well-known/openid-configuration"))
        .map_err(|e| format!("{issuer:?} is not a URL: {e}"))
}

impl JwksSyncConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let invalid =
            |name: &'static str| move |reason: String| ConfigError::Invalid { name, reason };
        let text = |name: &'static str| env.parsed(name, String::new());
        let jwks_url = text("GATEHOUSE_JWKS_URL")?;
        let discovery = env.parsed("GATEHOUSE_OIDC_DISCOVERY", false)?;
        let issuer = text("GATEHOUSE_ISSUER")?;
        let source = if !jwks_url.is_empty() {
            let url = Url::parse(&jwks_url)
                .map_err(|e| e.to_string())
                .and_then(|u| check_fetch_url(&u).map(|()| u))
                .map_err(invalid("GATEHOUSE_JWKS_URL"))?;
            SyncSource::JwksUrl { url }
        } else if discovery {
            let document = discovery_url(&issuer)
                .and_then(|u| check_fetch_url(&u).map(|()| u))
                .map_err(invalid("GATEHOUSE_ISSUER"))?;
            SyncSource::Discovery { document }
        } else {
            SyncSource::Manual
        };
        let issuer_host = if source == SyncSource::Manual {
            String::new()
        } else {
            if issuer.is_empty() {
                return Err(ConfigError::Missing("GATEHOUSE_ISSUER"));
            }
            let u = Url::parse(&issuer).map_err(|e| invalid("GATEHOUSE_ISSUER")(e.to_string()))?;
            check_fetch_url(&u).map_err(invalid("GATEHOUSE_ISSUER"))?;
            host_of(&u)
        };
        let max_bytes: usize = env.parsed("GATEHOUSE_JWKS_MAX_BYTES", 64 * 1024)?;
        if !(1024..=1024 * 1024).contains(&max_bytes) {
            return Err(invalid("GATEHOUSE_JWKS_MAX_BYTES")(
                "must be between 1024 and 1048576".into(),
            ));
        }
        let timeout = Duration::from_millis(env.parsed("GATEHOUSE_JWKS_TIMEOUT_MS", 5000)?);
        if timeout.is_zero() || timeout > Duration::from_secs(60) {
            return Err(invalid("GATEHOUSE_JWKS_TIMEOUT_MS")(
                "must be between 1 and 60000".into(),
            ));
        }
        let default_alg = text("GATEHOUSE_JWKS_DEFAULT_ALG")?;
        if !default_alg.is_empty() && !DEFAULT_ALGS.contains(&default_alg.as_str()) {
            return Err(invalid("GATEHOUSE_JWKS_DEFAULT_ALG")(format!(
                "{default_alg:?} is not one of {}",
                DEFAULT_ALGS.join(", ")
            )));
        }
        Ok(Self {
            jwks_secret_id: env.required("GATEHOUSE_JWKS_SECRET_ID")?,
            source,
            issuer,
            issuer_host,
            allowed_hosts: text("GATEHOUSE_JWKS_ALLOWED_HOSTS")?
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            max_bytes,
            timeout,
            default_alg: (!default_alg.is_empty()).then_some(default_alg),
        })
    }

    /// Whether keys may be fetched from `url`'s host: the issuer's host, or an allow-listed one.
    pub fn host_allowed(&self, url: &Url) -> bool {
        let host = host_of(url);
        host == self.issuer_host || self.allowed_hosts.contains(&host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::env;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn only_https_or_loopback_http() {
        for ok in [
            "https://login.example.com/keys",
            "http://127.0.0.1:3100/jwks.json",
            "http://127.9.9.9/x",
            "http://[::1]:80/x",
        ] {
            assert!(check_fetch_url(&url(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "http://login.example.com/keys",
            "http://localhost:3100/jwks.json",
            "http://10.0.0.1/x",
            "ftp://example.com/x",
            "https://user:pw@example.com/x",
            "https://example.com/x#frag",
            "file:///etc/passwd",
        ] {
            assert!(check_fetch_url(&url(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn discovery_url_drops_a_trailing_slash() {
        assert_eq!(
            discovery_url("https://tenant.auth0.com/").unwrap().as_str(),
            "https://tenant.auth0.com/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://login.microsoftonline.com/t/v2.0")
                .unwrap()
                .as_str(),
            "https://login.microsoftonline.com/t/v2.0/.well-known/openid-configuration"
        );
    }

    #[test]
    fn modes_and_errors() {
        let c = JwksSyncConfig::from_env(&env(&[("GATEHOUSE_JWKS_SECRET_ID", "s")])).unwrap();
        assert_eq!(c.source, SyncSource::Manual);
        let c = JwksSyncConfig::from_env(&env(&[
            ("GATEHOUSE_JWKS_SECRET_ID", "s"),
            ("GATEHOUSE_ISSUER", "https://Login.Example.com/t/v2.0"),
            ("GATEHOUSE_OIDC_DISCOVERY", "true"),
            ("GATEHOUSE_JWKS_ALLOWED_HOSTS", "Keys.Example.net, "),
            ("GATEHOUSE_JWKS_DEFAULT_ALG", "RS256"),
        ]))
        .unwrap();
        assert!(matches!(c.source, SyncSource::Discovery { .. }));
        assert_eq!(c.issuer_host, "login.example.com");
        assert!(c.host_allowed(&url("https://login.example.com/k")));
        assert!(c.host_allowed(&url("https://keys.example.net/k")));
        assert!(!c.host_allowed(&url("https://evil.example.com/k")));
        assert_eq!(c.default_alg.as_deref(), Some("RS256"));
        let c = JwksSyncConfig::from_env(&env(&[
            ("GATEHOUSE_JWKS_SECRET_ID", "s"),
            ("GATEHOUSE_ISSUER", "https://issuer.example/"),
            ("GATEHOUSE_JWKS_URL", "https://issuer.example/jwks"),
        ]))
        .unwrap();
        assert!(matches!(c.source, SyncSource::JwksUrl { .. }));
        for extra in [
            ("GATEHOUSE_JWKS_URL", "http://issuer.example/jwks"),
            ("GATEHOUSE_JWKS_DEFAULT_ALG", "HS256"),
            ("GATEHOUSE_JWKS_DEFAULT_ALG", "none"),
            ("GATEHOUSE_JWKS_MAX_BYTES", "10"),
            ("GATEHOUSE_JWKS_TIMEOUT_MS", "0"),
            ("GATEHOUSE_ISSUER", "http://issuer.example/"),
        ] {
            let r = JwksSyncConfig::from_env(&env(&[
                ("GATEHOUSE_JWKS_SECRET_ID", "s"),
                ("GATEHOUSE_ISSUER", "https://issuer.example/"),
                ("GATEHOUSE_OIDC_DISCOVERY", "true"),
                extra,
            ]));
            assert!(r.is_err(), "{extra:?}");
        }
        // Discovery without an issuer says what is missing.
        assert!(matches!(
            JwksSyncConfig::from_env(&env(&[
                ("GATEHOUSE_JWKS_SECRET_ID", "s"),
                ("GATEHOUSE_OIDC_DISCOVERY", "true"),
            ])),
            Err(ConfigError::Invalid {
                name: "GATEHOUSE_ISSUER",
                ..
            })
        ));
    }
}
