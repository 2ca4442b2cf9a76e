//! The `okta-pendo-sync` binary: everything lives in the library; this only hands over the
//! arguments and exits with the code the command returns.

fn main() {
    std::process::exit(okta_pendo_sync::app::run_from(std::env::args_os()));
}
