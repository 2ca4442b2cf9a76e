//! End-to-end runs of `okta-pendo-sync sync` (the real binary) against local Okta and Pendo
//! servers that speak the recorded wire formats.

use crate::common;

use std::collections::HashSet;
use std::time::{Duration, UNIX_EPOCH};

use common::{OKTA_TOKEN, PENDO_KEY, Parts, Setup, last_run, stderr, stdout};
use okta_pendo_testkit::{
    ExistingVisitors, FakeOkta, FakePendo, LinkStyle, OktaFault, OktaOptions, PendoFault,
    PendoOptions, UserSource,
};
use serde_json::{Value, json};

/// Generated users, with a rate limit high enough that pacing adds nothing noticeable (the
/// tests about pacing set their own).
fn okta_opts(users: usize) -> OktaOptions {
    OktaOptions {
        users: UserSource::Generated(users),
        rate_limit: 100_000,
        ..OktaOptions::default()
    }
}

async fn servers(okta: OktaOptions, pendo: PendoOptions) -> (FakeOkta, FakePendo) {
    (FakeOkta::start(okta).await, FakePendo::start(pendo).await)
}

fn assert_counts_add_up(run: &Value) {
    let n = |k: &str| {
        run[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} missing in {run}"))
    };
    assert_eq!(
        n("okta_users_read"),
        n("records_processed") + n("users_unchanged") + n("users_skipped"),
        "{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_pages_every_user_pushed_once() {
    let (okta, pendo) = servers(okta_opts(450), PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            okta: "page_size = 200",
            pendo: "batch_size = 100\nconcurrency = 3",
            ..Parts::default()
        },
    );
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let reqs = okta.requests();
    assert_eq!(reqs.len(), 3, "450 users at 200 a page are 3 pages");
    for r in &reqs {
        assert_eq!(
            r.authorization.as_deref(),
            Some(&*format!("SSWS {OKTA_TOKEN}"))
        );
        assert!(r.accept_encoding.as_deref().unwrap_or("").contains("gzip"));
        assert!(r.gzipped, "the pages came gzip-encoded and were read");
        assert_eq!(r.status, 200);
    }
    assert!(
        reqs[0]
            .path_and_query
            .starts_with("/api/v1/users?limit=200")
    );
    assert!(reqs[1].path_and_query.contains("after="));

    let batches = pendo.batches();
    assert_eq!(batches.len(), 5);
    assert!(
        batches
            .iter()
            .all(|b| b.len <= 100 && !b.create && b.group == "custom")
    );
    let ids: HashSet<String> = batches
        .iter()
        .flat_map(|b| b.records.iter().map(|(id, _)| id.clone()))
        .collect();
    assert_eq!(ids.len(), 450);
    assert_eq!(pendo.records_received(), 450);
    // User 3: department cycles, lastLogin is a date sent as epoch milliseconds.
    let user3 = okta_pendo_testkit::users::generated_user(3, &okta.base_url());
    let v = pendo.visitor("user3@example.com").unwrap();
    assert_eq!(v["department"], user3["profile"]["department"]);
    assert_eq!(v["okta_status"], json!("ACTIVE"));
    let ms = chrono::DateTime::parse_from_rfc3339(user3["lastLogin"].as_str().unwrap())
        .unwrap()
        .timestamp()
        * 1000;
    assert_eq!(v["last_login"], json!(ms));
    // User 0 has lastLogin null: with on_null = skip the field is left out.
    assert!(
        !pendo
            .visitor("user0@example.com")
            .unwrap()
            .contains_key("last_login")
    );

    let run = last_run(&setup).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["mode"], "full");
    assert_eq!(run["trigger"], "manual");
    assert_eq!(run["status_code"], 200);
    assert_eq!(run["okta_users_read"], 450);
    assert_eq!(run["records_processed"], 450);
    assert_eq!(run["users_updated"], 450);
    assert_eq!(run["users_failed"], 0);
    assert_counts_add_up(&run);

    // One info line summarises the run.
    let summary: Vec<Value> = stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l.get("run_id").is_some())
        .collect();
    assert_eq!(summary.len(), 1, "{}", stdout(&out));
    assert_eq!(summary[0]["level"], "INFO");
    assert_eq!(summary[0]["records_processed"], 450);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comma_joined_link_header_is_followed() {
    let okta = OktaOptions {
        link_style: LinkStyle::CommaJoined,
        ..okta_opts(450)
    };
    let (okta, pendo) = servers(okta, PendoOptions::default()).await;
    let setup = Setup::new(&okta, &pendo, Parts::default());
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(okta.requests().len(), 3);
    assert_eq!(pendo.records_received(), 450);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_next_link_is_refused_and_never_sent_the_token() {
    let foreign = FakeOkta::start(okta_opts(10)).await;
    let okta = OktaOptions {
        faults: vec![OktaFault::ForeignNextLink {
            request: 0,
            target: foreign.base_url(),
        }],
        ..okta_opts(450)
    };
    let (okta, pendo) = servers(okta, PendoOptions::default()).await;
    let setup = Setup::new(&okta, &pendo, Parts::default());
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(1), "a partial run exits 1");
    assert!(
        foreign.requests().is_empty(),
        "the foreign host was contacted"
    );
    assert_eq!(okta.requests().len(), 1);
    // What was read before is still pushed.
    assert_eq!(pendo.records_received(), 200);
    let run = last_run(&setup).await;
    assert_eq!(run["status"], "partial");
    let msg = run["message"].as_str().unwrap();
    assert!(msg.contains("outside the org"), "{msg}");
    assert!(msg.contains(&foreign.base_url()), "{msg}");
    assert!(!stdout(&out).contains(OKTA_TOKEN) && !stderr(&out).contains(OKTA_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mapping_type_and_both_null_rules() {
    let users = vec![
        json!({"id": "00u1", "status": "ACTIVE", "lastLogin": "2024-03-01T12:00:00.000Z",
               "profile": {"login": "a@x.com", "department": "Sales", "employeeNumber": "1042",
                           "isManager": "true", "startDate": "2021-06-01", "costCenter": null,
                           "tags": ["x", "y"]}}),
        json!({"id": "00u2", "status": "SUSPENDED", "lastLogin": null,
               "profile": {"login": "b@x.com", "department": null, "employeeNumber": 7,
                           "isManager": false, "startDate": null, "costCenter": "CC-9"}}),
    ];
    let mapping = r#"department = "profile.department"
okta_status = { path = "status", type = "text" }
employee_number = { path = "profile.employeeNumber", type = "number" }
is_manager = { path = "profile.isManager", type = "boolean" }
last_login = { path = "lastLogin", type = "date" }
start_date = { path = "profile.startDate", type = "date" }
cost_center = "profile.costCenter"
tags = "profile.tags""#;
    for (on_null, cleared) in [("skip", false), ("clear", true)] {
        let okta = OktaOptions {
            users: UserSource::Explicit(users.clone()),
            ..OktaOptions::default()
        };
        let (okta, pendo) = servers(okta, PendoOptions::default()).await;
        let sync = format!("on_null = \"{on_null}\"");
        let setup = Setup::new(
            &okta,
            &pendo,
            Parts {
                sync: &sync,
                mapping,
                ..Parts::default()
            },
        );
        let out = setup.run(&["sync"]).await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let a = pendo.visitor("a@x.com").unwrap();
        assert_eq!(a["department"], json!("Sales"));
        assert_eq!(a["okta_status"], json!("ACTIVE"));
        assert_eq!(a["employee_number"], json!(1042));
        assert_eq!(a["is_manager"], json!(true));
        assert_eq!(a["last_login"], json!(1_709_294_400_000_i64));
        assert_eq!(a["start_date"], json!(1_622_505_600_000_i64));
        assert_eq!(a["tags"], json!("x, y"));
        let b = pendo.visitor("b@x.com").unwrap();
        assert_eq!(b["employee_number"], json!(7));
        assert_eq!(b["is_manager"], json!(false));
        assert_eq!(b["cost_center"], json!("CC-9"));
        for field in ["department", "last_login", "start_date", "tags"] {
            if cleared {
                assert_eq!(b.get(field), Some(&Value::Null), "{field} with clear");
            } else {
                assert!(!b.contains_key(field), "{field} with skip");
            }
        }
        if cleared {
            assert_eq!(a.get("cost_center"), Some(&Value::Null));
        } else {
            assert!(!a.contains_key("cost_center"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_without_visitor_id_or_with_bad_values_are_skipped_and_counted() {
    let users = vec![
        json!({"id": "00u1", "status": "ACTIVE", "profile": {"login": "a@x.com", "n": "5"}}),
        json!({"id": "00u2", "status": "ACTIVE", "profile": {"login": null, "n": "6"}}),
        json!({"id": "00u3", "status": "ACTIVE", "profile": {"n": "7"}}),
        json!({"id": "00u4", "status": "ACTIVE", "profile": {"login": "d@x.com", "n": "many"}}),
        json!("not even an object"),
        json!({"id": "00u6", "status": "ACTIVE", "profile": {"login": "f@x.com", "n": 9}}),
    ];
    let okta = OktaOptions {
        users: UserSource::Explicit(users),
        ..OktaOptions::default()
    };
    let (okta, pendo) = servers(okta, PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            mapping: r#"n = { path = "profile.n", type = "number" }"#,
            ..Parts::default()
        },
    );
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = last_run(&setup).await;
    assert_eq!(run["okta_users_read"], 6);
    assert_eq!(run["records_processed"], 2);
    assert_eq!(run["users_skipped"], 4);
    assert_counts_add_up(&run);
    let errors = run["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e["visitor_id"] == "d@x.com"
            && e["message"]
                .as_str()
                .unwrap()
                .contains("\"many\" is not a number")),
        "{errors:?}"
    );
    assert!(pendo.visitor("a@x.com").is_some() && pendo.visitor("f@x.com").is_some());
    assert!(pendo.visitor("d@x.com").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_visitors_reported_without_create_and_created_with_it() {
    let missing: HashSet<String> = ["user1@example.com", "user4@example.com"]
        .into_iter()
        .map(String::from)
        .collect();
    for create in [false, true] {
        let pendo_opts = PendoOptions {
            existing: ExistingVisitors::Except(missing.clone()),
            ..PendoOptions::default()
        };
        let (okta, pendo) = servers(okta_opts(6), pendo_opts).await;
        let sync = format!("create_missing_visitors = {create}");
        let setup = Setup::new(
            &okta,
            &pendo,
            Parts {
                sync: &sync,
                ..Parts::default()
            },
        );
        let out = setup.run(&["sync"]).await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let run = last_run(&setup).await;
        assert!(pendo.batches().iter().all(|b| b.create == create));
        assert_eq!(run["records_processed"], 6);
        if create {
            assert_eq!(run["users_updated"], 6);
            assert_eq!(run["users_missing"], 0);
            assert_eq!(run["users_failed"], 0);
            assert!(pendo.visitor("user1@example.com").is_some());
        } else {
            assert_eq!(run["users_updated"], 4);
            assert_eq!(run["users_missing"], 2);
            assert_eq!(
                run["users_failed"], 2,
                "missing ones count as failed, as Pendo counts"
            );
            assert_eq!(
                run["missing_visitor_ids"],
                json!(["user1@example.com", "user4@example.com"])
            );
            assert_eq!(run["status"], "succeeded");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_pushes_nothing_and_writes_json_lines() {
    let (okta, pendo) = servers(okta_opts(250), PendoOptions::default()).await;
    let setup = Setup::new(&okta, &pendo, Parts::default());

    // To a file.
    let file = setup.dir.path().join("would-push.jsonl");
    let out = setup
        .run(&["sync", "--dry-run", "--output", file.to_str().unwrap()])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 250);
    assert_eq!(lines[3]["visitorId"], "user3@example.com");
    assert!(lines[3]["values"]["department"].is_string());

    // To stdout, with the logs on stderr so stdout stays pure data.
    let out = setup.run(&["sync", "--dry-run"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout_lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(stdout_lines.len(), 250);
    assert!(
        stdout_lines
            .iter()
            .all(|l| serde_json::from_str::<Value>(l).unwrap()["visitorId"].is_string())
    );
    assert!(stderr(&out).contains("run_id"));

    assert_eq!(pendo.post_count(), 0, "a dry run pushes nothing");
    let runs = common::history(&setup).await;
    assert_eq!(runs.len(), 2);
    for run in &runs {
        assert_eq!(run["mode"], "dry-run");
        assert_eq!(run["status"], "succeeded");
        assert_eq!(run["records_processed"], 250);
        assert_eq!(run["users_updated"], 0);
        assert_eq!(run["users_failed"], 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_reset_is_honoured() {
    let okta = OktaOptions {
        faults: vec![OktaFault::RateLimited {
            request: 1,
            reset_after_secs: 1,
        }],
        ..okta_opts(450)
    };
    let (okta, pendo) = servers(okta, PendoOptions::default()).await;
    let setup = Setup::new(&okta, &pendo, Parts::default());
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let reqs = okta.requests();
    assert_eq!(reqs.len(), 4, "three pages and one retry");
    assert_eq!(reqs[1].status, 429);
    assert_eq!(
        reqs[2].path_and_query, reqs[1].path_and_query,
        "the same page is retried"
    );
    // The 429 said: reset at (its second + 1). The retry must not come before that.
    let secs = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).unwrap();
    let reset = Duration::from_secs(secs(reqs[1].at).as_secs() + 1);
    assert!(
        secs(reqs[2].at) >= reset,
        "retried at {:?}, before the reset {:?}",
        secs(reqs[2].at),
        reset
    );
    assert_eq!(pendo.records_received(), 450);
    assert!(
        stdout(&out).contains("rate limit"),
        "a log line says why it waited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_on_both_sides() {
    let okta = OktaOptions {
        faults: vec![
            OktaFault::Status {
                request: 0,
                status: 503,
            },
            OktaFault::Status {
                request: 2,
                status: 500,
            },
        ],
        ..okta_opts(300)
    };
    let pendo = PendoOptions {
        faults: vec![
            PendoFault::Status {
                request: 0,
                status: 502,
            },
            PendoFault::Status {
                request: 1,
                status: 429,
            },
        ],
        ..PendoOptions::default()
    };
    let (okta, pendo) = servers(okta, pendo).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            pendo: "concurrency = 1",
            ..Parts::default()
        },
    );
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let statuses: Vec<u16> = okta.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 200, 500, 200]);
    let pendo_statuses: Vec<u16> = pendo.batches().iter().map(|b| b.status).collect();
    assert_eq!(pendo_statuses, [502, 429, 200]);
    let run = last_run(&setup).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["users_updated"], 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pendo_failing_for_good_makes_a_failed_run() {
    let pendo = PendoOptions {
        faults: (0..10)
            .map(|request| PendoFault::Status {
                request,
                status: 503,
            })
            .collect(),
        ..PendoOptions::default()
    };
    let (okta, pendo) = servers(okta_opts(20), pendo).await;
    let setup = Setup::new(&okta, &pendo, Parts::default());
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(pendo.post_count(), 5, "tried a bounded number of times");
    let run = last_run(&setup).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["status_code"], 503);
    assert_eq!(run["records_processed"], 20);
    assert_eq!(run["users_failed"], 20);
    let errors = run["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["visitor_id"] == "user7@example.com")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_401_and_403_are_explained_without_the_token() {
    for (status, words) in [
        (401, "wrong, expired or revoked"),
        (403, "Read-only Administrator"),
    ] {
        let okta = OktaOptions {
            faults: vec![OktaFault::Status { request: 0, status }],
            ..okta_opts(5)
        };
        let (okta, pendo) = servers(okta, PendoOptions::default()).await;
        let setup = Setup::new(&okta, &pendo, Parts::default());
        let out = setup.run(&["sync"]).await;
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(okta.requests().len(), 1, "{status} is not retried");
        let run = last_run(&setup).await;
        assert_eq!(run["status"], "failed");
        assert_eq!(run["status_code"], status);
        let msg = run["message"].as_str().unwrap();
        assert!(msg.contains(words), "{msg}");
        for text in [stdout(&out), stderr(&out), run.to_string()] {
            assert!(!text.contains(OKTA_TOKEN) && !text.contains(PENDO_KEY));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_a_clear_401() {
    let okta = OktaOptions {
        token: "the-real-token".into(),
        ..okta_opts(5)
    };
    let (okta, pendo) = servers(okta, PendoOptions::default()).await;
    let setup = Setup::new(&okta, &pendo, Parts::default());
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(1));
    let run = last_run(&setup).await;
    assert_eq!(run["status_code"], 401);
    assert!(run["message"].as_str().unwrap().contains("E0000011"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_and_search_are_sent_to_okta() {
    for (key, expr) in [
        ("filter", r#"status eq "ACTIVE""#),
        ("search", r#"lastUpdated gt "2025-01-01T00:00:10.000Z""#),
    ] {
        let (okta, pendo) = servers(okta_opts(30), PendoOptions::default()).await;
        let extra = format!("{key} = '{expr}'");
        let setup = Setup::new(
            &okta,
            &pendo,
            Parts {
                okta: &extra,
                ..Parts::default()
            },
        );
        let out = setup.run(&["sync"]).await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let first = &okta.requests()[0].path_and_query;
        let query: Vec<(String, String)> =
            url::form_urlencoded::parse(first.split_once('?').unwrap().1.as_bytes())
                .into_owned()
                .collect();
        assert!(
            query.contains(&(key.to_owned(), expr.to_owned())),
            "{query:?}"
        );
        let expected = if key == "filter" { 30 } else { 19 };
        assert_eq!(pendo.records_received(), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_members_are_read_once_each() {
    let okta = OktaOptions {
        groups: vec![
            ("00gA".into(), (0..250).collect()),
            ("00gB".into(), (200..300).collect()),
        ],
        ..okta_opts(400)
    };
    let (okta, pendo) = servers(okta, PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            okta: r#"group_ids = ["00gA", "00gB"]"#,
            ..Parts::default()
        },
    );
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let paths: Vec<String> = okta
        .requests()
        .iter()
        .map(|r| r.path_and_query.clone())
        .collect();
    assert!(
        paths.iter().all(|p| p.starts_with("/api/v1/groups/00g")),
        "{paths:?}"
    );
    assert_eq!(
        pendo.records_received(),
        300,
        "users 200..250 are in both groups"
    );
    let run = last_run(&setup).await;
    assert_eq!(run["okta_users_read"], 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pendo_408_splits_the_batch() {
    let pendo = PendoOptions {
        faults: vec![PendoFault::Status {
            request: 0,
            status: 408,
        }],
        ..PendoOptions::default()
    };
    let (okta, pendo) = servers(okta_opts(10), pendo).await;
    let setup = Setup::new(&okta, &pendo, Parts::default());
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lens: Vec<(usize, u16)> = pendo.batches().iter().map(|b| (b.len, b.status)).collect();
    assert_eq!(lens, [(10, 408), (5, 200), (5, 200)]);
    let run = last_run(&setup).await;
    assert_eq!(run["records_processed"], 10);
    assert_eq!(run["users_updated"], 10);
}
