//! Typed, strict claim validation. Registered claims are read with the exact JSON type they
//! must have; the claims the mapping points at (roles, tenant, scopes, client, access-token
//! marker) are captured as duplicate-free JSON and then type-checked against the one shape the
//! configuration gives them. Anything else is `invalid_claim` (never coerced), and repeated keys
//! are `duplicate_key` at any depth.

use crate::clock::unix_secs;
use std::borrow::Cow;
use std::fmt;
use std::time::SystemTime;

use aws_lc_rs::digest;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::error::AuthError;
use super::strict_json::{Ctx, Ignore, SeenKeys, Str, StrictValue, Violation};
use super::token::VerifiedToken;
use super::{AuthFailure, Identity, Principal, TokenPolicy};
use crate::config::claims::{ClaimMapping, ClaimPath, ClaimShape, ClaimSource, is_scope_token};

/// Claims as read from the payload, before policy checks.
#[derive(Default, Debug)]
struct RawClaims<'a> {
    iss: Option<Cow<'a, str>>,
    /// Whether `aud` (string or array of strings) contains the expected audience.
    aud: Option<bool>,
    exp: Option<u64>,
    nbf: Option<u64>,
    iat: Option<u64>,
    sub: Option<Cow<'a, str>>,
    jti: Option<Cow<'a, str>>,
    /// Top-level claims the mapping reads, as strict JSON values.
    mapped: Vec<(Cow<'a, str>, Value)>,
}

struct ClaimsSeed<'c> {
    ctx: &'c Ctx,
    audience: &'c str,
    mapping: &'c ClaimMapping,
}

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = RawClaims<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

/// Stores a claim once; a second occurrence is a duplicate key.
fn put<T, E: de::Error>(ctx: &Ctx, slot: &mut Option<T>, v: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(ctx.duplicate());
    }
    *slot = Some(v);
    Ok(())
}

/// Reads a value with `seed`, attributing a type error to claim `name`.
fn typed<'de, A: MapAccess<'de>, S: DeserializeSeed<'de>>(
    ctx: &Ctx,
    map: &mut A,
    name: &'static str,
    seed: S,
) -> Result<S::Value, A::Error> {
    map.next_value_seed(seed)
        .inspect_err(|_| ctx.flag(Violation::InvalidClaim(name)))
}

impl<'de> Visitor<'de> for ClaimsSeed<'_> {
    type Value = RawClaims<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JWT claims object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let ctx = self.ctx;
        let mut c = RawClaims::default();
        let mut seen = SeenKeys::default();
        while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
            match key.as_ref() {
                "iss" => {
                    let v = typed(ctx, &mut map, "iss", StrSeed)?;
                    put(ctx, &mut c.iss, v)?;
                }
                "sub" => {
                    let v = typed(ctx, &mut map, "sub", StrSeed)?;
                    put(ctx, &mut c.sub, v)?;
                }
                "jti" => {
                    let v = typed(ctx, &mut map, "jti", StrSeed)?;
                    put(ctx, &mut c.jti, v)?;
                }
                "exp" => {
                    let v = typed(ctx, &mut map, "exp", NumericDate)?;
                    put(ctx, &mut c.exp, v)?;
                }
                "nbf" => {
                    let v = typed(ctx, &mut map, "nbf", NumericDate)?;
                    put(ctx, &mut c.nbf, v)?;
                }
                "iat" => {
                    let v = typed(ctx, &mut map, "iat", NumericDate)?;
                    put(ctx, &mut c.iat, v)?;
                }
                "aud" => {
                    let v = typed(
                        ctx,
                        &mut map,
                        "aud",
                        AudSeed {
                            audience: self.audience,
                        },
                    )?;
                    put(ctx, &mut c.aud, v)?;
                }
                name => {
                    if !seen.insert(key.clone()) {
                        return Err(ctx.duplicate());
                    }
                    if self.mapping.wants(name) {
                        let v = map.next_value_seed(StrictValue(ctx))?;
                        c.mapped.push((key, v));
                    } else {
                        map.next_value_seed(Ignore(ctx))?;
                    }
                }
            }
        }
        Ok(c)
    }
}

/// A JSON string, nothing else (null is not "absent").
struct StrSeed;

impl<'de> DeserializeSeed<'de> for StrSeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Ok(<Str<'de> as serde::Deserialize>::deserialize(d)?.0)
    }
}

/// RFC 7519 NumericDate, restricted to a non-negative JSON integer: strings, floats (including
/// `1.0` and exponent forms), booleans, null and negatives are all rejected.
struct NumericDate;

// Far beyond any real date, small enough that second arithmetic can never overflow.
const MAX_NUMERIC_DATE: u64 = 1 << 40;

impl<'de> DeserializeSeed<'de> for NumericDate {
    type Value = u64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NumericDate {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a non-negative integer NumericDate")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        if v > MAX_NUMERIC_DATE {
            return Err(E::custom("NumericDate out of range"));
        }
        Ok(v)
    }
}

/// `aud`: a string, or a non-empty array of strings; yields whether ours is among them.
struct AudSeed<'c> {
    audience: &'c str,
}

impl<'de> DeserializeSeed<'de> for AudSeed<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AudSeed<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or an array of strings")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.audience)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut found = false;
        let mut any = false;
        while let Some(Str(a)) = seq.next_element::<Str<'de>>()? {
            any = true;
            found |= a == self.audience;
        }
        if !any {
            return Err(de::Error::custom("empty aud array"));
        }
        Ok(found)
    }
}

const SUB_EXPECTED: &str =
    "a non-empty string of at most 256 characters without control characters";
const IDENTIFIER: &str = "identifiers ([A-Za-z0-9_.:@-], 1-64 characters, at most 32)";

fn claim_name(path: &ClaimPath) -> Cow<'static, str> {
    Cow::Owned(path.as_str().to_owned())
}

/// The value at `path` among the captured claims; `Err` when a member along the path is not an
/// object (the path cannot be followed: an ill-typed claim).
fn lookup<'v>(
    mapped: &'v [(Cow<'_, str>, Value)],
    path: &ClaimPath,
) -> Result<Option<&'v Value>, AuthError> {
    let mut segments = path.segments().iter();
    let Some(first) = segments.next() else {
        return Ok(None);
    };
    let Some(mut v) = mapped.iter().find(|(k, _)| k == first).map(|(_, v)| v) else {
        return Ok(None);
    };
    for seg in segments {
        match v {
            Value::Object(o) => match o.get(seg) {
                Some(next) => v = next,
                None => return Ok(None),
            },
            _ => {
                return Err(AuthError::invalid(
                    claim_name(path),
                    "an object at every level of the claim path",
                ));
            }
        }
    }
    Ok(Some(v))
}

/// The strings of a claim in its configured shape; `what` names the items for the reason.
fn strings_of(v: &Value, src: &ClaimSource, what: &'static str) -> Result<Vec<String>, AuthError> {
    let bad = || AuthError::invalid(claim_name(&src.path), shaped(src.shape, what));
    let items: Vec<String> = match (src.shape, v) {
        (ClaimShape::Array, Value::Array(items)) => items
            .iter()
            .map(|x| x.as_str().map(str::to_owned).ok_or_else(bad))
            .collect::<Result<_, _>>()?,
        (ClaimShape::String, Value::String(s)) => vec![s.clone()],
        // RFC 6749 §3.3: scope-token *( SP scope-token ); empty tokens (double spaces) are refused.
        (ClaimShape::SpaceDelimited, Value::String(s)) => s.split(' ').map(str::to_owned).collect(),
        _ => return Err(bad()),
    };
    if items.iter().any(String::is_empty) {
        return Err(bad());
    }
    Ok(items)
}

/// "an array of <what>" and so on: the expectation of a claim of this shape.
fn shaped(shape: ClaimShape, what: &str) -> String {
    match shape {
        ClaimShape::Array => format!("an array of {what}"),
        ClaimShape::String => format!("one string of {what}"),
        ClaimShape::SpaceDelimited => format!("a string of space-separated {what}"),
    }
}

/// Roles from the first (and only) present roles claim; none present is no roles.
fn roles_of(mapped: &[(Cow<'_, str>, Value)], m: &ClaimMapping) -> Result<Vec<String>, AuthError> {
    let mut found: Option<(&ClaimSource, &Value)> = None;
    for src in &m.roles {
        if let Some(v) = lookup(mapped, &src.path)? {
            if found.is_some() {
                let names: Vec<&str> = m.roles.iter().map(|r| r.path.as_str()).collect();
                return Err(AuthError::invalid(
                    claim_name(&src.path),
                    format!("only one of {}", names.join(", ")),
                ));
            }
            found = Some((src, v));
        }
    }
    let Some((src, v)) = found else {
        return Ok(Vec::new());
    };
    let roles = strings_of(v, src, IDENTIFIER)?;
    // Roles travel to predict as one comma-joined authorizer context value, and roles, tenant and
    // sub land in logs and audit records: only plain identifiers pass, so a role such as
    // "x,ai_operator" cannot turn into two roles downstream.
    if roles.len() > 32 || !roles.iter().all(|r| is_identifier(r)) {
        return Err(AuthError::invalid(
            claim_name(&src.path),
            shaped(src.shape, IDENTIFIER),
        ));
    }
    Ok(roles)
}

fn tenant_of(
    mapped: &[(Cow<'_, str>, Value)],
    m: &ClaimMapping,
) -> Result<Option<String>, AuthError> {
    let Some(path) = &m.tenant else {
        return Ok(None);
    };
    match lookup(mapped, path)? {
        None => Ok(None),
        Some(Value::String(t)) if is_identifier(t) => Ok(Some(t.clone())),
        Some(_) => Err(AuthError::invalid(
            claim_name(path),
            "one identifier ([A-Za-z0-9_.:@-], 1-64 characters)",
        )),
    }
}

fn scopes_of(mapped: &[(Cow<'_, str>, Value)], m: &ClaimMapping) -> Result<Vec<String>, AuthError> {
    let Some(src) = &m.scopes else {
        return Ok(Vec::new());
    };
    let Some(v) = lookup(mapped, &src.path)? else {
        return Ok(Vec::new());
    };
    let scopes = strings_of(v, src, "RFC 6749 scope tokens")?;
    if scopes.len() > 100 || !scopes.iter().all(|s| is_scope_token(s)) {
        return Err(AuthError::invalid(
            claim_name(&src.path),
            "at most 100 RFC 6749 scope tokens",
        ));
    }
    Ok(scopes)
}

/// A top-level claim that must be the string `expected`.
fn exact_claim(
    mapped: &[(Cow<'_, str>, Value)],
    name: &str,
    expected: &str,
    mismatch: fn(Cow<'static, str>, String) -> AuthError,
) -> Result<(), AuthError> {
    let owned = || Cow::Owned(name.to_owned());
    match mapped.iter().find(|(k, _)| k == name).map(|(_, v)| v) {
        None => Err(AuthError::MissingClaim(owned())),
        Some(Value::String(s)) if s == expected => Ok(()),
        Some(Value::String(_)) => Err(mismatch(owned(), expected.to_owned())),
        Some(_) => Err(AuthError::invalid(owned(), "a string")),
    }
}

/// `aud` must contain the audience; a token without `aud` may instead name an allowed client
/// (API Gateway's JWT authorizer rule: `client_id` only when `aud` is absent).
fn check_audience(
    aud: Option<bool>,
    mapped: &[(Cow<'_, str>, Value)],
    policy: &TokenPolicy,
) -> Result<(), AuthError> {
    let m = &policy.claims;
    match aud {
        Some(true) => Ok(()),
        Some(false) => Err(AuthError::WrongAudience {
            claim: Cow::Borrowed("aud"),
            expected: format!("to contain {:?}", policy.audience),
        }),
        None if m.allowed_clients.is_empty() => Err(AuthError::MissingClaim(Cow::Borrowed("aud"))),
        None => {
            let name = || Cow::Owned(m.client_id_claim.clone());
            match mapped
                .iter()
                .find(|(k, _)| *k == m.client_id_claim)
                .map(|(_, v)| v)
            {
                None => Err(AuthError::MissingClaim(name())),
                Some(Value::String(c)) if m.allowed_clients.iter().any(|a| a == c) => Ok(()),
                Some(Value::String(_)) => Err(AuthError::WrongAudience {
                    claim: name(),
                    expected: "one of GATEHOUSE_ALLOWED_CLIENT_IDS (the token has no `aud`)".into(),
                }),
                Some(_) => Err(AuthError::invalid(name(), "a string")),
            }
        }
    }
}

/// `typ` values compare case-insensitively, with the `application/` prefix optional
/// (RFC 7515 §4.1.9).
fn same_media_type(a: &str, b: &str) -> bool {
    let strip = |s: &str| {
        let l = s.to_ascii_lowercase();
        l.strip_prefix("application/")
            .map(str::to_owned)
            .unwrap_or(l)
    };
    strip(a) == strip(b)
}

/// Parses the verified payload and applies `policy` at time `now`. On failure after the subject
/// was read, the failure carries the principal (signature verified: we know who it is).
pub fn validate_claims(
    verified: &VerifiedToken<'_>,
    policy: &TokenPolicy,
    now: SystemTime,
) -> Result<Identity, AuthFailure> {
    let m = &policy.claims;
    let ctx = Ctx::default();
    let mut de = serde_json::Deserializer::from_slice(&verified.payload);
    let parsed = ClaimsSeed {
        ctx: &ctx,
        audience: &policy.audience,
        mapping: m,
    }
    .deserialize(&mut de)
    .and_then(|c| de.end().map(|()| c));
    let c = match parsed {
        Ok(c) => c,
        Err(e) => {
            return Err(match ctx.violation() {
                Some(Violation::Duplicate) => AuthError::DuplicateKey,
                // A syntax error inside a claim value is still a malformed token.
                Some(Violation::InvalidClaim(name)) if !e.is_syntax() && !e.is_eof() => {
                    AuthError::invalid(name, expected_of(name))
                }
                _ => AuthError::MalformedToken,
            }
            .into());
        }
    };

    // Who, first: every later denial can then name the principal.
    let sub = c.sub.ok_or(AuthError::MissingClaim(Cow::Borrowed("sub")))?;
    if sub.is_empty() || sub.len() > 256 || sub.chars().any(char::is_control) {
        return Err(AuthError::invalid("sub", SUB_EXPECTED).into());
    }
    let iss = c.iss.ok_or(AuthError::MissingClaim(Cow::Borrowed("iss")))?;
    let roles = roles_of(&c.mapped, m);
    let tenant = tenant_of(&c.mapped, m);
    let token_id = match c.jti {
        // jti ends up in audit logs: refuse control characters (CR/LF log injection) and junk.
        Some(j) if j.is_empty() || j.len() > 256 || j.chars().any(char::is_control) => {
            Err(AuthError::invalid(
                "jti",
                "a non-empty string of at most 256 characters without control characters",
            ))
        }
        Some(j) => Ok(j.into_owned()),
        None => Ok(token_hash_id(verified.token)),
    };
    let principal = Principal {
        issuer: iss.into_owned(),
        sub: sub.into_owned(),
        roles: roles.clone().unwrap_or_default(),
        tenant: tenant.as_ref().ok().cloned().flatten(),
        token_id: token_id
            .clone()
            .unwrap_or_else(|_| token_hash_id(verified.token)),
        exp: c.exp.unwrap_or(0),
    };
    let checked = check(
        &c.mapped, c.aud, c.exp, c.nbf, c.iat, &principal, verified, policy, now,
    )
    .and_then(|()| roles.map(drop))
    .and_then(|()| tenant.map(drop))
    .and_then(|()| token_id.map(drop))
    .and_then(|()| scopes_of(&c.mapped, m));
    match checked {
        Ok(scopes) => Ok(Identity { principal, scopes }),
        Err(error) => Err(AuthFailure {
            error,
            principal: Some(Box::new(principal)),
        }),
    }
}

/// What a registered claim that failed its type check should have been.
fn expected_of(name: &str) -> &'static str {
    match name {
        "exp" | "nbf" | "iat" => "a non-negative integer NumericDate (RFC 7519 §2)",
        "aud" => "a string or a non-empty array of strings",
        _ => "a string",
    }
}

/// Issuer, audience, times, token type and required claims, in that order.
#[allow(clippy::too_many_arguments)]
fn check(
    mapped: &[(Cow<'_, str>, Value)],
    aud: Option<bool>,
    exp: Option<u64>,
    nbf: Option<u64>,
    iat: Option<u64>,
    principal: &Principal,
    verified: &VerifiedToken<'_>,
    policy: &TokenPolicy,
    now: SystemTime,
) -> Result<(), AuthError> {
    let m = &policy.claims;
    let exp = exp.ok_or(AuthError::MissingClaim(Cow::Borrowed("exp")))?;
    // iat is required: without it the maximum lifetime cannot be enforced.
    let iat = iat.ok_or(AuthError::MissingClaim(Cow::Borrowed("iat")))?;
    if principal.issuer != policy.issuer {
        return Err(AuthError::WrongIssuer {
            expected: policy.issuer.clone(),
        });
    }
    check_audience(aud, mapped, policy)?;

    let now = unix_secs(now);
    let leeway = policy.leeway.min(TokenPolicy::MAX_LEEWAY).as_secs();
    if exp.saturating_add(leeway) <= now {
        return Err(AuthError::Expired { exp, now, leeway });
    }
    if let Some(nbf) = nbf
        && nbf > now.saturating_add(leeway)
    {
        return Err(AuthError::NotYetValid { nbf, now, leeway });
    }
    if iat > now.saturating_add(leeway) {
        return Err(AuthError::IssuedInFuture { iat, now, leeway });
    }
    if exp < iat {
        return Err(AuthError::invalid("exp", "a time after `iat`"));
    }
    let max = policy.max_lifetime.as_secs();
    if exp - iat > max {
        return Err(AuthError::LifetimeTooLong {
            lifetime: exp - iat,
            max,
        });
    }

    if let Some((claim, value)) = &m.access_token_claim {
        exact_claim(mapped, claim, value, |claim, expected| {
            AuthError::WrongTokenType { claim, expected }
        })?;
    }
    if let Some(typ) = &m.required_typ
        && !verified
            .typ
            .as_deref()
            .is_some_and(|t| same_media_type(t, typ))
    {
        return Err(AuthError::WrongTokenType {
            claim: Cow::Borrowed("header `typ`"),
            expected: typ.clone(),
        });
    }
    for (claim, value) in &m.required_claims {
        exact_claim(mapped, claim, value, |claim, expected| {
            AuthError::WrongClaimValue { claim, expected }
        })?;
    }
    Ok(())
}

/// 1–64 characters of `[A-Za-z0-9_.:@-]`: what role and tenant names are made of.
fn is_identifier(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'-'))
}

/// First 16 hex chars of SHA-256(token): a stable, non-reversible id for logs.
pub(crate) fn token_hash_id(token: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    let mut s = String::with_capacity(16);
    for b in d.as_ref().iter().take(8) {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}
