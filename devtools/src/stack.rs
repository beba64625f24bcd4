//! The whole local stack: emulator → tables, buckets, KMS keys and secrets from the template →
//! local OIDC provider serving the dev key → functions built → `cargo lambda watch` serving them →
//! one jwks-sync run (what the template's custom resource does after a deploy) fills the JWKS
//! secret from the provider → the authorizer and predict cold-started → local gateway, and a
//! stream poller playing the audit stream's event source mapping for the sentinel. `cargo xtask
//! dev` also runs jwks-sync on a schedule, as EventBridge would; the test stack leaves that to
//! the tests.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use gatehouse::config::claims::Preset;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::devkeys::{self, DevKey, TokenSpec};
use crate::emulator::{self, Emulator};
use crate::gateway::{self, GatewayConfig, GatewayHandle};
use crate::oidc::{self, OidcHandle};
use crate::paths;
use crate::procs::{Managed, ensure_port_free, wait_for_port};
use crate::streams::{self, PollerConfig, PollerHandle};
use crate::template::Template;

pub use crate::ports::Ports;

/// The stream poller's batching window locally (deployed: the template's DigestIntervalSecs), so
/// the dev stack anchors and exports records within seconds.
pub const LOCAL_BATCHING_WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct StackOptions {
    pub ports: Ports,
    /// Let `cargo lambda watch` rebuild on source changes (dev) or not (tests).
    pub reload: bool,
    /// Extra function environment on top of the template's (tests shorten key refresh periods).
    pub extra_env: Vec<(String, String)>,
    /// The authorizer's claims preset (`GATEHOUSE_CLAIMS_PRESET`).
    pub preset: Preset,
    /// Run jwks-sync this often, as the template's EventBridge schedule does (None: only once,
    /// at start; tests invoke it themselves).
    pub sync_every: Option<Duration>,
}

pub struct Stack {
    pub emulator: Emulator,
    pub sdk: SdkConfig,
    pub template: Template,
    pub gateway: GatewayHandle,
    pub oidc: OidcHandle,
    pub key: DevKey,
    pub issuer: String,
    pub audience: String,
    pub preset: Preset,
    /// The Lambda invoke API of `cargo lambda watch`.
    pub invoke_url: String,
    pub pollers: Vec<PollerHandle>,
    watch: Managed,
    scheduler: Option<tokio::task::JoinHandle<()>>,
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The function crates (the template's binaries).
pub const FUNCTIONS: [&str; 5] = [
    "authorizer",
    "predict",
    "jwks-sync",
    "audit-sentinel",
    "audit-reader",
];

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

/// The functions' environment: what the template sets, resolved locally, plus the emulator, and
/// the local identity provider in place of the template's example issuer.
pub fn functions_env(
    template: &Template,
    endpoint: &str,
    issuer: &str,
    preset: Preset,
) -> Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for (_, logical_id) in template.functions()? {
        env.extend(template.function_env(&logical_id)?);
    }
    env.extend(emulator::client_env(endpoint));
    // The local provider is the issuer, read by OIDC discovery (plain http: loopback only).
    env.insert("GATEHOUSE_ISSUER".into(), issuer.to_owned());
    env.insert("GATEHOUSE_OIDC_DISCOVERY".into(), "true".into());
    env.insert("GATEHOUSE_CLAIMS_PRESET".into(), preset.as_str().into());
    env.insert(
        "GATEHOUSE_ALLOWED_CLIENT_IDS".into(),
        crate::presets::DEV_CLIENT_ID.into(),
    );
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

/// One jwks-sync run through the invoke API; its report (`outcome`, `kids`, `reason`, ...).
pub async fn run_jwks_sync(client: &reqwest::Client, invoke_url: &str) -> Result<Value> {
    let event = json!({"source": "gatehouse.dev", "detail-type": "Scheduled Event", "detail": {}});
    gateway::invoke_function(client, invoke_url, "jwks-sync", &event).await
}

impl Stack {
    pub async fn start(opts: StackOptions) -> Result<Stack> {
        let ports = opts.ports;
        ensure_port_free(ports.invoke, "cargo lambda watch").await?;
        ensure_port_free(ports.gateway, "the local gateway").await?;
        ensure_port_free(ports.oidc, "the local OIDC provider").await?;
        let template = Template::load(&paths::template_path())?;

        eprintln!(
            "==> starting the AWS emulator on 127.0.0.1:{}",
            ports.emulator
        );
        let emulator = Emulator::start(ports.emulator).await?;
        let sdk = emulator.sdk_config().await;
        crate::bootstrap::bootstrap(&sdk, &template).await?;
        let key = devkeys::ensure_dev_key()?;
        eprintln!(
            "==> starting the local OIDC provider on 127.0.0.1:{}",
            ports.oidc
        );
        let oidc = oidc::serve(
            SocketAddr::from(([127, 0, 0, 1], ports.oidc)),
            vec![key.public_jwk()],
        )
        .await?;
        let issuer = oidc.issuer.clone();
        let mut env = functions_env(&template, &emulator.endpoint, &issuer, opts.preset)?;
        env.extend(opts.extra_env.iter().cloned());
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

        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()?;
        let invoke_url = format!("http://127.0.0.1:{}", ports.invoke);
        // The JWKS secret is deployed empty; one sync from the provider fills it, as the
        // template's custom resource does right after a deploy.
        let report = run_jwks_sync(&client, &invoke_url)
            .await
            .with_context(|| format!("jwks-sync did not run (see {})", log.display()))?;
        if report["outcome"] != "updated" && report["outcome"] != "unchanged" {
            bail!("the initial jwks-sync failed: {report}");
        }
        eprintln!("==> jwks-sync: {} {}", report["outcome"], report["kids"]);

        // Cold-start the authorizer and predict now (watch builds and boots each on its first
        // invoke), so the first real request does not pay for it and a broken init shows up here.
        let probe = json!({"version": "2.0", "type": "REQUEST", "routeKey": "POST /v1/predict", "headers": {},
            "requestContext": {"http": {"method": "POST", "path": "/v1/predict"}, "requestId": "warmup", "routeKey": "POST /v1/predict"}});
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
        let scheduler = opts.sync_every.map(|every| {
            let (client, url) = (client.clone(), invoke_url.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    match run_jwks_sync(&client, &url).await {
                        Ok(r) if r["outcome"] == "failed" => {
                            eprintln!("[jwks-sync] failed: {} {}", r["reason"], r["detail"])
                        }
                        Ok(r) if r["outcome"] == "updated" => {
                            eprintln!("[jwks-sync] updated: {}", r["kids"])
                        }
                        Ok(_) => {}
                        Err(e) => eprintln!("[jwks-sync] did not run: {e:#}"),
                    }
                }
            })
        });
        Ok(Stack {
            emulator,
            sdk,
            template,
            gateway,
            oidc,
            key,
            issuer,
            audience,
            preset: opts.preset,
            invoke_url,
            pollers,
            watch,
            scheduler,
        })
    }

    /// A token for this stack: its issuer and audience, the stack's claims preset.
    pub fn token(
        &self,
        sub: &str,
        roles: &[&str],
        tenant: Option<&str>,
        ttl_secs: u64,
    ) -> Result<String> {
        let mut spec = TokenSpec::new(
            sub,
            roles,
            tenant,
            ttl_secs,
            self.issuer.clone(),
            self.audience.clone(),
        );
        spec.preset = self.preset;
        devkeys::mint(&self.key, &spec)
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.scheduler.take() {
            s.abort();
        }
        for p in &self.pollers {
            p.stop();
        }
        self.gateway.stop();
        self.oidc.stop();
        self.watch.stop().await;
        self.emulator.stop().await;
    }
}
