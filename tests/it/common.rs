//! Shared by the integration tests: a temporary config pointing at local Okta and Pendo test
//! servers, and a way to run the real binary against it.

use std::path::{Path, PathBuf};
use std::process::Output;

use okta_pendo_testkit::{FakeOkta, FakePendo};

pub const OKTA_TOKEN: &str = "okta-test-token";
pub const PENDO_KEY: &str = "pendo-test-key";

/// A folder with a config file and a state database path.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub state: PathBuf,
}

impl Setup {
    /// Writes a config for the two servers; `extra` is TOML appended per section as needed:
    /// `okta_extra` goes into `[okta]`, `pendo_extra` into `[pendo]`, `sync_extra` into
    /// `[sync]`, and `mapping` is the whole `[mapping]` body.
    pub fn new(okta: &FakeOkta, pendo: &FakePendo, parts: Parts<'_>) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state/state.db");
        std::fs::write(dir.path().join("okta.token"), format!("{OKTA_TOKEN}\n")).unwrap();
        std::fs::write(dir.path().join("pendo.key"), format!("{PENDO_KEY}\n")).unwrap();
        let text = format!(
            r#"
[okta]
org_url = "{okta}"
{okta_auth}
{okta_extra}
{oauth}

[pendo]
base_url = "{pendo}"
integration_key_file = "{dir}/pendo.key"
{pendo_extra}

[sync]
{sync_extra}

[mapping]
{mapping}

[state]
path = "{state}"

[log]
level = "info"
format = "{log_format}"

{extra}
"#,
            okta = okta.base_url(),
            pendo = pendo.base_url(),
            dir = dir.path().display(),
            okta_extra = parts.okta,
            okta_auth = if parts.oauth.is_empty() {
                format!("api_token_file = \"{}/okta.token\"", dir.path().display())
            } else {
                String::new()
            },
            oauth = if parts.oauth.is_empty() {
                String::new()
            } else {
                format!("[okta.oauth]\n{}", parts.oauth)
            },
            pendo_extra = parts.pendo,
            sync_extra = parts.sync,
            mapping = parts.mapping,
            state = state.display(),
            log_format = parts.log_format,
            extra = parts.extra,
        );
        let config = dir.path().join("config.toml");
        std::fs::write(&config, text).unwrap();
        Setup { dir, config, state }
    }

    /// Starts the binary with `-c config` and `command` in the background (stdout discarded);
    /// it is killed if the handle is dropped.
    pub fn spawn(&self, command: &str) -> tokio::process::Child {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_okta-pendo-sync"))
            .arg("-c")
            .arg(&self.config)
            .arg(command)
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("the binary starts")
    }

    /// Runs the binary with `-c config` and the given arguments.
    pub async fn run(&self, args: &[&str]) -> Output {
        run_bin(&self.config, args, &[]).await
    }
}

/// The pieces of a test config.
#[derive(Clone, Copy)]
pub struct Parts<'a> {
    pub okta: &'a str,
    pub pendo: &'a str,
    pub sync: &'a str,
    pub mapping: &'a str,
    pub log_format: &'a str,
    /// Appended at the end: whole sections such as `[retry]`.
    pub extra: &'a str,
    /// The body of `[okta.oauth]`, used instead of the SSWS token when not empty.
    pub oauth: &'a str,
}

impl Default for Parts<'_> {
    fn default() -> Self {
        Parts {
            okta: "",
            pendo: "",
            sync: "",
            mapping: r#"department = "profile.department"
title = "profile.title"
okta_status = "status"
last_login = { path = "lastLogin", type = "date" }"#,
            log_format: "json",
            extra: "",
            oauth: "",
        }
    }
}

/// Runs the real binary (asynchronously, so test servers in this runtime keep serving).
pub async fn run_bin(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_okta-pendo-sync"));
    cmd.arg("-c").arg(config).args(args);
    cmd.env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.kill_on_drop(true);
    tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
        .await
        .expect("the binary did not finish within 120 s")
        .expect("the binary could not be started")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `history --json` parsed.
pub async fn history(setup: &Setup) -> Vec<serde_json::Value> {
    let out = setup.run(&["history", "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("history --json is a JSON array")
}

/// The newest run record.
pub async fn last_run(setup: &Setup) -> serde_json::Value {
    history(setup)
        .await
        .into_iter()
        .next()
        .expect("a run was recorded")
}

/// The line of `check`'s table about `what`: whether it passed, and its detail.
pub fn check_line(text: &str, what: &str) -> Option<(bool, String)> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(what)?;
        if !rest.starts_with("  ") {
            return None;
        }
        let rest = rest.trim_start();
        if let Some(d) = rest.strip_prefix("ok") {
            Some((true, d.trim().to_owned()))
        } else {
            rest.strip_prefix("FAIL")
                .map(|d| (false, d.trim().to_owned()))
        }
    })
}
