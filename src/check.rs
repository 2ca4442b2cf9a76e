//! `check`: the config (offline) and its webhooks (validated, never sent to), then the Okta
//! credentials, each group the run reads, the Pendo key, and every mapped field against Pendo's
//! visitor schema, printed as a short table with a verdict.

use std::fmt::Write as _;

use serde_json::Value;

use crate::config::Settings;
use crate::mapping::{Mapping, ValueType};
use crate::okta::client::OktaError;
use crate::report::{RunRecord, Status};

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

impl Line {
    pub fn ok(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Line {
            what: what.into(),
            ok: true,
            detail: detail.into(),
        }
    }

    pub fn fail(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Line {
            what: what.into(),
            ok: false,
            detail: detail.into(),
        }
    }
}

/// The Pendo type a mapping's type needs.
fn pendo_type(ty: ValueType) -> &'static str {
    match ty {
        ValueType::Text => "string",
        ValueType::Number => "number",
        ValueType::Boolean => "boolean",
        ValueType::Date => "time",
    }
}

/// Checks each mapped field against Pendo's visitor schema (`GET
/// /api/v1/metadata/schema/visitor`): it must exist in `group`, not be deleted, and have the
/// type the mapping sends.
pub fn fields(mapping: &Mapping, group: &str, schema: &Value) -> Vec<Line> {
    let fields = schema.get(group).and_then(Value::as_object);
    mapping
        .fields()
        .iter()
        .map(|f| {
            let what = format!("field {}", f.field);
            let want = pendo_type(f.ty);
            let descriptor = fields
                .and_then(|g| g.get(&f.field))
                .filter(|d| !d.get("IsDeleted").and_then(Value::as_bool).unwrap_or(false));
            match descriptor {
                None => Line::fail(
                    what,
                    format!(
                        "{group}.{} does not exist in Pendo: add it under Settings > Data \
                         Mappings (type {want})",
                        f.field
                    ),
                ),
                Some(d) => match d.get("Type").and_then(Value::as_str) {
                    Some(t) if t == want => Line::ok(
                        what,
                        format!("{group}.{} is {t}, mapped as {}", f.field, f.ty.as_str()),
                    ),
                    Some(t) => Line::fail(
                        what,
                        format!(
                            "{group}.{} is {t} in Pendo, but the mapping sends {} ({want}): \
                             change its type in Pendo or the mapping's type",
                            f.field,
                            f.ty.as_str()
                        ),
                    ),
                    None => Line::ok(
                        what,
                        format!("{group}.{} exists (Pendo gives no type)", f.field),
                    ),
                },
            }
        })
        .collect()
}

/// How runs will go: whether they can be incremental, and what to do about a run the guard
/// held (a line that fails until a run gets through).
pub fn runs(settings: &Settings, last: Option<&RunRecord>) -> Vec<Line> {
    let mut lines = vec![match crate::sync::untracked_attribute(settings) {
        Some(path) => Line::ok(
            "runs",
            format!(
                "every run is full: {path} is read, and Okta does not move lastUpdated when only \
                 it changes, so an incremental run would miss such changes"
            ),
        ),
        None => Line::ok(
            "runs",
            format!(
                "incremental between full runs (a full run at least every {})",
                humantime::format_duration(settings.sync.full_sync_every)
            ),
        ),
    }];
    if let Some(r) = last.filter(|r| r.status == Status::Held) {
        lines.push(Line::fail(
            "last run",
            format!(
                "run {} was held by the guard, nothing pushed. {} Fix the config and run \
                 `okta-pendo-sync sync`, or run `okta-pendo-sync sync --force` if the change is \
                 intended",
                r.id, r.message
            ),
        ));
    }
    lines
}

/// One line per webhook of `[[notify.webhook]]`, named `notify.webhook[N]`: its URL passed the
/// loader's checks (https, or http to loopback), and is never shown; nothing is sent to it.
pub fn webhooks(webhooks: &[crate::config::Webhook]) -> Vec<Line> {
    webhooks
        .iter()
        .map(|w| {
            Line::ok(
                w.name(),
                format!(
                    "{}: the URL is valid (not shown; nothing sent: `notify --test` sends a \
                     test message)",
                    w.format.as_str()
                ),
            )
        })
        .collect()
}

/// The scope Okta wants for `GET /api/v1/groups/{id}/users`, besides `okta.users.read`.
const GROUPS_SCOPE: &str = "okta.groups.read";

/// The line for one group of `okta.group_ids`, from probing its members. `oauth_scopes` are
/// the scopes asked for with OAuth, `None` with an SSWS token.
pub fn group(id: &str, probe: Result<(), OktaError>, oauth_scopes: Option<&[String]>) -> Line {
    let what = format!("group {id}");
    let e = match probe {
        Ok(()) => return Line::ok(what, "its members can be read"),
        Err(e) => e,
    };
    let detail = match (&e, oauth_scopes) {
        (OktaError::Status { status: 404, .. }, _) => {
            "Okta has no group with this ID (HTTP 404): correct it in okta.group_ids (a group's \
             ID is the last part of its URL under Directory > Groups)"
                .to_owned()
        }
        (OktaError::Forbidden { .. }, Some(scopes))
            if !scopes.iter().any(|s| s == GROUPS_SCOPE) =>
        {
            format!(
                "Okta refused to list its members (HTTP 403): the access token lacks the \
                 {GROUPS_SCOPE} scope, as okta.oauth.scopes does not ask for it; add \
                 \"{GROUPS_SCOPE}\" to okta.oauth.scopes (or remove the setting) and grant it \
                 to the app under Okta API Scopes"
            )
        }
        (OktaError::Forbidden { .. }, Some(_)) => format!(
            "Okta refused to list its members (HTTP 403): {GROUPS_SCOPE} is granted, so the \
             app's admin role cannot read this group; assign it Read-only Administrator (or a \
             role whose resources include this group) under its Admin roles tab"
        ),
        _ => e.to_string(),
    };
    Line::fail(what, detail)
}

/// The table and its verdict.
pub fn render(lines: &[Line]) -> String {
    let width = lines.iter().map(|l| l.what.len()).max().unwrap_or(0);
    let mut out = String::new();
    for l in lines {
        let _ = writeln!(
            out,
            "{:<width$}  {:<4}  {}",
            l.what,
            if l.ok { "ok" } else { "FAIL" },
            l.detail
        );
    }
    let failed = lines.iter().filter(|l| !l.ok).count();
    if failed == 0 {
        out.push_str("verdict: all checks passed\n");
    } else {
        let _ = writeln!(
            out,
            "verdict: {failed} problem{} found",
            if failed == 1 { "" } else { "s" }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{AttributePath, FieldMapping};
    use serde_json::json;

    #[test]
    fn groups_say_what_to_change() {
        let scopes = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let forbidden = |oauth| OktaError::Forbidden {
            code: "E0000006".into(),
            what: "groups and their members",
            oauth,
        };
        let ok = group("00gA", Ok(()), None);
        assert!(ok.ok && ok.what == "group 00gA", "{ok:?}");

        let missing = group(
            "00gB",
            Err(OktaError::Status {
                status: 404,
                path: "/api/v1/groups/00gB/users".into(),
                summary: "Not found".into(),
            }),
            None,
        );
        assert!(!missing.ok && missing.what == "group 00gB");
        assert!(missing.detail.contains("HTTP 404") && missing.detail.contains("okta.group_ids"));

        let users_only = scopes(&["okta.users.read"]);
        let no_scope = group("00gC", Err(forbidden(true)), Some(&users_only));
        assert!(!no_scope.ok);
        assert!(
            no_scope.detail.contains("lacks the okta.groups.read scope")
                && no_scope.detail.contains("okta.oauth.scopes"),
            "{no_scope:?}"
        );

        let both = scopes(&["okta.users.read", "okta.groups.read"]);
        let no_role = group("00gD", Err(forbidden(true)), Some(&both));
        assert!(
            !no_role.ok && no_role.detail.contains("admin role"),
            "{no_role:?}"
        );

        let ssws = group("00gE", Err(forbidden(false)), None);
        assert!(
            !ssws.ok && ssws.detail.contains("Read-only Administrator"),
            "{ssws:?}"
        );
    }

    #[test]
    fn fields_against_the_schema() {
        let m = Mapping::new(
            [
                ("department", ValueType::Text),
                ("last_login", ValueType::Date),
                ("gone", ValueType::Text),
                ("nowhere", ValueType::Number),
                ("count", ValueType::Number),
            ]
            .into_iter()
            .map(|(f, ty)| FieldMapping {
                field: f.into(),
                path: AttributePath::parse("x").unwrap(),
                ty,
            })
            .collect(),
        );
        let schema = json!({
            "agent": {"department": {"Type": "string"}},
            "custom": {
                "department": {"Type": "string", "DisplayName": "Department", "IsDeleted": false},
                "last_login": {"Type": "string", "IsDeleted": false},
                "gone": {"Type": "string", "IsDeleted": true},
                "count": {"Type": "number", "Dirty": true}
            }
        });
        let lines = fields(&m, "custom", &schema);
        let by = |f: &str| {
            lines
                .iter()
                .find(|l| l.what == format!("field {f}"))
                .unwrap()
        };
        assert!(by("department").ok);
        assert!(by("count").ok);
        assert!(!by("last_login").ok && by("last_login").detail.contains("is string in Pendo"));
        assert!(!by("gone").ok && by("gone").detail.contains("does not exist"));
        assert!(!by("nowhere").ok);
        let text = render(&lines);
        assert!(text.ends_with("verdict: 3 problems found\n"), "{text}");
    }
}
