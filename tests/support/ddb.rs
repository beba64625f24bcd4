//! DynamoDB-side helpers (rate limits, audit): an emulator of their own (tables and secrets from
//! the template), a Predictor wired to it, and a TCP proxy that can cut the emulator off.
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Result;
use aws_config::SdkConfig;
use gatehouse::audit::dynamo::DynamoAuditSink;
use gatehouse::audit::{AuditLog, AuditSettings};
use gatehouse::clock::{Clock, SystemClock};
use gatehouse::config::{ContentMode, ModelBackendKind, PredictConfig};
use gatehouse::model::EchoModel;
use gatehouse::policy::{ENTITIES_SRC, POLICIES_SRC, PolicyStore, SCHEMA_SRC};
use gatehouse::predict::Predictor;
use gatehouse::ratelimit::RateLimiter;
use gatehouse::ratelimit::dynamo::DynamoCounter;
use gatehouse_dev::emulator::Emulator;
use gatehouse_dev::template::Template;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub const RATE_TABLE: &str = "RateLimitTable";
pub const AUDIT_TABLE: &str = "AuditTable";
pub const AUDIT_SECRET: &str = "AuditHmacSecret";

/// `base` shifted by GATEHOUSE_PORT_OFFSET, so two checkouts can run the tests side by side.
pub fn port(base: u16) -> u16 {
    let off: u16 = std::env::var("GATEHOUSE_PORT_OFFSET")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    base + off
}

/// A fresh emulator on 127.0.0.1:`port`, bootstrapped from infra/template.yaml.
pub async fn emulator(port: u16) -> Result<(Emulator, SdkConfig)> {
    let emu = Emulator::start(port).await?;
    let sdk = emu.sdk_config().await;
    let template = Template::load(&gatehouse_dev::paths::template_path())?;
    gatehouse_dev::bootstrap::bootstrap(&sdk, &template).await?;
    Ok((emu, sdk))
}

/// The embedded policy with `ai_operator`'s request limit replaced.
pub fn policy_with_operator_limit(limit: u32) -> Result<PolicyStore> {
    policy_with(&[("ai_operator", "requests_per_window", limit.into())])
}

/// The embedded policy with attributes of entities (by id) replaced: (id, attribute, value).
pub fn policy_with(changes: &[(&str, &str, serde_json::Value)]) -> Result<PolicyStore> {
    let mut entities: serde_json::Value = serde_json::from_str(ENTITIES_SRC)?;
    for e in entities.as_array_mut().into_iter().flatten() {
        for (id, attr, value) in changes {
            if e["uid"]["id"] == *id {
                e["attrs"][*attr] = value.clone();
            }
        }
    }
    Ok(PolicyStore::from_sources(
        SCHEMA_SRC,
        POLICIES_SRC,
        &entities.to_string(),
    )?)
}

/// An audit log writing to the emulator's table, keyed from its secret.
pub async fn audit_log(sdk: &SdkConfig, source: &'static str) -> Result<AuditLog> {
    let key =
        gatehouse::secrets::audit_key(&aws_sdk_secretsmanager::Client::new(sdk), AUDIT_SECRET)
            .await?;
    Ok(AuditLog::new(
        Box::new(DynamoAuditSink::new(
            sdk,
            AUDIT_TABLE,
            Duration::from_secs(3),
        )),
        key,
        AuditSettings {
            content_mode: ContentMode::Hash,
            full_text_max_bytes: 32 * 1024,
            retention_days: 30,
            decision_shards: 4,
        },
        source,
        SystemTime::now(),
    ))
}

/// A Predictor whose counter, budgets and audit log live in the emulator behind `sdk`.
pub async fn predictor(sdk: &SdkConfig, policy: PolicyStore) -> Result<Predictor> {
    predictor_with_model(sdk, policy, Box::new(EchoModel)).await
}

/// The same, with a model backend of the test's choosing.
pub async fn predictor_with_model(
    sdk: &SdkConfig,
    policy: PolicyStore,
    model: Box<dyn gatehouse::model::ModelBackend>,
) -> Result<Predictor> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let counter = DynamoCounter::new(sdk, RATE_TABLE, Duration::from_secs(2));
    let config = PredictConfig::from_env(&gatehouse::config::Env(|_| None))?;
    Ok(Predictor {
        policy,
        screener: gatehouse::screen::Screener::new(Default::default())?,
        model,
        limiter: RateLimiter::new(Box::new(counter.clone())),
        budgets: gatehouse::ratelimit::budget::Budgets::new(Box::new(counter), config.suspension),
        second_opinion: None,
        config: PredictConfig {
            model_backend: ModelBackendKind::Echo,
            max_body_bytes: 64 * 1024,
            model_timeout: Duration::from_secs(5),
            token_leeway: Duration::from_secs(30),
            ..config
        },
        rate_fail_open: false,
        audit: audit_log(sdk, "predict").await?,
        clock,
    })
}

/// Seconds left in the current fixed window of `secs`.
pub fn secs_left_in_window(secs: u64) -> u64 {
    let now = gatehouse::clock::unix_secs(SystemTime::now());
    secs - now % secs
}

/// A TCP forwarder to `target` that can be switched off: while off, it refuses new connections
/// and cuts open ones (the emulator "disappears" without losing its data).
pub struct Partition {
    pub endpoint: String,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
}

impl Partition {
    pub async fn start(target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let up = Arc::new(AtomicBool::new(true));
        let (cut, _) = watch::channel(0u64);
        let (up2, cut2) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut_rx = cut2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Ok(Self { endpoint, up, cut })
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            self.cut.send_modify(|n| *n += 1);
        }
    }
}

/// One predict request as an `ai_operator` named `sub`, straight into the pipeline.
pub async fn send_as_operator(
    p: &Predictor,
    rid: &str,
    sub: &str,
    body: &[u8],
    source_ip: &str,
    user_agent: &str,
) -> http::Response<String> {
    p.handle(gatehouse::predict::Inbound {
        request_id: rid,
        principal: Some(gatehouse::auth::Principal {
            sub: sub.to_owned(),
            roles: vec!["ai_operator".into()],
            tenant: None,
            token_id: format!("jti-{rid}"),
            issuer: "https://issuer.test/".into(),
            // Far in the future (2096): these principals never expire mid-test.
            exp: 4_000_000_000,
        }),
        content_type: Some("application/json"),
        body,
        source_ip: Some(source_ip),
        user_agent: Some(user_agent),
    })
    .await
}
