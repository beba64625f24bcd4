//! Audit record fields, their canonical serialization, and the hash / HMAC over it.
//!
//! A record is a flat map of attribute name → `Field` (string, non-negative integer, or list of
//! strings), stored 1:1 as DynamoDB S / N / L attributes. The canonical form is compact JSON with
//! keys sorted bytewise (BTreeMap order, written by hand so no serde feature can reorder it),
//! strings JSON-escaped, integers in plain decimal: the writer computes it from the map it sends
//! and the verifier from the map it reads back, so both see the same bytes. Only integers are
//! stored as numbers because DynamoDB normalises number text (`1.50` → `1.5`).
use std::collections::BTreeMap;
use std::io::Write as _;

use aws_lc_rs::{digest, hmac};

/// The attribute that holds the HMAC; excluded from the canonical form.
pub const HMAC_ATTR: &str = "hmac";
/// `prev_hash` of a segment's first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    S(String),
    N(u64),
    L(Vec<String>),
}

/// A record: attribute name → value, in bytewise name order. Names are `Cow` so the writer's
/// (all static strings) are borrowed, not allocated, on every request; a record read back from
/// DynamoDB owns its names.
pub type Fields = BTreeMap<std::borrow::Cow<'static, str>, Field>;

/// The string attribute `k` of a record; `None` when absent or of another type.
pub fn string<'a>(f: &'a Fields, k: &str) -> Option<&'a str> {
    match f.get(k) {
        Some(Field::S(v)) => Some(v),
        _ => None,
    }
}

/// The integer attribute `k` of a record; `None` when absent or of another type.
pub fn number(f: &Fields, k: &str) -> Option<u64> {
    match f.get(k) {
        Some(Field::N(v)) => Some(*v),
        _ => None,
    }
}

/// `s` as a JSON string, escaped exactly as serde_json escapes it (records already stored were
/// canonicalised that way, and a proptest holds the two equal): `"` and `\\` with a backslash;
/// backspace, form feed, LF, CR and tab as `\\b \\f \\n \\r \\t`; other C0 controls as `\\u00xx`
/// (lowercase hex); everything else, DEL and non-ASCII included, as is (RFC 8259 §7). Runs
/// without escapes are copied whole: serde_json's generic writer, compiled here for size, costs
/// about 26 instructions a byte.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ],
            _ => continue,
        };
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        out.extend_from_slice(escaped);
        start = i + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

/// Sorted-key compact JSON of every field but the HMAC.
pub fn canonical(fields: &Fields) -> String {
    let mut out = Vec::with_capacity(1024);
    out.push(b'{');
    let mut first = true;
    for (k, v) in fields.iter().filter(|(k, _)| *k != HMAC_ATTR) {
        if !first {
            out.push(b',');
        }
        first = false;
        push_json_str(&mut out, k);
        out.push(b':');
        match v {
            Field::S(s) => push_json_str(&mut out, s),
            // Plain decimal, written in place (no String per number).
            Field::N(n) => {
                let _ = write!(out, "{n}");
            }
            Field::L(items) => {
                out.push(b'[');
                for (i, s) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    push_json_str(&mut out, s);
                }
                out.push(b']');
            }
        }
    }
    out.push(b'}');
    // Every piece is JSON text, so the bytes are UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// SHA-256 of the canonical form, hex: what the next record's `prev_hash` holds.
pub fn record_hash(fields: &Fields) -> String {
    sha256_hex(canonical(fields).as_bytes())
}

pub fn sha256_hex(data: &[u8]) -> String {
    lower_hex(digest::digest(&digest::SHA256, data).as_ref())
}

/// Lowercase hex, as `hex::encode` writes it, through `hex::encode_to_slice` (one table
/// lookup per byte into a buffer of the right size; `hex::encode` collects a `String` one char
/// at a time). Four digests and tags per record go through here.
fn lower_hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    match hex::encode_to_slice(bytes, &mut out).map(|()| String::from_utf8(out)) {
        Ok(Ok(s)) => s,
        // Unreachable (the buffer has the right size, hex digits are ASCII): the slow path.
        _ => hex::encode(bytes),
    }
}

/// Shortest HMAC key accepted: 32 bytes, the output size of SHA-256 (RFC 2104 §3: "less than L
/// bytes is strongly discouraged"). The template generates 64 characters.
pub const MIN_KEY_BYTES: usize = 32;

/// A key for unit tests (never deployed: the deployed key comes from Secrets Manager).
#[cfg(test)]
pub(crate) const TEST_KEY: &[u8] = b"unit-test-audit-key-0123456789abcdef";

/// The key was refused (it would make the seal guessable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the audit HMAC key has {len} bytes; at least {MIN_KEY_BYTES} are required")]
pub struct KeyTooShort {
    pub len: usize,
}

/// The chain's HMAC-SHA256 key. Debug prints only its id; the key bytes are not kept elsewhere.
pub struct AuditKey {
    key: hmac::Key,
    id: String,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey({})", self.id)
    }
}

impl AuditKey {
    /// The key from the secret's bytes; `Err` under [`MIN_KEY_BYTES`] (the functions refuse to
    /// start, the verifier refuses the version).
    pub fn new(secret: &[u8]) -> Result<Self, KeyTooShort> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(KeyTooShort { len: secret.len() });
        }
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        // A public fingerprint (an HMAC of a constant, not a hash of the key) names the key in
        // each record, so the verifier picks the right version after a rotation.
        let id = hex::encode(&hmac::sign(&key, b"gatehouse-audit-key-id").as_ref()[..8]);
        Ok(Self { key, id })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn sign(&self, fields: &Fields) -> String {
        self.sign_canonical(&canonical(fields))
    }

    /// The HMAC of an already computed `canonical(fields)` (the writer computes it once for
    /// the HMAC and the chain hash).
    pub fn sign_canonical(&self, canonical: &str) -> String {
        lower_hex(hmac::sign(&self.key, canonical.as_bytes()).as_ref())
    }

    /// Constant-time check of a record's HMAC.
    pub fn verify(&self, fields: &Fields) -> bool {
        let Some(Field::S(tag)) = fields.get(HMAC_ATTR) else {
            return false;
        };
        let Ok(tag) = hex::decode(tag) else {
            return false;
        };
        hmac::verify(&self.key, canonical(fields).as_bytes(), &tag).is_ok()
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm),
/// so records carry readable UTC dates without a date crate.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `YYYY-MM-DD` of a Unix time in milliseconds.
pub fn day_of(ts_ms: u64) -> String {
    let (y, m, d) = civil_from_days((ts_ms / 86_400_000) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(ts_ms: u64) -> String {
    let secs = ts_ms / 1000;
    let sod = secs % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        day_of(ts_ms),
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        ts_ms % 1000
    )
}

/// Sort key of the query indexes: fixed-width time, then the request id (unique per request).
pub fn ts_rid(ts_ms: u64, request_id: &str) -> String {
    format!("{ts_ms:013}#{request_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        let mut f = Fields::new();
        f.insert("z".into(), Field::S("last \"quoted\"\n".into()));
        f.insert("a".into(), Field::N(7));
        f.insert("m".into(), Field::L(vec!["x".into(), "y".into()]));
        f
    }

    proptest::proptest! {
        // The canonical form's strings are byte for byte what serde_json writes, so records
        // stored before this escaper (and any other serde_json-built copy) still verify.
        #[test]
        fn json_strings_are_escaped_as_serde_json_escapes_them(
            s in "(\\PC|[\\x00-\\x1f\\x7f\"\\\\]|\u{2028}|\u{fffd}){0,40}"
        ) {
            let mut ours = Vec::new();
            push_json_str(&mut ours, &s);
            proptest::prop_assert_eq!(ours, serde_json::to_vec(&s).unwrap_or_default());
        }
    }

    #[test]
    fn json_string_escapes_by_hand() {
        let mut out = Vec::new();
        push_json_str(&mut out, "a\"b\\c\u{8}\u{c}\n\r\t\u{1}\u{1f}\u{7f}é");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "\"a\\\"b\\\\c\\b\\f\\n\\r\\t\\u0001\\u001f\u{7f}é\""
        );
    }

    #[test]
    fn lower_hex_is_hex_encode() {
        for bytes in [&[][..], &[0x00, 0x0f, 0xa0, 0xff], b"gatehouse"] {
            assert_eq!(lower_hex(bytes), hex::encode(bytes));
        }
        // SHA-256 of "abc" (FIPS 180-2 appendix B.1).
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn canonical_is_sorted_and_excludes_the_hmac() {
        let mut f = fields();
        assert_eq!(
            canonical(&f),
            r#"{"a":7,"m":["x","y"],"z":"last \"quoted\"\n"}"#
        );
        f.insert(HMAC_ATTR.into(), Field::S("ff".into()));
        assert_eq!(
            canonical(&f),
            r#"{"a":7,"m":["x","y"],"z":"last \"quoted\"\n"}"#
        );
        // A string "7" and a number 7 must not canonicalise alike.
        let mut g = fields();
        g.insert("a".into(), Field::S("7".into()));
        assert_ne!(canonical(&g), canonical(&fields()));
    }

    const K1: &[u8] = b"k1-0123456789abcdef0123456789abcdef";
    const K2: &[u8] = b"k2-0123456789abcdef0123456789abcdef";

    #[test]
    fn hmac_detects_any_change_and_a_wrong_key() {
        let key = AuditKey::new(K1).unwrap();
        let mut f = fields();
        f.insert(HMAC_ATTR.into(), Field::S(key.sign(&f)));
        assert!(key.verify(&f));
        assert!(!AuditKey::new(K2).unwrap().verify(&f));
        assert_ne!(key.id(), AuditKey::new(K2).unwrap().id());
        f.insert("a".into(), Field::N(8));
        assert!(!key.verify(&f));
        assert!(!format!("{key:?}").contains("k1-"));
    }

    #[test]
    fn keys_under_32_bytes_are_refused() {
        assert_eq!(
            AuditKey::new(&[7u8; 31]).unwrap_err(),
            KeyTooShort { len: 31 }
        );
        assert!(AuditKey::new(b"").is_err());
        assert!(AuditKey::new(&[7u8; 32]).is_ok());
    }

    #[test]
    fn dates() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_796_371_199_000), "2026-12-04T07:59:59.000Z");
        assert_eq!(ts_rid(5, "r"), "0000000000005#r");
    }
}
