//! One run: Okta pages stream in, each user is mapped, records are batched and pushed to Pendo
//! with bounded concurrency, and the outcome is tallied into a [`RunRecord`].
//!
//! ```text
//! reader task ──pages (bounded channel)──► map + batch ──batches (≤ concurrency in flight)──► Pendo
//! ```
//! The next Okta page is fetched while earlier users are mapped and pushed; the bounded channel
//! and the cap on pushes in flight keep memory flat however many users there are.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Settings, UserScope};
use crate::mapping::{Mapping, Record, Unsendable};
use crate::okta::{OktaClient, OktaError, Page};
use crate::pendo::{PendoClient, PendoError, PushResponse};
use crate::report::{Mode, RunError, RunRecord, Status, Tally, Trigger, count};
use crate::state::{Settled, State, SyncPoint};

mod guard;
mod seen;
use guard::Guard;
use seen::SeenVisitors;

/// Pages read ahead of the mapper.
const PAGES_AHEAD: usize = 2;
/// How many earlier page URLs of a listing a `next` link is checked against (a paging loop).
const RECENT_PAGES: usize = 64;

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

/// How much earlier than the last successful run's first Okta answer an incremental read
/// begins, for changes Okta records a little late.
pub const OVERLAP: Duration = Duration::from_secs(5 * 60);

/// A full run is due when the last one is older than `full_sync_every` less this slack, so that
/// a weekly schedule with the 7-day default makes every run full.
pub const FULL_SLACK: Duration = Duration::from_secs(3600);

/// Whether a run reads everything or only what changed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub incremental_since: Option<OffsetDateTime>,
    pub why: String,
    pub fingerprint: String,
}

impl Plan {
    pub fn is_full(&self) -> bool {
        self.incremental_since.is_none()
    }
}

/// A fingerprint of everything that decides which users are read and what is sent: when it
/// changes, a run is full.
pub fn fingerprint(settings: &Settings) -> String {
    let scope = match &settings.okta.scope {
        UserScope::All => "all".to_owned(),
        UserScope::Filter(f) => format!("filter:{f}"),
        UserScope::Search(q) => format!("search:{q}"),
        UserScope::Groups(ids) => format!("groups:{}", ids.join(",")),
    };
    let mut text = format!(
        "v2|{}|{:?}|{}|{}|{}|{}|{}",
        settings.sync.visitor_id_key,
        settings.sync.on_null,
        settings.sync.create_missing_visitors,
        settings.pendo.base_url,
        settings.pendo.metadata_group.as_str(),
        settings.okta.org_url,
        scope,
    );
    for f in settings.mapping.fields() {
        text.push_str(&format!("|{}={}:{}", f.field, f.path, f.ty.as_str()));
    }
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

/// Top-level user attributes whose changes Okta records in `lastUpdated` (with everything under
/// `profile`): the user's identity and status.
const TRACKED_BY_LAST_UPDATED: &[&str] = &[
    "id",
    "status",
    "created",
    "activated",
    "statusChanged",
    "lastUpdated",
    "transitioningToStatus",
    "type",
];

/// The first attribute a run reads (a mapped path or the visitor ID key) whose changes
/// `lastUpdated` may not show: Okta moves `lastUpdated` for profile and status changes, not
/// for a sign-in (`lastLogin`) or anything else outside the profile (`passwordChanged`,
/// `credentials`, ...). An incremental run, which asks for users updated since the last run,
/// would never see such a change, so runs that read one are full.
pub fn untracked_attribute(settings: &Settings) -> Option<&crate::mapping::AttributePath> {
    settings
        .mapping
        .fields()
        .iter()
        .map(|f| &f.path)
        .chain(std::iter::once(&settings.sync.visitor_id_key))
        .find(|path| {
            let mut segs = path.as_str().split('.');
            let first = segs.next().unwrap_or_default();
            let in_profile = first == "profile" && segs.next().is_some();
            !in_profile && !TRACKED_BY_LAST_UPDATED.contains(&first)
        })
}

/// Decides whether a run is full or incremental, as SPEC's "Runs" says.
pub fn plan(settings: &Settings, point: &SyncPoint, force_full: bool, now: OffsetDateTime) -> Plan {
    let fingerprint = fingerprint(settings);
    let every = settings.sync.full_sync_every.saturating_sub(FULL_SLACK);
    let full = |why: &str| Plan {
        incremental_since: None,
        why: why.to_owned(),
        fingerprint: fingerprint.clone(),
    };
    let Some(cursor) = point.cursor else {
        return full("the first run");
    };
    if point.fingerprint.as_deref() != Some(fingerprint.as_str()) {
        return full("the mapping, the visitor settings or the user scope changed");
    }
    if point.unsettled.is_some() {
        return full(
            "a run under other settings began pushing and did not succeed: Pendo may hold its \
             values for users an incremental run would not read",
        );
    }
    if force_full {
        return full("--full");
    }
    if let Some(path) = untracked_attribute(settings) {
        return Plan {
            incremental_since: None,
            why: format!(
                "{path} is mapped, and Okta does not move lastUpdated when only it changes, so \
                 every run is full"
            ),
            fingerprint,
        };
    }
    match point.last_full {
        Some(last) if now - last < every => Plan {
            incremental_since: Some(cursor - OVERLAP),
            why: format!("users changed since {}", okta_time(cursor - OVERLAP)),
            fingerprint,
        },
        _ => full("the last full run is older than sync.full_sync_every"),
    }
}

/// Okta's timestamp form: `2026-11-28T06:00:00.000Z`.
pub fn okta_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
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
    let started_at = OffsetDateTime::now_utc();
    let (point, state_error) = match lock(state).sync_point() {
        Ok(point) => (point, None),
        Err(e) => (SyncPoint::default(), Some(e.to_string())),
    };
    // A state that cannot be read gives a full run.
    let plan = plan(
        settings,
        &point,
        opts.force_full || state_error.is_some(),
        started_at,
    );
    let mode = match (opts.dry_run, plan.is_full()) {
        (true, _) => Mode::DryRun,
        (false, true) => Mode::Full,
        (false, false) => Mode::Incremental,
    };
    tracing::info!(
        mode = mode.as_str(),
        "{} run: {}",
        if plan.is_full() {
            "full"
        } else {
            "incremental"
        },
        plan.why
    );
    let since = plan.incremental_since.map(okta_time);

    let (page_tx, page_rx) = mpsc::channel(PAGES_AHEAD);
    let reader = tokio::spawn(read_pages(
        clients.okta.clone(),
        clients
            .okta
            .start_urls(&settings.okta.scope, since.as_deref()),
        page_tx,
    ));

    // A real run under settings other than the last successful run's leaves a mark before its
    // first push, so that the runs after it stay full until one succeeds.
    let unsettle = (!opts.dry_run && point.fingerprint.as_deref() != Some(&plan.fingerprint))
        .then(|| plan.fingerprint.clone());
    let mut pipeline = Pipeline {
        settings,
        mapping: Arc::new(settings.mapping.clone()),
        pendo: clients.pendo.clone(),
        tally: Tally::default(),
        batch: Vec::with_capacity(settings.pendo.batch_size.get()),
        hashes: Vec::with_capacity(settings.pendo.batch_size.get()),
        inflight: JoinSet::new(),
        inflight_sizes: HashMap::new(),
        dry_out,
        seen: match &settings.okta.scope {
            UserScope::Groups(ids) if ids.len() > 1 => Some(SeenIds::new()),
            _ => None,
        },
        visitors: SeenVisitors::new(),
        with_value: vec![0; settings.mapping.fields().len()],
        okta_clock: None,
        mark: run_mark(started_at),
        unsettle,
        guard: (plan.is_full() && settings.guard.enabled && !opts.force).then(|| {
            // Without a count of known visitors the second rule stays off (a count of 0).
            let known = lock(state).visitor_count().unwrap_or(0);
            Guard::new(settings.guard.sample.get(), &point, known, settings)
        }),
        stop: None,
        cancel,
        grace: opts.grace,
        grace_deadline: None,
        state,
        compare: !plan.is_full(),
        drop_deprovisioned: !plan.is_full() && settings.okta.scope == UserScope::All,
        state_trouble: state_error,
    };
    if let Some(e) = &pipeline.state_trouble {
        pipeline.tally.error(None, format!("state: {e}"));
    }
    pipeline.consume(page_rx).await;
    let okta_error = if pipeline.stop.is_some() {
        reader.abort();
        None
    } else {
        match reader.await {
            Ok(Ok(())) => None,
            Ok(Err(ReadError(e))) => Some((e.to_string(), e.http_status())),
            Err(e) => Some((format!("the Okta reader stopped unexpectedly: {e}"), 0)),
        }
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
    let field_shares: Vec<(String, f64)> = settings
        .mapping
        .fields()
        .iter()
        .zip(&with_value)
        .map(|(f, n)| {
            let share = if tally.records_processed == 0 {
                0.0
            } else {
                *n as f64 / tally.records_processed as f64
            };
            (f.field.clone(), share)
        })
        .collect();
    let record = finish(
        started_at,
        opts.trigger,
        mode,
        &plan,
        tally,
        okta_error,
        stop,
    );
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
            field_shares: if plan.is_full() {
                field_shares
            } else {
                point.field_shares.clone()
            },
        },
        full_run: plan.is_full().then_some(mark),
    });
    Outcome { record, reached }
}

/// The mark a run's stored hashes carry: its start in Unix milliseconds (one run at a time
/// writes a state file, and no two start in the same millisecond).
fn run_mark(started_at: OffsetDateTime) -> i64 {
    (started_at.unix_timestamp_nanos() / 1_000_000) as i64
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Follows each start URL's `next` links, sending pages until the end, an error, or the
/// receiver going away (then it returns `Ok`: the consumer decided to stop).
async fn read_pages(
    okta: Arc<OktaClient>,
    starts: Vec<url::Url>,
    tx: mpsc::Sender<Page>,
) -> Result<(), ReadError> {
    for start in starts {
        let mut recent: VecDeque<url::Url> = VecDeque::with_capacity(RECENT_PAGES);
        let mut next = Some(start);
        while let Some(url) = next.take() {
            let mut page = okta.page(&url).await.map_err(ReadError)?;
            tracing::debug!(users = page.users.len(), path = url.path(), "okta page");
            let link = std::mem::replace(&mut page.next, Ok(None));
            if tx.send(page).await.is_err() {
                return Ok(());
            }
            let link = link.map_err(ReadError)?;
            if let Some(n) = &link
                && (*n == url || recent.contains(n))
            {
                return Err(ReadError(OktaError::Malformed {
                    path: url.path().to_owned(),
                    detail: "its next link leads back to a page already read (a paging \
                                 loop); reading stopped"
                        .into(),
                }));
            }
            if recent.len() == RECENT_PAGES {
                recent.pop_front();
            }
            recent.push_back(url);
            next = link;
        }
    }
    Ok(())
}

/// The Okta error that ended a read.
#[derive(Debug)]
struct ReadError(OktaError);

/// Why a run stopped before reading everything.
#[derive(Debug)]
enum Stop {
    /// Cancelled (a signal): an `interrupted` run.
    Cancelled,
    /// The dry-run output was closed by its reader (`| head`): an `interrupted` run.
    OutputClosed,
    /// A failure on our side that ends the run (the dry-run output cannot be written).
    Fatal(String),
    /// Pendo refused the credentials or a mapped field: nothing more can be pushed, so
    /// reading stops at once and the run fails.
    Refused(Refusal),
    /// The guard held a full run before any push: why, in words.
    Held(String),
}

struct Pipeline<'s, 'w> {
    settings: &'s Settings,
    mapping: Arc<Mapping>,
    pendo: Arc<PendoClient>,
    tally: Tally,
    batch: Vec<Record>,
    /// The values hash of each record in `batch`.
    hashes: Vec<u64>,
    state: &'s Mutex<State>,
    /// Incremental: skip users whose values match what was last pushed.
    compare: bool,
    /// Incremental over Okta's default list: leave out deprovisioned users, as the full list
    /// does.
    drop_deprovisioned: bool,
    /// A state failure (reading or storing hashes): the run may not move the sync point.
    state_trouble: Option<String>,
    inflight: JoinSet<BatchOutcome>,
    /// Records per push task, to account for a task that ends without an outcome.
    inflight_sizes: HashMap<tokio::task::Id, u64>,
    dry_out: Option<&'w mut (dyn Write + Send)>,
    /// Okta user IDs met, when a user can be listed more than once (several groups).
    seen: Option<SeenIds>,
    /// Visitor IDs queued in this run: one record per visitor.
    visitors: SeenVisitors,
    /// Per mapped field (in the mapping's order), how many records sent had a value for it.
    with_value: Vec<u64>,
    /// Okta's clock at its first answer of the run (the `Date` of the first page).
    okta_clock: Option<OffsetDateTime>,
    /// The mark stored with this run's hashes.
    mark: i64,
    /// The fingerprint to record as unsettled before the first push, when the settings differ
    /// from the last successful run's.
    unsettle: Option<String>,
    /// A full run's sample, held back until the guard has judged it.
    guard: Option<Guard>,
    stop: Option<Stop>,
    cancel: CancellationToken,
    grace: Duration,
    /// Set when cancellation is first seen: pushes in flight must end by then.
    grace_deadline: Option<Instant>,
}

impl Pipeline<'_, '_> {
    /// Maps and pushes every page, then waits for the pushes.
    async fn consume(&mut self, mut pages: mpsc::Receiver<Page>) {
        'pages: loop {
            let page = tokio::select! {
                biased;
                () = self.cancel.cancelled() => {
                    self.cancelled();
                    break;
                }
                page = pages.recv() => page,
            };
            let Some(page) = page else { break };
            if self.okta_clock.is_none() {
                self.okta_clock = page.date;
            }
            for user in page.users {
                self.user(&user).await;
                if self.stop.is_some() {
                    break 'pages;
                }
            }
            while let Some(done) = self.inflight.try_join_next_with_id() {
                self.account(done);
            }
        }
        drop(pages);
        // A sample smaller than the guard's size is all there is: judge it now. A run that
        // stopped before judging pushes none of it.
        if self.stop.is_none() {
            self.judge().await;
        } else if let Some(guard) = self.guard.take() {
            self.unsent(guard.into_sample().len() as u64);
        }
        // What was read is pushed, even when cancelled: it is one batch at most.
        if matches!(self.stop, None | Some(Stop::Cancelled)) {
            self.flush().await;
        } else {
            self.discard_batch();
        }
        self.drain().await;
        if let Some(out) = self.dry_out.as_mut()
            && let Err(e) = out.flush()
        {
            self.output_failed(e);
        }
    }

    fn state_failed(&mut self, e: crate::state::StateError) {
        if self.state_trouble.is_none() {
            tracing::error!("{e}");
            self.tally.error(None, format!("state: {e}"));
            self.state_trouble = Some(e.to_string());
        }
    }

    fn cancelled(&mut self) {
        if self.grace_deadline.is_none() {
            tracing::warn!(
                grace_ms = self.grace.as_millis() as u64,
                "stopping: no more reading; pushes in flight may finish within the grace period"
            );
            let now = Instant::now();
            self.grace_deadline = Some(now.checked_add(self.grace).unwrap_or(now));
        }
        self.stop.get_or_insert(Stop::Cancelled);
    }

    fn output_failed(&mut self, e: std::io::Error) {
        let stop = if e.kind() == std::io::ErrorKind::BrokenPipe {
            Stop::OutputClosed
        } else {
            Stop::Fatal(format!("cannot write the dry-run output: {e}"))
        };
        if !matches!(self.stop, Some(Stop::Fatal(_))) {
            self.stop = Some(stop);
        }
    }

    async fn user(&mut self, user: &Value) {
        if let Some(seen) = &mut self.seen
            && let Some(id) = user.get("id").and_then(Value::as_str)
            && !seen.first_time(id)
        {
            return;
        }
        if self.drop_deprovisioned
            && user.get("status").and_then(Value::as_str) == Some("DEPROVISIONED")
        {
            return;
        }
        self.tally.okta_users_read += 1;
        let sync = &self.settings.sync;
        match self
            .mapping
            .map_user(user, &sync.visitor_id_key, sync.on_null)
        {
            Ok(record) => {
                if !self.visitors.first_time(&record.visitor_id) {
                    self.tally.users_skipped += 1;
                    self.tally.users_duplicate += 1;
                    let message = "not sent: duplicate visitor ID (an earlier user of this run \
                                   has it, and Pendo gets one record per visitor)";
                    self.tally.error(Some(record.visitor_id), message);
                    return;
                }
                let hash = self.mapping.values_hash(&record);
                if self.compare {
                    let stored = lock(self.state).visitor_hash(&record.visitor_id);
                    match stored {
                        Ok(Some(h)) if h == hash => {
                            self.tally.users_unchanged += 1;
                            return;
                        }
                        Ok(_) => {}
                        Err(e) => self.state_failed(e),
                    }
                }
                match self.guard.as_mut() {
                    Some(guard) => {
                        let known = guard.needs_known()
                            && matches!(
                                lock(self.state).visitor_hash(&record.visitor_id),
                                Ok(Some(_))
                            );
                        if guard.add(record, hash, known) {
                            self.judge().await;
                        }
                    }
                    None => self.admit(record, hash).await,
                }
            }
            Err(Unsendable::NoVisitorId) => {
                self.tally.users_skipped += 1;
                self.tally.users_without_id += 1;
            }
            Err(Unsendable::BadValue {
                visitor_id,
                message,
            }) => {
                self.tally.users_skipped += 1;
                self.tally.users_bad_value += 1;
                self.tally
                    .error(Some(visitor_id), format!("not sent: {message}"));
            }
        }
    }

    /// Sends a record on: to the dry-run output, or into the batch (pushed when full).
    async fn admit(&mut self, record: Record, hash: u64) {
        if let Some(out) = self.dry_out.as_mut() {
            // Counted as it is computed, so the counts add up even if writing fails.
            self.tally.records_processed += 1;
            let mut line = Vec::with_capacity(256);
            let written = self
                .mapping
                .write_record(&record, &mut line)
                .map_err(std::io::Error::from)
                .and_then(|()| {
                    line.push(b'\n');
                    out.write_all(&line)
                });
            if let Err(e) = written {
                self.output_failed(e);
            }
            return;
        }
        for (n, v) in self.with_value.iter_mut().zip(&record.values) {
            if v.as_ref().is_some_and(|v| !v.is_null()) {
                *n += 1;
            }
        }
        self.batch.push(record);
        self.hashes.push(hash);
        if self.batch.len() >= self.settings.pendo.batch_size.get() {
            self.flush().await;
        }
    }

    /// Judges the guard's sample: holds the run (pushing nothing), or sends the sample on and
    /// lets the rest of the run through. A dry run is never held; the verdict goes into its
    /// message.
    async fn judge(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        let verdict = guard.verdict(self.mapping.fields(), &self.settings.sync.visitor_id_key);
        let sample = guard.into_sample();
        match verdict {
            Some(why) if self.dry_out.is_none() => {
                tracing::warn!("the guard holds this run: {why}");
                self.unsent(sample.len() as u64);
                self.stop = Some(Stop::Held(why));
            }
            verdict => {
                if let Some(why) = verdict {
                    tracing::warn!("a real run would be held by the guard: {why}");
                    self.tally.guard_note = Some(why);
                }
                let total = sample.len();
                for (i, (record, hash)) in sample.into_iter().enumerate() {
                    if self.stop.is_some() {
                        self.unsent((total - i) as u64);
                        break;
                    }
                    self.admit(record, hash).await;
                }
            }
        }
    }

    /// Users read and mapped that will not be sent, since the run stopped first.
    fn unsent(&mut self, n: u64) {
        self.tally.users_skipped += n;
        self.tally.users_unsent += n;
    }

    /// Drops the batch being filled, when the run stopped and may push no more.
    fn discard_batch(&mut self) {
        let n = self.batch.len() as u64;
        self.batch.clear();
        self.hashes.clear();
        self.unsent(n);
    }

    /// Hands the current batch to a push task, waiting while `concurrency` are in flight
    /// (unless cancelled: then the batch goes at once).
    async fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        while self.inflight.len() >= self.settings.pendo.concurrency.get()
            && self.grace_deadline.is_none()
        {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => self.cancelled(),
                done = self.inflight.join_next_with_id() => match done {
                    Some(done) => self.account(done),
                    None => break,
                },
            }
        }
        if matches!(self.stop, Some(Stop::Refused(_))) {
            self.discard_batch();
            return;
        }
        let records = std::mem::replace(
            &mut self.batch,
            Vec::with_capacity(self.settings.pendo.batch_size.get()),
        );
        let hashes = std::mem::replace(
            &mut self.hashes,
            Vec::with_capacity(self.settings.pendo.batch_size.get()),
        );
        if let Some(fingerprint) = self.unsettle.take() {
            let marked = lock(self.state).mark_unsettled(&fingerprint);
            if let Err(e) = marked {
                self.state_failed(e);
            }
        }
        let size = records.len() as u64;
        let pendo = self.pendo.clone();
        let mapping = self.mapping.clone();
        let handle = self.inflight.spawn(async move {
            let mut outcome = BatchOutcome::default();
            push_records(&pendo, &mapping, &records, &hashes, &mut outcome).await;
            outcome
        });
        self.inflight_sizes.insert(handle.id(), size);
    }

    /// Waits for every push; once cancelled, only until the grace deadline, then aborts the
    /// rest (their records count as failed: Pendo's answer never came).
    async fn drain(&mut self) {
        while self.grace_deadline.is_none() {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => self.cancelled(),
                done = self.inflight.join_next_with_id() => match done {
                    Some(done) => self.account(done),
                    None => return,
                },
            }
        }
        let deadline = self.grace_deadline.unwrap_or_else(Instant::now);
        loop {
            match tokio::time::timeout_at(deadline, self.inflight.join_next_with_id()).await {
                Ok(Some(done)) => self.account(done),
                Ok(None) => return,
                Err(_) => {
                    tracing::warn!(
                        pushes = self.inflight.len(),
                        "grace period over: abandoning the pushes still in flight"
                    );
                    self.inflight.abort_all();
                    while let Some(done) = self.inflight.join_next_with_id().await {
                        self.account(done);
                    }
                    return;
                }
            }
        }
    }

    fn account(&mut self, done: Result<(tokio::task::Id, BatchOutcome), tokio::task::JoinError>) {
        let outcome = match done {
            Ok((id, o)) => {
                self.inflight_sizes.remove(&id);
                o
            }
            Err(e) => {
                let size = self.inflight_sizes.remove(&e.id()).unwrap_or(0);
                let t = &mut self.tally;
                t.records_processed += size;
                t.batches_failed += 1;
                t.last_failure_status = Some(0);
                let why = if e.is_cancelled() {
                    "the run stopped before Pendo answered"
                } else {
                    "the push task ended abnormally"
                };
                t.error(
                    None,
                    format!("a batch of {size} records may not have been delivered: {why}"),
                );
                return;
            }
        };
        if let Some(error) = outcome.refused {
            if self.stop.is_none() {
                tracing::error!("{}: no more reading, nothing more is pushed", error.0);
            }
            if !matches!(self.stop, Some(Stop::Refused(_))) {
                self.stop = Some(Stop::Refused(error));
            }
        }
        let mut pushed: Vec<(String, u64)> = Vec::new();
        let t = &mut self.tally;
        t.records_processed += outcome.sent;
        for Accepted { response, mut sent } in outcome.accepted {
            t.batches_ok += 1;
            t.users_updated += response.updated;
            // Which visitors were updated: all but the missing ones, when Pendo's count says so.
            // Otherwise none is remembered, and all are pushed again next time.
            let missing: std::collections::HashSet<&str> =
                response.missing.iter().map(String::as_str).collect();
            sent.retain(|(id, _)| !missing.contains(id.as_str()));
            if response.updated == sent.len() as u64 {
                pushed.append(&mut sent);
            } else {
                t.unconfirmed += (sent.len() as u64).saturating_sub(response.updated);
            }
            t.missing(response.missing);
            for e in response.errors {
                let (visitor_id, text) = pendo_error(&e);
                t.error(visitor_id, format!("Pendo: {text}"));
            }
        }
        for (error, visitor_ids) in outcome.failed {
            t.batches_failed += 1;
            t.last_failure_status = Some(error.http_status());
            t.error(
                None,
                format!(
                    "a batch of {} records was not delivered: {error}",
                    visitor_ids.len()
                ),
            );
            for id in visitor_ids {
                t.error(Some(id), format!("not delivered: {error}"));
            }
        }
        if !pushed.is_empty() {
            let stored = lock(self.state).store_hashes(&pushed, self.mark);
            if let Err(e) = stored {
                self.state_failed(e);
            }
        }
    }
}

/// What pushing one batch (and its halves, after a 408) came to.
#[derive(Default)]
struct BatchOutcome {
    sent: u64,
    accepted: Vec<Accepted>,
    failed: Vec<(PendoError, Vec<String>)>,
    /// Pendo refused what every batch would carry (the key, a field): the run must stop.
    refused: Option<Refusal>,
}

/// Why Pendo refuses every batch, in words.
#[derive(Debug)]
struct Refusal(String);

/// A (part of a) batch Pendo accepted: its answer, and the visitors sent with their hashes.
struct Accepted {
    response: PushResponse,
    sent: Vec<(String, u64)>,
}

/// Pushes records; on a 408 splits them in halves and pushes each, down to single records.
async fn push_records(
    pendo: &PendoClient,
    mapping: &Mapping,
    records: &[Record],
    hashes: &[u64],
    out: &mut BatchOutcome,
) {
    let mut body = Vec::with_capacity(records.len() * 128);
    if let Err(e) = mapping.write_batch(records, &mut body) {
        out.sent += records.len() as u64;
        out.failed.push((
            PendoError::Malformed {
                status: 0,
                detail: format!("cannot serialize the batch: {e}"),
            },
            records.iter().map(|r| r.visitor_id.clone()).collect(),
        ));
        return;
    }
    match pendo.push(body.into()).await {
        Ok(response) => {
            out.sent += records.len() as u64;
            out.accepted.push(Accepted {
                response,
                sent: records
                    .iter()
                    .zip(hashes)
                    .map(|(r, h)| (r.visitor_id.clone(), *h))
                    .collect(),
            });
        }
        Err(error @ (PendoError::Unauthorized | PendoError::Forbidden)) => {
            refuse(error, records, out);
        }
        Err(PendoError::Status {
            status: 400,
            detail,
        }) if crate::pendo::unknown_field(&detail, mapping).is_some() => {
            let field = crate::pendo::unknown_field(&detail, mapping)
                .unwrap_or_default()
                .to_owned();
            refuse(PendoError::UnknownField { field, detail }, records, out);
        }
        Err(error @ (PendoError::Timeout | PendoError::Status { status: 400, .. }))
            if records.len() > 1 =>
        {
            let why = match error {
                PendoError::Timeout => "Pendo answered 408 (call too long)",
                _ => "Pendo refused the batch (HTTP 400)",
            };
            tracing::warn!(
                records = records.len(),
                "{why}: splitting the batch in halves to find what it refuses"
            );
            let mid = records.len() / 2;
            let (a, b) = records.split_at(mid);
            let (ha, hb) = hashes.split_at(mid.min(hashes.len()));
            Box::pin(push_records(pendo, mapping, a, ha, out)).await;
            Box::pin(push_records(pendo, mapping, b, hb, out)).await;
        }
        Err(error) => {
            tracing::warn!(records = records.len(), "batch not delivered: {error}");
            out.sent += records.len() as u64;
            out.failed.push((
                error,
                records.iter().map(|r| r.visitor_id.clone()).collect(),
            ));
        }
    }
}

/// Records a batch Pendo refused in a way every batch would be refused.
fn refuse(error: PendoError, records: &[Record], out: &mut BatchOutcome) {
    tracing::warn!(records = records.len(), "batch not delivered: {error}");
    out.sent += records.len() as u64;
    out.refused
        .get_or_insert_with(|| Refusal(error.to_string()));
    out.failed.push((
        error,
        records.iter().map(|r| r.visitor_id.clone()).collect(),
    ));
}

/// One entry of the `errors` of Pendo's answer: the visitor it names, if any, and its text.
fn pendo_error(e: &Value) -> (Option<String>, String) {
    let (visitor_id, text) = match e {
        Value::String(s) => (None, s.clone()),
        Value::Object(o) => (
            ["visitorId", "visitor_id", "id"]
                .iter()
                .find_map(|k| o.get(*k))
                .and_then(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }),
            o.get("message")
                .or_else(|| o.get("error"))
                .or_else(|| o.get("reason"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| e.to_string()),
        ),
        other => (None, other.to_string()),
    };
    (visitor_id, text.chars().take(300).collect())
}

/// Builds the record from the tally.
fn finish(
    started_at: OffsetDateTime,
    trigger: Trigger,
    mode: Mode,
    plan: &Plan,
    mut t: Tally,
    okta_error: Option<(String, u16)>,
    stop: Option<Stop>,
) -> RunRecord {
    let dry = mode == Mode::DryRun;
    let delivered_any = t.batches_ok > 0;
    let users_failed = if dry {
        0
    } else {
        t.records_processed.saturating_sub(t.users_updated)
    };
    // Records Pendo neither updated nor reported missing: its answers do not account for them.
    let unconfirmed = users_failed.saturating_sub(t.users_missing);
    let status = match &stop {
        Some(Stop::Cancelled | Stop::OutputClosed) => Status::Interrupted,
        Some(Stop::Fatal(_) | Stop::Refused(_)) => Status::Failed,
        Some(Stop::Held(_)) => Status::Held,
        None if okta_error.is_some() || t.batches_failed > 0 || unconfirmed > 0 => {
            if delivered_any {
                Status::Partial
            } else {
                Status::Failed
            }
        }
        None => Status::Succeeded,
    };
    // 200 when Pendo accepted every batch; else the last failing HTTP status (0: none).
    let status_code = match (t.last_failure_status, &okta_error, &stop) {
        (Some(code), _, _) => code,
        (None, Some((_, code)), _) => *code,
        (None, None, Some(Stop::Fatal(_) | Stop::Held(_))) => 0,
        (None, None, _) if dry => 0,
        (None, None, _) => 200,
    };

    let mut run_errors = Vec::new();
    let mut message = String::new();
    match &stop {
        Some(Stop::Cancelled) => message.push_str("Interrupted: reading stopped early. "),
        Some(Stop::OutputClosed) => {
            message.push_str("Interrupted: the dry-run output was closed. ")
        }
        Some(Stop::Fatal(f)) => {
            message.push_str(&format!("{f}. "));
            run_errors.push(f.clone());
        }
        Some(Stop::Held(why)) => {
            message.push_str(&format!(
                "Held by the guard, nothing pushed: {why}. Fix the config, or run \
                 `okta-pendo-sync sync --force` to push anyway (guard.enabled = false turns the \
                 guard off). "
            ));
            run_errors.push(format!("held by the guard: {why}"));
        }
        Some(Stop::Refused(Refusal(why))) => {
            message.push_str(&format!(
                "Stopped after {} users: {why}; reading Okta stopped at once, since no batch \
                 could be delivered. ",
                count(t.okta_users_read)
            ));
            run_errors.push(why.clone());
        }
        None => {}
    }
    if let Some((e, _)) = &okta_error {
        message.push_str(&format!(
            "Reading Okta stopped after {} users: {e}. ",
            count(t.okta_users_read)
        ));
        run_errors.push(e.clone());
    }
    if plan.is_full() {
        message.push_str(&format!("Full run ({}). ", plan.why));
    } else {
        message.push_str(&format!("Incremental run ({}). ", plan.why));
    }
    if dry {
        message.push_str(&format!(
            "Dry run: read {} users from Okta; {} records would be sent to Pendo",
            count(t.okta_users_read),
            count(t.records_processed)
        ));
    } else {
        message.push_str(&format!(
            "Read {} users from Okta; sent {} to Pendo: {} updated",
            count(t.okta_users_read),
            count(t.records_processed),
            count(t.users_updated),
        ));
        if t.users_missing > 0 {
            message.push_str(&format!(", {} not found in Pendo", count(t.users_missing)));
        }
        let undelivered = unconfirmed.saturating_sub(t.unconfirmed);
        if undelivered > 0 {
            message.push_str(&format!(", {} failed", count(undelivered)));
        }
        if t.unconfirmed > 0 {
            message.push_str(&format!(
                ", {} accepted but not confirmed as updated by Pendo's answer",
                count(t.unconfirmed)
            ));
        }
    }
    if t.users_unchanged > 0 {
        message.push_str(&format!("; {} unchanged", count(t.users_unchanged)));
    }
    if t.users_skipped > 0 {
        let why: Vec<String> = [
            (t.users_without_id, "without a visitor ID"),
            (t.users_bad_value, "with a value of the wrong type"),
            (t.users_duplicate, "with a duplicate visitor ID"),
            (t.users_unsent, "not sent because the run stopped"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{} {what}", count(*n)))
        .collect();
        message.push_str(&format!(
            "; {} skipped ({})",
            count(t.users_skipped),
            why.join(", ")
        ));
    }
    if t.batches_failed > 0 {
        message.push_str(&format!(
            "; {} of {} batches not delivered",
            count(t.batches_failed),
            count(t.batches_failed + t.batches_ok)
        ));
    }
    message.push('.');
    if let Some(why) = &t.guard_note {
        message.push_str(&format!(" A real run would be held by the guard: {why}."));
    }

    // Run-level errors come first, whatever the cap left room for.
    let mut errors: Vec<RunError> = run_errors
        .into_iter()
        .map(|message| RunError {
            visitor_id: None,
            message,
        })
        .collect();
    errors.append(&mut t.errors);
    if t.errors_dropped > 0 {
        errors.push(RunError {
            visitor_id: None,
            message: format!("{} more errors not kept", count(t.errors_dropped)),
        });
    }

    RunRecord {
        id: 0,
        trigger,
        mode,
        started_at,
        finished_at: OffsetDateTime::now_utc(),
        status,
        status_code,
        message,
        okta_users_read: t.okta_users_read,
        records_processed: t.records_processed,
        users_updated: t.users_updated,
        users_failed,
        users_missing: t.users_missing,
        missing_visitor_ids: t.missing_visitor_ids,
        users_unchanged: t.users_unchanged,
        users_skipped: t.users_skipped,
        errors,
    }
}

/// The user IDs seen in this run, kept on disk (a private temporary SQLite database), so that a
/// user in several groups is read once without holding every ID in memory.
struct SeenIds {
    conn: Option<rusqlite::Connection>,
}

impl SeenIds {
    fn new() -> Self {
        let conn = rusqlite::Connection::open("")
            .and_then(|c| {
                c.execute_batch(
                    "PRAGMA cache_size = -2048;
                     CREATE TABLE seen (id TEXT PRIMARY KEY) WITHOUT ROWID;",
                )
                .map(|()| c)
            })
            .map_err(|e| {
                tracing::warn!(
                    "cannot open a temporary database to skip users found in several groups \
                     ({e}); such users are pushed once per group"
                )
            })
            .ok();
        SeenIds { conn }
    }

    /// True the first time an ID is offered (and whenever the store fails: pushing a user twice
    /// is harmless, skipping one is not).
    fn first_time(&mut self, id: &str) -> bool {
        let Some(conn) = &self.conn else { return true };
        match conn
            .prepare_cached("INSERT OR IGNORE INTO seen (id) VALUES (?1)")
            .and_then(|mut s| s.execute([id]))
        {
            Ok(n) => n == 1,
            Err(e) => {
                tracing::warn!(
                    "temporary ID store failed ({e}); users in several groups may be pushed twice"
                );
                self.conn = None;
                true
            }
        }
    }
}
