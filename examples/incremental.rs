//! What an incremental run saves: a full sync of N users (default 100,000) against the local
//! test servers, then 1% of the users change, then the next run (incremental). Prints the Okta
//! requests, Pendo calls and records of each. The mapping leaves `lastLogin` out: a mapped
//! `lastLogin`, which Okta's `lastUpdated` does not follow, makes every run full.
//!
//! ```sh
//! cargo run --release --example incremental            # 100,000 users, 1% changed
//! cargo run --release --example incremental -- 1000000 # any number
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use okta_pendo_testkit::users::okta_timestamp;
use okta_pendo_testkit::{FakeOkta, FakePendo, OktaOptions, PendoOptions, UserSource};

fn main() {
    let users: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let servers = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("a runtime");
        rt.block_on(async move {
            let okta = Arc::new(
                FakeOkta::start(OktaOptions {
                    users: UserSource::GeneratedRealistic(users),
                    // Measure the program, not a budget: pacing follows what the org allows.
                    rate_limit: 1_000_000,
                    ..OktaOptions::default()
                })
                .await,
            );
            let pendo = Arc::new(
                FakePendo::start(PendoOptions {
                    record_values: false,
                    ..PendoOptions::default()
                })
                .await,
            );
            tx.send((okta.clone(), pendo.clone())).expect("main waits");
            let _ = tokio::time::timeout(Duration::from_secs(3600), stop_rx).await;
        });
    });
    let (okta, pendo) = rx.recv().expect("the servers start");

    // Secret files are for their owner only, as the program advises.
    for (name, secret) in [("t", "okta-test-token"), ("k", "pendo-test-key")] {
        let path = dir.path().join(name);
        std::fs::write(&path, secret).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
    }
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[okta]\norg_url = \"{}\"\napi_token_file = \"{d}/t\"\n[pendo]\nbase_url = \"{}\"\n\
             integration_key_file = \"{d}/k\"\n[mapping]\ndepartment = \"profile.department\"\n\
             title = \"profile.title\"\nokta_status = \"status\"\n\
             [state]\npath = \"{d}/state.db\"\n[log]\nlevel = \"warn\"\n",
            okta.base_url(),
            pendo.base_url(),
            d = dir.path().display()
        ),
    )
    .expect("write the config");
    let cfg = config.to_string_lossy().into_owned();
    let run = |label: &str| {
        let (okta_before, pendo_before, records_before) = (
            okta.requests().len(),
            pendo.post_count(),
            pendo.records_received(),
        );
        let started = Instant::now();
        let code = okta_pendo_sync::app::run_from(["okta-pendo-sync", "-c", &cfg, "sync"]);
        let took = started.elapsed();
        println!(
            "{label:<12} {:>14} {:>12} {:>14} {:>9.2} s   (exit {code})",
            okta.requests().len() - okta_before,
            pendo.post_count() - pendo_before,
            pendo.records_received() - records_before,
            took.as_secs_f64()
        );
    };
    println!("{users} users; then 1% change");
    println!(
        "{:<12} {:>14} {:>12} {:>14} {:>11}",
        "run", "okta requests", "pendo calls", "records sent", "wall"
    );
    run("full");
    let changed = (users / 100).max(1);
    let at = okta_timestamp(SystemTime::now());
    for k in 0..changed {
        okta.touch_user(k * 100, &at, "Changed title");
    }
    run("incremental");
    okta_pendo_sync::app::run_from(["okta-pendo-sync", "-c", &cfg, "history", "--limit", "2"]);

    let _ = stop_tx.send(());
    let _ = servers.join();
}
