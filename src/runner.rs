//! One sync, recorded: build the clients, run, store the record (and what the run settled),
//! count it in the metrics, log its summary line and notify the webhooks it deserves. `sync`
//! and the daemon both run through [`run_and_record`], so a run is recorded the same way
//! whoever started it.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::config::{Settings, Timeouts};
use crate::mapping::AttributePath;
use crate::metrics::Metrics;
use crate::okta::OktaClient;
use crate::okta::projection::Projection;
use crate::pendo::PendoClient;
use crate::report::RunRecord;
use crate::state::{State, StateError};
use crate::sync::{self, Clients, RunOptions};

/// Why the clients of a run could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot set up the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
    #[error("cannot set up the Okta client: {0}")]
    Okta(#[source] crate::okta::SetupError),
}

/// A run that finished but whose record could not be stored.
#[derive(Debug, thiserror::Error)]
#[error("the run finished but could not be recorded: {source}")]
pub struct NotRecorded {
    pub record: Box<RunRecord>,
    #[source]
    pub source: StateError,
}

/// Builds the two clients from the settings.
pub fn clients(settings: &Settings, metrics: Arc<Metrics>) -> Result<Clients, ClientError> {
    let http = |t: Timeouts| crate::http::client(t.connect, t.request).map_err(ClientError::Http);
    // Okta's pages come gzip-encoded and are inflated by the client itself.
    let okta_http = crate::http::client_undecoded(
        settings.okta.timeouts.connect,
        settings.okta.timeouts.request,
    )
    .map_err(ClientError::Http)?;
    let okta = OktaClient::new(okta_http, &settings.okta, settings.retry, metrics.clone())
        .map_err(ClientError::Okta)?
        .with_projection(projection(settings));
    let pendo = PendoClient::new(
        http(settings.pendo.timeouts)?,
        &settings.pendo,
        settings.sync.create_missing_visitors,
        settings.retry,
        metrics,
    );
    Ok(Clients {
        okta: Arc::new(okta),
        pendo: Arc::new(pendo),
    })
}

/// What a run reads of each user: the mapped paths, the visitor ID, `id` (to meet a user once
/// across groups) and `status` (deprovisioned users).
fn projection(settings: &Settings) -> Projection {
    let fixed: Vec<AttributePath> = ["id", "status"]
        .iter()
        .filter_map(|p| AttributePath::parse(p).ok())
        .collect();
    Projection::of(settings.paths_read().chain(fixed.iter()))
}

/// Runs one sync and records it. `state` is the writer's state, or for a dry run a read-only
/// one: a dry run stores its record through a short unlocked write of its own. The record is
/// returned with its id; it is also returned, inside the error, when it could not be stored.
/// A run that is not a dry run is then notified to the webhooks (`notify::after_run`, bounded
/// in time), stored or not; that never changes the record.
pub async fn run_and_record(
    settings: &Settings,
    state: &Mutex<State>,
    metrics: &Arc<Metrics>,
    opts: RunOptions,
    dry_out: Option<&mut (dyn Write + Send)>,
    cancel: CancellationToken,
) -> Result<RunRecord, NotRecorded> {
    metrics.run_started();
    let (mut record, reached) = match clients(settings, metrics.clone()) {
        Ok(clients) => {
            let outcome = sync::run(settings, &clients, opts, dry_out, cancel, state).await;
            (outcome.record, outcome.reached)
        }
        Err(e) => (RunRecord::not_started(opts.trigger, e.to_string()), None),
    };
    let mut previous = None;
    let stored = if opts.dry_run {
        State::open_unlocked(&settings.state.path).and_then(|s| {
            s.keep_runs(settings.state.keep_runs)
                .finish_run(&record, None)
        })
    } else {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        // Read before this run is stored: storing it may drop the oldest records. Only
        // notifications need it.
        if !settings.notify.is_empty() {
            previous = state.last_real_run().unwrap_or_else(|e| {
                tracing::warn!("cannot read the previous run, so no recovery can be told: {e}");
                None
            });
        }
        state.finish_run(&record, reached.as_ref())
    };
    metrics.run_finished(&record);
    let done = match stored {
        Ok(id) => {
            record.id = id;
            log_summary(&record);
            Ok(record)
        }
        Err(source) => {
            let e = NotRecorded {
                record: Box::new(record),
                source,
            };
            tracing::error!("{e}");
            log_summary(&e.record);
            Err(e)
        }
    };
    if !opts.dry_run {
        let record = match &done {
            Ok(r) => r,
            Err(e) => &e.record,
        };
        let retry = settings.retry;
        crate::notify::after_run(&settings.notify, retry, record, previous.as_ref(), metrics).await;
    }
    done
}

/// The one info line per run that summarises its record.
pub fn log_summary(r: &RunRecord) {
    let duration_ms = (r.finished_at - r.started_at).num_milliseconds().max(0);
    let c = &r.counts;
    tracing::info!(
        run_id = r.id,
        trigger = r.trigger.as_str(),
        mode = r.mode.as_str(),
        status = r.status.as_str(),
        status_code = r.status_code,
        okta_users_read = c.okta_users_read,
        records_processed = c.records_processed,
        users_updated = c.users_updated,
        users_failed = c.users_failed,
        users_missing = c.users_missing,
        users_unchanged = c.users_unchanged,
        users_skipped = c.users_skipped,
        duration_ms,
        "run {} {}: {}",
        r.id,
        r.status,
        r.message
    );
}
