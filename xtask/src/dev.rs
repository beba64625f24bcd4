//! `cargo xtask dev` and `cargo xtask token`.
use anyhow::Result;
use gatehouse_dev::devkeys;
use gatehouse_dev::stack::{Ports, Stack, StackOptions};
use gatehouse_dev::tools;

pub const DEV_REQUIREMENTS: &[&str] = &["requirements.txt"];

pub fn mint_token(
    sub: &str,
    roles: &[&str],
    tenant: Option<&str>,
    ttl_secs: u64,
) -> Result<String> {
    devkeys::mint_dev_token(sub, roles, tenant, ttl_secs)
}

pub async fn run() -> Result<()> {
    tools::ensure_venv(DEV_REQUIREMENTS)?;
    let mut stack = Stack::start(StackOptions {
        ports: Ports::DEV.offset_from_env(),
        reload: true,
        extra_env: &[],
    })
    .await?;
    let token = stack.token("alice", &["ai_operator"], None, 3600)?;
    println!(
        "\nGatehouse dev stack is ready.\n\
         \n  API (local API Gateway)   {gw}\n  Lambda invoke API         http://127.0.0.1:{invoke}  (cargo lambda watch)\n  AWS emulator (moto)       {emu}  (DynamoDB with Streams, Secrets Manager, S3, KMS)\n  Audit sentinel            fed by the stream poller (digests + OCSF export in the emulator's S3)\n  Logs                      .local/logs/\n\
         \nTry it (token valid 1 h; mint more with `cargo xtask token --sub alice --roles ai_operator`):\n\
         \n  curl -sS {gw}/v1/predict -H 'content-type: application/json' \\\n    -H 'authorization: Bearer {token}' \\\n    -d '{{\"prompt\":\"Hello, Gatehouse\"}}'\n\
         \nRead the audit log as an auditor: cargo xtask token --sub carol --roles auditor, then\n  curl -sS '{gw}/v1/audit?principal=alice' -H 'authorization: Bearer <that token>'\n  cargo xtask audit-verify --endpoint {emu}\n\
         \nPress Ctrl-C to stop everything this command started.",
        gw = stack.gateway.url(),
        invoke = Ports::DEV.offset_from_env().invoke,
        emu = stack.emulator.endpoint,
    );
    crate::checks::shutdown_signal().await;
    eprintln!("\n==> stopping");
    stack.stop().await;
    Ok(())
}
