//! `cargo xtask supply-chain` (also a step of `cargo xtask test`): the dependency gate.
//!
//! 1. RustSec advisories against `Cargo.lock` with `cargo audit` (pinned, installed into
//!    `<target dir>/cargo-tools`): the online database when github.com answers, else a local copy
//!    (`GATEHOUSE_ADVISORY_DB`, or `../shared/advisory-db` beside the checkout); with neither it
//!    says so in one line and goes on. A vulnerability fails the run unless
//!    `supply-chain/advisory-exceptions.toml` accepts it with a reason and an expiry date that
//!    has not passed; unmaintained / unsound / yanked notices are listed.
//! 2. Licences and sources with `cargo deny check licenses sources bans` (`supply-chain/deny.toml`):
//!    every licence on the allow-list, crates only from crates.io.
//! 3. Duplicate versions of a crate inside each function binary's tree (`cargo tree -d`), listed.
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use gatehouse_dev::paths;
use serde::Deserialize;

/// Pinned tool versions (bump deliberately, like the Python pins in devtools/python/).
const CARGO_AUDIT: (&str, &str) = ("cargo-audit", "0.22.2");
const CARGO_DENY: (&str, &str) = ("cargo-deny", "0.20.2");

/// The function binaries whose trees are checked for duplicate crate versions.
pub const FUNCTIONS: &[&str] = &[
    "authorizer",
    "predict",
    "jwks-sync",
    "audit-sentinel",
    "audit-reader",
];

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Tools are build products: they live beside the build cache (the target dir, which CI keeps
/// between runs outside the clone), so a new clone reuses them instead of compiling them again.
fn tools_root() -> PathBuf {
    paths::target_dir().join("cargo-tools")
}

fn tool_bin(name: &str) -> PathBuf {
    tools_root().join("bin").join(name)
}

/// `cargo install --locked` of a pinned tool into `<target dir>/cargo-tools`, once per version.
pub fn ensure_tool((name, version): (&str, &str)) -> Result<PathBuf> {
    let bin = tool_bin(name);
    let stamp = tools_root().join(format!(".installed-{name}"));
    if bin.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(version) {
        return Ok(bin);
    }
    eprintln!(
        "==> installing {name} {version} into {} (first run only)",
        tools_root().display()
    );
    let status = Command::new(cargo())
        .args([
            "install",
            "--locked",
            "--quiet",
            "--version",
            version,
            "--root",
        ])
        .arg(tools_root())
        .arg(name)
        .status()
        .with_context(|| format!("could not run cargo install {name}"))?;
    if !status.success() {
        bail!("cargo install {name} {version} failed ({status})");
    }
    std::fs::write(&stamp, version)?;
    Ok(bin)
}

/// One accepted advisory: why it does not apply to us (or why we ship anyway), and the day the
/// decision lapses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exception {
    pub id: String,
    #[serde(rename = "crate")]
    pub krate: String,
    pub reason: String,
    /// `YYYY-MM-DD`; from that day on the exception no longer applies.
    pub expires: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exceptions {
    #[serde(default)]
    pub exception: Vec<Exception>,
}

impl Exceptions {
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let parsed: Exceptions =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        for e in &parsed.exception {
            if e.reason.trim().is_empty() {
                bail!("{}: exception {} has no reason", path.display(), e.id);
            }
            parse_date(&e.expires)
                .with_context(|| format!("{}: exception {} expires", path.display(), e.id))?;
        }
        Ok(parsed)
    }

    /// The exception covering `id`, if any, and whether it is still in force on `today`.
    pub fn find(&self, id: &str, today: (i32, u32, u32)) -> Option<(&Exception, bool)> {
        self.exception.iter().find(|e| e.id == id).map(|e| {
            let in_force = parse_date(&e.expires).is_ok_and(|d| d > today);
            (e, in_force)
        })
    }
}

/// `YYYY-MM-DD` → (year, month, day), validated.
pub fn parse_date(s: &str) -> Result<(i32, u32, u32)> {
    let mut it = s.split('-');
    let (Some(y), Some(m), Some(d), None) = (it.next(), it.next(), it.next(), it.next()) else {
        bail!("{s:?} is not YYYY-MM-DD");
    };
    let (y, m, d): (i32, u32, u32) = (y.parse()?, m.parse()?, d.parse()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || y.to_string().len() != 4 {
        bail!("{s:?} is not a valid date");
    }
    Ok((y, m, d))
}

/// Today's date (UTC), from the civil-from-days algorithm (H. Hinnant), to avoid a date crate.
pub fn today_utc() -> (i32, u32, u32) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0))
}

pub fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        i32::try_from(y).unwrap_or(0),
        u32::try_from(m).unwrap_or(0),
        u32::try_from(d).unwrap_or(0),
    )
}

/// Where the advisories come from this run.
#[derive(Debug, PartialEq, Eq)]
pub enum AdvisorySource {
    Online,
    Local(PathBuf),
}

fn github_reachable() -> bool {
    ("github.com", 443)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok())
}

/// The online database if github.com answers, else the first local copy that exists.
pub fn advisory_source() -> Option<AdvisorySource> {
    if github_reachable() {
        return Some(AdvisorySource::Online);
    }
    let candidates = [
        std::env::var_os("GATEHOUSE_ADVISORY_DB").map(PathBuf::from),
        Some(paths::repo_root().join("../shared/advisory-db")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("crates").is_dir())
        .map(AdvisorySource::Local)
}

#[derive(Debug, Deserialize)]
pub struct AuditReport {
    pub vulnerabilities: Vulnerabilities,
    #[serde(default)]
    pub warnings: std::collections::BTreeMap<String, Vec<Finding>>,
}

#[derive(Debug, Deserialize)]
pub struct Vulnerabilities {
    pub list: Vec<Finding>,
}

#[derive(Debug, Deserialize)]
pub struct Finding {
    pub advisory: Option<Advisory>,
    pub package: Package,
}

#[derive(Debug, Deserialize)]
pub struct Advisory {
    pub id: String,
    #[serde(default)]
    pub title: String,
}

#[derive(Debug, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
}

/// The verdict on one `cargo audit --json` report: lines to print, and the failures.
pub fn judge(
    report: &AuditReport,
    exceptions: &Exceptions,
    today: (i32, u32, u32),
) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    for v in &report.vulnerabilities.list {
        let (id, title) = v
            .advisory
            .as_ref()
            .map_or(("(no id)", ""), |a| (a.id.as_str(), a.title.as_str()));
        let what = format!("{id} {} {}: {title}", v.package.name, v.package.version);
        match exceptions.find(id, today) {
            Some((e, true)) if e.krate == v.package.name => {
                lines.push(format!(
                    "    accepted until {}: {what} ({})",
                    e.expires, e.reason
                ));
            }
            Some((e, _)) if e.krate == v.package.name => {
                failures.push(format!("{what} (exception expired on {})", e.expires));
            }
            _ => failures.push(what),
        }
    }
    for (kind, findings) in &report.warnings {
        for f in findings {
            let id = f.advisory.as_ref().map_or("", |a| a.id.as_str());
            lines.push(format!(
                "    notice ({kind}): {} {} {id}",
                f.package.name, f.package.version
            ));
        }
    }
    (lines, failures)
}

fn advisories() -> Result<()> {
    let Some(source) = advisory_source() else {
        eprintln!(
            "==> dependency audit skipped: no RustSec database (github.com unreachable, no \
             GATEHOUSE_ADVISORY_DB, no ../shared/advisory-db)"
        );
        return Ok(());
    };
    let audit = ensure_tool(CARGO_AUDIT)?;
    let mut cmd = Command::new(&audit);
    cmd.current_dir(paths::repo_root())
        .args(["audit", "--json"]);
    match &source {
        AdvisorySource::Online => {
            eprintln!("==> cargo audit (online RustSec database)");
        }
        AdvisorySource::Local(db) => {
            eprintln!("==> cargo audit (local RustSec database {})", db.display());
            cmd.arg("--db").arg(db).args(["--no-fetch", "--stale"]);
        }
    }
    let out = cmd.output().context("running cargo audit")?;
    let report: AuditReport = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "cargo audit gave no JSON report: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let exceptions =
        Exceptions::load(&paths::repo_root().join("supply-chain/advisory-exceptions.toml"))?;
    let (lines, failures) = judge(&report, &exceptions, today_utc());
    for l in &lines {
        eprintln!("{l}");
    }
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("    VULNERABLE: {f}");
        }
        bail!(
            "{} RustSec advisories affect Cargo.lock (upgrade, or accept each in \
             supply-chain/advisory-exceptions.toml with a reason and an expiry date)",
            failures.len()
        );
    }
    eprintln!(
        "    no vulnerable dependency ({} notices)",
        lines.iter().filter(|l| l.contains("notice")).count()
    );
    Ok(())
}

fn licences_and_sources() -> Result<()> {
    let deny = ensure_tool(CARGO_DENY)?;
    eprintln!("==> cargo deny check licenses sources bans (supply-chain/deny.toml)");
    let status = Command::new(&deny)
        .current_dir(paths::repo_root())
        .args([
            "deny",
            "--log-level",
            "error",
            "--config",
            "supply-chain/deny.toml",
            "check",
            "licenses",
            "sources",
            "bans",
        ])
        .status()
        .context("running cargo deny")?;
    if !status.success() {
        bail!("cargo deny: a licence, source or ban check failed (see above)");
    }
    Ok(())
}

/// Crates present in more than one version in what a function binary links (proc macros, which
/// run only at build time, left out).
fn duplicates() -> Result<()> {
    for function in FUNCTIONS {
        let out = Command::new(cargo())
            .current_dir(paths::repo_root())
            .args([
                "tree",
                "--quiet",
                "-p",
                function,
                // What the binary links: no build-time proc-macro crates.
                "-e",
                "normal,no-proc-macro",
                "--duplicates",
                "--depth",
                "0",
                "--prefix",
                "none",
            ])
            .output()
            .context("running cargo tree")?;
        if !out.status.success() {
            bail!("cargo tree -p {function} failed");
        }
        let mut dups: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_end_matches(" (*)").to_owned())
            .filter(|l| !l.trim().is_empty())
            .collect();
        dups.sort();
        dups.dedup();
        eprintln!(
            "    {function}: {} crate versions duplicated in the binary's tree{}{}",
            dups.len(),
            if dups.is_empty() { "" } else { ": " },
            dups.join(", ")
        );
    }
    Ok(())
}

pub fn run() -> Result<()> {
    advisories()?;
    licences_and_sources()?;
    duplicates()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(json: &str) -> AuditReport {
        serde_json::from_str(json).unwrap()
    }

    const VULN: &str = r#"{"vulnerabilities":{"found":true,"count":1,"list":[
        {"advisory":{"id":"RUSTSEC-2099-0001","title":"bad"},"package":{"name":"foo","version":"1.0.0"}}]},
        "warnings":{"unmaintained":[{"advisory":{"id":"RUSTSEC-2099-0002","title":"old"},"package":{"name":"bar","version":"0.1.0"}}]}}"#;

    #[test]
    fn a_vulnerability_fails_unless_accepted_until_a_future_date() {
        let none = Exceptions::default();
        let (lines, failures) = judge(&report(VULN), &none, (2026, 11, 29));
        assert_eq!(failures.len(), 1);
        assert!(failures[0].contains("RUSTSEC-2099-0001 foo 1.0.0"));
        assert!(lines[0].contains("notice (unmaintained): bar 0.1.0"));

        let accepted: Exceptions = toml::from_str(
            r#"[[exception]]
id = "RUSTSEC-2099-0001"
crate = "foo"
reason = "only the unused X feature is affected"
expires = "2027-01-31""#,
        )
        .unwrap();
        let (lines, failures) = judge(&report(VULN), &accepted, (2026, 11, 29));
        assert!(failures.is_empty());
        assert!(lines[0].contains("accepted until 2027-01-31"));
        // On the expiry day the exception no longer holds.
        let (_, failures) = judge(&report(VULN), &accepted, (2027, 1, 31));
        assert_eq!(failures.len(), 1);
        assert!(failures[0].contains("expired"));
        // An exception for another crate with the same id does not cover it.
        let wrong: Exceptions = toml::from_str(
            r#"[[exception]]
id = "RUSTSEC-2099-0001"
crate = "other"
reason = "r"
expires = "2099-01-01""#,
        )
        .unwrap();
        assert_eq!(judge(&report(VULN), &wrong, (2026, 11, 29)).1.len(), 1);
    }

    #[test]
    fn exceptions_need_a_reason_and_a_real_date() {
        let dir = std::env::temp_dir().join(format!("gh-exc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.toml");
        std::fs::write(
            &p,
            "[[exception]]\nid = \"R\"\ncrate = \"c\"\nreason = \" \"\nexpires = \"2027-01-01\"\n",
        )
        .unwrap();
        assert!(Exceptions::load(&p).is_err());
        std::fs::write(
            &p,
            "[[exception]]\nid = \"R\"\ncrate = \"c\"\nreason = \"r\"\nexpires = \"soon\"\n",
        )
        .unwrap();
        assert!(Exceptions::load(&p).is_err());
        std::fs::write(&p, "[[exception]]\nid = \"R\"\ncrate = \"c\"\nreason = \"r\"\nexpires = \"2027-02-30\"\nextra = 1\n").unwrap();
        assert!(Exceptions::load(&p).is_err(), "unknown keys are refused");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            Exceptions::load(&paths::repo_root().join("supply-chain/advisory-exceptions.toml"))
                .is_ok()
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_786), (2026, 11, 29));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert!(parse_date("2026-13-01").is_err());
        assert!(parse_date("26-01-01").is_err());
        assert_eq!(parse_date("2027-01-31").unwrap(), (2027, 1, 31));
    }
}
