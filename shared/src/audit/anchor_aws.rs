//! AWS adapters of the anchor: digests in S3 (Object Lock bucket), the OCSF export in S3, the
//! signing key in KMS, and the sentinel's read of a predecessor record (DynamoDB `GetItem`).
//!
//! S3 calls: `PutObject` with `If-None-Match: *` (a digest key is written once; a second attempt
//! gets 412 and reads the stored one), `ListObjectsV2` (`StartAfter`, to find the digest covering
//! a seq), `ListObjectVersions` + `GetObject` by version (the verifier reads every version: a
//! digest key can never hold two different payloads unnoticed). KMS: `Sign` (RAW message,
//! ECDSA_SHA_256) and `GetPublicKey` (DER SubjectPublicKeyInfo).
use aws_config::SdkConfig;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;

use super::anchor::StoredDigest;
use super::digest::{
    DigestPublicKey, DigestSigner, DigestStore, PutOutcome, SIGNING_ALGORITHM, SignError,
    SignedDigest, StoreError, object_key, segment_prefix,
};

fn err<E: std::error::Error>(what: &str, e: E) -> StoreError {
    StoreError(format!("{what}: {}", DisplayErrorContext(&e)))
}

/// The digest bucket.
pub struct S3Digests {
    client: aws_sdk_s3::Client,
    bucket: String,
}

/// An S3 client for `sdk`; path-style addressing when an endpoint is configured (the emulator
/// serves every bucket on one host), virtual-hosted style on AWS.
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

impl S3Digests {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    async fn get(&self, key: &str, version: Option<&str>) -> Result<Option<Vec<u8>>, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version.map(str::to_owned))
            .send()
            .await;
        match out {
            Ok(o) => {
                let bytes = o
                    .body
                    .collect()
                    .await
                    .map_err(|e| err("GetObject body", e))?;
                Ok(Some(bytes.into_bytes().to_vec()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(err("GetObject", e)),
        }
    }

    async fn get_digest(&self, key: &str) -> Result<Option<SignedDigest>, StoreError> {
        match self.get(key, None).await? {
            Some(b) => SignedDigest::from_json(&b)
                .map(Some)
                .map_err(|e| StoreError(format!("{key}: {e}"))),
            None => Ok(None),
        }
    }

    /// Keys under `prefix` after `start_after`, in order, at most `max` (None: all).
    async fn keys(
        &self,
        prefix: &str,
        start_after: Option<String>,
        max: Option<i32>,
    ) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_start_after(start_after.clone())
                .set_max_keys(max)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| err("ListObjectsV2", e))?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            token = out.next_continuation_token().map(str::to_owned);
            if token.is_none() || max.is_some() {
                return Ok(keys);
            }
        }
    }

    /// Every version of every digest object (what `audit-verify` checks).
    pub async fn all_versions(&self) -> Result<Vec<StoredDigest>, StoreError> {
        let mut refs = Vec::new();
        let (mut key_marker, mut version_marker) = (None, None);
        loop {
            let out = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(super::digest::DIGEST_PREFIX)
                .set_key_marker(key_marker)
                .set_version_id_marker(version_marker)
                .send()
                .await
                .map_err(|e| err("ListObjectVersions", e))?;
            for v in out.versions() {
                if let Some(k) = v.key() {
                    refs.push((k.to_owned(), v.version_id().map(str::to_owned)));
                }
            }
            if out.is_truncated() != Some(true) {
                break;
            }
            key_marker = out.next_key_marker().map(str::to_owned);
            version_marker = out.next_version_id_marker().map(str::to_owned);
        }
        let mut digests = Vec::with_capacity(refs.len());
        for (key, version) in refs {
            let Some(bytes) = self.get(&key, version.as_deref()).await? else {
                continue;
            };
            match SignedDigest::from_json(&bytes) {
                Ok(digest) => digests.push(StoredDigest { key, digest }),
                // An object that is not a digest cannot anchor anything: report it as such.
                Err(e) => return Err(StoreError(format!("{key}: {e}"))),
            }
        }
        Ok(digests)
    }
}

#[async_trait::async_trait]
impl DigestStore for S3Digests {
    async fn latest(&self, segment: &str) -> Result<Option<SignedDigest>, StoreError> {
        let keys = self.keys(&segment_prefix(segment), None, None).await?;
        match keys.last() {
            Some(k) => self.get_digest(k).await,
            None => Ok(None),
        }
    }

    async fn covering(&self, segment: &str, seq: u64) -> Result<Option<SignedDigest>, StoreError> {
        let start = object_key(segment, seq.saturating_sub(1));
        let keys = self
            .keys(&segment_prefix(segment), Some(start), Some(1))
            .await?;
        match keys.first() {
            Some(k) => self.get_digest(k).await,
            None => Ok(None),
        }
    }

    async fn put_new(&self, digest: &SignedDigest) -> Result<PutOutcome, StoreError> {
        let key = digest.payload.object_key();
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .body(ByteStream::from(digest.to_json()))
            .content_type("application/json")
            .if_none_match("*")
            .send()
            .await;
        match out {
            Ok(_) => Ok(PutOutcome::Created),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
                match self.get_digest(&key).await? {
                    Some(existing) => Ok(PutOutcome::Existing(Box::new(existing))),
                    None => Err(StoreError(format!("{key}: 412 but nothing stored"))),
                }
            }
            Err(e) => Err(err("PutObject", e)),
        }
    }
}

/// The OCSF export bucket.
#[cfg(feature = "audit-sentinel")]
pub struct S3Export {
    client: aws_sdk_s3::Client,
    bucket: String,
}

#[cfg(feature = "audit-sentinel")]
impl S3Export {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }
}

#[cfg(feature = "audit-sentinel")]
#[async_trait::async_trait]
impl super::sentinel::ExportSink for S3Export {
    async fn put(&self, key: &str, gzip_body: Vec<u8>) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(gzip_body))
            .content_type("application/x-ndjson")
            .content_encoding("gzip")
            .send()
            .await
            .map_err(|e| err("PutObject (export)", e))?;
        Ok(())
    }
}

/// The sentinel's signing key in KMS.
pub struct KmsSigner {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl KmsSigner {
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        Self {
            client,
            key_id: key_id.into(),
        }
    }
}

#[async_trait::async_trait]
impl DigestSigner for KmsSigner {
    async fn sign(&self, message: &[u8]) -> Result<(Vec<u8>, String), SignError> {
        use aws_sdk_kms::primitives::Blob;
        use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
        let out = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(message))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::from(SIGNING_ALGORITHM))
            .send()
            .await
            .map_err(|e| SignError(format!("KMS Sign: {}", DisplayErrorContext(&e))))?;
        let sig = out
            .signature()
            .ok_or_else(|| SignError("KMS Sign returned no signature".into()))?;
        Ok((
            sig.as_ref().to_vec(),
            out.key_id().unwrap_or(&self.key_id).to_owned(),
        ))
    }
}

/// The public half of the sentinel's key (`kms:GetPublicKey`), checked to be an ECDSA P-256
/// signing key.
pub async fn kms_public_key(
    client: &aws_sdk_kms::Client,
    key_id: &str,
) -> Result<DigestPublicKey, StoreError> {
    let out = client
        .get_public_key()
        .key_id(key_id)
        .send()
        .await
        .map_err(|e| err("KMS GetPublicKey", e))?;
    let der = out
        .public_key()
        .ok_or_else(|| StoreError("KMS GetPublicKey returned no key".into()))?;
    DigestPublicKey::from_spki_der(der.as_ref()).map_err(|e| StoreError(e.to_string()))
}

/// The sentinel's read of a predecessor record (`GetItem`, strongly consistent).
#[cfg(feature = "audit-sentinel")]
pub struct DynamoLookup {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

#[cfg(feature = "audit-sentinel")]
impl DynamoLookup {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[cfg(feature = "audit-sentinel")]
#[async_trait::async_trait]
impl super::sentinel::RecordLookup for DynamoLookup {
    async fn get(
        &self,
        segment: &str,
        seq: u64,
    ) -> Result<Option<super::record::Fields>, StoreError> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("segment", AttributeValue::S(segment.to_owned()))
            .key("seq", AttributeValue::N(seq.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| {
                StoreError(format!(
                    "GetItem: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(&e)
                ))
            })?;
        Ok(out.item().map(super::dynamo::from_item))
    }
}
