//! The daemon (`okta-pendo-sync run`): syncs on the schedule until SIGTERM/SIGINT.
//!
//! One loop, one fire at a time: compute the next fire in the schedule's zone, sleep toward it
//! in slices of at most a minute (noticing a changed config file, SIGHUP, a finished run or a
//! stop on the way), then start the run unless one is still going (that fire is skipped, logged
//! and counted). A new configuration, from SIGHUP, an edited file or a rotated secret file, is
//! validated like at start; a bad one is logged with its errors and the running one kept. Runs themselves are a
//! [`Job`], so tests can drive the loop on paused time with a stand-in.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Settings};
use crate::metrics::Metrics;
use crate::report::Trigger;
use crate::schedule::{Clock, CronSchedule, sleep_slice};
use crate::state::State;

/// The longest the loop sleeps before looking around again.
pub const SLICE: Duration = Duration::from_secs(60);

/// A running [`Job`].
pub type JobFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// One run of the sync, as the daemon starts it.
pub trait Job: Send + Sync + 'static {
    /// Runs (and records) one sync with these settings. Cancelling `cancel` interrupts it.
    fn run(
        self: Arc<Self>,
        settings: Arc<Settings>,
        trigger: Trigger,
        cancel: CancellationToken,
    ) -> JobFuture;

    /// When the last run that got through started (succeeded or partial, not a dry run), for
    /// catch-up: an interrupted or failed run does not count as done.
    fn last_run_started(&self) -> Option<DateTime<Utc>>;
}

/// The daemon's state between fires.
pub struct Daemon {
    config_path: PathBuf,
    settings: Arc<Settings>,
    /// What the config file and its secret files held when last read (loaded or rejected),
    /// to notice an edit or a rotation.
    sources: Sources,
    /// Seeds the digests with a per-process random value: a digest of a secret file says
    /// nothing about the secret outside this process.
    seed: u64,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    job: Arc<dyn Job>,
}

impl Daemon {
    pub fn new(
        config_path: PathBuf,
        settings: Settings,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        job: Arc<dyn Job>,
    ) -> Self {
        let seed = fastrand::u64(..);
        let sources = Sources::read(&config_path, seed);
        Daemon {
            config_path,
            settings: Arc::new(settings),
            sources,
            seed,
            clock,
            metrics,
            job,
        }
    }

    /// Runs until `stop` fires; then lets a running sync finish its grace period and returns.
    pub async fn run(mut self, mut reload: mpsc::Receiver<()>, stop: CancellationToken) {
        self.metrics.beat(self.clock.now());
        self.metrics.started(self.clock.now());
        self.show_interval();
        let sched = &self.settings.schedule;
        tracing::info!(
            schedule = sched.cron.expr(),
            timezone = %sched.cron.zone(),
            "started"
        );
        let mut running = self.start_up(&stop);
        let mut last_fire: Option<DateTime<Utc>> = None;
        loop {
            // Never the same fire twice, even if the clock steps back.
            let from = match last_fire {
                Some(f) if f > self.clock.now() => f,
                _ => self.clock.now(),
            };
            let next = self.settings.schedule.cron.next_after(from);
            self.metrics.next_run(next);
            match next {
                Some(t) => tracing::info!(
                    next_run = %t.to_rfc3339(),
                    "next run at {}",
                    self.settings.schedule.cron.local(t)
                ),
                None => tracing::warn!("the schedule has no next fire time"),
            }
            match self.wait_for(next, &mut reload, &mut running, &stop).await {
                Wait::Stop => break,
                Wait::Again => continue,
                Wait::Due => {}
            }
            last_fire = next;
            // The fire. Each one gives the runtime a turn and looks at `stop` first, so that
            // fires coming back to back could never keep a stop from being seen.
            tokio::task::yield_now().await;
            if stop.is_cancelled() {
                break;
            }
            self.fire(&mut running, &stop);
        }

        if let Some(handle) = running.take() {
            tracing::info!("waiting for the running sync to finish its grace period");
            if let Err(e) = handle.await {
                tracing::error!("the running sync ended abnormally: {e}");
            }
        }
        tracing::info!("stopped");
    }

    /// The run at start, if `run_on_start` asks for one or a scheduled run was missed.
    fn start_up(&self, stop: &CancellationToken) -> Option<JoinHandle<()>> {
        let sched = &self.settings.schedule;
        if sched.run_on_start {
            tracing::info!("running once at start (schedule.run_on_start)");
            return Some(self.start(Trigger::Startup, stop));
        }
        if !sched.catch_up {
            return None;
        }
        let why = self.missed_run()?;
        tracing::info!("{why}: running once now (schedule.catch_up)");
        Some(self.start(Trigger::Schedule, stop))
    }

    /// Sleeps toward the fire at `next`, looking around at least once a minute: a stop, a
    /// reload (SIGHUP, an edited file, a rotated secret), a finished run. A reload recomputes
    /// the fire unless it is already due: then it fires with the new settings.
    async fn wait_for(
        &mut self,
        next: Option<DateTime<Utc>>,
        reload: &mut mpsc::Receiver<()>,
        running: &mut Option<JoinHandle<()>>,
        stop: &CancellationToken,
    ) -> Wait {
        let due = |clock: &dyn Clock| next.is_some_and(|t| clock.now() >= t);
        loop {
            let now = self.clock.now();
            self.metrics.beat(now);
            if due(&*self.clock) {
                return Wait::Due;
            }
            let slice = next.map_or(SLICE, |t| sleep_slice(now, t, SLICE));
            let why = tokio::select! {
                biased;
                () = stop.cancelled() => return Wait::Stop,
                Some(()) = reload.recv() => Some("SIGHUP".to_owned()),
                () = finished(running) => {
                    if let Some(t) = next {
                        let local = self.settings.schedule.cron.local(t);
                        tracing::info!(next_run = %t.to_rfc3339(), "run finished; next run at {local}");
                    }
                    None
                }
                () = tokio::time::sleep(slice) => self.sources_changed(),
            };
            if let Some(why) = why {
                self.reload(&why);
                if !due(&*self.clock) {
                    return Wait::Again;
                }
            }
        }
    }

    /// A fire: starts a run, unless the last one is still going (then the fire is skipped).
    fn fire(&mut self, running: &mut Option<JoinHandle<()>>, stop: &CancellationToken) {
        // An edited file or a rotated secret applies from this run on.
        if let Some(why) = self.sources_changed() {
            self.reload(&why);
        }
        if running.as_ref().is_some_and(|h| !h.is_finished()) {
            tracing::warn!(
                "a scheduled run is due but the previous one is still going: skipping this one"
            );
            self.metrics.skipped_fire();
        } else {
            *running = Some(self.start(Trigger::Schedule, stop));
        }
    }

    fn start(&self, trigger: Trigger, stop: &CancellationToken) -> JoinHandle<()> {
        tokio::spawn(
            self.job
                .clone()
                .run(self.settings.clone(), trigger, stop.child_token()),
        )
    }

    /// Why a run is due at start, if one is: none recorded, or the last one older than the
    /// schedule's previous fire.
    fn missed_run(&self) -> Option<String> {
        let now = self.clock.now();
        let cron = &self.settings.schedule.cron;
        let previous = cron.previous_at_or_before(now)?;
        match self.job.last_run_started() {
            None => Some("no run is recorded yet".to_owned()),
            Some(last) if last < previous => Some(format!(
                "a scheduled run was missed while the daemon was down (due {}, last run {})",
                cron.local(previous),
                cron.local(last)
            )),
            Some(_) => None,
        }
    }

    /// Puts the schedule's interval in the metrics, for the alert on a success overdue.
    fn show_interval(&self) {
        let gap = longest_gap(&self.settings.schedule.cron, self.clock.now());
        self.metrics.schedule_interval(gap);
    }

    /// What changed since the config was last read, if anything: the config file, or a
    /// secret file it names (by key; never what it holds).
    fn sources_changed(&self) -> Option<String> {
        let now = Sources::read(&self.config_path, self.seed);
        if now.config != self.sources.config {
            return Some("the config file changed".to_owned());
        }
        if now.secrets == self.sources.secrets {
            return None;
        }
        let key = now
            .secrets
            .iter()
            .find(|s| !self.sources.secrets.contains(s))
            .or_else(|| {
                self.sources
                    .secrets
                    .iter()
                    .find(|s| !now.secrets.contains(s))
            })
            .map_or("a secret", |(key, _, _)| *key);
        Some(format!("the file of {key} changed"))
    }

    /// Loads the config again; a valid one replaces the running one, a bad one is logged and
    /// the running one kept.
    fn reload(&mut self, why: &str) {
        self.sources = Sources::read(&self.config_path, self.seed);
        match config::load(&self.config_path) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    tracing::warn!("{w}");
                }
                let new = loaded.settings;
                let restart = new.needs_restart(&self.settings);
                if !restart.is_empty() {
                    tracing::warn!(
                        "{} changed: that takes a restart; the rest applies from the next run",
                        restart.join(", ")
                    );
                }
                tracing::info!("configuration reloaded ({why}); it applies from the next run");
                self.settings = Arc::new(new);
                self.show_interval();
            }
            Err(e) => {
                tracing::error!("configuration not reloaded ({why}); keeping the running one. {e}");
            }
        }
    }
}

/// What waiting for a fire came to.
enum Wait {
    /// The fire is due.
    Due,
    /// The settings changed: compute the fire again.
    Again,
    /// Stop the daemon.
    Stop,
}

/// How far ahead [`longest_gap`] looks: a week holds every gap of a schedule that repeats weekly.
const GAP_SPAN: chrono::TimeDelta = chrono::TimeDelta::weeks(1);
/// The most fires [`longest_gap`] looks at: a week of fires once a minute.
const GAP_FIRES: usize = 7 * 24 * 60;

/// The longest gap between consecutive fires after `from`, over a week of fires (so a
/// weekdays-only schedule counts its weekend) but at most [`GAP_FIRES`] of them, and at least
/// two gaps (a monthly schedule's short February is not all it sees); `None` when the
/// schedule has no two fires left.
fn longest_gap(cron: &CronSchedule, from: DateTime<Utc>) -> Option<chrono::TimeDelta> {
    let first = cron.next_after(from)?;
    let mut prev = first;
    let mut longest: Option<chrono::TimeDelta> = None;
    for gaps in 1..=GAP_FIRES {
        let Some(next) = cron.next_after(prev) else {
            break;
        };
        let gap = next - prev;
        longest = Some(longest.map_or(gap, |l| l.max(gap)));
        if gaps >= 2 && next - first > GAP_SPAN {
            break;
        }
        prev = next;
    }
    longest
}

/// Resolves when the running job (if any) finishes, and clears it; pending forever otherwise.
async fn finished(running: &mut Option<JoinHandle<()>>) {
    match running {
        Some(handle) => {
            if let Err(e) = handle.await {
                tracing::error!("the sync ended abnormally: {e}");
            }
            *running = None;
        }
        None => std::future::pending().await,
    }
}

/// Digests of the config file and of each secret file it names, with its key.
#[derive(PartialEq)]
struct Sources {
    config: Option<u64>,
    secrets: Vec<(&'static str, PathBuf, Option<u64>)>,
}

impl Sources {
    fn read(config_path: &Path, seed: u64) -> Sources {
        Sources {
            config: digest(config_path, seed),
            secrets: config::secret_files(config_path)
                .into_iter()
                .map(|(key, path)| {
                    // Read like the loader reads it: a regular file, size-capped, so a secret
                    // path turned into `/dev/zero` or a FIFO cannot exhaust memory or block.
                    let d = config::read_secret_file(&path).ok().map(|secret| {
                        xxhash_rust::xxh3::xxh3_64_with_seed(
                            secret.expose_secret().as_bytes(),
                            seed,
                        )
                    });
                    (key, path, d)
                })
                .collect(),
        }
    }
}

/// A seeded digest of the file's bytes (`None` when unreadable).
fn digest(path: &Path, seed: u64) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    Some(xxhash_rust::xxh3::xxh3_64_with_seed(&bytes, seed))
}

/// The real job: a sync with fresh clients, stored in the state database and counted in the
/// metrics.
pub struct SyncJob {
    state: Mutex<State>,
    metrics: Arc<Metrics>,
}

impl SyncJob {
    pub fn new(state: State, metrics: Arc<Metrics>) -> Arc<Self> {
        // Show the last run in the metrics from the start, not only after the next one.
        if let Ok(Some(last)) = state.last_run() {
            metrics.run_finished(&last);
        }
        // And when the last success was, so a restart does not reset it.
        if let Ok(Some(ok)) = state.last_succeeded_run() {
            metrics.succeeded_at(ok.finished_at);
        }
        Arc::new(SyncJob {
            state: Mutex::new(state),
            metrics,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Job for SyncJob {
    fn run(
        self: Arc<Self>,
        settings: Arc<Settings>,
        trigger: Trigger,
        cancel: CancellationToken,
    ) -> JobFuture {
        Box::pin(async move {
            let opts = crate::sync::RunOptions {
                trigger,
                dry_run: false,
                grace: settings.sync.shutdown_grace,
                force_full: false,
                force: false,
            };
            // A record that could not be stored is logged with the run's summary; the daemon
            // goes on to the next fire.
            let _ = crate::runner::run_and_record(
                &settings,
                &self.state,
                &self.metrics,
                opts,
                None,
                cancel,
            )
            .await;
        })
    }

    fn last_run_started(&self) -> Option<DateTime<Utc>> {
        self.state()
            .last_completed_run()
            .ok()
            .flatten()
            .map(|r| r.started_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn the_schedule_interval_is_its_longest_gap() {
        // From a Wednesday.
        let from = utc("2026-01-07T12:00:00Z");
        let gap = |expr: &str, tz: &str| {
            longest_gap(&CronSchedule::parse(expr, tz).unwrap(), from).map(|g| g.num_seconds())
        };
        let hour = 3_600;
        let day = 24 * hour;
        assert_eq!(gap("@hourly", "UTC"), Some(hour));
        assert_eq!(gap("0 6 * * *", "UTC"), Some(day));
        assert_eq!(gap("0 0 6 * * Mon", "UTC"), Some(7 * day));
        // Weekdays only: the weekend is the longest gap, not the next day.
        assert_eq!(gap("0 6 * * Mon-Fri", "UTC"), Some(3 * day));
        assert_eq!(
            gap("*/5 9-17 * * Mon-Fri", "UTC"),
            Some(2 * day + 15 * hour + 5 * 60)
        );
        // Twice a week, uneven: the longer gap.
        assert_eq!(gap("0 6 * * Mon,Wed", "UTC"), Some(5 * day));
        // Monthly: two gaps, February's (28 days) and March's.
        assert_eq!(gap("0 6 1 * *", "UTC"), Some(31 * day));
        // Every second: the look-ahead is bounded, and the gap is still right.
        assert_eq!(gap("* * * * * *", "UTC"), Some(1));
        // Across the fall-back night in Berlin, a daily 06:00 is 25 hours apart once.
        let fall = utc("2026-10-22T12:00:00Z");
        let berlin = CronSchedule::parse("0 6 * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            longest_gap(&berlin, fall).map(|g| g.num_seconds()),
            Some(25 * hour)
        );
    }

    #[test]
    fn a_restart_keeps_the_last_success_from_the_history() {
        use crate::report::{Mode, RunRecord, Status};
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::open(&dir.path().join("s.db")).unwrap();
        let record = |status, mode, finished: &str| {
            let mut r = RunRecord::not_started(Trigger::Schedule, "x".into());
            r.status = status;
            r.mode = mode;
            r.finished_at = utc(finished);
            r.started_at = r.finished_at;
            r
        };
        let scraped = |m: &Metrics| {
            m.render()
                .lines()
                .find_map(|l| l.strip_prefix("okta_pendo_sync_last_success_timestamp_seconds "))
                .unwrap()
                .to_owned()
        };
        // A brand-new install: none.
        let metrics = Arc::new(Metrics::new());
        let _job = SyncJob::new(
            State::open(&dir.path().join("new.db")).unwrap(),
            metrics.clone(),
        );
        assert_eq!(scraped(&metrics), "0.0");

        for r in [
            record(Status::Succeeded, Mode::Full, "2026-01-05T06:00:00Z"),
            record(Status::Succeeded, Mode::Incremental, "2026-01-06T06:00:00Z"),
            record(Status::Failed, Mode::Incremental, "2026-01-07T06:00:00Z"),
            record(Status::Succeeded, Mode::DryRun, "2026-01-07T07:00:00Z"),
            record(Status::Partial, Mode::Full, "2026-01-08T06:00:00Z"),
        ] {
            state.insert_run(&r).unwrap();
        }
        let metrics = Arc::new(Metrics::new());
        let _job = SyncJob::new(state, metrics.clone());
        let text = metrics.render();
        assert_eq!(
            scraped(&metrics),
            format!("{}.0", utc("2026-01-06T06:00:00Z").timestamp())
        );
        assert!(text.contains("okta_pendo_sync_last_run_status{status=\"partial\"} 1"));
    }

    #[test]
    fn a_secret_path_turned_into_a_device_or_a_fifo_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("token.fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[okta]\napi_token_file = \"/dev/zero\"\n[pendo]\nintegration_key_file = \"{}\"\n",
                fifo.display()
            ),
        )
        .unwrap();
        // Returns (neither blocks on the FIFO nor reads /dev/zero without end), with no
        // digest for either.
        let sources = Sources::read(&config, 7);
        assert!(sources.config.is_some());
        assert_eq!(sources.secrets.len(), 2);
        assert!(sources.secrets.iter().all(|(_, _, d)| d.is_none()));
    }
}
