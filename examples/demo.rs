//! A real sync on a machine with no Okta or Pendo account: starts local Okta and Pendo servers
//! that speak the real wire formats, writes a config pointing at them, runs
//! `okta-pendo-sync sync` and then `okta-pendo-sync history`.
//!
//! ```sh
//! cargo run --example demo            # 1,000 users
//! cargo run --example demo -- 25000   # any number
//! ```

use std::collections::HashSet;
use std::time::Duration;

use okta_pendo_testkit::users::{Logins, generated_login};
use okta_pendo_testkit::{
    ExistingVisitors, FakeOkta, FakePendo, OktaOptions, PendoOptions, UserSource,
};

fn main() {
    let users: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    let dir = tempfile::tempdir().expect("a temporary folder");

    // The servers live on their own runtime thread while the CLI runs here, as it would from a
    // shell.
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let servers = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("a runtime");
        rt.block_on(async move {
            // Every 50th user is not yet known to Pendo, to show how missing visitors look.
            let missing: HashSet<String> = (0..users)
                .filter(|i| i % 50 == 49)
                .map(|i| generated_login(i, Logins::Realistic))
                .collect();
            let okta = FakeOkta::start(OktaOptions {
                users: UserSource::GeneratedRealistic(users),
                ..OktaOptions::default()
            })
            .await;
            let pendo = FakePendo::start(PendoOptions {
                existing: ExistingVisitors::Except(missing),
                record_values: false,
                ..PendoOptions::default()
            })
            .await;
            tx.send((okta.base_url(), pendo.base_url()))
                .expect("main thread waits");
            // Bounded: the demo ends long before this.
            let _ = tokio::time::timeout(Duration::from_secs(600), stop_rx).await;
        });
    });
    let (okta_url, pendo_url) = rx.recv().expect("the servers start");

    let state = dir.path().join("state.db");
    let config = dir.path().join("config.toml");
    // Secret files are for their owner only, as the program advises.
    for (name, secret) in [
        ("okta.token", "okta-test-token\n"),
        ("pendo.key", "pendo-test-key\n"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, secret).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
    }
    std::fs::write(
        &config,
        format!(
            r#"[okta]
org_url = "{okta_url}"
api_token_file = "{dir}/okta.token"
filter = 'status eq "ACTIVE"'

[pendo]
base_url = "{pendo_url}"
integration_key_file = "{dir}/pendo.key"

[sync]
visitor_id_key = "profile.login"

[mapping]
department = "profile.department"
title = "profile.title"
okta_status = "status"
last_login = {{ path = "lastLogin", type = "date" }}

[state]
path = "{state}"
"#,
            dir = dir.path().display(),
            state = state.display(),
        ),
    )
    .expect("write the config");

    println!("Local Okta at {okta_url} ({users} users), local Pendo at {pendo_url}");
    println!("Config: {}\n", config.display());
    let cfg = config.to_string_lossy().into_owned();
    println!("$ okta-pendo-sync -c {cfg} sync");
    let code = okta_pendo_sync::app::run_from(["okta-pendo-sync", "-c", &cfg, "sync"]);
    println!("(exit code {code})\n");
    println!("$ okta-pendo-sync -c {cfg} history");
    okta_pendo_sync::app::run_from(["okta-pendo-sync", "-c", &cfg, "history"]);
    println!("\n$ okta-pendo-sync -c {cfg} history --json --limit 1");
    okta_pendo_sync::app::run_from([
        "okta-pendo-sync",
        "-c",
        &cfg,
        "history",
        "--json",
        "--limit",
        "1",
    ]);

    let _ = stop_tx.send(());
    let _ = servers.join();
}
