//! Pacing toward Okta's rate limit: this sync uses at most its share of the org's budget, so a
//! well-behaved server never has to answer 429 and the rest of the budget stays free for the
//! org's other clients.
//!
//! Every Okta response carries `X-Rate-Limit-Limit` (the window's budget, shared by every client
//! of the org), `X-Rate-Limit-Remaining` and `X-Rate-Limit-Reset` (UTC epoch seconds), plus a
//! `Date`. With share `s`, `ceil(limit × (1 − s))` requests are left to other clients. Requests go
//! as fast as their round trips allow while anything above that reserve remains; once it is
//! spent, the next request waits for the reset. Spreading requests over the window would add
//! nothing to the reserve (our use is capped either way) and would slow every run that needs
//! less than its share.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use reqwest::header::{DATE, HeaderMap};
use tokio::time::Instant;

/// What the last response said about the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit: u64,
    pub remaining: u64,
    /// End of the window, UTC epoch seconds.
    pub reset: u64,
    /// The server's clock when it answered (its `Date`), UTC epoch seconds.
    pub server_now: u64,
}

impl Budget {
    /// Reads the rate-limit headers; `None` when any is missing or unreadable.
    pub fn from_headers(headers: &HeaderMap) -> Option<Budget> {
        let num =
            |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
        let server_now = headers
            .get(DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .unwrap_or_else(SystemTime::now)
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        Some(Budget {
            limit: num("x-rate-limit-limit")?,
            remaining: num("x-rate-limit-remaining")?,
            reset: num("x-rate-limit-reset")?,
            server_now,
        })
    }

    /// The pause before the next request, `since` after this budget was observed: none while
    /// our share lasts; when it is spent, until the window resets.
    pub fn delay(&self, share: f64, since: Duration) -> Duration {
        if self.limit == 0 {
            // The concurrency kind of limit (limit and remaining 0) only comes with a 429,
            // which waits for the reset itself.
            return Duration::ZERO;
        }
        let reserve = (self.limit as f64 * (1.0 - share)).ceil() as u64;
        if self.remaining > reserve {
            return Duration::ZERO;
        }
        // `Date` has whole seconds: the server's clock was somewhere in
        // [server_now, server_now + 1), so the window has at most `secs` left.
        let secs = self.reset.saturating_sub(self.server_now);
        if secs > 3600 {
            // Okta's windows are a minute long: a reset this far off is a header in the wrong
            // unit (milliseconds?), not a reason to stop for hours. Ignore it; a 429 still waits.
            return Duration::ZERO;
        }
        // Wait for the latest the reset can be, plus a second for the header's rounding. A
        // window that has surely passed needs no wait.
        Duration::from_secs(secs)
            .checked_sub(since)
            .filter(|d| !d.is_zero())
            .map_or(Duration::ZERO, |left| {
                left.saturating_add(Duration::from_secs(1))
            })
    }
}

/// Paces one client's requests from the budget its responses report.
#[derive(Debug)]
pub struct Pacer {
    share: f64,
    /// The budget the last response reported, and when.
    last: Mutex<Option<(Budget, Instant)>>,
}

impl Pacer {
    /// `share`: the fraction of the org's budget this sync may use, in (0, 1].
    pub fn new(share: f64) -> Self {
        Pacer {
            share: share.clamp(f64::MIN_POSITIVE, 1.0),
            last: Mutex::new(None),
        }
    }

    fn last(&self) -> std::sync::MutexGuard<'_, Option<(Budget, Instant)>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes the budget a response reported.
    pub fn observe(&self, headers: &HeaderMap) {
        if let Some(budget) = Budget::from_headers(headers) {
            *self.last() = Some((budget, Instant::now()));
        }
    }

    /// How long to wait before the next request.
    pub fn delay(&self) -> Duration {
        match *self.last() {
            Some((budget, at)) => budget.delay(self.share, at.elapsed()),
            None => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: u64, remaining: u64, window: u64) -> Budget {
        Budget {
            limit,
            remaining,
            reset: 1_000 + window,
            server_now: 1_000,
        }
    }

    #[test]
    fn no_pause_while_the_share_lasts() {
        // 600 a minute, half ours: 300 kept for others. Anything above them: go at once, at
        // the start of the window and at its end.
        for (remaining, since) in [(599, 0), (400, 29), (301, 58)] {
            let d = budget(600, remaining, 60).delay(0.5, Duration::from_secs(since));
            assert_eq!(d, Duration::ZERO, "{remaining} left after {since} s");
        }
        // The whole budget ours: down to the last request.
        assert_eq!(
            budget(600, 1, 60).delay(1.0, Duration::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn a_run_within_its_share_never_waits() {
        // 100 pages against 600 a minute at share 0.5: each answer counts one down.
        for used in 1..=100 {
            assert_eq!(
                budget(600, 600 - used, 60).delay(0.5, Duration::ZERO),
                Duration::ZERO
            );
        }
    }

    #[test]
    fn waits_for_the_reset_when_the_share_is_spent() {
        let d = budget(600, 300, 60).delay(0.5, Duration::from_secs(20));
        assert_eq!(d, Duration::from_secs(41));
        let d = budget(600, 0, 10).delay(1.0, Duration::ZERO);
        assert_eq!(d, Duration::from_secs(11));
        // Even when the window's end is uncertain by a second.
        let d = budget(20, 10, 1).delay(0.5, Duration::ZERO);
        assert_eq!(d, Duration::from_secs(2));
    }

    #[test]
    fn no_pause_once_the_window_is_over_or_without_headers() {
        assert_eq!(
            budget(600, 0, 10).delay(0.5, Duration::from_secs(10)),
            Duration::ZERO
        );
        assert_eq!(budget(0, 0, 10).delay(0.5, Duration::ZERO), Duration::ZERO);
        assert_eq!(Budget::from_headers(&HeaderMap::new()), None);
        assert_eq!(Pacer::new(0.5).delay(), Duration::ZERO);
    }

    #[test]
    fn absurd_resets_are_ignored_not_obeyed() {
        let b = Budget {
            limit: 600,
            remaining: 0,
            reset: u64::MAX,
            server_now: 0,
        };
        assert_eq!(b.delay(0.5, Duration::ZERO), Duration::ZERO);
        let ms = budget(600, 0, 1_700_000_000_000);
        assert_eq!(ms.delay(0.5, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn reads_the_recorded_headers() {
        let mut h = HeaderMap::new();
        h.insert("date", "Thu, 27 Aug 2020 18:19:48 GMT".parse().unwrap());
        h.insert("x-rate-limit-limit", "600".parse().unwrap());
        h.insert("x-rate-limit-remaining", "574".parse().unwrap());
        h.insert("x-rate-limit-reset", "1598552424".parse().unwrap());
        let b = Budget::from_headers(&h).unwrap();
        assert_eq!(b.limit, 600);
        assert_eq!(b.remaining, 574);
        assert_eq!(b.reset - b.server_now, 36);
    }
}
