//! Security properties of the deployed template, asserted on the SAM-translated CloudFormation
//! (`.local/template.translated.json`, written by `cargo xtask test`'s translate step just before
//! the tests run), so what is checked is what CloudFormation would create, generated resources
//! included.
//!
//! The only wildcards allowed in IAM are the ones AWS imposes: the `:*` log-stream suffix that
//! `Fn::GetAtt LogGroup.Arn` carries (Lambda names its log streams), the object suffix of an
//! audit bucket's key prefix (`<bucket>/digests/*`: the sentinel names each object), the table's
//! indexes (`<table>/index/*` for the reader's Query), and SAM's `lambda:InvokeFunction`
//! permissions for API Gateway, whose SourceArn ends in `/authorizers/*` (the authorizer id) — a
//! resource policy, not a role.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{Value, json};

fn translated() -> Value {
    let root = gatehouse_dev::paths::repo_root();
    let path = std::env::var("GATEHOUSE_TRANSLATED_TEMPLATE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join(".local/template.translated.json"));
    let source = root.join("infra/template.yaml");
    let meta = std::fs::metadata(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Run `cargo xtask test`, which translates infra/template.yaml first",
            path.display()
        )
    });
    let (t, s) = (
        meta.modified().unwrap(),
        std::fs::metadata(&source).unwrap().modified().unwrap(),
    );
    assert!(
        t >= s,
        "{} is older than infra/template.yaml: run `cargo xtask test` to re-translate",
        path.display()
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn resources(t: &Value) -> &serde_json::Map<String, Value> {
    t["Resources"].as_object().expect("Resources")
}

fn of_type<'a>(t: &'a Value, ty: &str) -> Vec<(&'a str, &'a Value)> {
    resources(t)
        .iter()
        .filter(|(_, r)| r["Type"] == ty)
        .map(|(k, v)| (k.as_str(), v))
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        _ => vec![],
    }
}

/// `{"Ref": X}` or `{"Fn::GetAtt": [X, ...]}` → X.
fn target(v: &Value) -> Option<&str> {
    v.get("Ref")
        .and_then(Value::as_str)
        .or_else(|| v.get("Fn::GetAtt").and_then(|g| g[0].as_str()))
}

/// A role statement's resource as a label: `X` (Ref, or GetAtt X.Arn), `X.StreamArn`, or for
/// `Fn::Sub "${X.Arn}/rest"` the text `X/rest`. Anything else (a literal ARN, "*") is refused.
fn resource_label(role_id: &str, r: &Value) -> String {
    if let Some(get_att) = r.get("Fn::GetAtt") {
        let (res, att) = (get_att[0].as_str().unwrap(), get_att[1].as_str().unwrap());
        return match att {
            "Arn" => res.to_owned(),
            "StreamArn" => format!("{res}.StreamArn"),
            other => panic!("{role_id}: GetAtt {res}.{other}"),
        };
    }
    if let Some(sub) = r.get("Fn::Sub").and_then(Value::as_str) {
        // The one guardrail predict may apply: this account and region, the id a parameter.
        if let Some(id) = sub.strip_prefix(
            "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:guardrail/${",
        ) {
            return format!("guardrail/{}", id.trim_end_matches('}'));
        }
        let rest = sub
            .strip_prefix("${")
            .and_then(|s| s.split_once(".Arn}"))
            .unwrap_or_else(|| panic!("{role_id}: resource {r} must start with ${{X.Arn}}"));
        return format!("{}{}", rest.0, rest.1);
    }
    target(r)
        .unwrap_or_else(|| panic!("{role_id}: resource {r} is not a Ref/GetAtt/Sub of ours"))
        .to_owned()
}

fn as_list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => vec![],
        other => vec![other],
    }
}

/// Every statement of a role's inline policies, with `Fn::If` branches flattened (both count).
fn statements(role: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in as_list(&role["Properties"]["Policies"]) {
        for s in as_list(&p["PolicyDocument"]["Statement"]) {
            match s.get("Fn::If") {
                Some(branches) => out.extend(
                    branches
                        .as_array()
                        .unwrap()
                        .iter()
                        .skip(1)
                        .filter(|b| b.get("Ref") != Some(&json!("AWS::NoValue"))),
                ),
                None => out.push(s),
            }
        }
    }
    out
}

/// Role logical id → the function (logical id) that uses it.
fn function_roles(t: &Value) -> BTreeMap<String, String> {
    of_type(t, "AWS::Lambda::Function")
        .into_iter()
        .map(|(id, f)| {
            let role = target(&f["Properties"]["Role"])
                .unwrap_or_else(|| panic!("{id}: Role must be one of this template's roles"));
            (role.to_owned(), id.to_owned())
        })
        .collect()
}

fn param_default(t: &Value, name: &str) -> Value {
    t["Parameters"][name]["Default"].clone()
}

#[test]
fn roles_grant_only_what_each_function_needs() {
    let t = translated();
    let roles = of_type(&t, "AWS::IAM::Role");
    let users = function_roles(&t);
    assert_eq!(roles.len(), 5, "one role per function, nothing else");
    assert!(
        of_type(&t, "AWS::IAM::Policy").is_empty()
            && of_type(&t, "AWS::IAM::ManagedPolicy").is_empty()
    );
    let expected: BTreeMap<&str, BTreeSet<(&str, &str)>> = BTreeMap::from([
        (
            "AuthorizerFunction",
            BTreeSet::from([
                ("logs:CreateLogStream", "AuthorizerLogGroup"),
                ("logs:PutLogEvents", "AuthorizerLogGroup"),
                ("secretsmanager:GetSecretValue", "JwksSecret"),
                ("secretsmanager:GetSecretValue", "AuditHmacSecret"),
                ("dynamodb:UpdateItem", "RateLimitTable"),
                ("dynamodb:PutItem", "AuditTable"),
            ]),
        ),
        (
            "PredictFunction",
            BTreeSet::from([
                ("logs:CreateLogStream", "PredictLogGroup"),
                ("logs:PutLogEvents", "PredictLogGroup"),
                ("secretsmanager:GetSecretValue", "AuditHmacSecret"),
                ("dynamodb:UpdateItem", "RateLimitTable"),
                ("dynamodb:GetItem", "RateLimitTable"),
                ("dynamodb:PutItem", "AuditTable"),
                ("bedrock:InvokeModel", "BedrockModelArns"),
                ("bedrock:ApplyGuardrail", "guardrail/GuardrailId"),
            ]),
        ),
        (
            "JwksSyncFunction",
            BTreeSet::from([
                ("logs:CreateLogStream", "JwksSyncLogGroup"),
                ("logs:PutLogEvents", "JwksSyncLogGroup"),
                ("secretsmanager:GetSecretValue", "JwksSecret"),
                ("secretsmanager:PutSecretValue", "JwksSecret"),
            ]),
        ),
        (
            // No write to the audit table, no HMAC key; kms:Sign comes from the key policy.
            "SentinelFunction",
            BTreeSet::from([
                ("logs:CreateLogStream", "SentinelLogGroup"),
                ("logs:PutLogEvents", "SentinelLogGroup"),
                ("dynamodb:DescribeStream", "AuditTable.StreamArn"),
                ("dynamodb:GetRecords", "AuditTable.StreamArn"),
                ("dynamodb:GetShardIterator", "AuditTable.StreamArn"),
                ("dynamodb:ListStreams", "AuditTable.StreamArn"),
                ("dynamodb:GetItem", "AuditTable"),
                ("s3:GetObject", "AuditDigestBucket/digests/*"),
                ("s3:PutObject", "AuditDigestBucket/digests/*"),
                ("s3:ListBucket", "AuditDigestBucket"),
                ("s3:PutObject", "AuditExportBucket/${ExportPrefix}/*"),
            ]),
        ),
        (
            // Read-only: Query the indexes, read digests, fetch the public key.
            "ReaderFunction",
            BTreeSet::from([
                ("logs:CreateLogStream", "ReaderLogGroup"),
                ("logs:PutLogEvents", "ReaderLogGroup"),
                ("dynamodb:Query", "AuditTable/index/*"),
                ("s3:GetObject", "AuditDigestBucket/digests/*"),
                ("s3:ListBucket", "AuditDigestBucket"),
                ("kms:GetPublicKey", "AuditDigestKey"),
            ]),
        ),
    ]);
    for (role_id, role) in roles {
        let function = users
            .get(role_id)
            .unwrap_or_else(|| panic!("role {role_id} is used by no function"));
        let p = &role["Properties"];
        assert!(
            p.get("ManagedPolicyArns").is_none(),
            "{role_id}: managed policies grant more than this function needs"
        );
        assert!(
            p["AssumeRolePolicyDocument"]
                .to_string()
                .contains("lambda.amazonaws.com")
                && p["AssumeRolePolicyDocument"]
                    .to_string()
                    .contains("aws:SourceAccount"),
            "{role_id}: only Lambda, from this account, may assume it"
        );
        let mut granted = BTreeSet::new();
        for s in statements(role) {
            assert_eq!(s["Effect"], "Allow", "{role_id}: {s}");
            assert!(
                s.get("NotAction").is_none() && s.get("NotResource").is_none(),
                "{role_id}: NotAction/NotResource grant everything else: {s}"
            );
            let actions = strings(&s["Action"]);
            assert!(!actions.is_empty(), "{role_id}: {s}");
            for a in &actions {
                assert!(!a.contains('*'), "{role_id}: wildcard action {a}");
            }
            for r in as_list(&s["Resource"]) {
                // Literal ARNs (or "*") are refused: every resource is one of this template's
                // resources or the model-ARN parameter.
                let to = resource_label(role_id, r);
                for a in &actions {
                    granted.insert((a.clone(), to.clone()));
                }
            }
        }
        let granted: BTreeSet<(&str, &str)> = granted
            .iter()
            .map(|(a, r)| (a.as_str(), r.as_str()))
            .collect();
        assert_eq!(
            granted,
            expected[function.as_str()],
            "{role_id} ({function}) grants differ from least privilege"
        );
    }
}

/// Issue 10.8: the rate table is shared, so each role may touch only the items under its own key
/// prefixes (`dynamodb:LeadingKeys`), and those are the constants the code writes with.
#[test]
fn each_role_reaches_only_its_own_rate_table_keys() {
    use gatehouse::ratelimit::{AUTHORIZER_PREFIXES, PREDICT_PREFIXES};
    let t = translated();
    let users = function_roles(&t);
    let want: BTreeMap<&str, Vec<String>> = BTreeMap::from([
        (
            "AuthorizerFunction",
            AUTHORIZER_PREFIXES
                .iter()
                .map(|p| format!("{p}*"))
                .collect(),
        ),
        (
            "PredictFunction",
            PREDICT_PREFIXES.iter().map(|p| format!("{p}*")).collect(),
        ),
    ]);
    let mut checked = 0;
    for (role_id, role) in of_type(&t, "AWS::IAM::Role") {
        let function = users[role_id].as_str();
        for s in statements(role) {
            let on_rate = as_list(&s["Resource"])
                .iter()
                .any(|r| target(r) == Some("RateLimitTable"));
            if !on_rate {
                continue;
            }
            let cond = s["Condition"].as_object().unwrap_or_else(|| {
                panic!("{role_id}: a rate-table grant without a key condition: {s}")
            });
            assert_eq!(
                cond.keys().collect::<Vec<_>>(),
                ["ForAllValues:StringLike"],
                "{role_id}: {s}"
            );
            let keys = &cond["ForAllValues:StringLike"];
            assert_eq!(keys.as_object().unwrap().len(), 1, "{role_id}: {s}");
            assert_eq!(
                strings(&keys["dynamodb:LeadingKeys"]),
                want[function],
                "{role_id} ({function})"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 2, "one rate-table statement per role");
    // No prefix of one function is a prefix of another's, so the grants cannot overlap.
    for a in AUTHORIZER_PREFIXES {
        for b in PREDICT_PREFIXES {
            assert!(!a.starts_with(b) && !b.starts_with(a), "{a} / {b}");
        }
    }
}

#[test]
fn nothing_may_update_or_delete_the_audit_table() {
    let t = translated();
    const WRITES: [&str; 6] = [
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:PartiQLUpdate",
        "dynamodb:PartiQLDelete",
    ];
    let users = function_roles(&t);
    for (role_id, role) in of_type(&t, "AWS::IAM::Role") {
        let writer = ["AuthorizerFunction", "PredictFunction"].contains(&users[role_id].as_str());
        for s in statements(role) {
            let on_audit = as_list(&s["Resource"])
                .iter()
                .any(|r| resource_label(role_id, r).starts_with("AuditTable"));
            if !on_audit {
                continue;
            }
            let actions = strings(&s["Action"]);
            if writer {
                assert_eq!(
                    actions,
                    vec!["dynamodb:PutItem".to_string()],
                    "{role_id}: the writers keep PutItem only"
                );
            } else {
                for a in &actions {
                    assert!(
                        !WRITES.contains(&a.as_str()),
                        "{role_id}: {a} on the audit table"
                    );
                }
            }
        }
    }
    let audit = &resources(&t)["AuditTable"];
    assert_eq!(audit["DeletionPolicy"], "Retain");
    assert_eq!(audit["UpdateReplacePolicy"], "Retain");
    let p = &audit["Properties"];
    assert_eq!(p["DeletionProtectionEnabled"], true);
    assert_eq!(
        p["StreamSpecification"]["StreamViewType"], "NEW_AND_OLD_IMAGES",
        "the sentinel sees every overwrite and deletion"
    );
    // The table's resource policy: an explicit deny of every record change but PutItem, to every
    // principal except the break-glass role parameter (when one is given).
    let statements = as_list(&p["ResourcePolicy"]["PolicyDocument"]["Statement"]);
    let deny: Vec<&&Value> = statements
        .iter()
        .filter(|s| s["Effect"] == "Deny")
        .collect();
    assert_eq!(deny.len(), 1, "{statements:?}");
    let deny = deny[0];
    assert_eq!(deny["Principal"], "*");
    assert_eq!(deny["Resource"], "*");
    let denied: BTreeSet<String> = strings(&deny["Action"]).into_iter().collect();
    for a in [
        "dynamodb:DeleteItem",
        "dynamodb:UpdateItem",
        "dynamodb:BatchWriteItem",
    ] {
        assert!(denied.contains(a), "{a} is not denied");
    }
    assert!(
        !denied.contains("dynamodb:PutItem"),
        "the writers keep PutItem"
    );
    assert!(
        !statements.iter().any(|s| s["Effect"] == "Allow"),
        "the table policy grants nothing"
    );
    let cond = &deny["Condition"]["Fn::If"];
    assert_eq!(cond[0], "HasBreakGlassRole");
    assert_eq!(
        cond[1],
        json!({"ArnNotEquals": {"aws:PrincipalArn": {"Ref": "AuditBreakGlassRoleArn"}}})
    );
    assert_eq!(
        cond[2],
        json!({"Ref": "AWS::NoValue"}),
        "no role given: nobody is exempt"
    );
    assert_eq!(param_default(&t, "AuditBreakGlassRoleArn"), "");
}

#[test]
fn only_the_sentinel_signs_digests_and_they_are_write_once() {
    let t = translated();
    let key = &resources(&t)["AuditDigestKey"]["Properties"];
    assert_eq!(key["KeySpec"], "ECC_NIST_P256");
    assert_eq!(key["KeyUsage"], "SIGN_VERIFY");
    let sentinel_arn = json!({"Fn::GetAtt": ["SentinelRole", "Arn"]});
    let mut sign_allowed_to = Vec::new();
    let mut sign_denied_except = Vec::new();
    for s in as_list(&key["KeyPolicy"]["Statement"]) {
        let actions = strings(&s["Action"]);
        let signs = actions.iter().any(|a| a == "kms:Sign" || a == "kms:*");
        if s["Effect"] == "Allow" && signs {
            sign_allowed_to.push(s["Principal"]["AWS"].clone());
        }
        if s["Effect"] == "Deny" && actions.contains(&"kms:Sign".to_string()) {
            assert_eq!(s["Principal"], "*");
            sign_denied_except.push(s["Condition"]["ArnNotEquals"]["aws:PrincipalArn"].clone());
        }
        assert!(
            !actions.iter().any(|a| a == "kms:*"),
            "no statement grants every KMS action: {s}"
        );
    }
    assert_eq!(
        sign_allowed_to,
        vec![sentinel_arn.clone()],
        "only the sentinel may Sign"
    );
    assert_eq!(
        sign_denied_except,
        vec![sentinel_arn],
        "everyone else is denied Sign"
    );
    // No role gets KMS or S3 rights it should not: the writers none at all, the reader only
    // the public key.
    for (role_id, role) in of_type(&t, "AWS::IAM::Role") {
        for s in statements(role) {
            for a in strings(&s["Action"]) {
                assert_ne!(
                    a, "kms:Sign",
                    "{role_id}: Sign comes from the key policy only"
                );
                if ["AuthorizerRole", "PredictRole"].contains(&role_id) {
                    assert!(
                        !a.starts_with("kms:") && !a.starts_with("s3:"),
                        "{role_id}: {a}"
                    );
                }
            }
        }
    }
    let bucket = &resources(&t)["AuditDigestBucket"];
    assert_eq!(bucket["DeletionPolicy"], "Retain");
    let b = &bucket["Properties"];
    assert_eq!(b["ObjectLockEnabled"], true);
    assert_eq!(
        b["ObjectLockConfiguration"]["Rule"]["DefaultRetention"],
        json!({"Mode": "COMPLIANCE", "Days": {"Ref": "DigestRetentionDays"}})
    );
    assert_eq!(b["VersioningConfiguration"]["Status"], "Enabled");
    for bucket_id in ["AuditDigestBucket", "AuditExportBucket"] {
        let pab = &resources(&t)[bucket_id]["Properties"]["PublicAccessBlockConfiguration"];
        for k in [
            "BlockPublicAcls",
            "BlockPublicPolicy",
            "IgnorePublicAcls",
            "RestrictPublicBuckets",
        ] {
            assert_eq!(pab[k], true, "{bucket_id}.{k}");
        }
    }
    let policy = of_type(&t, "AWS::S3::BucketPolicy")
        .into_iter()
        .find(|(_, p)| p["Properties"]["Bucket"] == json!({"Ref": "AuditDigestBucket"}))
        .expect("a digest bucket policy")
        .1;
    let text = policy.to_string();
    assert!(text.contains("aws:SecureTransport"), "TLS only");
    let only_sentinel = as_list(&policy["Properties"]["PolicyDocument"]["Statement"])
        .into_iter()
        .any(|s| {
            s["Effect"] == "Deny"
                && strings(&s["Action"]).contains(&"s3:PutObject".to_string())
                && s["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
                    == json!({"Fn::GetAtt": ["SentinelRole", "Arn"]})
        });
    assert!(only_sentinel, "only the sentinel may put digests");
}

#[test]
fn the_sentinel_consumes_the_audit_stream_without_skipping() {
    let t = translated();
    let mappings = of_type(&t, "AWS::Lambda::EventSourceMapping");
    assert_eq!(mappings.len(), 1);
    let p = &mappings[0].1["Properties"];
    assert_eq!(p["FunctionName"], json!({"Ref": "SentinelFunction"}));
    assert_eq!(
        p["EventSourceArn"],
        json!({"Fn::GetAtt": ["AuditTable", "StreamArn"]})
    );
    assert_eq!(p["StartingPosition"], "TRIM_HORIZON");
    assert_eq!(p["BatchSize"], json!({"Ref": "DigestMaxRecords"}));
    assert_eq!(
        p["MaximumBatchingWindowInSeconds"],
        json!({"Ref": "DigestIntervalSecs"})
    );
    assert_eq!(
        p["MaximumRetryAttempts"], -1,
        "a failed batch is retried, never skipped"
    );
    assert_eq!(p["BisectBatchOnFunctionError"], false);
    assert!(
        t["Parameters"]["DigestIntervalSecs"]["MaxValue"]
            .as_u64()
            .unwrap()
            <= 300
    );
}

#[test]
fn secrets_are_scoped_and_the_hmac_key_is_generated() {
    let t = translated();
    for (role_id, role) in of_type(&t, "AWS::IAM::Role") {
        for s in statements(role) {
            let actions = strings(&s["Action"]);
            if actions.iter().any(|a| a.starts_with("secretsmanager:")) {
                // Only jwks-sync may write a secret, and only the JWKS secret.
                if role_id == "JwksSyncRole" {
                    assert_eq!(
                        actions,
                        [
                            "secretsmanager:GetSecretValue",
                            "secretsmanager:PutSecretValue"
                        ]
                    );
                    let on: Vec<_> = as_list(&s["Resource"]).into_iter().map(target).collect();
                    assert_eq!(on, [Some("JwksSecret")], "{role_id}");
                } else {
                    assert_eq!(actions, vec!["secretsmanager:GetSecretValue".to_string()]);
                }
                for r in as_list(&s["Resource"]) {
                    let to = target(r).unwrap();
                    assert_eq!(
                        resources(&t)[to]["Type"],
                        "AWS::SecretsManager::Secret",
                        "{role_id}: GetSecretValue on {r}"
                    );
                }
            }
        }
    }
    let hmac = &resources(&t)["AuditHmacSecret"]["Properties"];
    assert!(hmac.get("SecretString").is_none(), "never in the template");
    assert!(
        hmac["GenerateSecretString"]["PasswordLength"]
            .as_u64()
            .unwrap()
            >= 32
    );
    // The JWKS secret is deployed empty: no key (least of all a private one) in the template.
    let jwks: Value = serde_json::from_str(
        resources(&t)["JwksSecret"]["Properties"]["SecretString"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(jwks, json!({"keys": []}));
}

#[test]
fn bedrock_is_granted_only_for_the_bedrock_backend_and_the_configured_models() {
    let t = translated();
    let role = &resources(&t)["PredictRole"];
    let text = role.to_string();
    assert!(text.contains("bedrock:InvokeModel"));
    for p in as_list(&role["Properties"]["Policies"]) {
        for s in as_list(&p["PolicyDocument"]["Statement"]) {
            if s.to_string().contains("bedrock:") {
                let branches = s["Fn::If"].as_array().expect("bedrock only under Fn::If");
                assert_eq!(branches[2], json!({"Ref": "AWS::NoValue"}));
                // InvokeModel only with the Bedrock backend, on the configured models; the
                // guardrail only when one is configured, on that guardrail.
                match branches[1]["Action"].as_str() {
                    Some("bedrock:InvokeModel") => {
                        assert_eq!(branches[0], "UseBedrock");
                        assert_eq!(branches[1]["Resource"], json!({"Ref": "BedrockModelArns"}));
                    }
                    Some("bedrock:ApplyGuardrail") => {
                        assert_eq!(branches[0], "HasGuardrail");
                        assert!(
                            branches[1]["Resource"]
                                .to_string()
                                .contains("guardrail/${GuardrailId}")
                        );
                    }
                    other => panic!("unexpected bedrock action {other:?}"),
                }
            }
        }
    }
    assert_eq!(
        t["Conditions"]["UseBedrock"],
        json!({"Fn::Equals": [{"Ref": "ModelBackend"}, "bedrock"]})
    );
    assert!(
        !resources(&t)["AuthorizerRole"]
            .to_string()
            .contains("bedrock")
    );
}

#[test]
fn authorizer_cache_is_per_token_and_route_and_short() {
    let t = translated();
    let (_, api) = of_type(&t, "AWS::ApiGatewayV2::Api")[0];
    let schemes = api["Properties"]["Body"]["components"]["securitySchemes"]
        .as_object()
        .unwrap();
    assert_eq!(schemes.len(), 1);
    let auth = &schemes.values().next().unwrap()["x-amazon-apigateway-authorizer"];
    let sources = strings(&auth["identitySource"]);
    assert!(sources.contains(&"$request.header.Authorization".to_string()));
    assert!(
        sources.contains(&"$context.routeKey".to_string()),
        "a cached allow for one route must never open another"
    );
    assert_eq!(auth["enableSimpleResponses"], true);
    assert_eq!(
        auth["authorizerResultTtlInSeconds"],
        json!({"Ref": "AuthorizerCacheTtl"})
    );
    let ttl = &t["Parameters"]["AuthorizerCacheTtl"];
    assert!(ttl["MaxValue"].as_u64().unwrap() <= 300);
    assert!(ttl["Default"].as_u64().unwrap() <= 300);
    // Every route goes through the authorizer; no CORS unless someone configures it.
    for (path, ops) in api["Properties"]["Body"]["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            assert!(
                op["security"]
                    .to_string()
                    .contains(schemes.keys().next().unwrap()),
                "{method} {path} has no authorizer"
            );
        }
    }
    assert!(api["Properties"].get("CorsConfiguration").is_none());
    assert!(
        api["Properties"]["Body"]
            .get("x-amazon-apigateway-cors")
            .is_none()
    );
}

#[test]
fn stage_throttles_and_logs_request_ids_and_authorizer_errors() {
    let t = translated();
    let stages = of_type(&t, "AWS::ApiGatewayV2::Stage");
    assert_eq!(stages.len(), 1);
    let p = &stages[0].1["Properties"];
    assert!(p["DefaultRouteSettings"]["ThrottlingRateLimit"].is_object());
    assert!(p["DefaultRouteSettings"]["ThrottlingBurstLimit"].is_object());
    let format = p["AccessLogSettings"]["Format"].as_str().unwrap();
    let line: Value = serde_json::from_str(format).expect("the access log format is JSON");
    assert_eq!(line["requestId"], "$context.requestId");
    assert_eq!(line["authorizerError"], "$context.authorizer.error");
    assert!(!format.to_ascii_lowercase().contains("authorization"));
    assert_eq!(
        target(&p["AccessLogSettings"]["DestinationArn"]),
        Some("ApiAccessLogGroup")
    );
}

#[test]
fn functions_tables_and_logs_are_configured_as_documented() {
    let t = translated();
    assert_eq!(param_default(&t, "Architecture"), "arm64");
    for (id, f) in of_type(&t, "AWS::Lambda::Function") {
        let p = &f["Properties"];
        assert_eq!(p["Runtime"], "provided.al2023", "{id}");
        assert_eq!(p["Architectures"], json!([{"Ref": "Architecture"}]), "{id}");
        let mem = p["MemorySize"].as_u64().unwrap();
        assert!((128..=256).contains(&mem), "{id}: {mem} MB");
        let timeout = p["Timeout"].as_u64().unwrap();
        if id == "SentinelFunction" {
            assert!((1..=900).contains(&timeout), "{id}: {timeout} s");
        } else {
            assert!((1..30).contains(&timeout), "{id}: below HTTP API's 30 s");
        }
        let group = target(&p["LoggingConfig"]["LogGroup"]).unwrap();
        let role = target(&p["Role"]).unwrap();
        assert!(
            resources(&t)[role].to_string().contains(group),
            "{id} logs to {group}, which its role must be able to write"
        );
        for (k, v) in p["Environment"]["Variables"].as_object().unwrap() {
            assert!(
                v.is_string() || v.get("Ref").is_some(),
                "{id}.{k}: the local stack resolves only plain values and Refs"
            );
        }
    }
    for (id, g) in of_type(&t, "AWS::Logs::LogGroup") {
        assert!(
            g["Properties"]["RetentionInDays"].is_object(),
            "{id}: retention from the LogRetentionDays parameter"
        );
    }
    for (id, table) in of_type(&t, "AWS::DynamoDB::Table") {
        let p = &table["Properties"];
        assert_eq!(p["BillingMode"], "PAY_PER_REQUEST", "{id}");
        assert_eq!(
            p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], true,
            "{id}"
        );
        assert_eq!(p["SSESpecification"]["SSEEnabled"], true, "{id}");
        assert_eq!(p["TimeToLiveSpecification"]["Enabled"], true, "{id}");
    }
    for name in [
        "Issuer",
        "Audience",
        "ModelBackend",
        "AuditContentMode",
        "AuditRetentionDays",
        "LogRetentionDays",
    ] {
        assert!(t["Parameters"].get(name).is_some(), "parameter {name}");
    }
}

#[test]
fn alarms_watch_errors_and_decision_spikes() {
    let t = translated();
    let alarms: Vec<(String, String, String)> = of_type(&t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(_, a)| {
            let p = &a["Properties"];
            (
                p["Namespace"].as_str().unwrap().to_owned(),
                p["MetricName"].as_str().unwrap().to_owned(),
                target(&p["Dimensions"][0]["Value"]).unwrap().to_owned(),
            )
        })
        .collect();
    for want in [
        ("AWS/Lambda", "Errors", "AuthorizerFunction"),
        ("AWS/Lambda", "Errors", "PredictFunction"),
        ("AWS/Lambda", "Errors", "SentinelFunction"),
        ("AWS/Lambda", "Errors", "ReaderFunction"),
        ("AWS/Lambda", "IteratorAge", "SentinelFunction"),
        ("Gatehouse", "Denied", "AuthorizerFunction"),
        ("Gatehouse", "Blocked", "PredictFunction"),
        ("Gatehouse", "RateLimited", "PredictFunction"),
        (
            "Gatehouse",
            gatehouse::metrics::SUSPENSION_STARTED,
            "PredictFunction",
        ),
        ("Gatehouse", "JwksSyncFailed", "JwksSyncFunction"),
        ("AWS/Lambda", "Errors", "JwksSyncFunction"),
        // Fail-closed 503s (audit or rate store unavailable) and sentinel findings.
        ("Gatehouse", "Unavailable", "PredictFunction"),
        (
            "Gatehouse",
            gatehouse::audit::sentinel::FINDINGS_METRIC,
            "SentinelFunction",
        ),
    ] {
        assert!(
            alarms
                .iter()
                .any(|(n, m, d)| (n.as_str(), m.as_str(), d.as_str()) == want),
            "no alarm {want:?}"
        );
    }
    // The EMF metric names the functions emit are the ones alarmed on.
    for m in ["Denied", "Blocked", "RateLimited", "Unavailable"] {
        assert!(
            gatehouse::audit::Decision::ALL
                .iter()
                .any(|d| d.metric_name() == m)
        );
    }
}

#[test]
fn jwks_sync_runs_on_a_schedule_and_once_per_deploy() {
    let t = translated();
    // The EventBridge rule SAM generates from the Schedule event, with the period parameter.
    let rules = of_type(&t, "AWS::Events::Rule");
    assert_eq!(rules.len(), 1);
    let rule = &rules[0].1["Properties"];
    assert_eq!(
        rule["ScheduleExpression"],
        json!({"Fn::Sub": "rate(${JwksSyncPeriodMinutes} minutes)"})
    );
    assert_eq!(target(&rule["Targets"][0]["Arn"]), Some("JwksSyncFunction"));
    assert_eq!(param_default(&t, "JwksSyncPeriodMinutes"), 15);
    // The custom resource that runs one sync during the deploy, with a bounded wait.
    let init = &resources(&t)["JwksInitialSync"]["Properties"];
    assert_eq!(target(&init["ServiceToken"]), Some("JwksSyncFunction"));
    assert!(init["ServiceTimeout"].as_u64().unwrap() <= 300);
    // Manual JWKS stays the default: nothing is fetched unless a provider is configured.
    assert_eq!(param_default(&t, "OidcDiscovery"), "false");
    assert_eq!(param_default(&t, "JwksUrl"), "");
    // The authorizer gets no outbound-HTTP configuration: it only reads the secret.
    let auth_env = &resources(&t)["AuthorizerFunction"]["Properties"]["Environment"]["Variables"];
    for k in ["GATEHOUSE_JWKS_URL", "GATEHOUSE_OIDC_DISCOVERY"] {
        assert!(auth_env.get(k).is_none(), "{k} on the authorizer");
    }
}
