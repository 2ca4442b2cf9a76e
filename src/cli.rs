//! The command line (clap). Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
    /// Show the recorded runs, newest first
    History {
        /// How many runs to show
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: u32,
        /// Print a JSON array of run records
        #[arg(long)]
        json: bool,
    },
}
