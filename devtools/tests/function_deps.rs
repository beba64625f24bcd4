//! Each function links only what it uses (`cargo tree -p <function>`): only jwks-sync is built
//! with gatehouse-shared's `jwks-sync` feature (the one module that makes requests of its own,
//! to the identity provider: the authorizer never calls out per request, and predict only talks
//! to AWS); jwks-sync has neither the policy engine nor DynamoDB nor Bedrock nor the prompt screen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::process::Command;

fn cargo_tree(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(gatehouse_dev::paths::repo_root())
        .arg("tree")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn deps(function: &str) -> BTreeSet<String> {
    cargo_tree(&[
        "-p", function, "-e", "normal", "--prefix", "none", "--format", "{p}",
    ])
    .lines()
    .filter_map(|l| l.split_whitespace().next())
    .map(str::to_owned)
    .collect()
}

/// The features of gatehouse-shared a function is built with.
fn shared_features(function: &str) -> BTreeSet<String> {
    cargo_tree(&[
        "-p",
        function,
        "-e",
        "features",
        "-i",
        "gatehouse-shared",
        "--prefix",
        "none",
    ])
    .lines()
    .filter_map(|l| l.strip_prefix("gatehouse-shared feature \""))
    .filter_map(|l| l.split('"').next())
    .map(str::to_owned)
    .collect()
}

#[test]
fn only_jwks_sync_fetches_from_the_identity_provider() {
    for f in ["authorizer", "predict"] {
        let features = shared_features(f);
        assert!(
            !features.is_empty(),
            "{f}: no gatehouse-shared features read"
        );
        assert!(
            !features.contains("jwks-sync"),
            "{f} is built with jwks-sync: {features:?}"
        );
        assert!(!deps(f).contains("reqwest"), "{f} links reqwest");
    }
    assert!(shared_features("jwks-sync").contains("jwks-sync"));
    let sync = deps("jwks-sync");
    assert!(sync.contains("hyper-rustls") && sync.contains("aws-sdk-secretsmanager"));
    for unused in [
        "cedar-policy",
        "aws-sdk-dynamodb",
        "aws-sdk-bedrockruntime",
        "unicode-security",
        "aws_lambda_events",
        "reqwest",
    ] {
        assert!(!sync.contains(unused), "jwks-sync links {unused}");
    }
}
