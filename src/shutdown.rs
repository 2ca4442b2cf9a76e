//! Signals: SIGTERM and SIGINT stop (the first asks the run to stop: reading ends, pushes in
//! flight get their grace period, the run is recorded as `interrupted`; a second one exits at
//! once); for the daemon, SIGHUP asks for the config to be reloaded.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
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

/// Like [`watch`], and also sends a message on `reload` for each SIGHUP.
pub fn watch_with_reload(cancel: CancellationToken, reload: mpsc::Sender<()>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; edit the config file to reload it");
            return;
        };
        let stopper = watch(cancel.clone());
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    if reload.send(()).await.is_err() {
                        break;
                    }
                }
                () = cancel.cancelled() => break,
            }
        }
        // Keep the stop watcher alive: a second SIGTERM must still exit at once.
        let _ = stopper.await;
    })
}
