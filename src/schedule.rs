//! When the daemon runs: a cron expression in an IANA time zone, and the clock it is read
//! against.
//!
//! tokio-cron-scheduler, the crate the design started from, is not used: it wants 6 or 7
//! fields, ANDs day-of-month with day-of-week, freezes the time zone's UTC offset when a job is
//! created (so a daylight-saving change is missed until a restart), does not prevent
//! overlapping runs, and its shutdown does not wait for a running job. Each of those would need
//! a wrapper around it, at which point it is only a timer. Instead, the parser it is built on
//! (croner) computes each fire time afresh in the configured zone (`zone.rs`), so every fire
//! follows the zone's rules on its own date, and the daemon loop (`daemon.rs`) waits for it
//! with tokio's timer, one fire at a time.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, LocalResult, TimeZone, Timelike, Utc};

use crate::zone::Zone;

/// The default: Mondays at 06:00.
pub const DEFAULT_CRON: &str = "0 0 6 * * Mon";

/// A validated schedule: a cron expression and the zone it is read in.
#[derive(Clone)]
pub struct CronSchedule {
    expr: String,
    cron: croner::Cron,
    tz: Zone,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?} in {})", self.expr, self.tz)
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.tz == other.tz
    }
}

impl CronSchedule {
    /// Parses a classic 5-field crontab line (`minute hour day-of-month month day-of-week`),
    /// a 6-field one with seconds first, or `@hourly`, `@daily`, `@weekly`, `@monthly`,
    /// `@yearly`/`@annually`, read in the IANA zone `tz`. A day-of-month and a day-of-week
    /// both restricted match either, as in cron.
    pub fn parse(expr: &str, tz: &str) -> Result<Self, ScheduleError> {
        let given = expr.trim();
        let tz = Zone::named(tz.trim()).ok_or_else(|| ScheduleError::Zone(tz.trim().to_owned()))?;
        let expr = match expr.trim() {
            e if e.eq_ignore_ascii_case("@midnight") => "@daily",
            e if e.eq_ignore_ascii_case("@annually") => "@yearly",
            e => e,
        };
        let fields = expr.split_whitespace().count();
        let bad = |why: String| ScheduleError::Cron {
            expr: given.to_owned(),
            why,
        };
        if expr.starts_with('@') {
            if fields != 1 {
                return Err(bad("a nickname like @weekly stands alone".into()));
            }
        } else if !(5..=6).contains(&fields) {
            return Err(bad(format!(
                "it has {fields} field{}; use 5 (minute hour day-of-month month day-of-week), \
                 6 (seconds first), or @hourly, @daily, @weekly, @monthly, @yearly",
                if fields == 1 { "" } else { "s" }
            )));
        }
        let cron = croner::Cron::from_str(expr).map_err(|e| bad(explain(&e)))?;
        // A pattern that never fires (31 February) is an error now, not a silent daemon later.
        let probe = Utc::now().with_timezone(&tz);
        cron.find_next_occurrence(&probe, false)
            .map_err(|e| bad(format!("it never fires ({})", explain(&e))))?;
        Ok(CronSchedule {
            expr: given.to_owned(),
            cron,
            tz,
        })
    }

    /// The default weekly schedule, Monday 06:00 UTC.
    pub fn default_weekly() -> Self {
        CronSchedule {
            expr: DEFAULT_CRON.to_owned(),
            cron: croner::Cron::from_str(DEFAULT_CRON).unwrap_or_else(|_| unreachable_cron()),
            tz: Zone::utc(),
        }
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn zone(&self) -> &Zone {
        &self.tz
    }

    /// The first fire strictly after `t`; never `t` or earlier, whatever croner answers.
    ///
    /// A wall-clock time that happens twice (the daylight-saving fall-back) fires once, at its
    /// first pass. croner reads a search start in the second pass as the same wall-clock time
    /// and answers a fire of the first pass, already gone: the search then starts again where
    /// the repetition ends, since nothing fires before that. An answer that is not a fire
    /// (croner can answer the end of a spring-forward gap on that day for a time before it) is
    /// searched past.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut from = t;
        let mut inclusive = false;
        for _ in 0..SEARCHES {
            let found = self
                .cron
                .find_next_occurrence(&from.with_timezone(&self.tz), inclusive)
                .ok()?
                .with_timezone(&Utc);
            if found <= t {
                from = self
                    .end_of_second_pass(from)
                    .unwrap_or_else(|| whole_second_after(from));
                inclusive = true;
            } else if self.is_fire(found) {
                return Some(found);
            } else {
                from = found;
                inclusive = false;
            }
        }
        None
    }

    /// The last fire at or before `t`; never later than `t`, whatever croner answers, and the
    /// one [`next_after`](Self::next_after) leads to (in a second pass, croner looks back
    /// from the wall-clock time and would miss the first pass's later fires).
    pub fn previous_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut from = t;
        let mut found = None;
        for _ in 0..SEARCHES {
            let f = self
                .cron
                .find_previous_occurrence(&from.with_timezone(&self.tz), true)
                .ok()?
                .with_timezone(&Utc);
            if f <= t && self.is_fire(f) {
                found = Some(f);
                break;
            }
            from = whole_second_before(from.min(f));
        }
        let mut last = found?;
        for _ in 0..WALK {
            match self.next_after(last) {
                Some(n) if n <= t => last = n,
                _ => break,
            }
        }
        Some(last)
    }

    /// Whether `x`, an answer of croner, is a fire: its wall-clock time matches, or it ends a
    /// spring-forward gap in which a matching wall-clock time was skipped.
    fn is_fire(&self, x: DateTime<Utc>) -> bool {
        let local = x.with_timezone(&self.tz);
        if self.cron.is_time_matching(&local).unwrap_or(false) {
            return true;
        }
        let at = local.naive_local();
        let before = (x - chrono::Duration::seconds(1))
            .with_timezone(&self.tz)
            .naive_local();
        if at - before <= chrono::Duration::seconds(1) {
            return false;
        }
        // A search on the bare wall-clock times (read as UTC, which has no gaps).
        self.cron
            .find_next_occurrence(&Utc.from_utc_datetime(&before), false)
            .is_ok_and(|m| m.naive_utc() < at)
    }

    /// Whether `t` is in the second pass of a repeated wall-clock time: its local time also
    /// names an earlier instant.
    fn in_second_pass(&self, t: DateTime<Utc>) -> bool {
        let local = t.with_timezone(&self.tz).naive_local();
        matches!(
            self.tz.from_local_datetime(&local),
            LocalResult::Ambiguous(first, _) if first.with_timezone(&Utc) < t
        )
    }

    /// When the repetition `t` is in ends (the first instant whose wall-clock time is new
    /// again), if `t` is in a second pass.
    fn end_of_second_pass(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Transitions fall on whole seconds, so a search on whole seconds lands on one.
        let start = t.with_nanosecond(0).unwrap_or(t);
        let local = start.with_timezone(&self.tz).naive_local();
        let LocalResult::Ambiguous(first, _) = self.tz.from_local_datetime(&local) else {
            return None;
        };
        let repeat = start - first.with_timezone(&Utc);
        // `start` is in the second pass and `start + repeat` past it: bisect between them.
        let (mut lo, mut hi) = (start, start + repeat);
        if repeat <= chrono::Duration::zero() || self.in_second_pass(hi) {
            return None;
        }
        while hi - lo > chrono::Duration::seconds(1) {
            let mid = lo + (hi - lo) / 2;
            let mid = mid.with_nanosecond(0).unwrap_or(mid);
            if self.in_second_pass(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(hi)
    }

    /// `t` in the schedule's zone, for log lines.
    pub fn local(&self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.tz)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string()
    }
}

/// How many times a search is repeated when croner's answer is not the fire asked for; a
/// repeated hour or a gap takes two.
const SEARCHES: usize = 8;

/// The most fires [`CronSchedule::previous_at_or_before`] steps forward over (a fire every
/// second through a repeated hour).
const WALK: usize = 4 * 3600;

/// The first whole second strictly after `t`.
fn whole_second_after(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t) + chrono::Duration::seconds(1)
}

/// The last whole second strictly before `t`.
fn whole_second_before(t: DateTime<Utc>) -> DateTime<Utc> {
    let floor = t.with_nanosecond(0).unwrap_or(t);
    if floor < t {
        floor
    } else {
        floor - chrono::Duration::seconds(1)
    }
}

/// Only reached if the constant above stopped parsing, which a unit test rules out.
#[cold]
fn unreachable_cron() -> croner::Cron {
    #[allow(clippy::unwrap_used)]
    croner::Cron::from_str("0 0 6 * * Mon").unwrap()
}

fn explain(e: &croner::errors::CronError) -> String {
    use croner::errors::CronError as E;
    match e {
        E::EmptyPattern => "it is empty".into(),
        E::InvalidPattern(why) | E::IllegalCharacters(why) => why.clone(),
        E::TimeSearchLimitExceeded | E::InvalidDate | E::InvalidTime => "no date matches it".into(),
        other => other.to_string(),
    }
}

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "\"{0}\" is not an IANA time zone name (like \"UTC\", \"Europe/Berlin\" or \"America/New_York\")"
    )]
    Zone(String),
    #[error("\"{expr}\" is not a schedule: {why}")]
    Cron { expr: String, why: String },
}

/// Wall-clock time, injectable so tests can move it.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A wall clock that moves with tokio's clock: under `tokio::time::pause()` it advances
/// exactly as far as the runtime's timers do, so a test can cross weeks in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    wall: DateTime<Utc>,
    at: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `wall` now.
    pub fn starting_at(wall: DateTime<Utc>) -> Self {
        TokioClock {
            wall,
            at: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.at.elapsed()).unwrap_or_default();
        self.wall + elapsed
    }
}

/// How long to sleep toward `target`: at most `max`, so that a wall clock that jumps (a
/// suspended machine, a clock set by NTP) is noticed within `max`.
pub fn sleep_slice(now: DateTime<Utc>, target: DateTime<Utc>, max: Duration) -> Duration {
    (target - now).to_std().unwrap_or_default().min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn fires(s: &CronSchedule, from: &str, n: usize) -> Vec<String> {
        let mut t = utc(from);
        (0..n)
            .map(|_| {
                t = s.next_after(t).unwrap();
                s.local(t)
            })
            .collect()
    }

    #[test]
    fn the_default_is_monday_six_utc() {
        let s = CronSchedule::default_weekly();
        assert_eq!(s, CronSchedule::parse(DEFAULT_CRON, "UTC").unwrap());
        // 2026-11-28 is a Saturday.
        assert_eq!(
            s.next_after(utc("2026-11-28T12:00:00Z")),
            Some(utc("2026-11-30T06:00:00Z"))
        );
    }

    #[test]
    fn five_and_six_fields_and_nicknames() {
        let five = CronSchedule::parse("30 6 * * 1-5", "UTC").unwrap();
        let six = CronSchedule::parse("0 30 6 * * Mon-Fri", "UTC").unwrap();
        let from = utc("2026-11-28T00:00:00Z");
        assert_eq!(five.next_after(from), Some(utc("2026-11-30T06:30:00Z")));
        assert_eq!(five.next_after(from), six.next_after(from));
        let midnight = CronSchedule::parse("@midnight", "utc").unwrap();
        assert_eq!(midnight.next_after(from), Some(utc("2026-11-29T00:00:00Z")));
        let weekly = CronSchedule::parse("@weekly", "UTC").unwrap();
        assert_eq!(weekly.next_after(from), Some(utc("2026-11-29T00:00:00Z")));
        let secs = CronSchedule::parse("*/15 * * * * *", "UTC").unwrap();
        assert_eq!(secs.next_after(from), Some(utc("2026-11-28T00:00:15Z")));
    }

    #[test]
    fn day_of_month_or_day_of_week_as_in_cron() {
        // The 13th, and every Friday (not only Fridays the 13th).
        let s = CronSchedule::parse("0 9 13 * Fri", "UTC").unwrap();
        let from = utc("2026-11-01T00:00:00Z");
        let got: Vec<_> = fires(&s, "2026-11-01T00:00:00Z", 4);
        assert_eq!(
            got,
            [
                "2026-11-06 09:00:00 UTC",
                "2026-11-13 09:00:00 UTC",
                "2026-11-20 09:00:00 UTC",
                "2026-11-27 09:00:00 UTC"
            ]
        );
        assert!(s.next_after(from).is_some());
    }

    #[test]
    fn bad_expressions_are_explained() {
        for (expr, words) in [
            ("0 6 * *", "it has 4 fields; use 5"),
            ("1 2 3 4 5 6 7", "it has 7 fields"),
            ("61 * * * *", "\"61 * * * *\" is not a schedule"),
            ("0 0 6 * * Funday", "is not a schedule"),
            ("0 0 30 2 *", "it never fires"),
            ("@fortnightly", "is not a schedule"),
        ] {
            let err = CronSchedule::parse(expr, "UTC").unwrap_err().to_string();
            assert!(err.contains(words), "{expr}: {err}");
        }
        let err = CronSchedule::parse("@daily", "Mars/Olympus").unwrap_err();
        assert_eq!(err, ScheduleError::Zone("Mars/Olympus".into()));
    }

    #[test]
    fn the_zone_is_trimmed_and_read_in_any_case() {
        // Which names are zones is zone.rs's (and its tests'); here, what parse hands it.
        let s = CronSchedule::parse("@daily", " AMERICA/NEW_YORK ").unwrap();
        assert_eq!(s.zone().name(), "America/New_York");
    }

    #[test]
    fn berlin_keeps_six_local_across_both_changes() {
        // Daily at 06:00 Europe/Berlin: CET (UTC+1) until 2026-03-29, CEST (UTC+2) until
        // 2026-10-25, CET again after.
        let s = CronSchedule::parse("0 6 * * *", "Europe/Berlin").unwrap();
        let mut t = utc("2026-03-27T12:00:00Z");
        let mut got = Vec::new();
        for _ in 0..4 {
            t = s.next_after(t).unwrap();
            got.push(t.to_rfc3339());
        }
        assert_eq!(
            got,
            [
                "2026-03-28T05:00:00+00:00",
                "2026-03-29T04:00:00+00:00",
                "2026-03-30T04:00:00+00:00",
                "2026-03-31T04:00:00+00:00"
            ]
        );
        let mut t = utc("2026-10-23T12:00:00Z");
        let mut got = Vec::new();
        for _ in 0..3 {
            t = s.next_after(t).unwrap();
            got.push(t.to_rfc3339());
        }
        assert_eq!(
            got,
            [
                "2026-10-24T04:00:00+00:00",
                "2026-10-25T05:00:00+00:00",
                "2026-10-26T05:00:00+00:00"
            ]
        );
    }

    #[test]
    fn new_york_in_and_out_of_the_gap() {
        // 02:30 does not exist on 2026-03-08 in New York (02:00 EST jumps to 03:00 EDT): the run
        // happens at the first valid time after the gap, 03:00 EDT, once.
        let s = CronSchedule::parse("30 2 * * *", "America/New_York").unwrap();
        assert_eq!(
            fires(&s, "2026-03-06T12:00:00Z", 3),
            [
                "2026-03-07 02:30:00 EST",
                "2026-03-08 03:00:00 EDT",
                "2026-03-09 02:30:00 EDT"
            ]
        );
        // 01:30 happens twice on 2026-11-01 (EDT, then EST): it runs once, at the first.
        let s = CronSchedule::parse("30 1 * * *", "America/New_York").unwrap();
        let got: Vec<_> = {
            let mut t = utc("2026-10-31T12:00:00Z");
            (0..3)
                .map(|_| {
                    t = s.next_after(t).unwrap();
                    t.to_rfc3339()
                })
                .collect()
        };
        assert_eq!(
            got,
            [
                "2026-11-01T05:30:00+00:00",
                "2026-11-02T06:30:00+00:00",
                "2026-11-03T06:30:00+00:00"
            ]
        );
    }

    #[test]
    fn a_search_from_the_second_pass_of_a_repeated_hour_is_not_answered_in_the_past() {
        // New York, 2026-11-01: 01:00-02:00 comes twice, EDT until 06:00Z, then EST. 06:10Z is
        // 01:10 EST, in the second pass; the 01:30 fire was at 05:30Z (01:30 EDT), once.
        let s = CronSchedule::parse("30 1 * * *", "America/New_York").unwrap();
        let t = utc("2026-11-01T06:10:00Z");
        assert_eq!(s.next_after(t), Some(utc("2026-11-02T06:30:00Z")));
        assert_eq!(
            s.previous_at_or_before(t),
            Some(utc("2026-11-01T05:30:00Z"))
        );
        // Every 10 minutes: nothing more in the repeated hour, then 02:00 EST.
        let s = CronSchedule::parse("*/10 * * * *", "America/New_York").unwrap();
        assert_eq!(s.next_after(t), Some(utc("2026-11-01T07:00:00Z")));
        assert_eq!(
            s.previous_at_or_before(t),
            Some(utc("2026-11-01T05:50:00Z"))
        );
        // Berlin, 2026-10-25: 02:00-03:00 comes twice, CEST until 01:00Z, then CET. 01:10Z is
        // 02:10 CET; the 02:30 fire was at 00:30Z (02:30 CEST).
        let s = CronSchedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let t = utc("2026-10-25T01:10:00Z");
        assert_eq!(s.next_after(t), Some(utc("2026-10-26T01:30:00Z")));
        assert_eq!(
            s.previous_at_or_before(t),
            Some(utc("2026-10-25T00:30:00Z"))
        );
        // A fraction of a second into the second pass changes nothing.
        let t = utc("2026-10-25T01:10:00.5Z");
        assert_eq!(s.next_after(t), Some(utc("2026-10-26T01:30:00Z")));
    }

    #[test]
    fn next_is_after_and_previous_at_or_before_through_both_changes() {
        // Every 5 minutes (and every 37 s) across each daylight-saving change of 2026 in both
        // zones, for schedules in, around and outside the changed hours.
        let windows = [
            ("America/New_York", "2026-11-01T04:00:00Z"),
            ("America/New_York", "2026-03-08T05:00:00Z"),
            ("Europe/Berlin", "2026-10-24T23:00:00Z"),
            ("Europe/Berlin", "2026-03-29T00:00:00Z"),
        ];
        let exprs = [
            "30 1 * * *",
            "30 2 * * *",
            "0 2 * * *",
            "*/10 * * * *",
            "*/20 * * * * *",
        ];
        for (zone, start) in windows {
            for expr in exprs {
                let s = CronSchedule::parse(expr, zone).unwrap();
                let start = utc(start);
                for step in [300, 37] {
                    for i in 0..(4 * 3600 / step) {
                        let t = start + chrono::Duration::seconds(i * step);
                        let next = s.next_after(t).unwrap();
                        let previous = s.previous_at_or_before(t).unwrap();
                        assert!(next > t, "{expr} in {zone} from {t}: next {next}");
                        assert!(
                            previous <= t,
                            "{expr} in {zone} at {t}: previous {previous}"
                        );
                        assert_eq!(
                            s.next_after(previous),
                            Some(next),
                            "{expr} in {zone} at {t}: a fire between {previous} and {next}"
                        );
                        let local = s.local(next);
                        if expr == "30 1 * * *" || expr == "30 2 * * *" {
                            assert!(
                                local.contains(" 01:30:00 ")
                                    || local.contains(" 02:30:00 ")
                                    || local.contains(" 03:00:00 "),
                                "{expr} in {zone} from {t}: {local}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_time_before_a_spring_forward_gap_does_not_fire_again_after_it() {
        // 2026-03-08 in New York: croner answers 03:00 EDT (the end of the gap) after the
        // 01:30 EST fire, although nothing was skipped.
        let s = CronSchedule::parse("30 1 * * *", "America/New_York").unwrap();
        assert_eq!(
            fires(&s, "2026-03-07T12:00:00Z", 3),
            [
                "2026-03-08 01:30:00 EST",
                "2026-03-09 01:30:00 EDT",
                "2026-03-10 01:30:00 EDT"
            ]
        );
        assert_eq!(
            s.previous_at_or_before(utc("2026-03-08T07:10:00Z")),
            Some(utc("2026-03-08T06:30:00Z"))
        );
        let s = CronSchedule::parse("@daily", "Europe/Berlin").unwrap();
        assert_eq!(
            fires(&s, "2026-03-28T12:00:00Z", 2),
            ["2026-03-29 00:00:00 CET", "2026-03-30 00:00:00 CEST"]
        );
        // A time in the gap still runs at its end, also as the previous fire.
        let s = CronSchedule::parse("30 2 * * *", "America/New_York").unwrap();
        assert_eq!(
            s.previous_at_or_before(utc("2026-03-08T07:10:00Z")),
            Some(utc("2026-03-08T07:00:00Z"))
        );
    }

    #[test]
    fn previous_fire_for_catch_up() {
        let s = CronSchedule::default_weekly();
        assert_eq!(
            s.previous_at_or_before(utc("2026-11-28T12:00:00Z")),
            Some(utc("2026-11-23T06:00:00Z"))
        );
        assert_eq!(
            s.previous_at_or_before(utc("2026-11-23T06:00:00Z")),
            Some(utc("2026-11-23T06:00:00Z"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let c = TokioClock::starting_at(start);
        tokio::time::sleep(Duration::from_secs(3600 * 24 * 7)).await;
        assert_eq!(c.now(), start + chrono::Duration::days(7));
    }
}
