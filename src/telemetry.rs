//! Logging: `tracing` to stdout (or stderr when stdout carries data), as text or JSON lines,
//! filtered by `RUST_LOG` when set, else by `log.level`; and, with `log.directory`, the same
//! lines in daily-rotated files of which `log.max_files` are kept. Log lines hold user data:
//! a log folder it creates is owner-only (0700), and so are its log files (0600), also ones
//! left by an earlier version with a wider mode.

use std::io::IsTerminal;
use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogFormat, LogSettings};

/// Where the console log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Stdout,
    /// Used when stdout carries a command's data (a dry run's JSON lines, `history`).
    Stderr,
}

/// Keeps the file writer flushing; drop it last.
#[must_use = "log files stop being written when the guard is dropped"]
pub struct Guard(#[allow(dead_code)] Option<WorkerGuard>);

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

fn layer<W>(log: &LogSettings, writer: W, ansi: bool) -> BoxedLayer
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer()
        .with_target(true)
        .with_ansi(ansi)
        .with_writer(writer);
    match log.format {
        LogFormat::Text => base.with_filter(filter(log)).boxed(),
        LogFormat::Json => base
            .json()
            .flatten_event(true)
            .with_filter(filter(log))
            .boxed(),
    }
}

/// `RUST_LOG` when set and valid, else `log.level`.
fn filter(log: &LogSettings) -> EnvFilter {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::builder().parse(v).ok())
        .or_else(|| EnvFilter::builder().parse(&log.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"))
}

/// The prefix and suffix of the log files' names.
const FILE_PREFIX: &str = "okta-pendo-sync";
const FILE_SUFFIX: &str = "log";

/// Creates the log folder, and any missing parent, owner-only (0700); an existing one is left
/// as it is.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Makes the log files already in `dir` owner-only (0600): new ones are born so (the binary
/// sets its umask), but an older file could be wider, and today's is appended to.
fn restrict_log_files(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let ours = name.starts_with(&format!("{FILE_PREFIX}."))
                && name.ends_with(&format!(".{FILE_SUFFIX}"));
            if ours && entry.file_type().is_ok_and(|t| t.is_file()) {
                let _ =
                    std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Installs the global subscriber. Calling it again is harmless (the first one stays). A log
/// folder that cannot be used is reported and logging goes on to the console.
pub fn init(log: &LogSettings, target: Target) -> Guard {
    let mut layers = vec![match target {
        Target::Stdout => layer(log, std::io::stdout, std::io::stdout().is_terminal()),
        Target::Stderr => layer(log, std::io::stderr, std::io::stderr().is_terminal()),
    }];
    let mut guard = None;
    let mut file_error = None;
    if let Some(dir) = &log.directory {
        if let Err(e) = private_dir(dir) {
            file_error = Some(format!(
                "cannot create the log folder {}: {e}; logging to the console only",
                dir.display()
            ));
        }
        restrict_log_files(dir);
    }
    if let (Some(dir), None) = (&log.directory, &file_error) {
        let appender = RollingFileAppender::builder()
            .rotation(Rotation::DAILY)
            .filename_prefix(FILE_PREFIX)
            .filename_suffix(FILE_SUFFIX)
            .max_log_files(log.max_files)
            .build(dir);
        match appender {
            Ok(appender) => {
                let (writer, g) = tracing_appender::non_blocking(appender);
                guard = Some(g);
                layers.push(layer(log, writer, false));
            }
            Err(e) => {
                file_error = Some(format!(
                    "cannot write log files in {}: {e}; logging to the console only",
                    dir.display()
                ));
            }
        }
    }
    let installed = tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_ok();
    if let (true, Some(e)) = (installed, file_error) {
        tracing::warn!("{e}");
    }
    Guard(guard)
}
