//! The action card's "Value Keys" (`sync.value_keys`): a list of Okta profile attributes, each
//! pushed to the Pendo field of the same name, alone or with `[mapping]`; and the card's use
//! with no value keys at all: make sure every Okta user exists as a Pendo visitor.

use std::collections::HashSet;

use okta_pendo_testkit::users::generated_user;
use okta_pendo_testkit::{
    ExistingVisitors, FakeOkta, FakePendo, OktaOptions, PendoOptions, UserSource,
};

use crate::common::{Parts, Setup, last_run, stderr};

async fn servers(users: usize, pendo: PendoOptions) -> (FakeOkta, FakePendo) {
    let okta = FakeOkta::start(OktaOptions {
        users: UserSource::Generated(users),
        rate_limit: 100_000,
        ..OktaOptions::default()
    })
    .await;
    (okta, FakePendo::start(pendo).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_keys_alone_push_each_attribute_to_its_namesake() {
    let (okta, pendo) = servers(40, PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            sync: "value_keys = [\"department\", \"title\"]",
            mapping: "",
            ..Parts::default()
        },
    );
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for i in 0..40 {
        let user = generated_user(i, &okta.base_url());
        let login = user["profile"]["login"].as_str().unwrap();
        let got = pendo.visitor(login).unwrap();
        assert_eq!(got["department"], user["profile"]["department"], "{login}");
        assert_eq!(got["title"], user["profile"]["title"], "{login}");
        assert_eq!(got.len(), 2, "{login}: {got:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_keys_combine_with_the_mapping() {
    let (okta, pendo) = servers(10, PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            sync: "value_keys = [\"department\"]",
            mapping: "okta_status = \"status\"",
            ..Parts::default()
        },
    );
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let user = generated_user(3, &okta.base_url());
    let got = pendo.visitor("user3@example.com").unwrap();
    assert_eq!(got["department"], user["profile"]["department"]);
    assert_eq!(got["okta_status"], user["status"]);
    assert_eq!(got.len(), 2, "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_in_both_is_a_config_error_naming_it() {
    let (okta, pendo) = servers(1, PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            sync: "value_keys = [\"title\", \"department\"]",
            mapping: "department = \"profile.department\"",
            ..Parts::default()
        },
    );
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(
        err.contains("sync.value_keys: \"department\" is also a field in [mapping]"),
        "{err}"
    );
    assert!(!err.contains("\"title\""), "only the clash is named: {err}");
    assert_eq!(pendo.post_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_mapping_creates_every_unknown_visitor() {
    let (okta, pendo) = servers(
        120,
        PendoOptions {
            existing: ExistingVisitors::Only(HashSet::new()),
            ..PendoOptions::default()
        },
    )
    .await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            sync: "create_missing_visitors = true\nvalue_keys = []",
            mapping: "",
            ..Parts::default()
        },
    );
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = last_run(&setup).await;
    assert_eq!(run["records_processed"], 120);
    let read: HashSet<String> = (0..120).map(|i| format!("user{i}@example.com")).collect();
    assert_eq!(pendo.created(), read);
    for batch in pendo.batches() {
        assert!(batch.create);
        assert!(batch.records.iter().all(|(_, values)| values.is_empty()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_mapping_without_create_is_refused_with_its_reason() {
    let (okta, pendo) = servers(1, PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            sync: "value_keys = []",
            mapping: "",
            ..Parts::default()
        },
    );
    let out = setup.run(&["check", "--offline"]).await;
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(
        err.contains("mapping: is required unless sync.create_missing_visitors = true")
            && err.contains("a run would change nothing in Pendo"),
        "{err}"
    );
}
