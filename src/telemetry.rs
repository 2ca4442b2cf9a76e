//! Logging: `tracing` to stdout (or stderr when stdout carries data), as text or JSON lines,
//! filtered by `RUST_LOG` when set, else by `log.level`.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Stdout,
    /// Used when stdout carries a command's data (a dry run's JSON lines).
    Stderr,
}

/// Installs the global subscriber. Calling it again is harmless (the first one stays).
pub fn init(log: &LogSettings, target: Target) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::builder().parse(v).ok())
        .or_else(|| EnvFilter::builder().parse(&log.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let ansi = match target {
        Target::Stdout => std::io::stdout().is_terminal(),
        Target::Stderr => std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(ansi);
    let result = match (log.format, target) {
        (LogFormat::Text, Target::Stdout) => builder.with_writer(std::io::stdout).try_init(),
        (LogFormat::Text, Target::Stderr) => builder.with_writer(std::io::stderr).try_init(),
        (LogFormat::Json, Target::Stdout) => builder
            .json()
            .flatten_event(true)
            .with_writer(std::io::stdout)
            .try_init(),
        (LogFormat::Json, Target::Stderr) => builder
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .try_init(),
    };
    // Already installed (a second command in one process): keep the first.
    drop(result);
}
