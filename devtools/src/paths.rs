//! Where things live in a checkout. Everything generated goes under the git-ignored `.local/`.
use std::path::PathBuf;

/// The repository root: the checkout holding the package cargo runs (`CARGO_MANIFEST_DIR` as
/// `cargo run` and `cargo test` set it for the process), else the one this crate was compiled in.
///
/// Read at run time first because a binary reused from a build cache may have been compiled in
/// another copy of the repository (CI extracts each run into a fresh temporary directory): a path
/// baked in at compile time would then point at a directory that no longer exists, and the dev
/// stack and the tests would each generate a different dev signing key. A directory counts only
/// if it is a Gatehouse checkout (`gatehouse_root_above`), so a `CARGO_MANIFEST_DIR` inherited
/// from another project is ignored.
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .and_then(|dir| gatehouse_root_above(&dir))
        .unwrap_or_else(|| {
            let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            here.parent().map(PathBuf::from).unwrap_or(here)
        })
}

/// The nearest directory at or above `dir` that is a Gatehouse checkout: a `Cargo.toml` with a
/// `[workspace]` table and this crate's manifest at `devtools/Cargo.toml`.
fn gatehouse_root_above(dir: &std::path::Path) -> Option<PathBuf> {
    let is_root = |d: &std::path::Path| {
        let workspace = std::fs::read_to_string(d.join("Cargo.toml")).is_ok_and(|toml| {
            toml.lines()
                .any(|l| l.trim_start().starts_with("[workspace]"))
        });
        let devtools = std::fs::read_to_string(d.join("devtools").join("Cargo.toml"))
            .is_ok_and(|toml| toml.contains(concat!("name = \"", env!("CARGO_PKG_NAME"), "\"")));
        workspace && devtools
    };
    dir.ancestors().find(|d| is_root(d)).map(PathBuf::from)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkout_is_found_above_a_member_and_nowhere_else() {
        let member = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let root = gatehouse_root_above(&member.join("src"));
        assert_eq!(root.as_deref(), member.parent());
        assert_eq!(gatehouse_root_above(std::path::Path::new("/")), None);
        // Another workspace (no devtools crate of ours) is not taken for the checkout.
        let other = std::env::temp_dir().join(format!("not-gatehouse-{}", std::process::id()));
        std::fs::create_dir_all(other.join("member")).unwrap();
        std::fs::write(
            other.join("Cargo.toml"),
            "[workspace]\nmembers = [\"member\"]\n",
        )
        .unwrap();
        let found = gatehouse_root_above(&other.join("member"));
        std::fs::remove_dir_all(&other).unwrap();
        assert_eq!(found, None);
        assert_eq!(repo_root().as_path(), member.parent().unwrap_or(&member));
    }
}
