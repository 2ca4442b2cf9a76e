//! Configuration: the TOML file plus `OKTA_PENDO_SYNC__SECTION__KEY` environment overrides,
//! turned into validated [`Settings`] once, with every problem reported at once and its key.
//!
//! The `config` crate is the one loader: it parses the file once and lays the environment over
//! it. The merged tree is then walked key by key instead of handed to one `Deserialize`, because
//! serde stops at the first error while an operator editing the file wants the whole list:
//! `read` has one reader per kind of value, `sections` reads each section with them. What is
//! left over in a table is an unknown key. Secrets are read as [`SecretString`] (the OAuth key as
//! a [`PrivateKey`]) and their values never appear in an error message.

mod read;
mod sections;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Map, Source, Value, ValueKind};
use secrecy::SecretString;
use url::Url;

use crate::mapping::{AttributePath, Mapping, OnNull};
use crate::retry::RetryPolicy;
use crate::schedule::CronSchedule;
use crate::signing::PrivateKey;
use read::Choice;
pub(crate) use read::read_secret_file;

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
    "sync.value_keys",
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
    "notify.webhook.url",
    "notify.webhook.url_file",
    "notify.webhook.format",
];

/// Everything a run needs, validated.
#[derive(Debug)]
pub struct Settings {
    /// `[okta]`: where and how users are read.
    pub okta: OktaSettings,
    /// `[pendo]`: where and how metadata is pushed.
    pub pendo: PendoSettings,
    /// `[sync]`: how Okta users become Pendo visitors.
    pub sync: SyncSettings,
    /// `[mapping]`: which Okta attribute goes to which Pendo field.
    pub mapping: Mapping,
    /// `[state]`: the state database.
    pub state: StateSettings,
    /// `[log]`: what is logged, and where.
    pub log: LogSettings,
    /// `[guard]`: the check of a full run's sample before it pushes.
    pub guard: GuardSettings,
    /// `[retry]`: how both clients retry.
    pub retry: RetryPolicy,
    /// `[schedule]`: when the daemon runs.
    pub schedule: ScheduleSettings,
    /// `server.listen`: where the daemon serves `/healthz` and `/metrics`, if anywhere.
    pub server: Option<SocketAddr>,
    /// `[[notify.webhook]]`: where the end of a run that did not succeed, and a recovery, is
    /// sent (default: nowhere).
    pub notify: Vec<Webhook>,
}

impl Settings {
    /// Every attribute path a run reads of a user to send it: the mapped paths, then the
    /// visitor ID key.
    pub fn paths_read(&self) -> impl Iterator<Item = &AttributePath> {
        self.mapping.paths(&self.sync.visitor_id_key)
    }

    /// What differs from `old` and takes a restart to apply, by key or section: the daemon
    /// opens the state database (`state.path`, `state.keep_runs`), binds the server
    /// (`[server]`) and sets up logging (`[log]`) once, at start. Everything else applies from
    /// the next run.
    pub fn needs_restart(&self, old: &Settings) -> Vec<&'static str> {
        [
            ("state.path", self.state.path != old.state.path),
            (
                "state.keep_runs",
                self.state.keep_runs != old.state.keep_runs,
            ),
            ("[server]", self.server != old.server),
            ("[log]", self.log != old.log),
        ]
        .into_iter()
        .filter_map(|(what, changed)| changed.then_some(what))
        .collect()
    }
}

/// One `[[notify.webhook]]` table: a webhook told when a run ends `failed`, `partial`, `held` or
/// `interrupted`, and once when a run succeeds after one that did not.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Its place among the `[[notify.webhook]]` tables, counted from 1: errors and logs name it
    /// `notify.webhook[N]`, never by its URL.
    pub index: usize,
    /// `url` or `url_file`: where the message is posted; `https://`, or `http://` for loopback
    /// hosts only. A secret (an incoming-webhook URL is its own credential): never logged.
    pub url: SecretString,
    /// `format`: what is posted (default: `slack`).
    pub format: WebhookFormat,
}

impl Webhook {
    /// How errors and logs name it: `notify.webhook[N]`.
    pub fn name(&self) -> String {
        format!("notify.webhook[{}]", self.index)
    }
}

/// What a webhook is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// `slack`: a Slack-compatible incoming-webhook message, `{"text": "..."}`.
    Slack,
    /// `json`: `{"event", "host", "run"}`, `run` being the whole run record as `history --json`
    /// prints it.
    Json,
}

impl Choice for WebhookFormat {
    const ALL: &'static [Self] = &[WebhookFormat::Slack, WebhookFormat::Json];
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl WebhookFormat {
    /// The name the config file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Slack => "slack",
            WebhookFormat::Json => "json",
        }
    }
}

/// `[schedule]`: when the daemon runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSettings {
    /// `cron` read in `timezone` (default: Mondays at 06:00 UTC).
    pub cron: CronSchedule,
    /// Run once right after the daemon starts (default: no).
    pub run_on_start: bool,
    /// On start, run once if a scheduled run was missed while the daemon was down (default:
    /// yes).
    pub catch_up: bool,
}

/// `[okta]`: where and how to read users.
#[derive(Debug)]
pub struct OktaSettings {
    /// The org, e.g. `https://acme.okta.com` (`http://` only for loopback hosts).
    pub org_url: Url,
    /// How to authenticate: an SSWS token (`api_token`, `api_token_file`) or an OAuth service
    /// app (`[okta.oauth]`), exactly one of them.
    pub credentials: OktaCredentials,
    /// Which users are in scope: `filter`, `search` or `group_ids`, at most one (default:
    /// Okta's default list).
    pub scope: UserScope,
    /// Users per page, 1 to 200, Okta's maximum (default: 200).
    pub page_size: u32,
    /// The share of the org's rate-limit budget this sync may use, in (0, 1] (default: 0.5).
    pub rate_limit_share: f64,
    /// `connect_timeout` (default 10 s) and `request_timeout` (default 60 s).
    pub timeouts: Timeouts,
}

/// Connection and whole-request time limits of one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `connect_timeout`: how long setting up a connection may take.
    pub connect: Duration,
    /// `request_timeout`: how long one request may take, answer included.
    pub request: Duration,
}

/// How the client authenticates to Okta.
#[derive(Debug)]
pub enum OktaCredentials {
    /// `Authorization: SSWS {token}`, from `api_token` or `api_token_file`.
    Ssws(SecretString),
    /// OAuth 2.0 client credentials for a service app (`[okta.oauth]`).
    OAuth(OAuthSettings),
}

/// `[okta.oauth]`: an Okta service app.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// `client_id`: the app's Client ID (`0oa...`).
    pub client_id: String,
    /// `private_key` or `private_key_file`: the private key whose public half is registered for
    /// the app, parsed at load.
    pub private_key: PrivateKey,
    /// `key_id`: sent as the assertion's `kid` when set.
    pub key_id: Option<String>,
    /// `scopes` (default: `okta.users.read`, and `okta.groups.read` with `group_ids`).
    pub scopes: Vec<String>,
}

/// Which users a run reads. Okta takes at most one of these, so the type allows one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserScope {
    /// Okta's default list (every user but deprovisioned ones).
    All,
    /// `okta.filter`: `GET /api/v1/users?filter=…`
    Filter(String),
    /// `okta.search`: `GET /api/v1/users?search=…`
    Search(String),
    /// `okta.group_ids`: the members of these groups, each user once.
    Groups(Vec<String>),
}

/// `[pendo]`: where and how to push metadata.
#[derive(Debug)]
pub struct PendoSettings {
    /// `base_url`, else the host of `region` (default: `us`).
    pub base_url: Url,
    /// `integration_key` or `integration_key_file`: the Pendo integration key.
    pub integration_key: SecretString,
    /// `metadata_group`: where the values are written (default: `custom`).
    pub metadata_group: MetadataGroup,
    /// `batch_size`: visitors per request, 1 to 10,000 (default: 500).
    pub batch_size: NonZeroUsize,
    /// `concurrency`: requests in flight at once, 1 to 64 (default: 4).
    pub concurrency: NonZeroUsize,
    /// `connect_timeout` (default 10 s) and `request_timeout` (default 330 s: Pendo answers
    /// 408 only after 5 minutes).
    pub timeouts: Timeouts,
}

/// The Pendo metadata group the values are written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataGroup {
    /// `custom`: custom fields (Settings > Data Mappings).
    Custom,
    /// `agent`: the agent metadata group.
    Agent,
}

impl MetadataGroup {
    /// The name Pendo's API and the config file use.
    pub fn as_str(self) -> &'static str {
        match self {
            MetadataGroup::Custom => "custom",
            MetadataGroup::Agent => "agent",
        }
    }
}

impl Choice for MetadataGroup {
    const ALL: &'static [Self] = &[MetadataGroup::Custom, MetadataGroup::Agent];
    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// The Pendo regions (`pendo.region`) and their hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// `us`: `app.pendo.io`.
    Us,
    /// `us1`: `us1.app.pendo.io`.
    Us1,
    /// `eu`: `app.eu.pendo.io`.
    Eu,
    /// `jpn`: `app.jpn.pendo.io`.
    Jpn,
    /// `au`: `app.au.pendo.io`.
    Au,
}

impl Region {
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

impl Choice for Region {
    const ALL: &'static [Self] = &[Region::Us, Region::Us1, Region::Eu, Region::Jpn, Region::Au];
    const NOUN: Option<&'static str> = Some("region");
    fn name(self) -> &'static str {
        match self {
            Region::Us => "us",
            Region::Us1 => "us1",
            Region::Eu => "eu",
            Region::Jpn => "jpn",
            Region::Au => "au",
        }
    }
}

/// `[sync]`: how Okta users become Pendo visitors.
#[derive(Debug)]
pub struct SyncSettings {
    /// `value_keys`: Okta profile attributes pushed to the Pendo field of the same name, as
    /// text (the action card's "Value Keys"); combined with `[mapping]` (default: none).
    pub value_keys: Vec<String>,
    /// `visitor_id_key`: the Okta attribute whose value is the Pendo visitor ID (default:
    /// `profile.login`).
    pub visitor_id_key: AttributePath,
    /// `create_missing_visitors`: create visitors Pendo does not know yet; when false they are
    /// reported as missing (default: no).
    pub create_missing_visitors: bool,
    /// `on_null`: what an attribute without a value does to the Pendo field (default: `skip`).
    pub on_null: OnNull,
    /// `shutdown_grace`: after SIGTERM/SIGINT, how long pushes in flight may take to finish
    /// (default: 10 s).
    pub shutdown_grace: Duration,
    /// `full_sync_every`: a run is full when the last full run is older than this (default:
    /// 7 days).
    pub full_sync_every: Duration,
}

/// `[state]`: the state database.
#[derive(Debug)]
pub struct StateSettings {
    /// `path`: the SQLite file holding the run records and what incremental runs need.
    pub path: PathBuf,
    /// `keep_runs`: how many run records are kept, 1 to 100,000,000; older ones are dropped as
    /// runs are stored (default: 10,000).
    pub keep_runs: u32,
}

/// `[guard]`: before a full run pushes anything, it maps a sample and holds the run when the
/// sample looks like a broken attribute path or visitor ID key (README, "The guard").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardSettings {
    /// `enabled`: whether full runs are checked at all (default: yes).
    pub enabled: bool,
    /// `sample`: how many users are mapped and judged before a full run pushes, 1 to 100,000
    /// (default: 1,000).
    pub sample: NonZeroUsize,
}

/// `[log]`: logging.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    /// `level`: a `tracing` filter directive such as `info` or `okta_pendo_sync=debug`
    /// (default: `info`).
    pub level: String,
    /// `format`: the shape of log lines (default: `text`).
    pub format: LogFormat,
    /// `directory`: also write daily-rotated files here.
    pub directory: Option<PathBuf>,
    /// `max_files`: how many daily files to keep, 1 to 3650 (default: 14).
    pub max_files: usize,
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `text`: for people.
    Text,
    /// `json`: one JSON object a line, for log collectors.
    Json,
}

impl Choice for LogFormat {
    const ALL: &'static [Self] = &[LogFormat::Text, LogFormat::Json];
    fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, dotted (`okta.page_size`), or `(file)` for the file as a whole.
    pub key: String,
    /// What is wrong, never quoting a secret.
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
    /// The config file.
    pub path: PathBuf,
    /// Every problem found in it and in the environment's overrides.
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
    /// The validated settings.
    pub settings: Settings,
    /// Things to log at start, e.g. an inline secret in a file others may read.
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
    let error = |problems| ConfigError {
        path: path.to_owned(),
        problems,
    };
    let file_problem = |message| {
        error(vec![Problem {
            key: "(file)".into(),
            message,
        }])
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| file_problem(format!("cannot read the config file: {e}")))?;
    let file = parse(&text).map_err(file_problem)?;
    let mut warnings: Vec<String> = inline_secret_warning(path, &file).into_iter().collect();
    let merged = with_env(file, env).map_err(|e| file_problem(e.to_string()))?;
    warnings.extend(file_mode_warnings(path, &merged));
    let settings = sections::validate(merged).map_err(error)?;
    Ok(Loaded { settings, warnings })
}

/// The file's text, parsed once, by the config crate.
fn parse(text: &str) -> Result<config::Config, String> {
    config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .map_err(|e| syntax_error(text, &e))
}

/// Where the file is not TOML, by line and column. The config crate's message quotes the line,
/// which could hold a secret; the TOML error it carries gives the message and a byte offset
/// without it, and the text is looked at again only to turn that offset into a line and column.
fn syntax_error(text: &str, e: &config::ConfigError) -> String {
    let toml = match e {
        config::ConfigError::FileParse { cause, .. } => cause.downcast_ref::<toml::de::Error>(),
        _ => None,
    };
    let Some(toml) = toml else {
        return format!("not valid TOML: {e}");
    };
    let at = toml
        .span()
        .map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!(" at line {line}, column {column}")
        })
        .unwrap_or_default();
    format!("not valid TOML{at}: {}", toml.message())
}

/// The file with the environment's overrides (the process's, or `env`) on top.
fn with_env(
    file: config::Config,
    env: Option<BTreeMap<String, String>>,
) -> Result<Map<String, Value>, config::ConfigError> {
    let mut environment = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("__")
        .separator("__")
        .try_parsing(false);
    if let Some(env) = env {
        environment = environment.source(Some(env.into_iter().collect()));
    }
    config::Config::builder()
        .add_source(file)
        .add_source(environment)
        .build()
        .and_then(|c| c.collect())
}

/// The values at a dotted key (`okta.oauth.private_key`) of a tree: one at most, except under
/// an array of tables (`[[notify.webhook]]`), where each table may hold one.
fn lookup<'a>(root: &'a Map<String, Value>, key: &str) -> Vec<&'a Value> {
    let Some((path, last)) = key.rsplit_once('.') else {
        return Vec::new();
    };
    let mut tables = vec![root];
    for name in path.split('.') {
        tables = tables
            .into_iter()
            .flat_map(|table| match table.get(name).map(|v| &v.kind) {
                Some(ValueKind::Table(inner)) => vec![inner],
                Some(ValueKind::Array(items)) => items
                    .iter()
                    .filter_map(|item| match &item.kind {
                        ValueKind::Table(inner) => Some(inner),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
    }
    tables.into_iter().filter_map(|t| t.get(last)).collect()
}

/// `server.listen` of the config at `path` (with the process environment's overrides), read
/// without validating the rest: `health` needs only this, and must answer even where a secret
/// file is not readable by whoever asks. `Ok(None)`: no server is configured.
pub fn server_listen(path: &Path) -> Result<Option<SocketAddr>, ConfigError> {
    let problem = |key: &str, message: String| ConfigError {
        path: path.to_owned(),
        problems: vec![Problem {
            key: key.into(),
            message,
        }],
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| problem("(file)", format!("cannot read the config file: {e}")))?;
    let file = parse(&text).map_err(|m| problem("(file)", m))?;
    let root = with_env(file, None).map_err(|e| problem("(file)", e.to_string()))?;
    let Some(value) = lookup(&root, "server.listen").into_iter().next() else {
        return Ok(None);
    };
    let raw = value
        .clone()
        .into_string()
        .map_err(|_| problem("server.listen", "must be a string".into()))?;
    sections::listen_address(&raw)
        .map(Some)
        .map_err(|m| problem("server.listen", m))
}

/// The files the config at `path` reads secrets from (its `*_file` keys, with the process
/// environment's overrides), each with its key, whether or not the config is otherwise valid:
/// the daemon watches them to notice a rotated secret. A config that cannot be read or parsed
/// names none.
pub fn secret_files(path: &Path) -> Vec<(&'static str, PathBuf)> {
    let Some(root) = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| parse(&text).ok())
        .and_then(|file| with_env(file, None).ok())
    else {
        return Vec::new();
    };
    KEYS.iter()
        .filter(|key| key.ends_with("_file"))
        .flat_map(|key| {
            lookup(&root, key).into_iter().filter_map(|value| {
                let file = value.clone().into_string().ok()?;
                Some((*key, PathBuf::from(file)))
            })
        })
        .collect()
}

/// A warning when the file holds a secret inline (a key that has a `*_file` twin) and other
/// users may read it.
fn inline_secret_warning(path: &Path, file: &config::Config) -> Option<String> {
    let file = file.collect().ok()?;
    let inline: Vec<&str> = KEYS
        .iter()
        .filter_map(|key| key.strip_suffix("_file"))
        .filter(|key| !lookup(&file, key).is_empty())
        .collect();
    if inline.is_empty() {
        return None;
    }
    let mode = file_mode(path)?;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} holds a secret inline ({}) and other users may read it (mode {mode:o}): \
             run `chmod 600` on it or move the secret to the matching *_file key",
            path.display(),
            inline.join(", ")
        )
    })
}

/// Warnings about who else may touch the files the settings come from: the config file when
/// others may write it (they could change where secrets are read from and sent), and each
/// secret file (`*_file`, after the environment's overrides) that group or others may read.
fn file_mode_warnings(path: &Path, root: &Map<String, Value>) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(mode) = file_mode(path).filter(|m| m & 0o002 != 0) {
        warnings.push(format!(
            "{} may be changed by other users (mode {mode:o}): run `chmod o-w` on it",
            path.display()
        ));
    }
    for key in KEYS.iter().filter(|key| key.ends_with("_file")) {
        let files = lookup(root, key)
            .into_iter()
            .filter_map(|v| v.clone().into_string().ok());
        for file in files.map(PathBuf::from) {
            if let Some(mode) = exposed_secret_file(&file) {
                warnings.push(format!(
                    "{key}: {} may be read by users other than its owner (mode {mode:o}): run \
                 `chmod 600` on it",
                    file.display()
                ));
            }
        }
    }
    warnings
}

/// The permission bits of a secret file whose mode gives it to more than its owner, else
/// `None`. The group's bits do not count when the file belongs to another user and to this
/// process's group: they are then how this process reads it (Kubernetes hands a Secret's files
/// to the pod's `fsGroup` that way).
#[cfg(unix)]
fn exposed_secret_file(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.mode() & 0o777;
    let read_through_group = meta.uid() != rustix::process::geteuid().as_raw()
        && meta.gid() == rustix::process::getegid().as_raw();
    let beyond_owner = if read_through_group { 0o007 } else { 0o077 };
    (mode & beyond_owner != 0).then_some(mode)
}

#[cfg(not(unix))]
fn exposed_secret_file(_: &Path) -> Option<u32> {
    None
}

/// The file's permission bits, where there are such.
#[cfg(unix)]
fn file_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(std::fs::metadata(path).ok()?.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn file_mode(_: &Path) -> Option<u32> {
    None
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

/// Checks a webhook URL (`notify.webhook[N].url`): `https://`, or `http://` for loopback hosts
/// only, with a host. Its path and query may carry a token, so no message quotes it.
pub fn webhook_url(raw: &str) -> Result<SecretString, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("is not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(
                "uses http://, which is allowed only for loopback hosts; use https://".into(),
            );
        }
        _ => return Err("must be an https:// URL".into()),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    Ok(SecretString::from(raw.trim().to_owned()))
}

/// `localhost`, `127.0.0.0/8` or `[::1]`. The name `localhost` is never looked up: the HTTP
/// clients (`http::client`) send it to 127.0.0.1 or ::1 only, whatever DNS or a hosts file says.
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
    fn what_needs_a_restart_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let load = |extra: &str| {
            load_with_env(
                &write(&dir, &format!("{MINIMAL}{extra}")),
                Some(BTreeMap::new()),
            )
            .unwrap()
            .settings
        };
        let old = load("");
        assert!(load("").needs_restart(&old).is_empty());
        // What applies from the next run takes no restart.
        let next_run = load(
            "[sync]\non_null = \"clear\"\n[schedule]\ncron = \"@daily\"\n\
             [retry]\nmax_attempts = 2\n[guard]\nsample = 5\n",
        );
        assert!(next_run.needs_restart(&old).is_empty());
        let all = load(
            "[state]\npath = \"/elsewhere.db\"\nkeep_runs = 5\n[server]\nlisten = \"9184\"\n\
             [log]\nformat = \"json\"\n",
        );
        assert_eq!(
            all.needs_restart(&old),
            ["state.path", "state.keep_runs", "[server]", "[log]"]
        );
        for (extra, what) in [
            ("[state]\nkeep_runs = 5\n", "state.keep_runs"),
            ("[log]\nlevel = \"debug\"\n", "[log]"),
            ("[log]\nmax_files = 3\n", "[log]"),
            ("[log]\ndirectory = \"/var/log/x\"\n", "[log]"),
        ] {
            assert_eq!(load(extra).needs_restart(&old), [what], "{extra}");
            assert_eq!(old.needs_restart(&load(extra)), [what], "{extra}");
        }
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
    fn webhooks_load_in_order_and_their_url_files_are_watched() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hook.url");
        std::fs::write(&file, "https://hooks.example.com/services/FILEHOOK\n").unwrap();
        let text = format!(
            "{MINIMAL}[[notify.webhook]]\nurl = \"https://hooks.example.com/x/INLINEHOOK\"\n\
             format = \"json\"\n[[notify.webhook]]\nurl_file = \"{}\"\n",
            file.display()
        );
        let path = write(&dir, &text);
        let s = load_with_env(&path, Some(BTreeMap::new()))
            .unwrap()
            .settings;
        let hooks: Vec<(String, WebhookFormat, &str)> = s
            .notify
            .iter()
            .map(|w| (w.name(), w.format, w.url.expose_secret()))
            .collect();
        assert_eq!(
            hooks,
            [
                (
                    "notify.webhook[1]".to_owned(),
                    WebhookFormat::Json,
                    "https://hooks.example.com/x/INLINEHOOK"
                ),
                (
                    "notify.webhook[2]".to_owned(),
                    WebhookFormat::Slack,
                    "https://hooks.example.com/services/FILEHOOK"
                ),
            ]
        );
        // The daemon watches the file to pick up a rotated URL.
        assert_eq!(secret_files(&path), [("notify.webhook.url_file", file)]);
        let shown = format!("{s:?} {s:#?}");
        assert!(
            !shown.contains("INLINEHOOK") && !shown.contains("FILEHOOK"),
            "{shown}"
        );
        // None configured: none.
        let none = load_with_env(&write(&dir, MINIMAL), Some(BTreeMap::new())).unwrap();
        assert!(none.settings.notify.is_empty());
        // A table instead of an array of tables is refused by its key.
        let single = format!("{MINIMAL}[notify.webhook]\nurl = \"https://h.example.com/x\"\n");
        let err = load_with_env(&write(&dir, &single), Some(BTreeMap::new())).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert_eq!(err.problems[0].key, "notify.webhook");
    }

    #[test]
    fn webhook_urls_are_https_or_loopback_and_never_quoted() {
        assert!(webhook_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(webhook_url("http://localhost/hook?token=1").is_ok());
        assert!(webhook_url("https://hooks.example.com/services/T/B/X").is_ok());
        for bad in [
            "http://hooks.example.com/services/SECRETX",
            "ftp://hooks.example.com/SECRETX",
            "SECRETX",
            "https://[bad/SECRETX",
        ] {
            let e = webhook_url(bad).unwrap_err();
            assert!(!e.contains("SECRETX") && !e.contains("example"), "{e}");
        }
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
        assert_eq!(o.private_key.algorithm(), crate::signing::Algorithm::ES256);
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
            if o.private_key.algorithm() == crate::signing::Algorithm::RS256));
        let broken = text.replace("MII", "XII");
        let err = load_with_env(&write(&dir, &broken), Some(BTreeMap::new())).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert_eq!(err.problems[0].key, "okta.oauth.private_key", "{err}");
        assert!(err.problems[0].message.contains("value not shown"), "{err}");
    }
}
