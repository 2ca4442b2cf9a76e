//! The state database (SQLite): one record per run, with versioned schema migrations. Created
//! with its folder, readable by the owner only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::report::{Counts, Mode, RunError, RunRecord, Status, Trigger};

/// The schema, one step per version; `PRAGMA user_version` says how many have been applied.
const MIGRATIONS: &[&str] = &[
    // 1: run records.
    "CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        trigger TEXT NOT NULL,
        mode TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        status TEXT NOT NULL,
        status_code INTEGER NOT NULL,
        message TEXT NOT NULL,
        okta_users_read INTEGER NOT NULL,
        records_processed INTEGER NOT NULL,
        users_updated INTEGER NOT NULL,
        users_failed INTEGER NOT NULL,
        users_missing INTEGER NOT NULL,
        missing_visitor_ids TEXT NOT NULL,
        users_unchanged INTEGER NOT NULL,
        users_skipped INTEGER NOT NULL,
        errors TEXT NOT NULL
    );",
    // 2: incremental runs: per visitor, a hash of the values last pushed successfully; and
    // the run-wide sync point (cursor, mapping fingerprint, last full run).
    "CREATE TABLE visitors (
        visitor_id TEXT PRIMARY KEY,
        hash INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE sync_point (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;",
    // 3: which run last stored each visitor's hash, so that a successful full run can drop
    // the visitors it did not read.
    "ALTER TABLE visitors ADD COLUMN run INTEGER NOT NULL DEFAULT 0;",
];

/// `runs.started_at` as text that sorts as the instant does, to the nanosecond:
/// `YYYY-MM-DDTHH:MM:SS.fffffffff`. The stored form ([`rfc3339`]: UTC, `Z`) has 0, 3, 6 or 9
/// fractional digits, so the texts themselves do not sort (`:07Z` after `:07.5Z`), and
/// SQLite's `julianday` keeps only milliseconds.
const SORTABLE_START: &str = "(substr(started_at, 1, 19) || substr(CASE rtrim(substr(started_at, \
     20), 'Z') WHEN '' THEN '.' ELSE rtrim(substr(started_at, 20), 'Z') END || '000000000', 1, 10))";

/// How many run records are kept by default (`state.keep_runs`).
pub const DEFAULT_KEEP_RUNS: u32 = 10_000;

/// Where incremental runs stand.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncPoint {
    /// Users changed after this are read by the next incremental run (before the overlap).
    pub cursor: Option<DateTime<Utc>>,
    /// A fingerprint of the mapping and everything else that shapes what is sent, as of the
    /// last successful run.
    pub fingerprint: Option<String>,
    /// When the last successful full run started.
    pub last_full: Option<DateTime<Utc>>,
    /// The fingerprint of a run that began pushing under settings other than the last
    /// successful run's and has not been followed by a successful run: until one succeeds,
    /// every run is full, since Pendo may hold that run's values for users no incremental run
    /// would read.
    pub unsettled: Option<String>,
    /// Per mapped Pendo field, the share of the last successful full run's records that had a
    /// value for it (the guard's yardstick).
    pub field_shares: Vec<(String, f64)>,
}

/// What a run that got everything through settles: the point the next run starts from and,
/// for a full run, its mark (`store_hashes`'s `run`): visitors stored under another mark are
/// dropped, as the run did not read them.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub point: SyncPoint,
    pub full_run: Option<i64>,
}

/// Which run records `history` shows: all when empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    /// Only runs with one of these statuses (none: any).
    pub statuses: Vec<Status>,
    /// Only runs started at or after this.
    pub since: Option<DateTime<Utc>>,
}

impl RunFilter {
    pub fn is_empty(&self) -> bool {
        self.statuses.is_empty() && self.since.is_none()
    }
}

/// A failure of the state database, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create the state folder {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the state database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the state database {path} is damaged or not a state database ({source}); it was left \
         untouched: restore it from a backup or move it away to start afresh"
    )]
    Unreadable {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the state database {path} has schema version {found}, newer than this program's \
         {known}: run a newer okta-pendo-sync"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: usize,
    },
    #[error("the state database {path} failed: {source}")]
    Query {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("the state database {path} holds a record it cannot read: {detail}")]
    BadRecord { path: PathBuf, detail: String },
    #[error(
        "another okta-pendo-sync process{holder} is using the state database {path}: only one \
         may run per state file"
    )]
    Busy { path: PathBuf, holder: String },
    #[error("cannot lock the state database {path} through {lock}: {source}")]
    Lock {
        path: PathBuf,
        lock: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the state folder {path} may be written by other users (mode {mode:o}), who could \
         replace the database or plant links in it: run `chmod o-w` on it or choose another \
         state.path"
    )]
    OpenDir { path: PathBuf, mode: u32 },
}

pub struct State {
    conn: Connection,
    path: PathBuf,
    /// The lock file held while this process may write (none when opened read-only).
    _lock: Option<std::fs::File>,
    /// Run records beyond the newest this many are dropped as runs are stored.
    keep_runs: u32,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("path", &self.path).finish()
    }
}

impl State {
    /// Opens the database, creating it (and its folder, mode 0700) when missing, and brings its
    /// schema up to date. A file that is not a readable database is left untouched.
    pub fn open(path: &Path) -> Result<State, StateError> {
        Self::open_as(path, true)
    }

    /// Opens the database like [`open`](Self::open) but without the writer's lock: for one
    /// short write (a dry run's record) beside a process that holds it. SQLite's own locking
    /// keeps the write whole.
    pub fn open_unlocked(path: &Path) -> Result<State, StateError> {
        Self::open_as(path, false)
    }

    /// Opens the database to read only, without the lock (a dry run): an existing file
    /// read-only, or, when there is none yet, an empty database in memory.
    pub fn open_preview(path: &Path) -> Result<State, StateError> {
        if let Some(state) = Self::open_read_only(path)? {
            return Ok(state);
        }
        Self::prepared(Connection::open_in_memory(), path, None, false)
    }

    /// A state over a newly opened connection, its schema brought up to date.
    fn prepared(
        conn: rusqlite::Result<Connection>,
        path: &Path,
        lock: Option<std::fs::File>,
        existed: bool,
    ) -> Result<State, StateError> {
        let conn = conn.map_err(|source| StateError::Open {
            path: path.to_owned(),
            source,
        })?;
        let mut state = State {
            conn,
            path: path.to_owned(),
            _lock: lock,
            keep_runs: DEFAULT_KEEP_RUNS,
        };
        state.prepare(existed)?;
        Ok(state)
    }

    fn open_as(path: &Path, take_lock: bool) -> Result<State, StateError> {
        match path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => create_private_dir(dir)?,
            None => create_private_dir(Path::new("."))?,
        }
        let lock = if take_lock { Some(lock(path)?) } else { None };
        let existed = path.exists();
        let conn = Connection::open(path);
        restrict_file(path);
        // Companions left by an earlier process; new ones take the database file's mode.
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut companion = path.as_os_str().to_owned();
            companion.push(suffix);
            restrict_file(Path::new(&companion));
        }
        Self::prepared(conn, path, lock, existed)
    }

    /// Opens an existing database read-only, or `None` when there is none (nothing is created).
    pub fn open_read_only(path: &Path) -> Result<Option<State>, StateError> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(
            |source| StateError::Open {
                path: path.to_owned(),
                source,
            },
        )?;
        let state = State {
            conn,
            path: path.to_owned(),
            _lock: None,
            keep_runs: DEFAULT_KEEP_RUNS,
        };
        state
            .conn
            .busy_timeout(Duration::from_secs(5))
            .map_err(|e| state.query(e))?;
        let version = state.version()?;
        if version as usize > MIGRATIONS.len() {
            return Err(StateError::TooNew {
                path: state.path.clone(),
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        if (version as usize) < MIGRATIONS.len() {
            // Older schema: nothing this version can read without migrating; report no runs
            // only when it has no runs table at all.
            if version == 0 {
                return Ok(None);
            }
        }
        Ok(Some(state))
    }

    /// Keeps the newest `n` run records (at least one); older ones are dropped as runs are
    /// stored.
    pub fn keep_runs(mut self, n: u32) -> Self {
        self.keep_runs = n.max(1);
        self
    }

    fn query(&self, source: rusqlite::Error) -> StateError {
        StateError::Query {
            path: self.path.clone(),
            source,
        }
    }

    fn version(&self) -> Result<i64, StateError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|source| StateError::Unreadable {
                path: self.path.clone(),
                source,
            })
    }

    fn prepare(&mut self, existed: bool) -> Result<(), StateError> {
        self.conn
            .busy_timeout(Duration::from_secs(5))
            .map_err(|e| self.query(e))?;
        // Read before writing anything: a file that is not a database fails here, untouched.
        let version = self.version()?;
        if existed && version == 0 {
            let tables: i64 = self
                .conn
                .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
                .map_err(|source| StateError::Unreadable {
                    path: self.path.clone(),
                    source,
                })?;
            if tables > 0 {
                return Err(StateError::Unreadable {
                    path: self.path.clone(),
                    source: rusqlite::Error::InvalidQuery,
                });
            }
        }
        if version as usize > MIGRATIONS.len() {
            return Err(StateError::TooNew {
                path: self.path.clone(),
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        self.conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| self.query(e))?;
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| self.query(e))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self
                .conn
                .transaction()
                .map_err(|source| StateError::Query {
                    path: self.path.clone(),
                    source,
                })?;
            tx.execute_batch(sql)
                .and_then(|()| tx.pragma_update(None, "user_version", (i + 1) as i64))
                .and_then(|()| tx.commit())
                .map_err(|source| StateError::Query {
                    path: self.path.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Where incremental runs stand.
    pub fn sync_point(&self) -> Result<SyncPoint, StateError> {
        let get = |key: &str| -> Result<Option<String>, StateError> {
            self.conn
                .query_row("SELECT value FROM sync_point WHERE key = ?1", [key], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(|e| self.query(e))
        };
        let time = |v: Option<String>| v.and_then(|v| parse_rfc3339(&v));
        // Shares that do not read (an older or damaged entry) only turn the guard's first
        // rule off until the next successful full run.
        let field_shares = get("field_shares")?
            .and_then(|v| serde_json::from_str::<Vec<(String, f64)>>(&v).ok())
            .unwrap_or_default();
        Ok(SyncPoint {
            cursor: time(get("cursor")?),
            fingerprint: get("fingerprint")?,
            last_full: time(get("last_full")?),
            unsettled: get("unsettled")?,
            field_shares,
        })
    }

    /// Notes that a run began pushing under settings with this fingerprint, other than the last
    /// successful run's: runs stay full until one succeeds.
    pub fn mark_unsettled(&mut self, fingerprint: &str) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO sync_point (key, value) VALUES ('unsettled', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [fingerprint],
            )
            .map(|_| ())
            .map_err(|e| self.query(e))
    }

    /// How many visitors have a stored hash (pushed successfully and not dropped since).
    pub fn visitor_count(&self) -> Result<u64, StateError> {
        self.conn
            .query_row("SELECT count(*) FROM visitors", [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.query(e))
    }

    /// The hash of the values last pushed successfully to `visitor_id`.
    pub fn visitor_hash(&self, visitor_id: &str) -> Result<Option<u64>, StateError> {
        self.conn
            .prepare_cached("SELECT hash FROM visitors WHERE visitor_id = ?1")
            .and_then(|mut st| {
                st.query_row([visitor_id], |r| r.get::<_, i64>(0))
                    .optional()
            })
            .map(|h| h.map(|h| h as u64))
            .map_err(|e| self.query(e))
    }

    /// The mark of the run that last pushed `visitor_id` successfully (the `run` column: its
    /// start in Unix milliseconds), for `explain`.
    pub fn visitor_run(&self, visitor_id: &str) -> Result<Option<i64>, StateError> {
        self.conn
            .query_row(
                "SELECT run FROM visitors WHERE visitor_id = ?1",
                [visitor_id],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map_err(|e| self.query(e))
    }

    /// Remembers what was pushed successfully by the run marked `run`, in one transaction.
    pub fn store_hashes(&mut self, pushed: &[(String, u64)], run: i64) -> Result<(), StateError> {
        let path = self.path.clone();
        let fail = |source| StateError::Query {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(fail)?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO visitors (visitor_id, hash, run) VALUES (?1, ?2, ?3)
                     ON CONFLICT (visitor_id) DO UPDATE SET hash = excluded.hash, run = excluded.run",
                )
                .map_err(fail)?;
            for (id, hash) in pushed {
                st.execute(params![id, *hash as i64, run]).map_err(fail)?;
            }
        }
        tx.commit().map_err(fail)
    }

    /// Stores a finished run and, when given, what it settled, in one transaction; drops run
    /// records beyond the retention.
    pub fn finish_run(
        &mut self,
        r: &RunRecord,
        settled: Option<&Settled>,
    ) -> Result<i64, StateError> {
        let path = self.path.clone();
        let fail = |source| StateError::Query {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(fail)?;
        let id = insert_run(&tx, r).map_err(fail)?;
        tx.execute(
            "DELETE FROM runs WHERE id <= ?1",
            [id - i64::from(self.keep_runs)],
        )
        .map_err(fail)?;
        if let Some(Settled { point: p, full_run }) = settled {
            let set = |key: &str, value: Option<String>| -> rusqlite::Result<()> {
                match value {
                    Some(v) => tx
                        .execute(
                            "INSERT INTO sync_point (key, value) VALUES (?1, ?2)
                             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                            params![key, v],
                        )
                        .map(|_| ()),
                    None => Ok(()),
                }
            };
            set("cursor", p.cursor.map(rfc3339)).map_err(fail)?;
            set("fingerprint", p.fingerprint.clone()).map_err(fail)?;
            set("last_full", p.last_full.map(rfc3339)).map_err(fail)?;
            tx.execute("DELETE FROM sync_point WHERE key = 'unsettled'", [])
                .map_err(fail)?;
            if let Some(mark) = full_run {
                let shares = serde_json::to_string(&p.field_shares).unwrap_or_default();
                set("field_shares", Some(shares)).map_err(fail)?;
                // Visitors this full run did not read are gone from the scope.
                tx.execute("DELETE FROM visitors WHERE run != ?1", [mark])
                    .map_err(fail)?;
            }
        }
        tx.commit().map_err(fail)?;
        Ok(id)
    }

    /// Stores a finished run and returns its id.
    #[cfg(test)]
    pub fn insert_run(&mut self, r: &RunRecord) -> Result<i64, StateError> {
        self.finish_run(r, None)
    }

    /// The newest `limit` runs, newest first.
    pub fn runs(&self, limit: u32) -> Result<Vec<RunRecord>, StateError> {
        self.select_runs("TRUE", limit)
    }

    /// Runs matching `condition` (fixed SQL, no user input), newest first.
    fn select_runs(&self, condition: &str, limit: u32) -> Result<Vec<RunRecord>, StateError> {
        self.select_runs_with(condition, &[], limit)
    }

    /// Runs matching `condition`, whose placeholders `?2`, `?3`, ... take `args` in order
    /// (`?1` is the limit), newest first.
    fn select_runs_with(
        &self,
        condition: &str,
        args: &[&dyn rusqlite::ToSql],
        limit: u32,
    ) -> Result<Vec<RunRecord>, StateError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT id, trigger, mode, started_at, finished_at, status, status_code, message,
                    {}, missing_visitor_ids, errors
                 FROM runs WHERE {condition} ORDER BY id DESC LIMIT ?1",
                Counts::NAMES.join(", ")
            ))
            .map_err(|e| self.query(e))?;
        let params: Vec<&dyn rusqlite::ToSql> = std::iter::once(&limit as &dyn rusqlite::ToSql)
            .chain(args.iter().copied())
            .collect();
        let rows = stmt
            .query_map(params.as_slice(), |row| {
                Ok(RawRun {
                    id: row.get("id")?,
                    trigger: row.get("trigger")?,
                    mode: row.get("mode")?,
                    started_at: row.get("started_at")?,
                    finished_at: row.get("finished_at")?,
                    status: row.get("status")?,
                    status_code: row.get("status_code")?,
                    message: row.get("message")?,
                    counts: Counts::from_named(|name| {
                        row.get::<_, i64>(name).map(|n| n.max(0) as u64)
                    })?,
                    missing: row.get("missing_visitor_ids")?,
                    errors: row.get("errors")?,
                })
            })
            .map_err(|e| self.query(e))?;
        let mut out = Vec::new();
        for raw in rows {
            let raw = raw.map_err(|e| self.query(e))?;
            out.push(raw.into_record().map_err(|detail| StateError::BadRecord {
                path: self.path.clone(),
                detail,
            })?);
        }
        Ok(out)
    }

    /// The most recent run, if any.
    pub fn last_run(&self) -> Result<Option<RunRecord>, StateError> {
        Ok(self.runs(1)?.into_iter().next())
    }

    /// The newest `limit` runs that pass `filter`, newest first (the limit applies after it).
    pub fn runs_filtered(
        &self,
        filter: &RunFilter,
        limit: u32,
    ) -> Result<Vec<RunRecord>, StateError> {
        let mut condition = String::from("TRUE");
        let mut args: Vec<String> = Vec::new();
        if !filter.statuses.is_empty() {
            let marks: Vec<String> = filter
                .statuses
                .iter()
                .map(|s| {
                    args.push(s.as_str().to_owned());
                    format!("?{}", args.len() + 1)
                })
                .collect();
            condition.push_str(&format!(" AND status IN ({})", marks.join(", ")));
        }
        if let Some(since) = filter.since {
            args.push(since.format("%Y-%m-%dT%H:%M:%S%.9f").to_string());
            condition.push_str(&format!(" AND {SORTABLE_START} >= ?{}", args.len() + 1));
        }
        let args: Vec<&dyn rusqlite::ToSql> =
            args.iter().map(|a| a as &dyn rusqlite::ToSql).collect();
        self.select_runs_with(&condition, &args, limit)
    }

    /// The run with this id, if its record is kept.
    pub fn run(&self, id: i64) -> Result<Option<RunRecord>, StateError> {
        Ok(self
            .select_runs_with("id = ?2", &[&id], 1)?
            .into_iter()
            .next())
    }

    /// The run whose stored hashes carry `mark` (its start in Unix milliseconds, the
    /// `visitors.run` column), if its record is kept.
    pub fn run_marked(&self, mark: i64) -> Result<Option<RunRecord>, StateError> {
        let at = |ms: i64| DateTime::from_timestamp_millis(ms).map(rfc3339);
        let (Some(from), Some(to)) = (at(mark.saturating_sub(1)), at(mark.saturating_add(2)))
        else {
            return Ok(None);
        };
        // A window around the mark in SQL, then the exact millisecond here.
        let near = self.select_runs_with(
            "julianday(started_at) BETWEEN julianday(?2) AND julianday(?3)",
            &[&from, &to],
            16,
        )?;
        Ok(near
            .into_iter()
            .find(|r| r.mode != Mode::DryRun && r.started_at.timestamp_millis() == mark))
    }

    /// The newest run that was not a dry run, whatever its status (for notifications: whether
    /// the run after it is a recovery).
    pub fn last_real_run(&self) -> Result<Option<RunRecord>, StateError> {
        Ok(self.select_runs("mode != 'dry-run'", 1)?.into_iter().next())
    }

    /// The newest run that got through: not a dry run, and succeeded or partial.
    pub fn last_completed_run(&self) -> Result<Option<RunRecord>, StateError> {
        Ok(self
            .select_runs(
                "mode != 'dry-run' AND status IN ('succeeded', 'partial')",
                1,
            )?
            .into_iter()
            .next())
    }

    /// The newest run that succeeded, not a dry run.
    pub fn last_succeeded_run(&self) -> Result<Option<RunRecord>, StateError> {
        Ok(self
            .select_runs("mode != 'dry-run' AND status = 'succeeded'", 1)?
            .into_iter()
            .next())
    }
}

struct RawRun {
    id: i64,
    trigger: String,
    mode: String,
    started_at: String,
    finished_at: String,
    status: String,
    status_code: i64,
    message: String,
    counts: Counts,
    missing: String,
    errors: String,
}

impl RawRun {
    fn into_record(self) -> Result<RunRecord, String> {
        let id = self.id;
        let bad = |what: &str, v: &str| format!("run {id}: {what} \"{v}\" is not valid");
        let time = |v: &str, what: &str| parse_rfc3339(v).ok_or_else(|| bad(what, v));
        Ok(RunRecord {
            id,
            trigger: Trigger::parse(&self.trigger).ok_or_else(|| bad("trigger", &self.trigger))?,
            mode: Mode::parse(&self.mode).ok_or_else(|| bad("mode", &self.mode))?,
            started_at: time(&self.started_at, "started_at")?,
            finished_at: time(&self.finished_at, "finished_at")?,
            status: Status::parse(&self.status).ok_or_else(|| bad("status", &self.status))?,
            status_code: u16::try_from(self.status_code).unwrap_or(0),
            message: self.message,
            counts: self.counts,
            missing_visitor_ids: serde_json::from_str(&self.missing)
                .map_err(|e| format!("run {id}: missing_visitor_ids: {e}"))?,
            errors: serde_json::from_str::<Vec<RunError>>(&self.errors)
                .map_err(|e| format!("run {id}: errors: {e}"))?,
        })
    }
}

/// Takes the exclusive lock on `{path}.lock` (one writer per state file) and writes our PID
/// into it, for the message another process shows when refused. A symbolic link at the lock
/// path is refused, not followed (it could make us truncate a file elsewhere), and so is
/// anything that is not a regular file; the file is made owner-only through the open handle.
fn lock(path: &Path) -> Result<std::fs::File, StateError> {
    use std::io::{Read, Seek, Write};
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let fail = |source| StateError::Lock {
        path: path.to_owned(),
        lock: lock_path.clone(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Without waiting: a FIFO planted there would block the open.
        let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
        options.mode(0o600).custom_flags(flags.bits() as i32);
    }
    let mut file = options.open(&lock_path).map_err(|e| {
        if std::fs::symlink_metadata(&lock_path).is_ok_and(|m| m.file_type().is_symlink()) {
            fail(std::io::Error::other(
                "it is a symbolic link, which is not followed: remove it",
            ))
        } else {
            fail(e)
        }
    })?;
    let meta = file.metadata().map_err(fail)?;
    if !meta.is_file() {
        return Err(fail(std::io::Error::other(
            "it is not a regular file: remove it",
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o777 != 0o600 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(fail)?;
        }
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            let holder = if !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()) {
                format!(" (PID {pid})")
            } else {
                String::new()
            };
            return Err(StateError::Busy {
                path: path.to_owned(),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(fail(e)),
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| write!(file, "{}", std::process::id()))
        .map_err(fail)?;
    Ok(file)
}

fn insert_run(conn: &Connection, r: &RunRecord) -> rusqlite::Result<i64> {
    let missing = serde_json::to_string(&r.missing_visitor_ids).unwrap_or_else(|_| "[]".into());
    let errors = serde_json::to_string(&r.errors).unwrap_or_else(|_| "[]".into());
    let counts = r
        .counts
        .values()
        .map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let sql = format!(
        "INSERT INTO runs (trigger, mode, started_at, finished_at, status, status_code, message,
            missing_visitor_ids, errors, {})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        Counts::NAMES.join(", ")
    );
    let fixed: [&dyn rusqlite::ToSql; 9] = [
        &r.trigger.as_str(),
        &r.mode.as_str(),
        &rfc3339(r.started_at),
        &rfc3339(r.finished_at),
        &r.status.as_str(),
        &r.status_code,
        &r.message,
        &missing,
        &errors,
    ];
    let values: Vec<&dyn rusqlite::ToSql> = fixed
        .into_iter()
        .chain(counts.iter().map(|n| n as &dyn rusqlite::ToSql))
        .collect();
    conn.execute(&sql, values.as_slice())?;
    Ok(conn.last_insert_rowid())
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn parse_rfc3339(v: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Makes sure the state folder is there and only its owner's to change: created owner-only
/// (0700) when missing; an existing one (a symbolic link to a folder is fine) that other users
/// may write is refused, as they could swap the database or plant links in it.
fn create_private_dir(dir: &Path) -> Result<(), StateError> {
    if !dir.exists() {
        #[cfg(unix)]
        let created = {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
        };
        #[cfg(not(unix))]
        let created = std::fs::create_dir_all(dir);
        created.map_err(|source| StateError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)
            .map_err(|source| StateError::CreateDir {
                path: dir.to_owned(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o002 != 0 {
            return Err(StateError::OpenDir {
                path: dir.to_owned(),
                mode: mode & 0o7777,
            });
        }
    }
    Ok(())
}

/// Makes a regular file owner-only (0600). A missing one, and anything that is not a regular
/// file, a symbolic link above all, is left alone: the change is never made through a link.
fn restrict_file(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Looked at without following links. Other users cannot write in the folder
        // (`create_private_dir` refuses it), so they cannot swap the file for a link between
        // the look and the change.
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return;
        };
        if meta.is_file() && meta.permissions().mode() & 0o777 != 0o600 {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(status: Status) -> RunRecord {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        RunRecord {
            id: 0,
            trigger: Trigger::Manual,
            mode: Mode::Full,
            started_at: t,
            finished_at: t + chrono::Duration::seconds(3),
            status,
            status_code: 200,
            message: "ok".into(),
            // Each count different, so a column read in the wrong place shows.
            counts: Counts {
                okta_users_read: 10,
                records_processed: 9,
                users_updated: 7,
                users_failed: 2,
                users_missing: 1,
                users_unchanged: 0,
                users_skipped: 1,
            },
            missing_visitor_ids: vec!["x@y".into()],
            errors: vec![RunError {
                visitor_id: None,
                message: "m".into(),
            }],
        }
    }

    #[test]
    fn creates_private_folder_and_round_trips_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/state.db");
        let mut st = State::open(&path).unwrap();
        let a = st.insert_run(&sample(Status::Succeeded)).unwrap();
        let b = st.insert_run(&sample(Status::Failed)).unwrap();
        assert!(b > a);
        let runs = st.runs(10).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].id, b);
        assert_eq!(runs[0].status, Status::Failed);
        let mut expected = sample(Status::Succeeded);
        expected.id = a;
        assert_eq!(runs[1], expected);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(path.parent().unwrap()), 0o700);
            assert_eq!(mode(&path), 0o600);
        }
        drop(st);
        // Reopening migrates nothing and keeps the runs.
        let st = State::open(&path).unwrap();
        assert_eq!(st.runs(10).unwrap().len(), 2);
    }

    #[test]
    fn sync_point_and_hashes_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = State::open(&dir.path().join("s.db")).unwrap();
        assert_eq!(st.sync_point().unwrap(), SyncPoint::default());
        st.store_hashes(&[("a".into(), u64::MAX), ("b".into(), 7)], 1)
            .unwrap();
        st.store_hashes(&[("b".into(), 8)], 1).unwrap();
        assert_eq!(st.visitor_hash("a").unwrap(), Some(u64::MAX));
        assert_eq!(st.visitor_hash("b").unwrap(), Some(8));
        assert_eq!(st.visitor_hash("c").unwrap(), None);
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let point = SyncPoint {
            cursor: Some(t),
            fingerprint: Some("f1".into()),
            last_full: Some(t),
            unsettled: None,
            field_shares: vec![("title".into(), 0.75)],
        };
        st.mark_unsettled("f0").unwrap();
        assert_eq!(st.sync_point().unwrap().unsettled.as_deref(), Some("f0"));
        let settled = Settled {
            point: point.clone(),
            full_run: Some(1),
        };
        let id = st
            .finish_run(&sample(Status::Succeeded), Some(&settled))
            .unwrap();
        // Settling clears the unsettled mark.
        assert_eq!(st.sync_point().unwrap(), point);
        assert_eq!(st.last_run().unwrap().unwrap().id, id);
        // A run that reached nothing leaves the point where it was.
        st.finish_run(&sample(Status::Partial), None).unwrap();
        assert_eq!(st.sync_point().unwrap(), point);
    }

    #[test]
    fn a_full_run_drops_the_visitors_it_did_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = State::open(&dir.path().join("s.db")).unwrap();
        st.store_hashes(&[("gone".into(), 1), ("kept".into(), 2)], 10)
            .unwrap();
        st.store_hashes(&[("kept".into(), 3), ("new".into(), 4)], 11)
            .unwrap();
        let settle = |full_run| Settled {
            point: SyncPoint::default(),
            full_run,
        };
        // An incremental run reads only some users: it drops nothing.
        st.finish_run(&sample(Status::Succeeded), Some(&settle(None)))
            .unwrap();
        assert_eq!(st.visitor_count().unwrap(), 3);
        // A run that did not settle drops nothing either.
        st.finish_run(&sample(Status::Partial), None).unwrap();
        assert_eq!(st.visitor_count().unwrap(), 3);
        st.finish_run(&sample(Status::Succeeded), Some(&settle(Some(11))))
            .unwrap();
        assert_eq!(st.visitor_count().unwrap(), 2);
        assert_eq!(st.visitor_hash("gone").unwrap(), None);
        assert_eq!(st.visitor_hash("kept").unwrap(), Some(3));
    }

    #[test]
    fn run_records_beyond_the_retention_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = State::open(&dir.path().join("s.db")).unwrap().keep_runs(3);
        let ids: Vec<i64> = (0..5)
            .map(|_| st.insert_run(&sample(Status::Succeeded)).unwrap())
            .collect();
        let kept: Vec<i64> = st.runs(100).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(kept, vec![ids[4], ids[3], ids[2]]);
    }

    #[test]
    fn history_filters_apply_before_the_limit_and_one_run_reads_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = State::open(&dir.path().join("s.db")).unwrap();
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut ids = Vec::new();
        // Six runs an hour apart; the odd fractions check that times compare as instants.
        for (i, status) in [
            Status::Succeeded,
            Status::Failed,
            Status::Succeeded,
            Status::Partial,
            Status::Failed,
            Status::Succeeded,
        ]
        .into_iter()
        .enumerate()
        {
            let mut r = sample(status);
            r.started_at = t0
                + chrono::Duration::hours(i as i64)
                + chrono::Duration::microseconds(250 * i as i64);
            ids.push(st.insert_run(&r).unwrap());
        }
        let got = |f: &RunFilter, limit| -> Vec<i64> {
            st.runs_filtered(f, limit)
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect()
        };
        assert_eq!(got(&RunFilter::default(), 100).len(), 6);
        let failed = RunFilter {
            statuses: vec![Status::Failed],
            since: None,
        };
        assert_eq!(got(&failed, 100), vec![ids[4], ids[1]]);
        // The limit counts matching runs, not runs looked at.
        assert_eq!(got(&failed, 1), vec![ids[4]]);
        let two = RunFilter {
            statuses: vec![Status::Failed, Status::Partial],
            since: None,
        };
        assert_eq!(got(&two, 100), vec![ids[4], ids[3], ids[1]]);
        // `since` is inclusive, to the microsecond.
        let third_start = t0 + chrono::Duration::hours(2) + chrono::Duration::microseconds(500);
        let since = RunFilter {
            statuses: Vec::new(),
            since: Some(third_start),
        };
        assert_eq!(got(&since, 100), vec![ids[5], ids[4], ids[3], ids[2]]);
        let just_after = RunFilter {
            statuses: vec![Status::Succeeded],
            since: Some(third_start + chrono::Duration::microseconds(1)),
        };
        assert_eq!(got(&just_after, 100), vec![ids[5]]);

        let mut expected = sample(Status::Partial);
        expected.id = ids[3];
        expected.started_at = t0 + chrono::Duration::hours(3) + chrono::Duration::microseconds(750);
        assert_eq!(st.run(ids[3]).unwrap(), Some(expected.clone()));
        assert_eq!(st.run(ids[5] + 1).unwrap(), None);
        // The run a visitor's mark names: found by its start's millisecond.
        let mark = expected.started_at.timestamp_millis();
        assert_eq!(st.run_marked(mark).unwrap(), Some(expected));
        assert_eq!(st.run_marked(mark + 1).unwrap(), None);
        st.store_hashes(&[("v".into(), 5)], mark).unwrap();
        assert_eq!(st.visitor_run("v").unwrap(), Some(mark));
        assert_eq!(st.visitor_run("w").unwrap(), None);
    }

    #[test]
    fn catch_up_counts_only_runs_that_got_through() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = State::open(&dir.path().join("s.db")).unwrap();
        assert!(st.last_completed_run().unwrap().is_none());
        let done = st.insert_run(&sample(Status::Partial)).unwrap();
        st.insert_run(&sample(Status::Interrupted)).unwrap();
        st.insert_run(&sample(Status::Failed)).unwrap();
        let mut dry = sample(Status::Succeeded);
        dry.mode = Mode::DryRun;
        st.insert_run(&dry).unwrap();
        assert_eq!(st.last_completed_run().unwrap().unwrap().id, done);
    }

    #[test]
    fn garbage_file_is_refused_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let garbage = b"this is not a database, it is a note. ".repeat(200);
        std::fs::write(&path, &garbage).unwrap();
        let err = State::open(&path).unwrap_err();
        assert!(matches!(err, StateError::Unreadable { .. }), "{err}");
        assert!(err.to_string().contains("state.db"));
        assert_eq!(std::fs::read(&path).unwrap(), garbage);
    }

    #[test]
    fn one_writer_per_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let first = State::open(&path).unwrap();
        let err = State::open(&path).unwrap_err();
        assert!(matches!(err, StateError::Busy { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("PID {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("state.db"), "{msg}");
        // Readers are not refused.
        assert!(State::open_read_only(&path).unwrap().is_some());
        drop(first);
        State::open(&path).unwrap();
    }

    #[test]
    fn read_only_open_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.db");
        assert!(State::open_read_only(&path).unwrap().is_none());
        assert!(!path.exists());
    }
}
