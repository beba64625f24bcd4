//! Key rotation end to end: the JWKS secret is rotated in the emulator (PutSecretValue moves
//! AWSCURRENT to AWSPREVIOUS) while the real authorizer runs under cargo lambda watch, invoked
//! through its Lambda invoke API. The test stack runs the authorizer with a 2 s key refresh and
//! a 1 s unknown-kid refresh interval (see xtask/src/checks.rs) so this takes seconds.
//! Every JWKS version keeps the dev key, so end-to-end tests running alongside are unaffected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use gatehouse_dev::devkeys::{self, DevKey, TokenSpec};
use gatehouse_tests::{fixture, stack_var};
use serde_json::json;

fn token(key: &DevKey) -> String {
    let (issuer, audience) = gatehouse_dev::oidc::dev_token_claims().unwrap();
    let spec = TokenSpec::new("rotation", &["ai_operator"], None, 300, issuer, audience);
    devkeys::mint(key, &spec).unwrap()
}

async fn authorized(token: &str) -> bool {
    let event = fixture("authorizer-v2-request.json", Some(token));
    let invoke_url = stack_var("GATEHOUSE_INVOKE_URL");
    let out = gatehouse_dev::gateway::invoke_function(
        &reqwest::Client::new(),
        &invoke_url,
        "authorizer",
        &event,
    )
    .await
    .unwrap_or_else(|e| panic!("the authorizer must answer, not fail: {e:#}"));
    out["isAuthorized"].as_bool().unwrap()
}

async fn rotate_to(sdk: &aws_config::SdkConfig, keys: &[&DevKey]) {
    let jwks =
        json!({ "keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>() }).to_string();
    gatehouse_dev::bootstrap::put_secret(sdk, "JwksSecret", &jwks)
        .await
        .unwrap();
}

#[tokio::test]
async fn old_and_new_keys_verify_across_rotation_and_a_dropped_key_stops() {
    let sdk = gatehouse_dev::emulator::sdk_config(&stack_var("GATEHOUSE_EMULATOR_URL")).await;
    let dev = devkeys::ensure_dev_key().unwrap();
    let (a, b, c) = (
        DevKey::generate("rot-a").unwrap(),
        DevKey::generate("rot-b").unwrap(),
        DevKey::generate("rot-c").unwrap(),
    );
    let (ta, tb, tc) = (token(&a), token(&b), token(&c));
    let pause = || tokio::time::sleep(Duration::from_millis(2200));

    assert!(
        !authorized(&ta).await,
        "A is not trusted before it is published"
    );
    pause().await;
    rotate_to(&sdk, &[&dev, &a]).await; // CURRENT {dev, A}
    assert!(
        authorized(&ta).await,
        "a new CURRENT kid is picked up via the unknown-kid refresh"
    );

    pause().await;
    rotate_to(&sdk, &[&dev, &b]).await; // CURRENT {dev, B}, PREVIOUS {dev, A}
    assert!(authorized(&tb).await, "new CURRENT key B");
    assert!(authorized(&ta).await, "A is still AWSPREVIOUS");

    pause().await;
    rotate_to(&sdk, &[&dev, &c]).await; // CURRENT {dev, C}, PREVIOUS {dev, B}: A dropped
    pause().await; // past the 2 s refresh period
    assert!(authorized(&tc).await, "new CURRENT key C");
    assert!(authorized(&tb).await, "B is now AWSPREVIOUS");
    assert!(
        !authorized(&ta).await,
        "A was dropped by the second rotation"
    );
}
