//! Resilience: secrets under full tracing, crashes, a second process on the same state file,
//! and what the fault-injecting test servers throw at a run.

use crate::common;

use std::time::Duration;

use common::{OKTA_TOKEN, PENDO_KEY, Parts, Setup, last_run, stderr, stdout};
use okta_pendo_testkit::{FakeOkta, FakePendo, OktaOptions, PendoFault, PendoOptions, UserSource};

/// Generated users, with a rate limit high enough that pacing adds nothing noticeable (the
/// tests about pacing set their own).
fn okta_opts(users: usize) -> OktaOptions {
    OktaOptions {
        users: UserSource::Generated(users),
        rate_limit: 100_000,
        ..OktaOptions::default()
    }
}

/// Every byte under `dir`, for a search of secrets in files the run wrote.
fn all_file_bytes(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_secret_at_trace_level_with_a_failing_pendo() {
    let okta = FakeOkta::start(okta_opts(450)).await;
    // Pendo rejects the key.
    let pendo = FakePendo::start(PendoOptions {
        key: "a-different-key".into(),
        ..PendoOptions::default()
    })
    .await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            log_format: "json",
            ..Parts::default()
        },
    );
    // Log files too.
    let logs = setup.dir.path().join("logs");
    let text = std::fs::read_to_string(&setup.config).unwrap().replace(
        "[log]\n",
        &format!("[log]\ndirectory = \"{}\"\n", logs.display()),
    );
    std::fs::write(&setup.config, text).unwrap();
    let env = [("RUST_LOG", "trace")];
    let out = common::run_bin(&setup.config, &["sync"], &env).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).lines().count() > 20, "trace logging is on");
    let check = common::run_bin(&setup.config, &["check"], &env).await;
    let history = setup.run(&["history"]).await;
    let history_json = setup.run(&["history", "--json"]).await;
    let run = last_run(&setup).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["status_code"], 401);

    let mut places: Vec<(String, Vec<u8>)> = vec![
        ("sync stdout".into(), out.stdout.clone()),
        ("sync stderr".into(), out.stderr.clone()),
        ("check stdout".into(), check.stdout.clone()),
        ("check stderr".into(), check.stderr.clone()),
        ("history".into(), history.stdout.clone()),
        ("history --json".into(), history_json.stdout.clone()),
    ];
    // The state folder (the database, its WAL and the lock file) and the log files.
    let log_files = all_file_bytes(&logs);
    assert!(!log_files.is_empty() && log_files.iter().any(|(_, b)| b.len() > 1000));
    for (path, bytes) in all_file_bytes(setup.state.parent().unwrap())
        .into_iter()
        .chain(log_files)
    {
        places.push((path.display().to_string(), bytes));
    }
    for (place, bytes) in &places {
        for secret in [OKTA_TOKEN, PENDO_KEY] {
            assert!(!contains(bytes, secret), "{secret} found in {place}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_state_file_is_refused() {
    let okta = FakeOkta::start(OktaOptions {
        page_delay: Duration::from_millis(300),
        ..okta_opts(1_000)
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            okta: "page_size = 100",
            ..Parts::default()
        },
    );
    let first = setup.spawn("sync");
    let pid = first.id().unwrap();
    // Wait (bounded) until the first one is reading.
    for _ in 0..100 {
        if !okta.requests().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = setup.run(&["sync"]).await;
    assert_eq!(second.status.code(), Some(1));
    let all = format!("{}{}", stdout(&second), stderr(&second));
    assert!(
        all.contains(&format!(
            "another okta-pendo-sync process (PID {pid}) is using the state database"
        )),
        "{all}"
    );
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_run_loses_no_earlier_record() {
    let okta = FakeOkta::start(OktaOptions {
        page_delay: Duration::from_millis(200),
        ..okta_opts(3_000)
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            okta: "page_size = 100",
            ..Parts::default()
        },
    );
    // Two quick dry runs, against a fast org given through the environment, leave records.
    let fast = FakeOkta::start(okta_opts(300)).await;
    let fast_env = [("OKTA_PENDO_SYNC__OKTA__ORG_URL", fast.base_url())];
    let fast_env: Vec<(&str, &str)> = fast_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dry = ["sync", "--dry-run", "--output", "/dev/null"];
    for _ in 0..2 {
        let out = common::run_bin(&setup.config, &dry, &fast_env).await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let before = common::history(&setup).await;
    assert_eq!(before.len(), 2);

    let mut child = setup.spawn("sync");
    let seen = okta.requests().len();
    for _ in 0..200 {
        if pendo.post_count() > 0 && okta.requests().len() > seen + 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        pendo.post_count() > 0,
        "the run was pushing when it was killed"
    );
    child.start_kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().await.unwrap();

    let after = common::history(&setup).await;
    assert_eq!(after, before, "earlier records survive, intact");
    // The lock died with the process; the next run works and is recorded.
    let out = common::run_bin(&setup.config, &dry, &fast_env).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(common::history(&setup).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_after_one_killed_while_pushing_is_full() {
    // Pendo is slow, so that the kill lands while batches are being pushed.
    let okta = FakeOkta::start(okta_opts(400)).await;
    let pendo = FakePendo::start(PendoOptions {
        batch_delay: Duration::from_millis(300),
        ..PendoOptions::default()
    })
    .await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            pendo: "batch_size = 20\nconcurrency = 1",
            // No lastLogin: with it mapped every run would be full anyway.
            mapping: "department = \"profile.department\"\ntitle = \"profile.title\"",
            ..Parts::default()
        },
    );
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let posts = pendo.post_count();

    // A full run, killed once it is pushing: the hashes of what it pushed may not be stored.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_okta-pendo-sync"))
        .arg("-c")
        .arg(&setup.config)
        .args(["sync", "--full"])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..400 {
        if pendo.post_count() > posts + 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(pendo.post_count() > posts + 1, "killed while pushing");
    child.start_kill().unwrap(); // SIGKILL: no end recorded
    child.wait().await.unwrap();

    // Nothing changed in Okta, yet the next run is full and says why; the one after it, with
    // a success in between, is incremental again.
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("never recorded its end"),
        "{}",
        stdout(&out)
    );
    let run = last_run(&setup).await;
    assert_eq!(run["mode"], "full");
    assert_eq!(run["records_processed"], 400);
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        last_run(&setup).await["mode"],
        "incremental",
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pendo_conflicts_and_retry_after_are_transient() {
    let okta = FakeOkta::start(okta_opts(30)).await;
    let pendo = FakePendo::start(PendoOptions {
        faults: vec![
            PendoFault::Status {
                request: 0,
                status: 409,
            },
            PendoFault::Status {
                request: 1,
                status: 503,
            },
        ],
        ..PendoOptions::default()
    })
    .await;
    let setup = Setup::new(&okta, &pendo, Parts::default());
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let statuses: Vec<u16> = pendo.batches().iter().map(|b| b.status).collect();
    assert_eq!(statuses, [409, 503, 200]);
    let log = stdout(&out);
    assert!(
        log.contains("retrying") && log.contains("409"),
        "a log line per retry says why"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_records_an_interrupted_run() {
    let okta = FakeOkta::start(OktaOptions {
        page_delay: Duration::from_millis(150),
        ..okta_opts(5_000)
    })
    .await;
    // Pushes take a while, so some are in flight when the signal comes.
    let pendo = FakePendo::start(PendoOptions {
        batch_delay: Duration::from_millis(400),
        ..PendoOptions::default()
    })
    .await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            okta: "page_size = 100",
            pendo: "batch_size = 100\nconcurrency = 2",
            sync: "shutdown_grace = \"5s\"",
            ..Parts::default()
        },
    );
    let mut child = setup.spawn("sync");
    for _ in 0..200 {
        if pendo.batches().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let pid = child.id().unwrap() as i32;
    let signalled = std::time::Instant::now();
    assert_eq!(send_signal(pid, 15), 0);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits within the grace period")
        .unwrap();
    assert!(
        signalled.elapsed() < Duration::from_secs(6),
        "{:?}",
        signalled.elapsed()
    );
    assert_eq!(status.code(), Some(1), "an interrupted sync exits 1");
    let pages_read = okta.requests().len();
    assert!(
        pages_read < 50,
        "reading stopped early ({pages_read} of 50 pages)"
    );

    let run = last_run(&setup).await;
    assert_eq!(run["status"], "interrupted");
    assert!(
        run["message"].as_str().unwrap().starts_with("Interrupted"),
        "{run}"
    );
    let n = |k: &str| run[k].as_u64().unwrap();
    assert_eq!(
        n("okta_users_read"),
        n("records_processed") + n("users_skipped")
    );
    // Every record it counts as updated really reached Pendo.
    assert_eq!(n("users_updated") as usize, pendo.records_received());
    assert!(n("users_updated") > 0);
}

/// Sends a signal with kill(1).
fn send_signal(pid: i32, sig: i32) -> i32 {
    std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .map_or(-1, |s| s.code().unwrap_or(-1))
}
