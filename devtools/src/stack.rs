//! The whole local stack: emulator → tables, buckets, KMS keys and secrets from the template →
//! dev key into the JWKS secret → functions built → `cargo lambda watch` serving them → local
//! gateway, and a stream poller playing the audit stream's event source mapping for the sentinel.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use serde_json::json;
use tokio::process::Command;

use crate::devkeys::{self, DevKey, TokenSpec};
use crate::emulator::{self, Emulator};
use crate::gateway::{self, GatewayConfig, GatewayHandle};
use crate::paths;
use crate::procs::{Managed, ensure_port_free, wait_for_port};
use crate::streams::{self, PollerConfig, PollerHandle};
use crate::template::Template;

/// The stream poller's batching window locally (deployed: the template's DigestIntervalSecs), so
/// the dev stack anchors and exports records within seconds.
pub const LOCAL_BATCHING_WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub emulator: u16,
    pub invoke: u16,
    pub gateway: u16,
}

impl Ports {
    /// `cargo xtask dev`.
    pub const DEV: Ports = Ports {
        emulator: 4566,
        invoke: 9000,
        gateway: 3000,
    };
    /// `cargo xtask test`: different ports, so tests run beside a dev stack.
    pub const TEST: Ports = Ports {
        emulator: 4577,
        invoke: 9010,
        gateway: 3010,
    };

    /// These ports shifted by `GATEHOUSE_PORT_OFFSET` (default 0), so two checkouts can run
    /// their stacks side by side.
    pub fn offset_from_env(self) -> Ports {
        let off: u16 = std::env::var("GATEHOUSE_PORT_OFFSET")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ports {
            emulator: self.emulator + off,
            invoke: self.invoke + off,
            gateway: self.gateway + off,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct StackOptions {
    pub ports: Ports,
    /// Let `cargo lambda watch` rebuild on source changes (dev) or not (tests).
    pub reload: bool,
    /// Extra function environment on top of the template's (tests shorten key refresh periods).
    pub extra_env: &'static [(&'static str, &'static str)],
}

pub struct Stack {
    pub emulator: Emulator,
    pub sdk: SdkConfig,
    pub template: Template,
    pub gateway: GatewayHandle,
    pub key: DevKey,
    pub issuer: String,
    pub audience: String,
    pub pollers: Vec<PollerHandle>,
    watch: Managed,
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The function crates (the template's binaries).
pub const FUNCTIONS: [&str; 4] = ["authorizer", "predict", "audit-sentinel", "audit-reader"];

/// Builds the function binaries, so that watch's lazy build on first invoke is a no-op.
pub fn build_functions() -> Result<()> {
    eprintln!(
        "==> building the functions (cargo build -p {})",
        FUNCTIONS.join(" -p ")
    );
    let mut args = vec!["build", "--quiet"];
    for f in FUNCTIONS {
        args.extend(["-p", f]);
    }
    let status = std::process::Command::new(cargo())
        .current_dir(paths::repo_root())
        .args(args)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building the functions failed");
    }
    Ok(())
}

/// The functions' environment: what the template sets, resolved locally, plus the emulator.
pub fn functions_env(template: &Template, endpoint: &str) -> Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for (_, logical_id) in template.functions()? {
        env.extend(template.function_env(&logical_id)?);
    }
    env.extend(emulator::client_env(endpoint));
    // Every local test client is 127.0.0.1: the credential-stuffing guard's deployed default
    // (20 denials per 5 min per IP) would soon refuse the whole test suite. It is exercised
    // against the emulator by tests/ratelimit.rs instead.
    env.insert("GATEHOUSE_AUTH_FAIL_LIMIT".into(), "100000".into());
    env.insert("RUST_LOG".into(), "info".into());
    Ok(env)
}

fn write_env_file(env: &BTreeMap<String, String>, port: u16) -> Result<PathBuf> {
    let dir = paths::local_dir().join("run");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("functions-{port}.env"));
    let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&path, text)?;
    Ok(path)
}

impl Stack {
    pub async fn start(opts: StackOptions) -> Result<Stack> {
        let ports = opts.ports;
        ensure_port_free(ports.invoke, "cargo lambda watch").await?;
        ensure_port_free(ports.gateway, "the local gateway").await?;
        let template = Template::load(&paths::template_path())?;

        eprintln!(
            "==> starting the AWS emulator on 127.0.0.1:{}",
            ports.emulator
        );
        let emulator = Emulator::start(ports.emulator).await?;
        let sdk = emulator.sdk_config().await;
        crate::bootstrap::bootstrap(&sdk, &template).await?;
        let key = devkeys::ensure_dev_key()?;
        let jwks_secret = template
            .function_env("AuthorizerFunction")?
            .get("GATEHOUSE_JWKS_SECRET_ID")
            .cloned()
            .context("the authorizer has no GATEHOUSE_JWKS_SECRET_ID")?;
        crate::bootstrap::put_secret(&sdk, &jwks_secret, &devkeys::public_jwks(&key)).await?;
        let mut env = functions_env(&template, &emulator.endpoint)?;
        env.extend(
            opts.extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let issuer = env
            .get("GATEHOUSE_ISSUER")
            .cloned()
            .context("no GATEHOUSE_ISSUER")?;
        let audience = env
            .get("GATEHOUSE_AUDIENCE")
            .cloned()
            .context("no GATEHOUSE_AUDIENCE")?;

        build_functions()?;
        let env_file = write_env_file(&env, ports.invoke)?;
        eprintln!(
            "==> starting cargo lambda watch on 127.0.0.1:{}",
            ports.invoke
        );
        let mut cmd = Command::new(cargo());
        cmd.current_dir(paths::repo_root())
            .env("PATH", paths::path_with_venv())
            .args([
                "lambda",
                "watch",
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
            ])
            .arg(ports.invoke.to_string())
            .arg("--env-file")
            .arg(&env_file);
        if !opts.reload {
            cmd.arg("--ignore-changes");
        }
        let log = paths::logs_dir().join(format!("watch-{}.log", ports.invoke));
        let mut watch = Managed::spawn("cargo lambda watch", cmd, &log)?;
        wait_for_port(ports.invoke, Duration::from_secs(120), &mut watch).await?;

        // Cold-start both functions now (watch builds and boots each on its first invoke), so the
        // first real request does not pay for it and a broken init shows up here.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()?;
        let probe = json!({"version": "2.0", "type": "REQUEST", "routeKey": "POST /v1/predict", "headers": {},
            "requestContext": {"http": {"method": "POST", "path": "/v1/predict"}, "requestId": "warmup", "routeKey": "POST /v1/predict"}});
        let invoke_url = format!("http://127.0.0.1:{}", ports.invoke);
        let a = gateway::invoke_function(&client, &invoke_url, "authorizer", &probe)
            .await
            .with_context(|| format!("authorizer did not start (see {})", log.display()))?;
        if a.get("isAuthorized") != Some(&json!(false)) {
            bail!("authorizer allowed a request without a token: {a}");
        }
        gateway::invoke_function(&client, &invoke_url, "predict", &probe)
            .await
            .with_context(|| format!("predict did not start (see {})", log.display()))?;
        let audit_probe = json!({"version": "2.0", "routeKey": "GET /v1/audit", "rawPath": "/v1/audit",
            "headers": {}, "isBase64Encoded": false,
            "requestContext": {"http": {"method": "GET", "path": "/v1/audit"}, "requestId": "warmup", "routeKey": "GET /v1/audit"}});
        let r = gateway::invoke_function(&client, &invoke_url, "audit-reader", &audit_probe)
            .await
            .with_context(|| format!("audit-reader did not start (see {})", log.display()))?;
        if r.get("statusCode") != Some(&json!(401)) {
            bail!("audit-reader answered a request without a principal with {r}");
        }
        gateway::invoke_function(
            &client,
            &invoke_url,
            "audit-sentinel",
            &json!({"Records": []}),
        )
        .await
        .with_context(|| format!("audit-sentinel did not start (see {})", log.display()))?;

        // The audit stream's event source mapping, as the template declares it (with a short
        // batching window locally).
        let mut pollers = Vec::new();
        for c in template.stream_consumers()? {
            eprintln!(
                "==> polling {}'s stream for {} (batches of {}, window {:?})",
                c.table, c.binary, c.batch_size, LOCAL_BATCHING_WINDOW
            );
            pollers.push(
                streams::start(
                    &sdk,
                    PollerConfig {
                        table: c.table.clone(),
                        batch_size: usize::try_from(c.batch_size).unwrap_or(100),
                        batching_window: LOCAL_BATCHING_WINDOW,
                        poll_interval: Duration::from_millis(250),
                    },
                    std::sync::Arc::new(streams::InvokeApi {
                        client: client.clone(),
                        invoke_url: invoke_url.clone(),
                        function: c.binary.clone(),
                    }),
                )
                .await?,
            );
        }

        let gw_config = GatewayConfig::from_template(&template, &invoke_url)?;
        let gateway =
            gateway::serve(gw_config, SocketAddr::from(([127, 0, 0, 1], ports.gateway))).await?;
        Ok(Stack {
            emulator,
            sdk,
            template,
            gateway,
            key,
            issuer,
            audience,
            pollers,
            watch,
        })
    }

    pub fn token(
        &self,
        sub: &str,
        roles: &[&str],
        tenant: Option<&str>,
        ttl_secs: u64,
    ) -> Result<String> {
        let spec = TokenSpec::new(
            sub,
            roles,
            tenant,
            ttl_secs,
            self.issuer.clone(),
            self.audience.clone(),
        );
        devkeys::mint(&self.key, &spec)
    }

    pub async fn stop(&mut self) {
        for p in &self.pollers {
            p.stop();
        }
        self.gateway.stop();
        self.watch.stop().await;
        self.emulator.stop().await;
    }
}
