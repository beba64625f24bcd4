//! Typed, strict claim validation. Each claim is read with the exact JSON type it must have;
//! anything else is `invalid_claim` (never coerced), and repeated keys are `duplicate_key`.

use crate::clock::unix_secs;
use std::borrow::Cow;
use std::fmt;
use std::time::SystemTime;

use aws_lc_rs::digest;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::error::AuthError;
use super::strict_json::{Ctx, Ignore, SeenKeys, Str, Violation};
use super::token::VerifiedToken;
use super::{Principal, TokenPolicy};

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
    roles: Option<Vec<String>>,
    role: Option<Cow<'a, str>>,
    tenant: Option<Cow<'a, str>>,
    jti: Option<Cow<'a, str>>,
}

struct ClaimsSeed<'c> {
    ctx: &'c Ctx,
    audience: &'c str,
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
                "role" => {
                    let v = typed(ctx, &mut map, "role", StrSeed)?;
                    put(ctx, &mut c.role, v)?;
                }
                "tenant" => {
                    let v = typed(ctx, &mut map, "tenant", StrSeed)?;
                    put(ctx, &mut c.tenant, v)?;
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
                "roles" => {
                    let v = typed(ctx, &mut map, "roles", RolesSeed)?;
                    put(ctx, &mut c.roles, v)?;
                }
                _ => {
                    if !seen.insert(key) {
                        return Err(ctx.duplicate());
                    }
                    map.next_value_seed(Ignore(ctx))?;
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

/// `roles`: an array of non-empty strings.
struct RolesSeed;

impl<'de> DeserializeSeed<'de> for RolesSeed {
    type Value = Vec<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RolesSeed {
    type Value = Vec<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of strings")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(16));
        while let Some(Str(r)) = seq.next_element::<Str<'de>>()? {
            if r.is_empty() {
                return Err(de::Error::custom("empty role"));
            }
            out.push(r.into_owned());
        }
        Ok(out)
    }
}

/// Parses the verified payload and applies `policy` at time `now`.
pub fn validate_claims(
    verified: &VerifiedToken<'_>,
    policy: &TokenPolicy,
    now: SystemTime,
) -> Result<Principal, AuthError> {
    let ctx = Ctx::default();
    let mut de = serde_json::Deserializer::from_slice(&verified.payload);
    let parsed = ClaimsSeed {
        ctx: &ctx,
        audience: &policy.audience,
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
                    AuthError::InvalidClaim(name)
                }
                _ => AuthError::MalformedToken,
            });
        }
    };

    let now = unix_secs(now);
    let leeway = policy.leeway.min(TokenPolicy::MAX_LEEWAY).as_secs();

    // Presence first, so the reason names the first missing claim deterministically.
    let exp = c.exp.ok_or(AuthError::MissingClaim("exp"))?;
    // iat is required: without it the maximum lifetime cannot be enforced.
    let iat = c.iat.ok_or(AuthError::MissingClaim("iat"))?;
    let iss = c.iss.ok_or(AuthError::MissingClaim("iss"))?;
    let aud_ok = c.aud.ok_or(AuthError::MissingClaim("aud"))?;
    let sub = c.sub.ok_or(AuthError::MissingClaim("sub"))?;

    if iss != policy.issuer.as_str() {
        return Err(AuthError::WrongIssuer);
    }
    if !aud_ok {
        return Err(AuthError::WrongAudience);
    }
    if exp.saturating_add(leeway) <= now {
        return Err(AuthError::Expired);
    }
    if let Some(nbf) = c.nbf
        && nbf > now.saturating_add(leeway)
    {
        return Err(AuthError::NotYetValid);
    }
    if iat > now.saturating_add(leeway) {
        return Err(AuthError::IssuedInFuture);
    }
    if exp < iat {
        return Err(AuthError::InvalidClaim("exp"));
    }
    if exp - iat > policy.max_lifetime.as_secs() {
        return Err(AuthError::LifetimeTooLong);
    }
    if sub.is_empty() {
        return Err(AuthError::InvalidClaim("sub"));
    }
    let roles = match (c.roles, c.role) {
        (Some(_), Some(_)) => return Err(AuthError::InvalidClaim("roles")),
        (Some(roles), None) => roles,
        (None, Some(role)) if role.is_empty() => return Err(AuthError::InvalidClaim("role")),
        (None, Some(role)) => vec![role.into_owned()],
        (None, None) => Vec::new(),
    };
    // Roles travel to predict as one comma-joined authorizer context value, and roles, tenant and
    // sub land in logs and audit records: only plain identifiers pass, so a role such as
    // "x,ai_operator" cannot turn into two roles downstream.
    if roles.len() > 32 || !roles.iter().all(|r| is_identifier(r)) {
        return Err(AuthError::InvalidClaim("roles"));
    }
    let tenant = match c.tenant {
        Some(t) if !is_identifier(&t) => return Err(AuthError::InvalidClaim("tenant")),
        t => t.map(Cow::into_owned),
    };
    if sub.len() > 256 || sub.chars().any(char::is_control) {
        return Err(AuthError::InvalidClaim("sub"));
    }
    let token_id = match c.jti {
        // jti ends up in audit logs: refuse control characters (CR/LF log injection) and junk.
        Some(j) if j.is_empty() || j.len() > 256 || j.chars().any(char::is_control) => {
            return Err(AuthError::InvalidClaim("jti"));
        }
        Some(j) => j.into_owned(),
        None => token_hash_id(verified.token),
    };
    Ok(Principal {
        sub: sub.into_owned(),
        roles,
        tenant,
        token_id,
    })
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
