//! The integration tests, one test binary: each module is one area of the product, most of
//! them driving the real `okta-pendo-sync` binary against the local Okta and Pendo servers of
//! the testkit. `common` holds the helpers they share.

mod alerts;
mod cli;
mod common;
mod daemon;
mod explain;
mod faults;
mod golden;
mod hardening_files;
mod hardening_net;
mod health;
mod history;
mod incremental;
mod logs;
mod notify;
mod oauth;
mod pacing;
mod permissions;
mod properties;
mod reading;
mod resilience;
mod sync;
mod systemd;
mod trust;
mod value_keys;
