//! The shipped alert rules (`deploy/prometheus/`) and dashboard (`deploy/grafana/`), tested for
//! real: promtool checks the rules, runs their unit tests, parses the dashboard's queries and
//! lints the live daemon's `/metrics`; every metric the rules and the dashboard name is one
//! the daemon serves.
//!
//! Without promtool on the PATH, the parts that need it say so loudly and are skipped, unless
//! `CI` is set: CI installs promtool (`.ci/run`), so there its absence is a failure.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::{Parts, Setup};
use okta_pendo_testkit::{FakeOkta, FakePendo, OktaOptions, PendoOptions, UserSource};

const PREFIX: &str = "okta_pendo_sync_";

fn deploy(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap()
}

/// Whether promtool can run here. When it cannot: fails under CI, else says so and the caller
/// skips its promtool part.
fn have_promtool(what: &str) -> bool {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        // Straight to stderr, past the test harness's capture, so a passing run shows it too.
        let _ = writeln!(
            std::io::stderr(),
            "\n**********\n** promtool is not installed: {what} SKIPPED.\n\
             ** Install it (Debian/Ubuntu: apt-get install prometheus) to run it.\n**********"
        );
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is not installed but CI is set: {what} cannot be skipped in CI"
        );
    }
    found
}

/// Runs promtool with `args`, feeding it `stdin`.
fn promtool(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(deploy("prometheus"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Each rule's `expr` in alerts.yml: inline, or a `|` block (the lines indented under it).
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest != "|" {
            exprs.push(rest.to_owned());
            continue;
        }
        let mut body = String::new();
        while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > indent(line)) {
            body.push_str(lines[i].trim());
            body.push('\n');
            i += 1;
        }
        exprs.push(body);
    }
    exprs
}

/// Every query in the dashboard: panel targets' `expr`, and the variables' queries.
fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        exprs.push(var["query"]["query"].as_str().unwrap().to_owned());
    }
    exprs
}

/// The daemon's metric names a query uses.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find(PREFIX) {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The sample names a scrape holds (`name{...} value` or `name value`).
fn scraped_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Whether `name` is served: as a sample, or as the histogram or summary whose `_bucket`,
/// `_count` or `_sum` it is.
fn served(name: &str, samples: &BTreeSet<String>) -> bool {
    samples.contains(name)
        || ["_bucket", "_count", "_sum"].iter().any(|s| {
            name.strip_suffix(s)
                .is_some_and(|base| samples.iter().any(|n| n.starts_with(base)))
        })
}

/// A grafana query made into PromQL: its variables given values.
fn as_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("$instance", ".*")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn scrape(url: &str, accept: Option<&str>) -> Option<(String, String)> {
    let mut req = reqwest::Client::new().get(url);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let r = req.send().await.ok()?;
    let kind = r.headers().get("content-type")?.to_str().ok()?.to_owned();
    Some((kind, r.text().await.ok()?))
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing from\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_metrics_pass_promtool_and_serve_every_metric_the_rules_and_dashboard_name() {
    let okta = FakeOkta::start(OktaOptions {
        users: UserSource::Generated(50),
        rate_limit: 100_000,
        ..OktaOptions::default()
    })
    .await;
    let pendo = FakePendo::start(PendoOptions::default()).await;
    let port = free_port();
    // Weekdays at 06:00: its longest gap is the weekend.
    let extra = format!(
        "[schedule]\ncron = \"0 6 * * Mon-Fri\"\nrun_on_start = true\n\
         [server]\nlisten = \"127.0.0.1:{port}\"\n"
    );
    let setup = Setup::new(
        &okta,
        &pendo,
        Parts {
            extra: &extra,
            ..Parts::default()
        },
    );
    let before = chrono::Utc::now().timestamp() as f64;
    let _daemon = setup.spawn("run");
    let url = format!("http://127.0.0.1:{port}/metrics");
    let mut body = String::new();
    for _ in 0..300 {
        if let Some((_, text)) = scrape(&url, None).await
            && text.contains("okta_pendo_sync_runs_total{status=\"succeeded\"} 1\n")
        {
            body = text;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !body.is_empty(),
        "the start-up run never showed in /metrics"
    );
    let (kind, _) = scrape(&url, None).await.unwrap();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");

    // The new gauges, live.
    let after = chrono::Utc::now().timestamp() as f64;
    let success = value(&body, "okta_pendo_sync_last_success_timestamp_seconds");
    let started = value(&body, "okta_pendo_sync_start_time_seconds");
    assert!(before <= started && started <= success && success <= after + 1.0);
    assert_eq!(
        value(&body, "okta_pendo_sync_schedule_interval_seconds"),
        3.0 * 86_400.0
    );
    assert_eq!(
        value(
            &body,
            "okta_pendo_sync_notifications_total{outcome=\"failed\"}"
        ),
        0.0
    );

    // Prometheus asks for OpenMetrics and gets it.
    let (kind, open) = scrape(
        &url,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .await
    .unwrap();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(
        open.contains("# TYPE okta_pendo_sync_runs counter\n"),
        "{open}"
    );

    // Every metric the rules and the dashboard name is served.
    let samples = scraped_names(&body);
    let rules = rule_exprs(&read("prometheus/alerts.yml"));
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("grafana/okta-pendo-sync.json")).unwrap();
    let queries = dashboard_exprs(&dashboard);
    let mut named = BTreeSet::new();
    for expr in rules.iter().chain(&queries) {
        named.extend(metric_names(expr));
    }
    assert!(named.len() >= 12, "{named:?}");
    let missing: Vec<&String> = named.iter().filter(|n| !served(n, &samples)).collect();
    assert!(
        missing.is_empty(),
        "named but not served: {missing:?}\n{body}"
    );

    // promtool's lint of the live scrape (classic text, as `curl` gets it).
    if have_promtool("promtool check metrics") {
        let out = promtool(&["check", "metrics"], &body);
        assert_success(&out, "promtool check metrics");
        assert!(
            out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool check metrics has remarks:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_metric_name_checks_find_what_is_missing() {
    let samples = scraped_names(
        "# TYPE okta_pendo_sync_runs_total counter\nokta_pendo_sync_runs_total{status=\"held\"} 0\n\
         okta_pendo_sync_d_bucket{le=\"1\"} 0\nokta_pendo_sync_up 1\n",
    );
    let named = metric_names(
        "sum(rate(okta_pendo_sync_runs_total{a=\"b\"}[5m])) / okta_pendo_sync_d_count + okta_pendo_sync_gone",
    );
    assert_eq!(
        named.iter().map(String::as_str).collect::<Vec<_>>(),
        [
            "okta_pendo_sync_d_count",
            "okta_pendo_sync_gone",
            "okta_pendo_sync_runs_total"
        ]
    );
    let missing: Vec<&String> = named.iter().filter(|n| !served(n, &samples)).collect();
    assert_eq!(missing, ["okta_pendo_sync_gone"]);
    let exprs = rule_exprs(
        "  - alert: A\n    expr: a == 1\n    for: 1m\n  - alert: B\n    expr: |\n      b\n        > 2\n    for: 1m\n",
    );
    assert_eq!(exprs, ["a == 1", "b\n> 2\n"]);
}

#[test]
fn every_alert_has_an_expr_a_for_a_severity_a_summary_and_a_description() {
    let yaml = read("prometheus/alerts.yml");
    let alerts = yaml.matches("- alert: ").count();
    assert_eq!(alerts, 7, "{yaml}");
    assert_eq!(rule_exprs(&yaml).len(), alerts);
    for key in ["for: ", "severity: ", "summary: ", "description: "] {
        assert_eq!(yaml.matches(key).count(), alerts, "{key}");
    }
    // The README explains each one.
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    for name in yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(readme.contains(&format!("`{name}`")), "README: {name}");
    }
    // And every alert has a promtool unit test.
    let tests = read("prometheus/alerts.test.yml");
    for name in yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!(
                "alertname: {name}\n        exp_alerts:\n          - "
            )),
            "no test where {name} fires"
        );
    }
}

#[test]
fn the_dashboard_imports_anywhere() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("grafana/okta-pendo-sync.json")).unwrap();
    assert_eq!(dashboard["schemaVersion"], 39);
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(dashboard["__inputs"][0]["pluginId"], "prometheus");
    let uses_input = |v: &serde_json::Value| v["uid"] == "${DS_PROMETHEUS}";
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(uses_input(&panel["datasource"]), "{}", panel["title"]);
        for target in panel["targets"].as_array().unwrap() {
            assert!(uses_input(&target["datasource"]), "{}", panel["title"]);
        }
    }
    let titles: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    for title in [
        "Runs by status",
        "Users by outcome (last run)",
        "Last run duration",
        "Time since last success",
        "Requests by service and status",
        "429s and retries",
        "Run in progress",
        "Next run",
    ] {
        assert!(titles.contains(&title), "{title} missing from {titles:?}");
    }
}

#[test]
fn promtool_checks_the_rules_and_the_dashboard_queries() {
    if !have_promtool("promtool check rules") {
        return;
    }
    let out = promtool(&["check", "rules", "alerts.yml"], "");
    assert_success(&out, "promtool check rules alerts.yml");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SUCCESS: 7 rules found"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The dashboard's queries, as recording rules, so promtool parses each one.
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("grafana/okta-pendo-sync.json")).unwrap();
    let panels: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| as_promql(t["expr"].as_str().unwrap()))
        .collect();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in panels.iter().enumerate() {
        let quoted = serde_json::to_string(expr).unwrap();
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard.yml");
    std::fs::write(&file, &rules).unwrap();
    let out = promtool(&["check", "rules", file.to_str().unwrap()], "");
    assert_success(&out, &format!("the dashboard's queries:\n{rules}"));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("SUCCESS: {} rules found", panels.len())),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn promtool_runs_the_rules_unit_tests() {
    if !have_promtool("promtool test rules") {
        return;
    }
    let out = promtool(&["test", "rules", "alerts.test.yml"], "");
    assert_success(&out, "promtool test rules alerts.test.yml");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SUCCESS"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
