//! The daemon's loop on paused tokio time with a controllable clock: cron forms, daylight
//! saving, overlapping fires, catch-up, reloads. Runs are a stand-in job that records when it
//! started and takes as long as it is told.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use okta_pendo_sync::config::{self, OktaCredentials, Settings};
use okta_pendo_sync::daemon::{Daemon, Job, JobFuture};
use okta_pendo_sync::metrics::Metrics;
use okta_pendo_sync::report::Trigger;
use okta_pendo_sync::schedule::{Clock, TokioClock};
use secrecy::ExposeSecret;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
struct FakeJob {
    clock: Arc<dyn Clock>,
    takes: Duration,
    last: Option<DateTime<Utc>>,
    runs: Mutex<Vec<(Trigger, DateTime<Utc>)>>,
    /// The Okta token each run was given.
    tokens: Mutex<Vec<String>>,
}

impl Job for FakeJob {
    fn run(
        self: Arc<Self>,
        settings: Arc<Settings>,
        trigger: Trigger,
        _: CancellationToken,
    ) -> JobFuture {
        let this = self;
        Box::pin(async move {
            this.runs.lock().unwrap().push((trigger, this.clock.now()));
            if let OktaCredentials::Ssws(token) = &settings.okta.credentials {
                let token = token.expose_secret().to_owned();
                this.tokens.lock().unwrap().push(token);
            }
            tokio::time::sleep(this.takes).await;
        })
    }

    fn last_run_started(&self) -> Option<DateTime<Utc>> {
        self.last
    }
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn write_config(dir: &Path, schedule: &str) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[schedule]\n{schedule}\n[okta]\norg_url = \"http://127.0.0.1:9\"\napi_token = \"t\"\n\
             [pendo]\nbase_url = \"http://127.0.0.1:9\"\nintegration_key = \"k\"\n\
             [mapping]\nt = \"profile.title\"\n[state]\npath = \"{}/s.db\"\n",
            dir.display()
        ),
    )
    .unwrap();
    path
}

struct Harness {
    job: Arc<FakeJob>,
    metrics: Arc<Metrics>,
    reload: mpsc::Sender<()>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    clock: Arc<dyn Clock>,
    _dir: tempfile::TempDir,
    config: PathBuf,
}

impl Harness {
    fn start(now: &str, schedule: &str, takes: Duration, last: Option<&str>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), schedule);
        Harness::start_with(dir, config, now, takes, last)
    }

    /// Like [`Harness::start`], with a config already written in `dir`.
    fn start_with(
        dir: tempfile::TempDir,
        config: PathBuf,
        now: &str,
        takes: Duration,
        last: Option<&str>,
    ) -> Harness {
        let settings = config::load(&config).unwrap().settings;
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(utc(now)));
        let job = Arc::new(FakeJob {
            clock: clock.clone(),
            takes,
            last: last.map(utc),
            runs: Mutex::new(Vec::new()),
            tokens: Mutex::new(Vec::new()),
        });
        let metrics = Arc::new(Metrics::new());
        let (reload, rx) = mpsc::channel(4);
        let stop = CancellationToken::new();
        let daemon = Daemon::new(
            config.clone(),
            settings,
            clock.clone(),
            metrics.clone(),
            job.clone(),
        );
        let task = tokio::spawn(daemon.run(rx, stop.clone()));
        Harness {
            job,
            metrics,
            reload,
            stop,
            task,
            clock,
            _dir: dir,
            config,
        }
    }

    fn runs(&self) -> Vec<(Trigger, String)> {
        self.job
            .runs
            .lock()
            .unwrap()
            .iter()
            .map(|(t, at)| (*t, at.to_rfc3339()))
            .collect()
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

async fn advance(d: Duration) {
    tokio::time::sleep(d).await;
}

#[tokio::test(start_paused = true)]
async fn six_field_expression_fires_on_time() {
    let h = Harness::start(
        "2026-11-28T10:00:00Z",
        "cron = \"*/10 * * * * *\"\ncatch_up = false",
        Duration::from_secs(1),
        None,
    );
    advance(Duration::from_secs(35)).await;
    let runs = h.runs();
    assert_eq!(
        runs,
        [
            (Trigger::Schedule, "2026-11-28T10:00:10+00:00".to_owned()),
            (Trigger::Schedule, "2026-11-28T10:00:20+00:00".to_owned()),
            (Trigger::Schedule, "2026-11-28T10:00:30+00:00".to_owned()),
        ]
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn five_field_expression_and_a_week_of_fires() {
    let h = Harness::start(
        "2026-11-28T00:00:00Z",
        "cron = \"30 6 * * 1-5\"\ncatch_up = false",
        Duration::from_secs(60),
        None,
    );
    advance(Duration::from_secs(7 * 24 * 3600)).await;
    let days: Vec<String> = h.runs().into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        days,
        [
            "2026-11-30T06:30:00+00:00",
            "2026-12-01T06:30:00+00:00",
            "2026-12-02T06:30:00+00:00",
            "2026-12-03T06:30:00+00:00",
            "2026-12-04T06:30:00+00:00",
        ]
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn berlin_daylight_saving_without_a_restart() {
    let h = Harness::start(
        "2026-03-27T12:00:00Z",
        "cron = \"0 6 * * *\"\ntimezone = \"Europe/Berlin\"\ncatch_up = false",
        Duration::from_secs(60),
        None,
    );
    advance(Duration::from_secs(4 * 24 * 3600)).await;
    let got: Vec<String> = h.runs().into_iter().map(|(_, t)| t).collect();
    // 06:00 CET is 05:00 UTC; from 29 March, 06:00 CEST is 04:00 UTC.
    assert_eq!(
        got,
        [
            "2026-03-28T05:00:00+00:00",
            "2026-03-29T04:00:00+00:00",
            "2026-03-30T04:00:00+00:00",
            "2026-03-31T04:00:00+00:00",
        ]
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn new_york_daylight_saving_without_a_restart() {
    let h = Harness::start(
        "2026-10-30T12:00:00Z",
        "cron = \"0 0 6 * * *\"\ntimezone = \"America/New_York\"\ncatch_up = false",
        Duration::from_secs(60),
        None,
    );
    advance(Duration::from_secs(4 * 24 * 3600)).await;
    let got: Vec<String> = h.runs().into_iter().map(|(_, t)| t).collect();
    // 06:00 EDT is 10:00 UTC; from 1 November, 06:00 EST is 11:00 UTC.
    assert_eq!(
        got,
        [
            "2026-10-31T10:00:00+00:00",
            "2026-11-01T11:00:00+00:00",
            "2026-11-02T11:00:00+00:00",
            "2026-11-03T11:00:00+00:00",
        ]
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn started_in_a_repeated_hour_it_runs_once_per_fire_and_stops() {
    // 2026-11-01T06:10Z is 01:10 EST in New York, the second pass of 01:00-02:00; the 01:30
    // fire was at 05:30Z (01:30 EDT). Runs take no time, so fires in the past would start them
    // back to back.
    for (now, zone, cron, fires) in [
        (
            "2026-11-01T06:10:00Z",
            "America/New_York",
            "30 1 * * *",
            ["2026-11-02T06:30:00+00:00", "2026-11-03T06:30:00+00:00"],
        ),
        (
            "2026-10-25T01:10:00Z",
            "Europe/Berlin",
            "30 2 * * *",
            ["2026-10-26T01:30:00+00:00", "2026-10-27T01:30:00+00:00"],
        ),
    ] {
        let h = Harness::start(
            now,
            &format!("cron = \"{cron}\"\ntimezone = \"{zone}\"\ncatch_up = false"),
            Duration::ZERO,
            None,
        );
        // Turns of the runtime without time passing: nothing is due.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(
            h.runs().is_empty(),
            "{zone}: {} runs before any fire was due",
            h.runs().len()
        );
        advance(Duration::from_secs(2 * 24 * 3600 + 3600)).await;
        let got: Vec<String> = h.runs().into_iter().map(|(_, t)| t).collect();
        assert_eq!(got, fires, "{zone}");
        let text = h.metrics.render();
        assert!(
            text.contains("okta_pendo_sync_skipped_fires_total 0"),
            "{text}"
        );
        // A stop is seen at once.
        let stopped_at = tokio::time::Instant::now();
        h.stop().await;
        assert_eq!(stopped_at.elapsed(), Duration::ZERO);
    }
}

#[tokio::test(start_paused = true)]
async fn a_fire_in_a_repeated_hour_runs_once() {
    let h = Harness::start(
        "2026-11-01T04:00:00Z",
        "cron = \"*/30 1 * * *\"\ntimezone = \"America/New_York\"\ncatch_up = false",
        Duration::from_secs(1),
        None,
    );
    advance(Duration::from_secs(4 * 3600)).await;
    let got: Vec<String> = h.runs().into_iter().map(|(_, t)| t).collect();
    // 01:00 and 01:30 EDT; not again at 01:00 and 01:30 EST.
    assert_eq!(
        got,
        ["2026-11-01T05:00:00+00:00", "2026-11-01T05:30:00+00:00"]
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_fire_during_a_run_is_skipped_and_counted() {
    // Every 10 s, but each run takes 25 s.
    let h = Harness::start(
        "2026-11-28T10:00:00Z",
        "cron = \"*/10 * * * * *\"\ncatch_up = false",
        Duration::from_secs(25),
        None,
    );
    advance(Duration::from_secs(65)).await;
    let got: Vec<String> = h.runs().into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        got,
        ["2026-11-28T10:00:10+00:00", "2026-11-28T10:00:40+00:00"]
    );
    let text = h.metrics.render();
    assert!(
        text.contains("okta_pendo_sync_skipped_fires_total 4"),
        "{text}"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn catch_up_after_downtime_and_not_otherwise() {
    // Weekly on Mondays 06:00; it is Saturday; the last run was two Mondays ago.
    let h = Harness::start(
        "2026-11-28T12:00:00Z",
        "",
        Duration::from_secs(60),
        Some("2026-11-16T06:00:05Z"),
    );
    advance(Duration::from_secs(10)).await;
    assert_eq!(
        h.runs(),
        [(Trigger::Schedule, "2026-11-28T12:00:00+00:00".to_owned())]
    );
    h.stop().await;

    // The last run was this Monday: nothing was missed.
    let h = Harness::start(
        "2026-11-28T12:00:00Z",
        "",
        Duration::from_secs(60),
        Some("2026-11-23T06:00:05Z"),
    );
    advance(Duration::from_secs(10)).await;
    assert!(h.runs().is_empty());
    // ... and the next fire is Monday 06:00.
    advance(Duration::from_secs(2 * 24 * 3600)).await;
    assert_eq!(
        h.runs(),
        [(Trigger::Schedule, "2026-11-30T06:00:00+00:00".to_owned())]
    );
    h.stop().await;

    // catch_up = false: nothing at start even after a long downtime; run_on_start runs.
    let h = Harness::start(
        "2026-11-28T12:00:00Z",
        "catch_up = false",
        Duration::from_secs(1),
        Some("2026-01-01T00:00:00Z"),
    );
    advance(Duration::from_secs(10)).await;
    assert!(h.runs().is_empty());
    h.stop().await;
    let h = Harness::start(
        "2026-11-28T12:00:00Z",
        "run_on_start = true",
        Duration::from_secs(1),
        None,
    );
    advance(Duration::from_secs(10)).await;
    assert_eq!(
        h.runs(),
        [(Trigger::Startup, "2026-11-28T12:00:00+00:00".to_owned())]
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn sighup_and_edited_files_reload_and_bad_ones_are_kept_out() {
    let h = Harness::start(
        "2026-11-28T10:00:00Z",
        "cron = \"0 0 * * * *\"\ncatch_up = false",
        Duration::from_secs(1),
        None,
    );
    advance(Duration::from_secs(60)).await;
    // A bad edit, signalled: logged, the hourly schedule stays.
    let dir = h.config.parent().unwrap().to_owned();
    std::fs::write(&h.config, "[schedule]\ncron = \"not a cron\"\n").unwrap();
    h.reload.send(()).await.unwrap();
    advance(Duration::from_secs(3600)).await;
    assert_eq!(h.runs().len(), 1, "{:?}", h.runs());
    assert_eq!(h.runs()[0].1, "2026-11-28T11:00:00+00:00");
    // A good edit, not signalled: picked up within a minute; every 10 minutes from then.
    write_config(&dir, "cron = \"0 */10 * * * *\"\ncatch_up = false");
    advance(Duration::from_secs(30 * 60)).await;
    let got: Vec<String> = h.runs().into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        got,
        [
            "2026-11-28T11:00:00+00:00",
            "2026-11-28T11:10:00+00:00",
            "2026-11-28T11:20:00+00:00",
            "2026-11-28T11:30:00+00:00",
        ]
    );
    let now = h.clock.now();
    assert!(h.metrics.since_heartbeat(now).unwrap() <= 60);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_edit_in_the_last_minute_before_a_fire_does_not_lose_it() {
    let h = Harness::start(
        "2026-11-28T10:58:00Z",
        "cron = \"0 0 * * * *\"\ncatch_up = false",
        Duration::from_secs(1),
        None,
    );
    // 30 s before the 11:00 fire, a harmless edit (a comment) and a SIGHUP.
    advance(Duration::from_secs(90)).await;
    let text = std::fs::read_to_string(&h.config).unwrap();
    std::fs::write(&h.config, format!("# edited\n{text}")).unwrap();
    h.reload.send(()).await.unwrap();
    advance(Duration::from_secs(3600 + 60)).await;
    let got: Vec<String> = h.runs().into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        got,
        ["2026-11-28T11:00:00+00:00", "2026-11-28T12:00:00+00:00"]
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_rotated_secret_file_is_picked_up_and_an_empty_one_kept_out() {
    let logs = crate::logs::capture();
    let log_text = || logs.text();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("okta.token");
    std::fs::write(&token, "first-secret-token\n").unwrap();
    let config = write_config(dir.path(), "cron = \"0 */10 * * * *\"\ncatch_up = false");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "api_token = \"t\"",
        &format!("api_token_file = \"{}\"", token.display()),
    );
    std::fs::write(&config, text).unwrap();
    let h = Harness::start_with(
        dir,
        config,
        "2026-11-28T10:00:30Z",
        Duration::from_secs(1),
        None,
    );
    let tokens = || h.job.tokens.lock().unwrap().clone();
    advance(Duration::from_secs(10 * 60)).await;
    assert_eq!(tokens(), ["first-secret-token"]);

    // Rotated: noticed within a minute, used by the next run.
    std::fs::write(&token, "second-secret-token\n").unwrap();
    advance(Duration::from_secs(60)).await;
    assert!(
        log_text().contains("configuration reloaded (the file of okta.api_token_file changed)"),
        "{}",
        log_text()
    );
    advance(Duration::from_secs(9 * 60)).await;
    assert_eq!(tokens(), ["first-secret-token", "second-secret-token"]);

    // Rotated to an empty file: an error, and the running token kept.
    std::fs::write(&token, "").unwrap();
    advance(Duration::from_secs(60)).await;
    let logged = log_text();
    assert!(
        logged.contains("configuration not reloaded (the file of okta.api_token_file changed)")
            && logged.contains("is empty"),
        "{logged}"
    );
    advance(Duration::from_secs(9 * 60)).await;
    assert_eq!(
        tokens(),
        [
            "first-secret-token",
            "second-secret-token",
            "second-secret-token"
        ]
    );
    // Logged once, not every minute while the file stays empty.
    assert_eq!(
        log_text().matches("configuration not reloaded").count(),
        1,
        "{}",
        log_text()
    );

    // Filled again: picked up before the next run even without a minute to spare.
    advance(Duration::from_secs(9 * 60)).await;
    std::fs::write(&token, "third-secret-token").unwrap();
    advance(Duration::from_secs(60)).await;
    assert_eq!(tokens().last().unwrap(), "third-secret-token");
    assert!(!log_text().contains("secret-token"), "{}", log_text());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn stop_waits_for_the_running_sync() {
    let h = Harness::start(
        "2026-11-28T10:00:00Z",
        "run_on_start = true",
        Duration::from_secs(30),
        None,
    );
    advance(Duration::from_secs(5)).await;
    let started = tokio::time::Instant::now();
    h.stop.cancel();
    h.task.await.unwrap();
    // The stand-in ignores cancellation, so the daemon waited the rest of its 30 s.
    assert_eq!(started.elapsed(), Duration::from_secs(25));
}

use crate::common;

use common::{Parts, Setup};
use okta_pendo_testkit::{FakeOkta, FakePendo, OktaOptions, PendoOptions, UserSource};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get(url: &str) -> Option<(u16, String)> {
    let r = reqwest::get(url).await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

fn kill(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Polls `check` every 100 ms for at most `secs` seconds.
async fn eventually<F: FnMut() -> Fut, Fut: Future<Output = bool>>(
    secs: u64,
    mut check: F,
) -> bool {
    for _ in 0..secs * 10 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_serves_metrics_reloads_and_stops_cleanly() {
    let okta = FakeOkta::start(OktaOptions {
        users: UserSource::Generated(300),
        rate_limit: 100_000,
        ..OktaOptions::default()
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let port = free_port();
    let logs = tempfile::tempdir().unwrap();
    let extra = format!(
        "[schedule]\ncron = \"0 0 6 1 1 *\"\nrun_on_start = true\n[server]\nlisten = \"127.0.0.1:{port}\"\n"
    );
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            extra: &extra,
            sync: "shutdown_grace = \"3s\"",
            ..Parts::default()
        },
    );
    // Log files too.
    let text = std::fs::read_to_string(&setup.config).unwrap().replace(
        "[log]\n",
        &format!("[log]\ndirectory = \"{}\"\n", logs.path().display()),
    );
    std::fs::write(&setup.config, &text).unwrap();

    let mut child = setup.spawn("run");
    let pid = child.id().unwrap();
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let ran = eventually(20, || async {
        get(&metrics).await.is_some_and(|(_, body)| {
            body.contains("okta_pendo_sync_runs_total{status=\"succeeded\"} 1")
        })
    })
    .await;
    assert!(ran, "the start-up run shows in /metrics");
    let (status, body) = get(&metrics).await.unwrap();
    assert_eq!(status, 200);
    for line in [
        "okta_pendo_sync_last_run_status{status=\"succeeded\"} 1",
        "okta_pendo_sync_last_run_users{outcome=\"read\"} 300",
        "okta_pendo_sync_last_run_users{outcome=\"updated\"} 300",
        "okta_pendo_sync_requests_total{service=\"okta\",status=\"200\"} 2",
        "okta_pendo_sync_requests_total{service=\"pendo\",status=\"200\"} 1",
    ] {
        assert!(body.contains(line), "{line} missing from\n{body}");
    }
    assert!(body.contains("okta_pendo_sync_next_run_timestamp_seconds"));
    assert_eq!(
        get(&format!("http://127.0.0.1:{port}/healthz"))
            .await
            .unwrap()
            .0,
        200
    );
    let runs = common::history(&setup).await;
    assert_eq!(runs[0]["trigger"], "startup");

    // SIGHUP with a broken file: kept out; with a good one: reloaded.
    std::fs::write(&setup.config, "[okta]\nnot_a_key = 1\n").unwrap();
    kill(pid, "HUP");
    let log_text = || {
        std::fs::read_dir(logs.path())
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
            .collect::<String>()
    };
    assert!(
        eventually(10, || async {
            log_text().contains("configuration not reloaded (SIGHUP)")
        })
        .await,
        "{}",
        log_text()
    );
    std::fs::write(&setup.config, &text).unwrap();
    kill(pid, "HUP");
    assert!(
        eventually(10, || async {
            log_text().contains("configuration reloaded (SIGHUP)")
        })
        .await
    );

    // SIGTERM: a clean exit.
    kill(pid, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits within the grace period")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(log_text().contains("next run at"));
    assert!(log_text().contains("stopped"));
    let names: Vec<String> = std::fs::read_dir(logs.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("okta-pendo-sync.") && n.ends_with(".log")),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_a_long_run_records_it_interrupted_and_exits_0() {
    let okta = FakeOkta::start(OktaOptions {
        users: UserSource::Generated(5_000),
        rate_limit: 100_000,
        page_delay: Duration::from_millis(200),
        ..OktaOptions::default()
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            okta: "page_size = 100",
            pendo: "batch_size = 50",
            sync: "shutdown_grace = \"2s\"",
            extra: "[schedule]\nrun_on_start = true\n",
            ..Parts::default()
        },
    );
    let mut child = setup.spawn("run");
    assert!(eventually(20, || async { pendo.post_count() >= 2 }).await);
    let signalled = std::time::Instant::now();
    kill(child.id().unwrap(), "TERM");
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "the daemon exits 0 after an interrupted run"
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "{:?}",
        signalled.elapsed()
    );
    let run = common::last_run(&setup).await;
    assert_eq!(run["status"], "interrupted");
    assert_eq!(run["trigger"], "startup");
    assert!(run["okta_users_read"].as_u64().unwrap() < 5_000);
}
