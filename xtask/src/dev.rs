//! `cargo xtask dev`, `cargo xtask token` and `cargo xtask principal-key`.
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use gatehouse::auth::{KeyRing, TokenPolicy};
use gatehouse::config::claims::Preset;
use gatehouse::policy::PolicyStore;
use gatehouse::principal::principal_key;
use gatehouse_dev::devkeys::{self, TokenSpec};
use gatehouse_dev::stack::{Ports, Stack, StackOptions};
use gatehouse_dev::template::Template;
use gatehouse_dev::{oidc, paths, presets, tools};
use serde_json::Value;

pub const DEV_REQUIREMENTS: &[&str] = &["requirements.txt"];

#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// The authorizer's claims preset (tokens from `cargo xtask token --preset` with the same).
    #[arg(long, default_value = "gatehouse", value_parser = parse_preset)]
    preset: Preset,
    /// Seconds between jwks-sync runs (the template's EventBridge schedule; 0 = only at start).
    #[arg(long, default_value_t = 60)]
    sync_every: u64,
}

#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    #[arg(long)]
    sub: String,
    /// Comma-separated roles, e.g. ai_operator,analyst
    #[arg(long, default_value = "")]
    roles: String,
    #[arg(long)]
    tenant: Option<String>,
    /// Lifetime in seconds (exp = iat + ttl unless --exp is given).
    #[arg(long, default_value_t = 900)]
    ttl: u64,
    /// Claim shape of an identity provider: gatehouse | cognito | auth0 | entra | okta | keycloak.
    #[arg(long, default_value = "gatehouse", value_parser = parse_preset)]
    preset: Preset,
    /// `iat`: now, +30s, -5m, -2h, +1d, or seconds since the epoch.
    #[arg(long, value_parser = parse_time, allow_hyphen_values = true)]
    iat: Option<u64>,
    /// `nbf` (same forms as --iat).
    #[arg(long, value_parser = parse_time, allow_hyphen_values = true)]
    nbf: Option<u64>,
    /// `exp` (same forms as --iat; a past time mints an expired token).
    #[arg(long, value_parser = parse_time, allow_hyphen_values = true)]
    exp: Option<u64>,
    /// `iss` [default: the local stack's OIDC provider].
    #[arg(long)]
    iss: Option<String>,
    /// `aud` [default: the template's Audience].
    #[arg(long)]
    aud: Option<String>,
    /// Header `kid` [default: the dev key's].
    #[arg(long)]
    kid: Option<String>,
    /// Header `typ` [default: JWT], e.g. at+jwt.
    #[arg(long)]
    typ: Option<String>,
    /// Client id, for shapes that carry one (Cognito's client_id, Okta's cid, ...).
    #[arg(long)]
    client_id: Option<String>,
    /// Extra claim NAME=VALUE (VALUE as JSON if it parses, else a string); repeatable, set last.
    #[arg(long = "claim", value_parser = parse_claim)]
    claims: Vec<(String, Value)>,
}

#[derive(clap::Args, Debug)]
pub struct PrincipalKeyArgs {
    #[arg(long)]
    sub: String,
    #[arg(long)]
    tenant: Option<String>,
    /// The token issuer [default: the local stack's OIDC provider].
    #[arg(long)]
    iss: Option<String>,
}

fn parse_preset(s: &str) -> Result<Preset, String> {
    s.parse()
}

fn now_secs() -> u64 {
    gatehouse::clock::unix_secs(SystemTime::now())
}

/// `now`, `+N` / `-N` with an optional unit (s, m, h, d), or absolute seconds since the epoch.
pub fn parse_time_at(s: &str, now: u64) -> Result<u64, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now);
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1i8, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => (0, s),
    };
    let (digits, unit) = match rest.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected now, +15m, -2h, or seconds since the epoch"))?;
    if sign == 0 {
        return if unit.is_empty() {
            Ok(n)
        } else {
            Err(format!("{s:?}: an absolute time has no unit"))
        };
    }
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("{s:?}: unknown unit {other:?} (s, m, h, d)")),
    };
    let delta = n
        .checked_mul(scale)
        .ok_or_else(|| format!("{s:?} is too far"))?;
    let t = if sign > 0 {
        now.checked_add(delta)
    } else {
        now.checked_sub(delta)
    };
    t.ok_or_else(|| format!("{s:?} is out of range"))
}

fn parse_time(s: &str) -> Result<u64, String> {
    parse_time_at(s, now_secs())
}

fn parse_claim(s: &str) -> Result<(String, Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=VALUE"))?;
    if k.is_empty() {
        return Err(format!("{s:?}: empty claim name"));
    }
    let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
    Ok((k.to_owned(), v))
}

/// The authorizer's token policy for the local stack with `preset`.
fn local_policy(preset: Preset) -> Result<TokenPolicy> {
    let (issuer, audience) = oidc::dev_token_claims()?;
    let t = Template::load(&paths::template_path())?;
    let max = t
        .parameter_default("MaxTokenLifetimeSecs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3600);
    let mut claims = preset.mapping();
    claims.allowed_clients = vec![presets::DEV_CLIENT_ID.to_owned()];
    Ok(TokenPolicy {
        max_lifetime: Duration::from_secs(max),
        claims,
        ..TokenPolicy::new(issuer, audience)
    })
}

/// What the local authorizer would say about `token`: its refusal (the deny detail), unknown
/// roles, and whether any role opens `POST /v1/predict`. Empty = it would be allowed.
pub fn warnings(token: &str, key_jwks: &str, policy: &TokenPolicy) -> Result<Vec<String>> {
    let (ring, _) = KeyRing::from_jwks(key_jwks, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = PolicyStore::embedded()?;
    let mut out = Vec::new();
    match gatehouse::auth::verify(&ring, policy, &format!("Bearer {token}"), SystemTime::now()) {
        Err(f) => out.push(format!(
            "the authorizer will refuse this token: {} ({})",
            f.error,
            f.reason()
        )),
        Ok(id) => {
            for r in &id.principal.roles {
                if store.role(r).is_none() {
                    out.push(format!(
                        "role {r:?} is not in infra/policy/entities.json: no policy grants it anything"
                    ));
                }
            }
            let route = "POST /v1/predict";
            if !store.authorize_route(&id.principal, route).allowed {
                out.push(format!(
                    "no role of this token may call {route} (roles: [{}])",
                    id.principal.roles.join(", ")
                ));
            }
        }
    }
    Ok(out)
}

pub fn token(args: TokenArgs) -> Result<()> {
    let key = devkeys::ensure_dev_key()?;
    let (issuer, audience) = oidc::dev_token_claims()?;
    let roles: Vec<&str> = args
        .roles
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .collect();
    let mut spec = TokenSpec::new(
        &args.sub,
        &roles,
        args.tenant.as_deref(),
        args.ttl,
        args.iss.unwrap_or(issuer),
        args.aud.unwrap_or(audience),
    );
    spec.preset = args.preset;
    spec.iat = args.iat;
    spec.nbf = args.nbf;
    spec.exp = args.exp;
    spec.kid = args.kid;
    spec.typ = args.typ;
    spec.client_id = args.client_id;
    spec.extra = args.claims.into_iter().collect();
    let token = devkeys::mint(&key, &spec)?;
    for w in warnings(
        &token,
        &devkeys::public_jwks(&key),
        &local_policy(args.preset)?,
    )? {
        eprintln!("warning: {w}");
    }
    println!("{token}");
    Ok(())
}

pub fn principal_key_cmd(args: PrincipalKeyArgs) -> Result<()> {
    let iss = args.iss.unwrap_or_else(oidc::dev_issuer);
    if args.tenant.as_deref() == Some("") {
        bail!("--tenant must not be empty (omit it for a principal without a tenant)");
    }
    println!("{}", principal_key(&iss, args.tenant.as_deref(), &args.sub));
    Ok(())
}

pub async fn run(args: DevArgs) -> Result<()> {
    tools::ensure_venv(DEV_REQUIREMENTS)?;
    let ports = Ports::DEV.offset_from_env();
    let mut stack = Stack::start(StackOptions {
        ports,
        reload: true,
        extra_env: vec![],
        preset: args.preset,
        sync_every: (args.sync_every > 0).then(|| Duration::from_secs(args.sync_every)),
    })
    .await?;
    let token = stack
        .token("alice", &["ai_operator"], None, 3600)
        .context("minting the example token")?;
    let preset_flag = if args.preset == Preset::Gatehouse {
        String::new()
    } else {
        format!(" --preset {}", args.preset.as_str())
    };
    println!(
        "\nGatehouse dev stack is ready.\n\
         \n  API (local API Gateway)   {gw}\n  Lambda invoke API         {invoke}  (cargo lambda watch: authorizer, predict, jwks-sync, audit-reader)\n  OIDC provider (issuer)    {iss}  (discovery + JWKS of the dev key; jwks-sync reads it every {every} s)\n  AWS emulator (moto)       {emu}  (DynamoDB with Streams, Secrets Manager, S3, KMS)\n  Audit sentinel            fed by the stream poller (digests + OCSF export in the emulator's S3)\n  Logs                      .local/logs/\n\
         \nTry it (token valid 1 h; mint more with `cargo xtask token --sub alice --roles ai_operator{preset_flag}`):\n\
         \n  curl -sS {gw}/v1/predict -H 'content-type: application/json' \\\n    -H 'authorization: Bearer {token}' \\\n    -d '{{\"prompt\":\"Hello, Gatehouse\"}}'\n\
         \n  curl -sS {gw}/v1/models -H 'authorization: Bearer {token}'   (and /v1/usage)\n\
         \nRead the audit log as an auditor: cargo xtask token --sub carol --roles auditor, then\n  curl -sS -G '{gw}/v1/audit' --data-urlencode \"principal=$(cargo xtask principal-key --sub alice)\" \\\n    -H 'authorization: Bearer <that token>'\n  cargo xtask audit-verify --endpoint {emu}\n\
         \nPress Ctrl-C to stop everything this command started.",
        gw = stack.gateway.url(),
        invoke = stack.invoke_url,
        iss = stack.issuer,
        every = args.sync_every,
        emu = stack.emulator.endpoint,
    );
    crate::checks::shutdown_signal().await;
    eprintln!("\n==> stopping");
    stack.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let now = 1_800_000_000;
        assert_eq!(parse_time_at("now", now), Ok(now));
        assert_eq!(parse_time_at("+15m", now), Ok(now + 900));
        assert_eq!(parse_time_at("-2h", now), Ok(now - 7200));
        assert_eq!(parse_time_at("-30", now), Ok(now - 30));
        assert_eq!(parse_time_at("+1d", now), Ok(now + 86_400));
        assert_eq!(parse_time_at("1700000000", now), Ok(1_700_000_000));
        for bad in [
            "",
            "soon",
            "+5y",
            "15m",
            "+",
            "-99999999999999999999d",
            "+18446744073709551615d",
            "+1é",
        ] {
            assert!(parse_time_at(bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn extra_claims() {
        assert_eq!(
            parse_claim("acr=mfa"),
            Ok(("acr".into(), Value::String("mfa".into())))
        );
        assert_eq!(parse_claim("n=5"), Ok(("n".into(), serde_json::json!(5))));
        assert_eq!(
            parse_claim("g=[\"a\"]"),
            Ok(("g".into(), serde_json::json!(["a"])))
        );
        assert!(parse_claim("novalue").is_err());
        assert!(parse_claim("=x").is_err());
    }

    #[test]
    fn warns_about_tokens_the_policy_refuses() {
        let key = gatehouse_dev::devkeys::DevKey::generate("warn-key").unwrap();
        let jwks = devkeys::public_jwks(&key);
        let policy = TokenPolicy::new("https://issuer.test/", "gatehouse-api");
        let mint = |f: &dyn Fn(&mut TokenSpec)| {
            let mut spec = TokenSpec::new(
                "alice",
                &["ai_operator"],
                None,
                900,
                "https://issuer.test/".into(),
                "gatehouse-api".into(),
            );
            f(&mut spec);
            devkeys::mint(&key, &spec).unwrap()
        };
        let w = |t: String| warnings(&t, &jwks, &policy).unwrap();
        assert!(w(mint(&|_| {})).is_empty(), "a good token has no warning");
        let unknown = w(mint(&|s| s.roles = vec!["operator".into()]));
        assert!(
            unknown[0].contains("\"operator\" is not in infra/policy/entities.json"),
            "{unknown:?}"
        );
        assert!(
            unknown[1].contains("may call POST /v1/predict"),
            "{unknown:?}"
        );
        let empty_tenant = w(mint(&|s| s.tenant = Some(String::new())));
        assert!(
            empty_tenant[0].contains("claim `tenant`"),
            "{empty_tenant:?}"
        );
        let long = w(mint(&|s| s.ttl_secs = 7200));
        assert!(
            long[0].contains("lifetime 7200 s exceeds the maximum 3600 s"),
            "{long:?}"
        );
        let now = now_secs();
        let expired = w(mint(&|s| {
            s.iat = Some(now - 600);
            s.exp = Some(now - 300);
        }));
        assert!(expired[0].contains("(expired)"), "{expired:?}");
        let aud = w(mint(&|s| s.audience = "other".into()));
        assert!(
            aud[0].contains("expected to contain \"gatehouse-api\""),
            "{aud:?}"
        );
        let kid = w(mint(&|s| s.kid = Some("nope".into())));
        assert!(kid[0].contains("unknown_kid"), "{kid:?}");
        let auditor = w(mint(&|s| s.roles = vec!["auditor".into()]));
        assert_eq!(auditor.len(), 1);
        assert!(
            auditor[0].contains("no role of this token may call"),
            "{auditor:?}"
        );
    }
}
