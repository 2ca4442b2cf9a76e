//! Files owner-only whatever the umask: the real binary, started under `umask 000`, writes its
//! state folder, log folder and dry-run output owner-only (files 0600, folders 0700), fixes a
//! dry-run output file that was wider, and refuses to write through a symbolic link.

#![cfg(unix)]

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use common::{Parts, Setup};
use okta_pendo_testkit::{FakeOkta, FakePendo, OktaOptions, PendoOptions, UserSource};

/// Runs `program args` with the file creation mask cleared first.
async fn under_umask_000(program: &Path, args: &[&std::ffi::OsStr]) -> Output {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(program)
        .args(args)
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
        .await
        .expect("finished within 120 s")
        .expect("started")
}

/// The binary with `-c config` and `args`, under `umask 000`.
async fn run(setup: &Setup, args: &[&str]) -> Output {
    let mut all: Vec<&std::ffi::OsStr> = vec!["-c".as_ref(), setup.config.as_os_str()];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    under_umask_000(Path::new(env!("CARGO_BIN_EXE_okta-pendo-sync")), &all).await
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// Every entry under `dir` (recursively), with its mode.
fn modes_under(dir: &Path) -> Vec<(String, bool, u32)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let is_dir = path.is_dir();
            found.push((path.display().to_string(), is_dir, mode(&path)));
            if is_dir {
                pending.push(path);
            }
        }
    }
    found
}

async fn setup() -> (FakeOkta, FakePendo, Setup) {
    let okta = FakeOkta::start(OktaOptions {
        users: UserSource::Generated(20),
        ..OktaOptions::default()
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            extra: "[schedule]\ncron = \"0 0 6 1 1 *\"\nrun_on_start = true\n",
            ..Parts::default()
        },
    );
    let text = std::fs::read_to_string(&setup.config).unwrap().replace(
        "[log]\n",
        &format!(
            "[log]\ndirectory = \"{}\"\n",
            setup.dir.path().join("logs/okta-pendo-sync").display()
        ),
    );
    std::fs::write(&setup.config, text).unwrap();
    (okta, pendo, setup)
}

#[tokio::test]
async fn under_umask_000_every_file_written_is_owner_only() {
    let (_okta, _pendo, setup) = setup().await;
    let dir = setup.dir.path();
    // The wrapper really clears the mask: a file `touch` creates is world-writable.
    let probe = dir.join("probe");
    let out = under_umask_000(Path::new("touch"), &[probe.as_os_str()]).await;
    assert!(out.status.success());
    assert_eq!(mode(&probe), 0o666);

    // The daemon, for the -wal and -shm companions, which exist while the database is open.
    let mut all: Vec<&std::ffi::OsStr> = vec!["-c".as_ref(), setup.config.as_os_str()];
    all.push("run".as_ref());
    let mut daemon = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_okta-pendo-sync"))
        .args(&all)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let log_text = || {
        modes_under(&dir.join("logs"))
            .into_iter()
            .filter(|(_, is_dir, _)| !is_dir)
            .map(|(p, _, _)| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<String>()
    };
    let mut ran = false;
    for _ in 0..300 {
        if dir.join("logs").exists() && log_text().contains("run 1 succeeded") {
            ran = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ran, "the start-up run finished");
    let state = modes_under(&dir.join("state"));
    let status = std::process::Command::new("kill")
        .args(["-TERM", &daemon.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(daemon.wait().await.unwrap().code(), Some(0));

    let output = dir.join("dry-run.jsonl");
    let out = run(
        &setup,
        &[
            "sync",
            "--dry-run",
            "--full",
            "--output",
            output.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", common::stdout(&out));
    assert_eq!(
        std::fs::read_to_string(&output).unwrap().lines().count(),
        20
    );

    let names: Vec<&str> = state.iter().map(|(p, _, _)| p.as_str()).collect();
    for suffix in ["state.db", "state.db.lock", "state.db-wal", "state.db-shm"] {
        assert!(names.iter().any(|n| n.ends_with(suffix)), "{names:?}");
    }
    let logs = modes_under(&dir.join("logs"));
    assert!(logs.iter().any(|(p, _, _)| p.ends_with(".log")), "{logs:?}");
    for (path, is_dir, mode) in state.iter().chain(&logs) {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{path} is {mode:o}");
    }
    assert_eq!(mode(&dir.join("state")), 0o700);
    assert_eq!(mode(&dir.join("logs")), 0o700);
    assert_eq!(mode(&output), 0o600);
}

#[tokio::test]
async fn dry_run_output_refuses_a_symlink_and_narrows_an_existing_file() {
    let (_okta, _pendo, setup) = setup().await;
    let dir = setup.dir.path();

    // A link to an existing file: refused, the file untouched.
    let target = dir.join("elsewhere.txt");
    std::fs::write(&target, "keep me").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    let link = dir.join("link.jsonl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = run(
        &setup,
        &["sync", "--dry-run", "--output", link.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let said = format!("{}{}", common::stdout(&out), common::stderr(&out));
    assert!(
        said.contains(&format!(
            "cannot create the dry-run output {}: it is a symbolic link",
            link.display()
        )),
        "{said}"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    assert_eq!(mode(&target), 0o644);

    // A dangling link: refused, nothing created where it points.
    let missing = dir.join("not-there.txt");
    let dangling = dir.join("dangling.jsonl");
    std::os::unix::fs::symlink(&missing, &dangling).unwrap();
    let out = run(
        &setup,
        &["sync", "--dry-run", "--output", dangling.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(!missing.exists());

    // An existing file readable by everyone: rewritten, and owner-only.
    let existing = dir.join("existing.jsonl");
    std::fs::write(&existing, "old\n").unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(
        &setup,
        &["sync", "--dry-run", "--output", existing.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", common::stdout(&out));
    assert_eq!(mode(&existing), 0o600);
    assert!(!std::fs::read_to_string(&existing).unwrap().contains("old"));
}

#[tokio::test]
async fn older_wider_files_are_narrowed_when_opened() {
    let (_okta, _pendo, setup) = setup().await;
    let dir = setup.dir.path();
    // A first run creates everything; then someone (or an older version) widens it all.
    let out = run(&setup, &["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", common::stdout(&out));
    let mut widened = Vec::new();
    for (path, is_dir, _) in modes_under(&dir.join("state"))
        .into_iter()
        .chain(modes_under(&dir.join("logs")))
    {
        if !is_dir {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            widened.push(path);
        }
    }
    for suffix in [".db", ".lock", ".log"] {
        assert!(widened.iter().any(|p| p.ends_with(suffix)), "{widened:?}");
    }
    let out = run(&setup, &["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", common::stdout(&out));
    for path in &widened {
        assert_eq!(mode(Path::new(path)), 0o600, "{path}");
    }
}
