//! The guard against a broken read or mapping: before a full run pushes anything, the first
//! `guard.sample` records are held back and judged against what the last successful full run
//! sent. A renamed Okta attribute or a typo in a path shows as a field that suddenly has almost
//! no values; a wrong visitor ID key, with `create_missing_visitors`, as a sample of visitor IDs
//! never seen before. Either holds the run, pushing nothing (README, "The guard").

use crate::config::Settings;
use crate::mapping::{AttributePath, FieldMapping, Record};
use crate::report::count;
use crate::state::SyncPoint;

/// A field the last full run filled for at least this share of its records...
const WAS_FILLED: f64 = 0.5;
/// ...that has a value for less than this share of the sample holds the run.
const NOW_EMPTY: f64 = 0.1;
/// Over this share of new visitor IDs in the sample holds a run that creates visitors.
const MOSTLY_NEW: f64 = 0.5;

/// A full run's sample, with what the guard counts of it.
#[derive(Debug)]
pub struct Guard {
    size: usize,
    sample: Vec<(Record, u64)>,
    /// Per mapped field (in the mapping's order), how many sampled records have a value.
    with_value: Vec<u64>,
    /// Sampled visitor IDs with no stored hash (never pushed, or dropped since).
    new_visitors: u64,
    /// Visitors with a stored hash when the run began.
    known_visitors: u64,
    /// The last successful full run's share of records with a value, per field name.
    shares: Vec<(String, f64)>,
    create: bool,
}

impl Guard {
    pub fn new(size: usize, point: &SyncPoint, known_visitors: u64, settings: &Settings) -> Self {
        Guard {
            size: size.max(1),
            sample: Vec::with_capacity(size.clamp(1, 4096)),
            with_value: vec![0; settings.mapping.fields().len()],
            new_visitors: 0,
            known_visitors,
            shares: point.field_shares.clone(),
            create: settings.sync.create_missing_visitors,
        }
    }

    /// Whether [`add`](Self::add) needs to know if a visitor was pushed before.
    pub fn needs_known(&self) -> bool {
        self.create
    }

    /// Holds a record back; true once the sample is complete.
    pub fn add(&mut self, record: Record, hash: u64, known: bool) -> bool {
        record.count_values(&mut self.with_value);
        if !known {
            self.new_visitors += 1;
        }
        self.sample.push((record, hash));
        self.sample.len() >= self.size
    }

    /// Why the run must be held, if it must.
    pub fn verdict(
        &self,
        fields: &[FieldMapping],
        visitor_id_key: &AttributePath,
    ) -> Option<String> {
        let n = self.sample.len();
        if n == 0 {
            return None;
        }
        let pct = |share: f64| format!("{:.0}%", share * 100.0);
        for (f, with) in fields.iter().zip(&self.with_value) {
            let Some((_, before)) = self.shares.iter().find(|(name, _)| *name == f.field) else {
                continue;
            };
            let now = *with as f64 / n as f64;
            if *before >= WAS_FILLED && now < NOW_EMPTY {
                return Some(format!(
                    "the field \"{}\" (from {}) had a value in {} of the last full run's records \
                     but in {} of this run's first {} (a renamed Okta attribute or a typo in the \
                     path?)",
                    f.field,
                    f.path,
                    pct(*before),
                    pct(now),
                    count(n as u64)
                ));
            }
        }
        let new = self.new_visitors as f64 / n as f64;
        if self.create && self.known_visitors >= n as u64 && new > MOSTLY_NEW {
            return Some(format!(
                "{} of this run's first {} visitor IDs (from {visitor_id_key}) were never pushed \
                 before, while the state knows {} visitors: with create_missing_visitors, a \
                 wrong sync.visitor_id_key would create a Pendo visitor for every user",
                pct(new),
                count(n as u64),
                count(self.known_visitors)
            ));
        }
        None
    }

    /// The held records, in the order they were read.
    pub fn into_sample(self) -> Vec<(Record, u64)> {
        self.sample
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{Mapping, OnNull, ValueType};
    use serde_json::json;

    fn mapping() -> Mapping {
        let f = |name: &str, path: &str| FieldMapping {
            field: name.into(),
            path: AttributePath::parse(path).unwrap(),
            ty: ValueType::Text,
        };
        Mapping::new(vec![
            f("department", "profile.department"),
            f("title", "profile.title"),
        ])
    }

    fn fields() -> Vec<FieldMapping> {
        mapping().fields().to_vec()
    }

    fn guard(size: usize, shares: &[(&str, f64)], known: u64, create: bool) -> Guard {
        Guard {
            size,
            sample: Vec::new(),
            with_value: vec![0; 2],
            new_visitors: 0,
            known_visitors: known,
            shares: shares.iter().map(|(n, s)| (n.to_string(), *s)).collect(),
            create,
        }
    }

    fn record(i: usize, department: bool, title: bool) -> Record {
        let v = |on: bool| if on { json!("x") } else { json!(null) };
        let user = json!({"profile": {
            "login": format!("user.{i}@company.com"),
            "department": v(department),
            "title": v(title),
        }});
        mapping()
            .map_user(&user, &key(), OnNull::Skip)
            .expect("a sendable user")
    }

    fn key() -> AttributePath {
        AttributePath::parse("profile.login").unwrap()
    }

    #[test]
    fn a_field_that_empties_holds_the_run() {
        let mut g = guard(100, &[("department", 0.9), ("title", 0.8)], 0, false);
        for i in 0..100 {
            let full = g.add(record(i, true, i < 5), 0, true);
            assert_eq!(full, i == 99);
        }
        let why = g.verdict(&fields(), &key()).unwrap();
        assert!(why.contains("\"title\""), "{why}");
        assert!(why.contains("profile.title"), "{why}");
        assert!(why.contains("80%") && why.contains("5%"), "{why}");
    }

    #[test]
    fn fields_that_were_rare_or_still_filled_pass() {
        // title was rare before (30%): its absence now is no sign of a broken path.
        let mut g = guard(50, &[("department", 0.9), ("title", 0.3)], 0, false);
        for i in 0..50 {
            g.add(record(i, i % 10 != 0, false), 0, true);
        }
        assert_eq!(g.verdict(&fields(), &key()), None);
        // A first full run has nothing to compare with.
        let mut g = guard(10, &[], 0, false);
        for i in 0..10 {
            g.add(record(i, false, false), 0, true);
        }
        assert_eq!(g.verdict(&fields(), &key()), None);
    }

    #[test]
    fn mostly_new_visitors_hold_a_run_that_creates_them() {
        let mut g = guard(10, &[], 5000, true);
        for i in 0..10 {
            g.add(record(i, true, true), 0, i < 3);
        }
        let why = g.verdict(&fields(), &key()).unwrap();
        assert!(
            why.contains("70%") && why.contains("profile.login"),
            "{why}"
        );
        assert!(why.contains("5,000"), "{why}");
        // Without create nothing is created: no hold.
        let mut g = guard(10, &[], 5000, false);
        for i in 0..10 {
            g.add(record(i, true, true), 0, false);
        }
        assert_eq!(g.verdict(&fields(), &key()), None);
        // A state that knows fewer visitors than the sample (a young org): no hold.
        let mut g = guard(10, &[], 9, true);
        for i in 0..10 {
            g.add(record(i, true, true), 0, false);
        }
        assert_eq!(g.verdict(&fields(), &key()), None);
    }

    #[test]
    fn an_empty_sample_holds_nothing() {
        let g = guard(10, &[("title", 1.0)], 100, true);
        assert_eq!(g.verdict(&fields(), &key()), None);
    }
}
