//! The commands: load the config, set up logging, run, and turn the outcome into an exit code.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::check::Line;
use crate::cli::{Cli, Command};
use crate::config::{self, Loaded, Settings};
use crate::daemon::{Daemon, SyncJob};
use crate::metrics::Metrics;
use crate::okta::OktaClient;
use crate::pendo::PendoClient;
use crate::report::{RunRecord, Trigger, count};
use crate::schedule::{Clock, SystemClock};
use crate::server;
use crate::shutdown::Signals;
use crate::state::State;
use crate::sync::{self, Clients, RunOptions};
use crate::telemetry::{self, Target};

/// Success.
pub const EXIT_OK: i32 = 0;
/// A run that failed, was partial or interrupted; a `check` that found a problem.
pub const EXIT_FAILURE: i32 = 1;
/// A usage error.
pub const EXIT_USAGE: i32 = 2;
/// Invalid configuration (EX_CONFIG).
pub const EXIT_CONFIG: i32 = 78;

/// Parses `args` (the program name first) and runs the command; returns the exit code.
pub fn run_from<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    runtime.block_on(dispatch(cli))
}

async fn dispatch(cli: Cli) -> i32 {
    // Before anything slow: an early SIGTERM or SIGHUP must not kill the process.
    let signals = match &cli.command {
        Command::Run => Signals::register(true),
        Command::Sync { .. } => Signals::register(false),
        Command::History { .. } | Command::Check { .. } => None,
    };
    let path = config::resolve_path(cli.config);
    let loaded = match config::load(&path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_CONFIG;
        }
    };
    let Loaded { settings, warnings } = loaded;
    // Logs go to stdout (journald, containers), except where stdout carries the command's
    // data: a dry run's JSON lines, `history` and `check`.
    let log_target = match &cli.command {
        Command::Sync {
            dry_run: true,
            output: None,
            ..
        }
        | Command::History { .. }
        | Command::Check { .. } => Target::Stderr,
        Command::Sync { .. } | Command::Run => Target::Stdout,
    };
    let _log_guard = telemetry::init(&settings.log, log_target);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    match cli.command {
        Command::Run => daemon(path, settings, signals).await,
        Command::Sync {
            dry_run,
            full,
            force,
            output,
        } => {
            let how = Manual {
                dry_run,
                full,
                force,
            };
            sync_once(&settings, how, output.as_deref(), signals).await
        }
        Command::History { limit, json } => history(&settings, limit, json),
        Command::Check { offline } => check(&path, &settings, offline).await,
    }
}

/// What a run reads of each user: the mapped paths, the visitor ID, `id` (to meet a user once
/// across groups) and `status` (deprovisioned users).
fn projection(settings: &Settings) -> crate::okta::projection::Projection {
    let fixed: Vec<crate::mapping::AttributePath> = ["id", "status"]
        .iter()
        .filter_map(|p| crate::mapping::AttributePath::parse(p).ok())
        .collect();
    crate::okta::projection::Projection::of(
        settings
            .mapping
            .fields()
            .iter()
            .map(|f| &f.path)
            .chain(std::iter::once(&settings.sync.visitor_id_key))
            .chain(fixed.iter()),
    )
}

/// Builds the two clients from the settings.
pub fn clients(settings: &Settings, metrics: Arc<Metrics>) -> Result<Clients, String> {
    let http = |t: crate::config::Timeouts| {
        crate::http::client(t.connect, t.request)
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))
    };
    Ok(Clients {
        okta: Arc::new(
            OktaClient::new(
                http(settings.okta.timeouts)?,
                &settings.okta,
                settings.retry,
                metrics.clone(),
            )
            .map_err(|e| format!("cannot set up the Okta client: {e}"))?
            .with_projection(projection(settings)),
        ),
        pendo: Arc::new(PendoClient::new(
            http(settings.pendo.timeouts)?,
            &settings.pendo,
            settings.sync.create_missing_visitors,
            settings.retry,
            metrics,
        )),
    })
}

/// What `sync` was asked to do.
#[derive(Debug, Clone, Copy)]
struct Manual {
    dry_run: bool,
    full: bool,
    force: bool,
}

async fn sync_once(
    settings: &Settings,
    how: Manual,
    output: Option<&Path>,
    signals: Option<Signals>,
) -> i32 {
    let Manual {
        dry_run,
        full,
        force,
    } = how;
    // A dry run changes nothing but its own record: it reads the state without the writer's
    // lock, so it can preview beside a running daemon, and stores its record at the end.
    let opened = if dry_run {
        State::open_preview(&settings.state.path)
    } else {
        State::open(&settings.state.path)
    };
    let state = match opened {
        Ok(s) => std::sync::Mutex::new(s.keep_runs(settings.state.keep_runs)),
        Err(e) => {
            tracing::error!("{e}");
            return EXIT_FAILURE;
        }
    };
    let clients = match clients(settings, Arc::new(Metrics::new())) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return EXIT_FAILURE;
        }
    };
    let mut sink: Option<Box<dyn Write + Send>> = if dry_run {
        match output {
            Some(path) => match create_private(path) {
                Ok(f) => Some(Box::new(std::io::BufWriter::new(f))),
                Err(e) => {
                    tracing::error!("cannot create the dry-run output {}: {e}", path.display());
                    return EXIT_FAILURE;
                }
            },
            None => Some(Box::new(std::io::BufWriter::new(std::io::stdout()))),
        }
    } else {
        None
    };
    let opts = RunOptions {
        trigger: Trigger::Manual,
        dry_run,
        grace: settings.sync.shutdown_grace,
        force_full: full,
        force,
    };
    let cancel = CancellationToken::new();
    let signals = signals.map(|s| s.watch(cancel.clone(), None));
    let outcome = match sink.as_mut() {
        Some(w) => sync::run(settings, &clients, opts, Some(&mut **w), cancel, &state).await,
        None => sync::run(settings, &clients, opts, None, cancel, &state).await,
    };
    drop(sink);
    let mut record = outcome.record;
    let state = state.into_inner().unwrap_or_else(|e| e.into_inner());
    let stored = if dry_run {
        drop(state);
        State::open_unlocked(&settings.state.path).and_then(|s| {
            s.keep_runs(settings.state.keep_runs)
                .finish_run(&record, None)
        })
    } else {
        let mut state = state;
        state.finish_run(&record, outcome.reached.as_ref())
    };
    match stored {
        Ok(id) => record.id = id,
        Err(e) => {
            tracing::error!("the run finished but could not be recorded: {e}");
            log_summary(&record);
            return EXIT_FAILURE;
        }
    }
    log_summary(&record);
    if let Some(s) = signals {
        s.abort();
    }
    record.exit_code()
}

/// `run`: the daemon, until SIGTERM/SIGINT.
async fn daemon(path: PathBuf, settings: Settings, signals: Option<Signals>) -> i32 {
    let state = match State::open(&settings.state.path) {
        Ok(s) => s.keep_runs(settings.state.keep_runs),
        Err(e) => {
            tracing::error!("{e}");
            return EXIT_FAILURE;
        }
    };
    let metrics = Arc::new(Metrics::new());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let stop = CancellationToken::new();
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    let signals = signals.map(|s| s.watch(stop.clone(), Some(reload_tx)));
    let server = match settings.server {
        None => None,
        Some(addr) => {
            match server::bind(addr, metrics.clone(), clock.clone(), stop.clone()).await {
                Ok((local, serve)) => {
                    tracing::info!("serving /healthz and /metrics on http://{local}");
                    Some(tokio::spawn(serve))
                }
                Err(e) => {
                    tracing::error!("cannot listen on {addr} (server.listen): {e}");
                    return EXIT_FAILURE;
                }
            }
        }
    };
    let job = SyncJob::new(state, metrics.clone());
    Daemon::new(path, settings, clock, metrics, job)
        .run(reload_rx, stop.clone())
        .await;
    stop.cancel();
    // A client that holds a connection open must not keep the process from exiting.
    if let Some(server) = server
        && tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .is_err()
    {
        tracing::warn!("the health/metrics server did not stop within 5 s; leaving it");
    }
    if let Some(s) = signals {
        s.abort();
    }
    EXIT_OK
}

/// Creates (or truncates) a file readable by its owner only: dry-run output holds user data.
/// An existing regular file ends owner-only whatever its mode was; a symbolic link at `path`
/// is refused, not followed (it could send the data elsewhere).
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    let file = options.open(path).map_err(|e| {
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            std::io::Error::other(
                "it is a symbolic link, which is not followed: remove it or choose another path",
            )
        } else {
            e
        }
    })?;
    // Only a regular file: `/dev/null` or a pipe is not ours to change.
    #[cfg(unix)]
    if file.metadata()?.is_file() {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// The one info line per run that summarises its record.
pub fn log_summary(r: &RunRecord) {
    let duration_ms = (r.finished_at - r.started_at).whole_milliseconds().max(0) as u64;
    let line = |msg: &str| {
        tracing::info!(
            run_id = r.id,
            trigger = r.trigger.as_str(),
            mode = r.mode.as_str(),
            status = r.status.as_str(),
            status_code = r.status_code,
            okta_users_read = r.okta_users_read,
            records_processed = r.records_processed,
            users_updated = r.users_updated,
            users_failed = r.users_failed,
            users_missing = r.users_missing,
            users_unchanged = r.users_unchanged,
            users_skipped = r.users_skipped,
            duration_ms,
            "run {} {}: {msg}",
            r.id,
            r.status
        )
    };
    line(&r.message);
}

fn history(settings: &Settings, limit: u32, json: bool) -> i32 {
    let runs = match State::open_read_only(&settings.state.path) {
        Ok(None) => Vec::new(),
        Ok(Some(state)) => match state.runs(limit) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_FAILURE;
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let written = if json {
        serde_json::to_writer_pretty(&mut out, &runs)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        write_history_table(&mut out, &runs, &settings.state.path)
    };
    match written {
        Ok(()) => EXIT_OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => {
            eprintln!("error: cannot write the history: {e}");
            EXIT_FAILURE
        }
    }
}

/// The human form of `history`: one line per run, its message indented below.
pub fn write_history_table(
    out: &mut impl Write,
    runs: &[RunRecord],
    state_path: &Path,
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
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    for r in runs {
        let took = (r.finished_at - r.started_at).as_seconds_f64();
        writeln!(
            out,
            "{:>5}  {:<20}  {:<8}  {:<11}  {:<11}  {:>4}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>7.1}s",
            r.id,
            r.started_at.format(&fmt).unwrap_or_default(),
            r.trigger.as_str(),
            r.mode.as_str(),
            r.status.as_str(),
            r.status_code,
            count(r.okta_users_read),
            count(r.records_processed),
            count(r.users_updated),
            count(r.users_failed),
            count(r.users_missing),
            count(r.users_skipped),
            took
        )?;
        writeln!(out, "       {}", r.message)?;
    }
    Ok(())
}

async fn check(path: &Path, settings: &Settings, offline: bool) -> i32 {
    let mut lines = vec![Line::ok("config", path.display().to_string())];
    if offline {
        print!("{}", crate::check::render(&lines));
        return EXIT_OK;
    }
    let last_run = State::open_read_only(&settings.state.path)
        .ok()
        .flatten()
        .and_then(|s| s.last_run().ok().flatten());
    lines.extend(crate::check::runs(settings, last_run.as_ref()));
    let clients = match clients(settings, Arc::new(Metrics::new())) {
        Ok(c) => c,
        Err(e) => {
            lines.push(Line::fail("clients", e));
            print!("{}", crate::check::render(&lines));
            return EXIT_FAILURE;
        }
    };
    let okta_host = settings.okta.org_url.origin().ascii_serialization();
    let pendo_host = settings.pendo.base_url.origin().ascii_serialization();
    let (okta, pendo) = tokio::join!(clients.okta.probe(), clients.pendo.visitor_schema());
    let auth = clients.okta.auth_description();
    lines.push(match okta {
        Ok(()) => Line::ok("okta", format!("{okta_host}: {auth}: users can be read")),
        Err(e) => Line::fail("okta", format!("{okta_host}: {auth}: {e}")),
    });
    // A run with group_ids reads each group's members: probe each as the run will.
    if let crate::config::UserScope::Groups(ids) = &settings.okta.scope {
        let scopes = match &settings.okta.credentials {
            crate::config::OktaCredentials::OAuth(o) => Some(o.scopes.as_slice()),
            crate::config::OktaCredentials::Ssws(_) => None,
        };
        for id in ids {
            let probe = clients.okta.probe_group(id).await;
            lines.push(crate::check::group(id, probe, scopes));
        }
    }
    match pendo {
        Ok(schema) => {
            lines.push(Line::ok(
                "pendo",
                format!("{pendo_host}: the integration key is accepted"),
            ));
            lines.extend(crate::check::fields(
                &settings.mapping,
                settings.pendo.metadata_group.as_str(),
                &schema,
            ));
        }
        Err(e) => lines.push(Line::fail("pendo", format!("{pendo_host}: {e}"))),
    }
    print!("{}", crate::check::render(&lines));
    if lines.iter().all(|l| l.ok) {
        EXIT_OK
    } else {
        EXIT_FAILURE
    }
}
