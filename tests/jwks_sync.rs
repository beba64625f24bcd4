//! jwks-sync end to end: the stack's local OpenID Connect provider rotates its keys, jwks-sync
//! (under cargo lambda watch, invoked as EventBridge would) copies them into the JWKS secret in
//! the emulator, and the real authorizer behind the local gateway follows: a new key is accepted
//! after a sync, the old one while it is in AWSPREVIOUS, and refused after the next rotation.
//! Then the provider misbehaves (HTTP 500, a hang, an oversized or malformed JWKS, a redirect to
//! another host): each run fails with its reason, the secret keeps its version, and the
//! authorizer keeps serving. The test stack refreshes keys every 2 s (unknown kid: 1 s) and
//! gives jwks-sync a 1 s timeout (xtask/src/checks.rs). Every key set keeps the dev key, so the
//! stack serves other tests' tokens throughout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use gatehouse_dev::devkeys::{self, DevKey, TokenSpec};
use gatehouse_dev::oidc::{Fault, OidcAdmin};
use gatehouse_tests::stack_var;
use serde_json::Value;

struct Env {
    admin: OidcAdmin,
    sdk: aws_config::SdkConfig,
    client: reqwest::Client,
    invoke: String,
    gateway: String,
    issuer: String,
    audience: String,
}

impl Env {
    async fn new() -> Self {
        let issuer = stack_var("GATEHOUSE_DEV_ISSUER");
        let (_, audience) = gatehouse_dev::oidc::dev_token_claims().unwrap();
        Self {
            admin: OidcAdmin::new(&issuer),
            sdk: gatehouse_dev::emulator::sdk_config(&stack_var("GATEHOUSE_EMULATOR_URL")).await,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            invoke: stack_var("GATEHOUSE_INVOKE_URL"),
            gateway: stack_var("GATEHOUSE_GATEWAY_URL"),
            issuer,
            audience,
        }
    }

    /// One run, as the schedule would start it; its report.
    async fn sync(&self) -> Value {
        gatehouse_dev::stack::run_jwks_sync(&self.client, &self.invoke)
            .await
            .unwrap_or_else(|e| panic!("jwks-sync must answer, not fail: {e:#}"))
    }

    async fn publish(&self, keys: &[&DevKey]) {
        let keys: Vec<Value> = keys.iter().map(|k| k.public_jwk()).collect();
        self.admin.set_keys(&keys).await.unwrap();
    }

    /// (version id, document) of the JWKS secret's AWSCURRENT.
    async fn current(&self) -> (String, String) {
        let out = aws_sdk_secretsmanager::Client::new(&self.sdk)
            .get_secret_value()
            .secret_id("JwksSecret")
            .version_stage("AWSCURRENT")
            .send()
            .await
            .unwrap();
        (out.version_id.unwrap(), out.secret_string.unwrap())
    }

    /// A fresh token (new jti, so no gateway-cache hit) signed by `key`.
    fn token(&self, key: &DevKey) -> String {
        let spec = TokenSpec::new(
            "jwks-sync-e2e",
            &["ai_operator"],
            None,
            300,
            self.issuer.clone(),
            self.audience.clone(),
        );
        devkeys::mint(key, &spec).unwrap()
    }

    /// The status of POST /v1/predict through the local gateway with a fresh token of `key`.
    async fn call(&self, key: &DevKey) -> u16 {
        self.client
            .post(format!("{}/v1/predict", self.gateway))
            .bearer_auth(self.token(key))
            .header("content-type", "application/json")
            .body(r#"{"prompt":"hello"}"#)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

fn kids(report: &Value) -> Vec<&str> {
    report["kids"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Past the unknown-kid refresh interval (1 s) and the key refresh period (2 s).
async fn pause() {
    tokio::time::sleep(Duration::from_millis(2200)).await;
}

#[tokio::test]
async fn provider_rotation_reaches_the_authorizer_and_a_failing_provider_changes_nothing() {
    let env = Env::new().await;
    let dev = devkeys::ensure_dev_key().unwrap();
    let [a, b, c, d] =
        ["sync-a", "sync-b", "sync-c", "sync-d"].map(|k| DevKey::generate(k).unwrap());

    // --- rotation through the provider ---
    assert_eq!(
        env.call(&a).await,
        403,
        "A is not trusted before it is published"
    );
    pause().await;
    env.publish(&[&dev, &a]).await;
    let r = env.sync().await;
    assert_eq!(r["outcome"], "updated", "{r}");
    assert!(kids(&r).contains(&"sync-a"), "{r}");
    assert_eq!(
        env.call(&a).await,
        200,
        "A accepted after the sync (unknown-kid refresh)"
    );
    let (version, _) = env.current().await;
    let r = env.sync().await;
    assert_eq!(r["outcome"], "unchanged", "{r}");
    assert_eq!(
        env.current().await.0,
        version,
        "no put when the set is unchanged"
    );

    pause().await;
    env.publish(&[&dev, &b]).await; // CURRENT {dev, B}, PREVIOUS {dev, A}
    assert_eq!(env.sync().await["outcome"], "updated");
    assert_eq!(env.call(&b).await, 200, "new key B");
    assert_eq!(
        env.call(&a).await,
        200,
        "A is still accepted from AWSPREVIOUS"
    );

    pause().await;
    env.publish(&[&dev, &c]).await; // CURRENT {dev, C}, PREVIOUS {dev, B}: A gone
    assert_eq!(env.sync().await["outcome"], "updated");
    pause().await; // past the authorizer's 2 s key refresh
    assert_eq!(env.call(&c).await, 200, "new key C");
    assert_eq!(env.call(&b).await, 200, "B is now AWSPREVIOUS");
    assert_eq!(env.call(&a).await, 403, "A refused after the next rotation");

    // --- a failing provider: the secret keeps its version, the authorizer keeps serving ---
    // The provider now publishes D: had any of these runs succeeded, the secret would change.
    env.publish(&[&dev, &d]).await;
    let before = env.current().await;
    for (fault, reason) in [
        (Fault::Status500, "http_status"),
        (Fault::Timeout, "timeout"),
        (Fault::Oversized, "too_large"),
        (Fault::Malformed, "invalid_jwks"),
        (Fault::Redirect, "redirect_refused"),
    ] {
        env.admin.set_fault(fault).await.unwrap();
        let r = env.sync().await;
        assert_eq!(
            (r["outcome"].as_str(), r["reason"].as_str()),
            (Some("failed"), Some(reason)),
            "{fault:?}: {r}"
        );
        assert_eq!(env.current().await, before, "{fault:?}: the secret changed");
        assert_eq!(
            env.call(&dev).await,
            200,
            "{fault:?}: the authorizer stopped serving"
        );
        assert_eq!(env.call(&c).await, 200, "{fault:?}: C is still current");
    }
    // The faults were the only obstacle: with the provider healthy again, D arrives.
    env.admin.set_fault(Fault::None).await.unwrap();
    let r = env.sync().await;
    assert_eq!(r["outcome"], "updated", "{r}");
    assert!(kids(&r).contains(&"sync-d"), "{r}");
    // Back to the dev key alone for whatever runs next.
    env.publish(&[&dev]).await;
    assert_eq!(env.sync().await["outcome"], "updated");
}
