//! Hostile and failing servers: what each fault does to a run, and that no user is lost or
//! pushed with a wrong value.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Parts, Setup, last_run, stderr, stdout};
use okta_pendo_testkit::{
    FakeOkta, FakePendo, OktaFault, OktaOptions, PendoFault, PendoOptions, UserSource,
};
use serde_json::Value;

/// Quick retries, so fault tests stay fast.
const FAST_RETRY: &str = "[retry]\nmax_attempts = 3\nbase_delay = \"50ms\"\nmax_delay = \"200ms\"";

fn okta_opts(users: usize, faults: Vec<OktaFault>) -> OktaOptions {
    OktaOptions {
        users: UserSource::Generated(users),
        rate_limit: 100_000,
        faults,
        ..OktaOptions::default()
    }
}

fn pendo_opts(faults: Vec<PendoFault>) -> PendoOptions {
    PendoOptions {
        faults,
        ..PendoOptions::default()
    }
}

fn parts<'a>(okta: &'a str, pendo: &'a str) -> Parts<'a> {
    Parts {
        okta,
        pendo,
        extra: FAST_RETRY,
        ..Parts::default()
    }
}

/// Every generated user `0..n` reached Pendo with the values Okta has for it.
fn assert_all_delivered_correctly(okta: &FakeOkta, pendo: &FakePendo, n: usize) {
    for i in 0..n {
        let user = okta_pendo_testkit::users::generated_user(i, &okta.base_url());
        let login = user["profile"]["login"].as_str().unwrap();
        let got = pendo
            .visitor(login)
            .unwrap_or_else(|| panic!("{login} never reached Pendo"));
        assert_eq!(got["department"], user["profile"]["department"], "{login}");
        assert_eq!(got["title"], user["profile"]["title"], "{login}");
        assert_eq!(got["okta_status"], user["status"], "{login}");
    }
}

fn counts_add_up(run: &Value) {
    let n = |k: &str| run[k].as_u64().unwrap();
    assert_eq!(
        n("okta_users_read"),
        n("records_processed") + n("users_unchanged") + n("users_skipped"),
        "{run}"
    );
    assert_eq!(
        n("users_failed"),
        n("records_processed") - n("users_updated"),
        "{run}"
    );
}

/// How many times the second request's page was asked for.
fn tries_of_second_page(okta: &FakeOkta) -> usize {
    let requests = okta.requests();
    let second = &requests[1].path_and_query;
    requests
        .iter()
        .filter(|r| r.path_and_query == *second)
        .count()
}

async fn run_with(
    okta: OktaOptions,
    pendo: PendoOptions,
    p: Parts<'_>,
) -> (FakeOkta, FakePendo, Setup, std::process::Output) {
    let okta = FakeOkta::start(okta).await;
    let pendo = FakePendo::start(pendo).await;
    let setup = Setup::new(&okta, &pendo, p);
    let out = setup.run(&["sync"]).await;
    (okta, pendo, setup, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_page_faults_are_retried_and_nothing_is_lost() {
    for fault in [
        OktaFault::MalformedJson { request: 1 },
        OktaFault::NotAnArray { request: 1 },
        OktaFault::CutMidBody { request: 1 },
        OktaFault::CorruptGzip { request: 1 },
        OktaFault::Status {
            request: 1,
            status: 502,
        },
        OktaFault::ConcurrencyLimited {
            request: 1,
            reset_after_secs: 1,
        },
    ] {
        let (okta, pendo, setup, out) = run_with(
            okta_opts(450, vec![fault.clone()]),
            pendo_opts(vec![]),
            parts("", ""),
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{fault:?}: {}", stderr(&out));
        assert_eq!(
            okta.requests().len(),
            4,
            "{fault:?}: three pages and one retry"
        );
        assert_all_delivered_correctly(&okta, &pendo, 450);
        let run = last_run(&setup).await;
        assert_eq!(run["status"], "succeeded", "{fault:?}");
        assert_eq!(run["records_processed"], 450);
        counts_add_up(&run);
        assert!(
            stdout(&out).contains("retrying"),
            "{fault:?}: a log line says why"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_stays_bad_fails_the_read_clearly_after_pushing_what_was_read() {
    let faults = (1..10)
        .map(|request| OktaFault::NotAnArray { request })
        .collect();
    let (okta, pendo, setup, out) =
        run_with(okta_opts(450, faults), pendo_opts(vec![]), parts("", "")).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        okta.requests().len(),
        4,
        "the first page, then 3 tries of the second"
    );
    let run = last_run(&setup).await;
    assert_eq!(run["status"], "partial");
    assert_eq!(run["status_code"], 0, "an unusable 200 is no success");
    let msg = run["message"].as_str().unwrap();
    assert!(
        msg.contains("expected a JSON array of users, got an object"),
        "{msg}"
    );
    assert!(
        run["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("JSON array"),
        "the run-level error comes first"
    );
    assert_eq!(
        pendo.records_received(),
        200,
        "the first page was still pushed"
    );
    assert_all_delivered_correctly(&okta, &pendo, 200);
    counts_add_up(&run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_gzip_stays_corrupt_fails_naming_gzip() {
    let faults = (1..10)
        .map(|request| OktaFault::CorruptGzip { request })
        .collect();
    let (okta, pendo, setup, out) =
        run_with(okta_opts(450, faults), pendo_opts(vec![]), parts("", "")).await;
    assert_eq!(out.status.code(), Some(1));
    // The third page may have been asked for ahead: its link came with the second's headers.
    assert_eq!(tries_of_second_page(&okta), 3);
    assert!(okta.requests().iter().all(|r| r.gzipped));
    let run = last_run(&setup).await;
    assert_eq!(run["status"], "partial");
    let msg = run["message"].as_str().unwrap();
    assert!(
        msg.contains(
            "Okta sent a malformed page for /api/v1/users: the response body is not valid gzip: "
        ),
        "{msg}"
    );
    assert_eq!(pendo.records_received(), 200, "the first page was pushed");
    assert_all_delivered_correctly(&okta, &pendo, 200);
    counts_add_up(&run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_in_an_encoding_not_asked_for_is_handled_by_its_status() {
    // A 503 whose body is labelled `br`: the status decides (retried), not the body.
    let fault = OktaFault::StatusInOtherEncoding {
        request: 1,
        status: 503,
        coding: "br".into(),
    };
    let (okta, pendo, setup, out) = run_with(
        okta_opts(450, vec![fault]),
        pendo_opts(vec![]),
        parts("", ""),
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = last_run(&setup).await;
    assert_eq!(run["status"], "succeeded");
    assert_all_delivered_correctly(&okta, &pendo, 450);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_in_an_encoding_not_asked_for_fails_naming_it_without_retrying() {
    let fault = OktaFault::OtherEncoding {
        request: 1,
        coding: "br".into(),
    };
    let (okta, pendo, setup, out) = run_with(
        okta_opts(450, vec![fault]),
        pendo_opts(vec![]),
        parts("", ""),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        tries_of_second_page(&okta),
        1,
        "not retried: it would come the same"
    );
    let run = last_run(&setup).await;
    assert_eq!(run["status"], "partial");
    let msg = run["message"].as_str().unwrap();
    assert!(
        msg.contains(
            "the response body is encoded as `br`, which this client does not read (only gzip)"
        ),
        "{msg}"
    );
    assert_all_delivered_correctly(&okta, &pendo, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enormous_body_is_cut_off_not_read() {
    let fault = OktaFault::HugeBody {
        request: 0,
        bytes: 80 * 1024 * 1024,
    };
    let (okta, pendo, setup, out) = run_with(
        okta_opts(10, vec![fault]),
        pendo_opts(vec![]),
        parts("", ""),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        okta.requests().len(),
        1,
        "a body over the cap is not retried"
    );
    let run = last_run(&setup).await;
    assert_eq!(run["status"], "failed");
    assert!(
        run["message"]
            .as_str()
            .unwrap()
            .contains("larger than 67108864 bytes"),
        "{run}"
    );
    assert_eq!(pendo.post_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out_and_is_retried() {
    let okta = okta_opts(300, vec![OktaFault::Hang { request: 0 }]);
    let pendo = pendo_opts(vec![PendoFault::Hang { request: 0 }]);
    let p = parts(
        "request_timeout = \"500ms\"",
        "request_timeout = \"500ms\"\nconcurrency = 1",
    );
    let (okta, pendo, setup, out) = run_with(okta, pendo, p).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        okta.requests().len(),
        3,
        "the hung page, its retry, the second page"
    );
    assert!(stdout(&out).contains("timed out"), "{}", stdout(&out));
    assert_all_delivered_correctly(&okta, &pendo, 300);
    counts_add_up(&last_run(&setup).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_hosts_are_a_clear_failure() {
    // A port nobody listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let okta = FakeOkta::start(okta_opts(5, vec![])).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(&okta, &pendo, parts("", ""));
    let env = [(
        "OKTA_PENDO_SYNC__OKTA__ORG_URL",
        format!("http://127.0.0.1:{port}"),
    )];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = common::run_bin(&setup.config, &["sync"], &env).await;
    assert_eq!(out.status.code(), Some(1));
    let run = last_run(&setup).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["status_code"], 0);
    let msg = run["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!(
            "cannot reach Okta at http://127.0.0.1:{port}: could not connect"
        )),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_unexpected_types_is_skipped_and_counted() {
    let okta = okta_opts(
        50,
        vec![OktaFault::BadUser {
            request: 0,
            index: 7,
        }],
    );
    let p = Parts {
        mapping: "department = \"profile.department\"\nlast_login = { path = \"lastLogin\", type = \"date\" }",
        extra: FAST_RETRY,
        ..Parts::default()
    };
    let (_okta, pendo, setup, out) = run_with(okta, pendo_opts(vec![]), p).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = last_run(&setup).await;
    assert_eq!(run["okta_users_read"], 50);
    assert_eq!(run["users_skipped"], 1, "{run}");
    assert_eq!(run["records_processed"], 49);
    assert!(pendo.visitor("user7@example.com").is_none());
    assert!(pendo.visitor("user8@example.com").is_some());
    counts_add_up(&run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_next_links_resolve_against_the_page_and_loops_are_stopped() {
    let (okta, pendo, _setup, out) = run_with(
        okta_opts(450, vec![OktaFault::RelativeNextLink { request: 0 }]),
        pendo_opts(vec![]),
        parts("", ""),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(okta.requests().len(), 3);
    assert_all_delivered_correctly(&okta, &pendo, 450);

    let (okta, pendo, setup, out) = run_with(
        okta_opts(450, vec![OktaFault::LoopingNextLink { request: 1 }]),
        pendo_opts(vec![]),
        parts("", ""),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(okta.requests().len(), 2, "the loop is not followed");
    let run = last_run(&setup).await;
    assert_eq!(run["status"], "partial");
    assert!(
        run["message"].as_str().unwrap().contains("paging loop"),
        "{run}"
    );
    assert_eq!(
        pendo.records_received(),
        400,
        "what was read was pushed once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pendo_faults_transient_ones_recover() {
    let faults = vec![
        PendoFault::RetryAfter {
            request: 0,
            status: 429,
            secs: 1,
        },
        PendoFault::Conflict { request: 1 },
        PendoFault::MalformedJson { request: 2 },
        PendoFault::RetryAfter {
            request: 3,
            status: 503,
            secs: 1,
        },
    ];
    let (okta, pendo, setup, out) = run_with(
        okta_opts(100, vec![]),
        pendo_opts(faults),
        Parts {
            pendo: "concurrency = 1",
            extra: "[retry]\nmax_attempts = 5\nbase_delay = \"50ms\"\nmax_delay = \"200ms\"",
            ..Parts::default()
        },
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let statuses: Vec<u16> = pendo.batches().iter().map(|b| b.status).collect();
    assert_eq!(statuses, [429, 409, 200, 503, 200]);
    let run = last_run(&setup).await;
    assert_eq!(
        run["users_updated"], 100,
        "the retried malformed answer gave the accounting"
    );
    assert_all_delivered_correctly(&okta, &pendo, 100);
    counts_add_up(&run);
    let log = stdout(&out);
    assert!(log.contains("Retry-After 1 s"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_zero_on_a_5xx_still_counts_attempts() {
    let faults = (0..50)
        .map(|request| PendoFault::RetryAfter {
            request,
            status: 503,
            secs: 0,
        })
        .collect();
    let (_okta, pendo, setup, out) =
        run_with(okta_opts(5, vec![]), pendo_opts(faults), parts("", "")).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(pendo.post_count(), 3, "max_attempts, not a tight loop");
    assert_eq!(last_run(&setup).await["status"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_times_out_alone_is_reported_and_the_rest_go_through() {
    let pendo = PendoOptions {
        slow_visitors: ["user6@example.com".to_owned()].into_iter().collect(),
        ..PendoOptions::default()
    };
    let (_okta, pendo, setup, out) = run_with(okta_opts(10, vec![]), pendo, parts("", "")).await;
    assert_eq!(out.status.code(), Some(1));
    let run = last_run(&setup).await;
    assert_eq!(run["status"], "partial");
    assert_eq!(run["status_code"], 408);
    assert_eq!(run["users_updated"], 9);
    assert_eq!(run["users_failed"], 1);
    let failed: Vec<&str> = run["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["visitor_id"].as_str())
        .collect();
    assert_eq!(failed, ["user6@example.com"]);
    assert_eq!(pendo.records_received(), 9);
    counts_add_up(&run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pendo_408_splits_down_to_what_passes() {
    let pendo = PendoOptions {
        max_batch_len: Some(3),
        ..PendoOptions::default()
    };
    let (okta, pendo, setup, out) =
        run_with(okta_opts(20, vec![]), pendo, parts("", "batch_size = 10")).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let accepted: Vec<usize> = pendo
        .batches()
        .iter()
        .filter(|b| b.status == 200)
        .map(|b| b.len)
        .collect();
    assert!(accepted.iter().all(|&n| n <= 3), "{accepted:?}");
    assert_eq!(accepted.iter().sum::<usize>(), 20);
    assert_all_delivered_correctly(&okta, &pendo, 20);
    counts_add_up(&last_run(&setup).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_pendo_refuses_fails_alone_and_is_named() {
    // Any batch holding user13 is refused (400, not retried): the batch is split until that
    // record fails alone; the other 29 go through.
    let pendo = PendoOptions {
        refused_visitors: HashSet::from(["user13@example.com".to_owned()]),
        ..pendo_opts(vec![])
    };
    let (okta, pendo, setup, out) = run_with(
        okta_opts(30, vec![]),
        pendo,
        parts("", "batch_size = 10\nconcurrency = 1"),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let run = last_run(&setup).await;
    assert_eq!(run["status"], "partial");
    assert_eq!(run["status_code"], 400);
    assert_eq!(run["records_processed"], 30);
    assert_eq!(run["users_updated"], 29);
    assert_eq!(run["users_failed"], 1);
    let failed: HashSet<String> = run["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["visitor_id"].as_str().map(String::from))
        .collect();
    assert_eq!(failed, HashSet::from(["user13@example.com".to_owned()]));
    for i in (0..30).filter(|&i| i != 13) {
        assert!(pendo.visitor(&format!("user{i}@example.com")).is_some());
    }
    assert!(pendo.visitor("user13@example.com").is_none());
    counts_add_up(&run);
    let _ = okta;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_for_a_whole_batch_is_split_and_what_passes_is_delivered() {
    // The second POST is refused once (400): its halves are pushed and pass.
    let pendo = pendo_opts(vec![PendoFault::Status {
        request: 1,
        status: 400,
    }]);
    let (okta, pendo, setup, out) = run_with(
        okta_opts(30, vec![]),
        pendo,
        parts("", "batch_size = 10\nconcurrency = 1"),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = last_run(&setup).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["users_updated"], 30);
    let sizes: Vec<usize> = pendo.batches().iter().map(|b| b.len).collect();
    assert_eq!(sizes, [10, 10, 5, 5, 10]);
    assert_all_delivered_correctly(&okta, &pendo, 30);
    counts_add_up(&run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacing_keeps_a_small_budget_free_of_429s() {
    // 20 requests per 1 s window, half of it ours: 10 a second. 30 pages need about 3 windows.
    let okta = OktaOptions {
        users: UserSource::Generated(300),
        budget_per_minute: Some(20),
        budget_window: Duration::from_secs(1),
        ..OktaOptions::default()
    };
    let started = std::time::Instant::now();
    let (okta, pendo, _setup, out) = run_with(
        okta,
        pendo_opts(vec![]),
        parts("page_size = 10\nrate_limit_share = 0.5", ""),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(okta.rate_limited_count(), 0, "pacing never met a 429");
    assert_eq!(okta.requests().len(), 30);
    // At most our half (10) per 1 s window: 30 pages cannot be done before the third window
    // opens. Bursting through the whole budget would finish within the first second (and meet
    // 429s).
    assert!(
        took >= Duration::from_secs(2),
        "{took:?}: more than our share was used"
    );
    assert_all_delivered_correctly(&okta, &pendo, 300);
    println!("pacing: 30 pages, budget 20/s at share 0.5, took {took:?}");
}
