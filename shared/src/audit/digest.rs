//! Signed digests of chain-segment heads: the audit log's anchor outside the writers' reach
//! (the model is CloudTrail log-file integrity validation).
//!
//! `audit-sentinel` writes one digest per segment per stream batch it verified. A digest lists
//! the records it anchors — `(seq, SHA-256 of the record's canonical form, expires_at)` for each
//! — the segment's head (`last_seq`, `last_record_hash`) and the hash of the segment's previous
//! digest, so a segment's digests form a chain of their own. It is signed with a KMS asymmetric
//! key (ECC_NIST_P256, ECDSA_SHA_256) that only the sentinel may use, and stored in an S3 bucket
//! with Object Lock in COMPLIANCE mode under `digests/<segment>/<last_seq, 20 digits>.json`.
//!
//! Anyone with the public key (`kms:GetPublicKey`, or the PEM it gives) can then check the table:
//! a record rewritten and re-sealed with the real HMAC key no longer has its anchored hash. No
//! HMAC key is needed, and holding one does not help a forger.
//!
//! Byte formats (stable; a verifier in another language needs only these):
//! - The signed payload is the [`DigestPayload`] as compact JSON with its keys sorted (it holds
//!   only strings, non-negative integers, arrays and objects, so this is its RFC 8785 form).
//! - KMS signs the 32-byte SHA-256 of those bytes as a RAW message (`MessageType=RAW`,
//!   `SigningAlgorithm=ECDSA_SHA_256`): the signature is an ASN.1 DER ECDSA P-256 signature over
//!   SHA-256(SHA-256(payload)). (Signing the digest as the message keeps every payload, however
//!   many records it lists, inside KMS's 4096-byte RAW limit.)
//! - The digest's own hash (the next digest's `prev_digest_hash`) is SHA-256 of the payload bytes.
use serde::{Deserialize, Serialize};

use super::record::{GENESIS_HASH, sha256_hex};

/// Format version of the payload.
pub const DIGEST_VERSION: u64 = 1;
/// Key prefix of the digest objects in the digest bucket.
pub const DIGEST_PREFIX: &str = "digests/";
/// The one signing algorithm (KMS `SigningAlgorithm`).
pub const SIGNING_ALGORITHM: &str = "ECDSA_SHA_256";
/// `prev_digest_hash` of a segment's first digest.
pub const GENESIS_DIGEST: &str = GENESIS_HASH;

/// One anchored record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchoredRecord {
    pub seq: u64,
    /// SHA-256 (hex) of the record's canonical form (`record::record_hash`).
    pub hash: String,
    /// The record's request id: tells an inserted or moved record from a modified one.
    pub request_id: String,
    /// The record's TTL (`expires_at`, Unix seconds), so a verifier can tell a record TTL
    /// removed from one that was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// What the sentinel signs: the head of one segment and the records since its previous digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestPayload {
    pub version: u64,
    pub segment: String,
    /// First and last seq this digest anchors (`records` lists them, in seq order).
    pub first_seq: u64,
    pub last_seq: u64,
    pub last_record_hash: String,
    pub records: Vec<AnchoredRecord>,
    /// SHA-256 of the segment's previous digest payload ([`GENESIS_DIGEST`] for the first).
    pub prev_digest_hash: String,
    /// Time of the last record (`ts_ms` of `last_seq`), for humans and retention reasoning.
    pub last_ts_ms: u64,
}

impl DigestPayload {
    /// The signed bytes: compact JSON, keys sorted.
    pub fn canonical(&self) -> Vec<u8> {
        // Only strings and integers inside, so serialization cannot fail; an empty body (which
        // no signature verifies) is the fallback rather than a panic.
        serde_json::to_value(self)
            .map(sorted)
            .and_then(|v| serde_json::to_vec(&v))
            .unwrap_or_default()
    }

    /// SHA-256 (hex) of the signed bytes: the next digest's `prev_digest_hash`.
    pub fn hash(&self) -> String {
        sha256_hex(&self.canonical())
    }

    /// The 32 bytes KMS signs (see the module docs).
    pub fn message(&self) -> Vec<u8> {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.canonical())
            .as_ref()
            .to_vec()
    }

    /// The S3 key of this digest.
    pub fn object_key(&self) -> String {
        object_key(&self.segment, self.last_seq)
    }

    /// The anchored hash of `seq`, if this digest lists it.
    pub fn hash_of(&self, seq: u64) -> Option<&str> {
        self.records
            .binary_search_by_key(&seq, |r| r.seq)
            .ok()
            .and_then(|i| self.records.get(i))
            .map(|r| r.hash.as_str())
    }

    /// Structural checks a well-formed digest passes (signature aside).
    pub fn check_shape(&self) -> Result<(), DigestError> {
        let bad = |why: &str| Err(DigestError::Malformed(why.to_owned()));
        if self.version != DIGEST_VERSION {
            return bad("unknown version");
        }
        let Some(last) = self.records.last() else {
            return bad("no records");
        };
        if self.records.first().map(|r| r.seq) != Some(self.first_seq)
            || last.seq != self.last_seq
            || last.hash != self.last_record_hash
        {
            return bad("first_seq/last_seq/last_record_hash disagree with records");
        }
        if self.records.windows(2).any(|w| w[0].seq >= w[1].seq) {
            return bad("records not in strictly increasing seq order");
        }
        if !is_hex64(&self.prev_digest_hash) || self.records.iter().any(|r| !is_hex64(&r.hash)) {
            return bad("hashes must be 64 lower-case hex digits");
        }
        Ok(())
    }
}

/// `v` with every object's keys in sorted order, whether or not serde_json preserves insertion
/// order (a dependency may turn its `preserve_order` feature on for the whole build).
fn sorted(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// `digests/<segment>/<last_seq, 20 digits>.json`: lexicographic order is seq order, so
/// `ListObjectsV2` with `StartAfter` finds the digest covering a seq in one call.
pub fn object_key(segment: &str, last_seq: u64) -> String {
    format!("{DIGEST_PREFIX}{segment}/{last_seq:020}.json")
}

/// The prefix of one segment's digests.
pub fn segment_prefix(segment: &str) -> String {
    format!("{DIGEST_PREFIX}{segment}/")
}

pub fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A digest as stored: the payload, its signature and what signed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedDigest {
    pub payload: DigestPayload,
    /// Base64 (standard) of the DER ECDSA signature KMS returned.
    pub signature: String,
    pub signing_algorithm: String,
    /// The KMS key that signed (its ARN, as KMS reports it).
    pub key_id: String,
}

impl SignedDigest {
    /// The object body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, DigestError> {
        serde_json::from_slice(bytes).map_err(|e| DigestError::Malformed(e.to_string()))
    }

    /// Signature and shape, against the sentinel's public key.
    pub fn verify(&self, key: &DigestPublicKey) -> Result<(), DigestError> {
        self.payload.check_shape()?;
        if self.signing_algorithm != SIGNING_ALGORITHM {
            return Err(DigestError::Malformed(format!(
                "signing algorithm {:?}",
                self.signing_algorithm
            )));
        }
        use base64::Engine;
        let sig = base64::engine::general_purpose::STANDARD
            .decode(&self.signature)
            .map_err(|_| DigestError::BadSignature)?;
        key.verify(&self.payload.message(), &sig)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("malformed digest: {0}")]
    Malformed(String),
    #[error("the digest signature does not verify")]
    BadSignature,
    #[error("not an ECDSA P-256 public key (DER SubjectPublicKeyInfo expected)")]
    BadPublicKey,
}

/// The sentinel's public key: KMS `GetPublicKey`'s DER SubjectPublicKeyInfo (RFC 5480), P-256.
#[derive(Clone)]
pub struct DigestPublicKey {
    /// The uncompressed SEC1 point (04 || X || Y) taken from the SPKI.
    point: Vec<u8>,
}

impl std::fmt::Debug for DigestPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DigestPublicKey({})", &hex::encode(&self.point)[..16])
    }
}

/// DER prefix of a P-256 SubjectPublicKeyInfo with an uncompressed point: SEQUENCE { SEQUENCE {
/// id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) 04 ... } (RFC 5480 §2).
const P256_SPKI_PREFIX: [u8; 27] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
];

impl DigestPublicKey {
    /// From DER SubjectPublicKeyInfo bytes (what KMS `GetPublicKey` returns).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, DigestError> {
        if der.len() != P256_SPKI_PREFIX.len() + 64 || !der.starts_with(&P256_SPKI_PREFIX) {
            return Err(DigestError::BadPublicKey);
        }
        let point = der[P256_SPKI_PREFIX.len() - 1..].to_vec();
        Ok(Self { point })
    }

    /// From a PEM `PUBLIC KEY` block (the same SPKI, base64 between the armour lines).
    pub fn from_pem(pem: &str) -> Result<Self, DigestError> {
        use base64::Engine;
        let body: String = pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| DigestError::BadPublicKey)?;
        Self::from_spki_der(&der)
    }

    /// The same key as DER SPKI.
    pub fn to_spki_der(&self) -> Vec<u8> {
        let mut der = P256_SPKI_PREFIX[..P256_SPKI_PREFIX.len() - 1].to_vec();
        der.extend_from_slice(&self.point);
        der
    }

    /// Checks an ASN.1 DER ECDSA P-256 signature over SHA-256(`message`).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), DigestError> {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(message, signature)
            .map_err(|_| DigestError::BadSignature)
    }
}

/// Signs digest messages: KMS in the sentinel, a local key pair in tests.
#[async_trait::async_trait]
pub trait DigestSigner: Send + Sync {
    /// The DER ECDSA P-256 signature over SHA-256(`message`), and the id of the key that made it
    /// (KMS reports the key ARN).
    async fn sign(&self, message: &[u8]) -> Result<(Vec<u8>, String), SignError>;
}

#[derive(Debug, thiserror::Error)]
#[error("signing failed: {0}")]
pub struct SignError(pub String);

/// A storage or service call of the anchor failed (S3, KMS, DynamoDB): retry later.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// What `DigestStore::put_new` found.
#[derive(Debug)]
pub enum PutOutcome {
    Created,
    /// The key already holds a digest (a retried batch, or a conflict if it differs).
    Existing(Box<SignedDigest>),
}

/// Where digests live: S3 with Object Lock (`anchor_aws::S3Digests`), or memory in tests.
#[async_trait::async_trait]
pub trait DigestStore: Send + Sync {
    /// The segment's digest with the highest `last_seq`.
    async fn latest(&self, segment: &str) -> Result<Option<SignedDigest>, StoreError>;
    /// The segment's first digest whose `last_seq` is at least `seq` (the one that anchors it,
    /// if any does).
    async fn covering(&self, segment: &str, seq: u64) -> Result<Option<SignedDigest>, StoreError>;
    /// Stores a digest under its key unless the key exists (never a second version).
    async fn put_new(&self, digest: &SignedDigest) -> Result<PutOutcome, StoreError>;
}

/// Digests in memory, for unit tests.
#[derive(Default)]
pub struct MemoryDigests {
    pub objects: std::sync::Mutex<std::collections::BTreeMap<String, SignedDigest>>,
}

impl MemoryDigests {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, SignedDigest>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl DigestStore for MemoryDigests {
    async fn latest(&self, segment: &str) -> Result<Option<SignedDigest>, StoreError> {
        let prefix = segment_prefix(segment);
        Ok(self
            .lock()
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .last()
            .map(|(_, d)| d.clone()))
    }

    async fn covering(&self, segment: &str, seq: u64) -> Result<Option<SignedDigest>, StoreError> {
        let prefix = segment_prefix(segment);
        Ok(self
            .lock()
            .range(object_key(segment, seq)..)
            .next()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, d)| d.clone()))
    }

    async fn put_new(&self, digest: &SignedDigest) -> Result<PutOutcome, StoreError> {
        let mut objects = self.lock();
        let key = digest.payload.object_key();
        if let Some(existing) = objects.get(&key) {
            return Ok(PutOutcome::Existing(Box::new(existing.clone())));
        }
        objects.insert(key, digest.clone());
        Ok(PutOutcome::Created)
    }
}

#[async_trait::async_trait]
impl<T: DigestStore> DigestStore for std::sync::Arc<T> {
    async fn latest(&self, segment: &str) -> Result<Option<SignedDigest>, StoreError> {
        (**self).latest(segment).await
    }
    async fn covering(&self, segment: &str, seq: u64) -> Result<Option<SignedDigest>, StoreError> {
        (**self).covering(segment, seq).await
    }
    async fn put_new(&self, digest: &SignedDigest) -> Result<PutOutcome, StoreError> {
        (**self).put_new(digest).await
    }
}

/// Signs a payload into a stored digest.
pub async fn sign(
    payload: DigestPayload,
    signer: &dyn DigestSigner,
) -> Result<SignedDigest, SignError> {
    let (sig, key_id) = signer.sign(&payload.message()).await?;
    use base64::Engine;
    Ok(SignedDigest {
        payload,
        signature: base64::engine::general_purpose::STANDARD.encode(sig),
        signing_algorithm: SIGNING_ALGORITHM.to_owned(),
        key_id,
    })
}

/// An in-process P-256 key pair: the sentinel's signer in unit tests and benchmarks.
pub struct LocalSigner {
    pair: aws_lc_rs::signature::EcdsaKeyPair,
}

impl LocalSigner {
    pub fn generate() -> Result<Self, SignError> {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
            .map_err(|_| SignError("key generation".into()))?;
        Ok(Self { pair })
    }

    pub fn public_key(&self) -> Result<DigestPublicKey, DigestError> {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::KeyPair;
        let der = self
            .pair
            .public_key()
            .as_der()
            .map_err(|_| DigestError::BadPublicKey)?;
        DigestPublicKey::from_spki_der(der.as_ref())
    }
}

#[async_trait::async_trait]
impl DigestSigner for LocalSigner {
    async fn sign(&self, message: &[u8]) -> Result<(Vec<u8>, String), SignError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sig = self
            .pair
            .sign(&rng, message)
            .map_err(|_| SignError("signing".into()))?;
        Ok((sig.as_ref().to_vec(), "local-test-key".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> DigestPayload {
        let h = |c: char| c.to_string().repeat(64);
        DigestPayload {
            version: DIGEST_VERSION,
            segment: "seg".into(),
            first_seq: 3,
            last_seq: 4,
            last_record_hash: h('b'),
            records: vec![
                AnchoredRecord {
                    seq: 3,
                    hash: h('a'),
                    request_id: "r3".into(),
                    expires_at: Some(10),
                },
                AnchoredRecord {
                    seq: 4,
                    hash: h('b'),
                    request_id: "r4".into(),
                    expires_at: None,
                },
            ],
            prev_digest_hash: GENESIS_DIGEST.into(),
            last_ts_ms: 7,
        }
    }

    #[test]
    fn canonical_form_has_sorted_keys_and_is_stable() {
        let p = payload();
        let text = String::from_utf8(p.canonical()).unwrap();
        assert!(
            text.starts_with(r#"{"first_seq":3,"last_record_hash":"bbbb"#),
            "{text}"
        );
        assert!(text.contains(r#"{"expires_at":10,"hash":"aaaa"#), "{text}");
        assert!(text.ends_with(r#""segment":"seg","version":1}"#), "{text}");
        assert!(!text.contains(' '));
        let back: DigestPayload = serde_json::from_slice(&p.canonical()).unwrap();
        assert_eq!(back.canonical(), p.canonical());
        assert_eq!(p.object_key(), "digests/seg/00000000000000000004.json");
        assert_eq!(p.hash_of(3), Some(&*"a".repeat(64)));
        assert_eq!(p.hash_of(5), None);
    }

    #[tokio::test]
    async fn a_signed_digest_verifies_and_any_change_breaks_it() {
        let signer = LocalSigner::generate().unwrap();
        let key = signer.public_key().unwrap();
        let d = sign(payload(), &signer).await.unwrap();
        d.verify(&key).unwrap();
        let round = SignedDigest::from_json(&d.to_json()).unwrap();
        round.verify(&key).unwrap();
        let mut changed = d.clone();
        changed.payload.records[0].hash = "c".repeat(64);
        assert_eq!(changed.verify(&key), Err(DigestError::BadSignature));
        let mut extended = d.clone();
        extended.payload.last_ts_ms += 1;
        assert_eq!(extended.verify(&key), Err(DigestError::BadSignature));
        let other = LocalSigner::generate().unwrap().public_key().unwrap();
        assert_eq!(d.verify(&other), Err(DigestError::BadSignature));
        // The SPKI round trip is exact.
        assert_eq!(
            DigestPublicKey::from_spki_der(&key.to_spki_der())
                .unwrap()
                .to_spki_der(),
            key.to_spki_der()
        );
    }

    #[test]
    fn malformed_digests_and_keys_are_refused() {
        let mut p = payload();
        p.last_record_hash = "d".repeat(64);
        assert!(matches!(p.check_shape(), Err(DigestError::Malformed(_))));
        let mut p = payload();
        p.records.swap(0, 1);
        assert!(p.check_shape().is_err());
        let mut p = payload();
        p.prev_digest_hash = "XYZ".into();
        assert!(p.check_shape().is_err());
        assert!(SignedDigest::from_json(b"{\"payload\":1}").is_err());
        assert_eq!(
            DigestPublicKey::from_spki_der(&[0x30, 0x59]).unwrap_err(),
            DigestError::BadPublicKey
        );
    }
}
