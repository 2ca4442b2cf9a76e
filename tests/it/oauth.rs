//! OAuth 2.0 for an Okta service app: client credentials with a signed client assertion and
//! DPoP-bound tokens, against a local token endpoint and API that verify what Okta verifies.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{Parts, Setup, last_run, stderr, stdout};
use okta_pendo_sync::metrics::Metrics;
use okta_pendo_testkit::oauth::TokenFault;
use okta_pendo_testkit::{
    FakeOkta, FakePendo, OAuthOptions, OktaOptions, PendoOptions, UserSource, keys,
};

const CLIENT_ID: &str = "0oa-test-client";

/// Quick retries, so fault tests stay fast.
const FAST_RETRY: &str = "[retry]\nmax_attempts = 3\nbase_delay = \"50ms\"\nmax_delay = \"200ms\"";

fn okta_opts(users: usize, oauth: OAuthOptions) -> OktaOptions {
    OktaOptions {
        users: UserSource::Generated(users),
        rate_limit: 100_000,
        oauth: Some(oauth),
        ..OktaOptions::default()
    }
}

/// A setup whose `[okta.oauth]` uses the private key `pem` (written next to the config).
fn setup(okta: &FakeOkta, pendo: &FakePendo, pem: &str, more: &str) -> Setup {
    setup_with(okta, pendo, pem, more, "")
}

/// [`setup`], with `extra` sections (such as `[retry]`) at the end of the config.
fn setup_with(okta: &FakeOkta, pendo: &FakePendo, pem: &str, more: &str, extra: &str) -> Setup {
    let key = std::env::temp_dir().join(format!("okta-pendo-sync-test-{}.pem", fastrand::u64(..)));
    let oauth = format!(
        "client_id = \"{CLIENT_ID}\"\nprivate_key_file = \"{}\"\nkey_id = \"test-kid\"\n{more}",
        key.display()
    );
    let setup = Setup::new(
        okta,
        pendo,
        Parts {
            oauth: &oauth,
            extra,
            ..Parts::default()
        },
    );
    // Move the key into the setup's folder, so it goes with it.
    let inside = setup.dir.path().join("okta.pem");
    std::fs::write(&inside, pem).unwrap();
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        text.replace(&key.display().to_string(), &inside.display().to_string()),
    )
    .unwrap();
    setup
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paged_sync_with_dpop_bound_tokens_and_both_nonces() {
    let okta = FakeOkta::start(okta_opts(
        450,
        OAuthOptions {
            resource_nonce: true,
            ..OAuthOptions::default()
        },
    ))
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = setup(&okta, &pendo, keys::RSA_PRIVATE_PEM, "");
    let out = setup.run(&["sync"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(pendo.records_received(), 450);

    // The token endpoint: the app requires DPoP; then it asks for a nonce; then it issues a
    // DPoP-bound token.
    let tokens = okta.token_requests();
    assert_eq!(tokens.len(), 3, "{tokens:?}");
    assert_eq!(tokens[0].error.as_deref(), Some("invalid_dpop_proof"));
    assert!(!tokens[0].dpop);
    assert_eq!(tokens[1].error.as_deref(), Some("use_dpop_nonce"));
    assert!(tokens[1].dpop && tokens[1].nonce.is_none());
    assert_eq!(tokens[2].status, 200);
    assert!(tokens[2].nonce.is_some());
    assert_eq!(tokens[2].scopes, ["okta.users.read"]);
    // The API: one nonce challenge, then three pages, each with a verified proof.
    let reqs = okta.requests();
    assert_eq!(reqs.len(), 4, "{reqs:?}");
    assert_eq!(reqs[0].status, 401);
    assert!(reqs.iter().all(|r| {
        r.authorization
            .as_deref()
            .unwrap_or("")
            .starts_with("DPoP ")
    }));
    assert_eq!(okta.verified_proofs(), 3);
    let run = last_run(&setup).await;
    assert_eq!(run["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expiring_mid_run_is_renewed_once() {
    let okta = FakeOkta::start(OktaOptions {
        page_delay: Duration::from_millis(150),
        ..okta_opts(1_000, OAuthOptions::default())
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = setup(&okta, &pendo, keys::RSA_PRIVATE_PEM, "");
    let child = setup.spawn("sync");
    for _ in 0..200 {
        if okta.requests().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    okta.expire_tokens();
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(pendo.records_received(), 1_000);
    let issued = okta
        .token_requests()
        .iter()
        .filter(|t| t.status == 200)
        .count();
    assert_eq!(issued, 2, "one token, then one more after it expired");
    let expired: Vec<_> = okta
        .requests()
        .into_iter()
        .filter(|r| r.status == 401)
        .collect();
    assert_eq!(
        expired.len(),
        1,
        "one page answered 401 expired, then retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_bearer_tokens_when_the_app_does_not_require_dpop() {
    let okta = FakeOkta::start(okta_opts(
        30,
        OAuthOptions {
            require_dpop: false,
            token_nonce: false,
            ..OAuthOptions::default()
        },
    ))
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = setup(&okta, &pendo, keys::EC_PRIVATE_PEM, "");
    // The app's registered key is EC this time.
    drop(okta);
    let okta = FakeOkta::start(okta_opts(
        30,
        OAuthOptions {
            require_dpop: false,
            token_nonce: false,
            public_key_pem: keys::EC_PUBLIC_PEM.into(),
            ..OAuthOptions::default()
        },
    ))
    .await;
    let env = [("OKTA_PENDO_SYNC__OKTA__ORG_URL", okta.base_url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = common::run_bin(&setup.config, &["sync"], &env).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(pendo.records_received(), 30);
    let reqs = okta.requests();
    // No proof was needed at the token endpoint: plain Bearer tokens.
    assert!(okta.token_requests().iter().all(|t| !t.dpop));
    assert!(
        reqs.iter().all(|r| r
            .authorization
            .as_deref()
            .unwrap_or("")
            .starts_with("Bearer ")),
        "{reqs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refusal_is_explained_with_what_to_change() {
    struct Case {
        oauth: OAuthOptions,
        key: &'static str,
        more: &'static str,
        words: &'static [&'static str],
    }
    let cases = [
        Case {
            oauth: OAuthOptions::default(),
            key: keys::RSA_OTHER_PRIVATE_PEM,
            more: "",
            words: &[
                "invalid_client",
                "public key registered for the app",
                "clock",
            ],
        },
        Case {
            oauth: OAuthOptions {
                granted_scopes: vec!["okta.groups.read".into()],
                ..OAuthOptions::default()
            },
            key: keys::RSA_PRIVATE_PEM,
            more: "",
            words: &["invalid_scope", "okta.users.read", "Okta API Scopes"],
        },
        Case {
            oauth: OAuthOptions {
                admin_role: false,
                ..OAuthOptions::default()
            },
            key: keys::RSA_PRIVATE_PEM,
            more: "",
            words: &["HTTP 403", "admin role", "Read-only Administrator"],
        },
    ];
    for case in cases {
        let okta = FakeOkta::start(okta_opts(10, case.oauth)).await;
        let pendo = FakePendo::start(PendoOptions::default()).await;
        let setup = setup(&okta, &pendo, case.key, case.more);
        let out = setup.run(&["sync"]).await;
        assert_eq!(out.status.code(), Some(1));
        // A refusal is final: it is not asked again.
        let tokens = okta.token_requests();
        let refused: Vec<_> = tokens
            .iter()
            .filter(|t| t.status != 200 && !t.error.as_deref().unwrap_or("").contains("dpop"))
            .collect();
        assert!(refused.len() <= 1, "{tokens:?}");
        let run = last_run(&setup).await;
        let msg = run["message"].as_str().unwrap();
        for w in case.words {
            assert!(msg.contains(w), "{w:?} missing from {msg}");
        }
        let all = format!("{}{}{run}", stdout(&out), stderr(&out));
        assert!(!all.contains("PRIVATE KEY"), "the key leaked");
        assert_eq!(pendo.post_count(), 0);

        // check says the same, and which mode it used.
        let out = setup.run(&["check"]).await;
        assert_eq!(out.status.code(), Some(1));
        let text = stdout(&out);
        assert!(
            !common::check_line(&text, "okta").unwrap().0
                && text.contains("OAuth 2.0 service app 0oa-test-client"),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_the_auth_mode_and_the_token() {
    let okta = FakeOkta::start(okta_opts(5, OAuthOptions::default())).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = setup(&okta, &pendo, keys::RSA_PRIVATE_PEM, "");
    let out = setup.run(&["check"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        common::check_line(&text, "okta").unwrap().0
            && text.contains(
                "OAuth 2.0 service app 0oa-test-client (DPoP-bound token): users can be read"
            ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_listings_ask_for_the_groups_scope() {
    let okta = FakeOkta::start(OktaOptions {
        groups: vec![("00gA".into(), (0..20).collect())],
        ..okta_opts(50, OAuthOptions::default())
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let key_dir = tempfile::tempdir().unwrap();
    let key = key_dir.path().join("k.pem");
    std::fs::write(&key, keys::RSA_PRIVATE_PEM).unwrap();
    let oauth = format!(
        "client_id = \"{CLIENT_ID}\"\nprivate_key_file = \"{}\"\n",
        key.display()
    );
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            okta: "group_ids = [\"00gA\"]",
            oauth: &oauth,
            ..Parts::default()
        },
    );
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(pendo.records_received(), 20);
    let granted = okta
        .token_requests()
        .into_iter()
        .find(|t| t.status == 200)
        .unwrap();
    assert_eq!(granted.scopes, ["okta.users.read", "okta.groups.read"]);
}

#[tokio::test]
async fn key_problems_are_config_errors_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("bad.pem");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nTUlJQ1NFQ1JFVA==\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[okta]\norg_url = \"https://acme.okta.com\"\napi_token = \"x\"\n[okta.oauth]\n\
             client_id = \"0oa1\"\nprivate_key_file = \"{}\"\n[pendo]\nintegration_key = \"k\"\n\
             [mapping]\nt = \"profile.title\"\n",
            key.display()
        ),
    )
    .unwrap();
    let out = common::run_bin(&cfg, &["check"], &[]).await;
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(
        err.contains("okta.oauth: set either okta.api_token"),
        "{err}"
    );
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("api_token = \"x\"\n", ""),
    )
    .unwrap();
    let out = common::run_bin(&cfg, &["check"], &[]).await;
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(
        err.contains("okta.oauth.private_key_file: is not a PEM RSA or EC"),
        "{err}"
    );
    assert!(!err.contains("TUlJQ1NFQ1JFVA"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neither_the_key_nor_the_token_reaches_any_output_at_trace_level() {
    let okta = FakeOkta::start(okta_opts(300, OAuthOptions::default())).await;
    // A failing Pendo, for the error paths too.
    let pendo = FakePendo::start(PendoOptions {
        key: "another".into(),
        ..PendoOptions::default()
    })
    .await;
    let setup = setup(&okta, &pendo, keys::RSA_PRIVATE_PEM, "");
    let env = [("RUST_LOG", "trace")];
    let out = common::run_bin(&setup.config, &["sync"], &env).await;
    assert_eq!(out.status.code(), Some(1));
    let history = setup.run(&["history", "--json"]).await;
    let token = okta.requests()[0]
        .authorization
        .clone()
        .unwrap()
        .trim_start_matches("DPoP ")
        .to_owned();
    assert!(token.len() > 20);
    // A line of the key's body, not its armour.
    let key_line = keys::RSA_PRIVATE_PEM.lines().nth(3).unwrap();
    let mut places = vec![
        ("stdout", out.stdout.clone()),
        ("stderr", out.stderr.clone()),
        ("history", history.stdout.clone()),
    ];
    for name in ["state/state.db", "state/state.db-wal"] {
        if let Ok(b) = std::fs::read(setup.dir.path().join(name)) {
            places.push((name, b));
        }
    }
    for (place, bytes) in places {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&token), "the access token is in {place}");
        assert!(!text.contains(key_line), "the private key is in {place}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_token_request_is_retried_like_any_other() {
    let faults = [
        TokenFault::Status {
            request: 0,
            status: 503,
        },
        TokenFault::RateLimited {
            request: 0,
            reset_after_secs: 1,
        },
        TokenFault::NotATokenResponse { request: 0 },
        TokenFault::CutMidBody { request: 0 },
    ];
    for fault in faults {
        let okta = FakeOkta::start(okta_opts(
            250,
            OAuthOptions {
                token_faults: vec![fault.clone()],
                ..OAuthOptions::default()
            },
        ))
        .await;
        let pendo = FakePendo::start(PendoOptions::default()).await;
        let setup = setup_with(&okta, &pendo, keys::RSA_PRIVATE_PEM, "", FAST_RETRY);
        let out = setup.run(&["sync"]).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{fault:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        assert_eq!(pendo.records_received(), 250, "{fault:?}");
        assert!(stdout(&out).contains("retrying"), "{fault:?}");
        if let TokenFault::RateLimited { .. } = fault {
            // Until the reset, counted from the response's Date, plus a second.
            assert!(
                stdout(&out).contains(r#""wait_ms":2000"#),
                "{}",
                stdout(&out)
            );
        }
        let tokens = okta.token_requests();
        // The fault, then the DPoP exchange of a first token as usual.
        assert_eq!(tokens[0].error.as_deref(), Some("fault"), "{tokens:?}");
        assert_eq!(tokens.len(), 4, "{fault:?}: {tokens:?}");
        assert_eq!(tokens[3].status, 200, "{fault:?}: {tokens:?}");
        assert_eq!(last_run(&setup).await["status"], "succeeded");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_that_meets_a_503_mid_run_still_succeeds() {
    // Token requests 0-2 are the first token's DPoP exchange; 3 is the renewal.
    let okta = FakeOkta::start(OktaOptions {
        page_delay: Duration::from_millis(150),
        ..okta_opts(
            1_000,
            OAuthOptions {
                token_faults: vec![TokenFault::Status {
                    request: 3,
                    status: 503,
                }],
                ..OAuthOptions::default()
            },
        )
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = setup_with(&okta, &pendo, keys::RSA_PRIVATE_PEM, "", FAST_RETRY);
    let child = setup.spawn("sync");
    for _ in 0..200 {
        if okta.requests().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    okta.expire_tokens();
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(pendo.records_received(), 1_000);
    let tokens = okta.token_requests();
    assert_eq!(tokens[3].status, 503, "{tokens:?}");
    let issued = tokens.iter().filter(|t| t.status == 200).count();
    assert_eq!(
        issued, 2,
        "one token, then one more after the 503: {tokens:?}"
    );
    let run = last_run(&setup).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["okta_users_read"], 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_that_keeps_failing_ends_the_run_after_max_attempts() {
    let okta = FakeOkta::start(okta_opts(
        20,
        OAuthOptions {
            token_faults: (0..20)
                .map(|request| TokenFault::Status {
                    request,
                    status: 503,
                })
                .collect(),
            ..OAuthOptions::default()
        },
    ))
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = setup_with(&okta, &pendo, keys::RSA_PRIVATE_PEM, "", FAST_RETRY);
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    // max_attempts = 3, and nothing else was asked.
    assert_eq!(okta.token_requests().len(), 3);
    assert!(okta.requests().is_empty());
    assert_eq!(pendo.post_count(), 0);
    let run = last_run(&setup).await;
    assert_eq!(run["status"], "failed");
    let msg = run["message"].as_str().unwrap();
    assert!(
        msg.contains("cannot get an Okta access token") && msg.contains("HTTP 503"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_retries_are_counted_in_the_retry_metric() {
    let okta = FakeOkta::start(okta_opts(
        5,
        OAuthOptions {
            token_faults: vec![
                TokenFault::Status {
                    request: 0,
                    status: 502,
                },
                TokenFault::CutMidBody { request: 1 },
            ],
            ..OAuthOptions::default()
        },
    ))
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = setup_with(&okta, &pendo, keys::RSA_PRIVATE_PEM, "", FAST_RETRY);
    let settings = okta_pendo_sync::config::load(&setup.config)
        .unwrap()
        .settings;
    let metrics = Arc::new(Metrics::new());
    let clients = okta_pendo_sync::runner::clients(&settings, metrics.clone()).unwrap();
    clients.okta.probe().await.unwrap();
    let text = metrics.render();
    assert!(
        text.contains("okta_pendo_sync_retries_total{service=\"okta\"} 2"),
        "{text}"
    );
    // Token requests are Okta requests: the 502 is counted with the rest.
    assert!(
        text.contains("okta_pendo_sync_requests_total{service=\"okta\",status=\"502\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_each_group_and_names_the_missing_scope() {
    let okta = FakeOkta::start(OktaOptions {
        groups: vec![
            ("00gA".into(), (0..3).collect()),
            ("00gB".into(), (3..6).collect()),
        ],
        ..okta_opts(10, OAuthOptions::default())
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let check = |scopes: &'static str| {
        let okta = &okta;
        let pendo = &pendo;
        async move {
            let setup = setup_with(okta, pendo, keys::RSA_PRIVATE_PEM, scopes, "");
            let text = std::fs::read_to_string(&setup.config).unwrap();
            std::fs::write(
                &setup.config,
                text.replacen("[okta]\n", "[okta]\ngroup_ids = [\"00gA\", \"00gB\"]\n", 1),
            )
            .unwrap();
            let out = setup.run(&["check"]).await;
            (out.status.code(), stdout(&out))
        }
    };

    // The token asks for users only: users can be read, the groups cannot.
    let (code, text) = check("scopes = [\"okta.users.read\"]").await;
    assert_eq!(code, Some(1), "{text}");
    assert!(common::check_line(&text, "okta").unwrap().0, "{text}");
    for id in ["00gA", "00gB"] {
        let (ok, detail) = common::check_line(&text, &format!("group {id}")).unwrap();
        assert!(!ok, "{text}");
        assert!(
            detail.contains("HTTP 403")
                && detail.contains("okta.groups.read")
                && detail.contains("okta.oauth.scopes"),
            "{detail}"
        );
    }
    assert!(text.ends_with("verdict: 2 problems found\n"), "{text}");
    let probes: Vec<String> = okta
        .requests()
        .into_iter()
        .map(|r| r.path_and_query)
        .filter(|p| p.starts_with("/api/v1/groups/"))
        .collect();
    assert_eq!(
        probes,
        [
            "/api/v1/groups/00gA/users?limit=1",
            "/api/v1/groups/00gB/users?limit=1"
        ]
    );

    // With the scope asked for (the default with group_ids) and granted: all good.
    let (code, text) = check("").await;
    assert_eq!(code, Some(0), "{text}");
    for id in ["00gA", "00gB"] {
        let (ok, detail) = common::check_line(&text, &format!("group {id}")).unwrap();
        assert!(ok && detail == "its members can be read", "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_with_groups_names_a_scope_the_app_was_not_granted() {
    let okta = FakeOkta::start(OktaOptions {
        groups: vec![("00gA".into(), (0..3).collect())],
        ..okta_opts(
            10,
            OAuthOptions {
                granted_scopes: vec!["okta.users.read".into()],
                ..OAuthOptions::default()
            },
        )
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = setup(&okta, &pendo, keys::RSA_PRIVATE_PEM, "");
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        text.replacen("[okta]\n", "[okta]\ngroup_ids = [\"00gA\"]\n", 1),
    )
    .unwrap();
    let out = setup.run(&["check"]).await;
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let (ok, detail) = common::check_line(&text, "group 00gA").unwrap();
    assert!(!ok, "{text}");
    assert!(
        detail.contains("invalid_scope")
            && detail.contains("okta.groups.read")
            && detail.contains("Okta API Scopes"),
        "{detail}"
    );
}
