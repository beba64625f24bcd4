//! JWKS → key ring. Each key is pinned to its own `alg`; anything ambiguous is skipped, never
//! guessed, and counted in the `RingReport`.

use std::collections::HashMap;
use std::str::FromStr;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self as sig, ParsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use secrecy::zeroize::Zeroize;
use serde_json::{Map, Value};

use super::error::KeyError;
use super::strict_json::{StrictError, parse_value};

const RSA_MIN_BITS: usize = 2048;
// aws-lc's RSA verification algorithms accept 2048..=8192 bits; larger keys could never verify.
const RSA_MAX_BITS: usize = 8192;

/// Which secret version a key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    Current,
    Previous,
}

/// Why a JWK was left out of the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    NotAnObject,
    MissingKid,
    MissingAlg,
    UnsupportedAlg,
    /// `use` is present and not `sig`.
    NotForSignature,
    /// `key_ops` is present and lacks `verify`.
    KeyOpsWithoutVerify,
    KtyMismatch,
    CurveMismatch,
    BadEncoding,
    HmacKeyTooShort,
    RsaModulusSize,
    /// RSA modulus carries the ROCA (CVE-2017-15361) fingerprint: factorable, never trust it.
    RsaRocaVulnerable,
    InvalidPublicKey,
    /// Private key material in a verification key set is a misconfiguration: never hold it.
    PrivateMaterial,
    /// The same kid twice in one document: which one is meant is ambiguous, so neither is used.
    DuplicateKid,
    /// PREVIOUS had this kid with different material; CURRENT wins.
    ShadowedByCurrent,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAnObject => "not_an_object",
            Self::MissingKid => "missing_kid",
            Self::MissingAlg => "missing_alg",
            Self::UnsupportedAlg => "unsupported_alg",
            Self::NotForSignature => "not_for_signature",
            Self::KeyOpsWithoutVerify => "key_ops_without_verify",
            Self::KtyMismatch => "kty_mismatch",
            Self::CurveMismatch => "curve_mismatch",
            Self::BadEncoding => "bad_encoding",
            Self::HmacKeyTooShort => "hmac_key_too_short",
            Self::RsaModulusSize => "rsa_modulus_size",
            Self::RsaRocaVulnerable => "rsa_roca_vulnerable",
            Self::InvalidPublicKey => "invalid_public_key",
            Self::PrivateMaterial => "private_material",
            Self::DuplicateKid => "duplicate_kid",
            Self::ShadowedByCurrent => "shadowed_by_current",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    pub origin: KeyOrigin,
    /// The kid as written in the secret (kids are identifiers, not secrets).
    pub kid: Option<String>,
    pub reason: SkipReason,
}

/// What happened while building a ring: feed it to logs/metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RingReport {
    pub loaded: usize,
    pub skipped: Vec<SkippedKey>,
    /// AWSPREVIOUS was present but unusable; the ring was built from AWSCURRENT alone.
    pub previous_error: Option<KeyError>,
}

impl RingReport {
    pub fn warnings(&self) -> usize {
        self.skipped.len() + usize::from(self.previous_error.is_some())
    }

    pub fn skipped_for(&self, reason: SkipReason) -> usize {
        self.skipped.iter().filter(|s| s.reason == reason).count()
    }
}

/// One verification key, prepared once when the ring is built.
pub(crate) struct RingKey {
    pub(crate) alg: Algorithm,
    pub(crate) alg_name: &'static str,
    pub(crate) key: DecodingKey,
    pub(crate) origin: KeyOrigin,
    // Fingerprint of (alg, material), used to detect "same kid, different key" across versions.
    fingerprint: [u8; 32],
}

/// kid → key, built from the AWSCURRENT and AWSPREVIOUS JWKS documents.
pub struct KeyRing {
    keys: HashMap<String, RingKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key material stays out of Debug output.
        f.debug_struct("KeyRing")
            .field("kids", &self.kids())
            .finish()
    }
}

pub(crate) fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        // Algorithm is #[non_exhaustive]: a future variant has no name we pin to, so it never
        // equals a header's alg.
        _ => "",
    }
}

impl KeyRing {
    /// Builds the ring. CURRENT must parse and yield at least one usable key; a broken PREVIOUS
    /// is reported and ignored so that a bad old version cannot take the service down.
    pub fn from_jwks(
        current: &str,
        previous: Option<&str>,
    ) -> Result<(KeyRing, RingReport), KeyError> {
        let mut report = RingReport::default();
        let mut keys = HashMap::new();

        for (kid, key) in parse_document(current, KeyOrigin::Current, &mut report)? {
            keys.insert(kid, key);
        }
        if let Some(prev) = previous {
            match parse_document(prev, KeyOrigin::Previous, &mut report) {
                Ok(prev_keys) => {
                    for (kid, key) in prev_keys {
                        match keys.get(&kid) {
                            None => {
                                keys.insert(kid, key);
                            }
                            Some(cur) if cur.fingerprint == key.fingerprint => {}
                            Some(_) => {
                                tracing::warn!(kid = %kid, "AWSPREVIOUS key shadowed by a different AWSCURRENT key with the same kid");
                                report.skipped.push(SkippedKey {
                                    origin: KeyOrigin::Previous,
                                    kid: Some(kid),
                                    reason: SkipReason::ShadowedByCurrent,
                                });
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "AWSPREVIOUS JWKS unusable; using AWSCURRENT only");
                    report.previous_error = Some(e);
                }
            }
        }
        // A well-formed JWKS without a usable key is the owner's word, not an outage: it yields an
        // empty ring that denies every token (how a deployer revokes everything at once), and is
        // never confused with "Secrets Manager unreachable" (which keeps the last good ring).
        if keys.is_empty() {
            tracing::warn!("JWKS holds no usable signing key: every token will be denied");
        }
        report.loaded = keys.len();
        Ok((KeyRing { keys }, report))
    }

    /// Sorted kids in the ring.
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The alg a kid is pinned to, if the kid is in the ring.
    pub fn alg_of(&self, kid: &str) -> Option<Algorithm> {
        self.keys.get(kid).map(|k| k.alg)
    }

    pub fn origin_of(&self, kid: &str) -> Option<KeyOrigin> {
        self.keys.get(kid).map(|k| k.origin)
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&RingKey> {
        self.keys.get(kid)
    }
}

fn parse_document(
    doc: &str,
    origin: KeyOrigin,
    report: &mut RingReport,
) -> Result<Vec<(String, RingKey)>, KeyError> {
    let mut value = parse_value(doc.as_bytes()).map_err(|e| match e {
        StrictError::Duplicate => KeyError::DuplicateJsonKey,
        StrictError::Invalid => KeyError::InvalidJson,
    })?;
    let result = build_keys(&value, origin, report);
    scrub_secrets(&mut value);
    result
}

fn build_keys(
    value: &Value,
    origin: KeyOrigin,
    report: &mut RingReport,
) -> Result<Vec<(String, RingKey)>, KeyError> {
    let list = value
        .as_object()
        .and_then(|o| o.get("keys"))
        .and_then(Value::as_array)
        .ok_or(KeyError::NotAJwks)?;

    let kid_of = |jwk: &Value| {
        jwk.get("kid")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
    };
    // A kid written twice in one document is ambiguous even if one copy is otherwise broken:
    // every key carrying it is skipped.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for kid in list.iter().filter_map(kid_of) {
        *counts.entry(kid).or_default() += 1;
    }

    let mut out: Vec<(String, RingKey)> = Vec::with_capacity(list.len());
    for jwk in list {
        let kid = kid_of(jwk);
        let built = match &kid {
            Some(k) if counts.get(k).is_some_and(|&c| c > 1) => Err(SkipReason::DuplicateKid),
            _ => build_key(jwk, origin),
        };
        match built {
            Ok(entry) => out.push(entry),
            Err(reason) => {
                tracing::warn!(
                    kid = kid.as_deref().unwrap_or(""),
                    reason = reason.as_str(),
                    "JWK skipped"
                );
                report.skipped.push(SkippedKey {
                    origin,
                    kid,
                    reason,
                });
            }
        }
    }
    Ok(out)
}

fn str_field<'a>(o: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    o.get(name).and_then(Value::as_str)
}

fn b64_field(o: &Map<String, Value>, name: &str) -> Result<Vec<u8>, SkipReason> {
    let s = str_field(o, name).ok_or(SkipReason::BadEncoding)?;
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| SkipReason::BadEncoding)
}

fn build_key(jwk: &Value, origin: KeyOrigin) -> Result<(String, RingKey), SkipReason> {
    let o = jwk.as_object().ok_or(SkipReason::NotAnObject)?;
    let kid = str_field(o, "kid")
        .filter(|k| !k.is_empty())
        .ok_or(SkipReason::MissingKid)?;
    let alg_str = str_field(o, "alg")
        .filter(|a| !a.is_empty())
        .ok_or(SkipReason::MissingAlg)?;
    match o.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return Err(SkipReason::NotForSignature),
    }
    if let Some(ops) = o.get("key_ops") {
        let verify = ops
            .as_array()
            .is_some_and(|a| a.iter().any(|op| op.as_str() == Some("verify")));
        if !verify {
            return Err(SkipReason::KeyOpsWithoutVerify);
        }
    }
    let alg = Algorithm::from_str(alg_str).map_err(|_| SkipReason::UnsupportedAlg)?;
    let name = alg_name(alg);
    if name != alg_str {
        return Err(SkipReason::UnsupportedAlg);
    }
    let kty = str_field(o, "kty").unwrap_or("");

    let mut fp = digest::Context::new(&digest::SHA256);
    fp.update(name.as_bytes());
    let key = match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            if kty != "oct" {
                return Err(SkipReason::KtyMismatch);
            }
            let mut k = b64_field(o, "k")?;
            let min = match alg {
                Algorithm::HS256 => 32,
                Algorithm::HS384 => 48,
                _ => 64,
            };
            let key = if k.len() >= min {
                fp.update(&k);
                Ok(DecodingKey::from_secret(&k))
            } else {
                Err(SkipReason::HmacKeyTooShort)
            };
            k.zeroize();
            key?
        }
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            if kty != "RSA" {
                return Err(SkipReason::KtyMismatch);
            }
            if ["d", "p", "q", "dp", "dq", "qi", "oth"]
                .iter()
                .any(|p| o.contains_key(*p))
            {
                return Err(SkipReason::PrivateMaterial);
            }
            let n = b64_field(o, "n")?;
            let e = b64_field(o, "e")?;
            let n = strip_leading_zeros(&n);
            let e = strip_leading_zeros(&e);
            let bits = n
                .first()
                .map_or(0, |b| (n.len() - 1) * 8 + (8 - b.leading_zeros() as usize));
            if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                return Err(SkipReason::RsaModulusSize);
            }
            // Public exponent must be odd, > 1, and small (aws-lc caps it at 33 bits).
            let e_ok =
                !e.is_empty() && e.len() <= 4 && e.last().is_some_and(|b| b & 1 == 1) && e != [1];
            if !e_ok {
                return Err(SkipReason::InvalidPublicKey);
            }
            if has_roca_fingerprint(n) {
                return Err(SkipReason::RsaRocaVulnerable);
            }
            fp.update(n);
            fp.update(b"|");
            fp.update(e);
            DecodingKey::from_rsa_raw_components(n, e)
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            if kty != "EC" {
                return Err(SkipReason::KtyMismatch);
            }
            if o.contains_key("d") {
                return Err(SkipReason::PrivateMaterial);
            }
            let (crv, len, verify_alg): (_, _, &'static sig::EcdsaVerificationAlgorithm) = match alg
            {
                Algorithm::ES256 => ("P-256", 32, &sig::ECDSA_P256_SHA256_FIXED),
                _ => ("P-384", 48, &sig::ECDSA_P384_SHA384_FIXED),
            };
            if str_field(o, "crv") != Some(crv) {
                return Err(SkipReason::CurveMismatch);
            }
            let x = b64_field(o, "x")?;
            let y = b64_field(o, "y")?;
            if x.len() != len || y.len() != len {
                return Err(SkipReason::BadEncoding);
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            // Reject points not on the curve now, rather than failing every request later.
            ParsedPublicKey::new(verify_alg, &point).map_err(|_| SkipReason::InvalidPublicKey)?;
            fp.update(&point);
            DecodingKey::from_ec_der(&point)
        }
        Algorithm::EdDSA => {
            if kty != "OKP" {
                return Err(SkipReason::KtyMismatch);
            }
            if o.contains_key("d") {
                return Err(SkipReason::PrivateMaterial);
            }
            if str_field(o, "crv") != Some("Ed25519") {
                return Err(SkipReason::CurveMismatch);
            }
            let x = b64_field(o, "x")?;
            if x.len() != 32 {
                return Err(SkipReason::BadEncoding);
            }
            ParsedPublicKey::new(&sig::ED25519, &x).map_err(|_| SkipReason::InvalidPublicKey)?;
            fp.update(&x);
            DecodingKey::from_ed_der(&x)
        }
        _ => return Err(SkipReason::UnsupportedAlg),
    };
    let mut fingerprint = [0u8; 32];
    fingerprint.copy_from_slice(fp.finish().as_ref());
    Ok((
        kid.to_owned(),
        RingKey {
            alg,
            alg_name: name,
            key,
            origin,
            fingerprint,
        },
    ))
}

/// ROCA test (Nemec et al., CCS 2017): moduli from the vulnerable Infineon generator are, modulo
/// each of these small primes, in the subgroup generated by 65537. A random modulus passes all
/// 38 checks with negligible probability.
fn has_roca_fingerprint(n: &[u8]) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    PRIMES.iter().all(|&p| {
        let residue = n
            .iter()
            .fold(0u32, |acc, &b| ((acc << 8) | u32::from(b)) % p);
        // Walk the cyclic subgroup <65537> mod p looking for the residue.
        let g = 65537 % p;
        let mut x = 1u32;
        loop {
            if x == residue {
                return true;
            }
            x = x * g % p;
            if x == 1 {
                return false;
            }
        }
    })
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

/// Overwrites symmetric key strings in the parsed document before it is dropped.
fn scrub_secrets(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (name, child) in o.iter_mut() {
                match child {
                    Value::String(s) if name == "k" || name == "d" => s.zeroize(),
                    _ => scrub_secrets(child),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(scrub_secrets),
        _ => {}
    }
}
