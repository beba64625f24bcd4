//! Helpers for the workspace-level tests: fixtures, the running stack's URLs, dev tokens.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

pub mod ddb;

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// A JSON fixture from `tests/fixtures/`, with `TOKEN` replaced where given.
pub fn fixture(name: &str, token: Option<&str>) -> serde_json::Value {
    let mut text = std::fs::read_to_string(fixture_path(name)).unwrap();
    if let Some(t) = token {
        text = text.replace("TOKEN", t);
    }
    serde_json::from_str(&text).unwrap()
}

/// An environment variable `cargo xtask test` sets after starting the local stack.
pub fn stack_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run these tests with `cargo xtask test`, which starts the local stack")
    })
}

/// A token signed with the dev key, with the template's issuer and audience.
pub fn dev_token(sub: &str, roles: &[&str], tenant: Option<&str>, ttl_secs: u64) -> String {
    gatehouse_dev::devkeys::mint_dev_token(sub, roles, tenant, ttl_secs).unwrap()
}

/// The principal key (issuer hash#tenant#sub) of a dev token's subject, as counters and the audit
/// index name it.
pub fn dev_principal_key(sub: &str, tenant: Option<&str>) -> String {
    let (issuer, _) = gatehouse_dev::oidc::dev_token_claims().unwrap();
    gatehouse::principal::principal_key(&issuer, tenant, sub)
}

/// The emulator to use: the stack's (under `cargo xtask test`) or a fresh one on `port`.
pub async fn emulator(port: u16) -> (String, Option<gatehouse_dev::emulator::Emulator>) {
    match std::env::var("GATEHOUSE_EMULATOR_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let e = gatehouse_dev::emulator::Emulator::start(port)
                .await
                .unwrap();
            (e.endpoint.clone(), Some(e))
        }
    }
}
