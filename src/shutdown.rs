//! Signals: SIGTERM and SIGINT stop (the first asks the run to stop: reading ends, pushes in
//! flight get their grace period, the run is recorded as `interrupted`; a second one exits at
//! once); for the daemon, SIGHUP asks for the config to be reloaded.
//!
//! The handlers are registered before anything slow happens (config, state, migrations), so a
//! signal that comes early is handled, not fatal.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Exit code after a second signal: the run was cut short without its record.
pub const EXIT_FORCED: i32 = 130;

/// The registered handlers, not yet watched.
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Option<Signal>,
}

impl Signals {
    /// Registers SIGTERM and SIGINT, and SIGHUP when `reload`. `None` (with a message on
    /// stderr) if the system refuses: the signals then keep their default action.
    pub fn register(reload: bool) -> Option<Signals> {
        let registered = (|| -> std::io::Result<Signals> {
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                hup: if reload {
                    Some(signal(SignalKind::hangup())?)
                } else {
                    None
                },
            })
        })();
        match registered {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("warning: cannot handle signals ({e}); SIGTERM will stop at once");
                None
            }
        }
    }

    /// Watches until the returned task is aborted: the first SIGTERM/SIGINT cancels `cancel`,
    /// a second exits at once; each SIGHUP sends on `reload`.
    pub fn watch(
        self,
        cancel: CancellationToken,
        reload: Option<mpsc::Sender<()>>,
    ) -> JoinHandle<()> {
        let Signals {
            mut term,
            mut int,
            mut hup,
        } = self;
        tokio::spawn(async move {
            let mut stops = 0;
            loop {
                let hangup = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                };
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                    _ = hangup => {
                        if let Some(tx) = &reload {
                            let _ = tx.send(()).await;
                        }
                        continue;
                    }
                };
                stops += 1;
                if stops == 1 {
                    tracing::warn!("{name} received: finishing up (send it again to exit at once)");
                    cancel.cancel();
                } else {
                    tracing::error!("second {name}: exiting at once");
                    std::process::exit(EXIT_FORCED);
                }
            }
        })
    }
}
