//! Adapters against the emulator over the real wire protocol (SigV4-signed HTTP).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gatehouse::auth::JwksSource;
use gatehouse::secrets::{AWSCURRENT, AWSPREVIOUS, SecretsManagerJwks, get_staged};
use gatehouse_tests::emulator;
use secrecy::{ExposeSecret, SecretString};

fn expose(s: &SecretString) -> &str {
    s.expose_secret()
}

#[tokio::test]
async fn jwks_source_reads_current_and_previous_across_rotation() {
    let (endpoint, _own) = emulator(gatehouse_tests::ddb::port(4590)).await;
    let sdk = gatehouse_dev::emulator::sdk_config(&endpoint).await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let name = format!("jwks-test-{}", uuid::Uuid::new_v4());
    client
        .create_secret()
        .name(&name)
        .secret_string(r#"{"keys":["v1"]}"#)
        .send()
        .await
        .unwrap();

    let v = SecretsManagerJwks::new(client.clone(), &name)
        .fetch()
        .await
        .unwrap();
    assert_eq!(expose(&v.current), r#"{"keys":["v1"]}"#);
    assert!(v.previous.is_none(), "a fresh secret has no AWSPREVIOUS");

    client
        .put_secret_value()
        .secret_id(&name)
        .secret_string(r#"{"keys":["v2"]}"#)
        .send()
        .await
        .unwrap();
    let v = SecretsManagerJwks::new(client.clone(), &name)
        .fetch()
        .await
        .unwrap();
    assert_eq!(expose(&v.current), r#"{"keys":["v2"]}"#);
    assert_eq!(v.previous.as_ref().map(expose), Some(r#"{"keys":["v1"]}"#));

    assert!(
        get_staged(&client, "no-such-secret", AWSCURRENT)
            .await
            .is_err()
    );
    assert!(
        get_staged(&client, &name, AWSPREVIOUS)
            .await
            .unwrap()
            .is_some()
    );
}
