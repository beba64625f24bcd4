//! The audit tools' command line as a user meets it: bad input is refused with a non-zero exit
//! and a message that names the problem (never a panic or an SDK dump), and without AWS
//! credentials the answer is one line naming what is missing and the dev stack's --endpoint.
//! The environment is cleared, so nothing of the machine's own AWS setup leaks in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

fn xtask(args: &[&str], env: &[(&str, &str)]) -> Output {
    let home = std::env::temp_dir().join(format!("xtask-cli-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // No ~/.aws of the machine, and never the instance metadata service.
        .env("HOME", &home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied());
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn an_unknown_decision_is_refused_and_the_valid_ones_are_listed() {
    let o = xtask(&["audit-query", "--decision", "block"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("'block'") && e.contains("rate_limited"), "{e}");
    let help = xtask(&["audit-query", "--help"], &[]);
    let text = String::from_utf8_lossy(&help.stdout);
    for d in gatehouse::audit::Decision::ALL {
        assert!(text.contains(d.as_str()), "--help lists {}", d.as_str());
    }
}

#[test]
fn a_bad_since_is_one_line_and_a_non_zero_exit() {
    for bad in ["1é", "99999999999999999999d", "yesterday", ""] {
        let o = xtask(
            &[
                "audit-query",
                "--endpoint",
                "http://127.0.0.1:9",
                "--since",
                bad,
            ],
            &[],
        );
        assert_eq!(o.status.code(), Some(1), "{bad:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert_eq!(e.trim().lines().count(), 1, "{bad:?}: {e}");
        assert!(e.starts_with("error: ") && !e.contains("panicked"), "{e}");
    }
}

#[test]
fn without_credentials_or_region_the_answer_is_one_line_with_the_dev_endpoint() {
    for (args, env) in [
        (vec!["audit-query", "--principal", "alice"], vec![]),
        (vec!["audit-verify"], vec![("AWS_REGION", "us-east-1")]),
    ] {
        let o = xtask(&args, &env);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert_eq!(e.trim().lines().count(), 1, "{args:?}: {e}");
        assert!(
            e.contains("--endpoint http://127.0.0.1:4566") && e.len() < 400,
            "{args:?}: {e}"
        );
    }
}
