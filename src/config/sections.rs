//! From the merged tree to [`Settings`]: each section read with the [`Section`] readers, its
//! defaults filled in and the rules that span keys checked, every problem kept.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use config::{Map, Value, ValueKind};
use url::Url;

use super::read::{Choice, Section, choose, header_secret, origin_note};
use super::{
    GuardSettings, LogFormat, LogSettings, MetadataGroup, OAuthSettings, OktaCredentials,
    OktaSettings, PendoSettings, Problem, Region, ScheduleSettings, Settings, StateSettings,
    SyncSettings, Timeouts, UserScope, Webhook, WebhookFormat, service_url, webhook_url,
};
use crate::mapping::{AttributePath, FieldMapping, Mapping, OnNull, ValueType};
use crate::retry::RetryPolicy;
use crate::schedule::{CronSchedule, DEFAULT_CRON, ScheduleError};
use crate::signing::PrivateKey;

impl Choice for OnNull {
    const ALL: &'static [Self] = &[OnNull::Skip, OnNull::Clear];
    fn name(self) -> &'static str {
        match self {
            OnNull::Skip => "skip",
            OnNull::Clear => "clear",
        }
    }
}

impl Choice for ValueType {
    const ALL: &'static [Self] = &[
        ValueType::Text,
        ValueType::Number,
        ValueType::Boolean,
        ValueType::Date,
    ];
    const NOUN: Option<&'static str> = Some("type");
    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// The whole tree: the settings, or every problem found in it.
pub(super) fn validate(mut root: Map<String, Value>) -> Result<Settings, Vec<Problem>> {
    let mut problems = Vec::new();
    let settings = settings(&mut root, &mut problems);
    for (key, value) in root {
        problems.push(Problem {
            key,
            message: format!("unknown section{}", origin_note(&value)),
        });
    }
    match settings {
        Some(settings) if problems.is_empty() => Ok(settings),
        _ => Err(problems),
    }
}

/// Reads every section (all of them, whatever an earlier one holds), taking each out of `root`.
fn settings(root: &mut Map<String, Value>, problems: &mut Vec<Problem>) -> Option<Settings> {
    let okta = section(root, "okta", okta_settings, problems);
    let pendo = section(root, "pendo", pendo_settings, problems);
    let sync = section(root, "sync", sync_settings, problems);
    let mapping = mapping_settings(root.remove("mapping"), problems);
    let mapping = match (mapping, &sync) {
        (Some(fields), Some(sync)) => combine(fields, sync, problems),
        _ => None,
    };
    let state = section(root, "state", state_settings, problems);
    let guard = section(root, "guard", guard_settings, problems);
    let log = section(root, "log", log_settings, problems);
    let retry = section(root, "retry", retry_settings, problems);
    let schedule = section(root, "schedule", schedule_settings, problems);
    let server = section(root, "server", server_settings, problems);
    let notify = section(root, "notify", notify_settings, problems);
    Some(Settings {
        okta: okta?,
        pendo: pendo?,
        sync: sync?,
        mapping: mapping?,
        state: state?,
        log: log?,
        guard: guard?,
        retry: retry?,
        schedule: schedule?,
        server: server?,
        notify: notify?,
    })
}

/// Reads the section `name` with `read`; its problems, unknown keys last, go to `problems`.
fn section<T>(
    root: &mut Map<String, Value>,
    name: &str,
    read: fn(&mut Section) -> Option<T>,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let mut s = Section::new(root, name);
    let out = read(&mut s);
    problems.extend(s.finish());
    out
}

fn okta_settings(s: &mut Section) -> Option<OktaSettings> {
    let org_url = s.take::<String>("org_url");
    let org_url = s
        .required(
            "org_url",
            org_url,
            "is required, e.g. \"https://acme.okta.com\"",
        )
        .and_then(|raw| s.check("org_url", service_url(&raw)));
    let oauth = s.subsection("oauth");
    let has_token = s.has("api_token") || s.has("api_token_file");
    let scope = user_scope(s);
    let page_size = s.bounded("page_size", 200, 1..=200);
    let rate_limit_share = match s.take_or("rate_limit_share", 0.5) {
        Some(x) if x > 0.0 && x <= 1.0 => Some(x),
        Some(x) => s.check(
            "rate_limit_share",
            Err(format!(
                "must be more than 0 and at most 1 (a fraction of the budget), not {x}"
            )),
        ),
        None => None,
    };
    let timeouts = timeouts(s, Duration::from_secs(60));
    let credentials = match oauth {
        None => s
            .secret("api_token", header_secret)
            .map(OktaCredentials::Ssws),
        Some(_) if has_token => {
            s.problem(
                "oauth",
                "set either okta.api_token (or okta.api_token_file) or [okta.oauth], not both",
            );
            None
        }
        Some(mut o) => {
            let groups = matches!(scope, Some(UserScope::Groups(_)));
            let settings = oauth_settings(&mut o, groups);
            s.absorb(o);
            settings.map(OktaCredentials::OAuth)
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

/// `okta.filter`, `okta.search` or `okta.group_ids`: at most one of them.
fn user_scope(s: &mut Section) -> Option<UserScope> {
    let filter = s.take::<String>("filter").filter(|f| !f.trim().is_empty());
    let search = s.take::<String>("search").filter(|f| !f.trim().is_empty());
    let groups = s.list("group_ids").unwrap_or_default();
    if let Some(bad) = groups
        .iter()
        .find(|id| !id.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        let message = format!(
            "\"{bad}\" is not an Okta group ID (letters and digits, like 00g1abcdEFGH2ijkl3m4)"
        );
        s.problem("group_ids", message);
    }
    match (filter, search, groups.is_empty()) {
        (None, None, true) => Some(UserScope::All),
        (Some(f), None, true) => Some(UserScope::Filter(f)),
        (None, Some(q), true) => Some(UserScope::Search(q)),
        (None, None, false) => Some(UserScope::Groups(groups)),
        (Some(_), Some(_), _) => {
            s.problem("search", "set either okta.filter or okta.search, not both");
            None
        }
        (_, _, false) => {
            s.problem(
                "group_ids",
                "cannot be combined with okta.filter or okta.search: Okta's group members \
                 endpoint takes neither",
            );
            None
        }
    }
}

/// `[okta.oauth]`: a service app's client ID, private key and scopes. Reading the groups of
/// `okta.group_ids` takes one more scope by default.
fn oauth_settings(s: &mut Section, groups: bool) -> Option<OAuthSettings> {
    let client_id = s
        .take::<String>("client_id")
        .filter(|c| !c.trim().is_empty());
    let client_id = s.required(
        "client_id",
        client_id,
        "is required (the service app's Client ID, 0oa...)",
    );
    let private_key = s.secret("private_key", PrivateKey::from_pem);
    let key_id = s.take::<String>("key_id").filter(|k| !k.trim().is_empty());
    let scopes = match s.list("scopes") {
        Some(v) if v.is_empty() => {
            s.problem("scopes", "must name at least one scope");
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
    Some(OAuthSettings {
        client_id: client_id?.trim().to_owned(),
        private_key: private_key?,
        key_id: key_id.map(|k| k.trim().to_owned()),
        scopes: scopes?,
    })
}

fn pendo_settings(s: &mut Section) -> Option<PendoSettings> {
    let integration_key = s.secret("integration_key", header_secret);
    let region = s.choice("region", Region::Us);
    let base_url = match s.take::<String>("base_url") {
        Some(raw) => s.check("base_url", service_url(&raw)),
        None => region.and_then(|r| Url::parse(r.base_url()).ok()),
    };
    let metadata_group = s.choice("metadata_group", MetadataGroup::Custom);
    let batch_size = s.bounded("batch_size", 500, 1..=10_000);
    let concurrency = s.bounded("concurrency", 4, 1..=64);
    // Pendo answers 408 only after 5 minutes; by default wait a little longer than that.
    let timeouts = timeouts(s, Duration::from_secs(330));
    Some(PendoSettings {
        base_url: base_url?,
        integration_key: integration_key?,
        metadata_group: metadata_group?,
        batch_size: batch_size.and_then(NonZeroUsize::new)?,
        concurrency: concurrency.and_then(NonZeroUsize::new)?,
        timeouts: timeouts?,
    })
}

/// `connect_timeout` (10 s by default) and `request_timeout`.
fn timeouts(s: &mut Section, request: Duration) -> Option<Timeouts> {
    let connect = s.duration("connect_timeout", Duration::from_secs(10));
    let request = s.duration("request_timeout", request);
    Some(Timeouts {
        connect: connect?,
        request: request?,
    })
}

fn sync_settings(s: &mut Section) -> Option<SyncSettings> {
    let visitor_id_key = s.take_or("visitor_id_key", "profile.login".to_owned());
    let visitor_id_key = visitor_id_key.and_then(|raw| {
        let parsed = AttributePath::parse(&raw).map_err(|e| e.to_string());
        s.check("visitor_id_key", parsed)
    });
    let create_missing_visitors = s.take_or("create_missing_visitors", false);
    let on_null = s.choice("on_null", OnNull::Skip);
    let shutdown_grace = s.duration("shutdown_grace", Duration::from_secs(10));
    let full_sync_every = s.duration("full_sync_every", Duration::from_secs(7 * 24 * 3600));
    let value_keys = s.list("value_keys").unwrap_or_default();
    Some(SyncSettings {
        value_keys,
        visitor_id_key: visitor_id_key?,
        create_missing_visitors: create_missing_visitors?,
        on_null: on_null?,
        shutdown_grace: shutdown_grace?,
        full_sync_every: full_sync_every?,
    })
}

fn state_settings(s: &mut Section) -> Option<StateSettings> {
    let path = s.take_or("path", PathBuf::from("/var/lib/okta-pendo-sync/state.db"));
    let keep_runs = s.bounded(
        "keep_runs",
        i64::from(crate::state::DEFAULT_KEEP_RUNS),
        1..=100_000_000,
    );
    Some(StateSettings {
        path: path?,
        keep_runs: keep_runs?,
    })
}

fn guard_settings(s: &mut Section) -> Option<GuardSettings> {
    let enabled = s.take_or("enabled", true);
    let sample = s.bounded("sample", 1000, 1..=100_000);
    Some(GuardSettings {
        enabled: enabled?,
        sample: sample.and_then(NonZeroUsize::new)?,
    })
}

fn log_settings(s: &mut Section) -> Option<LogSettings> {
    let level = s.take_or("level", "info".to_owned());
    let level = level.and_then(|level| {
        let parsed = tracing_subscriber::EnvFilter::builder()
            .parse(&level)
            .map(|_| level)
            .map_err(|e| format!("not a valid log filter: {e}"));
        s.check("level", parsed)
    });
    let format = s.choice("format", LogFormat::Text);
    let directory = s.take::<PathBuf>("directory");
    let max_files = s.bounded("max_files", 14, 1..=3650);
    Some(LogSettings {
        level: level?,
        format: format?,
        directory,
        max_files: max_files?,
    })
}

fn retry_settings(s: &mut Section) -> Option<RetryPolicy> {
    let d = RetryPolicy::default();
    let max_attempts = s.bounded("max_attempts", i64::from(d.max_attempts), 1..=100);
    let base_delay = s.duration("base_delay", d.base_delay);
    let max_delay = s.duration("max_delay", d.max_delay);
    let max_elapsed = s.duration("max_elapsed", d.max_elapsed);
    if let (Some(b), Some(m)) = (base_delay, max_delay)
        && b > m
    {
        s.problem("base_delay", "must not be longer than retry.max_delay");
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

fn schedule_settings(s: &mut Section) -> Option<ScheduleSettings> {
    let cron = s.take::<String>("cron");
    let tz = s.take::<String>("timezone");
    let run_on_start = s.take_or("run_on_start", false);
    let catch_up = s.take_or("catch_up", true);
    let schedule = match (cron, tz) {
        (None, None) => Some(CronSchedule::default_weekly()),
        (cron, tz) => {
            let cron = cron.unwrap_or_else(|| DEFAULT_CRON.to_owned());
            let tz = tz.unwrap_or_else(|| "UTC".to_owned());
            match CronSchedule::parse(&cron, &tz) {
                Ok(c) => Some(c),
                Err(e @ ScheduleError::Zone(_)) => s.check("timezone", Err(e.to_string())),
                Err(e) => s.check("cron", Err(e.to_string())),
            }
        }
    };
    Some(ScheduleSettings {
        cron: schedule?,
        run_on_start: run_on_start?,
        catch_up: catch_up?,
    })
}

/// `host:port`, or just a port (then on loopback).
fn server_settings(s: &mut Section) -> Option<Option<SocketAddr>> {
    let Some(raw) = s.take::<String>("listen") else {
        return s.defaulted("listen", None);
    };
    s.check("listen", listen_address(&raw).map(Some))
}

/// `server.listen`'s value as an address: `host:port`, or just a port (then on loopback).
pub(super) fn listen_address(raw: &str) -> Result<SocketAddr, String> {
    let raw = raw.trim();
    raw.parse::<SocketAddr>()
        .ok()
        .or_else(|| {
            raw.trim_start_matches(':')
                .parse::<u16>()
                .ok()
                .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
        })
        .ok_or_else(|| format!("\"{raw}\" is not an address like \"127.0.0.1:9184\" or a port"))
}

/// `[[notify.webhook]]`: zero or more webhooks, each a URL (a secret, inline or in a file) and
/// a format.
fn notify_settings(s: &mut Section) -> Option<Vec<Webhook>> {
    let tables = s.tables("webhook")?;
    let mut webhooks = Vec::with_capacity(tables.len());
    let mut ok = true;
    for (i, mut w) in tables.into_iter().enumerate() {
        let url = w.secret("url", webhook_url);
        let format = w.choice("format", WebhookFormat::Slack);
        s.absorb(w);
        match (url, format) {
            (Some(url), Some(format)) => webhooks.push(Webhook {
                index: i + 1,
                url,
                format,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(webhooks)
}

/// `[mapping]`: Pendo field = attribute path, or = `{ path = "...", type = "..." }`. Its keys
/// are field names, so it is read here rather than as a [`Section`]. Absent or empty, it maps
/// nothing ([`combine`] decides whether that may be).
fn mapping_settings(
    value: Option<Value>,
    problems: &mut Vec<Problem>,
) -> Option<Vec<FieldMapping>> {
    let mut push = |key: String, message: String| problems.push(Problem { key, message });
    let table = match value.map(|v| v.kind) {
        None => return Some(Vec::new()),
        Some(ValueKind::Table(t)) => t,
        Some(_) => {
            push("mapping".into(), "must be a table".into());
            return None;
        }
    };
    let mut fields = Vec::with_capacity(table.len());
    let mut ok = true;
    for (field, value) in table {
        let key = format!("mapping.{field}");
        match field_mapping(&field, value) {
            Ok((path, ty)) => fields.push(FieldMapping { field, path, ty }),
            Err(errors) => {
                ok = false;
                for (sub, message) in errors {
                    push(format!("{key}{sub}"), message);
                }
            }
        }
    }
    ok.then_some(fields)
}

/// The mapping: `[mapping]`'s fields and `sync.value_keys` (each `name` maps `profile.name`
/// to the Pendo field `name`, as text, like the action card's "Value Keys"). A field named
/// twice is refused. No field at all is valid only when the run creates missing visitors:
/// then it makes sure every user exists in Pendo; otherwise a run would change nothing.
fn combine(
    mut fields: Vec<FieldMapping>,
    sync: &SyncSettings,
    problems: &mut Vec<Problem>,
) -> Option<Mapping> {
    let from_mapping = fields.len();
    let mut push = |message: String| {
        problems.push(Problem {
            key: "sync.value_keys".into(),
            message,
        })
    };
    let mut ok = true;
    for name in &sync.value_keys {
        let path = check_field_name(name).and_then(|()| {
            AttributePath::parse(&format!("profile.{name}")).map_err(|e| e.to_string())
        });
        let path = match path {
            Ok(path) => path,
            Err(message) => {
                push(message);
                ok = false;
                continue;
            }
        };
        if let Some(i) = fields.iter().position(|f| f.field == *name) {
            push(if i < from_mapping {
                format!("\"{name}\" is also a field in [mapping]: name each Pendo field once")
            } else {
                format!("\"{name}\" is listed twice")
            });
            ok = false;
            continue;
        }
        fields.push(FieldMapping {
            field: name.clone(),
            path,
            ty: ValueType::Text,
        });
    }
    if fields.is_empty() && !sync.create_missing_visitors && ok {
        problems.push(Problem {
            key: "mapping".into(),
            message: "is required unless sync.create_missing_visitors = true: with no Pendo \
                      field to set, a run would change nothing in Pendo. Map fields here (or \
                      list them in sync.value_keys), or set create_missing_visitors = true to \
                      make sure every Okta user exists as a Pendo visitor"
                .into(),
        });
        return None;
    }
    ok.then(|| Mapping::new(fields))
}

/// One `[mapping]` entry; its problems each with the part of the key below the field (`""`,
/// `".path"`, `".type"`, ...). An unknown key does not stop the reading, a wrong path or type
/// does.
fn field_mapping(
    field: &str,
    value: Value,
) -> Result<(AttributePath, ValueType), Vec<(String, String)>> {
    let mut errors = Vec::new();
    if let Err(message) = check_field_name(field) {
        errors.push((String::new(), message));
        return Err(errors);
    }
    let (path, ty) = match value.kind {
        ValueKind::String(path) => (path, ValueType::Text),
        ValueKind::Table(mut t) => {
            let path = t.remove("path").map(|v| v.kind);
            let ty = t.remove("type").map(|v| v.kind);
            for extra in t.keys() {
                let message = "unknown key (a mapping takes `path` and `type`)";
                errors.push((format!(".{extra}"), message.to_owned()));
            }
            let Some(ValueKind::String(path)) = path else {
                errors.push((".path".into(), "is required and must be a string".into()));
                return Err(errors);
            };
            let ty = match ty {
                None => Ok(ValueType::Text),
                Some(ValueKind::String(t)) => choose(&t),
                Some(_) => Err("must be a string".to_owned()),
            };
            match ty {
                Ok(ty) => (path, ty),
                Err(message) => {
                    errors.push((".type".into(), message));
                    return Err(errors);
                }
            }
        }
        _ => {
            let message = "must be an attribute path string or { path = \"...\", type = \"...\" }";
            errors.push((String::new(), message.to_owned()));
            return Err(errors);
        }
    };
    match AttributePath::parse(&path) {
        Ok(path) if errors.is_empty() => Ok((path, ty)),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.push((String::new(), e.to_string()));
            Err(errors)
        }
    }
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
