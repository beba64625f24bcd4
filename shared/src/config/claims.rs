//! Claim mapping: where an identity provider puts roles, tenant, scopes and the client id, and
//! which claims mark an access token. Plain configuration, with one preset per provider
//! (README, "Point Gatehouse at your provider"); `crate::auth::validate_claims` applies it.
//!
//! Strictness does not depend on the preset: a claim always has exactly one accepted JSON type,
//! roles and tenants are plain identifiers, and duplicate keys are refused at any depth.
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::{ConfigError, Env};

/// Registered claims (RFC 7519 §4.1) that the verifier reads itself; a mapping may not point
/// inside them, so one JSON value is never read as two things.
pub const REGISTERED: [&str; 7] = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"];

/// Where a claim sits in the payload: a top-level member, or a path into nested objects.
///
/// Written either as dot-separated member names (`realm_access.roles`, `cognito:groups`) or, for
/// names that contain a dot (Auth0's namespaced claims), as an RFC 6901 JSON Pointer
/// (`/https:~1~1api.example.com~1roles`). Only object members are followed, never array indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    segments: Vec<String>,
    text: String,
}

impl ClaimPath {
    /// A top-level claim.
    pub fn top(name: &str) -> Self {
        Self {
            segments: vec![name.to_owned()],
            text: name.to_owned(),
        }
    }

    /// Member names from the payload root down to the claim.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The top-level member the path starts in.
    pub fn first(&self) -> &str {
        self.segments.first().map_or("", String::as_str)
    }

    /// The path as configured (used in deny reasons).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for ClaimPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let segments: Vec<String> = if let Some(pointer) = s.strip_prefix('/') {
            pointer
                .split('/')
                .map(|seg| {
                    // RFC 6901 §4: `~1` is `/`, `~0` is `~`, in that order; any other `~` is invalid.
                    let mut out = String::with_capacity(seg.len());
                    let mut chars = seg.chars();
                    while let Some(c) = chars.next() {
                        match (c, c == '~') {
                            (_, false) => out.push(c),
                            (_, true) => match chars.next() {
                                Some('0') => out.push('~'),
                                Some('1') => out.push('/'),
                                _ => return Err(format!("{s:?}: `~` must be `~0` or `~1`")),
                            },
                        }
                    }
                    Ok(out)
                })
                .collect::<Result<_, _>>()?
        } else {
            s.split('.').map(str::to_owned).collect()
        };
        if segments.is_empty() || segments.iter().any(String::is_empty) {
            return Err(format!("{s:?} is not a claim path (empty member name)"));
        }
        if segments.len() > 4 {
            return Err(format!("{s:?}: at most 4 levels of nesting"));
        }
        if segments.len() == 1 && REGISTERED.contains(&segments[0].as_str()) {
            return Err(format!(
                "{s:?} is a registered claim the verifier reads itself"
            ));
        }
        Ok(Self {
            segments,
            text: s.to_owned(),
        })
    }
}

/// The one JSON type a mapped claim must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimShape {
    /// A JSON array of strings (`roles`, `groups`, `cognito:groups`, `realm_access.roles`, Okta's `scp`).
    Array,
    /// One string (`role`).
    String,
    /// One string of space-separated values (`scope`, Entra's `scp`; RFC 6749 §3.3, RFC 8693 §4.2).
    SpaceDelimited,
}

impl ClaimShape {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Array => "array",
            Self::String => "string",
            Self::SpaceDelimited => "space-delimited",
        }
    }
}

impl FromStr for ClaimShape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "array" => Ok(Self::Array),
            "string" => Ok(Self::String),
            "space-delimited" => Ok(Self::SpaceDelimited),
            other => Err(format!(
                "unknown claim type {other:?} (expected array | string | space-delimited)"
            )),
        }
    }
}

/// A claim and its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimSource {
    pub path: ClaimPath,
    pub shape: ClaimShape,
}

impl ClaimSource {
    fn new(path: &str, shape: ClaimShape) -> Self {
        Self {
            path: ClaimPath {
                segments: path.split('.').map(str::to_owned).collect(),
                text: path.to_owned(),
            },
            shape,
        }
    }
}

/// Identity providers with a documented token shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Gatehouse's own shape: `roles` array (or one `role` string), `tenant`, `aud`.
    Gatehouse,
    /// Amazon Cognito user-pool access tokens.
    Cognito,
    Auth0,
    /// Microsoft Entra ID (v2.0 access tokens).
    Entra,
    Okta,
    Keycloak,
}

impl Preset {
    pub const ALL: [Preset; 6] = [
        Self::Gatehouse,
        Self::Cognito,
        Self::Auth0,
        Self::Entra,
        Self::Okta,
        Self::Keycloak,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gatehouse => "gatehouse",
            Self::Cognito => "cognito",
            Self::Auth0 => "auth0",
            Self::Entra => "entra",
            Self::Okta => "okta",
            Self::Keycloak => "keycloak",
        }
    }

    /// The preset's mapping (no allowed clients or route scopes: those are deployment-specific).
    pub fn mapping(self) -> ClaimMapping {
        use ClaimShape::{Array, SpaceDelimited, String as Str};
        let src = ClaimSource::new;
        let (roles, tenant, scopes, client_id, access_marker) = match self {
            Self::Gatehouse => (
                vec![src("roles", Array), src("role", Str)],
                Some("tenant"),
                src("scope", SpaceDelimited),
                "client_id",
                None,
            ),
            // Access tokens: `cognito:groups`, `scope`, `client_id` (no `aud`), `token_use: access`
            // (Cognito developer guide, "Understanding user pool JSON web tokens").
            Self::Cognito => (
                vec![src("cognito:groups", Array)],
                Some("custom:tenant"),
                src("scope", SpaceDelimited),
                "client_id",
                Some(("token_use", "access")),
            ),
            // Roles from an Action's namespaced claim (Auth0 docs, "Add user roles to tokens");
            // tenant from Auth0 Organizations' `org_id`; `scope` string; `azp` is the client.
            Self::Auth0 => (
                vec![src("https://gatehouse/roles", Array)],
                Some("org_id"),
                src("scope", SpaceDelimited),
                "azp",
                None,
            ),
            // App roles in `roles`, tenant id `tid`, delegated scopes in `scp` (a string), client `azp`.
            Self::Entra => (
                vec![src("roles", Array)],
                Some("tid"),
                src("scp", SpaceDelimited),
                "azp",
                None,
            ),
            // A `groups` claim on the authorization server, scopes in `scp` (an array), client `cid`.
            Self::Okta => (
                vec![src("groups", Array)],
                Some("tenant"),
                src("scp", Array),
                "cid",
                None,
            ),
            // Realm roles, `scope` string, client `azp`; access tokens carry `typ: Bearer`, ID
            // tokens `typ: ID`.
            Self::Keycloak => (
                vec![src("realm_access.roles", Array)],
                Some("tenant"),
                src("scope", SpaceDelimited),
                "azp",
                Some(("typ", "Bearer")),
            ),
        };
        ClaimMapping {
            preset: self,
            roles,
            tenant: tenant.map(ClaimPath::top),
            scopes: Some(scopes),
            client_id_claim: client_id.to_owned(),
            allowed_clients: Vec::new(),
            access_token_claim: access_marker.map(|(k, v)| (k.to_owned(), v.to_owned())),
            required_claims: Vec::new(),
            required_typ: None,
            required_scopes: BTreeMap::new(),
        }
    }
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown claims preset {s:?} (expected gatehouse | cognito | auth0 | entra | okta | keycloak)"
                )
            })
    }
}

/// How the authorizer reads an identity provider's tokens, beyond `iss`/`aud`/times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    pub preset: Preset,
    /// Where roles come from. At most one of these may be present in a token (Gatehouse's own
    /// shape accepts a `roles` array or a `role` string, never both); none present = no roles.
    pub roles: Vec<ClaimSource>,
    /// Where the tenant comes from (a string identifier), if anywhere.
    pub tenant: Option<ClaimPath>,
    /// Where granted scopes come from (for `required_scopes`).
    pub scopes: Option<ClaimSource>,
    /// The top-level claim naming the OAuth client, checked against `allowed_clients` when the
    /// token has no `aud` (as API Gateway's JWT authorizer does: `client_id` only when `aud` is
    /// absent).
    pub client_id_claim: String,
    /// Clients accepted in place of an audience; empty = a token must carry `aud`.
    pub allowed_clients: Vec<String>,
    /// The claim and value that mark an access token (Cognito `token_use: access`, Keycloak
    /// `typ: Bearer`); `None` where the provider marks nothing or the check is turned off.
    pub access_token_claim: Option<(String, String)>,
    /// Further top-level claims that must be present with exactly this string value.
    pub required_claims: Vec<(String, String)>,
    /// JOSE header `typ` a token must carry (RFC 9068 access tokens: `at+jwt`), compared
    /// case-insensitively with an optional `application/` prefix (RFC 7515 §4.1.9).
    pub required_typ: Option<String>,
    /// Route key (`POST /v1/predict`) → scopes a token must all hold to be allowed on it.
    pub required_scopes: BTreeMap<String, Vec<String>>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Preset::Gatehouse.mapping()
    }
}

impl ClaimMapping {
    /// Every top-level claim name the mapping reads (besides the registered ones).
    pub fn wants(&self, name: &str) -> bool {
        self.roles.iter().any(|r| r.path.first() == name)
            || self.tenant.as_ref().is_some_and(|t| t.first() == name)
            || self.scopes.as_ref().is_some_and(|s| s.path.first() == name)
            || self.client_id_claim == name
            || self
                .access_token_claim
                .as_ref()
                .is_some_and(|(k, _)| k == name)
            || self.required_claims.iter().any(|(k, _)| k == name)
    }

    /// Reads the mapping: `GATEHOUSE_CLAIMS_PRESET` (default `gatehouse`), then the overrides
    /// `GATEHOUSE_ROLES_CLAIM` (+ `GATEHOUSE_ROLES_CLAIM_TYPE`, default `array`),
    /// `GATEHOUSE_TENANT_CLAIM` (`none` for no tenant), `GATEHOUSE_SCOPES_CLAIM` (+
    /// `GATEHOUSE_SCOPES_CLAIM_TYPE`, default `space-delimited`), `GATEHOUSE_CLIENT_ID_CLAIM`,
    /// `GATEHOUSE_ALLOWED_CLIENT_IDS` (comma-separated), `GATEHOUSE_ACCESS_TOKENS_ONLY` (default
    /// `true`: apply the preset's access-token marker), `GATEHOUSE_ACCESS_TOKEN_TYP` (header
    /// `typ`), `GATEHOUSE_REQUIRED_CLAIMS` (JSON object of exact string values) and
    /// `GATEHOUSE_REQUIRED_SCOPES` (JSON object: route key → array of scopes).
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let invalid =
            |name: &'static str| move |reason: String| ConfigError::Invalid { name, reason };
        let preset: Preset = env.parsed("GATEHOUSE_CLAIMS_PRESET", Preset::Gatehouse)?;
        let mut m = preset.mapping();
        let text = |name: &'static str| env.parsed(name, String::new());

        let roles = text("GATEHOUSE_ROLES_CLAIM")?;
        if !roles.is_empty() {
            m.roles = vec![ClaimSource {
                path: roles.parse().map_err(invalid("GATEHOUSE_ROLES_CLAIM"))?,
                shape: env.parsed("GATEHOUSE_ROLES_CLAIM_TYPE", ClaimShape::Array)?,
            }];
        }
        match text("GATEHOUSE_TENANT_CLAIM")?.as_str() {
            "" => {}
            "none" => m.tenant = None,
            path => m.tenant = Some(path.parse().map_err(invalid("GATEHOUSE_TENANT_CLAIM"))?),
        }
        let scopes = text("GATEHOUSE_SCOPES_CLAIM")?;
        if !scopes.is_empty() {
            m.scopes = Some(ClaimSource {
                path: scopes.parse().map_err(invalid("GATEHOUSE_SCOPES_CLAIM"))?,
                shape: env.parsed("GATEHOUSE_SCOPES_CLAIM_TYPE", ClaimShape::SpaceDelimited)?,
            });
        }
        let client = text("GATEHOUSE_CLIENT_ID_CLAIM")?;
        if !client.is_empty() {
            let path: ClaimPath = client
                .parse()
                .map_err(invalid("GATEHOUSE_CLIENT_ID_CLAIM"))?;
            if path.segments().len() != 1 {
                return Err(invalid("GATEHOUSE_CLIENT_ID_CLAIM")(
                    "must be a top-level claim".into(),
                ));
            }
            m.client_id_claim = client;
        }
        m.allowed_clients = text("GATEHOUSE_ALLOWED_CLIENT_IDS")?
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        if !env.parsed("GATEHOUSE_ACCESS_TOKENS_ONLY", true)? {
            m.access_token_claim = None;
        }
        let typ = text("GATEHOUSE_ACCESS_TOKEN_TYP")?;
        m.required_typ = (!typ.is_empty()).then_some(typ);
        let required = text("GATEHOUSE_REQUIRED_CLAIMS")?;
        if !required.is_empty() {
            m.required_claims =
                parse_required_claims(&required).map_err(invalid("GATEHOUSE_REQUIRED_CLAIMS"))?;
        }
        let scopes = text("GATEHOUSE_REQUIRED_SCOPES")?;
        if !scopes.is_empty() {
            m.required_scopes =
                parse_required_scopes(&scopes).map_err(invalid("GATEHOUSE_REQUIRED_SCOPES"))?;
            if m.scopes.is_none() {
                return Err(invalid("GATEHOUSE_REQUIRED_SCOPES")(
                    "no scopes claim to check them against (GATEHOUSE_SCOPES_CLAIM)".into(),
                ));
            }
        }
        Ok(m)
    }
}

/// `{"claim": "exact value", ...}` with top-level, non-registered claim names.
pub fn parse_required_claims(json: &str) -> Result<Vec<(String, String)>, String> {
    let v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|e| format!("not a JSON object: {e}"))?;
    v.into_iter()
        .map(|(k, v)| {
            if REGISTERED.contains(&k.as_str()) || k.is_empty() {
                return Err(format!("{k:?} cannot be a required claim"));
            }
            match v {
                serde_json::Value::String(s) => Ok((k, s)),
                other => Err(format!("{k:?}: value must be a string, not {other}")),
            }
        })
        .collect()
}

/// `{"POST /v1/predict": ["scope-a", "scope-b"], ...}`.
pub fn parse_required_scopes(json: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let v: BTreeMap<String, Vec<String>> = serde_json::from_str(json)
        .map_err(|e| format!("expected {{\"<route key>\": [\"scope\", ...]}}: {e}"))?;
    for (route, scopes) in &v {
        if !route.contains(' ') {
            return Err(format!("{route:?} is not a route key (\"METHOD /path\")"));
        }
        if scopes.iter().any(|s| !is_scope_token(s)) {
            return Err(format!("{route:?}: scopes are RFC 6749 scope tokens"));
        }
    }
    Ok(v)
}

/// An RFC 6749 §3.3 scope token: 1*( %x21 / %x23-5B / %x5D-7E ), at most 256 bytes here.
pub fn is_scope_token(s: &str) -> bool {
    (1..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::env;

    #[test]
    fn claim_paths_dotted_and_pointer() {
        let p: ClaimPath = "realm_access.roles".parse().unwrap();
        assert_eq!(p.segments(), ["realm_access", "roles"]);
        let p: ClaimPath = "cognito:groups".parse().unwrap();
        assert_eq!(p.segments(), ["cognito:groups"]);
        let p: ClaimPath = "/https:~1~1api.example.com~1roles".parse().unwrap();
        assert_eq!(p.segments(), ["https://api.example.com/roles"]);
        let p: ClaimPath = "/a~0b/c".parse().unwrap();
        assert_eq!(p.segments(), ["a~b", "c"]);
        for bad in ["", ".", "a..b", "/", "/a~2", "sub", "aud", "a.b.c.d.e"] {
            assert!(bad.parse::<ClaimPath>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn presets_and_overrides_from_the_environment() {
        let m = ClaimMapping::from_env(&env(&[])).unwrap();
        assert_eq!(m, Preset::Gatehouse.mapping());
        let m = ClaimMapping::from_env(&env(&[
            ("GATEHOUSE_CLAIMS_PRESET", "cognito"),
            ("GATEHOUSE_ALLOWED_CLIENT_IDS", "abc, def ,"),
            (
                "GATEHOUSE_REQUIRED_SCOPES",
                r#"{"POST /v1/predict":["gatehouse/predict"]}"#,
            ),
        ]))
        .unwrap();
        assert_eq!(m.roles[0].path.as_str(), "cognito:groups");
        assert_eq!(m.allowed_clients, ["abc", "def"]);
        assert_eq!(
            m.access_token_claim,
            Some(("token_use".into(), "access".into()))
        );
        assert_eq!(m.required_scopes["POST /v1/predict"], ["gatehouse/predict"]);
        let m = ClaimMapping::from_env(&env(&[
            ("GATEHOUSE_CLAIMS_PRESET", "keycloak"),
            ("GATEHOUSE_ACCESS_TOKENS_ONLY", "false"),
            ("GATEHOUSE_TENANT_CLAIM", "none"),
            ("GATEHOUSE_ROLES_CLAIM", "scope"),
            ("GATEHOUSE_ROLES_CLAIM_TYPE", "space-delimited"),
        ]))
        .unwrap();
        assert_eq!(m.access_token_claim, None);
        assert_eq!(m.tenant, None);
        assert_eq!(m.roles[0].shape, ClaimShape::SpaceDelimited);
        for (name, value) in [
            ("GATEHOUSE_CLAIMS_PRESET", "ping"),
            ("GATEHOUSE_ROLES_CLAIM", "a..b"),
            ("GATEHOUSE_ROLES_CLAIM_TYPE", "list"),
            ("GATEHOUSE_CLIENT_ID_CLAIM", "a.b"),
            ("GATEHOUSE_REQUIRED_CLAIMS", r#"{"token_use":1}"#),
            ("GATEHOUSE_REQUIRED_CLAIMS", r#"{"iss":"x"}"#),
            ("GATEHOUSE_REQUIRED_SCOPES", r#"{"predict":["a"]}"#),
            (
                "GATEHOUSE_REQUIRED_SCOPES",
                r#"{"POST /v1/predict":["a b"]}"#,
            ),
        ] {
            assert!(
                ClaimMapping::from_env(&env(&[("GATEHOUSE_ROLES_CLAIM", "roles"), (name, value)]))
                    .is_err(),
                "{name}={value}"
            );
        }
    }

    #[test]
    fn scope_tokens() {
        assert!(is_scope_token("https://api.example.com/predict"));
        assert!(is_scope_token("gatehouse/predict"));
        assert!(!is_scope_token("a b"));
        assert!(!is_scope_token("a\"b"));
        assert!(!is_scope_token(""));
    }
}
