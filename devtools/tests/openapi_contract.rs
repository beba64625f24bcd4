//! infra/openapi.yaml against the template and the code: every route the template declares is
//! documented (and nothing else), and every answer the functions or API Gateway can give —
//! status, content type, title, extension members, rate-limit headers — is in the document;
//! every problem type has its section in docs/problems.md. schemathesis (run by
//! `cargo xtask test`) then holds the running stack to it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use gatehouse::error::{ApiError, LimitName, ModelRefusal};
use gatehouse::http::{PROBLEM_TYPES, RatePolicy, problem_response, set_rate_policies};
use gatehouse_dev::template::Template;
use serde_norway::Value;

fn spec() -> Value {
    let path = gatehouse_dev::paths::repo_root().join("infra/openapi.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Follows a `$ref` within the document.
fn deref<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .trim_start_matches("#/")
            .split('/')
            .fold(spec, |node, part| &node[part]),
        None => v,
    }
}

fn every_error() -> Vec<ApiError> {
    let field = gatehouse::api::FieldError::at("max_tokens", "x");
    vec![
        ApiError::Unauthenticated,
        ApiError::TokenExpired,
        ApiError::UnsupportedMediaType,
        ApiError::PayloadTooLarge { limit: 1 },
        ApiError::Invalid {
            errors: vec![field.clone()],
        },
        ApiError::Forbidden { reason: "x".into() },
        ApiError::RoleLimit {
            errors: vec![field],
        },
        ApiError::ModelUnavailable {
            model: "m".into(),
            cause: ModelRefusal::OtherTenant,
        },
        ApiError::Suspended { until: 1 },
        ApiError::RateLimited {
            limit: LimitName::Model,
            quota: 1,
            window: Duration::from_secs(60),
            retry_after: Duration::from_secs(1),
        },
        ApiError::TokenBudget {
            limit: LimitName::TenantTokensMonth,
            requested: 9,
            remaining: 1,
            retry_after: Duration::from_secs(1),
        },
        ApiError::SuspiciousPrompt { rules: vec![] },
        ApiError::Backend("x".into()),
        ApiError::BackendTimeout,
        ApiError::Unavailable("x".into()),
    ]
}

#[test]
fn every_template_route_is_documented_and_nothing_else() {
    let t = Template::load(&gatehouse_dev::paths::template_path()).unwrap();
    let routes: BTreeSet<String> = t.routes().unwrap().iter().map(|r| r.route_key()).collect();
    let spec = spec();
    let mut documented = BTreeSet::new();
    for (path, ops) in spec["paths"].as_mapping().unwrap() {
        for (method, _) in ops.as_mapping().unwrap() {
            documented.insert(format!(
                "{} {}",
                method.as_str().unwrap().to_ascii_uppercase(),
                path.as_str().unwrap()
            ));
        }
    }
    assert_eq!(routes, documented);
    // The predict function and the audit reader serve exactly these routes between them.
    let served: BTreeSet<String> = gatehouse::routes::ROUTES
        .iter()
        .chain([&gatehouse::audit::reader::ROUTE])
        .map(|r| r.to_string())
        .collect();
    assert_eq!(routes, served);
}

#[test]
fn every_answer_the_code_gives_is_documented() {
    let spec = spec();
    let responses = &spec["paths"]["/v1/predict"]["post"]["responses"];
    let problem = &spec["components"]["schemas"]["Problem"];
    let titles: Vec<&str> = problem["properties"]["title"]["enum"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let members: Vec<&str> = problem["properties"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    for err in every_error() {
        let mut r = problem_response(&err, "rid", "https://x.invalid/p/");
        // Every predict answer past the counters carries the RateLimit fields.
        set_rate_policies(
            r.headers_mut(),
            &[RatePolicy {
                name: LimitName::Tokens,
                quota: 1,
                window_secs: 1,
                remaining: 0,
                reset_secs: 1,
            }],
        );
        let status = r.status().as_u16().to_string();
        let doc = deref(&spec, &responses[status.as_str()]);
        assert!(
            doc["content"]["application/problem+json"].is_mapping(),
            "{status} problem+json is not documented"
        );
        let body: serde_json::Value = serde_json::from_str(r.body()).unwrap();
        assert!(
            titles.contains(&body["title"].as_str().unwrap()),
            "title {} missing from the Problem schema",
            body["title"]
        );
        for key in body.as_object().unwrap().keys() {
            assert!(
                members.contains(&key.as_str()),
                "{status}: member {key} is not in the Problem schema"
            );
        }
        for name in r.headers().keys() {
            let generic = ["content-type", "cache-control", "x-content-type-options"];
            let documented = doc["headers"]
                .as_mapping()
                .into_iter()
                .flatten()
                .any(|(k, _)| k.as_str().unwrap().eq_ignore_ascii_case(name.as_str()));
            // 401/413/415/503 come before the counters: no RateLimit fields there.
            let before_counters = ["401", "413", "415", "503"].contains(&status.as_str())
                && name.as_str().starts_with("ratelimit");
            assert!(
                documented || generic.contains(&name.as_str()) || before_counters,
                "{status}: header {name} is not documented"
            );
        }
    }
    // API Gateway's own answers: {"message": ...} as application/json, on every route.
    for (path, ops) in spec["paths"].as_mapping().unwrap() {
        for (method, op) in ops.as_mapping().unwrap() {
            for status in ["401", "403", "429", "500"] {
                let doc = deref(&spec, &op["responses"][status]);
                assert!(
                    doc["content"]["application/json"]["schema"]["$ref"]
                        .as_str()
                        .is_some_and(|s| s.ends_with("/GatewayMessage")),
                    "{method:?} {path:?} {status}: API Gateway's message body is not documented"
                );
            }
        }
    }
    for header in [
        "Retry-After",
        "RateLimit",
        "RateLimit-Policy",
        "apigw-requestid",
    ] {
        assert!(
            responses["429"]["headers"][header].is_mapping(),
            "429 lacks {header}"
        );
    }
    for header in ["RateLimit", "RateLimit-Policy", "apigw-requestid"] {
        assert!(
            responses["200"]["headers"][header].is_mapping(),
            "200 lacks {header}"
        );
    }
}

#[test]
fn rate_limit_fields_match_the_documented_pattern() {
    let spec = spec();
    let pattern = |name: &str| {
        regex::Regex::new(
            spec["components"]["headers"][name]["schema"]["pattern"]
                .as_str()
                .unwrap(),
        )
        .unwrap()
    };
    let mut h = http::HeaderMap::new();
    let names = [
        LimitName::Role,
        LimitName::Model,
        LimitName::Tokens,
        LimitName::TokensMonth,
        LimitName::TenantTokens,
        LimitName::TenantTokensMonth,
    ];
    let policies: Vec<RatePolicy> = names
        .iter()
        .map(|n| RatePolicy {
            name: *n,
            quota: 10,
            window_secs: 60,
            remaining: 3,
            reset_secs: 7,
        })
        .collect();
    for n in 1..=policies.len() {
        set_rate_policies(&mut h, &policies[..n]);
        assert!(pattern("RateLimit").is_match(h["ratelimit"].to_str().unwrap()));
        assert!(pattern("RateLimitPolicy").is_match(h["ratelimit-policy"].to_str().unwrap()));
    }
}

/// docs/problems.md: one section per problem type, headed by its slug, giving its status and
/// title, what it means, a typical cause and the fix.
#[test]
fn every_problem_type_has_its_section_in_docs_problems() {
    let text = std::fs::read_to_string(gatehouse_dev::paths::repo_root().join("docs/problems.md"))
        .unwrap();
    let sections: Vec<(&str, &str)> = text
        .split("\n## ")
        .skip(1)
        .map(|s| s.split_once('\n').unwrap_or((s, "")))
        .collect();
    let headed: Vec<&str> = sections.iter().map(|(h, _)| h.trim()).collect();
    let slugs: Vec<&str> = PROBLEM_TYPES.iter().map(|t| t.0).collect();
    assert_eq!(
        headed, slugs,
        "one section per type, in PROBLEM_TYPES order"
    );
    for ((_, body), (slug, status, title)) in sections.iter().zip(PROBLEM_TYPES) {
        assert!(
            body.contains(&format!("**{status} {title}**")),
            "{slug}: status and title"
        );
        for part in ["Meaning:", "Typical cause:", "Fix:"] {
            assert!(body.contains(part), "{slug}: no {part}");
        }
    }
}
