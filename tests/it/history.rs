//! `history` that answers questions: `--status` and `--since` filters applied before
//! `--limit`, and `history ID` showing one run whole, its errors and missing visitors included.

use crate::common;

use std::collections::HashSet;

use common::{Parts, Setup, stderr, stdout};
use okta_pendo_testkit::{
    ExistingVisitors, FakeOkta, FakePendo, OktaFault, OktaOptions, PendoOptions, UserSource,
};
use serde_json::{Value, json};

fn ids(runs: &Value) -> Vec<i64> {
    runs.as_array()
        .unwrap_or_else(|| panic!("not an array: {runs}"))
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

async fn json(setup: &Setup, args: &[&str]) -> Value {
    let mut all = vec!["history", "--json"];
    all.extend_from_slice(args);
    let out = setup.run(&all).await;
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_one_run_whole() {
    let set = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
    let okta = FakeOkta::start(OktaOptions {
        users: UserSource::Generated(6),
        faults: vec![OktaFault::Status {
            request: 0,
            status: 401,
        }],
        ..OktaOptions::default()
    })
    .await;
    let pendo = FakePendo::start(PendoOptions {
        existing: ExistingVisitors::Except(set(&["user1@example.com", "user4@example.com"])),
        unconfirmed_visitors: set(&["user2@example.com"]),
        ..PendoOptions::default()
    })
    .await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            sync: "create_missing_visitors = false",
            ..Parts::default()
        },
    );
    let out = setup.run(&["history", "1"]).await;
    assert_eq!(out.status.code(), Some(1), "no state: no run 1");
    assert!(
        stderr(&out).contains("no run 1 is recorded in"),
        "{}",
        stderr(&out)
    );

    // A failed run (Okta refuses the token), a partial one (a record Pendo did not confirm, two
    // visitors it does not know), a dry run that succeeds.
    assert_eq!(setup.run(&["sync"]).await.status.code(), Some(1));
    assert_eq!(setup.run(&["sync"]).await.status.code(), Some(1));
    let dry = setup.run(&["sync", "--dry-run"]).await;
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    let all = json(&setup, &[]).await;
    let [dry, partial, failed] = ids(&all)[..] else {
        panic!("three runs: {all}")
    };
    assert_eq!(all[0]["status"], "succeeded");
    assert_eq!(all[1]["status"], "partial", "{all}");
    assert_eq!(all[2]["status"], "failed");

    assert_eq!(ids(&json(&setup, &["--status", "failed"]).await), [failed]);
    assert_eq!(
        ids(&json(&setup, &["--status", "failed,partial"]).await),
        [partial, failed]
    );
    assert_eq!(
        ids(&json(&setup, &["--status", "failed", "--status", "succeeded"]).await),
        [dry, failed]
    );
    // The limit counts the runs that pass the filter.
    assert_eq!(
        ids(&json(&setup, &["--status", "failed,succeeded", "--limit", "1"]).await),
        [dry]
    );
    assert_eq!(ids(&json(&setup, &["--since", "1h"]).await).len(), 3);
    let since = all[1]["started_at"].as_str().unwrap();
    assert_eq!(
        ids(&json(&setup, &["--since", since]).await),
        [dry, partial]
    );
    assert_eq!(
        ids(&json(&setup, &["--since", since, "--status", "partial"]).await),
        [partial]
    );
    assert_eq!(json(&setup, &["--since", "2999-01-01"]).await, json!([]));
    let out = setup
        .run(&["history", "--since", "2999-01-01", "--status", "held"])
        .await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("matches status held, started since 2999-01-01 00:00:00 UTC."),
        "{}",
        stdout(&out)
    );

    // One run whole: the same record `history --json` lists, errors and missing IDs included.
    let partial_id = partial.to_string();
    let one = json(&setup, &[&partial_id]).await;
    assert_eq!(one, all[1]);
    assert_eq!(
        one["missing_visitor_ids"],
        json!(["user1@example.com", "user4@example.com"])
    );
    let errors = one["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["visitor_id"] == "user2@example.com"),
        "{one}"
    );
    let out = setup.run(&["history", &partial_id]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with(&format!("run {partial}\n")), "{text}");
    assert!(text.contains("  status              partial\n"), "{text}");
    assert!(
        text.contains(&format!(
            "  message             {}\n",
            one["message"].as_str().unwrap()
        )),
        "{text}"
    );
    assert!(text.contains("  users_missing       2\n"), "{text}");
    assert!(
        text.contains("  missing_visitor_ids (2)\n    user1@example.com\n    user4@example.com\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("  errors ({})\n", errors.len())),
        "{text}"
    );
    for e in errors {
        let line = match e["visitor_id"].as_str() {
            Some(id) => format!("    {id}: {}\n", e["message"].as_str().unwrap()),
            None => format!("    {}\n", e["message"].as_str().unwrap()),
        };
        assert!(text.contains(&line), "{line:?} in:\n{text}");
    }
    let failed_id = failed.to_string();
    let out = setup.run(&["history", &failed_id]).await;
    assert!(
        stdout(&out).contains("Okta rejected the API token"),
        "{}",
        stdout(&out)
    );

    let out = setup.run(&["history", "999"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.lines()
            .last()
            .unwrap_or_default()
            .starts_with("error: no run 999 is recorded in "),
        "{err}"
    );
    assert!(stdout(&out).is_empty());
}

#[tokio::test]
async fn bad_values_are_usage_errors() {
    let okta = FakeOkta::start(OktaOptions::default()).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(&okta, &pendo, Parts::default());
    for args in [
        &["history", "--status", "bogus"][..],
        &["history", "--status", "failed,"],
        &["history", "--since", "yesterdayish"],
        &["history", "--since", "2026-13-01"],
        &["history", "x"],
        &["history", "3", "--status", "failed"],
        &["history", "3", "--since", "1d"],
    ] {
        let out = setup.run(args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    let out = setup.run(&["history", "--status", "bogus"]).await;
    assert!(
        stderr(&out).contains("expected one of succeeded, partial, failed, interrupted, held"),
        "{}",
        stderr(&out)
    );
}
