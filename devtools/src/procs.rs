//! Child processes started in their own process group, so stopping one stops everything it
//! started (cargo lambda watch runs the functions as its children) and nothing else.
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::process::{Child, Command};

pub struct Managed {
    pub name: String,
    child: Option<Child>,
    pgid: Option<u32>,
}

fn signal_group(pgid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .args([signal, "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Managed {
    /// Spawns `cmd` as the leader of a new process group, its output appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &std::path::Path) -> Result<Self> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("could not start {name}"))?;
        let pgid = child.id();
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            pgid,
        })
    }

    /// True while the process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGTERM to the whole group, then SIGKILL after a grace period.
    pub async fn stop(&mut self) {
        if let (Some(pgid), Some(mut child)) = (self.pgid, self.child.take()) {
            signal_group(pgid, "-TERM");
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                signal_group(pgid, "-KILL");
                let _ = child.wait().await;
            }
            // The leader may exit before its children; make sure none survive.
            signal_group(pgid, "-KILL");
        }
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        if let (Some(pgid), Some(_)) = (self.pgid, self.child.as_ref()) {
            signal_group(pgid, "-KILL");
        }
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub async fn wait_for_port(port: u16, timeout: Duration, proc: &mut Managed) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if !proc.is_running() {
            anyhow::bail!(
                "{} exited before listening on port {port} (see its log under .local/logs)",
                proc.name
            );
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "{} did not listen on port {port} within {timeout:?}",
                proc.name
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fails early, with a clear message, when a port we want is already taken.
pub async fn ensure_port_free(port: u16, what: &str) -> Result<()> {
    if tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
    {
        anyhow::bail!("port {port} (for {what}) is already in use: is another dev stack running?");
    }
    Ok(())
}
