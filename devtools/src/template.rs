//! Reads `infra/template.yaml` so the local stack is built from the same definitions as the
//! deployed one: tables, secrets, routes, the authorizer's identity sources and TTL, and each
//! function's environment. Locally, a resource's name is its logical id.
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde_norway::Value;

pub struct Template {
    root: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyElement {
    pub name: String,
    pub key_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDef {
    pub name: String,
    pub keys: Vec<KeyElement>,
    pub projection: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    pub logical_id: String,
    pub attributes: Vec<(String, String)>,
    pub keys: Vec<KeyElement>,
    pub indexes: Vec<IndexDef>,
    pub ttl_attribute: Option<String>,
    /// `StreamSpecification.StreamViewType`, when the table has a stream.
    pub stream_view_type: Option<String>,
}

/// An S3 bucket of the template. Locally its name is its logical id in lower case (bucket names
/// allow no capitals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketDef {
    pub logical_id: String,
    pub name: String,
    pub versioned: bool,
    /// Object Lock default retention: (mode, days), days resolved from its parameter's default.
    pub object_lock: Option<(String, u32)>,
}

/// A KMS key of the template. Locally it is reached through the alias `alias/<logical id>`
/// (KMS assigns key ids at creation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsKeyDef {
    pub logical_id: String,
    pub alias: String,
    pub key_spec: String,
    pub key_usage: String,
}

/// The local name of a bucket resource.
pub fn bucket_name(logical_id: &str) -> String {
    logical_id.to_ascii_lowercase()
}

/// The local alias of a KMS key resource.
pub fn key_alias(logical_id: &str) -> String {
    format!("alias/{logical_id}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretInit {
    Value(String),
    Generate { length: u32 },
}

/// A DynamoDB stream event source mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConsumerDef {
    pub function: String,
    pub binary: String,
    pub table: String,
    pub batch_size: u64,
    pub batching_window_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDef {
    pub logical_id: String,
    pub init: SecretInit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDef {
    pub method: String,
    pub path: String,
    pub function: String,
    pub binary: String,
}

impl RouteDef {
    pub fn route_key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizerDef {
    pub function: String,
    pub binary: String,
    pub headers: Vec<String>,
    pub context: Vec<String>,
    pub ttl_secs: u64,
}

fn s(v: &Value) -> Option<&str> {
    v.as_str()
}

fn list<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key)
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
}

fn key_elements(v: &Value) -> Vec<KeyElement> {
    list(v, "KeySchema")
        .filter_map(|k| {
            Some(KeyElement {
                name: s(k.get("AttributeName")?)?.to_owned(),
                key_type: s(k.get("KeyType")?)?.to_owned(),
            })
        })
        .collect()
}

impl Template {
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self> {
        let root: Value =
            serde_norway::from_str(text).context("template.yaml is not valid YAML")?;
        Ok(Self { root })
    }

    fn resources(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.root
            .get("Resources")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str()?, v)))
    }

    fn of_type<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        self.resources()
            .filter(move |(_, r)| r.get("Type").and_then(Value::as_str) == Some(ty))
    }

    fn resource(&self, id: &str) -> Result<&Value> {
        self.resources()
            .find(|(k, _)| *k == id)
            .map(|(_, v)| v)
            .ok_or_else(|| anyhow!("no resource {id}"))
    }

    /// A parameter's default value.
    pub fn parameter_default(&self, name: &str) -> Option<String> {
        let v = self.root.get("Parameters")?.get(name)?.get("Default")?;
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// Resolves a scalar or `Ref` the way the local stack names things: parameters take their
    /// defaults, resources their logical id (buckets in lower case, KMS keys by their alias).
    pub fn resolve(&self, v: &Value) -> Result<String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Mapping(m) => {
                let r = m
                    .get("Ref")
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow!("cannot resolve {v:?} locally"))?;
                if let Some(d) = self.parameter_default(r) {
                    Ok(d)
                } else if let Ok(res) = self.resource(r) {
                    Ok(match res.get("Type").and_then(Value::as_str) {
                        Some("AWS::S3::Bucket") => bucket_name(r),
                        Some("AWS::KMS::Key") => key_alias(r),
                        _ => r.to_owned(),
                    })
                } else {
                    bail!("Ref to unknown {r}")
                }
            }
            _ => bail!("cannot resolve {v:?} locally"),
        }
    }

    pub fn tables(&self) -> Vec<TableDef> {
        self.of_type("AWS::DynamoDB::Table")
            .map(|(id, r)| {
                let p = r.get("Properties").cloned().unwrap_or(Value::Null);
                TableDef {
                    logical_id: id.to_owned(),
                    attributes: list(&p, "AttributeDefinitions")
                        .filter_map(|a| {
                            Some((
                                s(a.get("AttributeName")?)?.to_owned(),
                                s(a.get("AttributeType")?)?.to_owned(),
                            ))
                        })
                        .collect(),
                    keys: key_elements(&p),
                    indexes: list(&p, "GlobalSecondaryIndexes")
                        .filter_map(|g| {
                            Some(IndexDef {
                                name: s(g.get("IndexName")?)?.to_owned(),
                                keys: key_elements(g),
                                projection: g
                                    .get("Projection")
                                    .and_then(|x| x.get("ProjectionType"))
                                    .and_then(Value::as_str)
                                    .unwrap_or("ALL")
                                    .to_owned(),
                            })
                        })
                        .collect(),
                    ttl_attribute: p
                        .get("TimeToLiveSpecification")
                        .and_then(|t| t.get("AttributeName"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    stream_view_type: p
                        .get("StreamSpecification")
                        .and_then(|t| t.get("StreamViewType"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                }
            })
            .collect()
    }

    pub fn buckets(&self) -> Result<Vec<BucketDef>> {
        self.of_type("AWS::S3::Bucket")
            .map(|(id, r)| {
                let p = r.get("Properties").cloned().unwrap_or(Value::Null);
                let versioned = p
                    .get("VersioningConfiguration")
                    .and_then(|v| v.get("Status"))
                    .and_then(Value::as_str)
                    == Some("Enabled");
                let retention = p
                    .get("ObjectLockConfiguration")
                    .and_then(|o| o.get("Rule"))
                    .and_then(|r| r.get("DefaultRetention"));
                let object_lock = match retention {
                    Some(d) => {
                        let mode = d
                            .get("Mode")
                            .and_then(Value::as_str)
                            .ok_or_else(|| anyhow!("{id}: DefaultRetention without Mode"))?;
                        let days = self
                            .resolve(d.get("Days").unwrap_or(&Value::Null))?
                            .parse()
                            .with_context(|| format!("{id}: DefaultRetention.Days"))?;
                        Some((mode.to_owned(), days))
                    }
                    None => None,
                };
                Ok(BucketDef {
                    logical_id: id.to_owned(),
                    name: bucket_name(id),
                    versioned,
                    object_lock,
                })
            })
            .collect()
    }

    pub fn kms_keys(&self) -> Vec<KmsKeyDef> {
        self.of_type("AWS::KMS::Key")
            .map(|(id, r)| {
                let p = r.get("Properties");
                let prop = |k: &str, default: &str| {
                    p.and_then(|p| p.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or(default)
                        .to_owned()
                };
                KmsKeyDef {
                    logical_id: id.to_owned(),
                    alias: key_alias(id),
                    key_spec: prop("KeySpec", "SYMMETRIC_DEFAULT"),
                    key_usage: prop("KeyUsage", "ENCRYPT_DECRYPT"),
                }
            })
            .collect()
    }

    /// The event source mappings of DynamoDB stream events: (function's binary, table logical
    /// id, batch size, batching window in seconds), resolved for the local stack.
    pub fn stream_consumers(&self) -> Result<Vec<StreamConsumerDef>> {
        let mut out = Vec::new();
        for (id, f) in self.of_type("AWS::Serverless::Function") {
            let events = f
                .get("Properties")
                .and_then(|p| p.get("Events"))
                .and_then(Value::as_mapping);
            for (_, e) in events.into_iter().flatten() {
                if e.get("Type").and_then(Value::as_str) != Some("DynamoDB") {
                    continue;
                }
                let p = e
                    .get("Properties")
                    .ok_or_else(|| anyhow!("{id}: DynamoDB event without Properties"))?;
                let table = p
                    .get("Stream")
                    .and_then(|s| s.get("Fn::GetAtt"))
                    .and_then(Value::as_sequence)
                    .and_then(|g| g.first())
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow!("{id}: Stream must be Fn::GetAtt [Table, StreamArn]"))?
                    .to_owned();
                let num = |k: &str, default: u64| -> Result<u64> {
                    match p.get(k) {
                        Some(v) => self
                            .resolve(v)?
                            .parse()
                            .with_context(|| format!("{id}: {k}")),
                        None => Ok(default),
                    }
                };
                out.push(StreamConsumerDef {
                    function: id.to_owned(),
                    binary: self.binary_of(id)?,
                    table,
                    batch_size: num("BatchSize", 100)?,
                    batching_window_secs: num("MaximumBatchingWindowInSeconds", 0)?,
                });
            }
        }
        Ok(out)
    }

    pub fn secrets(&self) -> Vec<SecretDef> {
        self.of_type("AWS::SecretsManager::Secret")
            .map(|(id, r)| {
                let p = r.get("Properties");
                let init = match p
                    .and_then(|p| p.get("SecretString"))
                    .and_then(Value::as_str)
                {
                    Some(v) => SecretInit::Value(v.to_owned()),
                    None => SecretInit::Generate {
                        length: p
                            .and_then(|p| p.get("GenerateSecretString"))
                            .and_then(|g| g.get("PasswordLength"))
                            .and_then(Value::as_u64)
                            .and_then(|n| u32::try_from(n).ok())
                            .unwrap_or(32),
                    },
                };
                SecretDef {
                    logical_id: id.to_owned(),
                    init,
                }
            })
            .collect()
    }

    fn binary_of(&self, function: &str) -> Result<String> {
        let f = self.resource(function)?;
        f.get("Metadata")
            .and_then(|m| m.get("BuildProperties"))
            .and_then(|b| b.get("Binary"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("{function} has no Metadata.BuildProperties.Binary"))
    }

    /// The HttpApi routes, each with the function (and binary) it invokes.
    pub fn routes(&self) -> Result<Vec<RouteDef>> {
        let mut out = Vec::new();
        for (id, f) in self.of_type("AWS::Serverless::Function") {
            let events = f
                .get("Properties")
                .and_then(|p| p.get("Events"))
                .and_then(Value::as_mapping);
            for (_, e) in events.into_iter().flatten() {
                if e.get("Type").and_then(Value::as_str) != Some("HttpApi") {
                    continue;
                }
                let p = e
                    .get("Properties")
                    .ok_or_else(|| anyhow!("{id}: HttpApi event without Properties"))?;
                out.push(RouteDef {
                    method: s(p.get("Method").unwrap_or(&Value::Null))
                        .unwrap_or("ANY")
                        .to_ascii_uppercase(),
                    path: s(p.get("Path").unwrap_or(&Value::Null))
                        .ok_or_else(|| anyhow!("{id}: route without Path"))?
                        .to_owned(),
                    function: id.to_owned(),
                    binary: self.binary_of(id)?,
                });
            }
        }
        Ok(out)
    }

    /// The HttpApi's default Lambda authorizer.
    pub fn authorizer(&self) -> Result<AuthorizerDef> {
        let (_, api) = self
            .of_type("AWS::Serverless::HttpApi")
            .next()
            .ok_or_else(|| anyhow!("no HttpApi"))?;
        let auth = api
            .get("Properties")
            .and_then(|p| p.get("Auth"))
            .ok_or_else(|| anyhow!("HttpApi has no Auth"))?;
        let default = auth
            .get("DefaultAuthorizer")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("no DefaultAuthorizer"))?;
        let a = auth
            .get("Authorizers")
            .and_then(|m| m.get(default))
            .ok_or_else(|| anyhow!("authorizer {default} not defined"))?;
        let function = a
            .get("FunctionArn")
            .and_then(|f| f.get("Fn::GetAtt"))
            .and_then(Value::as_sequence)
            .and_then(|seq| seq.first())
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("authorizer FunctionArn must be Fn::GetAtt [Function, Arn]"))?
            .to_owned();
        let identity = a
            .get("Identity")
            .ok_or_else(|| anyhow!("authorizer has no Identity"))?;
        let strings = |key: &str| -> Vec<String> {
            list(identity, key)
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        };
        let ttl_secs = match identity.get("ReauthorizeEvery") {
            Some(v) => self
                .resolve(v)?
                .parse()
                .context("ReauthorizeEvery is not a number")?,
            None => 300,
        };
        Ok(AuthorizerDef {
            binary: self.binary_of(&function)?,
            function,
            headers: strings("Headers"),
            context: strings("Context"),
            ttl_secs,
        })
    }

    /// A function's environment variables, resolved for the local stack.
    pub fn function_env(&self, function: &str) -> Result<BTreeMap<String, String>> {
        let f = self.resource(function)?;
        let vars = f
            .get("Properties")
            .and_then(|p| p.get("Environment"))
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_mapping);
        let mut out = BTreeMap::new();
        for (k, v) in vars.into_iter().flatten() {
            if let Some(k) = k.as_str() {
                out.insert(k.to_owned(), self.resolve(v)?);
            }
        }
        Ok(out)
    }

    /// Every function's (binary, logical id).
    pub fn functions(&self) -> Result<Vec<(String, String)>> {
        self.of_type("AWS::Serverless::Function")
            .map(|(id, _)| Ok((self.binary_of(id)?, id.to_owned())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_real_template() {
        let t = Template::load(&crate::paths::template_path()).unwrap();
        let routes = t.routes().unwrap();
        assert!(
            routes
                .iter()
                .any(|r| r.route_key() == "POST /v1/predict" && r.binary == "predict")
        );
        let a = t.authorizer().unwrap();
        assert_eq!(a.binary, "authorizer");
        assert_eq!(a.headers, vec!["Authorization".to_string()]);
        assert!(a.context.contains(&"routeKey".to_string()));
        assert!(a.ttl_secs > 0 && a.ttl_secs <= 3600);
        let tables = t.tables();
        assert!(tables.iter().any(|t| t.logical_id == "RateLimitTable"));
        let env = t.function_env("AuthorizerFunction").unwrap();
        assert_eq!(env["GATEHOUSE_JWKS_SECRET_ID"], "JwksSecret");
        let audit = tables
            .iter()
            .find(|t| t.logical_id == "AuditTable")
            .unwrap();
        assert_eq!(
            audit.stream_view_type.as_deref(),
            Some("NEW_AND_OLD_IMAGES")
        );
        let buckets = t.buckets().unwrap();
        let digest = buckets
            .iter()
            .find(|b| b.logical_id == "AuditDigestBucket")
            .unwrap();
        assert_eq!(digest.name, "auditdigestbucket");
        assert!(digest.versioned);
        assert_eq!(digest.object_lock.as_ref().unwrap().0, "COMPLIANCE");
        let keys = t.kms_keys();
        assert_eq!(keys[0].key_spec, "ECC_NIST_P256");
        assert_eq!(keys[0].key_usage, "SIGN_VERIFY");
        let sentinel = t.function_env("SentinelFunction").unwrap();
        assert_eq!(sentinel["GATEHOUSE_DIGEST_BUCKET"], "auditdigestbucket");
        assert_eq!(sentinel["GATEHOUSE_DIGEST_KEY_ID"], "alias/AuditDigestKey");
        let consumers = t.stream_consumers().unwrap();
        assert_eq!(consumers.len(), 1);
        assert_eq!(consumers[0].binary, "audit-sentinel");
        assert_eq!(consumers[0].table, "AuditTable");
        assert!(consumers[0].batching_window_secs <= 300);
        assert!(
            routes
                .iter()
                .any(|r| r.route_key() == "GET /v1/audit" && r.binary == "audit-reader")
        );
    }
}
