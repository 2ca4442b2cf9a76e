//! Pacing only when the budget binds: a run that needs less than its share of the org's rate
//! limit never waits for it; one that needs more waits for the window's reset and never meets a
//! 429 from a server that enforces its budget.

use std::time::Duration;

use okta_pendo_testkit::{FakeOkta, FakePendo, OktaOptions, PendoOptions, UserSource};

use crate::common::{Parts, Setup, last_run, run_bin, stderr, stdout};

/// The field every pacing pause is logged with (at debug level or above, whatever the reason
/// for the pause), so a run that paused for the budget at all shows it.
const PAUSED: &str = "\"pause_ms\"";
/// The words of a pause because the share was spent.
const WAITED: &str = "share of the Okta rate limit is spent";

async fn run(budget: u32, window: Duration, users: usize) -> (FakeOkta, String) {
    let okta = FakeOkta::start(OktaOptions {
        users: UserSource::Generated(users),
        budget_per_minute: Some(budget),
        budget_window: window,
        ..OktaOptions::default()
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            okta: "page_size = 10\nrate_limit_share = 0.5",
            ..Parts::default()
        },
    );
    let out = run_bin(
        &setup.config,
        &["sync"],
        &[("RUST_LOG", "okta_pendo_sync=debug")],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(last_run(&setup).await["okta_users_read"], users as u64);
    (okta, stdout(&out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_within_its_share_never_waits_for_the_budget() {
    // 600 a minute, half of it ours: 20 pages need a fifteenth of our share.
    let (okta, log) = run(600, Duration::from_secs(60), 200).await;
    assert_eq!(okta.requests().len(), 20);
    assert_eq!(okta.rate_limited_count(), 0);
    assert!(log.contains("okta page"), "debug lines are logged: {log}");
    assert_eq!(log.matches(PAUSED).count(), 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_share_waits_for_the_reset_and_meets_no_429() {
    // 20 a 2 s window, half of it ours: 30 pages need three windows.
    let (okta, log) = run(20, Duration::from_secs(2), 300).await;
    assert_eq!(okta.requests().len(), 30);
    assert_eq!(okta.rate_limited_count(), 0, "the share kept the budget");
    // Two waits, one after each spent share (fewer only if a window ran out on its own while
    // ten requests were made).
    let waits = log.matches(WAITED).count();
    assert!((1..=2).contains(&waits), "{waits} waits:\n{log}");
    assert_eq!(log.matches(PAUSED).count(), waits, "no other pause:\n{log}");
}
