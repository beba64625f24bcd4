//! Dev signing keys and tokens. On first use an ES256 key pair is generated into
//! `.local/dev-keys/private-jwks.json` (git-ignored, never committed); its public half is what the
//! dev stack stores in the emulated JWKS secret. Any JOSE tool can sign with the private JWKS.
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use aws_lc_rs::encoding::AsBigEndian;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::paths;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevKey {
    pub kid: String,
    pub kty: String,
    pub crv: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub x: String,
    pub y: String,
    pub d: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Jwks {
    keys: Vec<DevKey>,
}

impl DevKey {
    pub fn generate(kid: &str) -> Result<Self> {
        let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| anyhow!("EC keygen failed"))?;
        let public = kp.public_key().as_ref();
        // Uncompressed SEC1 point: 0x04 || x (32) || y (32).
        let (x, y) = public
            .get(1..65)
            .map(|p| p.split_at(32))
            .ok_or_else(|| anyhow!("unexpected EC point"))?;
        let d = kp
            .private_key()
            .as_be_bytes()
            .map_err(|_| anyhow!("EC private key export failed"))?;
        Ok(Self {
            kid: kid.to_owned(),
            kty: "EC".into(),
            crv: "P-256".into(),
            alg: "ES256".into(),
            use_: "sig".into(),
            x: B64.encode(x),
            y: B64.encode(y),
            d: B64.encode(d.as_ref()),
        })
    }

    /// The public JWK (no `d`).
    pub fn public_jwk(&self) -> serde_json::Value {
        json!({"kid": self.kid, "kty": self.kty, "crv": self.crv, "alg": self.alg, "use": self.use_, "x": self.x, "y": self.y})
    }

    fn encoding_key(&self) -> Result<jsonwebtoken::EncodingKey> {
        let d = B64.decode(&self.d)?;
        let mut point = vec![4u8];
        point.extend(B64.decode(&self.x)?);
        point.extend(B64.decode(&self.y)?);
        let kp = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &d,
            &point,
        )
        .map_err(|e| anyhow!("dev key rejected: {e}"))?;
        // jsonwebtoken's aws-lc backend wants PKCS#8.
        let der = kp
            .to_pkcs8v1()
            .map_err(|_| anyhow!("EC key export failed"))?;
        Ok(jsonwebtoken::EncodingKey::from_ec_der(der.as_ref()))
    }

    pub fn sign(&self, claims: &serde_json::Value) -> Result<String> {
        self.sign_with(claims, None, None)
    }

    /// Signs with header `kid` (default: this key's) and `typ` (default: `JWT`) as given, so a
    /// test can name a kid the ring does not hold or mark an RFC 9068 access token (`at+jwt`).
    pub fn sign_with(
        &self,
        claims: &serde_json::Value,
        kid: Option<&str>,
        typ: Option<&str>,
    ) -> Result<String> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(kid.unwrap_or(&self.kid).to_owned());
        if let Some(t) = typ {
            header.typ = Some(t.to_owned());
        }
        jsonwebtoken::encode(&header, claims, &self.encoding_key()?).context("signing the token")
    }
}

/// Loads the dev key, generating and saving it on first use.
pub fn ensure_dev_key() -> Result<DevKey> {
    let dir = paths::dev_keys_dir();
    let private = dir.join("private-jwks.json");
    if private.exists() {
        return load(&private);
    }
    std::fs::create_dir_all(&dir)?;
    let key = DevKey::generate(&format!(
        "dev-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ))?;
    std::fs::write(
        &private,
        serde_json::to_string_pretty(&Jwks {
            keys: vec![key.clone()],
        })?,
    )?;
    restrict(&private)?;
    std::fs::write(dir.join("public-jwks.json"), public_jwks(&key))?;
    eprintln!(
        "==> generated dev signing key {} at {}",
        key.kid,
        private.display()
    );
    Ok(key)
}

fn restrict(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

pub fn load(path: &Path) -> Result<DevKey> {
    let jwks: Jwks = serde_json::from_str(&std::fs::read_to_string(path)?)
        .with_context(|| format!("{} is not a private JWKS", path.display()))?;
    jwks.keys
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("{} holds no key", path.display()))
}

pub fn public_jwks(key: &DevKey) -> String {
    json!({"keys": [key.public_jwk()]}).to_string()
}

/// The token spec lives with the claim shapes it fills (`crate::presets`).
pub use crate::presets::TokenSpec;

/// A token signed with the dev key (generated on first use), carrying the issuer and audience
/// of the local stack (`crate::oidc::dev_token_claims`).
pub fn mint_dev_token(
    sub: &str,
    roles: &[&str],
    tenant: Option<&str>,
    ttl_secs: u64,
) -> Result<String> {
    let key = ensure_dev_key()?;
    let (issuer, audience) = crate::oidc::dev_token_claims()?;
    mint(
        &key,
        &TokenSpec::new(sub, roles, tenant, ttl_secs, issuer, audience),
    )
}

/// Signs the payload `crate::presets::claims_for` builds from `spec`.
pub fn mint(key: &DevKey, spec: &TokenSpec) -> Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = crate::presets::claims_for(spec, now)?;
    key.sign_with(&claims, spec.kid.as_deref(), spec.typ.as_deref())
}
