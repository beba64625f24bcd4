//! Compact-JWS handling: the Authorization header, the protected header, key selection and the
//! signature. Claims are a separate step (`claims.rs`) so the signature path can be tested alone.

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::error::AuthError;
use super::keys::KeyRing;
use super::strict_json::{Ctx, Ignore, SeenKeys, Str, Violation};

/// Largest accepted compact token, checked before any decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
const BEARER: &str = "Bearer";

/// Extracts the token from `Bearer <token>`: scheme case-insensitive, exactly one space, and
/// nothing else (no trailing whitespace, no second token).
pub fn parse_authorization(header: &str) -> Result<&str, AuthError> {
    if header.is_empty() {
        return Err(AuthError::MissingHeader);
    }
    // Size first: nothing about an oversized header is looked at.
    if header.len() > BEARER.len() + 1 + MAX_TOKEN_BYTES {
        return Err(AuthError::TokenTooLarge);
    }
    let scheme = header
        .get(..BEARER.len())
        .ok_or(AuthError::MalformedHeader)?;
    if !scheme.eq_ignore_ascii_case(BEARER) {
        return Err(AuthError::MalformedHeader);
    }
    let token = header
        .get(BEARER.len()..)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or(AuthError::MalformedHeader)?;
    if token.is_empty() || token.bytes().any(|b| !is_token_byte(b)) {
        return Err(AuthError::MalformedHeader);
    }
    Ok(token)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'
}

/// The three segments of a compact JWS, each non-empty base64url text.
struct Segments<'t> {
    header: &'t str,
    payload: &'t str,
    signature: &'t str,
    signing_input: &'t str,
}

fn split_compact(token: &str) -> Result<Segments<'_>, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::TokenTooLarge);
    }
    if token.bytes().any(|b| !is_token_byte(b)) {
        return Err(AuthError::MalformedToken);
    }
    let mut parts = token.splitn(4, '.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::MalformedToken);
    };
    // An empty signature is the "alg: none" / null-signature shape: never acceptable. An empty
    // payload is a valid JWS (RFC 7515); the claims step rejects it as a JWT.
    if h.is_empty() || s.is_empty() {
        return Err(AuthError::MalformedToken);
    }
    let signing_input = token
        .get(..h.len() + 1 + p.len())
        .ok_or(AuthError::MalformedToken)?;
    Ok(Segments {
        header: h,
        payload: p,
        signature: s,
        signing_input,
    })
}

/// Strict base64url (RFC 7515 §2): no padding, no whitespace, canonical trailing bits.
pub(crate) fn b64url(segment: &str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthError::MalformedToken)
}

/// The parts of the protected header we act on.
#[derive(Default)]
struct RawHeader<'a> {
    alg: Option<Cow<'a, str>>,
    kid: Option<Cow<'a, str>>,
    typ: Option<Cow<'a, str>>,
    cty: bool,
    forbidden: bool,
    crit: bool,
}

struct HeaderSeed<'c>(&'c Ctx);

impl<'de> DeserializeSeed<'de> for HeaderSeed<'_> {
    type Value = RawHeader<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeaderSeed<'_> {
    type Value = RawHeader<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JOSE header object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut h = RawHeader::default();
        let mut seen = SeenKeys::default();
        while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
            let name: &str = key.as_ref();
            match name {
                "alg" | "kid" | "typ" => {
                    let Str(v) = map.next_value::<Str<'de>>()?;
                    let slot = match name {
                        "alg" => &mut h.alg,
                        "kid" => &mut h.kid,
                        _ => &mut h.typ,
                    };
                    if slot.is_some() {
                        return Err(self.0.duplicate());
                    }
                    *slot = Some(v);
                }
                _ => {
                    if !seen.insert(key.clone()) {
                        return Err(self.0.duplicate());
                    }
                    // Key material or key locations from the token are never trusted.
                    match name {
                        "jwk" | "jku" | "x5u" | "x5c" => h.forbidden = true,
                        // We implement no extensions, so any `crit` (even empty) is refused.
                        "crit" => h.crit = true,
                        // Nested JWTs (`cty: JWT`) and other payload types are not implemented:
                        // reading such a payload as plain claims would be a confusion.
                        "cty" => h.cty = true,
                        _ => {}
                    }
                    map.next_value_seed(Ignore(self.0))?;
                }
            }
        }
        Ok(h)
    }
}

/// A token whose header passed policy and whose signature verified with the ring key for its
/// kid. Its payload has been base64url-decoded but not interpreted.
pub struct VerifiedToken<'t> {
    pub(crate) token: &'t str,
    pub payload: Vec<u8>,
    pub alg: jsonwebtoken::Algorithm,
    /// The protected header's `typ`, if any (RFC 7515 §4.1.9; `at+jwt` marks RFC 9068 access
    /// tokens).
    pub typ: Option<String>,
}

impl fmt::Debug for VerifiedToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the bearer token or its payload.
        f.debug_struct("VerifiedToken")
            .field("alg", &self.alg)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl VerifiedToken<'_> {
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

/// Checks the compact token's shape, header policy, key selection and signature.
pub fn verify_signature<'t>(
    ring: &KeyRing,
    token: &'t str,
) -> Result<VerifiedToken<'t>, AuthError> {
    let seg = split_compact(token)?;
    let header_json = b64url(seg.header)?;

    let ctx = Ctx::default();
    let mut de = serde_json::Deserializer::from_slice(&header_json);
    let parsed = HeaderSeed(&ctx)
        .deserialize(&mut de)
        .and_then(|h| de.end().map(|()| h));
    let header = match parsed {
        Ok(h) => h,
        Err(_) if ctx.violation() == Some(Violation::Duplicate) => {
            return Err(AuthError::DuplicateKey);
        }
        Err(_) => return Err(AuthError::MalformedToken),
    };
    if header.forbidden {
        return Err(AuthError::ForbiddenHeader);
    }
    if header.crit {
        return Err(AuthError::UnsupportedCrit);
    }
    if header.cty {
        return Err(AuthError::UnsupportedCty);
    }
    let alg = header.alg.ok_or(AuthError::MalformedToken)?;
    let kid = header.kid.ok_or(AuthError::UnknownKid)?;
    let key = ring.get(&kid).ok_or(AuthError::UnknownKid)?;
    // The key's own alg decides; the header must name exactly that alg (no family matching).
    if alg != key.alg_name {
        return Err(AuthError::AlgMismatch);
    }
    let payload = b64url(seg.payload)?;
    match jsonwebtoken::crypto::verify(
        seg.signature,
        seg.signing_input.as_bytes(),
        &key.key,
        key.alg,
    ) {
        Ok(true) => Ok(VerifiedToken {
            token,
            payload,
            alg: key.alg,
            typ: header.typ.map(Cow::into_owned),
        }),
        Ok(false) | Err(_) => Err(AuthError::BadSignature),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_header_shape() {
        let tok = "aGVhZA.cGF5.c2ln";
        assert_eq!(parse_authorization(&format!("Bearer {tok}")), Ok(tok));
        assert_eq!(parse_authorization(&format!("bEaReR {tok}")), Ok(tok));
        for bad in [
            format!("Bearer  {tok}"),
            format!("Bearer {tok} "),
            format!("Bearer\t{tok}"),
            format!("Basic {tok}"),
            format!("Bearer{tok}"),
            format!(" Bearer {tok}"),
            format!("Bearer {tok} x"),
            "Bearer ".to_owned(),
            "Bearér x".to_owned(),
            "Bear".to_owned(),
        ] {
            assert_eq!(
                parse_authorization(&bad),
                Err(AuthError::MalformedHeader),
                "{bad:?}"
            );
        }
        assert_eq!(parse_authorization(""), Err(AuthError::MissingHeader));
        let huge = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert_eq!(parse_authorization(&huge), Err(AuthError::TokenTooLarge));
    }

    #[test]
    fn compact_shape() {
        assert!(split_compact("a.b.c").is_ok());
        assert!(split_compact("a..c").is_ok());
        for bad in ["a.b", "a.b.c.d", ".b.c", "a.b.", "a.b.c=", "a.b.c d"] {
            assert_eq!(
                split_compact(bad).err(),
                Some(AuthError::MalformedToken),
                "{bad:?}"
            );
        }
    }
}
