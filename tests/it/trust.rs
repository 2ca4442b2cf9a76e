//! Trustworthy data: after every successful run Pendo matches Okta, and every run that could
//! not make it so says so (README, "Full and incremental runs"). Each test drives the real binary against local Okta
//! and Pendo servers.

use crate::common;

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use common::{Parts, Setup, check_line, history, last_run, stderr, stdout};
use okta_pendo_testkit::users::{generated_user, okta_timestamp};
use okta_pendo_testkit::{FakeOkta, FakePendo, OktaOptions, PendoFault, PendoOptions, UserSource};
use serde_json::Value;

/// Without `lastLogin`, which would make every run full.
const MAPPING: &str = r#"department = "profile.department"
title = "profile.title"
okta_status = "status""#;

const FAST_RETRY: &str = "[retry]\nmax_attempts = 3\nbase_delay = \"50ms\"\nmax_delay = \"200ms\"";

/// The guard holds back the first `sample` records of a full run: a small one lets the first
/// push go early.
const SMALL_GUARD: &str = "[guard]\nsample = 10\n[retry]\nmax_attempts = 3\nbase_delay = \"50ms\"";

fn okta_opts(users: usize) -> OktaOptions {
    OktaOptions {
        users: UserSource::Generated(users),
        rate_limit: 100_000,
        ..OktaOptions::default()
    }
}

fn parts() -> Parts<'static> {
    Parts {
        mapping: MAPPING,
        extra: FAST_RETRY,
        ..Parts::default()
    }
}

fn login(i: usize) -> String {
    format!("user{i}@example.com")
}

async fn sync(setup: &Setup, args: &[&str]) -> Value {
    let mut all = vec!["sync"];
    all.extend_from_slice(args);
    let out = setup.run(&all).await;
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", stderr(&out));
    let run = last_run(setup).await;
    let expected = if run["status"] == "succeeded" { 0 } else { 1 };
    assert_eq!(out.status.code(), Some(expected), "{run}");
    counts_add_up(&run);
    run
}

fn counts_add_up(run: &Value) {
    let n = |k: &str| run[k].as_u64().unwrap();
    assert_eq!(
        n("okta_users_read"),
        n("records_processed") + n("users_unchanged") + n("users_skipped"),
        "{run}"
    );
}

fn edit(setup: &Setup, from: &str, to: &str) {
    let text = std::fs::read_to_string(&setup.config).unwrap();
    assert!(text.contains(from), "{from:?} not in the config");
    std::fs::write(&setup.config, text.replacen(from, to, 1)).unwrap();
}

fn message(run: &Value) -> &str {
    run["message"].as_str().unwrap()
}

fn errors_for(run: &Value, visitor_id: &str) -> Vec<String> {
    run["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["visitor_id"] == visitor_id)
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect()
}

// 1. What decides a full run.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reverted_mapping_after_a_partial_run_is_full() {
    let okta = FakeOkta::start(okta_opts(100)).await;
    // Mapping A pushes one batch (POST 0); mapping B's full run pushes 4 batches of 25
    // (POSTs 1-4), of which POST 3 fails for good.
    let pendo = FakePendo::start(PendoOptions {
        faults: vec![PendoFault::Status {
            request: 3,
            status: 422,
        }],
        ..PendoOptions::default()
    })
    .await;
    let setup = Setup::new(&okta, &pendo, parts());
    assert_eq!(sync(&setup, &[]).await["status"], "succeeded");

    // Mapping B: title from another attribute. Its run begins pushing, then fails partway.
    edit(
        &setup,
        "title = \"profile.title\"",
        "title = \"profile.department\"",
    );
    edit(
        &setup,
        "[pendo]\n",
        "[pendo]\nbatch_size = 25\nconcurrency = 1\n",
    );
    let b = sync(&setup, &[]).await;
    assert_eq!(
        (b["mode"].as_str(), b["status"].as_str()),
        (Some("full"), Some("partial"))
    );

    // Back to mapping A: the last successful run's settings, yet B's values are in Pendo for
    // 75 users no incremental run would read. The run must be full.
    edit(
        &setup,
        "title = \"profile.department\"",
        "title = \"profile.title\"",
    );
    let a = sync(&setup, &[]).await;
    assert_eq!(a["mode"], "full", "{a}");
    assert!(message(&a).contains("did not succeed"), "{a}");
    assert_eq!(a["status"], "succeeded");
    assert_eq!(a["records_processed"], 100);
    for i in 0..100 {
        let user = generated_user(i, &okta.base_url());
        assert_eq!(
            pendo.visitor(&login(i)).unwrap()["title"],
            user["profile"]["title"],
            "{}",
            login(i)
        );
    }
    // Settled: the next run is incremental again.
    assert_eq!(sync(&setup, &[]).await["mode"], "incremental");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_user_scope_makes_the_next_run_full() {
    let okta = FakeOkta::start(okta_opts(60)).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            okta: "filter = 'status eq \"ACTIVE\"'",
            ..parts()
        },
    );
    assert_eq!(sync(&setup, &[]).await["mode"], "full");
    assert_eq!(sync(&setup, &[]).await["mode"], "incremental");
    edit(
        &setup,
        "filter = 'status eq \"ACTIVE\"'",
        "filter = 'status eq \"ACTIVE\" or status eq \"SUSPENDED\"'",
    );
    let run = sync(&setup, &[]).await;
    assert_eq!(run["mode"], "full", "{run}");
    assert!(message(&run).contains("user scope"), "{run}");
    assert_eq!(sync(&setup, &[]).await["mode"], "incremental");
}

// 2. The incremental starting point is Okta's clock.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incremental_start_is_okta_s_clock_not_the_host_s() {
    // The org's clock is ten minutes behind this host's.
    let skew = -600;
    let okta = FakeOkta::start(OktaOptions {
        clock_skew_secs: skew,
        ..okta_opts(50)
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(&okta, &pendo, parts());
    assert_eq!(sync(&setup, &[]).await["mode"], "full");

    // A minute after that run by Okta's clock (nine minutes before it by the host's), an
    // admin changes a title.
    let okta_now =
        SystemTime::now() - Duration::from_secs(skew.unsigned_abs()) + Duration::from_secs(60);
    okta.touch_user(7, &okta_timestamp(okta_now), "Changed after the first run");

    let run = sync(&setup, &[]).await;
    assert_eq!(run["mode"], "incremental");
    assert_eq!(run["records_processed"], 1, "{run}");
    assert_eq!(
        pendo.visitor(&login(7)).unwrap()["title"],
        "Changed after the first run"
    );
    let filter = okta.requests().last().unwrap().filter.clone().unwrap();
    // Okta's clock less the 5-minute overlap: about 15 minutes before the host's.
    let since = chrono::DateTime::parse_from_rfc3339(
        filter
            .trim_start_matches("lastUpdated gt \"")
            .trim_end_matches('"'),
    )
    .unwrap();
    let behind = chrono::Utc::now() - since.with_timezone(&chrono::Utc);
    assert!(
        behind > chrono::Duration::minutes(15) && behind < chrono::Duration::minutes(16),
        "{filter}: {behind}"
    );
}

// 3. One visitor, one record per run.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_sharing_a_visitor_id_send_one_record() {
    let okta = FakeOkta::start(okta_opts(400)).await;
    // Three users share one work email; the first read (user 20) is pushed.
    for i in [20, 210, 399] {
        okta.modify_user(i, |u| {
            u["profile"]["email"] = "ada.lovelace@company.com".into();
            u["profile"]["title"] = format!("Title of user {i}").into();
        });
    }
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            sync: "visitor_id_key = \"profile.email\"",
            pendo: "batch_size = 10\nconcurrency = 8",
            ..parts()
        },
    );
    let run = sync(&setup, &[]).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["okta_users_read"], 400);
    assert_eq!(run["records_processed"], 398);
    assert_eq!(run["users_skipped"], 2);
    let errors = errors_for(&run, "ada.lovelace@company.com");
    assert_eq!(errors.len(), 2, "{run}");
    assert!(errors.iter().all(|e| e.contains("duplicate")), "{errors:?}");
    assert!(
        message(&run).contains("2 with a duplicate visitor ID"),
        "{run}"
    );
    // Pendo got exactly one record for that visitor, the first one read.
    let records: Vec<_> = pendo
        .batches()
        .iter()
        .flat_map(|b| b.records.clone())
        .filter(|(id, _)| id == "ada.lovelace@company.com")
        .collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].1["title"], "Title of user 20");
}

// 4. Confirmed or not succeeded.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_pendo_does_not_confirm_make_a_partial_run() {
    let okta = FakeOkta::start(okta_opts(50)).await;
    let pendo = FakePendo::start(PendoOptions {
        unconfirmed_visitors: HashSet::from([login(4), login(31)]),
        ..PendoOptions::default()
    })
    .await;
    let setup = Setup::new(&okta, &pendo, parts());
    let run = sync(&setup, &[]).await;
    assert_eq!(run["status"], "partial", "{run}");
    assert_eq!(run["status_code"], 200, "every batch was accepted");
    assert_eq!(run["users_updated"], 48);
    assert_eq!(run["users_failed"], 2);
    assert_eq!(run["users_missing"], 0);
    assert!(
        message(&run).contains("2 accepted but not confirmed"),
        "{run}"
    );
    for i in [4, 31] {
        assert!(!errors_for(&run, &login(i)).is_empty(), "{run}");
    }
    // The sync point did not move: the next run is full again.
    assert_eq!(sync(&setup, &[]).await["mode"], "full");
}

// 5. Fail fast.

/// A sync of 2,000 users in 40 pages of 50, one batch of 50 at a time, against this Pendo.
async fn fail_fast_run(pendo: PendoOptions, mapping: &'static str) -> (FakeOkta, FakePendo, Value) {
    let okta = FakeOkta::start(okta_opts(2000)).await;
    let pendo = FakePendo::start(pendo).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            okta: "page_size = 50",
            pendo: "batch_size = 50\nconcurrency = 1",
            extra: SMALL_GUARD,
            mapping,
            ..parts()
        },
    );
    let run = sync(&setup, &[]).await;
    (okta, pendo, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_pendo_key_stops_the_okta_read_at_once() {
    let pendo = PendoOptions {
        key: "the-key-now-in-use".into(),
        ..PendoOptions::default()
    };
    let (okta, pendo, run) = fail_fast_run(pendo, MAPPING).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["status_code"], 401);
    assert!(message(&run).contains("integration key"), "{run}");
    assert!(message(&run).contains("reading Okta stopped"), "{run}");
    // 40 pages in scope; reading stopped a few pages ahead of the refused push.
    let pages = okta.requests().len();
    assert!(
        pages <= 6,
        "{pages} pages read for a run that could push nothing"
    );
    assert_eq!(pendo.post_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_pendo_does_not_know_stops_the_run() {
    let pendo = PendoOptions {
        enforce_schema: true,
        ..PendoOptions::default()
    };
    let mapping = "department = \"profile.department\"\ncost_centre = \"profile.title\"";
    let (okta, pendo, run) = fail_fast_run(pendo, mapping).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["status_code"], 400);
    assert!(message(&run).contains("\"cost_centre\""), "{run}");
    assert!(message(&run).contains("Data Mappings"), "{run}");
    assert!(okta.requests().len() <= 6, "{run}");
    // One POST, not a split down to single records.
    assert_eq!(pendo.post_count(), 1);
}

// 7. The guard.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_that_empties_holds_the_run_until_forced() {
    let okta = FakeOkta::start(okta_opts(300)).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            extra: "[guard]\nsample = 100\n[retry]\nmax_attempts = 3\nbase_delay = \"50ms\"",
            ..parts()
        },
    );
    assert_eq!(sync(&setup, &[]).await["status"], "succeeded");
    let posts = pendo.post_count();

    // A typo in a path: title has a value for no one.
    edit(
        &setup,
        "title = \"profile.title\"",
        "title = \"profile.titel\"",
    );
    let run = sync(&setup, &[]).await;
    assert_eq!(run["status"], "held", "{run}");
    assert_eq!(run["records_processed"], 0);
    assert_eq!(pendo.post_count(), posts, "a held run pushes nothing");
    let text = message(&run);
    assert!(
        text.contains("\"title\"") && text.contains("profile.titel"),
        "{text}"
    );
    assert!(text.contains("100%") && text.contains("0%"), "{text}");
    assert!(text.contains("sync --force"), "{text}");
    // Reading stopped with the sample: 300 users, 100 judged, at most a few pages more.
    assert!(run["okta_users_read"].as_u64().unwrap() < 300, "{run}");

    // history and check say so.
    let table = stdout(&setup.run(&["history"]).await);
    assert!(table.contains(" held "), "{table}");
    let out = setup.run(&["check"]).await;
    assert_eq!(out.status.code(), Some(1));
    let (ok, detail) = check_line(&stdout(&out), "last run").expect("a line about the held run");
    assert!(!ok && detail.contains("--force"), "{detail}");

    // Forced, it goes through.
    let run = sync(&setup, &["--force"]).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["records_processed"], 300);
    assert!(pendo.post_count() > posts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_visitor_key_that_would_create_visitors_is_held() {
    let okta = FakeOkta::start(okta_opts(250)).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            sync: "create_missing_visitors = true",
            ..parts()
        },
    );
    assert_eq!(sync(&setup, &[]).await["status"], "succeeded");
    // Okta's user id instead of the login: every visitor ID would be new.
    edit(
        &setup,
        "create_missing_visitors = true",
        "create_missing_visitors = true\nvisitor_id_key = \"id\"",
    );
    let posts = pendo.post_count();
    let run = sync(&setup, &[]).await;
    assert_eq!(run["status"], "held", "{run}");
    assert!(
        message(&run).contains("100% of this run's first 250 visitor IDs"),
        "{run}"
    );
    assert_eq!(pendo.post_count(), posts);
    // Turned off, the guard holds nothing.
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(&setup.config, format!("{text}\n[guard]\nenabled = false\n")).unwrap();
    assert_eq!(sync(&setup, &[]).await["status"], "succeeded");
}

// 10. A dry run takes no writer lock.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_previews_beside_a_process_holding_the_state() {
    let okta = FakeOkta::start(okta_opts(40)).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(&okta, &pendo, parts());
    assert_eq!(sync(&setup, &[]).await["status"], "succeeded");
    // Another process (the daemon, say) holds the state file's writer lock.
    let held = okta_pendo_sync::state::State::open(&setup.state).unwrap();
    let out = setup.run(&["sync", "--dry-run"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).lines().count(),
        0,
        "nothing changed since the last run"
    );
    let out = setup.run(&["sync", "--dry-run", "--full"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 40);
    // A real run is still refused while the lock is held.
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("another okta-pendo-sync process")
            || stdout(&out).contains("another okta-pendo-sync process")
    );
    drop(held);
    let runs = history(&setup).await;
    let modes: Vec<&str> = runs.iter().map(|r| r["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, ["dry-run", "dry-run", "full"]);
}

// 11. Attributes that lastUpdated does not track.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapped_last_login_makes_every_run_full() {
    let okta = FakeOkta::start(okta_opts(30)).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            mapping: "title = \"profile.title\"\nlast_login = { path = \"lastLogin\", type = \"date\" }",
            ..parts()
        },
    );
    assert_eq!(sync(&setup, &[]).await["mode"], "full");
    // A sign-in: lastLogin moves, lastUpdated does not.
    okta.modify_user(5, |u| u["lastLogin"] = "2026-12-01T09:30:00.000Z".into());
    let run = sync(&setup, &[]).await;
    assert_eq!(run["mode"], "full", "{run}");
    assert!(message(&run).contains("lastLogin"), "{run}");
    assert_eq!(
        pendo.visitor(&login(5)).unwrap()["last_login"],
        1_796_117_400_000_i64
    );
    let out = setup.run(&["check"]).await;
    let (_, detail) = check_line(&stdout(&out), "runs").expect("a line about runs");
    assert!(
        detail.contains("every run is full") && detail.contains("lastLogin"),
        "{detail}"
    );
}

// 14. The state stays bounded.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_forgets_users_gone_from_the_scope_and_old_runs() {
    let okta = FakeOkta::start(okta_opts(100)).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(&okta, &pendo, parts());
    edit(&setup, "[state]\n", "[state]\nkeep_runs = 3\n");
    assert_eq!(sync(&setup, &[]).await["status"], "succeeded");
    let known = || {
        okta_pendo_sync::state::State::open_read_only(&setup.state)
            .unwrap()
            .unwrap()
            .visitor_count()
            .unwrap()
    };
    assert_eq!(known(), 100);
    // 30 users leave the org.
    for i in 0..30 {
        okta.modify_user(i, |u| u["status"] = "DEPROVISIONED".into());
    }
    // An incremental run reads only what changed: it cannot tell who left.
    assert_eq!(sync(&setup, &[]).await["mode"], "incremental");
    assert_eq!(known(), 100);
    // A successful full run drops who it did not read.
    assert_eq!(sync(&setup, &["--full"]).await["status"], "succeeded");
    assert_eq!(known(), 70);
    for _ in 0..3 {
        sync(&setup, &[]).await;
    }
    let runs = history(&setup).await;
    assert_eq!(runs.len(), 3, "keep_runs = 3");
    assert_eq!(runs[0]["id"], 6);
}
