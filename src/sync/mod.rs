//! One run: Okta pages stream in, each user is mapped, records are batched and pushed to Pendo
//! with bounded concurrency, and the outcome is tallied into a [`RunRecord`].
//!
//! ```text
//! reader task ──pages (bounded channel)──► map + batch ──batches (≤ concurrency in flight)──► Pendo
//! ```
//! The next Okta page is fetched while earlier users are mapped and pushed; the bounded channel
//! and the cap on pushes in flight keep memory flat however many users there are.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::okta::{OktaClient, OktaError, Page, Pages};
use crate::pendo::PendoClient;
use crate::report::{Ending, Mode, ReadFailure, RunRecord, Status, Trigger};
use crate::state::{Settled, State, SyncPoint};

mod guard;
mod pipeline;
mod plan;
mod push;
mod seen;

use pipeline::Pipeline;
pub use plan::{FULL_SLACK, OVERLAP, Plan, fingerprint, okta_time, plan, untracked_attribute};

/// Pages read ahead of the mapper.
const PAGES_AHEAD: usize = 2;
/// The two authenticated clients a run uses.
#[derive(Debug, Clone)]
pub struct Clients {
    pub okta: Arc<OktaClient>,
    pub pendo: Arc<PendoClient>,
}

/// How to run.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub trigger: Trigger,
    pub dry_run: bool,
    /// After cancellation, how long pushes in flight may take to finish.
    pub grace: Duration,
    /// Read and push every user in scope, whatever the state says.
    pub force_full: bool,
    /// Push even what the guard would hold.
    pub force: bool,
}

/// What a run came to: its record (not yet stored) and, when it got everything through, what
/// it settled (the sync point the next incremental run starts from).
#[derive(Debug)]
pub struct Outcome {
    pub record: RunRecord,
    pub reached: Option<Settled>,
}

/// Runs one sync. `state` gives the sync point and the hashes of what was pushed before, and
/// takes the hashes of what this run pushes; the record and the point reached are for the caller
/// to store (`State::finish_run`). `dry_out` receives the JSON lines of a dry run. When `cancel`
/// fires, reading stops, what was read is pushed, pushes in flight get `opts.grace` to finish,
/// and the run is `interrupted`.
pub async fn run(
    settings: &Settings,
    clients: &Clients,
    opts: RunOptions,
    dry_out: Option<&mut (dyn Write + Send)>,
    cancel: CancellationToken,
    state: &Mutex<State>,
) -> Outcome {
    let started_at = Utc::now();
    let (point, state_error) = match lock(state).sync_point() {
        Ok(point) => (point, None),
        Err(e) => (SyncPoint::default(), Some(e)),
    };
    // A state that cannot be read gives a full run.
    let plan = plan(
        settings,
        &point,
        opts.force_full || state_error.is_some(),
        started_at,
    );
    let mode = mode_of(opts, &plan);
    let (reader, page_rx) = start_reading(settings, clients, &plan);
    let mut pipeline = Pipeline::new(
        settings, clients, opts, &plan, &point, dry_out, cancel, state,
    );
    pipeline.mark = run_mark(started_at);
    if let Some(e) = state_error {
        pipeline.state_failed(e);
    }
    pipeline.consume(page_rx).await;
    let read_failure = if pipeline.stop.is_some() {
        reader.abort();
        None
    } else {
        read_outcome(reader.await)
    };
    let Pipeline {
        tally,
        stop,
        state_trouble,
        with_value,
        okta_clock,
        mark,
        ..
    } = pipeline;
    let ending = Ending {
        started_at,
        trigger: opts.trigger,
        mode,
        full: plan.is_full(),
        why: &plan.why,
        read_failure,
        stop,
    };
    let record = RunRecord::finish(ending, tally);
    // The point moves only when every user got through (pushed, or reported missing).
    let complete = record.status == Status::Succeeded && state_trouble.is_none();
    let reached = (complete && !opts.dry_run).then(|| Settled {
        point: SyncPoint {
            // Okta's clock, not ours: a host clock minutes off must not skip changes.
            cursor: Some(okta_clock.unwrap_or(started_at)),
            fingerprint: Some(plan.fingerprint.clone()),
            last_full: if plan.is_full() {
                Some(started_at)
            } else {
                point.last_full
            },
            unsettled: None,
            pushing: None,
            field_shares: if plan.is_full() {
                shares(settings, &with_value, record.counts.records_processed)
            } else {
                point.field_shares.clone()
            },
        },
        full_run: plan.is_full().then_some(mark),
    });
    Outcome { record, reached }
}

/// Starts the reader task: the listings the scope needs, from the plan's starting point.
fn start_reading(
    settings: &Settings,
    clients: &Clients,
    plan: &Plan,
) -> (JoinHandle<Result<(), ReadError>>, mpsc::Receiver<Page>) {
    let since = plan.incremental_since.map(okta_time);
    let starts = clients
        .okta
        .start_urls(&settings.okta.scope, since.as_deref());
    let (page_tx, page_rx) = mpsc::channel(PAGES_AHEAD);
    let pages = Pages::new(clients.okta.clone(), starts);
    let reader = tokio::spawn(read_pages(pages, page_tx));
    (reader, page_rx)
}

/// The run's mode, logged with why it reads as it does.
fn mode_of(opts: RunOptions, plan: &Plan) -> Mode {
    let mode = match (opts.dry_run, plan.is_full()) {
        (true, _) => Mode::DryRun,
        (false, true) => Mode::Full,
        (false, false) => Mode::Incremental,
    };
    let how = if plan.is_full() {
        "full"
    } else {
        "incremental"
    };
    tracing::info!(mode = mode.as_str(), "{how} run: {}", plan.why);
    mode
}

/// What the reader task came to: nothing, or the failure that ended the read.
fn read_outcome(
    joined: Result<Result<(), ReadError>, tokio::task::JoinError>,
) -> Option<ReadFailure> {
    match joined {
        Ok(Ok(())) => None,
        Ok(Err(ReadError(e))) => Some(ReadFailure {
            status: e.http_status(),
            error: Box::new(e),
        }),
        Err(e) => Some(ReadFailure {
            status: 0,
            error: Box::new(e),
        }),
    }
}

/// Per mapped field, the share of the records sent that had a value for it (the guard's
/// yardstick for the next full run).
fn shares(settings: &Settings, with_value: &[u64], sent: u64) -> Vec<(String, f64)> {
    settings
        .mapping
        .fields()
        .iter()
        .zip(with_value)
        .map(|(f, n)| {
            let share = if sent == 0 {
                0.0
            } else {
                *n as f64 / sent as f64
            };
            (f.field.clone(), share)
        })
        .collect()
}

/// The mark a run's stored hashes carry: its start in Unix milliseconds (one run at a time
/// writes a state file, and no two start in the same millisecond).
fn run_mark(started_at: DateTime<Utc>) -> i64 {
    started_at.timestamp_millis()
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends the pages of the listings until the end, an error, or the receiver going away (then
/// it returns `Ok`: the consumer decided to stop).
async fn read_pages(mut pages: Pages, tx: mpsc::Sender<Page>) -> Result<(), ReadError> {
    while let Some(page) = pages.next_page().await {
        let page = page.map_err(ReadError)?;
        if tx.send(page).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// The Okta error that ended a read.
#[derive(Debug)]
struct ReadError(OktaError);
