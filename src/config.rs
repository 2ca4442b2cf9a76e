//! Configuration: the TOML file plus `OKTA_PENDO_SYNC__SECTION__KEY` environment overrides,
//! turned into validated [`Settings`] once, with every problem reported at once and its key.
//!
//! The loader walks the merged tree itself instead of handing it to one `Deserialize`: serde
//! stops at the first error, while an operator editing the file wants the whole list. Values are
//! taken key by key; whatever is left over in a table is an unknown key. Secrets are read as
//! [`SecretString`] and their values never appear in an error message.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use config::{Source, Value, ValueKind};
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use url::Url;

use std::time::Duration;

use crate::mapping::{AttributePath, FieldMapping, Mapping, OnNull, ValueType};
use crate::retry::RetryPolicy;
use crate::schedule::{CronSchedule, ScheduleError};
use crate::signing::PrivateKey;

/// Environment variables starting with this prefix (then `__SECTION__KEY`) override the file.
pub const ENV_PREFIX: &str = "OKTA_PENDO_SYNC";
/// The config path used when neither `--config` nor `$OKTA_PENDO_SYNC_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/okta-pendo-sync/config.toml";

/// Every key the loader accepts (besides the free-form `[mapping]` table). The commented
/// example config documents each; a debug assertion keeps this list complete.
pub const KEYS: &[&str] = &[
    "okta.org_url",
    "okta.api_token",
    "okta.api_token_file",
    "okta.filter",
    "okta.search",
    "okta.group_ids",
    "okta.page_size",
    "okta.rate_limit_share",
    "okta.connect_timeout",
    "okta.request_timeout",
    "okta.oauth.client_id",
    "okta.oauth.private_key",
    "okta.oauth.private_key_file",
    "okta.oauth.key_id",
    "okta.oauth.scopes",
    "pendo.integration_key",
    "pendo.integration_key_file",
    "pendo.region",
    "pendo.base_url",
    "pendo.metadata_group",
    "pendo.batch_size",
    "pendo.concurrency",
    "pendo.connect_timeout",
    "pendo.request_timeout",
    "sync.visitor_id_key",
    "sync.create_missing_visitors",
    "sync.on_null",
    "sync.shutdown_grace",
    "sync.full_sync_every",
    "state.path",
    "state.keep_runs",
    "guard.enabled",
    "guard.sample",
    "log.level",
    "log.format",
    "log.directory",
    "log.max_files",
    "schedule.cron",
    "schedule.timezone",
    "schedule.run_on_start",
    "schedule.catch_up",
    "server.listen",
    "retry.max_attempts",
    "retry.base_delay",
    "retry.max_delay",
    "retry.max_elapsed",
];

/// Everything a run needs, validated.
#[derive(Debug)]
pub struct Settings {
    pub okta: OktaSettings,
    pub pendo: PendoSettings,
    pub sync: SyncSettings,
    pub mapping: Mapping,
    pub state: StateSettings,
    pub log: LogSettings,
    /// The guard against a broken read or mapping.
    pub guard: GuardSettings,
    /// How both clients retry.
    pub retry: RetryPolicy,
    /// When the daemon runs.
    pub schedule: ScheduleSettings,
    /// Where the daemon serves `/healthz` and `/metrics`, if anywhere.
    pub server: Option<std::net::SocketAddr>,
}

/// The daemon's schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSettings {
    pub cron: CronSchedule,
    /// Run once right after the daemon starts.
    pub run_on_start: bool,
    /// On start, run once if a scheduled run was missed while the daemon was down.
    pub catch_up: bool,
}

/// Where and how to read users.
#[derive(Debug)]
pub struct OktaSettings {
    /// The org, e.g. `https://acme.okta.com`, without a trailing slash.
    pub org_url: Url,
    /// How to authenticate: an SSWS token or an OAuth service app.
    pub credentials: OktaCredentials,
    /// Which users are in scope.
    pub scope: UserScope,
    /// Users per page, 1 to 200.
    pub page_size: u32,
    /// The share of the org's rate-limit budget this sync may use, in (0, 1].
    pub rate_limit_share: f64,
    pub timeouts: Timeouts,
}

/// Connection and whole-request time limits of one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
}

/// How the client authenticates to Okta.
#[derive(Debug)]
pub enum OktaCredentials {
    /// `Authorization: SSWS {token}`.
    Ssws(SecretString),
    /// OAuth 2.0 client credentials for a service app.
    OAuth(OAuthSettings),
}

/// An Okta service app (`[okta.oauth]`).
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    pub client_id: String,
    /// The private key whose public half is registered for the app, parsed at load.
    pub private_key: PrivateKey,
    /// Sent as `kid` when set.
    pub key_id: Option<String>,
    pub scopes: Vec<String>,
}

/// Which users a run reads. Okta takes at most one of these, so the type allows one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserScope {
    /// Okta's default list (every user but deprovisioned ones).
    All,
    /// `GET /api/v1/users?filter=…`
    Filter(String),
    /// `GET /api/v1/users?search=…`
    Search(String),
    /// The members of these groups, each user once.
    Groups(Vec<String>),
}

/// Where and how to push metadata.
#[derive(Debug)]
pub struct PendoSettings {
    /// The region's host or an explicit `base_url`.
    pub base_url: Url,
    pub integration_key: SecretString,
    pub metadata_group: MetadataGroup,
    pub batch_size: NonZeroUsize,
    pub concurrency: NonZeroUsize,
    pub timeouts: Timeouts,
}

/// The Pendo metadata group the values are written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataGroup {
    Custom,
    Agent,
}

impl MetadataGroup {
    pub fn as_str(self) -> &'static str {
        match self {
            MetadataGroup::Custom => "custom",
            MetadataGroup::Agent => "agent",
        }
    }
}

/// The Pendo regions and their hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    Us,
    Us1,
    Eu,
    Jpn,
    Au,
}

impl Region {
    fn parse(s: &str) -> Option<Region> {
        Some(match s {
            "us" => Region::Us,
            "us1" => Region::Us1,
            "eu" => Region::Eu,
            "jpn" => Region::Jpn,
            "au" => Region::Au,
            _ => return None,
        })
    }

    /// The API host of the region.
    pub fn base_url(self) -> &'static str {
        match self {
            Region::Us => "https://app.pendo.io",
            Region::Us1 => "https://us1.app.pendo.io",
            Region::Eu => "https://app.eu.pendo.io",
            Region::Jpn => "https://app.jpn.pendo.io",
            Region::Au => "https://app.au.pendo.io",
        }
    }
}

/// How Okta users become Pendo visitors.
#[derive(Debug)]
pub struct SyncSettings {
    pub visitor_id_key: AttributePath,
    pub create_missing_visitors: bool,
    pub on_null: OnNull,
    /// After SIGTERM/SIGINT, how long pushes in flight may take to finish.
    pub shutdown_grace: Duration,
    /// A run is full when the last full run is older than this.
    pub full_sync_every: Duration,
}

/// The state database.
#[derive(Debug)]
pub struct StateSettings {
    /// The SQLite file holding the run records and what incremental runs need.
    pub path: PathBuf,
    /// How many run records are kept; older ones are dropped as runs are stored.
    pub keep_runs: u32,
}

/// `[guard]`: before a full run pushes anything, it maps a sample and holds the run when the
/// sample looks like a broken attribute path or visitor ID key (SPEC "Runs").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardSettings {
    /// Whether full runs are checked at all.
    pub enabled: bool,
    /// How many users are mapped and judged before a full run pushes.
    pub sample: NonZeroUsize,
}

/// Logging.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// A `tracing` filter directive such as `info` or `okta_pendo_sync=debug`.
    pub level: String,
    pub format: LogFormat,
    /// Also write daily-rotated files here.
    pub directory: Option<PathBuf>,
    /// How many daily files to keep.
    pub max_files: usize,
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, dotted (`okta.page_size`), or `(file)` for the file as a whole.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a configuration could not be loaded: every problem found, each with its key.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid configuration {} ({n} problem{}):",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// A loaded configuration and the warnings it deserves (not errors: it still runs).
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    pub warnings: Vec<String>,
}

/// Picks the config path: the flag, else `$OKTA_PENDO_SYNC_CONFIG`, else the default.
pub fn resolve_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("OKTA_PENDO_SYNC_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

/// Loads the file at `path`, applies the process environment's overrides and validates.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    load_with_env(path, None)
}

/// Like [`load`], with the environment given explicitly (tests) instead of the process's.
pub fn load_with_env(
    path: &Path,
    env: Option<BTreeMap<String, String>>,
) -> Result<Loaded, ConfigError> {
    let fail = |key: &str, message: String| ConfigError {
        path: path.to_owned(),
        problems: vec![Problem {
            key: key.into(),
            message,
        }],
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail("(file)", format!("cannot read the config file: {e}")))?;
    // Parse with `toml` first: its errors give a position without quoting the line, which could
    // hold a secret.
    let file_table: toml::Table = toml::from_str(&text).map_err(|e| {
        let at = e
            .span()
            .map(|s| {
                let (line, col) = line_col(&text, s.start);
                format!(" at line {line}, column {col}")
            })
            .unwrap_or_default();
        fail("(file)", format!("not valid TOML{at}: {}", e.message()))
    })?;

    let merged = merge(&text, env).map_err(|e| fail("(file)", e.to_string()))?;

    let mut warnings = Vec::new();
    inline_secret_warning(path, &file_table, &mut warnings);

    let mut problems = Vec::new();
    let settings = validate(merged, &mut problems);
    match settings {
        Some(settings) if problems.is_empty() => Ok(Loaded { settings, warnings }),
        _ => Err(ConfigError {
            path: path.to_owned(),
            problems,
        }),
    }
}

/// The file's text with the environment's overrides (the process's, or `env`) on top.
fn merge(
    text: &str,
    env: Option<BTreeMap<String, String>>,
) -> Result<config::Map<String, Value>, config::ConfigError> {
    let mut environment = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("__")
        .separator("__")
        .try_parsing(false);
    if let Some(env) = env {
        environment = environment.source(Some(env.into_iter().collect()));
    }
    config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(environment)
        .build()
        .and_then(|c| c.collect())
}

/// The files the config at `path` reads secrets from (its `*_file` keys, with the process
/// environment's overrides), each with its key, whether or not the config is otherwise valid:
/// the daemon watches them to notice a rotated secret. A config that cannot be read or parsed
/// names none.
pub fn secret_files(path: &Path) -> Vec<(&'static str, PathBuf)> {
    let Some(root) = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| merge(&text, None).ok())
    else {
        return Vec::new();
    };
    KEYS.iter()
        .filter(|key| key.ends_with("_file"))
        .filter_map(|key| {
            let (tables, last) = key.rsplit_once('.')?;
            let mut table = &root;
            for name in tables.split('.') {
                match &table.get(name)?.kind {
                    ValueKind::Table(inner) => table = inner,
                    _ => return None,
                }
            }
            let file = table.get(last)?.clone().into_string().ok()?;
            Some((*key, PathBuf::from(file)))
        })
        .collect()
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Warns when the file holds a secret inline and other users may read it.
fn inline_secret_warning(path: &Path, file: &toml::Table, warnings: &mut Vec<String>) {
    let inline: Vec<&str> = [
        (&["okta"][..], "api_token", "okta.api_token"),
        (
            &["okta", "oauth"][..],
            "private_key",
            "okta.oauth.private_key",
        ),
        (&["pendo"][..], "integration_key", "pendo.integration_key"),
    ]
    .into_iter()
    .filter(|(tables, key, _)| {
        let mut t = Some(file);
        for name in *tables {
            t = t.and_then(|t| t.get(*name)).and_then(|v| v.as_table());
        }
        t.is_some_and(|t| t.contains_key(*key))
    })
    .map(|(_, _, full)| full)
    .collect();
    if inline.is_empty() {
        return;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                let keys = inline;
                warnings.push(format!(
                    "{} holds a secret inline ({}) and other users may read it (mode {mode:o}): \
                     run `chmod 600` on it or move the secret to the matching *_file key",
                    path.display(),
                    keys.join(", ")
                ));
            }
        }
    }
}

/// What a secret is used as, which decides what characters it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecretKind {
    /// Sent in an HTTP header (tokens, keys): printable ASCII only.
    Header,
    /// A PEM private key: multi-line, never sent.
    Pem,
}

/// A table being taken apart key by key; what is left at the end is unknown.
struct Section {
    name: String,
    table: config::Map<String, Value>,
}

impl Section {
    fn new(root: &mut config::Map<String, Value>, name: &str, problems: &mut Vec<Problem>) -> Self {
        let table = match root.remove(name) {
            None => config::Map::new(),
            Some(v) => match v.kind {
                ValueKind::Table(t) => t,
                _ => {
                    problems.push(Problem {
                        key: name.into(),
                        message: "must be a table".into(),
                    });
                    config::Map::new()
                }
            },
        };
        Section {
            name: name.into(),
            table,
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}.{}", self.name, key)
    }

    fn problem(&self, problems: &mut Vec<Problem>, key: &str, message: impl Into<String>) {
        problems.push(Problem {
            key: self.key(key),
            message: message.into(),
        });
    }

    /// Removes a key's value. Every key the loader asks for must be listed in [`KEYS`].
    fn remove(&mut self, key: &str) -> Option<Value> {
        debug_assert!(
            KEYS.contains(&self.key(key).as_str()),
            "{} is missing from config::KEYS",
            self.key(key)
        );
        self.table.remove(key)
    }

    /// Takes a value; a type error is recorded and gives `None`.
    fn take<T: DeserializeOwned>(&mut self, key: &str, problems: &mut Vec<Problem>) -> Option<T> {
        let value = self.remove(key)?;
        let origin = origin_note(&value);
        match T::deserialize(value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(problems, key, format!("{}{origin}", type_message(&e)));
                None
            }
        }
    }

    /// Takes a string that must not be echoed back in any message.
    fn take_secret(
        &mut self,
        key: &str,
        kind: SecretKind,
        problems: &mut Vec<Problem>,
    ) -> Option<SecretString> {
        let value = self.remove(key)?;
        match value.kind {
            ValueKind::String(s) => self.checked_secret(key, s, kind, problems),
            _ => {
                self.problem(problems, key, "must be a string (value not shown)");
                None
            }
        }
    }

    /// Trims a secret and checks that a header secret can travel in an HTTP header (printable
    /// ASCII).
    fn checked_secret(
        &self,
        key: &str,
        raw: String,
        kind: SecretKind,
        problems: &mut Vec<Problem>,
    ) -> Option<SecretString> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            self.problem(problems, key, "is empty");
            return None;
        }
        if kind == SecretKind::Header && !trimmed.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        {
            self.problem(
                problems,
                key,
                "contains characters that cannot be sent in an HTTP header (value not shown)",
            );
            return None;
        }
        Some(SecretString::from(trimmed.to_owned()))
    }

    /// A secret given inline (`key`) or as a file (`key_file`), exactly one of them.
    fn secret(
        &mut self,
        key: &str,
        kind: SecretKind,
        problems: &mut Vec<Problem>,
    ) -> Option<SecretString> {
        let file_key = format!("{key}_file");
        let inline = self.take_secret(key, kind, problems);
        let file: Option<PathBuf> = self.take(&file_key, problems);
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.problem(
                    problems,
                    key,
                    format!(
                        "set either {} or {}, not both",
                        self.key(key),
                        self.key(&file_key)
                    ),
                );
                None
            }
            (Some(s), None) => Some(s),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(s) if s.trim().is_empty() => {
                    self.problem(problems, &file_key, format!("{} is empty", path.display()));
                    None
                }
                Ok(s) => self.checked_secret(&file_key, s, kind, problems),
                Err(e) => {
                    self.problem(
                        problems,
                        &file_key,
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            },
            (None, None) => {
                if !problems.iter().any(|p| p.key == self.key(key)) {
                    self.problem(
                        problems,
                        key,
                        format!("is required (or {})", self.key(&file_key)),
                    );
                }
                None
            }
        }
    }

    fn finish(self, problems: &mut Vec<Problem>) {
        for (key, value) in self.table {
            let origin = origin_note(&value);
            problems.push(Problem {
                key: format!("{}.{key}", self.name),
                message: format!("unknown key{origin}"),
            });
        }
    }
}

fn origin_note(value: &Value) -> String {
    match value.origin() {
        Some(o) if o.contains("environment") => " (set in the environment)".into(),
        _ => String::new(),
    }
}

/// The config crate's type errors name the key and value; keep only what went wrong.
fn type_message(e: &config::ConfigError) -> String {
    match e {
        config::ConfigError::Type {
            unexpected,
            expected,
            ..
        } => format!("expected {expected}, found {unexpected}"),
        other => other.to_string(),
    }
}

fn validate(mut root: config::Map<String, Value>, problems: &mut Vec<Problem>) -> Option<Settings> {
    let mut okta_s = Section::new(&mut root, "okta", problems);
    let mut pendo_s = Section::new(&mut root, "pendo", problems);
    let mut sync_s = Section::new(&mut root, "sync", problems);
    let mapping_v = root.remove("mapping");
    let mut state_s = Section::new(&mut root, "state", problems);
    let mut guard_s = Section::new(&mut root, "guard", problems);
    let mut log_s = Section::new(&mut root, "log", problems);
    let mut retry_s = Section::new(&mut root, "retry", problems);
    let mut schedule_s = Section::new(&mut root, "schedule", problems);
    let mut server_s = Section::new(&mut root, "server", problems);
    for (key, value) in root {
        problems.push(Problem {
            key,
            message: format!("unknown section{}", origin_note(&value)),
        });
    }

    let okta = okta_settings(&mut okta_s, problems);
    okta_s.finish(problems);
    let pendo = pendo_settings(&mut pendo_s, problems);
    pendo_s.finish(problems);
    let sync = sync_settings(&mut sync_s, problems);
    sync_s.finish(problems);
    let mapping = mapping_settings(mapping_v, problems);

    let state_path = state_s
        .take::<PathBuf>("path", problems)
        .unwrap_or_else(|| PathBuf::from("/var/lib/okta-pendo-sync/state.db"));
    let keep_runs = bounded(
        &mut state_s,
        "keep_runs",
        crate::state::DEFAULT_KEEP_RUNS as usize,
        1,
        100_000_000,
        problems,
    );
    state_s.finish(problems);
    let guard = guard_settings(&mut guard_s, problems);
    guard_s.finish(problems);

    let log = log_settings(&mut log_s, problems);
    log_s.finish(problems);
    let retry = retry_settings(&mut retry_s, problems);
    retry_s.finish(problems);
    let schedule = schedule_settings(&mut schedule_s, problems);
    schedule_s.finish(problems);
    let server = server_settings(&mut server_s, problems);
    server_s.finish(problems);

    Some(Settings {
        okta: okta?,
        pendo: pendo?,
        sync: sync?,
        mapping: mapping?,
        state: StateSettings {
            path: state_path,
            keep_runs: keep_runs?.get() as u32,
        },
        log: log?,
        guard: guard?,
        retry: retry?,
        schedule: schedule?,
        server: server?,
    })
}

fn okta_settings(s: &mut Section, problems: &mut Vec<Problem>) -> Option<OktaSettings> {
    let org_url = match s.take::<String>("org_url", problems) {
        Some(raw) => match service_url(&raw) {
            Ok(url) => Some(url),
            Err(msg) => {
                s.problem(problems, "org_url", msg);
                None
            }
        },
        None => {
            if !problems.iter().any(|p| p.key == "okta.org_url") {
                s.problem(
                    problems,
                    "org_url",
                    "is required, e.g. \"https://acme.okta.com\"",
                );
            }
            None
        }
    };
    let oauth_table = s.table.remove("oauth");
    let has_inline_token =
        s.table.contains_key("api_token") || s.table.contains_key("api_token_file");

    let filter = s
        .take::<String>("filter", problems)
        .filter(|f| !f.trim().is_empty());
    let search = s
        .take::<String>("search", problems)
        .filter(|f| !f.trim().is_empty());
    let groups = take_string_list(s, "group_ids", problems).unwrap_or_default();
    if let Some(bad) = groups
        .iter()
        .find(|id| !id.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        s.problem(
            problems,
            "group_ids",
            format!(
                "\"{bad}\" is not an Okta group ID (letters and digits, like 00g1abcdEFGH2ijkl3m4)"
            ),
        );
    }
    let scope = match (filter, search, groups.is_empty()) {
        (None, None, true) => Some(UserScope::All),
        (Some(f), None, true) => Some(UserScope::Filter(f)),
        (None, Some(q), true) => Some(UserScope::Search(q)),
        (None, None, false) => Some(UserScope::Groups(groups)),
        (Some(_), Some(_), _) => {
            s.problem(
                problems,
                "search",
                "set either okta.filter or okta.search, not both",
            );
            None
        }
        (_, _, false) => {
            s.problem(
                problems,
                "group_ids",
                "cannot be combined with okta.filter or okta.search: Okta's group members \
                 endpoint takes neither",
            );
            None
        }
    };

    let page_size = match s.take::<i64>("page_size", problems) {
        None => Some(200),
        Some(n @ 1..=200) => Some(n as u32),
        Some(n) => {
            s.problem(
                problems,
                "page_size",
                format!("must be between 1 and 200 (Okta's maximum), not {n}"),
            );
            None
        }
    };

    let rate_limit_share = match s.take::<f64>("rate_limit_share", problems) {
        None => Some(0.5),
        Some(x) if x > 0.0 && x <= 1.0 => Some(x),
        Some(x) => {
            s.problem(
                problems,
                "rate_limit_share",
                format!("must be more than 0 and at most 1 (a fraction of the budget), not {x}"),
            );
            None
        }
    };
    let timeouts = timeouts(s, Duration::from_secs(60), problems);

    let credentials = match oauth_table {
        None => s
            .secret("api_token", SecretKind::Header, problems)
            .map(OktaCredentials::Ssws),
        Some(_) if has_inline_token => {
            s.problem(
                problems,
                "oauth",
                "set either okta.api_token (or okta.api_token_file) or [okta.oauth], not both",
            );
            None
        }
        Some(value) => {
            let groups = matches!(scope, Some(UserScope::Groups(_)));
            oauth_settings(value, groups, problems).map(OktaCredentials::OAuth)
        }
    };

    Some(OktaSettings {
        org_url: org_url?,
        credentials: credentials?,
        scope: scope?,
        page_size: page_size?,
        rate_limit_share: rate_limit_share?,
        timeouts: timeouts?,
    })
}

/// `[okta.oauth]`: a service app's client ID, private key and scopes.
fn oauth_settings(
    value: Value,
    groups: bool,
    problems: &mut Vec<Problem>,
) -> Option<OAuthSettings> {
    let mut root = config::Map::new();
    root.insert("okta.oauth".to_owned(), value);
    let mut s = Section::new(&mut root, "okta.oauth", problems);
    let client_id = s
        .take::<String>("client_id", problems)
        .filter(|c| !c.trim().is_empty());
    if client_id.is_none() && !problems.iter().any(|p| p.key == "okta.oauth.client_id") {
        s.problem(
            problems,
            "client_id",
            "is required (the service app's Client ID, 0oa...)",
        );
    }
    let key_name = if s.table.contains_key("private_key") {
        "private_key"
    } else {
        "private_key_file"
    };
    let private_key = s.secret("private_key", SecretKind::Pem, problems);
    let private_key = private_key.and_then(|k| {
        match PrivateKey::from_pem(secrecy::ExposeSecret::expose_secret(&k)) {
            Ok(k) => Some(k),
            Err(why) => {
                s.problem(problems, key_name, format!("{why} (value not shown)"));
                None
            }
        }
    });
    let key_id = s
        .take::<String>("key_id", problems)
        .filter(|k| !k.trim().is_empty());
    let scopes = match take_string_list(&mut s, "scopes", problems) {
        Some(v) if v.is_empty() => {
            s.problem(problems, "scopes", "must name at least one scope");
            None
        }
        Some(v) => Some(v),
        None => {
            let mut v = vec!["okta.users.read".to_owned()];
            if groups {
                v.push("okta.groups.read".to_owned());
            }
            Some(v)
        }
    };
    s.finish(problems);
    Some(OAuthSettings {
        client_id: client_id?.trim().to_owned(),
        private_key: private_key?,
        key_id: key_id.map(|k| k.trim().to_owned()),
        scopes: scopes?,
    })
}

/// A list of strings, given as a TOML array or, from the environment, comma-separated.
fn take_string_list(
    s: &mut Section,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<Vec<String>> {
    let value = s.remove(key)?;
    let items: Result<Vec<String>, String> = match value.kind {
        ValueKind::String(text) => Ok(text
            .split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()),
        ValueKind::Array(values) => values
            .into_iter()
            .map(|v| match v.kind {
                ValueKind::String(x) if !x.trim().is_empty() => Ok(x.trim().to_owned()),
                _ => Err("every entry must be a non-empty string".to_owned()),
            })
            .collect(),
        _ => Err("must be a list of strings".into()),
    };
    match items {
        Ok(v) => Some(v),
        Err(msg) => {
            s.problem(problems, key, msg);
            None
        }
    }
}

fn pendo_settings(s: &mut Section, problems: &mut Vec<Problem>) -> Option<PendoSettings> {
    let integration_key = s.secret("integration_key", SecretKind::Header, problems);
    let region = match s.take::<String>("region", problems) {
        None => Some(Region::Us),
        Some(r) => Region::parse(&r).or_else(|| {
            s.problem(
                problems,
                "region",
                format!("unknown region \"{r}\": use us, us1, eu, jpn or au"),
            );
            None
        }),
    };
    let base_url = match s.take::<String>("base_url", problems) {
        Some(raw) => service_url(&raw)
            .map_err(|msg| s.problem(problems, "base_url", msg))
            .ok(),
        None => region.and_then(|r| Url::parse(r.base_url()).ok()),
    };
    let metadata_group = match s.take::<String>("metadata_group", problems).as_deref() {
        None | Some("custom") => Some(MetadataGroup::Custom),
        Some("agent") => Some(MetadataGroup::Agent),
        Some(other) => {
            s.problem(
                problems,
                "metadata_group",
                format!("must be \"custom\" or \"agent\", not \"{other}\""),
            );
            None
        }
    };
    let batch_size = bounded(s, "batch_size", 500, 1, 10_000, problems);
    let concurrency = bounded(s, "concurrency", 4, 1, 64, problems);
    // Pendo answers 408 only after 5 minutes; by default wait a little longer than that.
    let timeouts = timeouts(s, Duration::from_secs(330), problems);
    Some(PendoSettings {
        base_url: base_url?,
        integration_key: integration_key?,
        metadata_group: metadata_group?,
        batch_size: batch_size?,
        concurrency: concurrency?,
        timeouts: timeouts?,
    })
}

fn timeouts(s: &mut Section, request: Duration, problems: &mut Vec<Problem>) -> Option<Timeouts> {
    let connect = duration(s, "connect_timeout", Duration::from_secs(10), problems);
    let request = duration(s, "request_timeout", request, problems);
    Some(Timeouts {
        connect: connect?,
        request: request?,
    })
}

/// The longest duration any key accepts: longer is a typo, and would overflow timers.
const MAX_DURATION: Duration = Duration::from_secs(400 * 24 * 3600);

/// A duration written like `"500ms"`, `"30s"`, `"5m"` or `"1h 30m"`; more than zero and at
/// most 400 days.
fn duration(
    s: &mut Section,
    key: &str,
    default: Duration,
    problems: &mut Vec<Problem>,
) -> Option<Duration> {
    let Some(raw) = s.take::<String>(key, problems) else {
        return (!problems.iter().any(|p| p.key == s.key(key))).then_some(default);
    };
    match humantime::parse_duration(raw.trim()) {
        Ok(d) if d > MAX_DURATION => {
            s.problem(problems, key, format!("\"{raw}\" is longer than 400 days"));
            None
        }
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            s.problem(problems, key, "must be more than zero");
            None
        }
        Err(e) => {
            s.problem(
                problems,
                key,
                format!("\"{raw}\" is not a duration like \"30s\", \"5m\" or \"500ms\": {e}"),
            );
            None
        }
    }
}

fn retry_settings(s: &mut Section, problems: &mut Vec<Problem>) -> Option<RetryPolicy> {
    let d = RetryPolicy::default();
    let max_attempts = match s.take::<i64>("max_attempts", problems) {
        None => Some(d.max_attempts),
        Some(n @ 1..=100) => Some(n as u32),
        Some(n) => {
            s.problem(
                problems,
                "max_attempts",
                format!("must be between 1 and 100, not {n}"),
            );
            None
        }
    };
    let base_delay = duration(s, "base_delay", d.base_delay, problems);
    let max_delay = duration(s, "max_delay", d.max_delay, problems);
    let max_elapsed = duration(s, "max_elapsed", d.max_elapsed, problems);
    if let (Some(b), Some(m)) = (base_delay, max_delay)
        && b > m
    {
        s.problem(
            problems,
            "base_delay",
            "must not be longer than retry.max_delay",
        );
        return None;
    }
    Some(RetryPolicy {
        max_attempts: max_attempts?,
        base_delay: base_delay?,
        max_delay: max_delay?,
        max_elapsed: max_elapsed?,
        ..d
    })
}

fn bounded(
    s: &mut Section,
    key: &str,
    default: usize,
    min: i64,
    max: i64,
    problems: &mut Vec<Problem>,
) -> Option<NonZeroUsize> {
    let n = s.take::<i64>(key, problems).unwrap_or(default as i64);
    if !(min..=max).contains(&n) {
        s.problem(
            problems,
            key,
            format!("must be between {min} and {max}, not {n}"),
        );
        return None;
    }
    NonZeroUsize::new(n as usize)
}

fn guard_settings(s: &mut Section, problems: &mut Vec<Problem>) -> Option<GuardSettings> {
    let enabled = s.take::<bool>("enabled", problems).unwrap_or(true);
    let sample = bounded(s, "sample", 1000, 1, 100_000, problems);
    Some(GuardSettings {
        enabled,
        sample: sample?,
    })
}

fn sync_settings(s: &mut Section, problems: &mut Vec<Problem>) -> Option<SyncSettings> {
    let visitor_id_key = match s.take::<String>("visitor_id_key", problems) {
        None => AttributePath::parse("profile.login").ok(),
        Some(raw) => AttributePath::parse(&raw)
            .map_err(|e| s.problem(problems, "visitor_id_key", e.to_string()))
            .ok(),
    };
    let create_missing_visitors = s.take::<bool>("create_missing_visitors", problems);
    let on_null = match s.take::<String>("on_null", problems).as_deref() {
        None | Some("skip") => Some(OnNull::Skip),
        Some("clear") => Some(OnNull::Clear),
        Some(other) => {
            s.problem(
                problems,
                "on_null",
                format!("must be \"skip\" or \"clear\", not \"{other}\""),
            );
            None
        }
    };
    let shutdown_grace = duration(s, "shutdown_grace", Duration::from_secs(10), problems);
    let full_sync_every = duration(
        s,
        "full_sync_every",
        Duration::from_secs(7 * 24 * 3600),
        problems,
    );
    Some(SyncSettings {
        visitor_id_key: visitor_id_key?,
        create_missing_visitors: create_missing_visitors.unwrap_or(false),
        on_null: on_null?,
        shutdown_grace: shutdown_grace?,
        full_sync_every: full_sync_every?,
    })
}

fn mapping_settings(value: Option<Value>, problems: &mut Vec<Problem>) -> Option<Mapping> {
    let mut push = |key: String, message: String| problems.push(Problem { key, message });
    let table = match value.map(|v| v.kind) {
        None => {
            push(
                "mapping".into(),
                "is required: at least one `pendo_field = \"okta.attribute.path\"`".into(),
            );
            return None;
        }
        Some(ValueKind::Table(t)) => t,
        Some(_) => {
            push("mapping".into(), "must be a table".into());
            return None;
        }
    };
    if table.is_empty() {
        push(
            "mapping".into(),
            "is empty: map at least one Pendo field to an Okta attribute".into(),
        );
        return None;
    }
    let mut fields = Vec::with_capacity(table.len());
    let mut ok = true;
    for (field, value) in table {
        let key = format!("mapping.{field}");
        if let Err(msg) = check_field_name(&field) {
            push(key, msg);
            ok = false;
            continue;
        }
        let (path, ty) = match value.kind {
            ValueKind::String(path) => (path, ValueType::Text),
            ValueKind::Table(mut t) => {
                let path = t.remove("path").map(|v| v.kind);
                let ty = t.remove("type").map(|v| v.kind);
                for extra in t.keys() {
                    push(
                        format!("{key}.{extra}"),
                        "unknown key (a mapping takes `path` and `type`)".into(),
                    );
                    ok = false;
                }
                let path = match path {
                    Some(ValueKind::String(p)) => p,
                    _ => {
                        push(
                            format!("{key}.path"),
                            "is required and must be a string".into(),
                        );
                        ok = false;
                        continue;
                    }
                };
                let ty = match ty {
                    None => ValueType::Text,
                    Some(ValueKind::String(t)) => match ValueType::parse(&t) {
                        Some(ty) => ty,
                        None => {
                            push(
                                format!("{key}.type"),
                                format!("unknown type \"{t}\": use text, number, boolean or date"),
                            );
                            ok = false;
                            continue;
                        }
                    },
                    Some(_) => {
                        push(format!("{key}.type"), "must be a string".into());
                        ok = false;
                        continue;
                    }
                };
                (path, ty)
            }
            _ => {
                push(
                    key,
                    "must be an attribute path string or { path = \"...\", type = \"...\" }".into(),
                );
                ok = false;
                continue;
            }
        };
        match AttributePath::parse(&path) {
            Ok(path) => fields.push(FieldMapping { field, path, ty }),
            Err(e) => {
                push(key, e.to_string());
                ok = false;
            }
        }
    }
    ok.then(|| Mapping::new(fields))
}

/// Pendo field names: a letter or underscore, then letters, digits and underscores.
fn check_field_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!(
            "\"{name}\" is not a valid Pendo field name: start with a letter or `_`, then \
             letters, digits and `_`"
        ))
    }
}

fn log_settings(s: &mut Section, problems: &mut Vec<Problem>) -> Option<LogSettings> {
    let level = s
        .take::<String>("level", problems)
        .unwrap_or_else(|| "info".into());
    let level_ok = tracing_subscriber::EnvFilter::builder()
        .parse(&level)
        .map_err(|e| s.problem(problems, "level", format!("not a valid log filter: {e}")))
        .is_ok();
    let format = match s.take::<String>("format", problems).as_deref() {
        None | Some("text") => Some(LogFormat::Text),
        Some("json") => Some(LogFormat::Json),
        Some(other) => {
            s.problem(
                problems,
                "format",
                format!("must be \"text\" or \"json\", not \"{other}\""),
            );
            None
        }
    };
    let directory = s.take::<PathBuf>("directory", problems);
    let max_files = match s.take::<i64>("max_files", problems) {
        None => Some(14),
        Some(n @ 1..=3650) => Some(n as usize),
        Some(n) => {
            s.problem(
                problems,
                "max_files",
                format!("must be between 1 and 3650, not {n}"),
            );
            None
        }
    };
    level_ok.then_some(())?;
    Some(LogSettings {
        level,
        format: format?,
        directory,
        max_files: max_files?,
    })
}

fn schedule_settings(s: &mut Section, problems: &mut Vec<Problem>) -> Option<ScheduleSettings> {
    let cron = s.take::<String>("cron", problems);
    let tz = s.take::<String>("timezone", problems);
    let run_on_start = s.take::<bool>("run_on_start", problems).unwrap_or(false);
    let catch_up = s.take::<bool>("catch_up", problems).unwrap_or(true);
    let schedule = match (cron, tz) {
        (None, None) => Some(CronSchedule::default_weekly()),
        (cron, tz) => {
            let cron = cron.unwrap_or_else(|| crate::schedule::DEFAULT_CRON.to_owned());
            let tz = tz.unwrap_or_else(|| "UTC".to_owned());
            match CronSchedule::parse(&cron, &tz) {
                Ok(c) => Some(c),
                Err(e @ ScheduleError::Zone(_)) => {
                    s.problem(problems, "timezone", e.to_string());
                    None
                }
                Err(e) => {
                    s.problem(problems, "cron", e.to_string());
                    None
                }
            }
        }
    };
    Some(ScheduleSettings {
        cron: schedule?,
        run_on_start,
        catch_up,
    })
}

/// `host:port`, or just a port (then on loopback).
fn server_settings(
    s: &mut Section,
    problems: &mut Vec<Problem>,
) -> Option<Option<std::net::SocketAddr>> {
    let Some(raw) = s.take::<String>("listen", problems) else {
        return Some(None);
    };
    let raw = raw.trim();
    let parsed = raw.parse::<std::net::SocketAddr>().ok().or_else(|| {
        raw.trim_start_matches(':')
            .parse::<u16>()
            .ok()
            .map(|port| std::net::SocketAddr::from(([127, 0, 0, 1], port)))
    });
    match parsed {
        Some(addr) => Some(Some(addr)),
        None => {
            s.problem(
                problems,
                "listen",
                format!("\"{raw}\" is not an address like \"127.0.0.1:9184\" or a port"),
            );
            None
        }
    }
}

/// Parses a service URL: `https://`, or `http://` for loopback hosts only; no path, query or
/// credentials. The result has no trailing slash in its path.
pub fn service_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("\"{raw}\" is not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(format!(
                "\"{raw}\" uses http://, which is allowed only for loopback hosts; use https://"
            ));
        }
        other => {
            return Err(format!(
                "\"{raw}\": scheme {other}:// is not supported; use https://"
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("\"{raw}\" has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials in the URL".into());
    }
    if url.query().is_some() || url.fragment().is_some() || url.path() != "/" {
        return Err(format!(
            "\"{raw}\" must be just scheme and host (and port), without a path or query"
        ));
    }
    Ok(url)
}

/// `localhost`, `127.0.0.0/8` or `[::1]`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    const MINIMAL: &str = r#"
[okta]
org_url = "https://acme.okta.com"
api_token = "00abcSECRET"
[pendo]
integration_key = "pendoSECRET"
[mapping]
department = "profile.department"
"#;

    #[test]
    fn secret_files_are_listed_with_their_keys_even_when_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "[okta]\nnot_a_key = 1\n[okta.oauth]\nprivate_key_file = \"/k.pem\"\n\
             [pendo]\nintegration_key_file = \"/p.key\"\n",
        );
        assert_eq!(
            secret_files(&path),
            [
                ("okta.oauth.private_key_file", PathBuf::from("/k.pem")),
                ("pendo.integration_key_file", PathBuf::from("/p.key")),
            ]
        );
        assert!(secret_files(&dir.path().join("missing.toml")).is_empty());
        assert!(secret_files(&write(&dir, MINIMAL)).is_empty());
    }

    #[test]
    fn defaults_fill_in() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load_with_env(&write(&dir, MINIMAL), Some(BTreeMap::new())).unwrap();
        let s = loaded.settings;
        assert_eq!(s.okta.page_size, 200);
        assert_eq!(s.okta.scope, UserScope::All);
        assert_eq!(s.pendo.base_url.as_str(), "https://app.pendo.io/");
        assert_eq!(s.pendo.batch_size.get(), 500);
        assert_eq!(s.pendo.concurrency.get(), 4);
        assert_eq!(s.sync.visitor_id_key.as_str(), "profile.login");
        assert_eq!(s.sync.on_null, OnNull::Skip);
        assert_eq!(s.log.format, LogFormat::Text);
        match &s.okta.credentials {
            OktaCredentials::Ssws(t) => assert_eq!(t.expose_secret(), "00abcSECRET"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn env_overrides_without_parsing_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let env = BTreeMap::from([
            (
                "OKTA_PENDO_SYNC__OKTA__API_TOKEN".to_owned(),
                "0123".to_owned(),
            ),
            (
                "OKTA_PENDO_SYNC__PENDO__BATCH_SIZE".to_owned(),
                "50".to_owned(),
            ),
            ("OKTA_PENDO_SYNC__PENDO__REGION".to_owned(), "eu".to_owned()),
            ("OKTA_PENDO_SYNC_CONFIG".to_owned(), "/elsewhere".to_owned()),
        ]);
        let s = load_with_env(&write(&dir, MINIMAL), Some(env))
            .unwrap()
            .settings;
        match &s.okta.credentials {
            OktaCredentials::Ssws(t) => assert_eq!(t.expose_secret(), "0123"),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.pendo.batch_size.get(), 50);
        assert_eq!(s.pendo.base_url.as_str(), "https://app.eu.pendo.io/");
    }

    #[test]
    fn http_only_for_loopback() {
        assert!(service_url("http://127.0.0.1:8080").is_ok());
        assert!(service_url("http://localhost:1").is_ok());
        assert!(service_url("http://[::1]:1").is_ok());
        assert!(service_url("http://acme.okta.com").is_err());
        assert!(service_url("https://acme.okta.com/api").is_err());
        assert!(service_url("ftp://acme.okta.com").is_err());
    }

    #[test]
    fn secrets_never_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let text = MINIMAL.replace("api_token = \"00abcSECRET\"", "api_token = 12345678");
        let err = load_with_env(&write(&dir, &text), Some(BTreeMap::new())).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("okta.api_token"), "{shown}");
        assert!(!shown.contains("12345678"), "{shown}");

        let text = MINIMAL.replace("api_token = \"00abcSECRET\"", "api_token = 00abcSECRET");
        let err = load_with_env(&write(&dir, &text), Some(BTreeMap::new())).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("line 4"), "{shown}");
        assert!(!shown.contains("00abcSECRET"), "{shown}");
    }

    #[test]
    fn settings_debug_hides_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let s = load_with_env(&write(&dir, MINIMAL), Some(BTreeMap::new()))
            .unwrap()
            .settings;
        let shown = format!("{s:?}");
        assert!(!shown.contains("00abcSECRET") && !shown.contains("pendoSECRET"));
    }

    #[test]
    fn the_oauth_key_is_parsed_at_load_and_never_shown() {
        use okta_pendo_testkit::keys;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("okta.pem");
        std::fs::write(&key, keys::EC_PRIVATE_PEM).unwrap();
        let oauth = format!(
            "[okta.oauth]\nclient_id = \"0oa1\"\nprivate_key_file = \"{}\"\n",
            key.display()
        );
        let text = MINIMAL.replace("api_token = \"00abcSECRET\"\n", "") + &oauth;
        let s = load_with_env(&write(&dir, &text), Some(BTreeMap::new()))
            .unwrap()
            .settings;
        let OktaCredentials::OAuth(o) = &s.okta.credentials else {
            panic!("{:?}", s.okta.credentials);
        };
        assert_eq!(o.private_key.algorithm(), jsonwebtoken::Algorithm::ES256);
        let shown = format!("{s:?} {s:#?}");
        for line in keys::EC_PRIVATE_PEM
            .lines()
            .filter(|l| !l.starts_with("-----"))
        {
            assert!(!shown.contains(line), "{shown}");
        }

        // Inline, the same key reads alike; a broken one is refused on its own key.
        let inline = format!(
            "[okta.oauth]\nclient_id = \"0oa1\"\nprivate_key = '''\n{}'''\n",
            keys::RSA_PRIVATE_PEM
        );
        let text = MINIMAL.replace("api_token = \"00abcSECRET\"\n", "") + &inline;
        let s = load_with_env(&write(&dir, &text), Some(BTreeMap::new()))
            .unwrap()
            .settings;
        assert!(matches!(&s.okta.credentials, OktaCredentials::OAuth(o)
            if o.private_key.algorithm() == jsonwebtoken::Algorithm::RS256));
        let broken = text.replace("MII", "XII");
        let err = load_with_env(&write(&dir, &broken), Some(BTreeMap::new())).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert_eq!(err.problems[0].key, "okta.oauth.private_key", "{err}");
        assert!(err.problems[0].message.contains("value not shown"), "{err}");
    }
}
