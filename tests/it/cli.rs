//! The command line as users meet it: config errors, the example config, `history`, `check`,
//! usage errors and exit codes.

use crate::common;

use std::collections::BTreeMap;

use common::{OKTA_TOKEN, PENDO_KEY, Parts, Setup, run_bin, stderr, stdout};
use okta_pendo_sync::config::{self, UserScope};
use okta_pendo_testkit::{FakeOkta, FakePendo, OktaFault, OktaOptions, PendoOptions, UserSource};
use serde_json::Value;

fn write_config(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[tokio::test]
async fn every_config_problem_is_reported_at_once_with_its_key() {
    let (_dir, path) = write_config(
        r#"
[okta]
org_url = "http://acme.okta.com"
api_token = "tok-SECRET-1"
api_token_file = "/nonexistent/token"
filter = 'status eq "ACTIVE"'
search = 'profile.x eq "y"'
page_size = 500
colour = "blue"

[pendo]
integration_key_file = "/nonexistent/pendo.key"
region = "mars"
batch_size = "many"
concurrency = 0
metadata_group = "special"

[sync]
visitor_id_key = "profile..login"
on_null = "ignore"

[mapping]
"bad field" = "profile.x"
title = { path = "profile.title", type = "string" }
dept = { path = "profile.department", kind = "text" }
n = 5

[log]
format = "xml"
level = "info,,=="

[extra]
x = 1
"#,
    );
    let out = run_bin(
        &path,
        &["check"],
        &[("OKTA_PENDO_SYNC__STATE__PATHH", "/x")],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(78),
        "invalid config exits 78 (EX_CONFIG)"
    );
    let err = stderr(&out);
    for expected in [
        "okta.org_url: \"http://acme.okta.com\" uses http://, which is allowed only for loopback hosts",
        "okta.api_token: set either okta.api_token or okta.api_token_file, not both",
        "okta.search: set either okta.filter or okta.search, not both",
        "okta.page_size: must be between 1 and 200",
        "okta.colour: unknown key",
        "pendo.integration_key_file: cannot read /nonexistent/pendo.key",
        "pendo.region: unknown region \"mars\"",
        "pendo.batch_size: expected",
        "pendo.concurrency: must be between 1 and 64, not 0",
        "pendo.metadata_group: must be \"custom\" or \"agent\"",
        "sync.visitor_id_key: \"profile..login\" has an empty segment",
        "sync.on_null: must be \"skip\" or \"clear\"",
        "mapping.bad field: \"bad field\" is not a valid Pendo field name",
        "mapping.title.type: unknown type \"string\"",
        "mapping.dept.kind: unknown key",
        "mapping.n: must be an attribute path string",
        "log.format: must be \"text\" or \"json\"",
        "log.level: not a valid log filter",
        "extra: unknown section",
        "state.pathh: unknown key (set in the environment)",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(!err.contains("tok-SECRET-1"));
    assert!(stdout(&out).is_empty(), "nothing ran");
}

#[tokio::test]
async fn missing_required_keys_and_bad_toml() {
    let (_dir, path) = write_config("[okta]\n[pendo]\n");
    let out = run_bin(&path, &["sync"], &[]).await;
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    for expected in [
        "okta.org_url: is required",
        "okta.api_token: is required (or okta.api_token_file)",
        "pendo.integration_key: is required (or pendo.integration_key_file)",
        "mapping: is required",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }

    let (_dir, path) = write_config("[okta]\napi_token = SECRET-unquoted\n");
    let out = run_bin(&path, &["check"], &[]).await;
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(err.contains("(file): not valid TOML at line 2"), "{err}");
    assert!(
        !err.contains("SECRET-unquoted"),
        "the offending line is not quoted: {err}"
    );

    let out = run_bin(
        std::path::Path::new("/nonexistent/config.toml"),
        &["check"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("cannot read the config file"));
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let (_dir, path) = write_config("");
    for args in [
        &["frobnicate"][..],
        &["sync", "--output", "x.jsonl"],
        &["history", "--limit", "x"],
    ] {
        let out = run_bin(&path, args, &[]).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    let out = run_bin(&path, &["--help"], &[]).await;
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    for cmd in ["sync", "check", "history"] {
        assert!(help.contains(cmd));
    }
}

#[test]
fn the_example_config_loads_and_documents_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    let key = dir.path().join("key");
    std::fs::write(&token, "t").unwrap();
    std::fs::write(&key, "k").unwrap();
    let env = BTreeMap::from([
        (
            "OKTA_PENDO_SYNC__OKTA__API_TOKEN_FILE".to_owned(),
            token.display().to_string(),
        ),
        (
            "OKTA_PENDO_SYNC__PENDO__INTEGRATION_KEY_FILE".to_owned(),
            key.display().to_string(),
        ),
    ]);
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/okta-pendo-sync.toml");
    let loaded = config::load_with_env(&example, Some(env)).unwrap_or_else(|e| panic!("{e}"));
    let s = loaded.settings;
    assert_eq!(s.okta.org_url.as_str(), "https://acme.okta.com/");
    assert_eq!(
        s.okta.scope,
        UserScope::Filter(r#"status eq "ACTIVE""#.into())
    );
    assert_eq!(s.mapping.fields().len(), 4);

    let text = std::fs::read_to_string(&example).unwrap();
    // Every key the loader accepts is documented, under its section.
    for full in config::KEYS {
        let (section, key) = full.rsplit_once('.').unwrap();
        let start = text
            .find(&format!("[{section}]"))
            .unwrap_or_else(|| panic!("the example has no [{section}]"));
        let body = &text[start..];
        let end = body[1..].find("\n[").map_or(body.len(), |e| e + 1);
        assert!(
            body[..end].contains(&format!("{key} =")),
            "the example does not document {full}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_prints_records_newest_first_as_spec_says() {
    let okta = FakeOkta::start(OktaOptions {
        users: UserSource::Generated(30),
        ..OktaOptions::default()
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(&okta, &pendo, Parts::default());

    // Before any run: empty, and nothing is created.
    let out = setup.run(&["history", "--json"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        Value::Array(vec![])
    );
    assert!(!setup.state.exists());

    assert_eq!(setup.run(&["sync"]).await.status.code(), Some(0));
    assert_eq!(
        setup
            .run(&["sync", "--dry-run", "--output", "/dev/null"])
            .await
            .status
            .code(),
        Some(0)
    );
    assert_eq!(setup.run(&["sync", "--full"]).await.status.code(), Some(0));

    let runs = common::history(&setup).await;
    assert_eq!(runs.len(), 3);
    let ids: Vec<i64> = runs.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    assert_eq!(runs[1]["mode"], "dry-run");
    for run in &runs {
        for key in [
            "id",
            "trigger",
            "mode",
            "started_at",
            "finished_at",
            "status",
            "status_code",
            "message",
            "okta_users_read",
            "records_processed",
            "users_updated",
            "users_failed",
            "users_missing",
            "missing_visitor_ids",
            "users_unchanged",
            "users_skipped",
            "errors",
        ] {
            assert!(run.get(key).is_some(), "{key} missing from {run}");
        }
        for t in ["started_at", "finished_at"] {
            let s = run[t].as_str().unwrap();
            chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{t} {s}: {e}"));
            assert!(s.ends_with('Z'), "UTC: {s}");
        }
    }

    let out = setup.run(&["history", "--json", "--limit", "1"]).await;
    let one: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["id"], runs[0]["id"]);

    let out = setup.run(&["history"]).await;
    assert_eq!(out.status.code(), Some(0));
    let table = stdout(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].contains("ID") && lines[0].contains("STATUS") && lines[0].contains("MISSING"));
    assert!(
        lines[1].contains("manual") && lines[1].contains("full") && lines[1].contains("succeeded")
    );
    assert!(lines[2].contains("Read 30 users from Okta"), "{table}");
    assert!(lines[3].contains("dry-run"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_each_side() {
    let okta = FakeOkta::start(OktaOptions::default()).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(&okta, &pendo, Parts::default());
    let out = setup.run(&["check"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for what in ["config", "okta", "pendo"] {
        assert!(common::check_line(&text, what).unwrap().0, "{what}: {text}");
    }
    assert!(text.ends_with("verdict: all checks passed\n"), "{text}");

    let wrong_okta = FakeOkta::start(OktaOptions {
        token: "another".into(),
        ..OktaOptions::default()
    })
    .await;
    let wrong_pendo = FakePendo::start(PendoOptions {
        key: "another".into(),
        ..PendoOptions::default()
    })
    .await;
    let setup = Setup::new(&wrong_okta, &wrong_pendo, Parts::default());
    let out = setup.run(&["check"]).await;
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        !common::check_line(&text, "okta").unwrap().0 && text.contains("rejected the API token"),
        "{text}"
    );
    assert!(
        !common::check_line(&text, "pendo").unwrap().0
            && text.contains("rejected the integration key"),
        "{text}"
    );
    assert!(!text.contains(OKTA_TOKEN) && !text.contains(PENDO_KEY));
    assert!(!setup.state.exists(), "check records nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_each_group_the_run_reads() {
    // Request 0 is the users probe; then one probe per group, in order.
    let okta = FakeOkta::start(OktaOptions {
        groups: vec![
            ("00gA".into(), (0..3).collect()),
            ("00gC".into(), (3..6).collect()),
        ],
        faults: vec![OktaFault::Status {
            request: 3,
            status: 403,
        }],
        ..OktaOptions::default()
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            okta: r#"group_ids = ["00gA", "00gNope", "00gC"]"#,
            ..Parts::default()
        },
    );
    let out = setup.run(&["check"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(common::check_line(&text, "okta").unwrap().0, "{text}");
    let line = |id: &str| common::check_line(&text, &format!("group {id}")).unwrap();
    assert!(line("00gA").0, "{text}");
    let (ok, detail) = line("00gNope");
    assert!(
        !ok && detail.contains("HTTP 404") && detail.contains("okta.group_ids"),
        "{text}"
    );
    let (ok, detail) = line("00gC");
    assert!(
        !ok && detail.contains("HTTP 403") && detail.contains("Read-only Administrator"),
        "{text}"
    );
    assert!(text.ends_with("verdict: 2 problems found\n"), "{text}");
    assert!(!text.contains(OKTA_TOKEN));
}

#[tokio::test]
async fn a_readable_config_with_inline_secrets_draws_a_warning() {
    let okta = FakeOkta::start(OktaOptions::default()).await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[okta]\norg_url = \"{}\"\napi_token = \"{OKTA_TOKEN}\"\n[pendo]\nbase_url = \"{}\"\n\
             integration_key = \"{PENDO_KEY}\"\n[mapping]\nt = \"profile.title\"\n[state]\npath = \"{}/s.db\"\n",
            okta.base_url(),
            pendo.base_url(),
            dir.path().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run_bin(&path, &["check"], &[]).await;
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        all.contains("holds a secret inline (okta.api_token, pendo.integration_key)"),
        "{all}"
    );
    assert!(!all.contains(OKTA_TOKEN) && !all.contains(PENDO_KEY));

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run_bin(&path, &["check"], &[]).await;
    assert!(!format!("{}{}", stdout(&out), stderr(&out)).contains("holds a secret inline"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_state_database_stops_the_run_and_is_left_alone() {
    let okta = FakeOkta::start(OktaOptions {
        users: UserSource::Generated(5),
        ..OktaOptions::default()
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(&okta, &pendo, Parts::default());
    std::fs::create_dir_all(setup.state.parent().unwrap()).unwrap();
    let junk = b"not a database at all, just bytes".repeat(100);
    std::fs::write(&setup.state, &junk).unwrap();
    let out = setup.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(1));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("is damaged or not a state database"), "{all}");
    assert_eq!(std::fs::read(&setup.state).unwrap(), junk);
    assert_eq!(
        pendo.post_count(),
        0,
        "nothing is pushed without a place to record it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_on_stdout_stays_clean_when_there_are_warnings() {
    let okta = FakeOkta::start(OktaOptions {
        users: UserSource::Generated(5),
        ..OktaOptions::default()
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    // An inline secret in a world-readable file draws a warning on every command.
    std::fs::write(
        &path,
        format!(
            "[okta]\norg_url = \"{}\"\napi_token = \"{OKTA_TOKEN}\"\n[pendo]\nbase_url = \"{}\"\n\
             integration_key = \"{PENDO_KEY}\"\n[mapping]\nt = \"profile.title\"\n[state]\npath = \"{}/s.db\"\n",
            okta.base_url(),
            pendo.base_url(),
            dir.path().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(run_bin(&path, &["sync"], &[]).await.status.code(), Some(0));

    let out = run_bin(&path, &["history", "--json"], &[]).await;
    assert!(stderr(&out).contains("holds a secret inline"));
    let runs: Vec<Value> = serde_json::from_slice(&out.stdout).expect("stdout is pure JSON");
    assert_eq!(runs.len(), 1);

    let out = run_bin(&path, &["sync", "--dry-run"], &[]).await;
    assert!(stderr(&out).contains("holds a secret inline"));
    for line in stdout(&out).lines() {
        serde_json::from_str::<Value>(line).expect("every stdout line is a record");
    }

    let out = run_bin(&path, &["check"], &[]).await;
    assert!(
        common::check_line(&stdout(&out), "config").unwrap().0,
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_output_problems_are_recorded_honestly() {
    let okta = FakeOkta::start(OktaOptions {
        users: UserSource::Generated(3_000),
        rate_limit: 100_000,
        ..OktaOptions::default()
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(&okta, &pendo, Parts::default());

    // A full disk: the run fails, and its counts still add up.
    let out = setup
        .run(&["sync", "--dry-run", "--output", "/dev/full"])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let run = common::last_run(&setup).await;
    assert_eq!(run["status"], "failed");
    assert!(
        run["message"]
            .as_str()
            .unwrap()
            .contains("cannot write the dry-run output")
    );
    let n = |k: &str| run[k].as_u64().unwrap();
    assert_eq!(
        n("okta_users_read"),
        n("records_processed") + n("users_skipped")
    );

    // `| head -n 3`: the reader goes away; the run is interrupted, not failed.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_okta-pendo-sync"))
        .arg("-c")
        .arg(&setup.config)
        .args(["sync", "--dry-run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout_pipe = child.stdout.take().unwrap();
    let head = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let lines: Vec<String> = std::io::BufReader::new(stdout_pipe)
            .lines()
            .take(3)
            .map(Result::unwrap)
            .collect();
        lines
    })
    .await
    .unwrap();
    assert_eq!(head.len(), 3);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let run = common::last_run(&setup).await;
    assert_eq!(run["status"], "interrupted");
    assert!(
        run["message"]
            .as_str()
            .unwrap()
            .contains("output was closed"),
        "{run}"
    );

    // A file: created owner-only, since it holds user data.
    let file = setup.dir.path().join("out.jsonl");
    let out = setup
        .run(&["sync", "--dry-run", "--output", file.to_str().unwrap()])
        .await;
    assert_eq!(out.status.code(), Some(0));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test]
async fn secrets_that_cannot_be_sent_and_odd_group_ids_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "zq7\u{7}xw\n").unwrap();
    let (_d, path) = write_config(&format!(
        "[okta]\norg_url = \"https://acme.okta.com\"\napi_token_file = \"{}\"\n\
         group_ids = [\"00gOK\", \"../admin\"]\n[pendo]\nintegration_key = \"  k  \"\n\
         [mapping]\nt = \"profile.title\"\n",
        token.display()
    ));
    let out = run_bin(&path, &["check"], &[]).await;
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(
        err.contains("okta.api_token_file: contains characters that cannot be sent"),
        "{err}"
    );
    assert!(
        err.contains("okta.group_ids: \"../admin\" is not an Okta group ID"),
        "{err}"
    );
    assert!(!err.contains("zq7"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_compares_every_mapped_field_with_pendos_schema() {
    let okta = FakeOkta::start(OktaOptions::default()).await;
    let mapping = "department = \"profile.department\"\nlast_login = { path = \"lastLogin\", type = \"date\" }";
    // All good: the default schema has both, with matching types.
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            mapping,
            ..Parts::default()
        },
    );
    let out = setup.run(&["check"]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        common::check_line(&text, "field department").unwrap().0,
        "{text}"
    );
    assert!(
        common::check_line(&text, "field last_login").unwrap().0,
        "{text}"
    );

    // A missing field and one of the wrong type.
    let mut schema = okta_pendo_testkit::pendo::default_schema();
    schema["custom"]
        .as_object_mut()
        .unwrap()
        .remove("department");
    schema["custom"]["last_login"]["Type"] = Value::String("string".into());
    let pendo = FakePendo::start(PendoOptions {
        schema,
        ..PendoOptions::default()
    })
    .await;
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            mapping,
            ..Parts::default()
        },
    );
    let out = setup.run(&["check"]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let (ok, detail) = common::check_line(&text, "field department").unwrap();
    assert!(
        !ok && detail.contains("custom.department does not exist in Pendo"),
        "{text}"
    );
    let (ok, detail) = common::check_line(&text, "field last_login").unwrap();
    assert!(
        !ok && detail.contains("is string in Pendo, but the mapping sends date (time)"),
        "{text}"
    );
    assert!(text.ends_with("verdict: 2 problems found\n"), "{text}");

    // --offline: no network at all.
    let out = setup.run(&["check", "--offline"]).await;
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(common::check_line(&text, "okta").is_none(), "{text}");
}
