//! Golden tests: users recorded from a real Okta org (`tests/fixtures/okta`, see its
//! PROVENANCE.md) are served by the local fake Okta to a real `okta-pendo-sync sync`, and what
//! comes out, the body Pendo receives and the `--dry-run` output, is compared with the exact
//! value written out here.

use okta_pendo_testkit::{FakeOkta, FakePendo, OktaOptions, PendoOptions, UserSource};
use serde_json::{Value, json};

use crate::common::{Parts, Setup, last_run, stderr, stdout};

/// Two pages of `GET /api/v1/users?limit=1` recorded by Okta's Python SDK tests, and a 404.
const CASSETTE: &str =
    include_str!("../fixtures/okta/list_users_pages_from_okta-sdk-python_cassette.json");

/// A small mapping over what the recorded users hold: text, a nested path, a date, and two
/// attributes Okta sent as `null` (left out of the record under the default `on_null = "skip"`).
const MAPPING: &str = r#"last_name = "profile.lastName"
okta_status = "status"
user_type = "type.id"
mobile_phone = "profile.mobilePhone"
created = { path = "created", type = "date" }
last_login = { path = "lastLogin", type = "date" }"#;

/// The users of the recorded pages (the exchanges that answered 200 to a users listing), in
/// the order Okta served them.
fn recorded_users() -> Vec<Value> {
    let exchanges: Vec<Value> = serde_json::from_str(CASSETTE).unwrap();
    let users: Vec<Value> = exchanges
        .iter()
        .filter(|e| {
            e["status"] == 200
                && e["request"]["uri"]
                    .as_str()
                    .unwrap()
                    .starts_with("https://test.okta.com/api/v1/users?")
        })
        .flat_map(|e| e["body"].as_array().unwrap().clone())
        .collect();
    assert_eq!(users.len(), 2, "the recording holds two pages of one user");
    users
}

/// Servers holding the recorded users, Pendo keeping the raw bodies, and a config reading Okta
/// one user a page, as the recording did.
async fn golden_setup() -> (FakeOkta, FakePendo, Setup) {
    let okta = FakeOkta::start(OktaOptions {
        users: UserSource::Explicit(recorded_users()),
        ..Default::default()
    })
    .await;
    let pendo = FakePendo::start(PendoOptions {
        record_bodies: true,
        ..Default::default()
    })
    .await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            okta: "page_size = 1",
            mapping: MAPPING,
            ..Parts::default()
        },
    );
    (okta, pendo, setup)
}

/// The two user-list requests of a run: the first page, then the `next` link's cursor.
fn assert_read_page_by_page(okta: &FakeOkta) {
    let listings: Vec<String> = okta
        .requests()
        .into_iter()
        .filter(|r| r.path_and_query.starts_with("/api/v1/users"))
        .map(|r| r.path_and_query)
        .collect();
    assert_eq!(listings.len(), 2, "{listings:?}");
    assert_eq!(listings[0], "/api/v1/users?limit=1");
    assert!(listings[1].contains("after="), "{listings:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_users_reach_pendo_as_this_exact_body() {
    let (okta, pendo, setup) = golden_setup().await;

    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(last_run(&setup).await["status"], "succeeded");
    assert_read_page_by_page(&okta);

    let batches = pendo.batches();
    assert_eq!(batches.len(), 1, "one batch holds both users");
    let batch = &batches[0];
    assert_eq!(
        (batch.group.as_str(), batch.create, batch.status),
        ("custom", false, 200)
    );
    let body = batch.body.as_deref().expect("the body was recorded");
    let sent: Value = serde_json::from_slice(body).expect("the body is JSON");
    let expected = json!([
        {
            "visitorId": "John.Doe-Activate@example.com",
            "values": {
                "created": 1_598_552_160_000_i64,
                "last_name": "Doe-Activate",
                "okta_status": "STAGED",
                "user_type": "otyc04qb2rUDcq2YA4x6"
            }
        },
        {
            "visitorId": "John.Doe-Paginate-1@example.com",
            "values": {
                "created": 1_598_552_387_000_i64,
                "last_name": "Doe-Paginate-1",
                "okta_status": "STAGED",
                "user_type": "otyc04qb2rUDcq2YA4x6"
            }
        }
    ]);
    assert_eq!(sent, expected, "{}", String::from_utf8_lossy(body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_users_dry_run_prints_exactly_these_lines() {
    let (okta, pendo, setup) = golden_setup().await;

    let out = setup.run(&["sync", "--dry-run"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_read_page_by_page(&okta);
    assert_eq!(pendo.post_count(), 0, "a dry run pushes nothing");

    let expected = concat!(
        r#"{"visitorId":"John.Doe-Activate@example.com","values":{"created":1598552160000,"last_name":"Doe-Activate","okta_status":"STAGED","user_type":"otyc04qb2rUDcq2YA4x6"}}"#,
        "\n",
        r#"{"visitorId":"John.Doe-Paginate-1@example.com","values":{"created":1598552387000,"last_name":"Doe-Paginate-1","okta_status":"STAGED","user_type":"otyc04qb2rUDcq2YA4x6"}}"#,
        "\n",
    );
    assert_eq!(stdout(&out), expected);
}
