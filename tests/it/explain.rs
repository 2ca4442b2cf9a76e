//! `explain USER`: one user read from Okta now, each mapped field's raw, coerced and sent
//! value (or why not), its visitor ID, whether the next run would push it and the run that
//! last pushed it; found by login, Okta id or visitor ID; pushing nothing, taking no lock.

use crate::common;

use std::time::SystemTime;

use common::{OKTA_TOKEN, PENDO_KEY, Parts, Setup, last_run, stderr, stdout};
use okta_pendo_testkit::users::okta_timestamp;
use okta_pendo_testkit::{FakeOkta, FakePendo, OktaOptions, PendoOptions, UserSource};
use serde_json::{Value, json};

const MAPPING: &str = r#"department = "profile.department"
employee_number = { path = "profile.employeeNumber", type = "number" }
start_date = { path = "profile.startDate", type = "date" }
title = "profile.title""#;

const SYNC: &str = r#"visitor_id_key = "profile.pendoId""#;

fn user(n: u32, login: &str, pendo_id: Option<&str>, profile: Value) -> Value {
    let mut p = json!({ "login": login, "email": login });
    if let Some(id) = pendo_id {
        p["pendoId"] = json!(id);
    }
    if let (Some(p), Value::Object(extra)) = (p.as_object_mut(), profile) {
        p.extend(extra);
    }
    json!({
        "id": format!("00u{n:017}"),
        "status": "ACTIVE",
        "created": "2024-01-02T03:04:05.000Z",
        "lastUpdated": "2024-06-01T00:00:00.000Z",
        "profile": p,
    })
}

/// Alice has every field; Bob a null and an absent one; Carol a number field that is not a
/// number; Dave no visitor ID; Erin a visitor ID with a quote in it.
fn users() -> Vec<Value> {
    vec![
        user(
            0,
            "alice@example.com",
            Some("v-alice"),
            // The number as Okta wrote it: 12 digits and a trailing zero.
            serde_json::from_str(
                r#"{"department": "Sales", "employeeNumber": 1234567890.50,
                    "startDate": "2024-02-01", "title": "Engineer"}"#,
            )
            .unwrap(),
        ),
        user(
            1,
            "bob@example.com",
            Some("v-bob"),
            json!({ "department": null, "employeeNumber": 7, "startDate": "2024-02-01" }),
        ),
        user(
            2,
            "carol@example.com",
            Some("v-carol"),
            json!({ "department": "Ops", "employeeNumber": "twelve", "title": "Lead" }),
        ),
        user(3, "dave@example.com", None, json!({ "department": "HR" })),
        user(
            4,
            "erin@example.com",
            Some("v\"erin"),
            json!({ "title": "CTO" }),
        ),
    ]
}

async fn servers() -> (FakeOkta, FakePendo) {
    let okta = FakeOkta::start(OktaOptions {
        users: UserSource::Explicit(users()),
        ..OktaOptions::default()
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    (okta, pendo)
}

fn setup(okta: &FakeOkta, pendo: &FakePendo) -> Setup {
    Setup::new(
        okta,
        pendo,
        Parts {
            mapping: MAPPING,
            sync: SYNC,
            ..Parts::default()
        },
    )
}

/// `explain USER --json`, which must succeed.
async fn explain(setup: &Setup, user: &str) -> Value {
    let out = setup.run(&["explain", user, "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("explain --json prints one JSON object")
}

fn field<'a>(e: &'a Value, name: &str) -> &'a Value {
    e["fields"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["field"] == name))
        .unwrap_or_else(|| panic!("no field {name} in {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explains_each_kind_of_value_after_a_real_sync() {
    let (okta, pendo) = servers().await;
    let setup = setup(&okta, &pendo);
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = last_run(&setup).await;
    assert_eq!(run["records_processed"], 3, "{run}");
    assert_eq!(run["users_skipped"], 2, "carol and dave: {run}");
    let posts = pendo.post_count();

    // Present, found by login, unchanged since the sync.
    let alice = explain(&setup, "alice@example.com").await;
    assert_eq!(alice["found_by"], "id_or_login");
    assert_eq!(alice["okta_id"], "00u00000000000000000");
    assert_eq!(alice["visitor_id"], "v-alice");
    assert_eq!(alice["visitor_id_key"], "profile.pendoId");
    assert_eq!(alice["sendable"], true);
    let number = field(&alice, "employee_number");
    assert_eq!(number["path"], "profile.employeeNumber");
    assert_eq!(number["type"], "number");
    // Digit for digit, as Okta wrote it.
    assert_eq!(number["raw"].to_string(), "1234567890.50");
    assert_eq!(number["sent"].to_string(), "1234567890.50");
    assert_eq!(number["outcome"], "send");
    let date = field(&alice, "start_date");
    assert_eq!(date["raw"], "2024-02-01");
    assert_eq!(date["coerced"], 1_706_745_600_000_i64);
    assert_eq!(date["sent"], 1_706_745_600_000_i64);
    assert_eq!(alice["push_state"], "unchanged");
    assert_eq!(alice["values_hash"], alice["stored_hash"]);
    assert_eq!(alice["next_run"]["mode"], "incremental", "{alice}");
    assert_eq!(alice["next_run"]["would_push"], false);
    assert_eq!(
        alice["next_run"]["reason"],
        "unchanged: the next incremental run would not push it"
    );
    assert_eq!(alice["last_pushed"]["run_id"], run["id"]);
    assert_eq!(alice["last_pushed"]["status"], "succeeded");
    assert_eq!(alice["last_pushed"]["started_at"], run["started_at"]);

    // Null and absent, found by Okta id; on_null = skip leaves them out.
    let bob = explain(&setup, "00u00000000000000001").await;
    assert_eq!(bob["found_by"], "id_or_login");
    assert_eq!(bob["visitor_id"], "v-bob");
    let dept = field(&bob, "department");
    assert_eq!(dept["present"], true);
    assert_eq!(dept["raw"], Value::Null);
    assert_eq!(dept["outcome"], "leave_out");
    assert!(dept.get("sent").is_none(), "{dept}");
    assert_eq!(
        dept["reason"],
        "null, and sync.on_null = \"skip\": Pendo keeps what it has"
    );
    let title = field(&bob, "title");
    assert_eq!(title["present"], false);
    assert_eq!(title["outcome"], "leave_out");
    assert_eq!(
        title["reason"],
        "absent, and sync.on_null = \"skip\": Pendo keeps what it has"
    );
    assert_eq!(bob["push_state"], "unchanged");

    // A wrong type, found by its visitor ID: the reason the mapping gives, and not sendable.
    let carol = explain(&setup, "v-carol").await;
    assert_eq!(carol["found_by"], "visitor_id");
    assert_eq!(carol["okta_id"], "00u00000000000000002");
    assert_eq!(carol["sendable"], false);
    let bad = field(&carol, "employee_number");
    assert_eq!(bad["raw"], "twelve");
    assert_eq!(bad["coerced"], Value::Null);
    assert_eq!(bad["outcome"], "refused");
    assert_eq!(
        bad["reason"],
        "\"twelve\" is not a number, so the user is not sent"
    );
    // The other fields still say what they would be.
    assert_eq!(field(&carol, "department")["sent"], "Ops");
    assert_eq!(carol["push_state"], "not_sendable");
    assert_eq!(carol["values_hash"], Value::Null);
    assert_eq!(carol["next_run"]["would_push"], false);
    assert!(
        carol["not_sendable_because"]
            .as_str()
            .unwrap()
            .contains("employee_number (profile.employeeNumber): \"twelve\" is not a number"),
        "{carol}"
    );
    assert_eq!(carol["last_pushed"], Value::Null);

    // No visitor ID.
    let dave = explain(&setup, "dave@example.com").await;
    assert_eq!(dave["visitor_id"], Value::Null);
    assert_eq!(dave["sendable"], false);
    assert_eq!(
        dave["not_sendable_because"],
        "no visitor ID: profile.pendoId is absent; a run skips this user"
    );
    assert_eq!(field(&dave, "department")["sent"], "HR");

    // A visitor ID with a quote: the search escapes it.
    let erin = explain(&setup, "v\"erin").await;
    assert_eq!(erin["found_by"], "visitor_id");
    assert_eq!(erin["okta_id"], "00u00000000000000004");
    let searched = okta
        .requests()
        .into_iter()
        .filter_map(|r| r.search)
        .any(|s| s == "profile.pendoId eq \"v\\\"erin\"");
    assert!(searched, "{:?}", okta.requests());

    // A change in Okta: the next incremental run would push it.
    okta.touch_user(0, &okta_timestamp(SystemTime::now()), "Staff Engineer");
    let alice = explain(&setup, "v-alice").await;
    assert_eq!(alice["push_state"], "changed");
    assert_eq!(alice["next_run"]["would_push"], true);
    assert_ne!(alice["values_hash"], alice["stored_hash"]);
    assert_eq!(field(&alice, "title")["sent"], "Staff Engineer");

    assert_eq!(pendo.post_count(), posts, "explain pushes nothing");
    assert_eq!(
        common::history(&setup).await.len(),
        1,
        "explain records no run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_form_is_a_table_with_the_verdict() {
    let (okta, pendo) = servers().await;
    let setup = setup(&okta, &pendo);
    let out = setup.run(&["explain", "carol@example.com"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("FIELD"))
        .unwrap_or_else(|| panic!("no table in:\n{text}"));
    // Columns line up: each row's path starts where the header's PATH does.
    let path_col = lines[header].find("PATH").unwrap();
    for (row, path) in lines[header + 1..header + 5].iter().zip([
        "profile.department",
        "profile.employeeNumber",
        "profile.startDate",
        "profile.title",
    ]) {
        assert_eq!(row.find(path), Some(path_col), "{text}");
    }
    let bad = lines[header + 2];
    assert!(
        bad.contains("\"twelve\"")
            && bad.ends_with("refused: \"twelve\" is not a number, so the user is not sent"),
        "{text}"
    );
    assert!(
        text.contains("visitor ID   v-carol (profile.pendoId)"),
        "{text}"
    );
    assert!(text.contains("record       not sent: "), "{text}");
    // No state yet: never pushed, and the next run is the first, full.
    assert!(
        text.contains("next run     full (the first run): would not push it"),
        "{text}"
    );
    assert!(text.contains("last push    none recorded"), "{text}");
    assert!(!setup.state.exists(), "explain creates no state");
    assert_eq!(pendo.post_count(), 0);

    // With on_null = "clear", a null is sent.
    let clear = Setup::new(
        &okta,
        &pendo,
        Parts {
            mapping: MAPPING,
            sync: "visitor_id_key = \"profile.pendoId\"\non_null = \"clear\"",
            ..Parts::default()
        },
    );
    let bob = explain(&clear, "bob@example.com").await;
    let dept = field(&bob, "department");
    assert_eq!(dept["outcome"], "clear");
    assert_eq!(dept.get("sent"), Some(&Value::Null));
    assert_eq!(
        dept["reason"],
        "null, and sync.on_null = \"clear\": Pendo clears the field"
    );

    let never = explain(&setup, "alice@example.com").await;
    assert_eq!(never["push_state"], "never_pushed");
    assert_eq!(never["stored_hash"], Value::Null);
    assert_eq!(never["next_run"]["mode"], "full");
    assert_eq!(never["next_run"]["would_push"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_ambiguous_users_exit_1_with_a_clear_message() {
    let mut all = users();
    all.push(user(5, "frank@example.com", Some("shared"), json!({})));
    all.push(user(6, "gina@example.com", Some("shared"), json!({})));
    let okta = FakeOkta::start(OktaOptions {
        users: UserSource::Explicit(all),
        ..OktaOptions::default()
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = setup(&okta, &pendo);

    let out = setup.run(&["explain", "nobody@example.com"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).lines().last().unwrap_or_default(),
        "error: Okta has no user \"nobody@example.com\": no user has that id or login, nor that \
         visitor ID (profile.pendoId)"
    );
    assert!(stdout(&out).is_empty());

    let out = setup.run(&["explain", "shared"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(
            "2 Okta users have \"shared\" at profile.pendoId (Okta's search ignores case): \
             00u00000000000000005, 00u00000000000000006; explain one of them by its Okta user id"
        ),
        "{err}"
    );

    // A key Okta cannot search: said so, no search is sent.
    let other = Setup::new(
        &okta,
        &pendo,
        Parts {
            mapping: MAPPING,
            sync: r#"visitor_id_key = "id""#,
            ..Parts::default()
        },
    );
    let searches = okta
        .requests()
        .iter()
        .filter(|r| r.search.is_some())
        .count();
    let out = other.run(&["explain", "v-alice"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("sync.visitor_id_key (id) is not a profile attribute Okta can search"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        okta.requests()
            .iter()
            .filter(|r| r.search.is_some())
            .count(),
        searches
    );

    for bad in [&["explain"][..], &["explain", ""], &["explain", ".."]] {
        let out = setup.run(bad).await;
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_while_another_process_holds_the_lock_and_shows_no_secret() {
    let (okta, pendo) = servers().await;
    let setup = setup(&okta, &pendo);
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // A writer holds the state, as the daemon would.
    let held = okta_pendo_sync::state::State::open(&setup.state).unwrap();
    let refused = setup.run(&["sync"]).await;
    assert_eq!(refused.status.code(), Some(1));
    let said = format!("{}{}", stdout(&refused), stderr(&refused));
    assert!(said.contains("is using the state database"), "{said}");

    for args in [
        &["explain", "alice@example.com", "--json"][..],
        &["explain", "v-carol"],
    ] {
        let out = setup.run(args).await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        for text in [stdout(&out), stderr(&out)] {
            assert!(!text.contains(OKTA_TOKEN), "{text}");
            assert!(!text.contains(PENDO_KEY), "{text}");
        }
    }
    let alice = explain(&setup, "alice@example.com").await;
    assert_eq!(alice["push_state"], "unchanged");
    drop(held);
    // The login went in the path, URL-encoded as one segment.
    let asked = okta
        .requests()
        .into_iter()
        .any(|r| r.method == "GET" && r.path_and_query == "/api/v1/users/alice@example.com");
    assert!(asked, "{:?}", okta.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_next_run_reads_decides_and_a_dropped_record_is_said_so() {
    let mut all = users();
    let mut gone = user(
        5,
        "hal@example.com",
        Some("v-hal"),
        json!({ "title": "Ex" }),
    );
    gone["status"] = json!("DEPROVISIONED");
    all.push(gone);
    let okta = FakeOkta::start(OktaOptions {
        users: UserSource::Explicit(all),
        ..OktaOptions::default()
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = setup(&okta, &pendo);
    let keep_one = [("OKTA_PENDO_SYNC__STATE__KEEP_RUNS", "1")];
    let out = common::run_bin(&setup.config, &["sync"], &keep_one).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let first = last_run(&setup).await;

    // A value changes without Okta moving lastUpdated: an incremental run does not read it.
    okta.modify_user(1, |u| u["profile"]["department"] = json!("Finance"));
    let bob = explain(&setup, "bob@example.com").await;
    assert_eq!(bob["push_state"], "changed");
    assert_eq!(bob["next_run"]["mode"], "incremental");
    assert_eq!(bob["next_run"]["would_push"], false);
    assert_eq!(
        bob["next_run"]["reason"],
        "changed since the last push, but its lastUpdated (2024-06-01T00:00:00.000Z) is not \
         after the run's start point: the next incremental run does not read it; the next full \
         run would push it"
    );

    // Runs over all users do not read a deprovisioned user.
    let hal = explain(&setup, "hal@example.com").await;
    assert_eq!(hal["okta_status"], "DEPROVISIONED");
    assert_eq!(hal["push_state"], "never_pushed");
    assert_eq!(hal["next_run"]["would_push"], false);
    assert!(
        hal["notes"][0]
            .as_str()
            .unwrap()
            .starts_with("the user is DEPROVISIONED"),
        "{hal}"
    );

    // A second run keeps only its own record; Alice was last pushed by the first.
    let out = common::run_bin(&setup.config, &["sync"], &keep_one).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(common::history(&setup).await.len(), 1);
    let alice = explain(&setup, "alice@example.com").await;
    assert_eq!(alice["push_state"], "unchanged");
    assert_eq!(alice["last_pushed"]["run_id"], Value::Null);
    assert_eq!(alice["last_pushed"]["status"], Value::Null);
    let pushed_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(alice["last_pushed"]["started_at"].clone()).unwrap();
    let first_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(first["started_at"].clone()).unwrap();
    assert_eq!(pushed_at.timestamp_millis(), first_at.timestamp_millis());
    let out = setup.run(&["explain", "alice@example.com"]).await;
    assert!(
        stdout(&out).contains("last push    a run started ")
            && stdout(&out).contains("(its record is no longer kept)"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_through_oauth_with_dpop_nonces_as_runs_do() {
    use okta_pendo_testkit::{OAuthOptions, keys};
    let okta = FakeOkta::start(OktaOptions {
        users: UserSource::Generated(5),
        oauth: Some(OAuthOptions {
            resource_nonce: true,
            ..OAuthOptions::default()
        }),
        ..OktaOptions::default()
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let keys_dir = tempfile::tempdir().unwrap();
    let pem = keys_dir.path().join("okta.pem");
    std::fs::write(&pem, keys::RSA_PRIVATE_PEM).unwrap();
    let oauth = format!(
        "client_id = \"0oa-test-client\"\nprivate_key_file = \"{}\"\nkey_id = \"test-kid\"",
        pem.display()
    );
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            oauth: &oauth,
            ..Parts::default()
        },
    );
    let e = explain(&setup, "user3@example.com").await;
    assert_eq!(e["visitor_id"], "user3@example.com");
    assert_eq!(e["okta_id"], "00u00000000000000003");
    // The first answer asked for a nonce; the request went again with it.
    let asked: Vec<u16> = okta
        .requests()
        .iter()
        .filter(|r| r.path_and_query == "/api/v1/users/user3@example.com")
        .map(|r| r.status)
        .collect();
    assert_eq!(asked, [401, 200]);
    assert_eq!(pendo.post_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_okta_failure_is_retried_and_a_lasting_one_exits_1() {
    use okta_pendo_testkit::OktaFault;
    let okta = FakeOkta::start(OktaOptions {
        users: UserSource::Generated(3),
        faults: vec![
            OktaFault::Status {
                request: 0,
                status: 503,
            },
            OktaFault::Status {
                request: 2,
                status: 403,
            },
        ],
        ..OktaOptions::default()
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            extra: "[retry]\nmax_attempts = 3\nbase_delay = \"50ms\"\nmax_delay = \"200ms\"",
            ..Parts::default()
        },
    );
    let e = explain(&setup, "user1@example.com").await;
    assert_eq!(e["visitor_id"], "user1@example.com");
    let statuses: Vec<u16> = okta.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 200]);
    // A refusal is final, and said in the error.
    let out = setup.run(&["explain", "user1@example.com"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("error: Okta refused the request (HTTP 403"),
        "{err}"
    );
    assert!(!err.contains(OKTA_TOKEN), "{err}");
    assert!(stdout(&out).is_empty());
}
