//! The daemon's metrics, in Prometheus form (`GET /metrics`): what the last run did, when the
//! next one is, and how the two services answered.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::report::{Counts, RunRecord, Status};

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
    next_run: Gauge<f64, AtomicU64>,
    run_in_progress: Gauge,
    current_run_start: Gauge<f64, AtomicU64>,
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
            next_run: Gauge::default(),
            run_in_progress: Gauge::default(),
            current_run_start: Gauge::default(),
            heartbeat: AtomicI64::new(0),
            registry: Registry::default(),
        };
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
        let secs = |t: chrono::DateTime<chrono::Utc>| t.timestamp_micros() as f64 / 1e6;
        self.last_run_start.set(secs(r.started_at));
        self.last_run_end.set(secs(r.finished_at));
        self.last_run_duration
            .set((r.finished_at - r.started_at).as_seconds_f64().max(0.0));
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

    /// The Prometheus text exposition (OpenMetrics flavour).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
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
}
