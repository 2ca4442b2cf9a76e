//! The `okta-pendo-sync` binary: everything lives in the library; this only sets the file
//! creation mask, hands over the arguments and exits with the code the command returns.

fn main() {
    // Every file the process creates holds user data or sits next to it, so each is born
    // owner-only (0600, folders 0700) whatever umask it was started with; this covers files
    // other code creates too: SQLite's -wal/-shm companions and the daily log files.
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    std::process::exit(okta_pendo_sync::app::run_from(std::env::args_os()));
}
