//! Files the program reads and writes, held to what they should be: the config file and the
//! secret files it names draw a warning when other users may change or read them, and the
//! state folder is used only when no one else may write in it, without following symbolic
//! links planted in it.

#![cfg(unix)]

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Parts, Setup, stderr, stdout};
use okta_pendo_sync::state::State;
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
async fn a_secret_file_given_to_this_process_through_its_group_draws_no_warning() {
    // As Kubernetes mounts a Secret for a pod's `fsGroup`: the file belongs to another user and
    // to this process's group, mode 0440. The group's bits are how this process reads it. Giving
    // a file to another user takes root, which the tests run as in CI.
    let euid = rustix::process::geteuid();
    if !euid.is_root() {
        eprintln!("giving a file to another user needs root: not run");
        return;
    }
    let (okta, pendo) = servers().await;
    let setup = Setup::new(&okta, &pendo, Parts::default());
    let dir = setup.dir.path();
    let (token, key) = (dir.join("okta.token"), dir.join("pendo.key"));
    let group = rustix::process::getegid().as_raw();
    std::os::unix::fs::chown(&token, Some(65532), Some(group)).unwrap();
    chmod(&token, 0o440);
    // The same mode on a file this process owns: its group may read it for nothing.
    chmod(&key, 0o440);
    let out = setup.run(&["check"]).await;
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!said.contains("okta.api_token_file"), "{said}");
    assert!(
        said.contains(&format!(
            "pendo.integration_key_file: {} may be read by users other than its owner (mode 440)",
            key.display()
        )),
        "{said}"
    );
    // Others' bits always count.
    chmod(&token, 0o444);
    let out = setup.run(&["check"]).await;
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        said.contains(&format!(
            "okta.api_token_file: {} may be read by users other than its owner (mode 444)",
            token.display()
        )),
        "{said}"
    );
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

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// A file outside the state folder that a link inside it points at: it must stay as it is.
fn bystander(dir: &Path) -> std::path::PathBuf {
    let target = dir.join("elsewhere.txt");
    std::fs::write(&target, "keep me").unwrap();
    chmod(&target, 0o644);
    target
}

fn assert_untouched(target: &Path) {
    assert_eq!(std::fs::read_to_string(target).unwrap(), "keep me");
    assert_eq!(mode(target), 0o644);
}

#[test]
fn a_symlinked_lock_file_is_refused_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let target = bystander(dir.path());
    let state_dir = dir.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    chmod(&state_dir, 0o700);
    let db = state_dir.join("state.db");
    let lock = state_dir.join("state.db.lock");
    std::os::unix::fs::symlink(&target, &lock).unwrap();

    let err = State::open(&db).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "cannot lock the state database {} through {}: it is a symbolic link, which is not \
             followed: remove it",
            db.display(),
            lock.display()
        )
    );
    assert_untouched(&target);
    assert!(!db.exists(), "nothing opened without the lock");

    // A dangling link: refused too, nothing created where it points.
    std::fs::remove_file(&lock).unwrap();
    let missing = dir.path().join("not-there");
    std::os::unix::fs::symlink(&missing, &lock).unwrap();
    assert!(State::open(&db).is_err());
    assert!(!missing.exists());
}

#[test]
fn permissions_are_never_fixed_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let target = bystander(dir.path());
    let state_dir = dir.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    chmod(&state_dir, 0o700);
    let db = state_dir.join("state.db");
    // A companion of the database planted as a link: the open narrows companions it finds,
    // but not through a link.
    std::os::unix::fs::symlink(&target, state_dir.join("state.db-journal")).unwrap();
    let state = State::open(&db).unwrap();
    drop(state);
    assert_untouched(&target);
    // The files it made itself are owner-only.
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(&state_dir.join("state.db.lock")), 0o600);
}

#[test]
fn a_state_folder_others_may_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for folder_mode in [0o777, 0o1777, 0o702] {
        let state_dir = dir.path().join(format!("state-{folder_mode:o}"));
        std::fs::create_dir(&state_dir).unwrap();
        chmod(&state_dir, folder_mode);
        let db = state_dir.join("state.db");
        let err = State::open(&db).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "the state folder {} may be written by other users (mode {folder_mode:o}), who \
                 could replace the database or plant links in it: run `chmod o-w` on it or \
                 choose another state.path",
                state_dir.display()
            )
        );
        assert_eq!(
            std::fs::read_dir(&state_dir).unwrap().count(),
            0,
            "nothing made"
        );
    }

    // Readable by all, or reached through a link (systemd's DynamicUser state folders are
    // links): used.
    let shared = dir.path().join("readable");
    std::fs::create_dir(&shared).unwrap();
    chmod(&shared, 0o755);
    State::open(&shared.join("state.db")).unwrap();
    let private = dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    chmod(&private, 0o700);
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&private, &link).unwrap();
    State::open(&link.join("state.db")).unwrap();
    assert!(private.join("state.db").exists());
}
