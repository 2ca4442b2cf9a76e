//! The network edges hardened: what a hostile or odd server (or proxy) can send, and that the
//! run neither trusts it nor falls over.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Parts, Setup, last_run, stderr, stdout};
use okta_pendo_testkit::{
    FakeOkta, FakePendo, OAuthOptions, OktaFault, OktaOptions, PendoOptions, UserSource, keys,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// Runs `sync` against a fake Okta with `opts`, `[okta]` extra lines `okta_extra` and quick
/// retries.
async fn sync_with(
    opts: OktaOptions,
    okta_extra: &str,
) -> (FakeOkta, FakePendo, Setup, std::process::Output) {
    let okta = FakeOkta::start(opts).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            okta: okta_extra,
            extra: FAST_RETRY,
            ..Parts::default()
        },
    );
    let out = setup.run(&["sync"]).await;
    (okta, pendo, setup, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_zeros_is_malformed_not_millions_of_users() {
    // Valid JSON, 4 MiB of it: two million elements where a page holds at most 200. Every try.
    let faults = (0..3)
        .map(|request| OktaFault::ZeroFilled {
            request,
            bytes: 4 * 1024 * 1024,
        })
        .collect();
    let (okta, pendo, setup, out) = sync_with(okta_opts(10, faults), "").await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(okta.requests().len(), 3, "a malformed page is retried");
    let run = last_run(&setup).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["okta_users_read"], 0, "{run}");
    let msg = run["message"].as_str().unwrap();
    assert!(msg.contains("malformed page"), "{msg}");
    assert!(
        msg.contains("more than the 200 users a page may hold"),
        "{msg}"
    );
    assert_eq!(pendo.post_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_with_more_users_than_its_limit_is_malformed() {
    let faults = (0..3)
        .map(|request| OktaFault::OverfullPage { request, users: 6 })
        .collect();
    let (okta, pendo, setup, out) = sync_with(okta_opts(10, faults), "page_size = 5").await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(okta.requests().len(), 3, "a malformed page is retried");
    assert!(
        okta.requests()[0].path_and_query.contains("limit=5"),
        "{:?}",
        okta.requests()[0]
    );
    let run = last_run(&setup).await;
    assert_eq!(run["status"], "failed", "{run}");
    let msg = run["message"].as_str().unwrap();
    assert!(msg.contains("malformed page"), "{msg}");
    assert!(
        msg.contains("more than the 5 users a page may hold"),
        "{msg}"
    );
    assert_eq!(pendo.post_count(), 0);
}

/// Runs `sync` against a fake Okta org whose API is read by an OAuth service app (`oauth`),
/// with `okta_extra` lines in `[okta]`.
async fn oauth_sync(
    opts: OktaOptions,
    okta_extra: &str,
) -> (FakeOkta, FakePendo, Setup, std::process::Output) {
    let okta = FakeOkta::start(opts).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            okta: okta_extra,
            oauth: "client_id = \"0oa-test-client\"\nprivate_key_file = \"KEY_FILE\"",
            extra: FAST_RETRY,
            ..Parts::default()
        },
    );
    let key = setup.dir.path().join("okta.pem");
    std::fs::write(&key, keys::RSA_PRIVATE_PEM).unwrap();
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let text = text.replace("KEY_FILE", &key.display().to_string());
    std::fs::write(&setup.config, text).unwrap();
    let out = setup.run(&["sync"]).await;
    (okta, pendo, setup, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_proofs_are_made_after_the_pacing_wait() {
    // One request per 5 s window: the second page waits for the next window. The org takes a
    // proof only within 2 s of its iat, so one made before that wait is refused.
    let opts = OktaOptions {
        users: UserSource::Generated(2),
        budget_per_minute: Some(1),
        budget_window: Duration::from_secs(5),
        oauth: Some(OAuthOptions {
            proof_iat_window_secs: 2,
            ..OAuthOptions::default()
        }),
        ..OktaOptions::default()
    };
    let (okta, pendo, setup, out) = oauth_sync(opts, "page_size = 1").await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        okta.rate_limited_count(),
        0,
        "the pacer waited for the window"
    );
    let reqs = okta.requests();
    assert!(reqs.len() >= 2, "{reqs:?}");
    assert!(reqs.iter().all(|r| r.status == 200), "{reqs:?}");
    assert_eq!(pendo.records_received(), 2);
    assert_eq!(last_run(&setup).await["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_said_to_live_for_ever_is_no_panic() {
    let opts = OktaOptions {
        users: UserSource::Generated(3),
        rate_limit: 100_000,
        oauth: Some(OAuthOptions {
            token_lifetime: Duration::from_secs(u64::MAX),
            ..OAuthOptions::default()
        }),
        ..OktaOptions::default()
    };
    let (okta, pendo, setup, out) = oauth_sync(opts, "").await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let issued = okta
        .token_requests()
        .iter()
        .filter(|t| t.status == 200)
        .count();
    assert_eq!(issued, 1);
    assert_eq!(pendo.records_received(), 3);
    assert_eq!(last_run(&setup).await["status"], "succeeded");
}

/// A "proxy" on 127.0.0.1 that records the first line of every request reaching it and
/// answers 502.
async fn recording_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let first = text.lines().next().unwrap_or("").to_owned();
            log.lock().unwrap().push(first);
            let _ = s
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_targets_never_go_through_a_proxy() {
    let (proxy, seen) = recording_proxy().await;
    let okta = FakeOkta::start(okta_opts(3, vec![])).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let parts = Parts {
        extra: FAST_RETRY,
        ..Parts::default()
    };
    let setup = Setup::new(&okta, &pendo, parts);
    let vars = [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ];
    let mut env: Vec<(&str, &str)> = vars.iter().map(|v| (*v, proxy.as_str())).collect();
    env.extend([("NO_PROXY", ""), ("no_proxy", "")]);
    let out = common::run_bin(&setup.config, &["sync"], &env).await;
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(pendo.records_received(), 3);
    assert!(okta.requests().iter().all(|r| r.status == 200));
    assert_eq!(last_run(&setup).await["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_on_every_network_is_warned_about() {
    use tokio::io::AsyncBufReadExt;

    let okta = FakeOkta::start(okta_opts(1, vec![])).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let parts = Parts {
        extra: "[server]\nlisten = \"0.0.0.0:0\"",
        ..Parts::default()
    };
    let setup = Setup::new(&okta, &pendo, parts);
    let mut daemon = tokio::process::Command::new(env!("CARGO_BIN_EXE_okta-pendo-sync"))
        .arg("-c")
        .arg(&setup.config)
        .arg("run")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(daemon.stdout.take().unwrap()).lines();
    let warning = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("unspecified address") {
                return Some(line);
            }
        }
        None
    })
    .await
    .expect("the daemon logs within 30 s")
    .expect("the daemon warns before its log ends");
    let warning: serde_json::Value = serde_json::from_str(&warning).unwrap();
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("prefer 127.0.0.1"),
        "{warning}"
    );
    daemon.kill().await.unwrap();
}
