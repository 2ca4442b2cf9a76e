//! The consuming side of a run: each page's users are mapped, checked (one record per
//! visitor, unchanged since the last push, the guard's sample) and batched; batches are pushed
//! with at most `concurrency` in flight, and Pendo's answers are tallied.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::guard::Guard;
use super::lock;
use super::push::{Accepted, BatchOutcome, pendo_error, push_records};
use super::seen::{SeenIds, SeenVisitors};
use super::{Clients, Plan, RunOptions};
use crate::config::{Settings, UserScope};
use crate::mapping::{AttributePath, Located};
use crate::mapping::{Mapping, Record, Unsendable};
use crate::okta::Page;
use crate::okta::projection::{Locator, User, Users};
use crate::pendo::PendoClient;
use crate::report::{Stop, Tally};
use crate::state::{State, StateError, SyncPoint};

/// Hashes of pushed visitors written to the state per transaction (and at the end of the run):
/// fewer transactions cost less, and a crash loses at most these, which only means pushing
/// those visitors again.
const STORE_EVERY: usize = 8192;

pub(super) struct Pipeline<'s, 'w> {
    pub(super) settings: &'s Settings,
    pub(super) mapping: Arc<Mapping>,
    pub(super) pendo: Arc<PendoClient>,
    pub(super) tally: Tally,
    pub(super) batch: Vec<Record>,
    /// The values hash of each record in `batch`.
    pub(super) hashes: Vec<u64>,
    pub(super) state: &'s Mutex<State>,
    /// Incremental: skip users whose values match what was last pushed.
    pub(super) compare: bool,
    /// A full run: what it pushes is staged, and replaces the stored hashes when it settles.
    pub(super) full: bool,
    /// Visitors pushed and their values hashes, not yet written to the state.
    pub(super) unstored: Vec<(String, u64)>,
    /// Incremental over Okta's default list: leave out deprovisioned users, as the full list
    /// does.
    pub(super) drop_deprovisioned: bool,
    /// A state failure (reading or storing hashes): the run may not move the sync point.
    pub(super) state_trouble: Option<StateError>,
    pub(super) inflight: JoinSet<BatchOutcome>,
    /// Records per push task, to account for a task that ends without an outcome.
    pub(super) inflight_sizes: HashMap<tokio::task::Id, u64>,
    pub(super) dry_out: Option<&'w mut (dyn Write + Send)>,
    /// Okta user IDs met, when a user can be listed more than once (several groups).
    pub(super) seen: Option<SeenIds>,
    /// Visitor IDs queued in this run: one record per visitor.
    pub(super) visitors: SeenVisitors,
    /// Per mapped field (in the mapping's order), how many records sent had a value for it.
    pub(super) with_value: Vec<u64>,
    /// Okta's clock at its first answer of the run (the `Date` of the first page).
    pub(super) okta_clock: Option<DateTime<Utc>>,
    /// The mark stored with this run's hashes.
    pub(super) mark: i64,
    /// The fingerprint to record as unsettled before the first push, when the settings differ
    /// from the last successful run's.
    pub(super) unsettle: Option<String>,
    /// A real run notes that it is pushing before its first push (`State::mark_pushing`), so
    /// that the run after a crash knows the state may have missed what was pushed.
    pub(super) note_pushing: bool,
    /// A full run's sample, held back until the guard has judged it.
    pub(super) guard: Option<Guard>,
    pub(super) stop: Option<Stop>,
    pub(super) cancel: CancellationToken,
    pub(super) grace: Duration,
    /// Set when cancellation is first seen: pushes in flight must end by then.
    pub(super) grace_deadline: Option<Instant>,
}

/// Where a page's users keep what a run reads: the mapped attributes and the visitor ID, `id`
/// and `status`.
struct Where {
    record: Located,
    id: Locator,
    status: Locator,
}

impl Where {
    fn of(users: &Users, mapping: &Mapping, visitor_id_key: &AttributePath) -> Self {
        let fixed =
            |path: &str| AttributePath::parse(path).map_or(Locator::NotRead, |p| users.locate(&p));
        Where {
            record: mapping.locate(users, visitor_id_key),
            id: fixed("id"),
            status: fixed("status"),
        }
    }
}

impl<'s, 'w> Pipeline<'s, 'w> {
    /// A pipeline for one run, as its plan says.
    #[allow(clippy::too_many_arguments)] // the run's whole context, handed over once
    pub(super) fn new(
        settings: &'s Settings,
        clients: &Clients,
        opts: RunOptions,
        plan: &Plan,
        point: &SyncPoint,
        dry_out: Option<&'w mut (dyn Write + Send)>,
        cancel: CancellationToken,
        state: &'s Mutex<State>,
    ) -> Self {
        let full = plan.is_full();
        // A real run under settings other than the last successful run's leaves a mark before
        // its first push, so that the runs after it stay full until one succeeds.
        let unsettle = (!opts.dry_run
            && point.fingerprint.as_deref() != Some(plan.fingerprint.as_str()))
        .then(|| plan.fingerprint.clone());
        let guard = (full && settings.guard.enabled && !opts.force).then(|| {
            // Without a count of known visitors the second rule stays off (a count of 0).
            let known = lock(state).visitor_count().unwrap_or(0);
            Guard::new(settings.guard.sample.get(), point, known, settings)
        });
        let batch_size = settings.pendo.batch_size.get();
        Pipeline {
            settings,
            mapping: Arc::new(settings.mapping.clone()),
            pendo: clients.pendo.clone(),
            tally: Tally::default(),
            batch: Vec::with_capacity(batch_size),
            hashes: Vec::with_capacity(batch_size),
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
            mark: 0,
            unsettle,
            note_pushing: !opts.dry_run,
            guard,
            stop: None,
            cancel,
            grace: opts.grace,
            grace_deadline: None,
            state,
            compare: !full,
            full,
            unstored: Vec::new(),
            drop_deprovisioned: !full && settings.okta.scope == UserScope::All,
            state_trouble: None,
        }
    }
}

impl Pipeline<'_, '_> {
    /// Maps and pushes every page, then waits for the pushes.
    pub(super) async fn consume(&mut self, mut pages: mpsc::Receiver<Page>) {
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
            // The page is mapped first (mapping is pure), so that its visitor IDs are looked up
            // in the run's set together.
            let at = Where::of(
                &page.users,
                &self.mapping,
                &self.settings.sync.visitor_id_key,
            );
            let mapped: Vec<Result<Record, Unsendable>> = page
                .users
                .iter()
                .filter_map(|user| self.read(&user, &at))
                .collect();
            let records = mapped.iter().filter_map(|m| m.as_ref().ok());
            let mut first = self
                .visitors
                .first_times(records.map(|r| r.visitor_id.as_str()))
                .into_iter();
            for user in mapped {
                let user = user.map(|record| (record, first.next() != Some(false)));
                self.user(user).await;
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
        self.store_pushed();
        if let Some(out) = self.dry_out.as_mut()
            && let Err(e) = out.flush()
        {
            self.output_failed(e);
        }
    }

    pub(super) fn state_failed(&mut self, e: StateError) {
        if self.state_trouble.is_none() {
            tracing::error!("{e}");
            self.tally.error(None, format!("state: {e}"));
            self.state_trouble = Some(e);
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
            Stop::OutputFailed(e)
        };
        if !matches!(self.stop, Some(Stop::OutputFailed(_))) {
            self.stop = Some(stop);
        }
    }

    /// A user of the page as a run reads it: `None` when it is left out (met already in
    /// another group, or deprovisioned where the full list would not have it), else its record
    /// or why it cannot be sent.
    fn read(&mut self, user: &User<'_>, at: &Where) -> Option<Result<Record, Unsendable>> {
        if let Some(seen) = &mut self.seen
            && let Some(id) = user.get(&at.id).text()
            && !seen.first_time(&id)
        {
            return None;
        }
        if self.drop_deprovisioned
            && user.get(&at.status).text().as_deref() == Some("DEPROVISIONED")
        {
            return None;
        }
        Some(
            self.mapping
                .map(user, &at.record, self.settings.sync.on_null),
        )
    }

    /// Handles a user read: its record, and whether it is the first of its visitor in this run.
    async fn user(&mut self, user: Result<(Record, bool), Unsendable>) {
        self.tally.counts.okta_users_read += 1;
        match user {
            Ok((record, first)) => {
                if !first {
                    self.tally.counts.users_skipped += 1;
                    self.tally.users_duplicate += 1;
                    let message = "not sent: duplicate visitor ID (an earlier user of this run \
                                   has it, and Pendo gets one record per visitor)";
                    self.tally.error(Some(record.visitor_id), message);
                    return;
                }
                let hash = record.values_hash();
                if self.compare {
                    let stored = lock(self.state).visitor_hash(&record.visitor_id);
                    match stored {
                        Ok(Some(h)) if h == hash => {
                            self.tally.counts.users_unchanged += 1;
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
                self.tally.counts.users_skipped += 1;
                self.tally.users_without_id += 1;
            }
            Err(Unsendable::BadValue {
                visitor_id,
                message,
            }) => {
                self.tally.counts.users_skipped += 1;
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
            self.tally.counts.records_processed += 1;
            let written = out
                .write_all(record.json())
                .and_then(|()| out.write_all(b"\n"));
            if let Err(e) = written {
                self.output_failed(e);
            }
            return;
        }
        record.count_values(&mut self.with_value);
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
        self.tally.counts.users_skipped += n;
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
        let mut records = std::mem::replace(
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
        if std::mem::take(&mut self.note_pushing) {
            let noted = lock(self.state).mark_pushing(self.mark);
            if let Err(e) = noted {
                self.state_failed(e);
            }
        }
        let size = records.len() as u64;
        let pendo = self.pendo.clone();
        let mapping = self.mapping.clone();
        let handle = self.inflight.spawn(async move {
            let mut outcome = BatchOutcome::default();
            push_records(&pendo, &mapping, &mut records, &hashes, &mut outcome).await;
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
                t.counts.records_processed += size;
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
                tracing::error!("{error}: no more reading, nothing more is pushed");
            }
            if !matches!(self.stop, Some(Stop::Refused(_))) {
                self.stop = Some(Stop::Refused(Box::new(error)));
            }
        }
        let mut pushed: Vec<(String, u64)> = Vec::new();
        let t = &mut self.tally;
        t.counts.records_processed += outcome.sent;
        for Accepted { response, mut sent } in outcome.accepted {
            t.batches_ok += 1;
            t.counts.users_updated += response.updated;
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
        self.unstored.append(&mut pushed);
        if self.unstored.len() >= STORE_EVERY {
            self.store_pushed();
        }
    }

    /// Writes the hashes of the visitors pushed since the last time to the state.
    fn store_pushed(&mut self) {
        if self.unstored.is_empty() {
            return;
        }
        let mut state = lock(self.state);
        let stored = if self.full {
            state.stage_hashes(&self.unstored, self.mark)
        } else {
            state.store_hashes(&self.unstored, self.mark)
        };
        drop(state);
        self.unstored.clear();
        if let Err(e) = stored {
            self.state_failed(e);
        }
    }
}
