//! infra/openapi.yaml against the template and the code: every route the template declares is
//! documented (and nothing else), and every answer the predict function or API Gateway can give
//! — status, content type, title, rate-limit headers — is in the document. schemathesis (run by
//! `cargo xtask test`) then holds the running stack to it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use gatehouse::error::ApiError;
use gatehouse::http::problem_response;
use gatehouse_dev::template::Template;
use serde_norway::Value;

fn spec() -> Value {
    let path = gatehouse_dev::paths::repo_root().join("infra/openapi.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn every_error() -> Vec<ApiError> {
    vec![
        ApiError::Unauthenticated,
        ApiError::TokenExpired,
        ApiError::UnsupportedMediaType,
        ApiError::PayloadTooLarge { limit: 1 },
        ApiError::invalid("prompt", "x"),
        ApiError::Forbidden { reason: "x".into() },
        ApiError::RateLimited {
            limit: 1,
            window: Duration::from_secs(60),
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
}

#[test]
fn every_answer_the_code_gives_is_documented() {
    let spec = spec();
    let responses = &spec["paths"]["/v1/predict"]["post"]["responses"];
    let titles: Vec<&str> = spec["components"]["schemas"]["Problem"]["properties"]["title"]["enum"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for err in every_error() {
        let r = problem_response(&err, "rid");
        let status = r.status().as_u16().to_string();
        let doc = &responses[status.as_str()];
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
        for name in r.headers().keys() {
            let documented = doc["headers"]
                .as_mapping()
                .into_iter()
                .flatten()
                .any(|(k, _)| k.as_str().unwrap().eq_ignore_ascii_case(name.as_str()));
            let generic = ["content-type", "cache-control", "x-content-type-options"];
            assert!(
                documented || generic.contains(&name.as_str()),
                "{status}: header {name} is not documented"
            );
        }
    }
    // API Gateway's own answers: {"message": ...} as application/json.
    for status in ["401", "403", "429", "500"] {
        assert!(
            responses[status]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .is_some_and(|s| s.ends_with("/GatewayMessage")),
            "{status}: API Gateway's message body is not documented"
        );
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
