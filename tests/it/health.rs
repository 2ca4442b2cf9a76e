//! `okta-pendo-sync health`: the probe a container's health check runs. It asks the daemon's
//! /healthz at the config's `[server] listen`, reads nothing else of the config, and says in one
//! line why it fails.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::{Parts, Setup, run_bin, stderr, stdout};
use okta_pendo_testkit::{FakeOkta, FakePendo, OktaOptions, PendoOptions, UserSource};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config holding only `[server]` (or nothing) besides what `health` must not need.
fn config(dir: &std::path::Path, server: &str) -> std::path::PathBuf {
    let path = dir.join("health.toml");
    let text = format!(
        "[okta]\norg_url = \"https://acme.okta.example\"\napi_token_file = \"{}/missing.token\"\n\
         [pendo]\nintegration_key_file = \"{}/missing.key\"\n{server}",
        dir.display(),
        dir.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// One line of output: `health`'s promise.
fn one_line(text: &str) -> &str {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text:?}");
    lines[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_daemon_is_healthy_even_with_its_secret_files_gone() {
    let okta = FakeOkta::start(OktaOptions {
        users: UserSource::Generated(20),
        rate_limit: 100_000,
        ..OktaOptions::default()
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let port = free_port();
    let extra = format!(
        "[schedule]\ncron = \"0 0 6 1 1 *\"\nrun_on_start = true\n[server]\nlisten = \"127.0.0.1:{port}\"\n"
    );
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            extra: &extra,
            ..Parts::default()
        },
    );
    let mut daemon = setup.spawn("run");
    let mut healthy = None;
    for _ in 0..100 {
        let out = setup.run(&["health"]).await;
        if out.status.code() == Some(0) {
            healthy = Some(out);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = healthy.expect("the daemon became healthy within 10 s");
    let url = format!("http://127.0.0.1:{port}/healthz");
    assert_eq!(
        one_line(&stdout(&out)),
        format!("healthy: {url} answered 200")
    );
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));

    // The secrets and the rest of the config are not health's business: gone secret files
    // make the config invalid for every other command, not for the probe.
    std::fs::remove_file(setup.dir.path().join("okta.token")).unwrap();
    std::fs::remove_file(setup.dir.path().join("pendo.key")).unwrap();
    let out = setup.run(&["health", "--timeout", "5s"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = setup.run(&["check", "--offline"]).await;
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));

    // A config naming the unspecified address asks loopback of the same family.
    let other = config(
        setup.dir.path(),
        &format!("[server]\nlisten = \"0.0.0.0:{port}\"\n"),
    );
    let out = run_bin(&other, &["health"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains(&url), "{}", stdout(&out));

    // The environment's override counts, as for the daemon.
    let none = config(setup.dir.path(), "");
    let listen = format!("127.0.0.1:{port}");
    let out = run_bin(
        &none,
        &["health"],
        &[("OKTA_PENDO_SYNC__SERVER__LISTEN", &listen)],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    daemon.kill().await.unwrap();
    // Stopped: unhealthy.
    let out = setup.run(&["health"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(one_line(&stderr(&out)).starts_with(&format!("unhealthy: {url}: could not connect")));
    assert!(stdout(&out).is_empty());
}

#[tokio::test]
async fn a_closed_port_is_unhealthy_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = config(dir.path(), &format!("[server]\nlisten = \"{port}\"\n"));
    let out = run_bin(&path, &["health"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let line = one_line(&stderr(&out)).to_owned();
    assert!(
        line.starts_with(&format!(
            "unhealthy: http://127.0.0.1:{port}/healthz: could not connect"
        )),
        "{line}"
    );
    assert!(stdout(&out).is_empty());
}

/// A server on 127.0.0.1 that answers every connection with `answer`, or never answers.
async fn server(answer: Option<&'static [u8]>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            match answer {
                Some(a) => {
                    let _ = s.write_all(a).await;
                }
                None => held.push(s),
            }
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_200_or_no_answer_is_unhealthy_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let port = server(Some(
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 36\r\nconnection: close\r\n\r\nthe scheduler has not run for 200 s\n",
    ))
    .await;
    let path = config(
        dir.path(),
        &format!("[server]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let out = run_bin(&path, &["health"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        one_line(&stderr(&out)),
        format!(
            "unhealthy: http://127.0.0.1:{port}/healthz answered 503: the scheduler has not run \
             for 200 s"
        )
    );

    let port = server(None).await;
    let path = config(
        dir.path(),
        &format!("[server]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let out = run_bin(&path, &["health", "--timeout", "300ms"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        one_line(&stderr(&out)),
        format!("unhealthy: http://127.0.0.1:{port}/healthz: no answer within 300 ms")
    );
}

#[tokio::test]
async fn no_server_or_an_unreadable_config_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "");
    let out = run_bin(&path, &["health"], &[]).await;
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let line = one_line(&stderr(&out)).to_owned();
    assert!(
        line.starts_with("unhealthy: no server is configured: set [server] listen in"),
        "{line}"
    );

    let path = config(dir.path(), "[server]\nlisten = \"somewhere\"\n");
    let out = run_bin(&path, &["health"], &[]).await;
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let line = one_line(&stderr(&out)).to_owned();
    assert!(
        line.contains("server.listen: \"somewhere\" is not an address"),
        "{line}"
    );

    let missing = dir.path().join("nope.toml");
    let out = run_bin(&missing, &["health"], &[]).await;
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(
        one_line(&stderr(&out)).contains("cannot read the config file"),
        "{}",
        stderr(&out)
    );
}
