//! The command line (clap). Doc comments here are the `--help` text.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use clap::{Parser, Subcommand};

use crate::report::Status;

/// Keeps Pendo visitor metadata in step with Okta user attributes.
#[derive(Debug, Parser)]
#[command(name = "okta-pendo-sync", version, about, long_about = None)]
pub struct Cli {
    /// The config file [default: $OKTA_PENDO_SYNC_CONFIG, else /etc/okta-pendo-sync/config.toml]
    #[arg(short, long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The daemon: sync on the schedule until SIGTERM/SIGINT; SIGHUP reloads the config
    Run,
    /// Run one sync now, then exit (exit code 1 if it failed, was partial, interrupted or held)
    Sync {
        /// Read Okta and compute the payloads, push nothing; write them as JSON lines. Takes no
        /// lock: it may run beside the daemon
        #[arg(long)]
        dry_run: bool,
        /// Read and push every user in scope
        #[arg(long)]
        full: bool,
        /// Push even what the guard would hold (see `[guard]`)
        #[arg(long, conflicts_with = "dry_run")]
        force: bool,
        /// With --dry-run: write the JSON lines to FILE instead of stdout
        #[arg(long, value_name = "FILE", requires = "dry_run")]
        output: Option<PathBuf>,
    },
    /// Validate the config, then check the Okta credentials, the Pendo key and every mapped field
    Check {
        /// Only validate the config (no network): for ExecStartPre and CI
        #[arg(long)]
        offline: bool,
    },
    /// Send a test message to every configured webhook ([[notify.webhook]]); exit 0 when all
    /// were delivered, else 1
    Notify {
        /// Send the test message (required: the command sends nothing else)
        #[arg(long, required = true)]
        test: bool,
    },
    /// Ask the running daemon's /healthz (at the config's [server] listen): exit 0 when it
    /// answers 200, 1 otherwise, 78 when no server is configured. Reads nothing else of the
    /// config: for container health checks
    Health {
        /// How long to wait for the answer
        #[arg(long, default_value = "3s", value_name = "DURATION", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Show the recorded runs, newest first; with ID, that one run whole
    History {
        /// Show this run whole: every field, all its errors and missing visitor IDs
        #[arg(value_name = "ID", conflicts_with_all = ["status", "since"])]
        id: Option<i64>,
        /// How many runs to show (counted after --status and --since)
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: u32,
        /// Only runs that ended so: succeeded, partial, failed, interrupted or held (repeat the
        /// option or give a comma-separated list)
        #[arg(long, value_name = "S", value_delimiter = ',', value_parser = parse_status)]
        status: Vec<Status>,
        /// Only runs started at or after TIME: RFC 3339 (2026-11-28T06:00:00Z), a UTC date
        /// (2026-11-28), or a duration ago (7d, 36h, 90m)
        #[arg(long, value_name = "TIME", value_parser = parse_since)]
        since: Option<DateTime<Utc>>,
        /// Print JSON: an array of run records, or with ID the one record
        #[arg(long)]
        json: bool,
    },
    /// Read one user from Okta now and show what a run would send for it, and whether the next
    /// run would push it. Pushes nothing, takes no lock
    Explain {
        /// A login, a visitor ID or an Okta user id
        #[arg(value_name = "USER", value_parser = parse_user)]
        user: String,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
}

/// A run status, as records spell it.
fn parse_status(s: &str) -> Result<Status, String> {
    Status::parse(s.trim()).ok_or_else(|| {
        let all: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
        format!("expected one of {}", all.join(", "))
    })
}

/// `--since`: an RFC 3339 time, a date (midnight UTC), or a duration before now.
fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_time(NaiveTime::MIN).and_utc());
    }
    let ago = humantime::parse_duration(s).map_err(|_| {
        "expected an RFC 3339 time (2026-11-28T06:00:00Z), a date (2026-11-28) or a duration \
         ago (7d, 36h, 90m)"
            .to_owned()
    })?;
    chrono::TimeDelta::from_std(ago)
        .ok()
        .and_then(|ago| Utc::now().checked_sub_signed(ago))
        .ok_or_else(|| format!("{s} ago is before any time this program can represent"))
}

/// `explain`'s USER: one path segment of Okta's user URL.
fn parse_user(s: &str) -> Result<String, String> {
    if s.trim().is_empty() || s == "." || s == ".." {
        return Err("expected a login, a visitor ID or an Okta user id".to_owned());
    }
    Ok(s.to_owned())
}
