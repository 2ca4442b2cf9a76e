//! One run: Okta pages stream in, each user is mapped, records are batched and pushed to Pendo
//! with bounded concurrency, and the outcome is tallied into a [`RunRecord`].
//!
//! ```text
//! reader task ──pages (bounded channel)──► map + batch ──batches (≤ concurrency in flight)──► Pendo
//! ```
//! The next Okta page is fetched while earlier users are mapped and pushed; the bounded channel
//! and the cap on pushes in flight keep memory flat however many users there are.

use std::io::Write;
use std::sync::Arc;

use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::{Settings, UserScope};
use crate::mapping::{Mapping, Record, Unsendable};
use crate::okta::{OktaClient, OktaError, Page};
use crate::pendo::{PendoClient, PendoError, PushResponse};
use crate::report::{Mode, RunRecord, Status, Tally, Trigger, count};

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
}

/// Runs one sync and returns its record (not yet stored). `dry_out` receives the JSON lines of
/// a dry run.
pub async fn run(
    settings: &Settings,
    clients: &Clients,
    opts: RunOptions,
    dry_out: Option<&mut (dyn Write + Send)>,
) -> RunRecord {
    let started_at = OffsetDateTime::now_utc();
    let mode = if opts.dry_run {
        Mode::DryRun
    } else {
        Mode::Full
    };
    let mapping = Arc::new(settings.mapping.clone());

    let (page_tx, page_rx) = mpsc::channel(PAGES_AHEAD);
    let reader = tokio::spawn(read_pages(
        clients.okta.clone(),
        clients.okta.start_urls(&settings.okta.scope),
        page_tx,
    ));

    let mut pipeline = Pipeline {
        settings,
        mapping,
        pendo: clients.pendo.clone(),
        tally: Tally::default(),
        batch: Vec::with_capacity(settings.pendo.batch_size.get()),
        inflight: JoinSet::new(),
        dry_out,
        seen: match &settings.okta.scope {
            UserScope::Groups(ids) if ids.len() > 1 => Some(SeenIds::new()),
            _ => None,
        },
        fatal: None,
    };
    let okta_error = pipeline.consume(page_rx).await;
    reader.abort();
    let Pipeline { tally, fatal, .. } = pipeline;
    finish(started_at, opts.trigger, mode, tally, okta_error, fatal)
}

/// Follows each start URL's `next` links, sending pages until the end, an error, or the
/// receiver going away.
async fn read_pages(
    okta: Arc<OktaClient>,
    starts: Vec<url::Url>,
    tx: mpsc::Sender<Result<Page, OktaError>>,
) {
    for start in starts {
        let mut next = Some(start);
        while let Some(url) = next.take() {
            match okta.page(&url).await {
                Ok(mut page) => {
                    tracing::debug!(users = page.users.len(), path = url.path(), "okta page");
                    let link = std::mem::replace(&mut page.next, Ok(None));
                    if tx.send(Ok(page)).await.is_err() {
                        return;
                    }
                    match link {
                        Ok(link) => next = link,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    }
}

struct Pipeline<'s, 'w> {
    settings: &'s Settings,
    mapping: Arc<Mapping>,
    pendo: Arc<PendoClient>,
    tally: Tally,
    batch: Vec<Record>,
    inflight: JoinSet<BatchOutcome>,
    dry_out: Option<&'w mut (dyn Write + Send)>,
    seen: Option<SeenIds>,
    /// A failure on our side that ends the run (the dry-run output cannot be written).
    fatal: Option<String>,
}

impl Pipeline<'_, '_> {
    /// Maps and pushes every page; returns the Okta error that ended the read early, if any.
    async fn consume(
        &mut self,
        mut pages: mpsc::Receiver<Result<Page, OktaError>>,
    ) -> Option<OktaError> {
        let mut okta_error = None;
        'pages: while let Some(page) = pages.recv().await {
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    okta_error = Some(e);
                    break;
                }
            };
            for user in page.users {
                self.user(&user).await;
                if self.fatal.is_some() {
                    break 'pages;
                }
            }
            while let Some(done) = self.inflight.try_join_next() {
                self.account(done);
            }
        }
        drop(pages);
        if self.fatal.is_none() {
            self.flush().await;
        }
        while let Some(done) = self.inflight.join_next().await {
            self.account(done);
        }
        if let Some(out) = self.dry_out.as_mut()
            && let Err(e) = out.flush()
        {
            self.fatal
                .get_or_insert(format!("cannot write the dry-run output: {e}"));
        }
        okta_error
    }

    async fn user(&mut self, user: &Value) {
        if let Some(seen) = &mut self.seen
            && let Some(id) = user.get("id").and_then(Value::as_str)
            && !seen.first_time(id)
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
                if let Some(out) = self.dry_out.as_mut() {
                    let mut line = Vec::with_capacity(256);
                    let written = self
                        .mapping
                        .write_record(&record, &mut line)
                        .map_err(std::io::Error::from)
                        .and_then(|()| {
                            line.push(b'\n');
                            out.write_all(&line)
                        });
                    match written {
                        Ok(()) => self.tally.records_processed += 1,
                        Err(e) => {
                            self.fatal = Some(format!("cannot write the dry-run output: {e}"));
                        }
                    }
                    return;
                }
                self.batch.push(record);
                if self.batch.len() >= self.settings.pendo.batch_size.get() {
                    self.flush().await;
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

    /// Hands the current batch to a push task, waiting while `concurrency` are in flight.
    async fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        while self.inflight.len() >= self.settings.pendo.concurrency.get() {
            match self.inflight.join_next().await {
                Some(done) => self.account(done),
                None => break,
            }
        }
        let records = std::mem::replace(
            &mut self.batch,
            Vec::with_capacity(self.settings.pendo.batch_size.get()),
        );
        let pendo = self.pendo.clone();
        let mapping = self.mapping.clone();
        self.inflight.spawn(async move {
            let mut outcome = BatchOutcome::default();
            push_records(&pendo, &mapping, &records, &mut outcome).await;
            outcome
        });
    }

    fn account(&mut self, done: Result<BatchOutcome, tokio::task::JoinError>) {
        let outcome = match done {
            Ok(o) => o,
            Err(e) => {
                self.tally.batches_failed += 1;
                self.tally.last_failure_status = Some(0);
                self.tally
                    .error(None, format!("a push task ended abnormally: {e}"));
                return;
            }
        };
        let t = &mut self.tally;
        t.records_processed += outcome.sent;
        for response in outcome.accepted {
            t.batches_ok += 1;
            t.users_updated += response.updated;
            t.missing(response.missing);
            for e in response.errors {
                t.error(None, format!("Pendo: {}", pendo_error_text(&e)));
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
    }
}

/// What pushing one batch (and its halves, after a 408) came to.
#[derive(Default)]
struct BatchOutcome {
    sent: u64,
    accepted: Vec<PushResponse>,
    failed: Vec<(PendoError, Vec<String>)>,
}

/// Pushes records; on a 408 splits them in halves and pushes each, down to single records.
async fn push_records(
    pendo: &PendoClient,
    mapping: &Mapping,
    records: &[Record],
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
            out.accepted.push(response);
        }
        Err(PendoError::Timeout) if records.len() > 1 => {
            tracing::warn!(
                records = records.len(),
                "Pendo answered 408 (call too long): splitting the batch in halves"
            );
            let (a, b) = records.split_at(records.len() / 2);
            Box::pin(push_records(pendo, mapping, a, out)).await;
            Box::pin(push_records(pendo, mapping, b, out)).await;
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

fn pendo_error_text(e: &Value) -> String {
    let text = match e {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("message")
            .or_else(|| o.get("error"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| e.to_string()),
        other => other.to_string(),
    };
    text.chars().take(300).collect()
}

/// Builds the record from the tally.
fn finish(
    started_at: OffsetDateTime,
    trigger: Trigger,
    mode: Mode,
    mut t: Tally,
    okta_error: Option<OktaError>,
    fatal: Option<String>,
) -> RunRecord {
    let dry = mode == Mode::DryRun;
    let delivered_any = t.batches_ok > 0;
    let status = if fatal.is_some() {
        Status::Failed
    } else if okta_error.is_some() || t.batches_failed > 0 {
        if delivered_any {
            Status::Partial
        } else {
            Status::Failed
        }
    } else {
        Status::Succeeded
    };
    let status_code = match (&okta_error, t.last_failure_status) {
        (_, Some(code)) => code,
        (Some(e), None) => e.http_status(),
        (None, None) if dry => 0,
        (None, None) => 200,
    };
    let users_failed = if dry {
        0
    } else {
        t.records_processed.saturating_sub(t.users_updated)
    };

    let mut message = String::new();
    if let Some(e) = &okta_error {
        message.push_str(&format!(
            "Reading Okta stopped after {} users: {e}. ",
            count(t.okta_users_read)
        ));
        t.error(None, e.to_string());
    }
    if let Some(f) = &fatal {
        message.push_str(&format!("{f}. "));
        t.error(None, f.clone());
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
        let other_failures = users_failed.saturating_sub(t.users_missing);
        if other_failures > 0 {
            message.push_str(&format!(", {} failed", count(other_failures)));
        }
    }
    if t.users_skipped > 0 {
        message.push_str(&format!(
            "; {} skipped ({} without a visitor ID, {} with a value of the wrong type)",
            count(t.users_skipped),
            count(t.users_without_id),
            count(t.users_bad_value)
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
    if t.errors_dropped > 0 {
        let dropped = t.errors_dropped;
        t.errors.push(crate::report::RunError {
            visitor_id: None,
            message: format!("{} more errors not kept", count(dropped)),
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
        errors: t.errors,
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
