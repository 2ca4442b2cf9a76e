//! okta-pendo-sync keeps Pendo visitor metadata in step with Okta.
//!
//! A run reads users page by page from the Okta Users API ([`okta`]), maps the configured
//! attributes of each to Pendo fields ([`mapping`]), pushes them to Pendo in batches with bounded
//! concurrency ([`pendo`]) and stores a record of what happened ([`state`], [`report`]).
//! [`sync`] wires that pipeline; [`config`] turns the TOML file and environment into validated
//! settings ([`signing`]: the OAuth private key it reads); [`app`] and [`cli`] are the command
//! line, [`history`] and [`explain`] its two read-only questions (what runs did, what a run
//! makes of one user); [`retry`] is the back-off both clients share; [`http`] what else they
//! share; [`telemetry`] the logs; [`shutdown`] the signals.
//! [`daemon`] runs syncs on the [`schedule`] and, with [`server`], serves health and
//! [`metrics`]; [`notify`] posts a run that did not succeed, and a recovery, to webhooks;
//! [`health`] asks that server from the command line.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod app;
pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod explain;
pub mod health;
pub mod history;
pub mod http;
pub mod mapping;
pub mod metrics;
pub mod notify;
pub mod okta;
pub mod pendo;
pub mod report;
pub mod retry;
pub mod runner;
pub mod schedule;
pub mod server;
pub mod shutdown;
pub mod signing;
pub mod state;
pub mod sync;
pub mod telemetry;
pub mod zone;
