//! The state database (SQLite): one record per run, per visitor a hash of what was last pushed,
//! and the sync point, with versioned schema migrations. Created with its folder, readable by
//! the owner only.
//!
//! Visitors are kept by a fixed-width key, not by their ID: 48 bits of a seeded xxh3 hash of
//! the visitor ID (see [`VisitorKey`]), about 22 bytes a visitor on disk. A full run does not
//! update the table row by row: it appends what it pushed to a staging table, and when it
//! settles, the visitor table is rebuilt from it in key order (which also drops the visitors it
//! did not read). Incremental runs, which push few, update rows in place, naming their run by
//! a small number so that a row hardly grows.

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
    // 4: visitors by a fixed-width key (`VisitorKey`); `hash` is the values hash xor the
    // visitor's mask; `run` 0 stands for the full run that built the table (`sync_point`
    // `visitors_run`), which costs no byte, any other for the run of that `seq` in
    // `visitor_runs` (1 or 2 bytes, so a row updated in place hardly grows). A full run stages
    // what it pushed, under its mark; the rows of `visitors` are carried over by
    // `convert_v3_visitors`.
    "CREATE TABLE visitor_keys (
        key INTEGER PRIMARY KEY,
        hash INTEGER NOT NULL,
        run INTEGER NOT NULL
    );
    CREATE TABLE visitor_runs (
        seq INTEGER PRIMARY KEY,
        mark INTEGER NOT NULL UNIQUE
    );
    CREATE TABLE visitors_staged (
        key INTEGER NOT NULL,
        hash INTEGER NOT NULL,
        run INTEGER NOT NULL
    );",
];

/// `runs.started_at` as text that sorts as the instant does, to the nanosecond:
/// `YYYY-MM-DDTHH:MM:SS.fffffffff`. The stored form ([`rfc3339`]: UTC, `Z`) has 0, 3, 6 or 9
/// fractional digits, so the texts themselves do not sort (`:07Z` after `:07.5Z`), and
/// SQLite's `julianday` keeps only milliseconds.
const SORTABLE_START: &str = "(substr(started_at, 1, 19) || substr(CASE rtrim(substr(started_at, \
     20), 'Z') WHEN '' THEN '.' ELSE rtrim(substr(started_at, 20), 'Z') END || '000000000', 1, 10))";

/// The migration (index into [`MIGRATIONS`]) that keys visitors by [`VisitorKey`]: it carries
/// the text-keyed rows over and turns `auto_vacuum` on.
const KEYED_VISITORS: usize = 3;

/// The seed of the visitor keys and masks. Stored keys depend on it: never change it.
const KEY_SEED: u64 = 0x6f6b_7461_7065_6e64;

/// SQLite's page cache, in KiB (also the size of each sorted run when a full run's staged rows
/// are sorted): it holds the interior pages of the visitor table for millions of visitors
/// (a few at a million), which is all that updates in place need. 4 MiB cost 5 MiB more
/// peak RSS and saved no CPU.
const CACHE_KIB: i64 = 2048;

/// The page size of a new state database, in bytes. SQLite reads and writes a page a system
/// call: a full run's staged rows, their sort and the rebuilt table move through about a
/// quarter of the calls 4 KiB pages take (200,000 visitors: 6,522 writes and 1,931 reads,
/// against 13,882 and 10,920). What it costs: a packed page takes fewer grown rows in its slack
/// before it splits, so incremental runs grow the table once by up to a fifth (27 bytes a
/// visitor instead of 22, then flat, in the test below), where 4 KiB pages grow it later and
/// slowly. A database made with another page size keeps it.
const PAGE_SIZE: i64 = 16 * 1024;

/// How a visitor is found in the state database, from its ID.
///
/// One 128-bit seeded xxh3 hash of the ID gives both: a 48-bit `key` (the row's rowid, 7
/// bytes on disk) and a 64-bit `mask` that is xored into the stored values hash. Rows written
/// in key order fill their pages: 22 bytes a visitor (measured: 1,090 pages of 4 KiB for
/// 200,000; 22.2 bytes with 16 KiB pages at a million), where the text IDs took about 50.
///
/// Two visitors can share a key: with n visitors, about n²/2⁴⁹ pairs do (2 in 1,000 at a
/// million visitors, 1 in 6 at ten million). They then share a row, and each store overwrites
/// the other's. What that costs: the row holds one visitor's `values hash ^ mask`; read back
/// for the other visitor with its own mask, it gives a value that matches that visitor's
/// values hash only by a 64-bit accident (as likely as two different values hashing alike,
/// which the design already accepts). So an unchanged visitor may be pushed again, or a
/// visitor reported as unknown to the guard counted as known, but a changed visitor is never
/// skipped: never a wrong value in Pendo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisitorKey {
    /// The row's key: 48 bits, from 0 to 2^48 - 1.
    pub key: i64,
    /// Xored into the values hash stored in the row.
    pub mask: u64,
}

impl VisitorKey {
    /// The key and mask of a visitor ID (case-sensitive, as visitor IDs are).
    pub fn of(visitor_id: &str) -> VisitorKey {
        let h = xxhash_rust::xxh3::xxh3_128_with_seed(visitor_id.as_bytes(), KEY_SEED);
        VisitorKey {
            // The low 64 bits' top 48: a rowid below 2^49 takes 7 bytes.
            key: ((h as u64) >> 16) as i64,
            mask: (h >> 64) as u64,
        }
    }
}

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
    /// The mark of a run that began pushing and never recorded its end (the process was
    /// killed, or the machine stopped): the hashes of what it pushed since its last write may
    /// be lost, so Pendo may hold values the state does not know. Until a run succeeds, every
    /// run is full.
    pub pushing: Option<i64>,
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
        if version == 0 {
            // Before the first table: free pages are given back to the file system as runs
            // rebuild the visitor table, and pages of 16 KiB (a quarter of the reads and writes
            // 4 KiB pages take to move the same rows).
            self.conn
                .pragma_update(None, "page_size", PAGE_SIZE)
                .and_then(|()| self.conn.pragma_update(None, "auto_vacuum", "FULL"))
                .map_err(|e| self.query(e))?;
        }
        self.conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| self.query(e))?;
        // Under WAL, a crash may lose the last transactions but never damages the database;
        // losing stored hashes only means pushing those visitors again.
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| self.query(e))?;
        self.conn
            .pragma_update(None, "cache_size", -CACHE_KIB)
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
                .and_then(|()| {
                    if i == KEYED_VISITORS {
                        convert_v3_visitors(&tx)
                    } else {
                        Ok(())
                    }
                })
                .and_then(|()| tx.pragma_update(None, "user_version", (i + 1) as i64))
                .and_then(|()| tx.commit())
                .map_err(|source| StateError::Query {
                    path: self.path.clone(),
                    source,
                })?;
            if i == KEYED_VISITORS && version > 0 {
                // A database made before version 4 lacks auto_vacuum: turned on by rebuilding
                // the file once.
                self.conn
                    .pragma_update(None, "auto_vacuum", "FULL")
                    .and_then(|()| self.conn.execute_batch("VACUUM"))
                    .map_err(|e| self.query(e))?;
            }
        }
        // What a run that ended without settling (a crash) had staged is kept as pushed; only
        // by the writer, as another process may be staging right now.
        if self._lock.is_some() {
            self.merge_staged().map_err(|e| self.query(e))?;
        }
        Ok(())
    }

    /// Moves the staged rows into the visitor table, each under the run that pushed it (what a
    /// full run that did not settle pushed is still in Pendo).
    fn merge_staged(&mut self) -> rusqlite::Result<()> {
        let staged: bool =
            self.conn
                .query_row("SELECT EXISTS (SELECT 1 FROM visitors_staged)", [], |r| {
                    r.get(0)
                })?;
        if staged {
            let tx = self.conn.transaction()?;
            merge_staged_rows(&tx)?;
            tx.commit()?;
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
            pushing: get("pushing")?.and_then(|v| v.parse().ok()),
            field_shares,
        })
    }

    /// Notes that the run marked `mark` began pushing; recording its end takes the note back
    /// ([`finish_run`](Self::finish_run)). A note left by an earlier run that never recorded
    /// its end is kept: only a successful run clears it.
    pub fn mark_pushing(&mut self, mark: i64) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO sync_point (key, value) VALUES ('pushing', ?1)
                 ON CONFLICT (key) DO NOTHING",
                [mark.to_string()],
            )
            .map(|_| ())
            .map_err(|e| self.query(e))
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

    /// How many visitors have a stored hash (pushed successfully and not dropped since; two
    /// visitors sharing a [`VisitorKey`] count once).
    pub fn visitor_count(&self) -> Result<u64, StateError> {
        self.conn
            .query_row("SELECT count(*) FROM visitor_keys", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.query(e))
    }

    /// The hash of the values last pushed successfully to `visitor_id` (as of the last settled
    /// full run for what a full run under way pushed).
    pub fn visitor_hash(&self, visitor_id: &str) -> Result<Option<u64>, StateError> {
        Ok(self.visitor_row(visitor_id)?.map(|(hash, _)| hash))
    }

    /// The mark of the run that last pushed `visitor_id` successfully (its start in Unix
    /// milliseconds; 0 for a hash stored before runs were marked).
    pub fn visitor_run(&self, visitor_id: &str) -> Result<Option<i64>, StateError> {
        let Some((_, run)) = self.visitor_row(visitor_id)? else {
            return Ok(None);
        };
        if run != 0 {
            return self
                .conn
                .query_row("SELECT mark FROM visitor_runs WHERE seq = ?1", [run], |r| {
                    r.get::<_, i64>(0)
                })
                .optional()
                .map(|mark| Some(mark.unwrap_or(0)))
                .map_err(|e| self.query(e));
        }
        self.conn
            .query_row(
                "SELECT value FROM sync_point WHERE key = 'visitors_run'",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map(|v| Some(v.and_then(|v| v.parse().ok()).unwrap_or(0)))
            .map_err(|e| self.query(e))
    }

    /// The values hash and the run stored for `visitor_id`.
    fn visitor_row(&self, visitor_id: &str) -> Result<Option<(u64, i64)>, StateError> {
        let k = VisitorKey::of(visitor_id);
        self.conn
            .prepare_cached("SELECT hash, run FROM visitor_keys WHERE key = ?1")
            .and_then(|mut st| {
                st.query_row([k.key], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                    .optional()
            })
            .map(|row| row.map(|(h, run)| ((h as u64) ^ k.mask, run)))
            .map_err(|e| self.query(e))
    }

    /// Remembers what an incremental run (marked `run`) pushed successfully, in one
    /// transaction, in key order.
    pub fn store_hashes(&mut self, pushed: &[(String, u64)], run: i64) -> Result<(), StateError> {
        self.write_rows(Rows::Stored, &keyed(pushed), run)
    }

    /// Remembers what a full run (marked `run`) pushed successfully: staged, in one
    /// transaction, until the run settles ([`finish_run`](Self::finish_run)).
    pub fn stage_hashes(&mut self, pushed: &[(String, u64)], run: i64) -> Result<(), StateError> {
        self.write_rows(Rows::Staged, &keyed(pushed), run)
    }

    /// Writes `rows` (key, stored hash) for the run marked `run` in one transaction, the
    /// run's number in `visitor_runs` made first.
    fn write_rows(&mut self, into: Rows, rows: &[(i64, i64)], run: i64) -> Result<(), StateError> {
        let path = self.path.clone();
        let fail = |source| StateError::Query {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(fail)?;
        tx.execute(
            "INSERT OR IGNORE INTO visitor_runs (mark) VALUES (?1)",
            [run],
        )
        .map_err(fail)?;
        let run = match into {
            Rows::Staged => run,
            Rows::Stored => tx
                .query_row("SELECT seq FROM visitor_runs WHERE mark = ?1", [run], |r| {
                    r.get(0)
                })
                .map_err(fail)?,
        };
        {
            // Whole chunks share one statement; the last, shorter one has its own.
            let mut whole = tx
                .prepare_cached(&into.sql(ROWS_PER_STATEMENT))
                .map_err(fail)?;
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let values = chunk.iter().flat_map(|(key, hash)| [*key, *hash, run]);
                let written = if chunk.len() == ROWS_PER_STATEMENT {
                    whole.execute(rusqlite::params_from_iter(values))
                } else {
                    tx.prepare(&into.sql(chunk.len()))
                        .and_then(|mut st| st.execute(rusqlite::params_from_iter(values)))
                };
                written.map_err(fail)?;
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
        // This run's own "pushing" note: its end is recorded now. An earlier run's stays until
        // a run succeeds (below).
        tx.execute(
            "DELETE FROM sync_point WHERE key = 'pushing' AND value = ?1",
            [r.started_at.timestamp_millis().to_string()],
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
            tx.execute(
                "DELETE FROM sync_point WHERE key IN ('unsettled', 'pushing')",
                [],
            )
            .map_err(fail)?;
            if let Some(mark) = full_run {
                let shares = serde_json::to_string(&p.field_shares).unwrap_or_default();
                set("field_shares", Some(shares)).map_err(fail)?;
                // The table is rebuilt from what this run pushed, in key order (packed pages,
                // no row visited twice): the visitors it did not read are gone from the
                // scope. Its rows are marked 0, which stands for this run.
                set("visitors_run", Some(mark.to_string())).map_err(fail)?;
                tx.execute_batch(
                    "DELETE FROM visitor_keys;
                     INSERT OR REPLACE INTO visitor_keys (key, hash, run)
                        SELECT key, hash, 0 FROM visitors_staged ORDER BY key;
                     DELETE FROM visitors_staged;
                     DELETE FROM visitor_runs;",
                )
                .map_err(fail)?;
            }
        }
        tx.commit().map_err(fail)?;
        // A full run that did not settle: what it pushed is kept, under its mark. Only by the
        // writer: a process without the lock (a dry run's record) leaves the writer's alone.
        if self._lock.is_some() {
            self.merge_staged().map_err(|e| self.query(e))?;
        }
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

/// Rows written by one statement: one statement for many rows costs a fraction of one a row,
/// and stays far below SQLite's limit on parameters (32,766).
const ROWS_PER_STATEMENT: usize = 256;

/// Where pushed visitors' hashes are written.
#[derive(Debug, Clone, Copy)]
enum Rows {
    /// A full run's, kept aside until it settles (`run` is its mark).
    Staged,
    /// An incremental run's, in place (`run` is its number in `visitor_runs`).
    Stored,
}

impl Rows {
    /// The statement that writes `n` rows: each row's key, stored hash and run.
    fn sql(self, n: usize) -> String {
        let values = vec!["(?, ?, ?)"; n].join(", ");
        match self {
            Rows::Staged => format!("INSERT INTO visitors_staged (key, hash, run) VALUES {values}"),
            Rows::Stored => format!(
                "INSERT INTO visitor_keys (key, hash, run) VALUES {values}
                 ON CONFLICT (key) DO UPDATE SET hash = excluded.hash, run = excluded.run"
            ),
        }
    }
}

/// Each visitor's key and stored hash (values hash xor mask), sorted by key: rows written in
/// key order touch each page once.
fn keyed(pushed: &[(String, u64)]) -> Vec<(i64, i64)> {
    let mut rows: Vec<(i64, i64)> = pushed
        .iter()
        .map(|(id, hash)| {
            let k = VisitorKey::of(id);
            (k.key, (hash ^ k.mask) as i64)
        })
        .collect();
    rows.sort_unstable_by_key(|r| r.0);
    rows
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

/// Schema 4: carries each visitor of the version-3 table over to its key, under its run, then
/// drops the old table. Staged, then inserted in key order.
fn convert_v3_visitors(tx: &Connection) -> rusqlite::Result<()> {
    {
        let mut read = tx.prepare("SELECT visitor_id, hash, run FROM visitors")?;
        let mut write =
            tx.prepare("INSERT INTO visitors_staged (key, hash, run) VALUES (?1, ?2, ?3)")?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let hash: i64 = row.get(1)?;
            let run: i64 = row.get(2)?;
            let k = VisitorKey::of(&id);
            write.execute(params![k.key, (hash as u64 ^ k.mask) as i64, run])?;
        }
    }
    merge_staged_rows(tx)?;
    tx.execute_batch("DROP TABLE visitors;")
}

/// Moves the staged rows into the visitor table in key order, each under the number of the run
/// that pushed it.
fn merge_staged_rows(tx: &Connection) -> rusqlite::Result<()> {
    tx.execute_batch(
        "INSERT OR IGNORE INTO visitor_runs (mark) SELECT DISTINCT run FROM visitors_staged;
         INSERT OR REPLACE INTO visitor_keys (key, hash, run)
            SELECT s.key, s.hash, r.seq
            FROM visitors_staged s JOIN visitor_runs r ON r.mark = s.run
            ORDER BY s.key;
         DELETE FROM visitors_staged;",
    )
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
            pushing: None,
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
    fn a_pushing_note_outlives_a_killed_run_until_a_run_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = State::open(&dir.path().join("s.db")).unwrap();
        let at = |secs: i64| {
            let mut r = sample(Status::Partial);
            r.started_at = DateTime::from_timestamp(secs, 0).unwrap();
            r
        };
        let mark = |r: &RunRecord| r.started_at.timestamp_millis();
        // A run that records its end takes its own note back, whatever its status.
        let first = at(1_700_000_000);
        st.mark_pushing(mark(&first)).unwrap();
        assert_eq!(st.sync_point().unwrap().pushing, Some(mark(&first)));
        st.finish_run(&first, None).unwrap();
        assert_eq!(st.sync_point().unwrap().pushing, None);
        // A run killed while pushing leaves its note; the next run's note does not replace it
        // and its partial end does not take it back.
        let killed = at(1_700_000_100);
        st.mark_pushing(mark(&killed)).unwrap();
        let next = at(1_700_000_200);
        st.mark_pushing(mark(&next)).unwrap();
        st.finish_run(&next, None).unwrap();
        assert_eq!(st.sync_point().unwrap().pushing, Some(mark(&killed)));
        // A run that succeeds clears it.
        let good = at(1_700_000_300);
        st.mark_pushing(mark(&good)).unwrap();
        let settled = Settled {
            point: SyncPoint::default(),
            full_run: None,
        };
        st.finish_run(&good, Some(&settled)).unwrap();
        assert_eq!(st.sync_point().unwrap().pushing, None);
    }

    #[test]
    fn a_full_run_drops_the_visitors_it_did_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = State::open(&dir.path().join("s.db")).unwrap();
        let settle = |full_run| Settled {
            point: SyncPoint::default(),
            full_run,
        };
        // An incremental run stores in place and drops nothing.
        st.store_hashes(&[("gone".into(), 1), ("kept".into(), 2)], 10)
            .unwrap();
        st.finish_run(&sample(Status::Succeeded), Some(&settle(None)))
            .unwrap();
        assert_eq!(st.visitor_count().unwrap(), 2);
        assert_eq!(st.visitor_run("kept").unwrap(), Some(10));
        // A full run stages what it pushes: the stored hashes stay as they were meanwhile.
        st.stage_hashes(&[("kept".into(), 3), ("new".into(), 4)], 11)
            .unwrap();
        assert_eq!(st.visitor_hash("kept").unwrap(), Some(2));
        assert_eq!(st.visitor_hash("new").unwrap(), None);
        // One that does not settle drops nothing, and keeps what it pushed, under its mark.
        st.finish_run(&sample(Status::Partial), None).unwrap();
        assert_eq!(st.visitor_count().unwrap(), 3);
        assert_eq!(st.visitor_hash("kept").unwrap(), Some(3));
        assert_eq!(st.visitor_hash("new").unwrap(), Some(4));
        assert_eq!(st.visitor_run("new").unwrap(), Some(11));
        assert_eq!(st.visitor_run("gone").unwrap(), Some(10));
        // One that settles keeps exactly what it pushed.
        st.stage_hashes(&[("kept".into(), 5), ("new".into(), 6)], 12)
            .unwrap();
        st.finish_run(&sample(Status::Succeeded), Some(&settle(Some(12))))
            .unwrap();
        assert_eq!(st.visitor_count().unwrap(), 2);
        assert_eq!(st.visitor_hash("gone").unwrap(), None);
        assert_eq!(st.visitor_hash("kept").unwrap(), Some(5));
        assert_eq!(st.visitor_hash("new").unwrap(), Some(6));
        assert_eq!(st.visitor_run("kept").unwrap(), Some(12));
        assert_eq!(st.visitor_run("gone").unwrap(), None);
        // An incremental run after it updates in place, under its own mark.
        st.store_hashes(&[("new".into(), 7)], 13).unwrap();
        assert_eq!(st.visitor_run("new").unwrap(), Some(13));
        assert_eq!(st.visitor_run("kept").unwrap(), Some(12));
        assert_eq!(st.visitor_hash("new").unwrap(), Some(7));
    }

    #[test]
    fn what_a_run_staged_before_a_crash_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut st = State::open(&path).unwrap();
        st.store_hashes(&[("a".into(), 1), ("b".into(), 2)], 10)
            .unwrap();
        st.stage_hashes(&[("b".into(), 3), ("c".into(), 4)], 11)
            .unwrap();
        // The process ends without finishing its run.
        drop(st);
        let st = State::open(&path).unwrap();
        assert_eq!(st.visitor_hash("a").unwrap(), Some(1));
        assert_eq!(st.visitor_hash("b").unwrap(), Some(3));
        assert_eq!(st.visitor_hash("c").unwrap(), Some(4));
        assert_eq!(st.visitor_run("c").unwrap(), Some(11));
        let staged: i64 = st
            .conn
            .query_row("SELECT count(*) FROM visitors_staged", [], |r| r.get(0))
            .unwrap();
        assert_eq!(staged, 0);
    }

    #[test]
    fn a_row_of_another_visitor_never_reads_as_a_match() {
        // Two visitors sharing a key share a row. Made here by copying A's row to B's key: B
        // then reads what A stored. Even when B's new values hash alike to A's (B changed to
        // A's values), the row does not match B's hash, so B is pushed, never skipped.
        let dir = tempfile::tempdir().unwrap();
        let mut st = State::open(&dir.path().join("s.db")).unwrap();
        let values_hash = 0x1234_5678_9abc_def0_u64;
        st.store_hashes(&[("ada@company.com".into(), values_hash)], 1)
            .unwrap();
        let (a, b) = (
            VisitorKey::of("ada@company.com"),
            VisitorKey::of("bob@company.com"),
        );
        assert_ne!(a.key, b.key);
        assert!((0..(1i64 << 48)).contains(&a.key), "a 48-bit key");
        st.conn
            .execute(
                "INSERT INTO visitor_keys (key, hash, run)
                    SELECT ?1, hash, run FROM visitor_keys WHERE key = ?2",
                [b.key, a.key],
            )
            .unwrap();
        assert_eq!(
            st.visitor_hash("ada@company.com").unwrap(),
            Some(values_hash)
        );
        let read_as_b = st.visitor_hash("bob@company.com").unwrap();
        assert!(read_as_b.is_some());
        assert_ne!(read_as_b, Some(values_hash));
    }

    #[test]
    fn a_version_3_database_is_migrated_and_keeps_its_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "journal_mode", "WAL").unwrap();
            for sql in &MIGRATIONS[..3] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 3).unwrap();
            for i in 0..500_i64 {
                conn.execute(
                    "INSERT INTO visitors (visitor_id, hash, run) VALUES (?1, ?2, ?3)",
                    params![format!("user{i}@example.com"), i * 7 - 100, 1000 + i % 3],
                )
                .unwrap();
            }
            conn.execute(
                "INSERT INTO sync_point (key, value) VALUES ('fingerprint', 'f3')",
                [],
            )
            .unwrap();
        }
        let mut st = State::open(&path).unwrap();
        assert_eq!(st.version().unwrap(), MIGRATIONS.len() as i64);
        assert_eq!(st.sync_point().unwrap().fingerprint.as_deref(), Some("f3"));
        assert_eq!(st.visitor_count().unwrap(), 500);
        for i in 0..500_i64 {
            let id = format!("user{i}@example.com");
            assert_eq!(st.visitor_hash(&id).unwrap(), Some((i * 7 - 100) as u64));
            assert_eq!(st.visitor_run(&id).unwrap(), Some(1000 + i % 3));
        }
        let (old_table, auto_vacuum): (i64, i64) = (
            st.conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'visitors'",
                    [],
                    |r| r.get(0),
                )
                .unwrap(),
            st.conn
                .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
                .unwrap(),
        );
        assert_eq!(old_table, 0);
        assert_eq!(auto_vacuum, 1, "auto_vacuum FULL");
        // It keeps working: a full run replaces the hashes.
        st.stage_hashes(&[("user1@example.com".into(), 9)], 2000)
            .unwrap();
        let settled = Settled {
            point: SyncPoint::default(),
            full_run: Some(2000),
        };
        st.finish_run(&sample(Status::Succeeded), Some(&settled))
            .unwrap();
        assert_eq!(st.visitor_count().unwrap(), 1);
        assert_eq!(st.visitor_hash("user1@example.com").unwrap(), Some(9));
        drop(st);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(State::open(&path).is_ok());
    }

    #[test]
    fn a_rebuilt_table_gives_its_pages_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut st = State::open(&path).unwrap();
        let ids: Vec<(String, u64)> = (0..20_000u64)
            .map(|i| (format!("visitor.{i}@company.com"), i))
            .collect();
        let settled = |mark| Settled {
            point: SyncPoint::default(),
            full_run: Some(mark),
        };
        // The pages of the database without visitors (schema, run records, sync point).
        let empty: i64 = st
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        let mut pages = Vec::new();
        for mark in 1..=3 {
            for chunk in ids.chunks(500) {
                st.stage_hashes(chunk, mark).unwrap();
            }
            st.finish_run(&sample(Status::Succeeded), Some(&settled(mark)))
                .unwrap();
            let (count, free): (i64, i64) = (
                st.conn
                    .query_row("PRAGMA page_count", [], |r| r.get(0))
                    .unwrap(),
                st.conn
                    .query_row("PRAGMA freelist_count", [], |r| r.get(0))
                    .unwrap(),
            );
            assert_eq!(free, 0);
            pages.push(count);
        }
        assert_eq!(st.visitor_count().unwrap(), 20_000);
        // Packed rows: under 24 bytes a visitor, and no growth from run to run.
        let page_size: i64 = st
            .conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        assert_eq!(page_size, PAGE_SIZE, "a new database's page size");
        let bytes = (pages[2] - empty) * page_size;
        assert!(bytes < 24 * 20_000, "{bytes} bytes");
        assert_eq!(pages[1], pages[2]);
        // Incremental runs updating 1% of the visitors each: a row grows by a byte at most, once
        // (its run's number), so a packed page takes a few such rows in its slack, then splits
        // once into two with room: a bounded growth, not one that goes on run after run.
        let mut sizes = Vec::new();
        for mark in 4..=12 {
            let changed: Vec<(String, u64)> = ids
                .iter()
                .skip(mark as usize)
                .step_by(100)
                .map(|(id, h)| (id.clone(), h + 1))
                .collect();
            st.store_hashes(&changed, 1_764_000_000_000 + mark).unwrap();
            sizes.push(
                st.conn
                    .query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))
                    .unwrap(),
            );
        }
        let after = *sizes.last().unwrap();
        assert!(
            after <= pages[2] + pages[2] / 4,
            "{} pages, then {sizes:?}",
            pages[2]
        );
        assert_eq!(sizes[4..].iter().max(), Some(&after), "{sizes:?}");
        assert_eq!(sizes[4], after, "no growth after the first runs: {sizes:?}");
        assert_eq!(
            st.visitor_run("visitor.4@company.com").unwrap(),
            Some(1_764_000_000_004)
        );
        assert_eq!(st.visitor_run("visitor.2@company.com").unwrap(), Some(3));
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
