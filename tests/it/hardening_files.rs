//! Files the program reads and writes, held to what they should be: the config file and the
//! secret files it names draw a warning when other users may change or read them, and the
//! state folder is used only when no one else may write in it, without following symbolic
//! links planted in it.

#![cfg(unix)]

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Parts, Setup, stderr, stdout};
use okta_pendo_testkit::{FakeOkta, FakePendo, OktaOptions, PendoOptions};

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

async fn servers() -> (FakeOkta, FakePendo) {
    let okta = FakeOkta::start(OktaOptions::default()).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    (okta, pendo)
}

#[tokio::test]
async fn readable_secret_files_and_a_config_others_may_write_draw_warnings() {
    let (okta, pendo) = servers().await;
    let setup = Setup::new(&okta, &pendo, Parts::default());
    let dir = setup.dir.path();
    let (token, key) = (dir.join("okta.token"), dir.join("pendo.key"));

    // Secret files readable by everyone, in a config others may write.
    chmod(&token, 0o644);
    chmod(&key, 0o640);
    chmod(&setup.config, 0o666);
    let out = setup.run(&["check"]).await;
    let said = format!("{}{}", stdout(&out), stderr(&out));
    for warning in [
        format!(
            "{} may be changed by other users (mode 666): run `chmod o-w` on it",
            setup.config.display()
        ),
        format!(
            "okta.api_token_file: {} may be read by users other than its owner (mode 644)",
            token.display()
        ),
        format!(
            "pendo.integration_key_file: {} may be read by users other than its owner (mode 640)",
            key.display()
        ),
    ] {
        assert!(said.contains(&warning), "{warning} in {said}");
    }
    // Warnings, not errors: the configuration is still good.
    assert!(
        common::check_line(&stdout(&out), "config").unwrap().0,
        "{said}"
    );
    assert!(!said.contains(common::OKTA_TOKEN) && !said.contains(common::PENDO_KEY));

    // Owner-only secrets and a config only its owner may write: no warning. A config readable
    // by all is fine when it holds no secret.
    chmod(&token, 0o600);
    chmod(&key, 0o400);
    chmod(&setup.config, 0o644);
    let out = setup.run(&["check"]).await;
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        !said.contains("may be changed") && !said.contains("may be read"),
        "{said}"
    );
}
