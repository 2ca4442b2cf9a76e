//! When the daemon runs: a cron expression in an IANA time zone, and the clock it is read
//! against.
//!
//! tokio-cron-scheduler, the crate the design started from, is not used: it wants 6 or 7
//! fields, ANDs day-of-month with day-of-week, freezes the time zone's UTC offset when a job is
//! created (so a daylight-saving change is missed until a restart), does not prevent
//! overlapping runs, and its shutdown does not wait for a running job. Each of those would need
//! a wrapper around it, at which point it is only a timer. Instead, the parser it is built on
//! (croner) computes each fire time afresh in the configured zone (chrono-tz), so every fire
//! follows the zone's rules on its own date, and the daemon loop (`daemon.rs`) waits for it
//! with tokio's timer, one fire at a time.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// The default: Mondays at 06:00.
pub const DEFAULT_CRON: &str = "0 0 6 * * Mon";

/// A validated schedule: a cron expression and the zone it is read in.
#[derive(Clone)]
pub struct CronSchedule {
    expr: String,
    cron: croner::Cron,
    tz: Tz,
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
        let tz = Tz::from_str(tz.trim())
            .or_else(|_| Tz::from_str_insensitive(tz.trim()))
            .map_err(|_| ScheduleError::Zone(tz.trim().to_owned()))?;
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
            tz: Tz::UTC,
        }
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn zone(&self) -> Tz {
        self.tz
    }

    /// The first fire strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The last fire at or before `t`.
    pub fn previous_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.tz), true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// `t` in the schedule's zone, for log lines.
    pub fn local(&self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.tz)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string()
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

/// The system clock.
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
    use chrono::TimeZone;

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
