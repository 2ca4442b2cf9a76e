//! Incremental runs: read only what Okta says changed, push only what differs from what was
//! last pushed, and never lose a change.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use common::{Parts, Setup, last_run, stderr};
use okta_pendo_testkit::users::okta_timestamp;
use okta_pendo_testkit::{FakeOkta, FakePendo, OktaOptions, PendoFault, PendoOptions, UserSource};
use serde_json::Value;

fn okta_opts(users: usize) -> OktaOptions {
    OktaOptions {
        users: UserSource::Generated(users),
        rate_limit: 100_000,
        ..OktaOptions::default()
    }
}

/// The default mapping less `lastLogin`, which would make every run full (Okta does not move
/// `lastUpdated` for a sign-in).
const MAPPING: &str = r#"department = "profile.department"
title = "profile.title"
okta_status = "status""#;

fn parts() -> Parts<'static> {
    Parts {
        mapping: MAPPING,
        ..Parts::default()
    }
}

fn now() -> String {
    okta_timestamp(SystemTime::now())
}

fn login(i: usize) -> String {
    format!("user{i}@example.com")
}

/// The visitor IDs of the batches Pendo received from index `from` on.
fn pushed_since(pendo: &FakePendo, from: usize) -> Vec<String> {
    pendo.batches()[from..]
        .iter()
        .filter(|b| b.status == 200)
        .flat_map(|b| b.records.iter().map(|(id, _)| id.clone()))
        .collect()
}

async fn sync(setup: &Setup, args: &[&str]) -> Value {
    let mut all = vec!["sync"];
    all.extend_from_slice(args);
    let out = setup.run(&all).await;
    let run = last_run(setup).await;
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", stderr(&out));
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_touched_users_are_read_and_pushed() {
    let okta = FakeOkta::start(okta_opts(500)).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(&okta, &pendo, parts());

    let first = sync(&setup, &[]).await;
    assert_eq!(first["mode"], "full");
    assert_eq!(first["records_processed"], 500);
    let posts = pendo.batches().len();
    let requests = okta.requests().len();

    // K = 3 users change a mapped value; one more changes only something unmapped.
    for i in [3, 77, 401] {
        okta.touch_user(i, &now(), &format!("Title {i} v2"));
    }
    okta.modify_user(250, |u| u["lastUpdated"] = Value::String(now()));

    let run = sync(&setup, &[]).await;
    assert_eq!(run["mode"], "incremental", "{run}");
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["okta_users_read"], 4);
    assert_eq!(run["records_processed"], 3);
    assert_eq!(run["users_unchanged"], 1);
    let sent: BTreeSet<String> = pushed_since(&pendo, posts).into_iter().collect();
    assert_eq!(sent, [3, 77, 401].into_iter().map(login).collect());
    assert_eq!(pendo.visitor(&login(77)).unwrap()["title"], "Title 77 v2");

    // Okta was asked only for users changed since the first run (less the overlap).
    let asked: Vec<_> = okta.requests()[requests..].to_vec();
    assert_eq!(asked.len(), 1);
    let filter = asked[0].filter.clone().unwrap();
    assert!(filter.starts_with("lastUpdated gt \""), "{filter}");
    let since = chrono::DateTime::parse_from_rfc3339(
        filter
            .trim_start_matches("lastUpdated gt \"")
            .trim_end_matches('"'),
    )
    .unwrap();
    let first_start =
        chrono::DateTime::parse_from_rfc3339(first["started_at"].as_str().unwrap()).unwrap();
    // The start is Okta's clock (the first page's whole-second `Date`), not the host's: on
    // one machine the two agree within the first request's round trip.
    let overlap = first_start - since;
    assert!(
        overlap > chrono::Duration::minutes(5) - chrono::Duration::seconds(5)
            && overlap < chrono::Duration::minutes(5) + chrono::Duration::seconds(1),
        "{overlap}"
    );

    // Nothing changed since: nothing pushed.
    let run = sync(&setup, &[]).await;
    assert_eq!(run["mode"], "incremental");
    assert_eq!(run["records_processed"], 0);
    assert_eq!(run["users_unchanged"], run["okta_users_read"]);

    // History shows the modes.
    let out = setup.run(&["history"]).await;
    let table = common::stdout(&out);
    assert_eq!(table.matches(" incremental ").count(), 2, "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_change_makes_the_next_run_full() {
    let okta = FakeOkta::start(okta_opts(120)).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(&okta, &pendo, parts());
    assert_eq!(sync(&setup, &[]).await["mode"], "full");
    assert_eq!(sync(&setup, &[]).await["mode"], "incremental");

    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        text.replace(
            "[mapping]\n",
            "[mapping]\ncost_center = \"profile.costCenter\"\n",
        ),
    )
    .unwrap();
    let run = sync(&setup, &[]).await;
    assert_eq!(run["mode"], "full");
    assert!(
        run["message"]
            .as_str()
            .unwrap()
            .contains("the mapping, the visitor settings or the user scope changed")
    );
    assert_eq!(run["records_processed"], 120);
    assert_eq!(sync(&setup, &[]).await["mode"], "incremental");

    // --full forces one; full_sync_every makes them due.
    let run = sync(&setup, &["--full"]).await;
    assert_eq!(run["mode"], "full");
    assert_eq!(run["records_processed"], 120);
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        text.replace("[sync]\n", "[sync]\nfull_sync_every = \"1h\"\n"),
    )
    .unwrap();
    let run = sync(&setup, &[]).await;
    assert_eq!(run["mode"], "full");
    assert!(
        run["message"]
            .as_str()
            .unwrap()
            .contains("older than sync.full_sync_every")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_is_pushed_again_by_the_next_run() {
    let okta = FakeOkta::start(okta_opts(300)).await;
    // The full run makes one post (0); the incremental one 3 more, the second of which (2)
    // fails for good (a 422 is neither retried nor split).
    let pendo = FakePendo::start(PendoOptions {
        faults: vec![PendoFault::Status {
            request: 2,
            status: 422,
        }],
        ..PendoOptions::default()
    })
    .await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            pendo: "concurrency = 1",
            ..parts()
        },
    );
    assert_eq!(sync(&setup, &["--full"]).await["records_processed"], 300);

    let touched: Vec<usize> = (100..130).collect();
    for &i in &touched {
        okta.touch_user(i, &now(), "Changed");
    }
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        text.replace("[pendo]\n", "[pendo]\nbatch_size = 10\n"),
    )
    .unwrap();
    let run = sync(&setup, &[]).await;
    assert_eq!(run["mode"], "incremental");
    assert_eq!(
        run["status"],
        "partial",
        "{run} {:?}",
        pendo
            .batches()
            .iter()
            .map(|b| (b.len, b.status))
            .collect::<Vec<_>>()
    );
    assert_eq!(run["users_failed"], 10);

    // The point did not move: the same 30 are read again; the 20 that went through are
    // unchanged, the 10 that failed are pushed.
    let before = pendo.batches().len();
    let run = sync(&setup, &[]).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["okta_users_read"], 30);
    assert_eq!(run["users_unchanged"], 20);
    assert_eq!(run["records_processed"], 10);
    let sent: BTreeSet<String> = pushed_since(&pendo, before).into_iter().collect();
    assert_eq!(sent, (110..120).map(login).collect());
    for &i in &touched {
        assert_eq!(pendo.visitor(&login(i)).unwrap()["title"], "Changed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_changed_during_a_run_is_picked_up_by_the_next() {
    let okta = FakeOkta::start(OktaOptions {
        page_delay: Duration::from_millis(200),
        ..okta_opts(1_000)
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            okta: "page_size = 100",
            ..parts()
        },
    );
    let child = setup.spawn("sync");
    // Once the first page (users 0-99) has been read, user 5 changes.
    for _ in 0..100 {
        if okta.requests().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    okta.touch_user(5, &now(), "Changed mid-run");
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_ne!(
        pendo.visitor(&login(5)).unwrap()["title"],
        "Changed mid-run"
    );

    let run = sync(&setup, &[]).await;
    assert_eq!(run["mode"], "incremental");
    assert_eq!(
        pendo.visitor(&login(5)).unwrap()["title"],
        "Changed mid-run"
    );
    assert_eq!(run["records_processed"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_changed_filter_is_combined_with_a_filter_or_a_search() {
    for (key, own) in [
        ("filter", r#"status eq "ACTIVE""#),
        ("search", r#"profile.department eq "Sales""#),
    ] {
        let okta = FakeOkta::start(okta_opts(200)).await;
        let pendo = FakePendo::start(PendoOptions::default()).await;
        let extra = format!("{key} = '{own}'");
        let setup = Setup::new(
            &okta,
            &pendo,
            Parts {
                okta: &extra,
                ..parts()
            },
        );
        let first = sync(&setup, &[]).await;
        let matched = first["records_processed"].as_u64().unwrap();
        assert!(matched > 0);
        // Touch one user in scope and one out of scope (for the search) or suspended (filter).
        okta.touch_user(10, &now(), "In scope?");
        let requests = okta.requests().len();
        let run = sync(&setup, &[]).await;
        assert_eq!(run["mode"], "incremental");
        let r = &okta.requests()[requests];
        let sent = if key == "filter" {
            r.filter.clone()
        } else {
            r.search.clone()
        }
        .unwrap();
        let expected_start = format!("({own}) and lastUpdated gt \"");
        assert!(sent.starts_with(&expected_start), "{sent}");
        let user10 = okta_pendo_testkit::users::generated_user(10, &okta.base_url());
        let in_scope = key == "filter" || user10["profile"]["department"] == "Sales";
        assert_eq!(run["records_processed"], u64::from(in_scope), "{run}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprovisioned_users_are_left_out_in_both_modes() {
    let okta = FakeOkta::start(okta_opts(50)).await;
    okta.modify_user(7, |u| u["status"] = Value::String("DEPROVISIONED".into()));
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(&okta, &pendo, parts());
    let full = sync(&setup, &[]).await;
    assert_eq!(
        full["okta_users_read"], 49,
        "Okta's default list leaves them out"
    );
    assert!(pendo.visitor(&login(7)).is_none());

    // Another is deprovisioned now: the lastUpdated filter returns it; the run leaves it out.
    okta.modify_user(8, |u| {
        u["status"] = Value::String("DEPROVISIONED".into());
        u["lastUpdated"] = Value::String(now());
        u["profile"]["title"] = Value::String("Gone".into());
    });
    okta.touch_user(9, &now(), "Still here");
    let run = sync(&setup, &[]).await;
    assert_eq!(run["mode"], "incremental");
    assert_eq!(run["okta_users_read"], 1, "{run}");
    assert_eq!(pendo.visitor(&login(9)).unwrap()["title"], "Still here");
    assert_ne!(pendo.visitor(&login(8)).unwrap()["title"], "Gone");
    // A full run agrees.
    let run = sync(&setup, &["--full"]).await;
    assert_eq!(run["okta_users_read"], 48);
    assert_ne!(pendo.visitor(&login(8)).unwrap()["title"], "Gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_members_are_read_in_full_and_only_changed_ones_pushed() {
    let okta = FakeOkta::start(OktaOptions {
        groups: vec![("00gA".into(), (0..150).collect())],
        ..okta_opts(200)
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            okta: "group_ids = [\"00gA\"]",
            ..parts()
        },
    );
    assert_eq!(sync(&setup, &[]).await["records_processed"], 150);
    okta.touch_user(12, &now(), "Changed");
    let requests = okta.requests().len();
    let posts = pendo.batches().len();
    let run = sync(&setup, &[]).await;
    assert_eq!(run["mode"], "incremental");
    // Okta cannot filter group members by lastUpdated: all are read, one is pushed.
    assert!(
        okta.requests()[requests..]
            .iter()
            .all(|r| r.filter.is_none())
    );
    assert_eq!(run["okta_users_read"], 150);
    assert_eq!(run["users_unchanged"], 149);
    assert_eq!(run["records_processed"], 1);
    assert_eq!(pushed_since(&pendo, posts), [login(12)]);
}
