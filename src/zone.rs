//! IANA time zones as chrono zones (which croner reads), from the copy of the Time Zone
//! Database bundled in the binary by jiff: the zone's rules are the binary's, whatever the host
//! has in /usr/share/zoneinfo.
//!
//! chrono-tz, used before, compiles every zone into tables of transitions, each naming its
//! abbreviation through a pointer: 2 MB of the binary (half of it relocations). jiff's copy is
//! the compiled TZif files (200 KB), read when a zone is looked up.

use std::fmt;
use std::sync::OnceLock;

use chrono::{FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone};
use jiff::Timestamp;
use jiff::tz::{AmbiguousOffset, TimeZoneDatabase};

/// An IANA time zone.
#[derive(Clone, PartialEq)]
pub struct Zone(jiff::tz::TimeZone);

/// The bundled database, never the host's.
fn database() -> &'static TimeZoneDatabase {
    static DB: OnceLock<TimeZoneDatabase> = OnceLock::new();
    DB.get_or_init(TimeZoneDatabase::bundled)
}

impl Zone {
    /// UTC.
    pub fn utc() -> Self {
        Zone(jiff::tz::TimeZone::UTC)
    }

    /// The zone named `name` (ASCII case aside: "europe/paris" is Europe/Paris), if the
    /// database has it.
    pub fn named(name: &str) -> Option<Self> {
        let tz = database().get(name).ok()?;
        // jiff's placeholder for a zone it does not know is no IANA zone.
        (!tz.is_unknown()).then_some(Zone(tz))
    }

    /// The zone's IANA name, as the database spells it.
    pub fn name(&self) -> &str {
        self.0.iana_name().unwrap_or("UTC")
    }

    fn offset_at(&self, at: Timestamp) -> ZoneOffset {
        ZoneOffset {
            zone: self.clone(),
            fixed: fixed(self.0.to_offset(at)),
            at,
        }
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The offset a [`Zone`] has at an instant; it shows as the zone's abbreviation then ("CET",
/// "EDT", "+03"), which `%Z` prints.
#[derive(Clone)]
pub struct ZoneOffset {
    zone: Zone,
    fixed: FixedOffset,
    /// An instant with this offset, to find its abbreviation.
    at: Timestamp,
}

impl Offset for ZoneOffset {
    fn fix(&self) -> FixedOffset {
        self.fixed
    }
}

impl fmt::Display for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.zone.0.to_offset_info(self.at).abbreviation())
    }
}

impl fmt::Debug for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn fixed(offset: jiff::tz::Offset) -> FixedOffset {
    FixedOffset::east_opt(offset.seconds()).unwrap_or_else(|| chrono::Utc.fix())
}

/// The instant `seconds` after the epoch, within jiff's range (years -9999 to 9999).
fn timestamp(seconds: i64) -> Timestamp {
    let seconds = seconds.clamp(Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
    Timestamp::from_second(seconds).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl TimeZone for Zone {
    type Offset = ZoneOffset;

    fn from_offset(offset: &ZoneOffset) -> Self {
        offset.zone.clone()
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> ZoneOffset {
        self.offset_from_utc_datetime(&utc.and_time(NaiveTime::MIN))
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> ZoneOffset {
        // Transitions fall on whole seconds: the second an instant is in has its offset.
        self.offset_at(timestamp(utc.and_utc().timestamp()))
    }

    fn offset_from_local_date(&self, local: &NaiveDate) -> LocalResult<ZoneOffset> {
        // As chrono-tz: the day's offset is its midnight's, else its last second's, and of
        // two, the earlier instant's.
        let day = |t: NaiveTime| self.offset_from_local_datetime(&local.and_time(t));
        let last = NaiveTime::from_hms_opt(23, 59, 59).unwrap_or(NaiveTime::MIN);
        match (day(NaiveTime::MIN), day(last)) {
            (single @ LocalResult::Single(_), _) | (_, single @ LocalResult::Single(_)) => single,
            (LocalResult::Ambiguous(first, _), _) | (_, LocalResult::Ambiguous(first, _)) => {
                LocalResult::Single(first)
            }
            (LocalResult::None, LocalResult::None) => LocalResult::None,
        }
    }

    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> LocalResult<ZoneOffset> {
        let wall = local.and_utc().timestamp();
        let Some(civil) = civil(local) else {
            // Beyond jiff's years: the offset at its nearest instant.
            return LocalResult::Single(self.offset_at(timestamp(wall)));
        };
        let with = |o: jiff::tz::Offset| ZoneOffset {
            zone: self.clone(),
            fixed: fixed(o),
            at: timestamp(wall - i64::from(o.seconds())),
        };
        match self.0.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => LocalResult::Single(with(offset)),
            AmbiguousOffset::Gap { .. } => LocalResult::None,
            // The earlier instant first: the one still on the offset before the change.
            AmbiguousOffset::Fold { before, after } => {
                LocalResult::Ambiguous(with(before), with(after))
            }
        }
    }
}

/// `local` as a jiff civil time, if it is within jiff's years.
fn civil(local: &NaiveDateTime) -> Option<jiff::civil::DateTime> {
    use chrono::{Datelike, Timelike};
    let nanos = local.nanosecond().min(999_999_999);
    jiff::civil::DateTime::new(
        i16::try_from(local.year()).ok()?,
        i8::try_from(local.month()).ok()?,
        i8::try_from(local.day()).ok()?,
        i8::try_from(local.hour()).ok()?,
        i8::try_from(local.minute()).ok()?,
        i8::try_from(local.second()).ok()?,
        i32::try_from(nanos).ok()?,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn names_in_any_case_and_unknown_ones() {
        for (given, name) in [
            ("Europe/Paris", "Europe/Paris"),
            ("europe/paris", "Europe/Paris"),
            ("AMERICA/NEW_YORK", "America/New_York"),
            ("etc/gmt+5", "Etc/GMT+5"),
            ("US/Eastern", "US/Eastern"),
            ("utc", "UTC"),
            ("UTC", "UTC"),
        ] {
            assert_eq!(Zone::named(given).unwrap().name(), name, "{given}");
        }
        for unknown in [
            "Mars/Olympus",
            "Europe/Pariss",
            "Etc/Unknown",
            "",
            "Europe/",
        ] {
            assert!(Zone::named(unknown).is_none(), "{unknown}");
        }
        assert_eq!(Zone::utc().to_string(), "UTC");
    }

    #[test]
    fn offsets_and_abbreviations_follow_the_rules() {
        let berlin = Zone::named("Europe/Berlin").unwrap();
        let show = |t: &str| {
            utc(t)
                .with_timezone(&berlin)
                .format("%Y-%m-%d %H:%M:%S %Z %:z")
                .to_string()
        };
        assert_eq!(
            show("2026-01-15T12:00:00Z"),
            "2026-01-15 13:00:00 CET +01:00"
        );
        assert_eq!(
            show("2026-07-15T12:00:00Z"),
            "2026-07-15 14:00:00 CEST +02:00"
        );
        // The change itself: 01:00 UTC on the last Sunday of March.
        assert_eq!(
            show("2026-03-29T00:59:59Z"),
            "2026-03-29 01:59:59 CET +01:00"
        );
        assert_eq!(
            show("2026-03-29T01:00:00Z"),
            "2026-03-29 03:00:00 CEST +02:00"
        );
        // Far past the last transition the file lists: its rule.
        assert_eq!(
            show("2391-07-15T12:00:00Z"),
            "2391-07-15 14:00:00 CEST +02:00"
        );
        let kolkata = Zone::named("Asia/Kolkata").unwrap();
        let t = utc("2026-07-15T12:00:00Z").with_timezone(&kolkata);
        assert_eq!(t.format("%H:%M %Z").to_string(), "17:30 IST");
        let nowhere = Zone::named("Asia/Dubai").unwrap();
        let t = utc("2026-07-15T12:00:00Z").with_timezone(&nowhere);
        assert_eq!(t.format("%H:%M %Z").to_string(), "16:00 +04");
    }

    #[test]
    fn local_times_in_a_gap_or_a_fold() {
        let ny = Zone::named("America/New_York").unwrap();
        let local = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
        // 02:30 on 2026-03-08 does not happen; 01:30 on 2026-11-01 happens twice.
        assert!(matches!(
            ny.from_local_datetime(&local("2026-03-08 02:30:00")),
            LocalResult::None
        ));
        let LocalResult::Ambiguous(first, second) =
            ny.from_local_datetime(&local("2026-11-01 01:30:00"))
        else {
            panic!("not ambiguous")
        };
        assert_eq!(first.with_timezone(&Utc), utc("2026-11-01T05:30:00Z"));
        assert_eq!(second.with_timezone(&Utc), utc("2026-11-01T06:30:00Z"));
        assert_eq!(first.format("%Z").to_string(), "EDT");
        assert_eq!(second.format("%Z").to_string(), "EST");
        let LocalResult::Single(one) = ny.from_local_datetime(&local("2026-11-01 03:30:00")) else {
            panic!("not single")
        };
        assert_eq!(one.with_timezone(&Utc), utc("2026-11-01T08:30:00Z"));
    }
}
