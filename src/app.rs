//! The commands: load the config, set up logging, run, and turn the outcome into an exit code.
//! [`AppError`] is the one place an error becomes a message and a code.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::check::Line;
use crate::cli::{Cli, Command};
use crate::config::{self, ConfigError, Loaded, Settings};
use crate::daemon::{Daemon, SyncJob};
use crate::metrics::Metrics;
use crate::report::Trigger;
use crate::runner::{self, NotRecorded};
use crate::schedule::{Clock, SystemClock};
use crate::server;
use crate::shutdown::Signals;
use crate::state::{RunFilter, State, StateError};
use crate::sync::RunOptions;
use crate::telemetry::{self, Target};

pub const EXIT_OK: i32 = 0;
/// A run that failed, was partial, interrupted or held; a `check` that found a problem.
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
/// Invalid configuration (EX_CONFIG).
pub const EXIT_CONFIG: i32 = 78;

/// Why a command could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot create the dry-run output {}: {source}", path.display())]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    NotRecorded(#[from] NotRecorded),
    #[error("cannot listen on {addr} (server.listen): {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    History(#[from] crate::history::HistoryError),
    #[error(transparent)]
    Explain(#[from] crate::explain::ExplainError),
    #[error("cannot write the explanation: {0}")]
    ExplainOutput(std::io::Error),
}

impl AppError {
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Config(_) => EXIT_CONFIG,
            _ => EXIT_FAILURE,
        }
    }

    /// Says what went wrong: on stderr before logging is set up and for the commands whose
    /// logs are only for the operator's terminal, in the log otherwise.
    fn report(&self, logged: bool) {
        // Already in the log, with the run's summary.
        if matches!(self, AppError::NotRecorded(_)) {
            return;
        }
        if logged {
            tracing::error!("{self}");
        } else {
            eprintln!("error: {self}");
        }
    }
}

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
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(dispatch(cli)),
        Err(e) => {
            let e = AppError::Runtime(e);
            e.report(false);
            e.exit_code()
        }
    }
}

async fn dispatch(cli: Cli) -> i32 {
    // Reads only server.listen: before (and instead of) loading the whole config.
    if let Command::Health { timeout } = cli.command {
        return health(&config::resolve_path(cli.config), timeout).await;
    }
    // Before anything slow: an early SIGTERM or SIGHUP must not kill the process.
    let signals = match &cli.command {
        Command::Run => Signals::register(true),
        Command::Sync { .. } => Signals::register(false),
        Command::History { .. }
        | Command::Check { .. }
        | Command::Explain { .. }
        | Command::Notify { .. }
        | Command::Health { .. } => None,
    };
    let path = config::resolve_path(cli.config);
    let Loaded { settings, warnings } = match config::load(&path) {
        Ok(l) => l,
        Err(e) => {
            let e = AppError::from(e);
            e.report(false);
            return e.exit_code();
        }
    };
    // Logs go to stdout (journald, containers), except where stdout carries the command's
    // data: a dry run's JSON lines, `history` and `check`.
    let log_target = match &cli.command {
        Command::Sync {
            dry_run: true,
            output: None,
            ..
        }
        | Command::History { .. }
        | Command::Explain { .. }
        | Command::Check { .. }
        | Command::Notify { .. }
        | Command::Health { .. } => Target::Stderr,
        Command::Sync { .. } | Command::Run => Target::Stdout,
    };
    let _log_guard = telemetry::init(&settings.log, log_target);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let logged = !matches!(
        cli.command,
        Command::History { .. } | Command::Explain { .. }
    );
    let done = match cli.command {
        Command::Run => daemon(path, settings, signals).await,
        Command::Sync {
            dry_run,
            full,
            force,
            output,
        } => {
            let opts = RunOptions {
                trigger: Trigger::Manual,
                dry_run,
                grace: settings.sync.shutdown_grace,
                force_full: full,
                force,
            };
            sync_once(&settings, opts, output.as_deref(), signals).await
        }
        Command::History {
            id,
            limit,
            status,
            since,
            json,
        } => {
            let query = crate::history::Query {
                id,
                limit,
                filter: RunFilter {
                    statuses: status,
                    since,
                },
                json,
            };
            history(&settings, &query)
        }
        Command::Explain { user, json } => explain(&settings, &user, json).await,
        Command::Check { offline } => Ok(check(&path, &settings, offline).await),
        Command::Notify { test: _ } => Ok(notify_test(&settings).await),
        Command::Health { timeout } => Ok(health(&path, timeout).await),
    };
    match done {
        Ok(code) => code,
        Err(e) => {
            e.report(logged);
            e.exit_code()
        }
    }
}

/// `sync`: one run now; its exit code is the run's.
async fn sync_once(
    settings: &Settings,
    opts: RunOptions,
    output: Option<&Path>,
    signals: Option<Signals>,
) -> Result<i32, AppError> {
    // A dry run changes nothing but its own record: it reads the state without the writer's
    // lock, so it can preview beside a running daemon, and stores its record at the end.
    let state = if opts.dry_run {
        State::open_preview(&settings.state.path)?
    } else {
        State::open(&settings.state.path)?
    };
    let state = Mutex::new(state.keep_runs(settings.state.keep_runs));
    let mut sink: Option<Box<dyn Write + Send>> = match (opts.dry_run, output) {
        (false, _) => None,
        (true, None) => Some(Box::new(std::io::BufWriter::new(std::io::stdout()))),
        (true, Some(path)) => {
            let file = create_private(path).map_err(|source| AppError::Output {
                path: path.to_owned(),
                source,
            })?;
            Some(Box::new(std::io::BufWriter::new(file)))
        }
    };
    let cancel = CancellationToken::new();
    let signals = signals.map(|s| s.watch(cancel.clone(), None));
    let metrics = Arc::new(Metrics::new());
    let dry_out = sink.as_mut().map(|w| &mut **w as &mut (dyn Write + Send));
    let record = runner::run_and_record(settings, &state, &metrics, opts, dry_out, cancel).await?;
    if let Some(s) = signals {
        s.abort();
    }
    Ok(record.exit_code())
}

/// `health`: one line, on stdout when the daemon answers 200 (exit 0), on stderr otherwise.
async fn health(path: &Path, timeout: Duration) -> i32 {
    match crate::health::check(path, timeout).await {
        Ok(url) => {
            println!("healthy: {url} answered 200");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            e.exit_code()
        }
    }
}

/// `run`: the daemon, until SIGTERM/SIGINT.
async fn daemon(
    path: PathBuf,
    settings: Settings,
    signals: Option<Signals>,
) -> Result<i32, AppError> {
    let state = State::open(&settings.state.path)?.keep_runs(settings.state.keep_runs);
    let metrics = Arc::new(Metrics::new());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let stop = CancellationToken::new();
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    let signals = signals.map(|s| s.watch(stop.clone(), Some(reload_tx)));
    let server = match settings.server {
        None => None,
        Some(addr) => {
            let (local, serve) = server::bind(addr, metrics.clone(), clock.clone(), stop.clone())
                .await
                .map_err(|source| AppError::Listen { addr, source })?;
            tracing::info!("serving /healthz and /metrics on http://{local}");
            Some(tokio::spawn(serve))
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
    Ok(EXIT_OK)
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

/// `notify --test`: a test message to every webhook, one line each on stdout; 0 when every
/// one was delivered, 1 otherwise (none configured included).
async fn notify_test(settings: &Settings) -> i32 {
    if settings.notify.is_empty() {
        println!("no webhook is configured: add a [[notify.webhook]] table; nothing was sent");
        return EXIT_FAILURE;
    }
    let message = crate::notify::Message {
        event: crate::notify::Event::Test,
        host: crate::notify::host_name(),
        run: None,
    };
    let metrics = Metrics::new();
    let sent = crate::notify::send(&settings.notify, settings.retry, &message, &metrics).await;
    let lines: Vec<Line> = sent
        .into_iter()
        .map(|d| {
            let what = format!("{} ({})", d.webhook, d.format.as_str());
            match d.result {
                Ok(()) => Line::ok(what, "the test message was delivered"),
                Err(e) => Line::fail(what, format!("not delivered: {e}")),
            }
        })
        .collect();
    print!("{}", crate::check::render(&lines));
    if lines.iter().all(|l| l.ok) {
        EXIT_OK
    } else {
        EXIT_FAILURE
    }
}

/// `history`: the recorded runs, newest first, as a table or JSON; or one run whole.
fn history(settings: &Settings, query: &crate::history::Query) -> Result<i32, AppError> {
    let mut out = std::io::stdout().lock();
    match crate::history::show(&settings.state.path, query, &mut out) {
        Err(crate::history::HistoryError::Write(e))
            if e.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(EXIT_OK)
        }
        Err(e) => Err(e.into()),
        Ok(()) => Ok(EXIT_OK),
    }
}

/// `explain`: one user read from Okta now, as a table or one JSON object.
async fn explain(settings: &Settings, user: &str, json: bool) -> Result<i32, AppError> {
    let explanation = crate::explain::explain(settings, user).await?;
    let mut out = std::io::stdout().lock();
    let written = if json {
        serde_json::to_writer_pretty(&mut out, &explanation)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        crate::explain::write_text(&mut out, &explanation)
    };
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(AppError::ExplainOutput(e)),
        _ => Ok(EXIT_OK),
    }
}

async fn check(path: &Path, settings: &Settings, offline: bool) -> i32 {
    let mut lines = vec![Line::ok("config", path.display().to_string())];
    lines.extend(crate::check::webhooks(&settings.notify));
    if offline {
        print!("{}", crate::check::render(&lines));
        return EXIT_OK;
    }
    let last_run = State::open_read_only(&settings.state.path)
        .ok()
        .flatten()
        .and_then(|s| s.last_run().ok().flatten());
    lines.extend(crate::check::runs(settings, last_run.as_ref()));
    let clients = match runner::clients(settings, Arc::new(Metrics::new())) {
        Ok(c) => c,
        Err(e) => {
            lines.push(Line::fail("clients", e.to_string()));
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
