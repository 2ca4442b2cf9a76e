//! The systemd unit: `systemd-analyze verify` accepts it, and its exposure score under
//! `systemd-analyze security --offline=yes` stays at 2.0 or lower.

use std::process::Command;

fn unit_for_this_build(dir: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/okta-pendo-sync.service"),
    )
    .unwrap();
    // verify checks that ExecStart's binary exists: point it at the one just built.
    let text = text.replace(
        "/usr/bin/okta-pendo-sync",
        env!("CARGO_BIN_EXE_okta-pendo-sync"),
    );
    let path = dir.join("okta-pendo-sync.service");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_unit_verifies_and_is_well_sandboxed() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze is installed (.ci/run installs it)");
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );

    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&security.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no score in:\n{text}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    println!("systemd-analyze security --offline=yes: {score}");
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
}

#[test]
fn the_unit_wires_what_the_daemon_expects() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/okta-pendo-sync.service"),
    )
    .unwrap();
    for line in [
        // Where the Debian package installs the binary (the package ships this file as it is).
        "ExecStartPre=/usr/bin/okta-pendo-sync --config",
        "ExecStart=/usr/bin/okta-pendo-sync --config",
        "DynamicUser=yes",
        "StateDirectory=okta-pendo-sync",
        "ConfigurationDirectory=okta-pendo-sync",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "check --offline",
        "LoadCredential=okta-token:",
        "LoadCredential=pendo-key:",
        "MemoryMax=",
        "TasksMax=",
        "LimitCORE=0",
    ] {
        assert!(text.contains(line), "{line} missing");
    }
    // An invalid configuration stops the service for good instead of restarting it every 30 s.
    let no_restart = format!(
        "\nRestartPreventExitStatus={}\n",
        okta_pendo_sync::app::EXIT_CONFIG
    );
    assert!(text.contains(&no_restart), "{no_restart:?} missing");
    // The example config reads the credentials where LoadCredential puts them, and keeps its
    // state where StateDirectory is.
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/okta-pendo-sync.toml"),
    )
    .unwrap();
    assert!(
        example
            .contains("api_token_file = \"/run/credentials/okta-pendo-sync.service/okta-token\"")
    );
    assert!(
        example.contains(
            "integration_key_file = \"/run/credentials/okta-pendo-sync.service/pendo-key\""
        )
    );
    assert!(example.contains("path = \"/var/lib/okta-pendo-sync/state.db\""));
}
