//! Where things live in a checkout. Everything generated goes under the git-ignored `.local/`.
use std::path::PathBuf;

/// The repository root (this crate sits one level below it).
pub fn repo_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

pub fn local_dir() -> PathBuf {
    repo_root().join(".local")
}

pub fn venv_dir() -> PathBuf {
    local_dir().join("venv")
}

pub fn venv_bin() -> PathBuf {
    venv_dir().join("bin")
}

/// checkov's own venv (its pins conflict with the SAM CLI's).
pub fn checkov_venv_dir() -> PathBuf {
    local_dir().join("venv-checkov")
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set, else `target/` in the checkout.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_relative() {
                repo_root().join(p)
            } else {
                p
            }
        })
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The dev signing keys: `private-jwks.json` (with private parts) and `public-jwks.json`.
pub fn dev_keys_dir() -> PathBuf {
    local_dir().join("dev-keys")
}

pub fn template_path() -> PathBuf {
    repo_root().join("infra").join("template.yaml")
}

pub fn logs_dir() -> PathBuf {
    local_dir().join("logs")
}

/// PATH with the venv's bin first, so `cargo lambda`, `sam` and friends resolve to ours.
pub fn path_with_venv() -> std::ffi::OsString {
    let mut parts = vec![venv_bin()];
    if let Some(p) = std::env::var_os("PATH") {
        parts.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(parts).unwrap_or_default()
}
