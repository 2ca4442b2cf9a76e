//! The run record: what one run did, as SPEC.md's table defines it, and the tally that builds
//! it while the run goes.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

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
    /// The guard stopped a full run before any push (SPEC "Runs").
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

/// One run, as stored and as `history --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Assigned by the state database; 0 before it is stored.
    pub id: i64,
    pub trigger: Trigger,
    pub mode: Mode,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    pub status: Status,
    pub status_code: u16,
    pub message: String,
    pub okta_users_read: u64,
    pub records_processed: u64,
    pub users_updated: u64,
    pub users_failed: u64,
    pub users_missing: u64,
    pub missing_visitor_ids: Vec<String>,
    pub users_unchanged: u64,
    pub users_skipped: u64,
    pub errors: Vec<RunError>,
}

impl RunRecord {
    /// A run that could not start (its clients could not be built): failed, with the reason.
    pub fn not_started(trigger: Trigger, why: String) -> RunRecord {
        let now = OffsetDateTime::now_utc();
        RunRecord {
            id: 0,
            trigger,
            mode: Mode::Full,
            started_at: now,
            finished_at: now,
            status: Status::Failed,
            status_code: 0,
            message: format!("The run could not start: {why}."),
            okta_users_read: 0,
            records_processed: 0,
            users_updated: 0,
            users_failed: 0,
            users_missing: 0,
            missing_visitor_ids: Vec::new(),
            users_unchanged: 0,
            users_skipped: 0,
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
    pub okta_users_read: u64,
    pub records_processed: u64,
    pub users_updated: u64,
    pub users_missing: u64,
    pub missing_visitor_ids: Vec<String>,
    pub users_unchanged: u64,
    pub users_skipped: u64,
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
        self.users_missing += ids.len() as u64;
        let room = MAX_MISSING_IDS.saturating_sub(self.missing_visitor_ids.len());
        self.missing_visitor_ids.extend(ids.into_iter().take(room));
    }
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
