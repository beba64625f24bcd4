//! Test-only module: its parent declares it `#[cfg(test)] mod …;`, so none of this is deployed.
//! Attack table and ring/cache behaviour. Every case is a real token signed (or forged) at test
//! time and run through the production path (`verify` / `KeyCache::verify`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{self, SecureRandom};
use aws_lc_rs::signature::{
    self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::*;
use crate::clock::ManualClock;
use crate::config::claims::Preset;

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://issuer.example";
const AUD: &str = "gatehouse-api";

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

enum Kind {
    Hmac(Vec<u8>),
    Rsa(Arc<RsaKeyPair>),
    Ec(Arc<EcdsaKeyPair>),
    Ed(Arc<Ed25519KeyPair>),
}

struct TestKey {
    kid: String,
    alg: &'static str,
    kind: Kind,
}

fn rsa_pair(i: usize) -> Arc<RsaKeyPair> {
    static PAIRS: OnceLock<Vec<Arc<RsaKeyPair>>> = OnceLock::new();
    PAIRS.get_or_init(|| {
        (0..3)
            .map(|_| Arc::new(RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap()))
            .collect()
    })[i]
        .clone()
}

impl TestKey {
    fn hmac(kid: &str, alg: &'static str, len: usize) -> Self {
        let mut k = vec![0u8; len];
        rand::SystemRandom::new().fill(&mut k).unwrap();
        Self {
            kid: kid.into(),
            alg,
            kind: Kind::Hmac(k),
        }
    }
    fn rsa(kid: &str, alg: &'static str, pair: usize) -> Self {
        Self {
            kid: kid.into(),
            alg,
            kind: Kind::Rsa(rsa_pair(pair)),
        }
    }
    fn ec(kid: &str, alg: &'static str) -> Self {
        let a = if alg == "ES256" {
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING
        } else {
            &sig::ECDSA_P384_SHA384_FIXED_SIGNING
        };
        Self {
            kid: kid.into(),
            alg,
            kind: Kind::Ec(Arc::new(EcdsaKeyPair::generate(a).unwrap())),
        }
    }
    fn ed(kid: &str) -> Self {
        Self {
            kid: kid.into(),
            alg: "EdDSA",
            kind: Kind::Ed(Arc::new(Ed25519KeyPair::generate().unwrap())),
        }
    }
    fn with(&self, kid: &str, alg: &'static str) -> Self {
        let kind = match &self.kind {
            Kind::Hmac(k) => Kind::Hmac(k.clone()),
            Kind::Rsa(p) => Kind::Rsa(p.clone()),
            Kind::Ec(p) => Kind::Ec(p.clone()),
            Kind::Ed(p) => Kind::Ed(p.clone()),
        };
        Self {
            kid: kid.into(),
            alg,
            kind,
        }
    }

    fn jwk(&self) -> Value {
        match &self.kind {
            Kind::Hmac(k) => {
                json!({"kty":"oct","kid":self.kid,"alg":self.alg,"use":"sig","k":b64(k)})
            }
            Kind::Rsa(p) => {
                let c = RsaPublicKeyComponents::<Vec<u8>>::from(p.public_key());
                json!({"kty":"RSA","kid":self.kid,"alg":self.alg,"n":b64(&c.n),"e":b64(&c.e)})
            }
            Kind::Ec(p) => {
                let pt = p.public_key().as_ref();
                let l = (pt.len() - 1) / 2;
                let crv = if l == 32 { "P-256" } else { "P-384" };
                json!({"kty":"EC","kid":self.kid,"alg":self.alg,"crv":crv,"x":b64(&pt[1..1 + l]),"y":b64(&pt[1 + l..])})
            }
            Kind::Ed(p) => {
                json!({"kty":"OKP","kid":self.kid,"alg":"EdDSA","crv":"Ed25519","x":b64(p.public_key().as_ref())})
            }
        }
    }

    /// Signs with this key's private half under `alg` (which may differ from the key's alg, to
    /// build confusion attacks).
    fn sign_as(&self, alg: &str, msg: &[u8]) -> Vec<u8> {
        let rng = rand::SystemRandom::new();
        match &self.kind {
            Kind::Hmac(k) => hmac(alg, k, msg),
            Kind::Rsa(p) => {
                let enc: &'static dyn sig::RsaEncoding = match alg {
                    "RS256" => &sig::RSA_PKCS1_SHA256,
                    "RS384" => &sig::RSA_PKCS1_SHA384,
                    "RS512" => &sig::RSA_PKCS1_SHA512,
                    "PS256" => &sig::RSA_PSS_SHA256,
                    "PS384" => &sig::RSA_PSS_SHA384,
                    _ => &sig::RSA_PSS_SHA512,
                };
                let mut out = vec![0; p.public_modulus_len()];
                p.sign(enc, &rng, msg, &mut out).unwrap();
                out
            }
            Kind::Ec(p) => p.sign(&rng, msg).unwrap().as_ref().to_vec(),
            Kind::Ed(p) => p.sign(msg).as_ref().to_vec(),
        }
    }

    fn token_raw(&self, header: &str, claims: &str) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let s = self.sign_as(self.alg, input.as_bytes());
        format!("{input}.{}", b64(&s))
    }

    fn header(&self) -> String {
        json!({"alg": self.alg, "kid": self.kid, "typ": "JWT"}).to_string()
    }

    fn token(&self, claims: &Value) -> String {
        self.token_raw(&self.header(), &claims.to_string())
    }
}

fn hmac(alg: &str, key: &[u8], msg: &[u8]) -> Vec<u8> {
    let a = match alg {
        "HS384" => aws_lc_rs::hmac::HMAC_SHA384,
        "HS512" => aws_lc_rs::hmac::HMAC_SHA512,
        _ => aws_lc_rs::hmac::HMAC_SHA256,
    };
    aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(a, key), msg)
        .as_ref()
        .to_vec()
}

fn claims_at(now: u64) -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "user-1", "roles": ["reader"], "tenant": "t1",
           "iat": now - 10, "exp": now + 600})
}

fn claims() -> Value {
    claims_at(NOW)
}

fn with(mut c: Value, key: &str, v: Value) -> Value {
    c[key] = v;
    c
}

fn without(mut c: Value, key: &str) -> Value {
    c.as_object_mut().unwrap().remove(key);
    c
}

fn jwks(keys: &[&TestKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

fn policy() -> TokenPolicy {
    TokenPolicy::new(ISS, AUD)
}

/// The reason code of a verification (`Ok(())` when it verified).
fn why<T>(r: Result<T, AuthFailure>) -> Result<(), &'static str> {
    r.map(drop).map_err(|f| f.reason())
}

struct Fixture {
    hs: TestKey,
    hs512: TestKey,
    rs: TestKey,
    ps: TestKey,
    es: TestKey,
    es384: TestKey,
    ed: TestKey,
    ring: KeyRing,
}

fn fixture() -> Fixture {
    let hs = TestKey::hmac("hs-1", "HS256", 32);
    let hs512 = TestKey::hmac("hs-512", "HS512", 64);
    let rs = TestKey::rsa("rsa-1", "RS256", 0);
    let ps = TestKey::rsa("rsa-ps", "PS256", 1);
    let es = TestKey::ec("ec-1", "ES256");
    let es384 = TestKey::ec("ec-384", "ES384");
    let ed = TestKey::ed("ed-1");
    // A JWK marked for encryption, sharing material with a signing key: must be skipped.
    let mut enc = rs.with("enc-1", "RS256").jwk();
    enc["use"] = json!("enc");
    let mut doc: Value =
        serde_json::from_str(&jwks(&[&hs, &hs512, &rs, &ps, &es, &es384, &ed])).unwrap();
    doc["keys"].as_array_mut().unwrap().push(enc);
    let (ring, report) = KeyRing::from_jwks(&doc.to_string(), None).unwrap();
    assert_eq!(report.loaded, 7);
    assert_eq!(report.skipped_for(SkipReason::NotForSignature), 1);
    Fixture {
        hs,
        hs512,
        rs,
        ps,
        es,
        es384,
        ed,
        ring,
    }
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

/// A token with an arbitrary header, HMAC-signed by the attacker with `secret`.
fn forged_hs(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let s = hmac("HS256", secret, input.as_bytes());
    format!("{input}.{}", b64(&s))
}

fn unsigned(header: &str, claims: &Value, sig: &str) -> String {
    format!(
        "{}.{}.{}",
        b64(header.as_bytes()),
        b64(claims.to_string().as_bytes()),
        sig
    )
}

#[test]
fn attack_table() {
    let f = fixture();
    let c = claims();
    let attacker_ec = TestKey::ec("rsa-1", "ES256");
    let rsa_pub = match &f.rs.kind {
        Kind::Rsa(p) => p.public_key().clone(),
        _ => unreachable!(),
    };
    let pem_bytes = pem(rsa_pub.as_der().unwrap().as_ref()).into_bytes();
    let n_bytes = RsaPublicKeyComponents::<Vec<u8>>::from(&rsa_pub).n;
    let hs_valid = f.hs.token(&c);
    let (hs_in, hs_sig) = hs_valid.rsplit_once('.').unwrap();
    let es_valid = f.es.token(&c);
    let (es_in, _) = es_valid.rsplit_once('.').unwrap();
    let es384_valid = f.es384.token(&c);
    let (es384_in, _) = es384_valid.rsplit_once('.').unwrap();
    let big =
        f.hs.token(&with(c.clone(), "pad", json!("x".repeat(9 * 1024))));
    assert!(big.len() > 9 * 1024);

    let hdr = |v: Value| v.to_string();
    let ok = Ok::<(), &str>(());
    let cases: Vec<(&str, String, Result<(), &str>)> = vec![
        // Baselines: every supported family verifies.
        ("valid HS256", bearer(&hs_valid), ok),
        ("valid HS512", bearer(&f.hs512.token(&c)), ok),
        ("valid RS256", bearer(&f.rs.token(&c)), ok),
        ("valid PS256", bearer(&f.ps.token(&c)), ok),
        ("valid ES256", bearer(&es_valid), ok),
        ("valid ES384", bearer(&es384_valid), ok),
        ("valid EdDSA", bearer(&f.ed.token(&c)), ok),
        ("lowercase scheme", format!("bearer {hs_valid}"), ok),
        // Header framing.
        ("empty header", String::new(), Err("missing_header")),
        ("basic scheme", format!("Basic {hs_valid}"), Err("malformed_header")),
        ("two spaces", format!("Bearer  {hs_valid}"), Err("malformed_header")),
        ("trailing space", format!("Bearer {hs_valid} "), Err("malformed_header")),
        ("two segments", bearer(hs_in), Err("malformed_token")),
        ("9 KiB token", bearer(&big), Err("token_too_large")),
        // alg none in its spellings, with and without a signature.
        ("alg none", bearer(&unsigned(&hdr(json!({"alg":"none","kid":"hs-1"})), &c, "")), Err("malformed_token")),
        ("alg None sig", bearer(&unsigned(&hdr(json!({"alg":"None","kid":"hs-1"})), &c, hs_sig)), Err("alg_mismatch")),
        ("alg NONE sig", bearer(&unsigned(&hdr(json!({"alg":"NONE","kid":"hs-1"})), &c, "AAAA")), Err("alg_mismatch")),
        ("alg nOnE sig", bearer(&unsigned(&hdr(json!({"alg":"nOnE","kid":"hs-1"})), &c, "AAAA")), Err("alg_mismatch")),
        ("alg none no kid", bearer(&unsigned(&hdr(json!({"alg":"none"})), &c, "AAAA")), Err("unknown_kid")),
        // Null and truncated signatures.
        ("null signature", bearer(&format!("{hs_in}.")), Err("malformed_token")),
        ("truncated signature", bearer(&format!("{hs_in}.{}", &hs_sig[..hs_sig.len() / 2])), Err("bad_signature")),
        ("signature last char changed", bearer(&format!("{hs_in}.{}{}", &hs_sig[..hs_sig.len() - 1], if hs_sig.ends_with('A') { 'Q' } else { 'A' })), Err("bad_signature")),
        // RS→HS confusion with the public key as the HMAC secret.
        ("RS->HS with PEM", bearer(&forged_hs(&json!({"alg":"HS256","kid":"rsa-1"}), &c, &pem_bytes)), Err("alg_mismatch")),
        ("RS->HS with n", bearer(&forged_hs(&json!({"alg":"HS256","kid":"rsa-1"}), &c, &n_bytes)), Err("alg_mismatch")),
        ("RS->HS with PEM, no kid", bearer(&forged_hs(&json!({"alg":"HS256"}), &c, &pem_bytes)), Err("unknown_kid")),
        ("empty HMAC key", bearer(&forged_hs(&json!({"alg":"HS256","kid":"hs-1"}), &c, b"")), Err("bad_signature")),
        // Key material / key locations from the token.
        ("embedded jwk", bearer(&attacker_ec.token_raw(&hdr(json!({"alg":"ES256","kid":"rsa-1","jwk":attacker_ec.jwk()})), &c.to_string())), Err("forbidden_header")),
        ("embedded jwk, attacker kid", bearer(&attacker_ec.with("evil", "ES256").token_raw(&hdr(json!({"alg":"ES256","kid":"evil","jwk":attacker_ec.jwk()})), &c.to_string())), Err("forbidden_header")),
        ("jku spoof", bearer(&f.hs.token_raw(&hdr(json!({"alg":"HS256","kid":"hs-1","jku":"https://evil.example/jwks.json"})), &c.to_string())), Err("forbidden_header")),
        ("x5u spoof", bearer(&f.hs.token_raw(&hdr(json!({"alg":"HS256","kid":"hs-1","x5u":"https://evil.example/cert.pem"})), &c.to_string())), Err("forbidden_header")),
        ("x5c embedded", bearer(&f.hs.token_raw(&hdr(json!({"alg":"HS256","kid":"hs-1","x5c":["MIIB"]})), &c.to_string())), Err("forbidden_header")),
        // kid injection strings never reach anything but a map lookup.
        ("kid traversal", bearer(&forged_hs(&json!({"alg":"HS256","kid":"../../etc/passwd"}), &c, b"")), Err("unknown_kid")),
        ("kid SQL", bearer(&forged_hs(&json!({"alg":"HS256","kid":"' OR 1=1 --"}), &c, b"x")), Err("unknown_kid")),
        ("kid command", bearer(&forged_hs(&json!({"alg":"HS256","kid":"$(id)"}), &c, b"x")), Err("unknown_kid")),
        ("kid non-string", bearer(&forged_hs(&json!({"alg":"HS256","kid":1}), &c, b"x")), Err("malformed_token")),
        // Psychic signatures (r = s = 0).
        ("psychic ES256", bearer(&format!("{es_in}.{}", b64(&[0u8; 64]))), Err("bad_signature")),
        ("psychic ES384", bearer(&format!("{es384_in}.{}", b64(&[0u8; 96]))), Err("bad_signature")),
        // Alg pinned to the key.
        ("RS256 on PS256 key", bearer(&f.ps.with("rsa-ps", "RS256").token(&c)), Err("alg_mismatch")),
        ("PS256 on RS256 key", bearer(&f.rs.with("rsa-1", "PS256").token(&c)), Err("alg_mismatch")),
        ("HS256 header, RSA kid", bearer(&f.hs.with("rsa-1", "HS256").token(&c)), Err("alg_mismatch")),
        ("HS512 key, HS256 header", bearer(&f.hs512.with("hs-512", "HS256").token(&c)), Err("alg_mismatch")),
        ("ES256 on EdDSA kid", bearer(&f.es.with("ed-1", "ES256").token(&c)), Err("alg_mismatch")),
        ("use=enc key", bearer(&f.rs.with("enc-1", "RS256").token(&c)), Err("unknown_kid")),
        // crit, duplicates.
        ("crit unknown", bearer(&f.hs.token_raw(&hdr(json!({"alg":"HS256","kid":"hs-1","crit":["exp"],"exp":1})), &c.to_string())), Err("unsupported_crit")),
        ("crit empty", bearer(&f.hs.token_raw(&hdr(json!({"alg":"HS256","kid":"hs-1","crit":[]})), &c.to_string())), Err("unsupported_crit")),
        // Content types the verifier does not implement: a nested JWT (`cty: JWT`) must not be
        // read as if its payload were plain claims; no other `cty` is implemented either.
        ("cty JWT (nested token)", bearer(&f.hs.token_raw(&hdr(json!({"alg":"HS256","kid":"hs-1","cty":"JWT"})), &c.to_string())), Err("unsupported_cty")),
        ("cty jwt lowercase", bearer(&f.hs.token_raw(&hdr(json!({"alg":"HS256","kid":"hs-1","cty":"jwt"})), &c.to_string())), Err("unsupported_cty")),
        ("cty json", bearer(&f.hs.token_raw(&hdr(json!({"alg":"HS256","kid":"hs-1","cty":"application/json"})), &c.to_string())), Err("unsupported_cty")),
        ("cty null", bearer(&f.hs.token_raw(&hdr(json!({"alg":"HS256","kid":"hs-1","cty":null})), &c.to_string())), Err("unsupported_cty")),
        ("nested JWT as payload", bearer(&f.hs.token_raw(&hdr(json!({"alg":"HS256","kid":"hs-1","cty":"JWT"})), &format!("\"{hs_valid}\""))), Err("unsupported_cty")),
        ("typ not a string", bearer(&f.hs.token_raw(&hdr(json!({"alg":"HS256","kid":"hs-1","typ":1})), &c.to_string())), Err("malformed_token")),
        ("duplicate header alg", bearer(&f.hs.token_raw(r#"{"alg":"none","kid":"hs-1","alg":"HS256"}"#, &c.to_string())), Err("duplicate_key")),
        ("duplicate header kid", bearer(&f.hs.token_raw(r#"{"alg":"HS256","kid":"evil","kid":"hs-1"}"#, &c.to_string())), Err("duplicate_key")),
        ("duplicate header typ", bearer(&f.hs.token_raw(r#"{"alg":"HS256","kid":"hs-1","typ":"JWT","typ":"x"}"#, &c.to_string())), Err("duplicate_key")),
        ("escaped duplicate alg", bearer(&f.hs.token_raw(r#"{"alg":"HS256","kid":"hs-1","\u0061lg":"HS256"}"#, &c.to_string())), Err("duplicate_key")),
        ("duplicate roles", bearer(&f.hs.token_raw(&f.hs.header(), &format!(r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"u","iat":{},"exp":{},"roles":["reader"],"roles":["admin"]}}"#, NOW, NOW + 60))), Err("duplicate_key")),
        ("duplicate sub", bearer(&f.hs.token_raw(&f.hs.header(), &format!(r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"u","sub":"admin","iat":{},"exp":{}}}"#, NOW, NOW + 60))), Err("duplicate_key")),
        ("duplicate nested", bearer(&f.hs.token_raw(&f.hs.header(), &format!(r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"u","iat":{},"exp":{},"x":{{"a":1,"a":2}}}}"#, NOW, NOW + 60))), Err("duplicate_key")),
        ("payload not JSON", bearer(&f.hs.token_raw(&f.hs.header(), "foo")), Err("malformed_token")),
        ("payload array", bearer(&f.hs.token_raw(&f.hs.header(), "[]")), Err("malformed_token")),
        // Time.
        ("expired beyond leeway", bearer(&f.hs.token(&with(with(c.clone(), "exp", json!(NOW - 31)), "iat", json!(NOW - 100)))), Err("expired")),
        ("expired at leeway edge", bearer(&f.hs.token(&with(with(c.clone(), "exp", json!(NOW - 30)), "iat", json!(NOW - 100)))), Err("expired")),
        ("expired within leeway", bearer(&f.hs.token(&with(with(c.clone(), "exp", json!(NOW - 29)), "iat", json!(NOW - 100)))), ok),
        ("exp missing", bearer(&f.hs.token(&without(c.clone(), "exp"))), Err("missing_claim")),
        ("exp string", bearer(&f.hs.token(&with(c.clone(), "exp", json!((NOW + 600).to_string())))), Err("invalid_claim")),
        ("exp negative", bearer(&f.hs.token(&with(c.clone(), "exp", json!(-1)))), Err("invalid_claim")),
        ("exp float", bearer(&f.hs.token(&with(c.clone(), "exp", json!(NOW as f64 + 600.5)))), Err("invalid_claim")),
        ("exp null", bearer(&f.hs.token(&with(c.clone(), "exp", Value::Null))), Err("invalid_claim")),
        ("exp huge", bearer(&f.hs.token(&with(c.clone(), "exp", json!(u64::MAX)))), Err("invalid_claim")),
        ("nbf future", bearer(&f.hs.token(&with(c.clone(), "nbf", json!(NOW + 31)))), Err("not_yet_valid")),
        ("nbf within leeway", bearer(&f.hs.token(&with(c.clone(), "nbf", json!(NOW + 29)))), ok),
        ("nbf string", bearer(&f.hs.token(&with(c.clone(), "nbf", json!("0")))), Err("invalid_claim")),
        ("iat future", bearer(&f.hs.token(&with(c.clone(), "iat", json!(NOW + 31)))), Err("issued_in_future")),
        ("iat missing", bearer(&f.hs.token(&without(c.clone(), "iat"))), Err("missing_claim")),
        ("lifetime too long", bearer(&f.hs.token(&with(c.clone(), "exp", json!(NOW + 3600)))), Err("lifetime_too_long")),
        ("exp before iat", bearer(&f.hs.token(&with(with(c.clone(), "iat", json!(NOW)), "exp", json!(NOW - 1)))), Err("invalid_claim")),
        // Audience and issuer.
        ("aud missing", bearer(&f.hs.token(&without(c.clone(), "aud"))), Err("missing_claim")),
        ("aud wrong", bearer(&f.hs.token(&with(c.clone(), "aud", json!("other-api")))), Err("wrong_audience")),
        ("aud array with ours", bearer(&f.hs.token(&with(c.clone(), "aud", json!(["other", AUD])))), ok),
        ("aud array without ours", bearer(&f.hs.token(&with(c.clone(), "aud", json!(["other"])))), Err("wrong_audience")),
        ("aud empty array", bearer(&f.hs.token(&with(c.clone(), "aud", json!([])))), Err("invalid_claim")),
        ("aud array of numbers", bearer(&f.hs.token(&with(c.clone(), "aud", json!([1])))), Err("invalid_claim")),
        ("aud prefix", bearer(&f.hs.token(&with(c.clone(), "aud", json!(format!("{AUD}x"))))), Err("wrong_audience")),
        ("iss missing", bearer(&f.hs.token(&without(c.clone(), "iss"))), Err("missing_claim")),
        ("iss wrong", bearer(&f.hs.token(&with(c.clone(), "iss", json!("https://evil.example")))), Err("wrong_issuer")),
        ("iss case", bearer(&f.hs.token(&with(c.clone(), "iss", json!(ISS.to_uppercase())))), Err("wrong_issuer")),
        // Subject, roles, tenant.
        ("sub missing", bearer(&f.hs.token(&without(c.clone(), "sub"))), Err("missing_claim")),
        ("sub empty", bearer(&f.hs.token(&with(c.clone(), "sub", json!("")))), Err("invalid_claim")),
        ("sub number", bearer(&f.hs.token(&with(c.clone(), "sub", json!(42)))), Err("invalid_claim")),
        ("roles and role", bearer(&f.hs.token(&with(c.clone(), "role", json!("admin")))), Err("invalid_claim")),
        ("roles not strings", bearer(&f.hs.token(&with(c.clone(), "roles", json!(["a", 1])))), Err("invalid_claim")),
        ("roles a string", bearer(&f.hs.token(&with(c.clone(), "roles", json!("admin")))), Err("invalid_claim")),
        ("role array", bearer(&f.hs.token(&with(without(c.clone(), "roles"), "role", json!(["admin"])))), Err("invalid_claim")),
        ("tenant number", bearer(&f.hs.token(&with(c.clone(), "tenant", json!(7)))), Err("invalid_claim")),
        ("jti with CRLF", bearer(&f.hs.token(&with(c.clone(), "jti", json!("a\r\nb")))), Err("invalid_claim")),
        ("role with a comma (would split downstream)", bearer(&f.hs.token(&with(c.clone(), "roles", json!(["analyst", "x,ai_operator"])))), Err("invalid_claim")),
        ("role with a space", bearer(&f.hs.token(&with(c.clone(), "roles", json!(["ai operator"])))), Err("invalid_claim")),
        ("roles null", bearer(&f.hs.token(&with(c.clone(), "roles", Value::Null))), Err("invalid_claim")),
        ("role null", bearer(&f.hs.token(&with(without(c.clone(), "roles"), "role", Value::Null))), Err("invalid_claim")),
        ("tenant null", bearer(&f.hs.token(&with(c.clone(), "tenant", Value::Null))), Err("invalid_claim")),
        ("33 roles", bearer(&f.hs.token(&with(c.clone(), "roles", json!((0..33).map(|i| format!("r{i}")).collect::<Vec<_>>())))), Err("invalid_claim")),
        ("duplicate tenant", bearer(&f.hs.token_raw(&f.hs.header(), &format!(r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"u","iat":{},"exp":{},"tenant":"a","tenant":"b"}}"#, NOW, NOW + 60))), Err("duplicate_key")),
        ("scope with a double space", bearer(&f.hs.token(&with(c.clone(), "scope", json!("a  b")))), Err("invalid_claim")),
        ("scope an array (string expected)", bearer(&f.hs.token(&with(c.clone(), "scope", json!(["a"])))), Err("invalid_claim")),
        ("tenant with a newline", bearer(&f.hs.token(&with(c.clone(), "tenant", json!("acme\nx")))), Err("invalid_claim")),
        ("sub with CRLF", bearer(&f.hs.token(&with(c.clone(), "sub", json!("u\r\nfake log line")))), Err("invalid_claim")),
    ];

    let policy = policy();
    let mut failures = Vec::new();
    for (name, header, expected) in &cases {
        let got = verify(&f.ring, &policy, header, at(NOW));
        let got_reason = got.as_ref().map(|_| ()).map_err(AuthFailure::reason);
        if got_reason != *expected {
            failures.push(format!("{name}: expected {expected:?}, got {got_reason:?}"));
        }
        if let Err(e) = &got {
            // The error text never echoes the token.
            let text = format!("{e} {e:?}");
            let tok = header.strip_prefix("Bearer ").unwrap_or(header);
            assert!(
                tok.len() < 8 || !text.contains(tok),
                "{name}: error leaks token"
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(cases.len() > 80);
}

#[test]
fn principal_fields() {
    let f = fixture();
    let c = with(claims(), "jti", json!("tok-123"));
    let p = verify(&f.ring, &policy(), &bearer(&f.es.token(&c)), at(NOW))
        .unwrap()
        .principal;
    assert_eq!(
        p,
        Principal {
            issuer: ISS.into(),
            sub: "user-1".into(),
            roles: vec!["reader".into()],
            tenant: Some("t1".into()),
            token_id: "tok-123".into(),
            exp: NOW + 600,
        }
    );

    // Single `role` string, no tenant, no jti: token_id is a 16-hex hash prefix.
    let c = with(
        without(without(claims(), "roles"), "tenant"),
        "role",
        json!("admin"),
    );
    let tok = f.ed.token(&c);
    let p = verify(&f.ring, &policy(), &bearer(&tok), at(NOW))
        .unwrap()
        .principal;
    assert_eq!(p.roles, vec!["admin".to_string()]);
    assert_eq!(p.tenant, None);
    assert_eq!(p.token_id.len(), 16);
    assert!(p.token_id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(p.token_id, claims::token_hash_id(&tok));
    assert!(!tok.contains(&p.token_id) || p.token_id.len() == 16);

    // Debug output of a verified token never shows the token.
    let v = verify_signature(&f.ring, &tok).unwrap();
    assert!(!format!("{v:?}").contains(&tok[..20]));

    // No roles at all: empty list.
    let p = verify(
        &f.ring,
        &policy(),
        &bearer(&f.hs.token(&without(claims(), "roles"))),
        at(NOW),
    )
    .unwrap()
    .principal;
    assert!(p.roles.is_empty());
}

#[test]
fn configurable_leeway_and_lifetime() {
    let f = fixture();
    let tok = bearer(&f.hs.token(&with(
        with(claims(), "exp", json!(NOW - 5)),
        "iat",
        json!(NOW - 100),
    )));
    let mut p = policy();
    assert!(verify(&f.ring, &p, &tok, at(NOW)).is_ok());
    p.leeway = Duration::ZERO;
    assert_eq!(why(verify(&f.ring, &p, &tok, at(NOW))), Err("expired"));
    // A generous leeway is clamped to 30 s: expired 60 s ago stays expired.
    p.leeway = Duration::from_secs(120);
    let old = bearer(&f.hs.token(&with(
        with(claims(), "exp", json!(NOW - 60)),
        "iat",
        json!(NOW - 100),
    )));
    assert_eq!(why(verify(&f.ring, &p, &old, at(NOW))), Err("expired"));
    assert!(verify(&f.ring, &p, &tok, at(NOW)).is_ok());
    p.max_lifetime = Duration::from_secs(60);
    let long = bearer(&f.hs.token(&claims()));
    assert_eq!(
        why(verify(&f.ring, &p, &long, at(NOW))),
        Err("lifetime_too_long")
    );
}

#[test]
fn ring_skips_bad_keys_and_counts_them() {
    let hs = TestKey::hmac("hs-1", "HS256", 32);
    let rs = TestKey::rsa("rsa-1", "RS256", 0);
    let es = TestKey::ec("ec-1", "ES256");
    let mut bad: Vec<Value> = Vec::new();
    let mut push = |base: &TestKey, f: &dyn Fn(&mut Value)| {
        let mut j = base.jwk();
        f(&mut j);
        bad.push(j);
    };
    push(&hs, &|j| {
        j.as_object_mut().unwrap().remove("kid");
    });
    push(&hs, &|j| {
        j.as_object_mut().unwrap().remove("alg");
        j["kid"] = json!("no-alg");
    });
    push(&hs, &|j| {
        j["kid"] = json!("enc");
        j["use"] = json!("enc");
    });
    push(&hs, &|j| {
        j["kid"] = json!("ops");
        j["key_ops"] = json!(["encrypt"]);
    });
    push(&hs, &|j| {
        j["kid"] = json!("short");
        j["k"] = json!(b64(&[7u8; 31]));
    });
    push(&hs, &|j| {
        j["kid"] = json!("empty");
        j["k"] = json!("");
    });
    push(&hs, &|j| {
        j["kid"] = json!("hs384-short");
        j["alg"] = json!("HS384");
        j["k"] = json!(b64(&[7u8; 47]));
    });
    push(&rs, &|j| {
        j["kid"] = json!("rsa-1024");
        j["n"] = json!(b64(&[0xc5u8; 128]));
    });
    push(&rs, &|j| {
        j["kid"] = json!("rsa-priv");
        j["d"] = json!("AQAB");
    });
    push(&es, &|j| {
        j["kid"] = json!("wrong-crv");
        j["crv"] = json!("P-384");
    });
    push(&es, &|j| {
        j["kid"] = json!("off-curve");
        j["y"] = json!(b64(&[1u8; 32]));
    });
    push(&es, &|j| {
        j["kid"] = json!("es512");
        j["alg"] = json!("ES512");
    });
    push(&es, &|j| {
        j["kid"] = json!("kty-mix");
        j["alg"] = json!("RS256");
    });
    push(&hs, &|j| {
        j["kid"] = json!("none-alg");
        j["alg"] = json!("none");
    });
    push(&hs, &|j| {
        j["kid"] = json!("padded");
        j["k"] = json!(format!("{}=", STANDARD.encode([1u8; 32])));
    });
    // Same kid twice in one document: ambiguous, both dropped.
    push(&hs, &|j| j["kid"] = json!("dup"));
    push(&hs, &|j| j["kid"] = json!("dup"));
    let mut keys = vec![hs.jwk(), rs.jwk(), es.jwk()];
    keys.extend(bad);
    let doc = json!({"keys": keys}).to_string();
    let (ring, report) = KeyRing::from_jwks(&doc, None).unwrap();
    assert_eq!(ring.kids(), vec!["ec-1", "hs-1", "rsa-1"]);
    assert_eq!(report.loaded, 3);
    let count = |r| report.skipped_for(r);
    assert_eq!(count(SkipReason::MissingKid), 1);
    assert_eq!(count(SkipReason::MissingAlg), 1);
    assert_eq!(count(SkipReason::NotForSignature), 1);
    assert_eq!(count(SkipReason::KeyOpsWithoutVerify), 1);
    assert_eq!(count(SkipReason::HmacKeyTooShort), 3);
    assert_eq!(count(SkipReason::RsaModulusSize), 1);
    assert_eq!(count(SkipReason::PrivateMaterial), 1);
    assert_eq!(count(SkipReason::CurveMismatch), 1);
    assert_eq!(count(SkipReason::InvalidPublicKey), 1);
    assert_eq!(count(SkipReason::UnsupportedAlg), 2);
    assert_eq!(count(SkipReason::KtyMismatch), 1);
    assert_eq!(count(SkipReason::BadEncoding), 1);
    assert_eq!(count(SkipReason::DuplicateKid), 2);
    assert_eq!(report.warnings(), 17);
    assert!(!format!("{ring:?}").contains(&b64(match &hs.kind {
        Kind::Hmac(k) => k,
        _ => unreachable!(),
    })));
}

#[test]
fn ring_document_errors() {
    let hs = TestKey::hmac("hs-1", "HS256", 32);
    assert_eq!(
        KeyRing::from_jwks("not json", None).err(),
        Some(KeyError::InvalidJson)
    );
    assert_eq!(
        KeyRing::from_jwks(r#"{"keys":{}}"#, None).err(),
        Some(KeyError::NotAJwks)
    );
    // A well-formed but empty JWKS is a valid (deny-everything) ring, not an error.
    let (empty, report) = KeyRing::from_jwks(r#"{"keys":[]}"#, None).unwrap();
    assert!(empty.is_empty());
    assert_eq!(report.loaded, 0);
    let dup = format!(r#"{{"keys":[{}],"keys":[]}}"#, hs.jwk());
    assert_eq!(
        KeyRing::from_jwks(&dup, None).err(),
        Some(KeyError::DuplicateJsonKey)
    );
    // A broken PREVIOUS is reported, CURRENT still serves.
    let (ring, report) = KeyRing::from_jwks(&jwks(&[&hs]), Some("{")).unwrap();
    assert_eq!(ring.len(), 1);
    assert_eq!(report.previous_error, Some(KeyError::InvalidJson));
}

#[test]
fn current_wins_over_previous_for_same_kid() {
    let cur = TestKey::hmac("k", "HS256", 32);
    let prev = TestKey::hmac("k", "HS256", 32);
    let prev_only = TestKey::ed("old");
    let (ring, report) =
        KeyRing::from_jwks(&jwks(&[&cur]), Some(&jwks(&[&prev, &prev_only]))).unwrap();
    assert_eq!(ring.kids(), vec!["k", "old"]);
    assert_eq!(ring.origin_of("k"), Some(KeyOrigin::Current));
    assert_eq!(ring.origin_of("old"), Some(KeyOrigin::Previous));
    assert_eq!(report.skipped_for(SkipReason::ShadowedByCurrent), 1);
    let p = policy();
    assert!(verify(&ring, &p, &bearer(&cur.token(&claims())), at(NOW)).is_ok());
    assert_eq!(
        why(verify(&ring, &p, &bearer(&prev.token(&claims())), at(NOW))),
        Err("bad_signature")
    );
    assert!(verify(&ring, &p, &bearer(&prev_only.token(&claims())), at(NOW)).is_ok());
    // Same material in both versions is not a conflict.
    let (_, report) = KeyRing::from_jwks(&jwks(&[&cur]), Some(&jwks(&[&cur]))).unwrap();
    assert_eq!(report.warnings(), 0);
}

// ---- KeyCache: rotation, unknown-kid refresh, staleness ----

#[derive(Default)]
struct FakeState {
    current: String,
    previous: Option<String>,
    fail: bool,
}

#[derive(Default)]
struct FakeInner {
    state: Mutex<FakeState>,
    fetches: AtomicUsize,
}

#[derive(Clone, Default)]
struct FakeSource(Arc<FakeInner>);

impl FakeSource {
    fn set(&self, current: String, previous: Option<String>) {
        let mut s = self.0.state.lock().unwrap();
        s.current = current;
        s.previous = previous;
    }
    fn fail(&self, fail: bool) {
        self.0.state.lock().unwrap().fail = fail;
    }
    fn fetches(&self) -> usize {
        self.0.fetches.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl JwksSource for FakeSource {
    async fn fetch(&self) -> Result<JwksVersions, SourceError> {
        self.0.fetches.fetch_add(1, Ordering::SeqCst);
        // Let other tasks run while the "network call" is in flight.
        tokio::task::yield_now().await;
        let s = self.0.state.lock().unwrap();
        if s.fail {
            return Err(SourceError::new("simulated outage"));
        }
        Ok(JwksVersions::new(s.current.clone(), s.previous.clone()))
    }
}

fn setup(current: &[&TestKey], previous: Option<&[&TestKey]>) -> (FakeSource, Arc<ManualClock>) {
    let src = FakeSource::default();
    src.set(jwks(current), previous.map(jwks));
    (src, Arc::new(ManualClock::new(at(NOW))))
}

fn now_secs(clock: &ManualClock) -> u64 {
    use crate::clock::Clock;
    clock.now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test(flavor = "current_thread")]
async fn load_fails_without_keys() {
    let src = FakeSource::default();
    src.fail(true);
    let clock = Arc::new(ManualClock::new(at(NOW)));
    assert!(matches!(
        KeyCache::load(src.clone(), CacheConfig::default(), clock.clone()).await,
        Err(AuthError::KeysUnavailable)
    ));
    // A malformed document is no better than an outage.
    src.fail(false);
    src.set("{not json".into(), None);
    assert!(matches!(
        KeyCache::load(src, CacheConfig::default(), clock).await,
        Err(AuthError::KeysUnavailable)
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn publishing_an_empty_jwks_revokes_at_the_next_refresh() {
    let a = TestKey::hmac("key-a", "HS256", 32);
    let (src, clock) = setup(&[&a], None);
    let cache = KeyCache::load(src.clone(), CacheConfig::default(), clock.clone())
        .await
        .unwrap();
    let p = policy();
    let fresh = |clock: &ManualClock| bearer(&a.token(&claims_at(now_secs(clock))));
    assert!(cache.verify(&p, &fresh(&clock)).await.is_ok());
    // The owner publishes an empty key set (AWSPREVIOUS dropped too): once the refresh period has
    // passed, the old key no longer verifies, instead of being served for the staleness hour.
    src.set(r#"{"keys":[]}"#.into(), None);
    clock.advance(Duration::from_secs(301));
    assert_eq!(
        why(cache.verify(&p, &fresh(&clock)).await),
        Err("unknown_kid")
    );
    // And a stack deployed with the template's empty JWKS starts and denies, rather than crash.
    let (empty_src, clock) = setup(&[], None);
    let empty = KeyCache::load(empty_src, CacheConfig::default(), clock.clone())
        .await
        .unwrap();
    assert_eq!(
        why(empty.verify(&p, &fresh(&clock)).await),
        Err("unknown_kid")
    );
}

#[tokio::test(flavor = "current_thread")]
async fn rotation_previous_accepted_then_dropped() {
    let a = TestKey::hmac("key-a", "HS256", 32);
    let b = TestKey::ed("key-b");
    let c = TestKey::ec("key-c", "ES256");
    let (src, clock) = setup(&[&b], Some(&[&a]));
    let cache = KeyCache::load(src.clone(), CacheConfig::default(), clock.clone())
        .await
        .unwrap();
    let p = policy();
    assert_eq!(src.fetches(), 1);
    assert!(
        cache.verify(&p, &bearer(&a.token(&claims()))).await.is_ok(),
        "PREVIOUS accepted"
    );
    assert!(
        cache.verify(&p, &bearer(&b.token(&claims()))).await.is_ok(),
        "CURRENT accepted"
    );

    // Rotate: C becomes CURRENT, B PREVIOUS, A is gone. Within the TTL nothing changes.
    src.set(jwks(&[&c]), Some(jwks(&[&b])));
    clock.advance(Duration::from_secs(299));
    let t = now_secs(&clock);
    assert!(
        cache
            .verify(&p, &bearer(&a.token(&claims_at(t))))
            .await
            .is_ok()
    );
    assert_eq!(src.fetches(), 1);

    // After the TTL the ring is refreshed: A rejected, B and C accepted.
    clock.advance(Duration::from_secs(2));
    let t = now_secs(&clock);
    assert_eq!(
        why(cache.verify(&p, &bearer(&a.token(&claims_at(t)))).await),
        Err("unknown_kid")
    );
    // One TTL refresh plus one (rate-limited) unknown-kid refresh for key-a.
    assert_eq!(src.fetches(), 3);
    assert!(
        cache
            .verify(&p, &bearer(&b.token(&claims_at(t))))
            .await
            .is_ok()
    );
    assert!(
        cache
            .verify(&p, &bearer(&c.token(&claims_at(t))))
            .await
            .is_ok()
    );
    assert_eq!(cache.ring().await.kids(), vec!["key-b", "key-c"]);
    // A again right away: rate-limited, no further fetch.
    assert_eq!(
        why(cache.verify(&p, &bearer(&a.token(&claims_at(t)))).await),
        Err("unknown_kid")
    );
    assert_eq!(src.fetches(), 3);
}

#[tokio::test(flavor = "current_thread")]
async fn unknown_kid_refresh_is_rate_limited() {
    let a = TestKey::hmac("key-a", "HS256", 32);
    let d = TestKey::rsa("key-d", "RS256", 2);
    let e = TestKey::ed("key-e");
    let (src, clock) = setup(&[&a], None);
    let cfg = CacheConfig {
        unknown_kid_min_interval: Duration::from_secs(30),
        ..CacheConfig::default()
    };
    let cache = KeyCache::load(src.clone(), cfg, clock.clone())
        .await
        .unwrap();
    let p = policy();

    // New CURRENT kid published: picked up by one unknown-kid refresh.
    src.set(jwks(&[&d]), Some(jwks(&[&a])));
    assert!(cache.verify(&p, &bearer(&d.token(&claims()))).await.is_ok());
    assert_eq!(src.fetches(), 2);

    // Another new kid within the interval: no fetch, rejected.
    src.set(jwks(&[&e]), Some(jwks(&[&d])));
    clock.advance(Duration::from_secs(10));
    let t = now_secs(&clock);
    assert_eq!(
        why(cache.verify(&p, &bearer(&e.token(&claims_at(t)))).await),
        Err("unknown_kid")
    );
    let junk = forged_hs(
        &json!({"alg":"HS256","kid":"random-kid"}),
        &claims_at(t),
        b"x",
    );
    assert_eq!(
        why(cache.verify(&p, &bearer(&junk)).await),
        Err("unknown_kid")
    );
    assert_eq!(src.fetches(), 2);

    // After the interval the next unknown kid may refresh again.
    clock.advance(Duration::from_secs(21));
    let t = now_secs(&clock);
    assert!(
        cache
            .verify(&p, &bearer(&e.token(&claims_at(t))))
            .await
            .is_ok()
    );
    assert_eq!(src.fetches(), 3);
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_unknown_kids_cause_one_fetch() {
    let a = TestKey::hmac("key-a", "HS256", 32);
    let b = Arc::new(TestKey::ed("key-b"));
    let (src, clock) = setup(&[&a], None);
    let cache = Arc::new(
        KeyCache::load(src.clone(), CacheConfig::default(), clock)
            .await
            .unwrap(),
    );
    src.set(jwks(&[&b]), Some(jwks(&[&a])));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let cache = cache.clone();
        let tok = bearer(&b.token(&claims()));
        set.spawn(async move { cache.verify(&policy(), &tok).await });
    }
    let mut oks = 0;
    while let Some(r) = set.join_next().await {
        oks += usize::from(r.unwrap().is_ok());
    }
    assert_eq!(oks, 16);
    assert_eq!(src.fetches(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn refresh_failure_serves_stale_then_fails_closed() {
    let a = TestKey::hmac("key-a", "HS256", 32);
    let (src, clock) = setup(&[&a], None);
    let cfg = CacheConfig::default();
    let cache = KeyCache::load(src.clone(), cfg.clone(), clock.clone())
        .await
        .unwrap();
    let p = policy();
    let fresh = |clock: &ManualClock| bearer(&a.token(&claims_at(now_secs(clock))));
    src.fail(true);

    clock.advance(Duration::from_secs(301));
    assert!(
        cache.verify(&p, &fresh(&clock)).await.is_ok(),
        "stale keys served"
    );
    assert_eq!(src.fetches(), 2);
    // Failed refreshes are retried at most once per interval.
    clock.advance(Duration::from_secs(10));
    assert!(cache.verify(&p, &fresh(&clock)).await.is_ok());
    assert_eq!(src.fetches(), 2);
    clock.advance(Duration::from_secs(25));
    assert!(cache.verify(&p, &fresh(&clock)).await.is_ok());
    assert_eq!(src.fetches(), 3);

    // Just inside max staleness (3600 s since the last good fetch): still served.
    clock.set(at(NOW + 3600));
    assert!(cache.verify(&p, &fresh(&clock)).await.is_ok());
    // Past it: every request fails closed, even a valid token.
    clock.set(at(NOW + 3601));
    assert_eq!(
        why(cache.verify(&p, &fresh(&clock)).await),
        Err("keys_unavailable")
    );
    let before = src.fetches();
    clock.advance(Duration::from_secs(5));
    assert_eq!(
        why(cache.verify(&p, &fresh(&clock)).await),
        Err("keys_unavailable")
    );
    assert_eq!(src.fetches(), before, "retry still rate-limited");

    // Source recovers: the next allowed refresh restores service.
    src.fail(false);
    clock.advance(Duration::from_secs(30));
    assert!(cache.verify(&p, &fresh(&clock)).await.is_ok());
    assert_eq!(AuthError::KeysUnavailable.reason(), "keys_unavailable");
}

#[test]
fn reasons_are_stable_and_unique() {
    let c = || std::borrow::Cow::Borrowed("exp");
    let all = [
        AuthError::MissingHeader,
        AuthError::MalformedHeader,
        AuthError::TokenTooLarge,
        AuthError::MalformedToken,
        AuthError::DuplicateKey,
        AuthError::ForbiddenHeader,
        AuthError::UnsupportedCrit,
        AuthError::UnsupportedCty,
        AuthError::UnknownKid,
        AuthError::AlgMismatch,
        AuthError::BadSignature,
        AuthError::Expired {
            exp: 1,
            now: 2,
            leeway: 0,
        },
        AuthError::NotYetValid {
            nbf: 2,
            now: 1,
            leeway: 0,
        },
        AuthError::IssuedInFuture {
            iat: 2,
            now: 1,
            leeway: 0,
        },
        AuthError::LifetimeTooLong {
            lifetime: 2,
            max: 1,
        },
        AuthError::MissingClaim(c()),
        AuthError::invalid(c(), "x"),
        AuthError::WrongIssuer {
            expected: "i".into(),
        },
        AuthError::WrongAudience {
            claim: c(),
            expected: "a".into(),
        },
        AuthError::WrongTokenType {
            claim: c(),
            expected: "access".into(),
        },
        AuthError::WrongClaimValue {
            claim: c(),
            expected: "v".into(),
        },
        AuthError::InsufficientScope {
            route: "r".into(),
            missing: "s".into(),
        },
        AuthError::KeysUnavailable,
    ];
    let mut seen = HashMap::new();
    for e in &all {
        let r = e.reason();
        assert!(
            r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{r}"
        );
        assert!(seen.insert(r, ()).is_none(), "duplicate reason {r}");
    }
    assert_eq!(seen.len(), 23);
}

// ---- Deny details: which claim, which expectation, and who ----

#[test]
fn denials_name_the_check_and_the_principal_once_the_signature_verified() {
    let f = fixture();
    let p = policy();
    let fail =
        |claims: &Value| verify(&f.ring, &p, &bearer(&f.hs.token(claims)), at(NOW)).unwrap_err();

    let e = fail(&with(
        with(claims(), "exp", json!(NOW - 100)),
        "iat",
        json!(NOW - 200),
    ));
    assert_eq!(e.reason(), "expired");
    assert_eq!(
        e.to_string(),
        format!(
            "claim `exp`: expired at {}, now {NOW} (leeway 30 s)",
            NOW - 100
        )
    );
    let who = e
        .principal
        .expect("signature verified: the principal is known");
    assert_eq!((who.sub.as_str(), who.issuer.as_str()), ("user-1", ISS));
    assert_eq!(who.tenant.as_deref(), Some("t1"));

    let e = fail(&with(claims(), "aud", json!("other-api")));
    assert_eq!(
        e.to_string(),
        format!("claim `aud`: expected to contain {AUD:?}")
    );
    assert!(e.principal.is_some());
    let e = fail(&with(claims(), "iss", json!("https://evil.example")));
    assert_eq!(
        e.to_string(),
        format!("claim `iss`: expected exactly {ISS:?}")
    );
    let e = fail(&with(claims(), "roles", json!(["ok", "not ok"])));
    assert!(
        e.to_string()
            .starts_with("claim `roles`: expected an array of identifiers"),
        "{e}"
    );
    assert_eq!(e.principal.as_ref().map(|p| p.roles.len()), Some(0));
    let e = fail(&with(claims(), "exp", json!("soon")));
    assert_eq!(e.reason(), "invalid_claim");
    assert!(
        e.to_string().contains("`exp`") && e.to_string().contains("NumericDate"),
        "{e}"
    );
    let e = fail(&without(claims(), "iat"));
    assert_eq!(e.to_string(), "claim `iat`: required but missing");
    let e = fail(&with(claims(), "exp", json!(NOW + 7200)));
    assert_eq!(
        e.to_string(),
        "claims `exp` - `iat`: lifetime 7210 s exceeds the maximum 3600 s"
    );

    // No subject, or a bad signature: nobody to name.
    assert_eq!(fail(&without(claims(), "sub")).principal, None);
    let forged = forged_hs(&json!({"alg":"HS256","kid":"hs-1"}), &claims(), b"guess");
    let e = verify(&f.ring, &p, &bearer(&forged), at(NOW)).unwrap_err();
    assert_eq!((e.reason(), e.principal), ("bad_signature", None));
    // A value taken from the token never appears in the text.
    let e = fail(&with(claims(), "aud", json!("SECRET-LOOKING-AUDIENCE")));
    assert!(!e.to_string().contains("SECRET-LOOKING"));
}

// ---- Claim mapping: providers' token shapes, same strictness ----

fn mapped(preset: Preset) -> TokenPolicy {
    TokenPolicy {
        claims: preset.mapping(),
        ..policy()
    }
}

fn base() -> Value {
    json!({"iss": ISS, "sub": "user-1", "iat": NOW - 10, "exp": NOW + 600})
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

#[test]
fn claim_mapping_per_preset() {
    let f = fixture();
    let run = |p: &TokenPolicy, claims: Value| {
        verify(&f.ring, p, &bearer(&f.hs.token(&claims)), at(NOW))
            .map(|i| (i.principal.roles, i.principal.tenant, i.scopes))
            .map_err(|e| e.reason())
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    // Cognito access token: no aud, client_id from the allowed list, token_use access.
    let mut cognito = mapped(Preset::Cognito);
    cognito.claims.allowed_clients = vec!["app-client-1".into()];
    let cog = |extra: Value| merge(base(), extra);
    let access = json!({"client_id": "app-client-1", "token_use": "access", "scope": "openid gatehouse/predict",
        "cognito:groups": ["ai_operator"], "username": "u"});
    assert_eq!(
        run(&cognito, cog(access.clone())),
        Ok((
            s(&["ai_operator"]),
            None,
            s(&["openid", "gatehouse/predict"])
        ))
    );
    assert_eq!(
        run(
            &cognito,
            cog(merge(access.clone(), json!({"token_use": "id"})))
        ),
        Err("wrong_token_type")
    );
    assert_eq!(
        run(&cognito, without(cog(access.clone()), "token_use")),
        Err("missing_claim")
    );
    assert_eq!(
        run(
            &cognito,
            cog(merge(access.clone(), json!({"client_id": "other"})))
        ),
        Err("wrong_audience")
    );
    assert_eq!(
        run(&cognito, without(cog(access.clone()), "client_id")),
        Err("missing_claim")
    );
    assert_eq!(
        run(
            &cognito,
            cog(merge(
                access.clone(),
                json!({"cognito:groups": "ai_operator"})
            ))
        ),
        Err("invalid_claim")
    );
    assert_eq!(
        run(
            &cognito,
            cog(merge(access.clone(), json!({"cognito:groups": ["a,b"]})))
        ),
        Err("invalid_claim")
    );
    // An ID token carries aud = the client id: with our audience it is still refused (token_use).
    assert_eq!(
        run(
            &cognito,
            cog(merge(
                without(access.clone(), "client_id"),
                json!({"aud": AUD, "token_use": "id"})
            ))
        ),
        Err("wrong_token_type")
    );
    // Without an allowed-clients list, a token without aud is refused as before.
    assert_eq!(
        run(&mapped(Preset::Cognito), cog(access)),
        Err("missing_claim")
    );

    // Keycloak: nested realm roles, `typ: Bearer` marks access tokens.
    let kc = mapped(Preset::Keycloak);
    let kct = json!({"aud": AUD, "typ": "Bearer", "azp": "web", "realm_access": {"roles": ["analyst", "offline_access"]}, "scope": "profile email"});
    assert_eq!(
        run(&kc, merge(base(), kct.clone())),
        Ok((
            s(&["analyst", "offline_access"]),
            None,
            s(&["profile", "email"])
        ))
    );
    assert_eq!(
        run(&kc, merge(base(), merge(kct.clone(), json!({"typ": "ID"})))),
        Err("wrong_token_type")
    );
    assert_eq!(
        run(
            &kc,
            merge(
                base(),
                merge(kct.clone(), json!({"realm_access": ["analyst"]}))
            )
        ),
        Err("invalid_claim")
    );
    assert_eq!(
        run(
            &kc,
            merge(
                base(),
                merge(kct.clone(), json!({"realm_access": {"roles": [1]}}))
            )
        ),
        Err("invalid_claim")
    );
    assert_eq!(
        run(
            &kc,
            merge(base(), merge(kct.clone(), json!({"realm_access": {}})))
        ),
        Ok((vec![], None, s(&["profile", "email"])))
    );
    let dup = f.hs.token_raw(&f.hs.header(), &format!(
        r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"u","iat":{},"exp":{},"typ":"Bearer","realm_access":{{"roles":["a"],"roles":["ai_operator"]}}}}"#, NOW, NOW + 60));
    assert_eq!(
        verify(&f.ring, &kc, &bearer(&dup), at(NOW))
            .map(drop)
            .map_err(|e| e.reason()),
        Err("duplicate_key")
    );

    // Entra ID: app roles, tenant id, delegated scopes in a space-separated `scp`.
    let entra = mapped(Preset::Entra);
    let et = json!({"aud": AUD, "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47", "roles": ["ai_operator"], "scp": "Predict.Invoke User.Read", "azp": "c", "ver": "2.0"});
    assert_eq!(
        run(&entra, merge(base(), et.clone())),
        Ok((
            s(&["ai_operator"]),
            Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into()),
            s(&["Predict.Invoke", "User.Read"])
        ))
    );
    assert_eq!(
        run(&entra, merge(base(), merge(et, json!({"scp": ["a"]})))),
        Err("invalid_claim")
    );

    // Okta: `groups`, `scp` as an array, client `cid`.
    let okta = mapped(Preset::Okta);
    let ot = json!({"aud": "api://default", "cid": "0oa1", "groups": ["analyst"], "scp": ["openid", "gatehouse.predict"]});
    let okta_aud = TokenPolicy {
        audience: "api://default".into(),
        ..okta
    };
    assert_eq!(
        run(&okta_aud, merge(base(), ot.clone())),
        Ok((s(&["analyst"]), None, s(&["openid", "gatehouse.predict"])))
    );
    assert_eq!(
        run(
            &okta_aud,
            merge(base(), merge(ot, json!({"scp": "openid"})))
        ),
        Err("invalid_claim")
    );

    // Auth0: roles in a namespaced claim, tenant from Organizations' org_id.
    let auth0 = mapped(Preset::Auth0);
    let at0 = json!({"aud": [AUD, "https://tenant.auth0.com/userinfo"], "azp": "c", "scope": "openid predict",
        "https://gatehouse/roles": ["ai_operator"], "org_id": "org_abc123"});
    assert_eq!(
        run(&auth0, merge(base(), at0)),
        Ok((
            s(&["ai_operator"]),
            Some("org_abc123".into()),
            s(&["openid", "predict"])
        ))
    );

    // Header `typ` (RFC 9068 access tokens), compared with an optional application/ prefix.
    let mut typ = policy();
    typ.claims.required_typ = Some("at+jwt".into());
    let with_typ = |t: &str| {
        f.hs.token_raw(
            &json!({"alg": "HS256", "kid": "hs-1", "typ": t}).to_string(),
            &claims().to_string(),
        )
    };
    let r = |tok: String| {
        verify(&f.ring, &typ, &bearer(&tok), at(NOW))
            .map(drop)
            .map_err(|e| e.reason())
    };
    assert_eq!(r(with_typ("at+jwt")), Ok(()));
    assert_eq!(r(with_typ("application/AT+JWT")), Ok(()));
    assert_eq!(r(with_typ("JWT")), Err("wrong_token_type"));
    assert_eq!(
        r(f.hs.token_raw(
            &json!({"alg": "HS256", "kid": "hs-1"}).to_string(),
            &claims().to_string()
        )),
        Err("wrong_token_type")
    );

    // Required claims: exact string values.
    let mut req = policy();
    req.claims.required_claims = vec![("acr".into(), "mfa".into())];
    let r = |c: Value| {
        verify(&f.ring, &req, &bearer(&f.hs.token(&c)), at(NOW))
            .map(drop)
            .map_err(|e| e.reason())
    };
    assert_eq!(r(with(claims(), "acr", json!("mfa"))), Ok(()));
    assert_eq!(
        r(with(claims(), "acr", json!("pwd"))),
        Err("wrong_claim_value")
    );
    assert_eq!(
        r(with(claims(), "acr", json!(["mfa"]))),
        Err("invalid_claim")
    );
    assert_eq!(r(claims()), Err("missing_claim"));
}

#[test]
fn required_scopes_are_all_needed() {
    let id = Identity {
        principal: Principal {
            issuer: ISS.into(),
            sub: "u".into(),
            roles: vec![],
            tenant: None,
            token_id: "t".into(),
            exp: NOW,
        },
        scopes: vec!["openid".into(), "gatehouse/predict".into()],
    };
    assert_eq!(id.missing_scope(&["gatehouse/predict".into()]), None);
    assert_eq!(
        id.missing_scope(&["gatehouse/predict".into(), "gatehouse/admin".into()]),
        Some("gatehouse/admin")
    );
    assert_eq!(id.missing_scope(&[]), None);
}
