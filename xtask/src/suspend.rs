//! `cargo xtask suspend`: show, lift or impose a repeat offender's suspension (issue 13), with
//! the operator's own credentials on the rate table (the functions' roles are not used). The same
//! state predict reads: `suspended_until` on the principal's token item of the month (and the
//! next month's, when a suspension reaches into it); see `gatehouse::ratelimit::budget`.
use std::time::{Duration, SystemTime};

use anyhow::{Result, bail};
use clap::Args;
use gatehouse::clock::unix_secs;
use gatehouse::ratelimit::budget::{Budgets, MAX_SUSPENSION_SECS};
use gatehouse::ratelimit::dynamo::DynamoCounter;

#[derive(Args)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["lift", "show", "impose"])))]
pub struct SuspendArgs {
    /// Lift the suspension of this principal (as audit records name it).
    #[arg(long, value_name = "PRINCIPAL")]
    lift: Option<String>,
    /// Print whether this principal is suspended, and until when.
    #[arg(long, value_name = "PRINCIPAL")]
    show: Option<String>,
    /// Suspend this principal now (for --secs seconds), e.g. while investigating it.
    #[arg(long, value_name = "PRINCIPAL")]
    impose: Option<String>,
    /// With --impose: how long, in seconds (at most 7 days).
    #[arg(long, default_value_t = 3600)]
    secs: u64,
    /// Rate table name [env: GATEHOUSE_RATE_TABLE; default RateLimitTable, the local name].
    #[arg(long)]
    table: Option<String>,
    /// Emulator endpoint, e.g. http://127.0.0.1:4566 [env: GATEHOUSE_EMULATOR_URL]. Without it:
    /// the real AWS account of your environment (AWS_PROFILE, AWS_REGION...).
    #[arg(long)]
    endpoint: Option<String>,
}

fn rfc3339(secs: u64) -> String {
    gatehouse::http::rfc3339_secs(secs)
}

pub async fn run(args: SuspendArgs) -> Result<()> {
    let table = args
        .table
        .clone()
        .or_else(|| std::env::var("GATEHOUSE_RATE_TABLE").ok())
        .unwrap_or_else(|| "RateLimitTable".into());
    let endpoint = args
        .endpoint
        .clone()
        .or_else(|| std::env::var("GATEHOUSE_EMULATOR_URL").ok());
    let sdk = gatehouse_dev::audit::sdk_for(endpoint.as_deref()).await?;
    let store = DynamoCounter::new(&sdk, &table, Duration::from_secs(5));
    // The thresholds do not matter here: nothing is counted, state is read and written directly.
    let budgets = Budgets::new(
        Box::new(store),
        gatehouse::config::SuspensionConfig {
            after: 0,
            window: Duration::from_secs(1),
            period: Duration::from_secs(1),
        },
    );
    let now = SystemTime::now();
    if let Some(p) = &args.lift {
        match budgets.lift(p, now).await? {
            Some(until) => println!("{p}: suspension lifted (it ran until {})", rfc3339(until)),
            None => println!("{p}: was not suspended"),
        }
    } else if let Some(p) = &args.show {
        match suspended_until(&budgets, p, now).await? {
            Some(until) => println!("{p}: suspended until {}", rfc3339(until)),
            None => println!("{p}: not suspended"),
        }
    } else if let Some(p) = &args.impose {
        if args.secs == 0 || args.secs > MAX_SUSPENSION_SECS {
            bail!("--secs must be between 1 and {MAX_SUSPENSION_SECS}");
        }
        let t = unix_secs(now);
        match budgets.suspend(p, t + args.secs, t).await? {
            Some(until) => println!("{p}: suspended until {}", rfc3339(until)),
            None => println!("{p}: already suspended (lift it first to change the end)"),
        }
    }
    Ok(())
}

/// The active suspension of `principal`, read from its current token item.
async fn suspended_until(
    budgets: &Budgets,
    principal: &str,
    now: SystemTime,
) -> Result<Option<u64>> {
    let cal = gatehouse::ratelimit::budget::Calendar::of(unix_secs(now));
    let key = gatehouse::ratelimit::budget::principal_tokens_key(principal, &cal.month_id());
    let item = budgets.store().read(&key).await?;
    Ok(item
        .get(gatehouse::ratelimit::budget::SUSPENDED_ATTR)
        .and_then(|v| u64::try_from(*v).ok())
        .filter(|u| *u > unix_secs(now)))
}
