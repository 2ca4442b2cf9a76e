//! Whether a run reads everything or only what changed, and why: the fingerprint of the
//! settings that decide what is read and sent, the attributes `lastUpdated` does not follow,
//! and Okta's timestamp form for the `lastUpdated` filter.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::{Settings, UserScope};
use crate::mapping::AttributePath;
use crate::state::SyncPoint;

/// How much earlier than the last successful run's first Okta answer an incremental read
/// begins, for changes Okta records a little late.
pub const OVERLAP: Duration = Duration::from_secs(5 * 60);

/// A full run is due when the last one is older than `full_sync_every` less this slack, so that
/// a weekly schedule with the 7-day default makes every run full.
pub const FULL_SLACK: Duration = Duration::from_secs(3600);

/// Whether a run reads everything or only what changed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub incremental_since: Option<DateTime<Utc>>,
    pub why: String,
    pub fingerprint: String,
}

impl Plan {
    pub fn is_full(&self) -> bool {
        self.incremental_since.is_none()
    }
}

/// A fingerprint of everything that decides which users are read and what is sent: when it
/// changes, a run is full.
pub fn fingerprint(settings: &Settings) -> String {
    let scope = match &settings.okta.scope {
        UserScope::All => "all".to_owned(),
        UserScope::Filter(f) => format!("filter:{f}"),
        UserScope::Search(q) => format!("search:{q}"),
        UserScope::Groups(ids) => format!("groups:{}", ids.join(",")),
    };
    let mut text = format!(
        "v2|{}|{:?}|{}|{}|{}|{}|{}",
        settings.sync.visitor_id_key,
        settings.sync.on_null,
        settings.sync.create_missing_visitors,
        settings.pendo.base_url,
        settings.pendo.metadata_group.as_str(),
        settings.okta.org_url,
        scope,
    );
    for f in settings.mapping.fields() {
        text.push_str(&format!("|{}={}:{}", f.field, f.path, f.ty.as_str()));
    }
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

/// Top-level user attributes whose changes Okta records in `lastUpdated` (with everything under
/// `profile`): the user's identity and status.
const TRACKED_BY_LAST_UPDATED: &[&str] = &[
    "id",
    "status",
    "created",
    "activated",
    "statusChanged",
    "lastUpdated",
    "transitioningToStatus",
    "type",
];

/// The first attribute a run reads (a mapped path or the visitor ID key) whose changes
/// `lastUpdated` may not show: Okta moves `lastUpdated` for profile and status changes, not
/// for a sign-in (`lastLogin`) or anything else outside the profile (`passwordChanged`,
/// `credentials`, ...). An incremental run, which asks for users updated since the last run,
/// would never see such a change, so runs that read one are full.
pub fn untracked_attribute(settings: &Settings) -> Option<&AttributePath> {
    settings.paths_read().find(|path| {
        let mut segs = path.as_str().split('.');
        let first = segs.next().unwrap_or_default();
        let in_profile = first == "profile" && segs.next().is_some();
        !in_profile && !TRACKED_BY_LAST_UPDATED.contains(&first)
    })
}

/// Decides whether a run is full or incremental (README, "Full and incremental runs").
pub fn plan(settings: &Settings, point: &SyncPoint, force_full: bool, now: DateTime<Utc>) -> Plan {
    let fingerprint = fingerprint(settings);
    let every = settings.sync.full_sync_every.saturating_sub(FULL_SLACK);
    let full = |why: &str| Plan {
        incremental_since: None,
        why: why.to_owned(),
        fingerprint: fingerprint.clone(),
    };
    let Some(cursor) = point.cursor else {
        return full("the first run");
    };
    if point.fingerprint.as_deref() != Some(fingerprint.as_str()) {
        return full("the mapping, the visitor settings or the user scope changed");
    }
    if point.unsettled.is_some() {
        return full(
            "a run under other settings began pushing and did not succeed: Pendo may hold its \
             values for users an incremental run would not read",
        );
    }
    if point.pushing.is_some() {
        return full(
            "the last run began pushing and never recorded its end (killed?): Pendo may hold \
             values the state does not know",
        );
    }
    if force_full {
        return full("--full");
    }
    if let Some(path) = untracked_attribute(settings) {
        return Plan {
            incremental_since: None,
            why: format!(
                "{path} is mapped, and Okta does not move lastUpdated when only it changes, so \
                 every run is full"
            ),
            fingerprint,
        };
    }
    let since = TimeDelta::from_std(OVERLAP)
        .ok()
        .and_then(|overlap| cursor.checked_sub_signed(overlap));
    let every = TimeDelta::from_std(every).unwrap_or(TimeDelta::MAX);
    match (point.last_full, since) {
        (Some(last), Some(since)) if now - last < every => Plan {
            incremental_since: Some(since),
            why: format!("users changed since {}", okta_time(since)),
            fingerprint,
        },
        _ => full("the last full run is older than sync.full_sync_every"),
    }
}

/// Okta's timestamp form: `2026-11-28T06:00:00.000Z`.
pub fn okta_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: &str, mapping: &str) -> Settings {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            format!(
                "[okta]\norg_url = \"https://acme.okta.com\"\napi_token = \"t\"\n{extra}\n\
                 [pendo]\nintegration_key = \"k\"\n[mapping]\n{mapping}\n"
            ),
        )
        .unwrap();
        crate::config::load_with_env(&path, Some(Default::default()))
            .unwrap()
            .settings
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn each_reason_for_a_full_run_and_the_incremental_start() {
        let title = "title = \"profile.title\"";
        let s = settings("", title);
        let now = at("2026-12-02T06:00:00Z");
        let cursor = at("2026-12-01T06:00:00Z");
        let settled = SyncPoint {
            cursor: Some(cursor),
            fingerprint: Some(fingerprint(&s)),
            last_full: Some(at("2026-11-30T06:00:00Z")),
            unsettled: None,
            pushing: None,
            field_shares: Vec::new(),
        };
        let other = settings("filter = 'status eq \"ACTIVE\"'", title);
        let with_login = settings("", "last_login = \"lastLogin\"");
        let cases: Vec<(&str, &Settings, SyncPoint, bool, Option<&str>)> = vec![
            (
                "first run",
                &s,
                SyncPoint::default(),
                false,
                Some("the first run"),
            ),
            (
                "scope changed",
                &other,
                settled.clone(),
                false,
                Some("user scope"),
            ),
            (
                "unsettled",
                &s,
                SyncPoint {
                    unsettled: Some("else".into()),
                    ..settled.clone()
                },
                false,
                Some("did not succeed"),
            ),
            (
                "a run killed while pushing",
                &s,
                SyncPoint {
                    pushing: Some(1_700_000_000_000),
                    ..settled.clone()
                },
                false,
                Some("never recorded its end"),
            ),
            ("--full", &s, settled.clone(), true, Some("--full")),
            (
                "last full run too old",
                &s,
                SyncPoint {
                    last_full: Some(at("2026-11-20T06:00:00Z")),
                    ..settled.clone()
                },
                false,
                Some("full_sync_every"),
            ),
            ("incremental", &s, settled.clone(), false, None),
        ];
        for (name, settings, point, force_full, full_because) in cases {
            let p = plan(settings, &point, force_full, now);
            match full_because {
                Some(why) => {
                    assert!(p.is_full(), "{name}: {p:?}");
                    assert!(p.why.contains(why), "{name}: {}", p.why);
                }
                None => {
                    assert_eq!(p.incremental_since, Some(cursor - OVERLAP), "{name}");
                    assert!(p.why.contains("2026-12-01T05:55:00.000Z"), "{}", p.why);
                }
            }
        }
        // lastLogin is mapped: full every time, once settled under that mapping too.
        let point = SyncPoint {
            fingerprint: Some(fingerprint(&with_login)),
            ..settled
        };
        let p = plan(&with_login, &point, false, now);
        assert!(p.is_full() && p.why.contains("lastLogin"), "{}", p.why);
    }

    #[test]
    fn the_fingerprint_covers_the_scope_and_the_mapping_but_not_the_rest() {
        let base = settings("", "title = \"profile.title\"");
        let same = settings("page_size = 50", "title = \"profile.title\"");
        assert_eq!(fingerprint(&base), fingerprint(&same));
        for other in [
            settings("group_ids = [\"00g1\"]", "title = \"profile.title\""),
            settings(
                "search = 'profile.department eq \"X\"'",
                "title = \"profile.title\"",
            ),
            settings("", "title = \"profile.department\""),
            settings(
                "",
                "title = { path = \"profile.title\", type = \"number\" }",
            ),
        ] {
            assert_ne!(fingerprint(&base), fingerprint(&other));
        }
    }

    #[test]
    fn attributes_outside_the_profile_and_status_are_untracked() {
        for (path, untracked) in [
            ("profile.title", false),
            ("status", false),
            ("statusChanged", false),
            ("type.id", false),
            ("lastLogin", true),
            ("passwordChanged", true),
            ("credentials.provider.type", true),
        ] {
            let s = settings("", &format!("f = \"{path}\""));
            assert_eq!(untracked_attribute(&s).is_some(), untracked, "{path}");
        }
    }

    #[test]
    fn okta_time_has_milliseconds_and_zulu() {
        assert_eq!(
            okta_time(at("2026-11-28T06:00:00.25+01:00")),
            "2026-11-28T05:00:00.250Z"
        );
    }
}
