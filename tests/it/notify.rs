//! Webhook notifications: a local receiver gets the right message for each ending that did not
//! succeed and once for a recovery, nothing for a plain success or a dry run; a 500 is retried;
//! a receiver that stays down changes neither the record nor the exit code (and is counted);
//! `notify --test` and `check`; and the URL, a secret, shows in no output.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use okta_pendo_sync::config;
use okta_pendo_sync::metrics::Metrics;
use okta_pendo_sync::report::{Status, Trigger};
use okta_pendo_sync::runner;
use okta_pendo_sync::state::State;
use okta_pendo_sync::sync::RunOptions;
use okta_pendo_testkit::{
    FakeOkta, FakePendo, FakeWebhook, OktaOptions, PendoOptions, UserSource, WebhookOptions,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::common::{self, Parts, Setup, last_run, stderr, stdout};

/// Recognisable in any output: the secret part of every webhook URL here.
const TOKEN: &str = "T0kenXyZ9SecretHookPath";
const FAST_RETRY: &str = "[retry]\nmax_attempts = 3\nbase_delay = \"20ms\"\nmax_delay = \"50ms\"\n";

fn okta_opts(users: usize) -> OktaOptions {
    OktaOptions {
        users: UserSource::Generated(users),
        rate_limit: 100_000,
        ..OktaOptions::default()
    }
}

/// A receiver on `/services/T000/B000/{TOKEN}{n}`.
async fn receiver(n: u32, statuses: Vec<u16>, down: bool) -> FakeWebhook {
    FakeWebhook::start(WebhookOptions {
        statuses,
        down,
        ..WebhookOptions::with_token(&format!("{TOKEN}{n}"))
    })
    .await
}

/// `[[notify.webhook]]` tables for (receiver, format) pairs, then the fast retry policy.
fn webhooks(hooks: &[(&FakeWebhook, &str)]) -> String {
    let mut text = String::new();
    for (hook, format) in hooks {
        text.push_str(&format!(
            "[[notify.webhook]]\nurl = \"{}\"\nformat = \"{format}\"\n\n",
            hook.url()
        ));
    }
    text + FAST_RETRY
}

fn setup(okta: &FakeOkta, pendo: &FakePendo, extra: &str) -> Setup {
    Setup::new(
        okta,
        pendo,
        Parts {
            extra,
            ..Parts::default()
        },
    )
}

/// `sync` with `args`; checks its exit code is the run's own; returns the record and the
/// whole output (stdout and stderr).
async fn sync(setup: &Setup, args: &[&str]) -> (Value, String) {
    let mut all = vec!["sync"];
    all.extend_from_slice(args);
    let out = setup.run(&all).await;
    let run = last_run(setup).await;
    let expected = if run["status"] == "succeeded" { 0 } else { 1 };
    assert_eq!(out.status.code(), Some(expected), "{run}\n{}", stderr(&out));
    (run, format!("{}{}", stdout(&out), stderr(&out)))
}

fn text(body: &Value) -> &str {
    body["text"].as_str().unwrap_or_default()
}

fn edit(setup: &Setup, from: &str, to: &str) {
    let text = std::fs::read_to_string(&setup.config).unwrap();
    assert!(text.contains(from), "{from:?} not in the config");
    std::fs::write(&setup.config, text.replacen(from, to, 1)).unwrap();
}

fn pendo_key(setup: &Setup, key: &str) {
    std::fs::write(setup.dir.path().join("pendo.key"), key).unwrap();
}

/// The run record as `history --json` prints it, by id.
async fn recorded(setup: &Setup, id: &Value) -> Value {
    common::history(setup)
        .await
        .into_iter()
        .find(|r| r["id"] == *id)
        .expect("the run is in the history")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_is_told_in_both_formats_then_its_recovery_once() {
    let okta = FakeOkta::start(okta_opts(30)).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let slack = receiver(1, vec![], false).await;
    let json = receiver(2, vec![], false).await;
    let setup = setup(
        &okta,
        &pendo,
        &webhooks(&[(&slack, "slack"), (&json, "json")]),
    );

    // A plain success, the first run: nothing.
    let (run, _) = sync(&setup, &[]).await;
    assert_eq!(run["status"], "succeeded");
    assert!(slack.received().is_empty() && json.received().is_empty());

    // Pendo refuses the key: failed, told to both.
    pendo_key(&setup, "a-revoked-key");
    let (failed, _) = sync(&setup, &[]).await;
    assert_eq!(failed["status"], "failed");
    let [message] = &slack.delivered()[..] else {
        panic!("{:?}", slack.received());
    };
    let t = text(message);
    let id = failed["id"].as_i64().unwrap();
    assert!(
        t.starts_with(&format!("okta-pendo-sync run {id} failed on ")),
        "{t}"
    );
    let c = |k: &str| failed[k].as_u64().unwrap();
    let counts = format!(
        "read {}, sent {}, updated {}, failed {}, missing {}, skipped {}",
        c("okta_users_read"),
        c("records_processed"),
        c("users_updated"),
        c("users_failed"),
        c("users_missing"),
        c("users_skipped")
    );
    assert!(t.contains(&counts), "{t}");
    assert!(t.contains(&format!(
        "({} run, manual)",
        failed["mode"].as_str().unwrap()
    )));
    assert!(t.contains("Pendo rejected the integration key"), "{t}");
    let [body] = &json.delivered()[..] else {
        panic!("{:?}", json.received());
    };
    assert_eq!(body["event"], "run_finished");
    assert!(!body["host"].as_str().unwrap().is_empty());
    assert!(t.contains(body["host"].as_str().unwrap()), "{t}");
    // The whole record, exactly as `history --json` prints it.
    assert_eq!(body["run"], recorded(&setup, &failed["id"]).await);
    let post = &json.received()[0];
    assert_eq!(post.content_type.as_deref(), Some("application/json"));

    // A dry run neither notifies nor counts as the run before the next one.
    let out = setup
        .run(&["sync", "--dry-run", "--output", "/dev/null"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(slack.received().len(), 1);

    // The key fixed: a success after a failure is a recovery, told once.
    pendo_key(&setup, common::PENDO_KEY);
    let (back, _) = sync(&setup, &[]).await;
    assert_eq!(back["status"], "succeeded");
    let slack_got = slack.delivered();
    assert_eq!(slack_got.len(), 2);
    let t = text(&slack_got[1]);
    let id = back["id"].as_i64().unwrap();
    assert!(
        t.starts_with("okta-pendo-sync recovered on ")
            && t.contains(&format!("run {id} succeeded (the previous run: failed)")),
        "{t}"
    );
    let json_got = json.delivered();
    assert_eq!(json_got.len(), 2);
    assert_eq!(json_got[1]["event"], "recovered");
    assert_eq!(json_got[1]["run"], recorded(&setup, &back["id"]).await);

    // The next success is a plain one: nothing more.
    let (again, _) = sync(&setup, &[]).await;
    assert_eq!(again["status"], "succeeded");
    assert_eq!(slack.received().len(), 2);
    assert_eq!(json.received().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_run_is_told_each_time() {
    let okta = FakeOkta::start(okta_opts(30)).await;
    let pendo = FakePendo::start(PendoOptions {
        unconfirmed_visitors: HashSet::from(["user3@example.com".to_owned()]),
        ..PendoOptions::default()
    })
    .await;
    let slack = receiver(1, vec![], false).await;
    let setup = setup(&okta, &pendo, &webhooks(&[(&slack, "slack")]));
    let (first, _) = sync(&setup, &[]).await;
    assert_eq!(first["status"], "partial");
    let (second, _) = sync(&setup, &["--full"]).await;
    assert_eq!(second["status"], "partial");
    let got = slack.delivered();
    assert_eq!(got.len(), 2, "{got:?}");
    for (body, run) in got.iter().zip([&first, &second]) {
        let id = run["id"].as_i64().unwrap();
        let t = text(body);
        assert!(
            t.starts_with(&format!("okta-pendo-sync run {id} partial on ")),
            "{t}"
        );
        assert!(t.contains("failed 1,"), "{t}");
        assert!(t.contains(run["message"].as_str().unwrap()), "{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_run_is_told_and_the_success_after_it_is_a_recovery() {
    let okta = FakeOkta::start(okta_opts(200)).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let json = receiver(1, vec![], false).await;
    let slack = receiver(2, vec![], false).await;
    let extra = webhooks(&[(&json, "json"), (&slack, "slack")]) + "[guard]\nsample = 100\n";
    let setup = setup(&okta, &pendo, &extra);
    assert_eq!(sync(&setup, &[]).await.0["status"], "succeeded");

    // A typo in a path: the guard holds the run.
    edit(&setup, "\"profile.title\"", "\"profile.titel\"");
    let (held, _) = sync(&setup, &[]).await;
    assert_eq!(held["status"], "held", "{held}");
    let got = json.delivered();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["event"], "run_finished");
    assert_eq!(got[0]["run"]["status"], "held");
    let t = text(&slack.delivered()[0]).to_owned();
    assert!(t.contains(&format!("run {} held on ", held["id"])), "{t}");

    // Fixed: a held run did not succeed, so the success after it is a recovery.
    edit(&setup, "\"profile.titel\"", "\"profile.title\"");
    let (back, _) = sync(&setup, &[]).await;
    assert_eq!(back["status"], "succeeded", "{back}");
    let got = json.delivered();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1]["event"], "recovered");
    assert_eq!(got[1]["run"]["id"], back["id"]);
    let t = text(&slack.delivered()[1]).to_owned();
    assert!(t.contains("(the previous run: held)"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_sync_is_told_before_it_exits() {
    let okta = FakeOkta::start(OktaOptions {
        page_delay: Duration::from_millis(200),
        ..okta_opts(3_000)
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let slack = receiver(1, vec![], false).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            okta: "page_size = 100",
            pendo: "batch_size = 50",
            sync: "shutdown_grace = \"1s\"",
            extra: &webhooks(&[(&slack, "slack")]),
            ..Parts::default()
        },
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_okta-pendo-sync"))
        .arg("-c")
        .arg(&setup.config)
        .arg("sync")
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut pushed = false;
    for _ in 0..200 {
        if pendo.post_count() >= 1 {
            pushed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pushed, "the run pushed within 20 s");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("sync exits")
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let run = last_run(&setup).await;
    assert_eq!(run["status"], "interrupted");
    let got = slack.delivered();
    assert_eq!(got.len(), 1, "delivered before the process ended");
    let t = text(&got[0]);
    assert!(
        t.starts_with(&format!(
            "okta-pendo-sync run {} interrupted on ",
            run["id"]
        )),
        "{t}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_retried_and_a_4xx_is_not() {
    let okta = FakeOkta::start(okta_opts(10)).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let flaky = receiver(1, vec![500], false).await;
    let refusing = receiver(2, vec![404, 404, 404], false).await;
    let setup = setup(
        &okta,
        &pendo,
        &webhooks(&[(&flaky, "slack"), (&refusing, "json")]),
    );
    pendo_key(&setup, "a-revoked-key");
    let (run, output) = sync(&setup, &[]).await;
    assert_eq!(run["status"], "failed");
    let got = flaky.received();
    assert_eq!(
        got.iter().map(|p| p.status).collect::<Vec<_>>(),
        [500, 200],
        "one 500, then delivered"
    );
    assert_eq!(got[0].body, got[1].body, "the same message again");
    assert!(text(&got[1].body).contains("failed on"));
    // A 404 is final: one try.
    assert_eq!(refusing.received().len(), 1);
    assert!(
        output.contains("notify.webhook[2] (json): the notification was not delivered: the webhook answered HTTP 404"),
        "{output}"
    );
    assert!(
        output.contains("notify.webhook[1] (slack) notified"),
        "{output}"
    );
    assert!(!output.contains(TOKEN), "{output}");
}

/// One sync in this process, as `sync` runs it, with these metrics.
async fn run_in_process(
    settings: &config::Settings,
    state: &Mutex<State>,
    metrics: &Arc<Metrics>,
) -> okta_pendo_sync::report::RunRecord {
    let opts = RunOptions {
        trigger: Trigger::Manual,
        dry_run: false,
        grace: settings.sync.shutdown_grace,
        force_full: false,
        force: false,
    };
    runner::run_and_record(
        settings,
        state,
        metrics,
        opts,
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_stays_down_changes_nothing_but_a_metric() {
    let okta = FakeOkta::start(okta_opts(10)).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let down = receiver(1, vec![], true).await;
    let setup = setup(&okta, &pendo, &webhooks(&[(&down, "slack")]));
    let loaded = config::load(&setup.config).unwrap_or_else(|e| panic!("{e}"));
    let settings = loaded.settings;
    let state = Mutex::new(State::open(&settings.state.path).unwrap());
    let metrics = Arc::new(Metrics::new());

    // A success with nothing to tell sends nothing.
    let ok = run_in_process(&settings, &state, &metrics).await;
    assert_eq!(ok.status, Status::Succeeded);
    assert!(down.received().is_empty());

    // A failed run: told, tried max_attempts times, given up; the record is the run's own.
    pendo_key(&setup, "a-revoked-key");
    let settings = config::load(&setup.config).unwrap().settings;
    let failed = run_in_process(&settings, &state, &metrics).await;
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(down.received().len(), 3, "retry.max_attempts");
    assert!(down.delivered().is_empty());
    let rendered = metrics.render();
    for line in [
        "okta_pendo_sync_notifications_total{outcome=\"failed\"} 1",
        "okta_pendo_sync_notifications_total{outcome=\"sent\"} 0",
    ] {
        assert!(rendered.contains(line), "{line} missing from\n{rendered}");
    }
    drop(state);
    let stored = last_run(&setup).await;
    assert_eq!(stored["status"], "failed");
    assert_eq!(stored["message"], failed.message.as_str());

    // Through the binary: the recovery cannot be delivered, and `sync` still exits 0.
    pendo_key(&setup, common::PENDO_KEY);
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(last_run(&setup).await["status"], "succeeded");
    assert_eq!(down.received().len(), 6);
    assert!(stdout(&out).contains("the notification was not delivered"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_sends_to_every_webhook_and_says_which_failed() {
    let okta = FakeOkta::start(okta_opts(1)).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let slack = receiver(1, vec![], false).await;
    let json = receiver(2, vec![], false).await;
    // The second one from a file.
    let setup = setup(&okta, &pendo, &webhooks(&[(&slack, "slack")]));
    let file = setup.dir.path().join("webhook.url");
    std::fs::write(&file, format!("{}\n", json.url())).unwrap();
    let text_before = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        format!(
            "{text_before}\n[[notify.webhook]]\nurl_file = \"{}\"\nformat = \"json\"\n",
            file.display()
        ),
    )
    .unwrap();

    let out = setup.run(&["notify", "--test"]).await;
    let shown = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let [s] = &slack.delivered()[..] else {
        panic!("{:?}", slack.received());
    };
    assert!(text(s).contains("test message"), "{s}");
    let [j] = &json.delivered()[..] else {
        panic!("{:?}", json.received());
    };
    assert_eq!(j["event"], "test");
    assert_eq!(j["run"], Value::Null);
    assert!(!j["host"].as_str().unwrap().is_empty());
    let (ok, detail) = common::check_line(&stdout(&out), "notify.webhook[2] (json)").unwrap();
    assert!(ok, "{detail}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(common::history(&setup).await.is_empty(), "a test is no run");

    // One receiver gone: exit 1, and the line says which, without its URL.
    drop(json);
    let out = setup.run(&["notify", "--test"]).await;
    let shown = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let (ok, detail) = common::check_line(&stdout(&out), "notify.webhook[2] (json)").unwrap();
    assert!(
        !ok && detail.contains("cannot reach the webhook"),
        "{detail}"
    );
    let (ok, _) = common::check_line(&stdout(&out), "notify.webhook[1] (slack)").unwrap();
    assert!(ok, "{shown}");
    assert!(!shown.contains(TOKEN), "{shown}");

    // No webhook: nothing to test, exit 1.
    let table = format!(
        "[[notify.webhook]]\nurl = \"{}\"\nformat = \"slack\"\n",
        slack.url()
    );
    assert!(text_before.contains(&table));
    std::fs::write(&setup.config, text_before.replace(&table, "")).unwrap();
    let out = setup.run(&["notify", "--test"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("no webhook is configured"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_validates_webhook_urls_without_showing_them() {
    let okta = FakeOkta::start(okta_opts(1)).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let hook = receiver(1, vec![], false).await;
    let setup = setup(&okta, &pendo, &webhooks(&[(&hook, "slack")]));

    // Valid: a line per webhook, nothing sent.
    let out = setup.run(&["check"]).await;
    let shown = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let (ok, detail) = common::check_line(&stdout(&out), "notify.webhook[1]").unwrap();
    assert!(
        ok && detail.starts_with("slack: the URL is valid"),
        "{detail}"
    );
    assert!(hook.received().is_empty(), "check sends nothing");
    assert!(!shown.contains(TOKEN), "{shown}");

    // http:// to a host that is not loopback: refused, by key, the URL not shown.
    let remote = format!("http://hooks.example.com/services/T000/B000/{TOKEN}");
    edit(&setup, &hook.url(), &remote);
    for args in [&["check"][..], &["check", "--offline"][..]] {
        let out = setup.run(args).await;
        let shown = format!("{}{}", stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(78), "{shown}");
        assert!(
            shown.contains(
                "notify.webhook[1].url: uses http://, which is allowed only for loopback hosts"
            ),
            "{shown}"
        );
        assert!(
            !shown.contains(TOKEN) && !shown.contains("hooks.example.com"),
            "{shown}"
        );
    }

    // Other mistakes, each by its key: no URL, an unknown format, a URL that is not one.
    edit(
        &setup,
        &format!("url = \"{remote}\"\nformat = \"slack\""),
        &format!(
            "format = \"teams\"\n\n[[notify.webhook]]\nurl = \"{TOKEN}\"\n\n[[notify.webhook]]\nurl = \"ftp://x/{TOKEN}\"\nunknown = 1"
        ),
    );
    let out = setup.run(&["check", "--offline"]).await;
    let shown = stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{shown}");
    for expected in [
        "notify.webhook[1].url: is required (or notify.webhook[1].url_file)",
        "notify.webhook[1].format: must be \"slack\" or \"json\", not \"teams\"",
        "notify.webhook[2].url: is not a URL",
        "notify.webhook[3].url: must be an https:// URL",
        "notify.webhook[3].unknown: unknown key",
    ] {
        assert!(shown.contains(expected), "{expected} missing from\n{shown}");
    }
    assert!(!shown.contains(TOKEN), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_shows_in_no_output_even_at_debug() {
    let okta = FakeOkta::start(okta_opts(10)).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let inline = receiver(1, vec![503, 500], false).await;
    let from_file = receiver(2, vec![429, 400], false).await;
    let setup = setup(&okta, &pendo, &webhooks(&[(&inline, "slack")]));
    let file = setup.dir.path().join("webhook.url");
    std::fs::write(&file, from_file.url()).unwrap();
    edit(
        &setup,
        "[retry]",
        &format!(
            "[[notify.webhook]]\nurl_file = \"{}\"\nformat = \"json\"\n\n[retry]",
            file.display()
        ),
    );
    edit(&setup, "level = \"info\"", "level = \"debug\"");
    pendo_key(&setup, "a-revoked-key");

    let mut outputs = Vec::new();
    let (run, output) = sync(&setup, &[]).await;
    assert_eq!(run["status"], "failed");
    assert!(output.contains("retrying"), "the retries are logged");
    assert!(
        output.contains("\"level\":\"DEBUG\""),
        "debug lines are on: {output}"
    );
    outputs.push(output);
    // Both delivered in the end (503, 500, then 200; 429 then 400: given up).
    assert_eq!(inline.delivered().len(), 1);
    assert_eq!(from_file.received().len(), 2);
    for args in [
        &["check"][..],
        &["check", "--offline"][..],
        &["notify", "--test"][..],
        &["history", "--json"][..],
        &["history"][..],
    ] {
        let out = setup.run(args).await;
        outputs.push(format!("{}{}", stdout(&out), stderr(&out)));
    }
    let settings = config::load(&setup.config).unwrap().settings;
    outputs.push(format!("{settings:?} {settings:#?}"));
    // The state database (and its write-ahead log) holds no copy either.
    for ext in ["", "-wal"] {
        let path = format!("{}{ext}", setup.state.display());
        if let Ok(bytes) = std::fs::read(&path) {
            outputs.push(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    for (i, o) in outputs.iter().enumerate() {
        assert!(!o.contains(TOKEN), "output {i} shows the URL:\n{o}");
    }
    assert!(outputs[0].contains("notify.webhook[2]"), "{}", outputs[0]);
}

/// A stand-in daemon job that keeps the webhook URLs each run was given.
struct UrlsJob {
    seen: Mutex<Vec<Vec<String>>>,
}

impl okta_pendo_sync::daemon::Job for UrlsJob {
    fn run(
        self: Arc<Self>,
        settings: Arc<config::Settings>,
        _: Trigger,
        _: CancellationToken,
    ) -> okta_pendo_sync::daemon::JobFuture {
        Box::pin(async move {
            use secrecy::ExposeSecret;
            let urls = settings
                .notify
                .iter()
                .map(|w| w.url.expose_secret().to_owned())
                .collect();
            self.seen.lock().unwrap().push(urls);
        })
    }

    fn last_run_started(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        None
    }
}

#[tokio::test(start_paused = true)]
async fn the_daemon_picks_up_new_webhooks_on_sighup_and_a_rotated_url_file() {
    use okta_pendo_sync::daemon::Daemon;
    use okta_pendo_sync::schedule::{Clock, TokioClock};

    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.toml");
    let base = format!(
        "[schedule]\ncron = \"0 * * * * *\"\ncatch_up = false\n[okta]\n\
         org_url = \"http://127.0.0.1:9\"\napi_token = \"t\"\n[pendo]\n\
         base_url = \"http://127.0.0.1:9\"\nintegration_key = \"k\"\n\
         [mapping]\nt = \"profile.title\"\n[state]\npath = \"{}/s.db\"\n",
        dir.path().display()
    );
    std::fs::write(&config_path, &base).unwrap();
    let url_file = dir.path().join("hook.url");
    std::fs::write(&url_file, "https://hooks.example.com/services/FIRST\n").unwrap();

    let settings = config::load(&config_path).unwrap().settings;
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-28T10:00:30Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(start));
    let job = Arc::new(UrlsJob {
        seen: Mutex::new(Vec::new()),
    });
    let (reload, rx) = tokio::sync::mpsc::channel(4);
    let stop = CancellationToken::new();
    let daemon = Daemon::new(
        config_path.clone(),
        settings,
        clock,
        Arc::new(Metrics::new()),
        job.clone(),
    );
    let task = tokio::spawn(daemon.run(rx, stop.clone()));
    let seen = || job.seen.lock().unwrap().clone();

    // 10:01: no webhook.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(seen(), [Vec::<String>::new()]);

    // A webhook added, SIGHUP: the 10:02 run has it.
    std::fs::write(
        &config_path,
        format!(
            "{base}[[notify.webhook]]\nurl_file = \"{}\"\n",
            url_file.display()
        ),
    )
    .unwrap();
    reload.send(()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(seen()[1], ["https://hooks.example.com/services/FIRST"]);

    // The URL file rotated, no signal: the next run has the new URL.
    std::fs::write(&url_file, "https://hooks.example.com/services/SECOND\n").unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        seen().last().unwrap(),
        &["https://hooks.example.com/services/SECOND"]
    );
    stop.cancel();
    task.await.unwrap();
}
