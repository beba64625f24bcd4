//! One fixture token per claims preset: the provider's access-token shape
//! (`tests/fixtures/claims/<preset>.json`) minted with a dev key and read back by the
//! authorizer's own verification and route policy with that preset. Then, per preset, the same
//! strictness: the roles claim in the wrong JSON type, or a role that is not a plain identifier,
//! is refused; where the provider marks access tokens, its ID tokens are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::SystemTime;

use gatehouse::auth::{KeyRing, TokenPolicy, verify};
use gatehouse::config::claims::Preset;
use gatehouse::policy::PolicyStore;
use gatehouse_dev::devkeys::{self, DevKey, TokenSpec};
use gatehouse_dev::presets::{self, DEV_CLIENT_ID};
use serde_json::{Value, json};

const ISS: &str = "https://idp.example.test/";
const AUD: &str = "gatehouse-api";

fn policy(preset: Preset) -> TokenPolicy {
    let mut claims = preset.mapping();
    claims.allowed_clients = vec![DEV_CLIENT_ID.into()];
    TokenPolicy {
        claims,
        ..TokenPolicy::new(ISS, AUD)
    }
}

fn spec(preset: Preset) -> TokenSpec {
    let mut s = TokenSpec::new(
        "alice",
        &["ai_operator"],
        Some("acme"),
        900,
        ISS.into(),
        AUD.into(),
    );
    s.preset = preset;
    s
}

/// The reason code of verifying `claims` signed by `key` under `preset`.
fn check(key: &DevKey, ring: &KeyRing, preset: Preset, claims: &Value) -> Result<(), &'static str> {
    let token = key.sign(claims).unwrap();
    verify(
        ring,
        &policy(preset),
        &format!("Bearer {token}"),
        SystemTime::now(),
    )
    .map(drop)
    .map_err(|f| f.reason())
}

#[test]
fn every_preset_reads_its_providers_token() {
    let key = DevKey::generate("preset-key").unwrap();
    let (ring, _) = KeyRing::from_jwks(&devkeys::public_jwks(&key), None).unwrap();
    let store = PolicyStore::embedded().unwrap();
    let now = gatehouse::clock::unix_secs(SystemTime::now());
    for preset in Preset::ALL {
        let name = preset.as_str();
        let token = devkeys::mint(&key, &spec(preset)).unwrap();
        let id = verify(
            &ring,
            &policy(preset),
            &format!("Bearer {token}"),
            SystemTime::now(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let p = &id.principal;
        assert_eq!(p.sub, "alice", "{name}");
        assert_eq!(p.issuer, ISS, "{name}");
        assert_eq!(p.roles, ["ai_operator"], "{name}");
        assert_eq!(p.tenant.as_deref(), Some("acme"), "{name}");
        assert!(
            store.authorize_route(p, "POST /v1/predict").allowed,
            "{name}: the route policy allows the mapped role"
        );

        // The same token with the roles claim in the wrong JSON type, or with a role that would
        // smuggle a second one through the comma-joined context, is refused.
        let mapping = preset.mapping();
        let roles_path = mapping.roles[0].path.segments().to_vec();
        let base = presets::claims_for(&spec(preset), now).unwrap();
        let with_roles = |v: Value| {
            let mut c = base.as_object().unwrap().clone();
            presets::set_path(&mut c, &roles_path, v);
            Value::Object(c)
        };
        assert_eq!(check(&key, &ring, preset, &base), Ok(()), "{name}");
        assert_eq!(
            check(
                &key,
                &ring,
                preset,
                &with_roles(json!({"ai_operator": true}))
            ),
            Err("invalid_claim"),
            "{name}: roles as an object"
        );
        assert_eq!(
            check(
                &key,
                &ring,
                preset,
                &with_roles(json!(["analyst,ai_operator"]))
            ),
            Err("invalid_claim"),
            "{name}: a role with a comma"
        );
        assert_eq!(
            check(&key, &ring, preset, &with_roles(json!(42))),
            Err("invalid_claim"),
            "{name}: roles as a number"
        );
        // A tenant of the wrong type is refused too.
        if let Some(t) = &mapping.tenant {
            let mut c = base.as_object().unwrap().clone();
            presets::set_path(&mut c, t.segments(), json!(["acme"]));
            assert_eq!(
                check(&key, &ring, preset, &Value::Object(c)),
                Err("invalid_claim"),
                "{name}: tenant as an array"
            );
        }
        // Where the provider marks access tokens, its ID tokens are refused.
        if let Some((claim, _)) = &mapping.access_token_claim {
            let mut c = base.as_object().unwrap().clone();
            c.insert(
                claim.clone(),
                json!(if claim == "typ" { "ID" } else { "id" }),
            );
            assert_eq!(
                check(&key, &ring, preset, &Value::Object(c)),
                Err("wrong_token_type"),
                "{name}: an ID token"
            );
        }
    }
}

#[test]
fn cognito_access_tokens_name_a_client_instead_of_an_audience() {
    let key = DevKey::generate("cognito-key").unwrap();
    let (ring, _) = KeyRing::from_jwks(&devkeys::public_jwks(&key), None).unwrap();
    let now = gatehouse::clock::unix_secs(SystemTime::now());
    let c = presets::claims_for(&spec(Preset::Cognito), now).unwrap();
    assert!(c.get("aud").is_none(), "Cognito access tokens carry no aud");
    assert_eq!(c["client_id"], DEV_CLIENT_ID);
    assert_eq!(c["token_use"], "access");
    assert_eq!(c["cognito:groups"], json!(["ai_operator"]));
    let mut other = spec(Preset::Cognito);
    other.client_id = Some("someone-elses-app".into());
    let c = presets::claims_for(&other, now).unwrap();
    assert_eq!(
        check(&key, &ring, Preset::Cognito, &c),
        Err("wrong_audience")
    );
}
