//! The daemon's metrics, in Prometheus form (`GET /metrics`): what the last run did, when the
//! next one is, and how the two services answered.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::report::{Counts, Mode, RunRecord, Status};

/// The service a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Okta,
    Pendo,
}

impl Service {
    fn as_str(self) -> &'static str {
        match self {
            Service::Okta => "okta",
            Service::Pendo => "pendo",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: &'static str,
    /// The HTTP status, or `error` when no response came.
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UsersLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotifyLabels {
    outcome: &'static str,
}

/// Every metric, and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    rate_limited: Family<ServiceLabels, Counter>,
    retries: Family<ServiceLabels, Counter>,
    runs: Family<StatusLabels, Counter>,
    skipped_fires: Counter,
    last_run_status: Family<StatusLabels, Gauge>,
    last_run_users: Family<UsersLabels, Gauge>,
    last_run_start: Gauge<f64, AtomicU64>,
    last_run_end: Gauge<f64, AtomicU64>,
    last_run_duration: Gauge<f64, AtomicU64>,
    /// When the last succeeded run (not a dry run) finished; 0 when none is known.
    last_success: Gauge<f64, AtomicU64>,
    /// When the daemon started.
    start_time: Gauge<f64, AtomicU64>,
    /// The longest gap between fires of the schedule; 0 when it has no next fire.
    schedule_interval: Gauge,
    next_run: Gauge<f64, AtomicU64>,
    run_in_progress: Gauge,
    current_run_start: Gauge<f64, AtomicU64>,
    notifications: Family<NotifyLabels, Counter>,
    /// When the scheduler last showed it was alive (Unix seconds), for `/healthz`.
    heartbeat: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("okta_pendo_sync");
        let m = Metrics {
            requests: Family::default(),
            rate_limited: Family::default(),
            retries: Family::default(),
            runs: Family::default(),
            skipped_fires: Counter::default(),
            last_run_status: Family::default(),
            last_run_users: Family::default(),
            last_run_start: Gauge::default(),
            last_run_end: Gauge::default(),
            last_run_duration: Gauge::default(),
            last_success: Gauge::default(),
            start_time: Gauge::default(),
            schedule_interval: Gauge::default(),
            next_run: Gauge::default(),
            run_in_progress: Gauge::default(),
            current_run_start: Gauge::default(),
            notifications: Family::default(),
            heartbeat: AtomicI64::new(0),
            registry: Registry::default(),
        };
        // Series that exist before anything happens, so a rate over them sees the first one.
        for service in [Service::Okta, Service::Pendo] {
            let labels = ServiceLabels {
                service: service.as_str(),
            };
            let _ = m.rate_limited.get_or_create(&labels);
            let _ = m.retries.get_or_create(&labels);
        }
        for s in Status::ALL {
            let _ = m.runs.get_or_create(&StatusLabels { status: s.as_str() });
        }
        for outcome in ["sent", "failed"] {
            let _ = m.notifications.get_or_create(&NotifyLabels { outcome });
        }
        m.register(&mut registry);
        Metrics { registry, ..m }
    }

    /// Names and describes each metric in the registry.
    fn register(&self, registry: &mut Registry) {
        let m = self;
        registry.register(
            "requests",
            "HTTP requests by service and status (error: no response)",
            m.requests.clone(),
        );
        registry.register(
            "rate_limited",
            "Answers of 429 Too Many Requests, by service",
            m.rate_limited.clone(),
        );
        registry.register(
            "retries",
            "Requests tried again, by service",
            m.retries.clone(),
        );
        registry.register("runs", "Finished runs, by status", m.runs.clone());
        registry.register(
            "skipped_fires",
            "Scheduled fires skipped because a run was still going",
            m.skipped_fires.clone(),
        );
        registry.register(
            "last_run_status",
            "1 for the status of the last run, 0 for the others",
            m.last_run_status.clone(),
        );
        registry.register(
            "last_run_users",
            "Users of the last run by outcome: read, sent, updated, failed, missing, unchanged, skipped",
            m.last_run_users.clone(),
        );
        registry.register(
            "last_run_start_timestamp_seconds",
            "When the last run started (Unix time)",
            m.last_run_start.clone(),
        );
        registry.register(
            "last_run_end_timestamp_seconds",
            "When the last run ended (Unix time)",
            m.last_run_end.clone(),
        );
        registry.register(
            "last_run_duration_seconds",
            "How long the last run took",
            m.last_run_duration.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "When the last succeeded run (not a dry run) finished (Unix time; 0 when none is recorded)",
            m.last_success.clone(),
        );
        registry.register(
            "start_time_seconds",
            "When the daemon started (Unix time)",
            m.start_time.clone(),
        );
        registry.register(
            "schedule_interval_seconds",
            "The longest gap between two fires of the schedule over the coming week (0: no next fire)",
            m.schedule_interval.clone(),
        );
        registry.register(
            "next_run_timestamp_seconds",
            "When the next scheduled run is due (Unix time)",
            m.next_run.clone(),
        );
        registry.register(
            "run_in_progress",
            "1 while a run is going",
            m.run_in_progress.clone(),
        );
        registry.register(
            "current_run_start_timestamp_seconds",
            "When the run going now started (Unix time; 0 when none)",
            m.current_run_start.clone(),
        );
        registry.register(
            "notifications",
            "Webhook notifications by outcome: sent, or failed after every retry",
            m.notifications.clone(),
        );
    }

    /// One HTTP answer (`None`: no response).
    pub fn request(&self, service: Service, status: Option<u16>) {
        let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        if status == "429" {
            self.rate_limited
                .get_or_create(&ServiceLabels {
                    service: service.as_str(),
                })
                .inc();
        }
        self.requests
            .get_or_create(&RequestLabels {
                service: service.as_str(),
                status,
            })
            .inc();
    }

    pub fn retry(&self, service: Service) {
        self.retries
            .get_or_create(&ServiceLabels {
                service: service.as_str(),
            })
            .inc();
    }

    /// A fire skipped because a run was still going.
    pub fn skipped_fire(&self) {
        self.skipped_fires.inc();
    }

    /// When the next run is due.
    pub fn next_run(&self, at: Option<chrono::DateTime<chrono::Utc>>) {
        self.next_run
            .set(at.map_or(0.0, |t| t.timestamp_millis() as f64 / 1000.0));
    }

    pub fn run_started(&self) {
        self.run_in_progress.set(1);
        self.current_run_start
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
    }

    pub fn run_finished(&self, r: &RunRecord) {
        self.run_in_progress.set(0);
        self.current_run_start.set(0.0);
        let status = r.status.as_str();
        self.runs.get_or_create(&StatusLabels { status }).inc();
        for s in Status::ALL {
            self.last_run_status
                .get_or_create(&StatusLabels { status: s.as_str() })
                .set(i64::from(s == r.status));
        }
        for (outcome, n) in Counts::OUTCOMES.into_iter().zip(r.counts.values()) {
            self.last_run_users
                .get_or_create(&UsersLabels { outcome })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.last_run_start.set(secs(r.started_at));
        self.last_run_end.set(secs(r.finished_at));
        self.last_run_duration
            .set((r.finished_at - r.started_at).as_seconds_f64().max(0.0));
        if r.status == Status::Succeeded && r.mode != Mode::DryRun {
            self.succeeded_at(r.finished_at);
        }
    }

    /// A run (not a dry run) succeeded, finishing at `at`: from the state's history at start,
    /// or as a run ends.
    pub fn succeeded_at(&self, at: chrono::DateTime<chrono::Utc>) {
        self.last_success.set(secs(at));
    }

    /// The daemon started at `at`.
    pub fn started(&self, at: chrono::DateTime<chrono::Utc>) {
        self.start_time.set(secs(at));
    }

    /// The longest gap between the schedule's fires (`None`: it has no next fire).
    pub fn schedule_interval(&self, gap: Option<chrono::TimeDelta>) {
        self.schedule_interval
            .set(gap.map_or(0, |g| g.num_seconds().max(0)));
    }

    /// One webhook notification: delivered, or given up after every retry.
    pub fn notification(&self, delivered: bool) {
        self.notifications
            .get_or_create(&NotifyLabels {
                outcome: if delivered { "sent" } else { "failed" },
            })
            .inc();
    }

    /// The scheduler is alive now.
    pub fn beat(&self, now: chrono::DateTime<chrono::Utc>) {
        self.heartbeat.store(now.timestamp(), Ordering::Relaxed);
    }

    /// Seconds since the scheduler last showed it was alive, or `None` before it started.
    pub fn since_heartbeat(&self, now: chrono::DateTime<chrono::Utc>) -> Option<i64> {
        match self.heartbeat.load(Ordering::Relaxed) {
            0 => None,
            t => Some(now.timestamp() - t),
        }
    }

    /// The OpenMetrics text exposition, for a scraper that asks for it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The classic Prometheus text exposition (version 0.0.4), for every other client: the
    /// same samples, a counter's HELP and TYPE named like its `_total` sample, no `# EOF`.
    pub fn render_text(&self) -> String {
        let open = self.render();
        let counters: HashSet<&str> = open
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
            .collect();
        let mut out = String::with_capacity(open.len() + 16 * counters.len());
        for line in open.lines() {
            if line == "# EOF" || line.starts_with("# UNIT ") {
                continue;
            }
            let meta = ["# HELP ", "# TYPE "]
                .into_iter()
                .find_map(|p| Some((p, line.strip_prefix(p)?.split_once(' ')?)));
            match meta {
                Some((p, (name, rest))) if counters.contains(name) => {
                    out.push_str(&format!("{p}{name}_total {rest}\n"));
                }
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// Unix seconds, with the fraction.
fn secs(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_counted() {
        let m = Metrics::new();
        m.request(Service::Okta, Some(200));
        m.request(Service::Okta, Some(429));
        m.request(Service::Pendo, None);
        m.retry(Service::Okta);
        m.skipped_fire();
        let text = m.render();
        for line in [
            "okta_pendo_sync_requests_total{service=\"okta\",status=\"200\"} 1",
            "okta_pendo_sync_requests_total{service=\"okta\",status=\"429\"} 1",
            "okta_pendo_sync_requests_total{service=\"pendo\",status=\"error\"} 1",
            "okta_pendo_sync_rate_limited_total{service=\"okta\"} 1",
            "okta_pendo_sync_retries_total{service=\"okta\"} 1",
            "okta_pendo_sync_skipped_fires_total 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn a_held_run_shows() {
        let m = Metrics::new();
        let mut r =
            crate::report::RunRecord::not_started(crate::report::Trigger::Schedule, "x".into());
        r.status = Status::Held;
        m.run_finished(&r);
        let text = m.render();
        for line in [
            "okta_pendo_sync_runs_total{status=\"held\"} 1",
            "okta_pendo_sync_last_run_status{status=\"held\"} 1",
            "okta_pendo_sync_last_run_status{status=\"succeeded\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    fn run(status: Status, mode: Mode, finished: &str) -> RunRecord {
        let mut r =
            crate::report::RunRecord::not_started(crate::report::Trigger::Schedule, "x".into());
        r.status = status;
        r.mode = mode;
        r.finished_at = chrono::DateTime::parse_from_rfc3339(finished)
            .unwrap()
            .to_utc();
        r.started_at = r.finished_at - chrono::TimeDelta::seconds(3);
        r
    }

    fn value(text: &str, series: &str) -> f64 {
        let line = text
            .lines()
            .find(|l| l.split_once(' ').is_some_and(|(s, _)| s == series))
            .unwrap_or_else(|| panic!("{series} missing from\n{text}"));
        line.rsplit_once(' ').unwrap().1.parse().unwrap()
    }

    #[test]
    fn last_success_is_the_last_real_succeeded_run() {
        let m = Metrics::new();
        let name = "okta_pendo_sync_last_success_timestamp_seconds";
        assert_eq!(value(&m.render(), name), 0.0, "none yet");
        m.succeeded_at(chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        assert_eq!(value(&m.render(), name), 1_700_000_000.0, "seeded");
        m.run_finished(&run(
            Status::Succeeded,
            Mode::Full,
            "2026-01-05T06:00:10.5Z",
        ));
        let at = 1_767_592_810.5;
        assert_eq!(value(&m.render(), name), at);
        m.run_finished(&run(
            Status::Succeeded,
            Mode::Incremental,
            "2026-01-06T06:00:10Z",
        ));
        let at = at + 86_399.5;
        assert_eq!(value(&m.render(), name), at);
        for (status, mode) in [
            (Status::Failed, Mode::Full),
            (Status::Partial, Mode::Incremental),
            (Status::Held, Mode::Full),
            (Status::Interrupted, Mode::Full),
            (Status::Succeeded, Mode::DryRun),
        ] {
            m.run_finished(&run(status, mode, "2026-01-07T06:00:00Z"));
            assert_eq!(value(&m.render(), name), at, "{status:?} {mode:?}");
        }
        assert_eq!(
            value(
                &m.render(),
                "okta_pendo_sync_last_run_end_timestamp_seconds"
            ),
            1_767_765_600.0,
            "the last run is still the last run"
        );
    }

    #[test]
    fn start_time_and_schedule_interval() {
        let m = Metrics::new();
        m.started(chrono::DateTime::from_timestamp(1_700_000_000, 250_000_000).unwrap());
        m.schedule_interval(Some(chrono::TimeDelta::days(3)));
        let text = m.render();
        assert_eq!(
            value(&text, "okta_pendo_sync_start_time_seconds"),
            1_700_000_000.25
        );
        assert_eq!(
            value(&text, "okta_pendo_sync_schedule_interval_seconds"),
            259_200.0
        );
        m.schedule_interval(None);
        assert_eq!(
            value(&m.render(), "okta_pendo_sync_schedule_interval_seconds"),
            0.0
        );
    }

    #[test]
    fn counters_are_scraped_at_zero_before_anything_happens() {
        let text = Metrics::new().render();
        for series in [
            "okta_pendo_sync_rate_limited_total{service=\"okta\"}",
            "okta_pendo_sync_rate_limited_total{service=\"pendo\"}",
            "okta_pendo_sync_retries_total{service=\"okta\"}",
            "okta_pendo_sync_retries_total{service=\"pendo\"}",
            "okta_pendo_sync_runs_total{status=\"succeeded\"}",
            "okta_pendo_sync_runs_total{status=\"partial\"}",
            "okta_pendo_sync_runs_total{status=\"failed\"}",
            "okta_pendo_sync_runs_total{status=\"interrupted\"}",
            "okta_pendo_sync_runs_total{status=\"held\"}",
            "okta_pendo_sync_notifications_total{outcome=\"sent\"}",
            "okta_pendo_sync_notifications_total{outcome=\"failed\"}",
        ] {
            assert_eq!(value(&text, series), 0.0, "{series}");
        }
    }

    #[test]
    fn notifications_count_by_outcome() {
        let m = Metrics::new();
        m.notification(true);
        m.notification(false);
        m.notification(false);
        let text = m.render();
        assert_eq!(
            value(
                &text,
                "okta_pendo_sync_notifications_total{outcome=\"sent\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                &text,
                "okta_pendo_sync_notifications_total{outcome=\"failed\"}"
            ),
            2.0
        );
    }

    #[test]
    fn the_classic_text_names_counters_by_their_samples_and_has_no_eof() {
        let m = Metrics::new();
        m.request(Service::Okta, Some(429));
        m.run_finished(&run(Status::Succeeded, Mode::Full, "2026-01-05T06:00:10Z"));
        let open = m.render();
        let text = m.render_text();
        assert!(
            open.contains("# TYPE okta_pendo_sync_runs counter\n"),
            "{open}"
        );
        assert!(open.ends_with("# EOF\n"), "{open}");
        assert!(
            text.contains("# TYPE okta_pendo_sync_runs_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP okta_pendo_sync_runs_total Finished runs"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE okta_pendo_sync_last_run_duration_seconds gauge\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        // The same samples, in the same order.
        let samples = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(samples(&open), samples(&text));
        assert!(text.contains("okta_pendo_sync_rate_limited_total{service=\"okta\"} 1\n"));
        // Every family announced once, with its samples named after it.
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap();
            assert!(
                text.lines()
                    .any(|l| !l.starts_with('#') && l.starts_with(name)),
                "{name} has no sample in\n{text}"
            );
        }
    }
}
