//! `explain USER`: one user, read from Okta now, and what a run would make of it: per mapped
//! field the Okta path, the raw value, the coerced value and what would be sent (or why not);
//! its visitor ID; whether the next run would push it (the values hash runs compute against the
//! hash the state holds, and the plan of the next run); and the run that last pushed it.
//! It only reads: nothing is pushed, no lock is taken, the state is opened read-only.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::config::{Settings, UserScope};
use crate::mapping::{AttributePath, OnNull, Record, Unsendable, ValueType, coerce};
use crate::metrics::Metrics;
use crate::okta::{OktaClient, OktaError};
use crate::runner::{self, ClientError};
use crate::state::{State, StateError, SyncPoint};

/// How many users a visitor-ID search asks Okta for: enough to list a few when several match.
const SEARCH_LIMIT: u32 = 20;
/// The longest raw or coerced value shown in the text table (`--json` has them whole).
const MAX_CELL: usize = 40;

/// Why `explain` could not explain.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(transparent)]
    Clients(#[from] ClientError),
    #[error(transparent)]
    Okta(#[from] OktaError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("Okta has no user \"{user}\": {tried}")]
    NotFound { user: String, tried: String },
    #[error(
        "{} Okta users have \"{user}\" at {key} (Okta's search ignores case): {}{}; explain one \
         of them by its Okta user id",
        ids.len(),
        ids.join(", "),
        if *more { ", and more" } else { "" }
    )]
    Several {
        user: String,
        key: String,
        ids: Vec<String>,
        more: bool,
    },
}

/// Everything `explain` says about one user (`--json` prints it as is; README, "Explaining
/// one user").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The USER argument.
    pub user: String,
    /// `id_or_login`, or `visitor_id` when it was found by searching the visitor ID key.
    pub found_by: &'static str,
    pub okta_id: Option<String>,
    pub okta_status: Option<String>,
    pub last_updated: Option<String>,
    pub visitor_id_key: String,
    /// None: the user has none, and a run skips it.
    pub visitor_id: Option<String>,
    /// Whether a run would send a record for this user.
    pub sendable: bool,
    pub not_sendable_because: Option<String>,
    pub fields: Vec<FieldExplanation>,
    /// The hash of the values a run would send (hex), as runs compute it.
    pub values_hash: Option<String>,
    /// The hash the state holds for this visitor ID: what was last pushed successfully.
    pub stored_hash: Option<String>,
    /// `unchanged`, `changed`, `never_pushed` or `not_sendable`.
    pub push_state: &'static str,
    pub next_run: NextRun,
    pub last_pushed: Option<LastPush>,
    /// What else bears on it (the user's status, the scope).
    pub notes: Vec<String>,
}

/// One mapped field of the user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldExplanation {
    /// The Pendo field.
    pub field: String,
    /// The Okta attribute path.
    pub path: String,
    /// The mapping's type.
    #[serde(rename = "type")]
    pub ty: &'static str,
    /// Whether the attribute is in the user object at all (null counts as present).
    pub present: bool,
    /// The value as Okta wrote it (null when absent or null).
    pub raw: Value,
    /// The value the type makes of it (null when there is none, or it cannot be read).
    pub coerced: Value,
    /// `send`, `clear` (null is sent), `leave_out` (nothing is sent) or `refused` (the value
    /// does not fit the type: the user is not sent).
    pub outcome: &'static str,
    /// What is sent for the field, with `send` and `clear` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent: Option<Value>,
    /// Why, when it is not simply sent as read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What the next run would do, as its plan is now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NextRun {
    /// `full` or `incremental`.
    pub mode: &'static str,
    pub why: String,
    pub would_push: bool,
    pub reason: String,
}

/// The run that last pushed this visitor successfully.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastPush {
    /// None when its record is no longer kept.
    pub run_id: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub status: Option<&'static str>,
}

/// Reads `user` (an Okta user id, a login, or a visitor ID) from Okta and explains it.
pub async fn explain(settings: &Settings, user: &str) -> Result<Explanation, ExplainError> {
    let clients = runner::clients(settings, Arc::new(Metrics::new()))?;
    let (okta_user, found_by) = find(&clients.okta, settings, user).await?;
    let state = State::open_read_only(&settings.state.path)?;
    Ok(describe(
        settings,
        user,
        &okta_user,
        found_by,
        state.as_ref(),
        Utc::now(),
    )?)
}

/// The user by id or login, else by visitor ID when the key is a profile attribute Okta can
/// search.
async fn find(
    okta: &OktaClient,
    settings: &Settings,
    user: &str,
) -> Result<(Value, &'static str), ExplainError> {
    // `me` would be the token's own administrator, not a user of that name.
    if user != "me"
        && let Some(found) = okta.user(user).await?
    {
        return Ok((found, "id_or_login"));
    }
    let key = &settings.sync.visitor_id_key;
    let Some(attribute) = profile_attribute(key) else {
        return Err(ExplainError::NotFound {
            user: user.to_owned(),
            tried: format!(
                "no user has that id or login, and sync.visitor_id_key ({key}) is not a profile \
                 attribute Okta can search, so it was not looked up as a visitor ID"
            ),
        });
    };
    let (found, more) = okta.search_users(attribute, user, SEARCH_LIMIT).await?;
    // Okta compares ignoring case; a visitor ID is exact. Exact matches first, when any.
    let exact: Vec<&Value> = found
        .iter()
        .filter(|u| visitor_text(key.lookup(u)).as_deref() == Some(user))
        .collect();
    let matches: Vec<&Value> = if exact.is_empty() {
        found.iter().collect()
    } else {
        exact
    };
    match matches.as_slice() {
        [] => Err(ExplainError::NotFound {
            user: user.to_owned(),
            tried: format!("no user has that id or login, nor that visitor ID ({key})"),
        }),
        [one] => {
            // The search reads only what runs read: fetch the user whole, as by id.
            let id = one.get("id").and_then(Value::as_str);
            let whole = match id {
                Some(id) => okta.user(id).await?,
                None => None,
            };
            Ok((whole.unwrap_or_else(|| (*one).clone()), "visitor_id"))
        }
        several => Err(ExplainError::Several {
            user: user.to_owned(),
            key: key.to_string(),
            ids: several
                .iter()
                .map(|u| {
                    u.get("id")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_owned()
                })
                .collect(),
            more,
        }),
    }
}

/// `attr` of a `profile.attr` key: what Okta's search can look up.
fn profile_attribute(key: &AttributePath) -> Option<&str> {
    let (first, rest) = key.as_str().split_once('.')?;
    (first == "profile" && !rest.contains('.')).then_some(rest)
}

/// A visitor ID as runs read it: a non-empty string, or a number as written.
fn visitor_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The explanation of `okta_user` against the settings and the state (none: no state yet).
pub fn describe(
    settings: &Settings,
    user: &str,
    okta_user: &Value,
    found_by: &'static str,
    state: Option<&State>,
    now: DateTime<Utc>,
) -> Result<Explanation, StateError> {
    let sync = &settings.sync;
    let mapping = &settings.mapping;
    let text = |path: &str| {
        okta_user
            .get(path)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let fields = mapping
        .fields()
        .iter()
        .map(|f| field(&f.field, &f.path, f.ty, okta_user, sync.on_null))
        .collect();
    let mapped = mapping.map_user(okta_user, &sync.visitor_id_key, sync.on_null);
    let (visitor_id, record, not_sendable_because) = match mapped {
        Ok(record) => (Some(record.visitor_id.clone()), Some(record), None),
        Err(Unsendable::NoVisitorId) => (
            None,
            None,
            Some(format!(
                "no visitor ID: {} is {}; a run skips this user",
                sync.visitor_id_key,
                what_is(sync.visitor_id_key.lookup(okta_user))
            )),
        ),
        Err(Unsendable::BadValue {
            visitor_id,
            message,
        }) => (
            Some(visitor_id),
            None,
            Some(format!(
                "{message}; a run skips this user and lists it in its errors"
            )),
        ),
    };
    let values_hash = record.as_ref().map(Record::values_hash);
    let (stored, mark, point) = match (state, &visitor_id) {
        (Some(st), Some(id)) => (st.visitor_hash(id)?, st.visitor_run(id)?, st.sync_point()?),
        (Some(st), None) => (None, None, st.sync_point()?),
        (None, _) => (None, None, SyncPoint::default()),
    };
    let last_pushed = match (mark, state) {
        (Some(mark), Some(st)) => {
            let run = st.run_marked(mark)?;
            DateTime::from_timestamp_millis(mark).map(|started_at| LastPush {
                run_id: run.as_ref().map(|r| r.id),
                started_at: run.as_ref().map_or(started_at, |r| r.started_at),
                status: run.map(|r| r.status.as_str()),
            })
        }
        _ => None,
    };
    let push_state = match (values_hash, stored) {
        (None, _) => "not_sendable",
        (Some(_), None) => "never_pushed",
        (Some(h), Some(s)) if h == s => "unchanged",
        (Some(_), Some(_)) => "changed",
    };
    let plan = crate::sync::plan(settings, &point, false, now);
    let status = text("status");
    let last_updated = text("lastUpdated");
    let deprovisioned = status.as_deref() == Some("DEPROVISIONED");
    let next_run = next_run(
        &plan,
        push_state,
        last_updated.as_deref(),
        deprovisioned && settings.okta.scope == UserScope::All,
    );
    let mut notes = Vec::new();
    if deprovisioned && settings.okta.scope == UserScope::All {
        notes.push(
            "the user is DEPROVISIONED: Okta leaves deprovisioned users out of the list runs \
             read (okta.filter or okta.search can include them)"
                .to_owned(),
        );
    }
    match &settings.okta.scope {
        UserScope::All => {}
        UserScope::Filter(_) | UserScope::Search(_) => notes.push(
            "explain reads the user whatever okta.filter or okta.search says: check that the \
             user is in it"
                .to_owned(),
        ),
        UserScope::Groups(_) => notes.push(
            "explain reads the user whatever its groups: runs read only the members of \
             okta.group_ids"
                .to_owned(),
        ),
    }
    Ok(Explanation {
        user: user.to_owned(),
        found_by,
        okta_id: text("id"),
        okta_status: status,
        last_updated,
        visitor_id_key: sync.visitor_id_key.to_string(),
        visitor_id,
        sendable: record.is_some(),
        not_sendable_because,
        fields,
        values_hash: values_hash.map(|h| format!("{h:016x}")),
        stored_hash: stored.map(|h| format!("{h:016x}")),
        push_state,
        next_run,
        last_pushed,
        notes,
    })
}

/// One field: what Okta has, what the type makes of it, what is sent.
fn field(
    name: &str,
    path: &AttributePath,
    ty: ValueType,
    user: &Value,
    on_null: OnNull,
) -> FieldExplanation {
    let raw = path.lookup(user);
    let (coerced, outcome, sent, reason) = match coerce(raw, ty) {
        Ok(Some(v)) => (v.clone(), "send", Some(v), None),
        Ok(None) => {
            let what = what_is(raw);
            match on_null {
                OnNull::Skip => (
                    Value::Null,
                    "leave_out",
                    None,
                    Some(format!(
                        "{what}, and sync.on_null = \"skip\": Pendo keeps what it has"
                    )),
                ),
                OnNull::Clear => (
                    Value::Null,
                    "clear",
                    Some(Value::Null),
                    Some(format!(
                        "{what}, and sync.on_null = \"clear\": Pendo clears the field"
                    )),
                ),
            }
        }
        Err(why) => (
            Value::Null,
            "refused",
            None,
            Some(format!("{why}, so the user is not sent")),
        ),
    };
    FieldExplanation {
        field: name.to_owned(),
        path: path.to_string(),
        ty: ty.as_str(),
        present: raw.is_some(),
        raw: raw.cloned().unwrap_or(Value::Null),
        coerced,
        outcome,
        sent,
        reason,
    }
}

/// A value that gives nothing, in words.
fn what_is(v: Option<&Value>) -> String {
    match v {
        None => "absent".to_owned(),
        Some(Value::Null) => "null".to_owned(),
        Some(Value::String(s)) if s.trim().is_empty() => "an empty string".to_owned(),
        Some(Value::String(_)) => "a string".to_owned(),
        Some(Value::Number(_)) => "a number".to_owned(),
        Some(Value::Bool(_)) => "a boolean".to_owned(),
        Some(Value::Array(_)) => "a list".to_owned(),
        Some(Value::Object(_)) => "an object".to_owned(),
    }
}

/// Whether the next run, as planned now, would push the user, and why.
fn next_run(
    plan: &crate::sync::Plan,
    push_state: &str,
    last_updated: Option<&str>,
    unlisted: bool,
) -> NextRun {
    let mode = if plan.is_full() {
        "full"
    } else {
        "incremental"
    };
    let (would_push, reason) = if push_state == "not_sendable" {
        (false, "the user cannot be sent".to_owned())
    } else if unlisted {
        (
            false,
            "runs do not read the user (DEPROVISIONED)".to_owned(),
        )
    } else if let Some(since) = plan.incremental_since {
        let updated = last_updated
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        match (push_state, updated) {
            ("unchanged", _) => (
                false,
                "unchanged: the next incremental run would not push it".to_owned(),
            ),
            (_, Some(t)) if t <= since => (
                false,
                format!(
                    "{}, but its lastUpdated ({}) is not after the run's start point: the next \
                     incremental run does not read it; the next full run would push it",
                    words(push_state),
                    crate::sync::okta_time(t)
                ),
            ),
            _ => (
                true,
                format!(
                    "{}: the next incremental run would push it",
                    words(push_state)
                ),
            ),
        }
    } else {
        (
            true,
            format!(
                "{}: the next run is full, and a full run pushes every user it reads",
                words(push_state)
            ),
        )
    };
    NextRun {
        mode,
        why: plan.why.clone(),
        would_push,
        reason,
    }
}

fn words(push_state: &str) -> &'static str {
    match push_state {
        "unchanged" => "unchanged since the last push",
        "changed" => "changed since the last push",
        _ => "never pushed",
    }
}

/// The text form: the user, an aligned table of its fields, then the verdict.
pub fn write_text(out: &mut impl std::io::Write, e: &Explanation) -> std::io::Result<()> {
    let found = match e.found_by {
        "visitor_id" => format!("found by its visitor ID ({})", e.visitor_id_key),
        _ => "found by Okta id or login".to_owned(),
    };
    writeln!(out, "user         {} ({found})", e.user)?;
    writeln!(
        out,
        "okta         {}, status {}, lastUpdated {}",
        e.okta_id.as_deref().unwrap_or("(no id)"),
        e.okta_status.as_deref().unwrap_or("(none)"),
        e.last_updated.as_deref().unwrap_or("(none)")
    )?;
    match &e.visitor_id {
        Some(id) => writeln!(out, "visitor ID   {id} ({})", e.visitor_id_key)?,
        None => writeln!(out, "visitor ID   none ({}): skipped", e.visitor_id_key)?,
    }
    writeln!(out)?;
    let rows: Vec<[String; 6]> = e
        .fields
        .iter()
        .map(|f| {
            let why = f.reason.as_deref().unwrap_or_default();
            let sent = match (f.outcome, &f.sent) {
                ("send", Some(v)) => cell(v),
                ("clear", _) => format!("null: {why}"),
                ("leave_out", _) => format!("nothing: {why}"),
                _ => format!("refused: {why}"),
            };
            [
                f.field.clone(),
                f.path.clone(),
                f.ty.to_owned(),
                if f.present {
                    cell(&f.raw)
                } else {
                    "(absent)".to_owned()
                },
                if f.coerced.is_null() {
                    "-".to_owned()
                } else {
                    cell(&f.coerced)
                },
                sent,
            ]
        })
        .collect();
    let head = ["FIELD", "PATH", "TYPE", "RAW (OKTA)", "COERCED", "SENT"];
    let mut widths = head.map(|h| h.chars().count());
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s
    };
    writeln!(out, "{}", line(head))?;
    for row in &rows {
        writeln!(out, "{}", line(row.each_ref().map(String::as_str)))?;
    }
    writeln!(out)?;
    match &e.not_sendable_because {
        None => writeln!(out, "record       would be sent")?,
        Some(why) => writeln!(out, "record       not sent: {why}")?,
    }
    if let Some(h) = &e.values_hash {
        let stored = e.stored_hash.as_deref().unwrap_or("none");
        writeln!(out, "hash         {h} (stored: {stored})")?;
    }
    writeln!(
        out,
        "next run     {} ({}): {}",
        e.next_run.mode,
        e.next_run.why,
        if e.next_run.would_push {
            "would push it"
        } else {
            "would not push it"
        }
    )?;
    writeln!(out, "             {}", e.next_run.reason)?;
    match &e.last_pushed {
        None => writeln!(out, "last push    none recorded")?,
        Some(LastPush {
            run_id: Some(id),
            started_at,
            status,
        }) => writeln!(
            out,
            "last push    run {id} (started {}, {})",
            started_at.format("%Y-%m-%d %H:%M:%S UTC"),
            status.unwrap_or("?")
        )?,
        Some(LastPush { started_at, .. }) => writeln!(
            out,
            "last push    a run started {} (its record is no longer kept)",
            started_at.format("%Y-%m-%d %H:%M:%S UTC")
        )?,
    }
    for note in &e.notes {
        writeln!(out, "note         {note}")?;
    }
    Ok(())
}

/// A value as JSON text, cut to [`MAX_CELL`] characters.
fn cell(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() <= MAX_CELL {
        s
    } else {
        let cut: String = s.chars().take(MAX_CELL - 1).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_profile_attribute_is_searched() {
        let key = |s: &str| AttributePath::parse(s).unwrap();
        assert_eq!(profile_attribute(&key("profile.pendoId")), Some("pendoId"));
        assert_eq!(profile_attribute(&key("profile.a.b")), None);
        assert_eq!(profile_attribute(&key("id")), None);
        assert_eq!(profile_attribute(&key("credentials.x")), None);
    }

    #[test]
    fn long_values_are_cut_in_the_table_only() {
        let long = Value::String("x".repeat(100));
        let shown = cell(&long);
        assert_eq!(shown.chars().count(), MAX_CELL);
        assert!(shown.ends_with('…'));
        assert_eq!(cell(&Value::String("ok".into())), "\"ok\"");
        let n: Value = serde_json::from_str("123456789012345678901234567890.10").unwrap();
        assert_eq!(
            cell(&n),
            "123456789012345678901234567890.10",
            "numbers as Okta wrote them"
        );
    }
}
