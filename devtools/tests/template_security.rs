//! Security properties of the deployed template, asserted on the SAM-translated CloudFormation
//! (`.local/template.translated.json`, written by `cargo xtask test`'s translate step just before
//! the tests run), so what is checked is what CloudFormation would create, generated resources
//! included.
//!
//! The only wildcards allowed in IAM are the ones AWS imposes: the `:*` log-stream suffix that
//! `Fn::GetAtt LogGroup.Arn` carries (Lambda names its log streams), and SAM's
//! `lambda:InvokeFunction` permissions for API Gateway, whose SourceArn ends in
//! `/authorizers/*` (the authorizer id) — a resource policy, not a role.
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
    assert_eq!(roles.len(), 3, "one role per function, nothing else");
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
                let to = target(r)
                    .unwrap_or_else(|| panic!("{role_id}: resource {r} is not a Ref/GetAtt"));
                if let Some(get_att) = r.get("Fn::GetAtt") {
                    assert_eq!(get_att[1], "Arn", "{role_id}: {r}");
                }
                for a in &actions {
                    granted.insert((a.clone(), to.to_owned()));
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
    for (role_id, role) in of_type(&t, "AWS::IAM::Role") {
        for s in statements(role) {
            let on_audit = as_list(&s["Resource"])
                .iter()
                .any(|r| target(r) == Some("AuditTable"));
            if on_audit {
                assert_eq!(
                    strings(&s["Action"]),
                    vec!["dynamodb:PutItem".to_string()],
                    "{role_id}: only PutItem on the audit table"
                );
            }
        }
    }
    let audit = &resources(&t)["AuditTable"];
    assert_eq!(audit["DeletionPolicy"], "Retain");
    assert_eq!(audit["UpdateReplacePolicy"], "Retain");
    assert_eq!(audit["Properties"]["DeletionProtectionEnabled"], true);
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
                assert_eq!(branches[0], "UseBedrock");
                assert_eq!(branches[1]["Resource"], json!({"Ref": "BedrockModelArns"}));
                assert_eq!(branches[2], json!({"Ref": "AWS::NoValue"}));
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
        assert!((1..30).contains(&timeout), "{id}: below HTTP API's 30 s");
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
    ] {
        assert!(
            alarms
                .iter()
                .any(|(n, m, d)| (n.as_str(), m.as_str(), d.as_str()) == want),
            "no alarm {want:?}"
        );
    }
    // The EMF metric names the functions emit are the ones alarmed on.
    for m in ["Denied", "Blocked", "RateLimited"] {
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
