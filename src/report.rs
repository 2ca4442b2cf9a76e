//! The run record: what one run did (the README's "Run records" table), the counts it carries,
//! the tally that builds it while the run goes, and the wording of its status and message.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The most visitor IDs kept in `missing_visitor_ids`.
pub const MAX_MISSING_IDS: usize = 10_000;
/// The most entries kept in `errors`.
pub const MAX_ERRORS: usize = 1_000;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Schedule,
    Startup,
    Manual,
}

/// How a run read and pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Full,
    Incremental,
    DryRun,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Succeeded,
    Partial,
    Failed,
    Interrupted,
    /// The guard stopped a full run before any push.
    Held,
}

impl Status {
    /// Every status, for metrics that show each.
    pub const ALL: [Status; 5] = [
        Status::Succeeded,
        Status::Partial,
        Status::Failed,
        Status::Interrupted,
        Status::Held,
    ];
}

macro_rules! str_enum {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
str_enum!(Trigger { Schedule => "schedule", Startup => "startup", Manual => "manual" });
str_enum!(Mode { Full => "full", Incremental => "incremental", DryRun => "dry-run" });
str_enum!(Status {
    Succeeded => "succeeded",
    Partial => "partial",
    Failed => "failed",
    Interrupted => "interrupted",
    Held => "held",
});

/// One entry of `errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub visitor_id: Option<String>,
    pub message: String,
}

/// The seven counts of a run, under the names the record, the state's columns, the metrics, the
/// log line and `history` all use. `okta_users_read = records_processed + users_unchanged +
/// users_skipped`; `users_failed = records_processed - users_updated`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Users read from Okta.
    pub okta_users_read: u64,
    /// Users sent to Pendo (a dry run: that would be sent).
    pub records_processed: u64,
    /// Pendo's `updated`, summed.
    pub users_updated: u64,
    /// Sent but not updated, the missing ones included (as Pendo counts them).
    pub users_failed: u64,
    /// Visitor IDs Pendo reported as not found.
    pub users_missing: u64,
    /// Read, but not sent: nothing changed since the last push.
    pub users_unchanged: u64,
    /// Read, but not sent: not sendable, a duplicate, or the run stopped first.
    pub users_skipped: u64,
}

impl Counts {
    /// Each count's name, in one fixed order (the state's column names).
    pub const NAMES: [&'static str; 7] = [
        "okta_users_read",
        "records_processed",
        "users_updated",
        "users_failed",
        "users_missing",
        "users_unchanged",
        "users_skipped",
    ];

    /// Each count as the `outcome` label of the `last_run_users` metric, in the same order.
    pub const OUTCOMES: [&'static str; 7] = [
        "read",
        "sent",
        "updated",
        "failed",
        "missing",
        "unchanged",
        "skipped",
    ];

    /// The counts in the order of [`NAMES`](Self::NAMES).
    pub fn values(&self) -> [u64; 7] {
        [
            self.okta_users_read,
            self.records_processed,
            self.users_updated,
            self.users_failed,
            self.users_missing,
            self.users_unchanged,
            self.users_skipped,
        ]
    }

    pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> {
        Self::NAMES.into_iter().zip(self.values())
    }

    pub fn from_named<E>(mut get: impl FnMut(&'static str) -> Result<u64, E>) -> Result<Self, E> {
        let [
            read,
            processed,
            updated,
            failed,
            missing,
            unchanged,
            skipped,
        ] = Self::NAMES;
        Ok(Counts {
            okta_users_read: get(read)?,
            records_processed: get(processed)?,
            users_updated: get(updated)?,
            users_failed: get(failed)?,
            users_missing: get(missing)?,
            users_unchanged: get(unchanged)?,
            users_skipped: get(skipped)?,
        })
    }
}

/// One run, as stored and as `history --json` prints it (the counts as top-level keys).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    /// Assigned by the state database; 0 before it is stored.
    pub id: i64,
    pub trigger: Trigger,
    pub mode: Mode,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub status: Status,
    /// 200 when Pendo accepted every batch; else the last failing HTTP status (0: none).
    pub status_code: u16,
    /// One human sentence: what happened.
    pub message: String,
    #[serde(flatten)]
    pub counts: Counts,
    /// The visitor IDs Pendo reported as not found, the first [`MAX_MISSING_IDS`].
    pub missing_visitor_ids: Vec<String>,
    /// What ended the run early first, then per-visitor errors, at most [`MAX_ERRORS`].
    pub errors: Vec<RunError>,
}

impl RunRecord {
    /// A run that could not start (its clients could not be built): failed, with the reason.
    pub fn not_started(trigger: Trigger, why: String) -> RunRecord {
        let now = Utc::now();
        RunRecord {
            id: 0,
            trigger,
            mode: Mode::Full,
            started_at: now,
            finished_at: now,
            status: Status::Failed,
            status_code: 0,
            message: format!("The run could not start: {why}."),
            counts: Counts::default(),
            missing_visitor_ids: Vec::new(),
            errors: vec![RunError {
                visitor_id: None,
                message: why,
            }],
        }
    }

    /// The exit code of a command that ran this: 0 when it succeeded, else 1.
    pub fn exit_code(&self) -> i32 {
        match self.status {
            Status::Succeeded => 0,
            _ => 1,
        }
    }
}

/// Counts kept while a run goes, turned into a [`RunRecord`] at the end.
#[derive(Debug, Default)]
pub struct Tally {
    /// The record's counts so far (`users_failed` is worked out at the end).
    pub counts: Counts,
    pub missing_visitor_ids: Vec<String>,
    pub users_without_id: u64,
    pub users_bad_value: u64,
    /// Skipped because an earlier user of the run has the same visitor ID.
    pub users_duplicate: u64,
    /// Read and mapped, but not sent because the run stopped first (counted as skipped).
    pub users_unsent: u64,
    /// A dry run's note: the guard would hold a real run, and why.
    pub guard_note: Option<String>,
    pub errors: Vec<RunError>,
    pub errors_dropped: u64,
    pub batches_ok: u64,
    pub batches_failed: u64,
    /// The last HTTP status of a failed request (0: no response).
    pub last_failure_status: Option<u16>,
    /// Records in accepted batches whose update Pendo's counts did not confirm.
    pub unconfirmed: u64,
}

impl Tally {
    /// Records an error, keeping at most [`MAX_ERRORS`].
    pub fn error(&mut self, visitor_id: Option<String>, message: impl Into<String>) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(RunError {
                visitor_id,
                message: message.into(),
            });
        } else {
            self.errors_dropped += 1;
        }
    }

    /// Records visitor IDs Pendo reported missing, keeping at most [`MAX_MISSING_IDS`].
    pub fn missing(&mut self, ids: Vec<String>) {
        self.counts.users_missing += ids.len() as u64;
        let room = MAX_MISSING_IDS.saturating_sub(self.missing_visitor_ids.len());
        self.missing_visitor_ids.extend(ids.into_iter().take(room));
    }
}

/// What ended a run before it read everything.
#[derive(Debug)]
pub enum Stop {
    /// Cancelled (a signal): an `interrupted` run.
    Cancelled,
    /// The dry-run output was closed by its reader (`| head`): an `interrupted` run.
    OutputClosed,
    /// The dry-run output cannot be written: a `failed` run.
    OutputFailed(std::io::Error),
    /// Pendo refused the credentials or a mapped field, so no batch could be delivered:
    /// reading stopped at once and the run failed.
    Refused(Box<dyn std::error::Error + Send + Sync>),
    /// The guard held a full run before any push: why, in words.
    Held(String),
}

/// The Okta error that ended a read early, and its HTTP status (0: no response).
#[derive(Debug)]
pub struct ReadFailure {
    pub error: Box<dyn std::error::Error + Send + Sync>,
    pub status: u16,
}

/// How a run went, besides its tally: what the record's status and wording are made of.
#[derive(Debug)]
pub struct Ending<'a> {
    pub started_at: DateTime<Utc>,
    pub trigger: Trigger,
    pub mode: Mode,
    /// Whether the run read in full.
    pub full: bool,
    /// Why it read in full or incrementally, in words.
    pub why: &'a str,
    pub read_failure: Option<ReadFailure>,
    pub stop: Option<Stop>,
}

impl RunRecord {
    /// The record of a finished run: its status, status code and message from how it ended,
    /// its counts and errors from the tally.
    pub fn finish(end: Ending<'_>, mut t: Tally) -> RunRecord {
        let dry = end.mode == Mode::DryRun;
        if !dry {
            t.counts.users_failed = t
                .counts
                .records_processed
                .saturating_sub(t.counts.users_updated);
        }
        let status = status(&end, &t);
        let status_code = match (t.last_failure_status, &end.read_failure, &end.stop) {
            (Some(code), _, _) => code,
            (None, Some(f), _) => f.status,
            (None, None, Some(Stop::OutputFailed(_) | Stop::Held(_))) => 0,
            (None, None, _) if dry => 0,
            (None, None, _) => 200,
        };
        let (ended, run_errors) = ending_words(&end, &t);
        let mut message = ended;
        message.push_str(&counts_words(&end, &t));

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
            trigger: end.trigger,
            mode: end.mode,
            started_at: end.started_at,
            finished_at: Utc::now(),
            status,
            status_code,
            message,
            counts: t.counts,
            missing_visitor_ids: t.missing_visitor_ids,
            errors,
        }
    }
}

/// Records Pendo neither updated nor reported missing: its answers do not account for them.
fn unconfirmed(t: &Tally) -> u64 {
    t.counts.users_failed.saturating_sub(t.counts.users_missing)
}

fn status(end: &Ending<'_>, t: &Tally) -> Status {
    match &end.stop {
        Some(Stop::Cancelled | Stop::OutputClosed) => Status::Interrupted,
        Some(Stop::OutputFailed(_) | Stop::Refused(_)) => Status::Failed,
        Some(Stop::Held(_)) => Status::Held,
        None if end.read_failure.is_some() || t.batches_failed > 0 || unconfirmed(t) > 0 => {
            if t.batches_ok > 0 {
                Status::Partial
            } else {
                Status::Failed
            }
        }
        None => Status::Succeeded,
    }
}

/// The message's first sentences (what ended the run early, how it read) and the run-level
/// errors.
fn ending_words(end: &Ending<'_>, t: &Tally) -> (String, Vec<String>) {
    let read = count(t.counts.okta_users_read);
    let mut errors = Vec::new();
    let mut message = match &end.stop {
        Some(Stop::Cancelled) => "Interrupted: reading stopped early. ".to_owned(),
        Some(Stop::OutputClosed) => "Interrupted: the dry-run output was closed. ".to_owned(),
        Some(Stop::OutputFailed(e)) => {
            let why = format!("cannot write the dry-run output: {e}");
            let text = format!("{why}. ");
            errors.push(why);
            text
        }
        Some(Stop::Held(why)) => {
            errors.push(format!("held by the guard: {why}"));
            format!(
                "Held by the guard, nothing pushed: {why}. Fix the config, or run \
                 `okta-pendo-sync sync --force` to push anyway (guard.enabled = false turns the \
                 guard off). "
            )
        }
        Some(Stop::Refused(why)) => {
            errors.push(why.to_string());
            format!(
                "Stopped after {read} users: {why}; reading Okta stopped at once, since no batch \
                 could be delivered. "
            )
        }
        None => String::new(),
    };
    if let Some(f) = &end.read_failure {
        message.push_str(&format!(
            "Reading Okta stopped after {read} users: {}. ",
            f.error
        ));
        errors.push(f.error.to_string());
    }
    let how = if end.full { "Full" } else { "Incremental" };
    message.push_str(&format!("{how} run ({}). ", end.why));
    (message, errors)
}

/// The message's account of the counts.
fn counts_words(end: &Ending<'_>, t: &Tally) -> String {
    let c = &t.counts;
    let mut message = if end.mode == Mode::DryRun {
        format!(
            "Dry run: read {} users from Okta; {} records would be sent to Pendo",
            count(c.okta_users_read),
            count(c.records_processed)
        )
    } else {
        let mut m = format!(
            "Read {} users from Okta; sent {} to Pendo: {} updated",
            count(c.okta_users_read),
            count(c.records_processed),
            count(c.users_updated),
        );
        if c.users_missing > 0 {
            m.push_str(&format!(", {} not found in Pendo", count(c.users_missing)));
        }
        let undelivered = unconfirmed(t).saturating_sub(t.unconfirmed);
        if undelivered > 0 {
            m.push_str(&format!(", {} failed", count(undelivered)));
        }
        if t.unconfirmed > 0 {
            m.push_str(&format!(
                ", {} accepted but not confirmed as updated by Pendo's answer",
                count(t.unconfirmed)
            ));
        }
        m
    };
    if c.users_unchanged > 0 {
        message.push_str(&format!("; {} unchanged", count(c.users_unchanged)));
    }
    if c.users_skipped > 0 {
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
            count(c.users_skipped),
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
    message
}

/// The human form of `history`: one line per run, its message indented below.
pub fn write_table(
    out: &mut impl std::io::Write,
    runs: &[RunRecord],
    state_path: &std::path::Path,
) -> std::io::Result<()> {
    if runs.is_empty() {
        return writeln!(out, "No runs recorded yet in {}.", state_path.display());
    }
    writeln!(
        out,
        "{:>5}  {:<20}  {:<8}  {:<11}  {:<11}  {:>4}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>8}",
        "ID",
        "STARTED (UTC)",
        "TRIGGER",
        "MODE",
        "STATUS",
        "CODE",
        "READ",
        "SENT",
        "UPDATED",
        "FAILED",
        "MISSING",
        "SKIPPED",
        "TOOK"
    )?;
    for r in runs {
        let took = (r.finished_at - r.started_at).as_seconds_f64();
        writeln!(
            out,
            "{:>5}  {:<20}  {:<8}  {:<11}  {:<11}  {:>4}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>7.1}s",
            r.id,
            r.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            r.trigger.as_str(),
            r.mode.as_str(),
            r.status.as_str(),
            r.status_code,
            count(r.counts.okta_users_read),
            count(r.counts.records_processed),
            count(r.counts.users_updated),
            count(r.counts.users_failed),
            count(r.counts.users_missing),
            count(r.counts.users_skipped),
            took
        )?;
        writeln!(out, "       {}", r.message)?;
    }
    Ok(())
}

/// Formats a count with thousands separators: 12,345.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(read: u64, sent: u64, updated: u64) -> Tally {
        let mut t = Tally::default();
        t.counts.okta_users_read = read;
        t.counts.records_processed = sent;
        t.counts.users_updated = updated;
        t.counts.users_skipped = read - sent;
        t
    }

    fn ending(
        mode: Mode,
        read_failure: Option<ReadFailure>,
        stop: Option<Stop>,
    ) -> Ending<'static> {
        Ending {
            started_at: DateTime::UNIX_EPOCH,
            trigger: Trigger::Manual,
            mode,
            full: true,
            why: "the first run",
            read_failure,
            stop,
        }
    }

    fn io(kind: std::io::ErrorKind) -> std::io::Error {
        std::io::Error::new(kind, "pipe")
    }

    /// A name, a mode, a tally, a read failure and a stop; the status, status code and words
    /// expected of the record.
    type Case = (
        &'static str,
        Mode,
        Tally,
        Option<ReadFailure>,
        Option<Stop>,
        Status,
        u16,
        &'static [&'static str],
    );

    #[test]
    fn a_record_from_each_kind_of_ending() {
        let ok = || {
            let mut t = tally(100, 100, 100);
            t.batches_ok = 2;
            t
        };
        let failed_batch = || {
            let mut t = tally(100, 100, 50);
            t.batches_ok = 1;
            t.batches_failed = 1;
            t.last_failure_status = Some(422);
            t
        };
        let unconfirmed = || {
            let mut t = tally(100, 100, 97);
            t.batches_ok = 2;
            t.unconfirmed = 3;
            t
        };
        let read_failure = || ReadFailure {
            error: "the page is not JSON".into(),
            status: 0,
        };
        let refused: Box<dyn std::error::Error + Send + Sync> = "Pendo rejected the key".into();
        let held = tally(1000, 0, 0);
        // (name, mode, tally, read failure, stop) -> (status, status code, words in the message)
        let cases: Vec<Case> = vec![
            (
                "all through",
                Mode::Full,
                ok(),
                None,
                None,
                Status::Succeeded,
                200,
                &[
                    "Full run (the first run).",
                    "Read 100 users from Okta; sent 100 to Pendo: 100 updated.",
                ],
            ),
            (
                "a batch failed",
                Mode::Full,
                failed_batch(),
                None,
                None,
                Status::Partial,
                422,
                &["50 failed", "1 of 2 batches not delivered"],
            ),
            (
                "not confirmed",
                Mode::Full,
                unconfirmed(),
                None,
                None,
                Status::Partial,
                200,
                &["3 accepted but not confirmed"],
            ),
            (
                "the read failed midway",
                Mode::Full,
                ok(),
                Some(read_failure()),
                None,
                Status::Partial,
                0,
                &["Reading Okta stopped after 100 users: the page is not JSON."],
            ),
            (
                "the read failed at once",
                Mode::Full,
                tally(0, 0, 0),
                Some(read_failure()),
                None,
                Status::Failed,
                0,
                &["Reading Okta stopped after 0 users"],
            ),
            (
                "refused",
                Mode::Full,
                failed_batch(),
                None,
                Some(Stop::Refused(refused)),
                Status::Failed,
                422,
                &[
                    "Stopped after 100 users: Pendo rejected the key",
                    "reading Okta stopped at once",
                ],
            ),
            (
                "held",
                Mode::Full,
                held,
                None,
                Some(Stop::Held("the field \"title\" emptied".into())),
                Status::Held,
                0,
                &[
                    "Held by the guard, nothing pushed: the field \"title\" emptied",
                    "sync --force",
                ],
            ),
            (
                "cancelled",
                Mode::Full,
                ok(),
                None,
                Some(Stop::Cancelled),
                Status::Interrupted,
                200,
                &["Interrupted: reading stopped early."],
            ),
            (
                "output closed",
                Mode::DryRun,
                tally(10, 10, 0),
                None,
                Some(Stop::OutputClosed),
                Status::Interrupted,
                0,
                &[
                    "Interrupted: the dry-run output was closed.",
                    "Dry run: read 10 users from Okta; 10 records would be sent",
                ],
            ),
            (
                "output failed",
                Mode::DryRun,
                tally(10, 10, 0),
                None,
                Some(Stop::OutputFailed(io(std::io::ErrorKind::StorageFull))),
                Status::Failed,
                0,
                &["cannot write the dry-run output: pipe."],
            ),
            (
                "a dry run",
                Mode::DryRun,
                tally(10, 7, 0),
                None,
                None,
                Status::Succeeded,
                0,
                &["Dry run: read 10 users", "; 3 skipped"],
            ),
        ];
        for (name, mode, t, read_failure, stop, status, code, words) in cases {
            let r = RunRecord::finish(ending(mode, read_failure, stop), t);
            assert_eq!(r.status, status, "{name}: {}", r.message);
            assert_eq!(r.status_code, code, "{name}: {}", r.message);
            for w in words {
                assert!(
                    r.message.contains(w),
                    "{name}: {w:?} not in {:?}",
                    r.message
                );
            }
            let c = r.counts;
            assert_eq!(
                c.okta_users_read,
                c.records_processed + c.users_unchanged + c.users_skipped,
                "{name}"
            );
            if mode == Mode::DryRun {
                assert_eq!(c.users_failed, 0, "{name}");
            } else {
                assert_eq!(
                    c.users_failed,
                    c.records_processed - c.users_updated,
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn what_ended_a_run_comes_first_in_its_errors() {
        let mut t = tally(5, 5, 4);
        t.error(Some("ada@company.com".into()), "not delivered");
        let stop = Stop::Refused("Pendo rejected the key".into());
        let r = RunRecord::finish(ending(Mode::Full, None, Some(stop)), t);
        assert_eq!(r.errors[0].message, "Pendo rejected the key");
        assert_eq!(r.errors[0].visitor_id, None);
        assert_eq!(r.errors[1].visitor_id.as_deref(), Some("ada@company.com"));
    }

    #[test]
    fn skipped_users_are_explained_by_kind() {
        let mut t = tally(10, 4, 4);
        t.users_without_id = 1;
        t.users_duplicate = 2;
        t.users_unsent = 3;
        let r = RunRecord::finish(ending(Mode::Full, None, None), t);
        assert!(
            r.message.contains(
                "; 6 skipped (1 without a visitor ID, 2 with a duplicate visitor ID, 3 not sent \
                 because the run stopped)"
            ),
            "{}",
            r.message
        );
    }

    #[test]
    fn counts_have_one_name_each() {
        let c = Counts {
            okta_users_read: 1,
            records_processed: 2,
            users_updated: 3,
            users_failed: 4,
            users_missing: 5,
            users_unchanged: 6,
            users_skipped: 7,
        };
        let json = serde_json::to_value(c).unwrap();
        for (name, n) in c.named() {
            assert_eq!(json[name], n, "{name}");
        }
        let back = Counts::from_named(|name| Ok::<_, ()>(json[name].as_u64().unwrap())).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn counts_read_well() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
    }

    #[test]
    fn enums_round_trip() {
        for m in [Mode::Full, Mode::Incremental, Mode::DryRun] {
            assert_eq!(Mode::parse(m.as_str()), Some(m));
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
        }
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
