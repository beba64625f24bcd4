//! Each function links only what it uses (`cargo tree -p <function> -e normal`): the authorizer
//! and predict have no general-purpose HTTP client (the authorizer never calls out per request;
//! only jwks-sync fetches the identity provider's keys), and jwks-sync has neither the policy
//! engine nor DynamoDB nor Bedrock nor the prompt screen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::process::Command;

fn deps(function: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(gatehouse_dev::paths::repo_root())
        .args([
            "tree", "-p", function, "-e", "normal", "--prefix", "none", "--format", "{p}",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn only_jwks_sync_links_an_http_client() {
    let http_clients = [
        "reqwest",
        "rustls-platform-verifier",
        "ureq",
        "isahc",
        "curl",
    ];
    for f in ["authorizer", "predict"] {
        let d = deps(f);
        for c in http_clients {
            assert!(!d.contains(c), "{f} links {c}");
        }
    }
    let sync = deps("jwks-sync");
    assert!(sync.contains("reqwest") && sync.contains("aws-sdk-secretsmanager"));
    for unused in [
        "cedar-policy",
        "aws-sdk-dynamodb",
        "aws-sdk-bedrockruntime",
        "unicode-security",
        "aws_lambda_events",
    ] {
        assert!(!sync.contains(unused), "jwks-sync links {unused}");
    }
}
