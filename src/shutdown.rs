//! Stopping on SIGTERM and SIGINT: the first asks the run to stop (reading ends, pushes in
//! flight get their grace period, the run is recorded as `interrupted`); a second one exits at
//! once.

use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Exit code after a second signal: the run was cut short without its record.
pub const EXIT_FORCED: i32 = 130;

/// Watches SIGTERM and SIGINT until the returned task is aborted.
pub fn watch(cancel: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::warn!("cannot listen for SIGTERM/SIGINT; they will stop the process at once");
            return;
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::warn!("{name} received: finishing up (send it again to exit at once)");
        cancel.cancel();
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::error!("second {name}: exiting at once");
        std::process::exit(EXIT_FORCED);
    })
}
