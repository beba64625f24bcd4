//! Token payloads in each identity provider's claim shape, for `cargo xtask token --preset` and
//! the per-preset tests: the shape comes from `tests/fixtures/claims/<preset>.json`, and the
//! preset's own mapping (`gatehouse::config::claims::Preset::mapping`) says where the subject's
//! roles, tenant and client go, so a minted token is read back by exactly the rules the
//! authorizer applies.
use anyhow::{Context, Result, bail};
use gatehouse::config::claims::{ClaimShape, Preset};
use serde_json::{Map, Value, json};

/// What goes into a dev token. `TokenSpec::new` gives Gatehouse's own claim shape, times from
/// now and the key's kid; the other fields reshape it for a provider preset, set explicit
/// (also past) times, another kid or header `typ`, a client id, and arbitrary extra claims.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub sub: String,
    pub roles: Vec<String>,
    pub tenant: Option<String>,
    pub ttl_secs: u64,
    pub issuer: String,
    pub audience: String,
    /// Whose claim shape (`tests/fixtures/claims/<preset>.json`).
    pub preset: Preset,
    /// Seconds since the epoch; `iat` defaults to now, `exp` to `iat + ttl_secs`, `nbf` to `iat`
    /// where the shape has one.
    pub iat: Option<u64>,
    pub nbf: Option<u64>,
    pub exp: Option<u64>,
    /// Header `kid` (default: the signing key's).
    pub kid: Option<String>,
    /// Header `typ` (default `JWT`).
    pub typ: Option<String>,
    /// Client id for shapes that carry one (default `presets::DEV_CLIENT_ID`).
    pub client_id: Option<String>,
    /// Set last, over everything else.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl TokenSpec {
    pub fn new(
        sub: &str,
        roles: &[&str],
        tenant: Option<&str>,
        ttl_secs: u64,
        issuer: String,
        audience: String,
    ) -> Self {
        Self {
            sub: sub.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            tenant: tenant.map(str::to_owned),
            ttl_secs,
            issuer,
            audience,
            preset: Preset::Gatehouse,
            iat: None,
            nbf: None,
            exp: None,
            kid: None,
            typ: None,
            client_id: None,
            extra: serde_json::Map::new(),
        }
    }
}

/// The client id dev tokens name when the preset's tokens carry no `aud` (Cognito); the dev
/// stack allows it (`GATEHOUSE_ALLOWED_CLIENT_IDS`).
pub const DEV_CLIENT_ID: &str = "gatehouse-dev-client";

/// The provider's access-token shape, as a JSON object.
pub fn shape(preset: Preset) -> Result<Map<String, Value>> {
    let path = crate::paths::repo_root()
        .join("tests/fixtures/claims")
        .join(format!("{}.json", preset.as_str()));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    match serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))? {
        Value::Object(o) => Ok(o),
        _ => bail!("{} is not a JSON object", path.display()),
    }
}

/// Sets `value` at `path` (member names from the root), creating objects on the way.
pub fn set_path(root: &mut Map<String, Value>, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut obj = root;
    for p in parents {
        let slot = obj
            .entry(p.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(next) = slot else {
            return;
        };
        obj = next;
    }
    obj.insert(last.clone(), value);
}

/// Removes the member at `path`, if present.
pub fn remove_path(root: &mut Map<String, Value>, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut obj = root;
    for p in parents {
        match obj.get_mut(p) {
            Some(Value::Object(next)) => obj = next,
            _ => return,
        }
    }
    obj.remove(last);
}

/// The payload of a dev token: the preset's shape with the spec's subject, roles (in the
/// preset's roles claim and JSON type), tenant, issuer, audience or client, times and extra
/// claims. `now` is seconds since the epoch.
pub fn claims_for(spec: &TokenSpec, now: u64) -> Result<Value> {
    let mapping = spec.preset.mapping();
    let mut c = shape(spec.preset)?;
    let iat = spec.iat.unwrap_or(now);
    c.insert("iss".into(), json!(spec.issuer));
    c.insert("sub".into(), json!(spec.sub));
    c.insert("iat".into(), json!(iat));
    c.insert("exp".into(), json!(spec.exp.unwrap_or(iat + spec.ttl_secs)));
    match spec.nbf {
        Some(nbf) => {
            c.insert("nbf".into(), json!(nbf));
        }
        None if c.contains_key("nbf") => {
            c.insert("nbf".into(), json!(iat));
        }
        None => {}
    }
    c.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
    if c.contains_key("auth_time") {
        c.insert("auth_time".into(), json!(iat));
    }
    // Audience: the preset's tokens carry `aud`, or (Cognito access tokens) a client id instead.
    let client = spec
        .client_id
        .clone()
        .unwrap_or_else(|| DEV_CLIENT_ID.into());
    if c.contains_key("aud") {
        c.insert("aud".into(), json!(spec.audience));
    }
    if c.contains_key(&mapping.client_id_claim) || !c.contains_key("aud") {
        c.insert(mapping.client_id_claim.clone(), json!(client));
    }
    // Roles, in the first roles claim of the preset, in its JSON type.
    for src in &mapping.roles {
        remove_path(&mut c, src.path.segments());
    }
    if let Some(src) = mapping.roles.first() {
        let v = match src.shape {
            ClaimShape::Array => json!(spec.roles),
            ClaimShape::String | ClaimShape::SpaceDelimited => json!(spec.roles.join(" ")),
        };
        set_path(&mut c, src.path.segments(), v);
    }
    if let Some(path) = &mapping.tenant {
        remove_path(&mut c, path.segments());
        if let Some(t) = &spec.tenant {
            set_path(&mut c, path.segments(), json!(t));
        }
    }
    for (k, v) in &spec.extra {
        c.insert(k.clone(), v.clone());
    }
    Ok(Value::Object(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_created_and_removed() {
        let mut m = Map::new();
        let p = ["realm_access".to_string(), "roles".to_string()];
        set_path(&mut m, &p, json!(["a"]));
        assert_eq!(
            Value::Object(m.clone()),
            json!({"realm_access": {"roles": ["a"]}})
        );
        remove_path(&mut m, &p);
        assert_eq!(Value::Object(m), json!({"realm_access": {}}));
    }

    #[test]
    fn every_preset_has_a_shape_with_its_roles_claim() {
        for p in Preset::ALL {
            let s = shape(p).unwrap();
            let first = p.mapping().roles[0].path.first().to_owned();
            assert!(s.contains_key(&first), "{}: no {first}", p.as_str());
        }
    }
}
