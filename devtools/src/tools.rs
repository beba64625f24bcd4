//! Installs what the dev stack and the checks need into `.local/venv` (from PyPI), once.
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::paths;

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Creates the venv and installs the pinned requirements files given (relative to
/// `devtools/python/`). A stamp per requirements file skips pip when nothing changed.
pub fn ensure_venv(requirements: &[&str]) -> Result<()> {
    ensure_venv_at(&paths::venv_dir(), requirements)
}

/// `ensure_venv` for a venv of its own: for tools whose pins conflict with the main venv's
/// (checkov pins boto3 to a version aws-sam-cli refuses).
pub fn ensure_venv_at(venv: &Path, requirements: &[&str]) -> Result<()> {
    let venv = venv.to_path_buf();
    let python = venv.join("bin").join("python");
    if !python.exists() {
        eprintln!("==> creating Python venv at {}", venv.display());
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv",
        )?;
    }
    for req in requirements {
        let req_path = paths::repo_root().join("devtools").join("python").join(req);
        let content = std::fs::read_to_string(&req_path)
            .with_context(|| format!("reading {}", req_path.display()))?;
        let stamp = venv.join(format!(".installed-{req}"));
        if std::fs::read_to_string(&stamp).ok().as_deref() == Some(content.as_str()) {
            continue;
        }
        eprintln!("==> installing {req} into the venv (first run only)");
        run(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(&req_path),
            "pip install",
        )?;
        std::fs::write(&stamp, content)?;
    }
    Ok(())
}

pub fn venv_tool(name: &str) -> std::path::PathBuf {
    paths::venv_bin().join(name)
}

pub fn require_file(path: &Path, hint: &str) -> Result<()> {
    if !path.exists() {
        bail!("{} not found: {hint}", path.display());
    }
    Ok(())
}
