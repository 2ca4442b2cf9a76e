//! `fake-saas`: a fake Okta org and a fake Pendo in one process, for the demo and for
//! benchmarks and memory measurements of the real client in a separate process.
//!
//! Prints one JSON line `{"okta":"http://127.0.0.1:P1","pendo":"http://127.0.0.1:P2"}` once
//! both listen, serves until SIGTERM/SIGINT or `--exit-after-secs`, then prints one JSON line
//! of counters to stderr.
//!
//! Generated users have realistic logins and emails (`first.last@company.com`, in an order
//! unrelated to the user ids); `--sequential-logins` gives the old `user{i}@example.com`.

use std::collections::HashSet;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use okta_pendo_testkit::users::{Logins, generated_login};
use okta_pendo_testkit::{
    ExistingVisitors, FakeOkta, FakePendo, OktaOptions, PendoOptions, UserSource,
};

/// Fake Okta and Pendo servers speaking the real wire formats.
#[derive(Debug, Parser)]
#[command(name = "fake-saas", version)]
struct Args {
    /// Number of generated Okta users.
    #[arg(long)]
    users: usize,
    /// Address of the fake Okta.
    #[arg(long, default_value = "127.0.0.1:0")]
    okta_addr: SocketAddr,
    /// Address of the fake Pendo.
    #[arg(long, default_value = "127.0.0.1:0")]
    pendo_addr: SocketAddr,
    /// Okta API token expected in `Authorization: SSWS ...`.
    #[arg(long, default_value = "okta-test-token")]
    okta_token: String,
    /// Pendo integration key expected in `x-pendo-integration-key`.
    #[arg(long, default_value = "pendo-test-key")]
    pendo_key: String,
    /// Latency of each Okta page (request to response headers, rendering included), in ms.
    #[arg(long, default_value_t = 0)]
    page_delay_ms: u64,
    /// Added latency per Pendo POST, in milliseconds.
    #[arg(long, default_value_t = 0)]
    batch_delay_ms: u64,
    /// Every K-th generated user (indices K-1, 2K-1, ...) is missing in Pendo (by login).
    #[arg(long)]
    missing_every: Option<usize>,
    /// Logins and emails `user{i}@example.com`, in the order of the user ids, instead of the
    /// default realistic `first.last@company.com` in an order unrelated to the ids.
    #[arg(long)]
    sequential_logins: bool,
    /// The org's rate-limit budget per window, as sent in `x-rate-limit-limit`. Real orgs
    /// commonly have 600 a minute for `/api/v1/users`.
    #[arg(long, default_value_t = 600)]
    rate_limit: u32,
    /// Enforce the budget: answer 429 to requests beyond `--rate-limit` in a window.
    #[arg(long)]
    enforce_budget: bool,
    /// The rate-limit window, in seconds.
    #[arg(long, default_value_t = 60)]
    window_secs: u64,
    /// Every K-th generated user (indices 0, K, 2K, ...) changed just now: a new title and a
    /// `lastUpdated` of the start time (for incremental-run benchmarks).
    #[arg(long)]
    touch_every: Option<usize>,
    /// Exit by itself after this many seconds.
    #[arg(long, default_value_t = 3600)]
    exit_after_secs: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake-saas: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> std::io::Result<()> {
    let (users, logins) = if args.sequential_logins {
        (UserSource::Generated(args.users), Logins::Sequential)
    } else {
        (
            UserSource::GeneratedRealistic(args.users),
            Logins::Realistic,
        )
    };
    let existing = match args.missing_every {
        Some(k) if k > 0 => ExistingVisitors::Except(
            (1..)
                .map(|m| m * k - 1)
                .take_while(|&i| i < args.users)
                .map(|i| generated_login(i, logins))
                .collect::<HashSet<_>>(),
        ),
        _ => ExistingVisitors::All,
    };
    let okta = FakeOkta::start_on(
        args.okta_addr,
        OktaOptions {
            token: args.okta_token,
            users,
            page_delay: Duration::from_millis(args.page_delay_ms),
            precise_page_delay: true,
            rate_limit: args.rate_limit,
            budget_per_minute: args.enforce_budget.then_some(args.rate_limit),
            budget_window: Duration::from_secs(args.window_secs.max(1)),
            ..OktaOptions::default()
        },
    )
    .await?;
    if let Some(k) = args.touch_every.filter(|k| *k > 0) {
        let at = okta_pendo_testkit::users::okta_timestamp(std::time::SystemTime::now());
        for i in (0..args.users).step_by(k) {
            okta.touch_user(i, &at, "Changed title");
        }
    }
    let pendo = FakePendo::start_on(
        args.pendo_addr,
        PendoOptions {
            key: args.pendo_key,
            existing,
            // Nobody can read stored values from outside the process: keep only counters.
            record_values: false,
            batch_delay: Duration::from_millis(args.batch_delay_ms),
            ..PendoOptions::default()
        },
    )
    .await?;

    {
        let line = serde_json::json!({ "okta": okta.base_url(), "pendo": pendo.base_url() });
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }

    wait_for_stop(Duration::from_secs(args.exit_after_secs)).await;

    let counters = serde_json::json!({
        "okta_requests": okta.request_count(),
        "okta_429s": okta.rate_limited_count(),
        "pendo_posts": pendo.post_count(),
        "records_received": pendo.records_received(),
    });
    eprintln!("{counters}");
    Ok(())
}

async fn wait_for_stop(limit: Duration) {
    let sleep = tokio::time::sleep(limit);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! {
                _ = sleep => {}
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
    }
    tokio::select! {
        _ = sleep => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
