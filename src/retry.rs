//! The one retry policy both clients use: exponential back-off with full jitter, a cap on the
//! number of attempts, and a log line per retry that says why.

use std::future::Future;
use std::time::Duration;

/// How often and how patiently a request is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first one included.
    pub max_attempts: u32,
    /// The first back-off ceiling; it doubles with each retry.
    pub base_delay: Duration,
    /// The largest back-off ceiling.
    pub max_delay: Duration,
    /// The longest one request may take, its retries and waits included.
    pub max_elapsed: Duration,
    /// The longest a rate-limit reset is waited for at once.
    pub max_rate_limit_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(600),
            max_rate_limit_wait: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The back-off before retry number `retry` (1 for the first retry): a uniformly random
    /// duration between zero and `min(max_delay, base_delay * 2^(retry-1))` ("full jitter").
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)));
        let ceiling = exp.min(self.max_delay);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// What one try of a request came to.
pub enum Attempt<T, E> {
    /// Finished, for better or worse: return this.
    Done(Result<T, E>),
    /// A transient failure: try again after the policy's back-off. It uses up one attempt.
    Retry { error: E, reason: String },
    /// The server asked to wait (a rate limit's reset, `Retry-After`): try again after `wait`
    /// (at most `max_rate_limit_wait`). It uses up an attempt only when `counts` (a rate limit
    /// is a queue, not a failure); `max_elapsed` bounds it either way.
    Wait {
        error: E,
        wait: Duration,
        reason: String,
        counts: bool,
    },
}

impl<T, E: std::fmt::Display> Attempt<T, E> {
    /// A transient failure whose reason, in the retry's log line, is the error itself.
    pub fn retry(error: E) -> Self {
        Attempt::Retry {
            reason: error.to_string(),
            error,
        }
    }
}

/// Runs `attempt` until it is done or the policy's attempts are used up; then the last error.
/// `on_retry` is called before each retry (for metrics).
pub async fn with_retry<T, E, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    on_retry: impl Fn(),
    mut attempt: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T, E>>,
{
    let started = tokio::time::Instant::now();
    let mut tries = 0;
    loop {
        let (error, wait, reason, counts) = match attempt().await {
            Attempt::Done(result) => return result,
            Attempt::Retry { error, reason } => (error, None, reason, true),
            Attempt::Wait {
                error,
                wait,
                reason,
                counts,
            } => (
                error,
                Some(wait.min(policy.max_rate_limit_wait)),
                reason,
                counts,
            ),
        };
        if counts {
            tries += 1;
            if tries >= policy.max_attempts {
                tracing::warn!(
                    target: "okta_pendo_sync::retry",
                    request = what,
                    attempts = tries,
                    "giving up: {reason}"
                );
                return Err(error);
            }
        }
        let wait = wait.unwrap_or_else(|| policy.backoff(tries));
        let elapsed = started.elapsed();
        if elapsed.saturating_add(wait) > policy.max_elapsed {
            tracing::warn!(
                target: "okta_pendo_sync::retry",
                request = what,
                elapsed_ms = elapsed.as_millis() as u64,
                "giving up: {reason}; waiting {:.1} s more would pass retry.max_elapsed",
                wait.as_secs_f64()
            );
            return Err(error);
        }
        tracing::warn!(
            target: "okta_pendo_sync::retry",
            request = what,
            retry = tries,
            wait_ms = wait.as_millis() as u64,
            "retrying in {:.1} s: {reason}",
            wait.as_secs_f64()
        );
        on_retry();
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_ceiling() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        for retry in 1..20 {
            let ceiling = Duration::from_millis(100 * 2u64.pow(retry - 1)).min(p.max_delay);
            for _ in 0..50 {
                assert!(p.backoff(retry) <= ceiling);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stops_after_max_attempts_with_last_error() {
        let p = RetryPolicy::default();
        let mut n = 0;
        let r: Result<(), u32> = with_retry(
            &p,
            "t",
            || (),
            || {
                n += 1;
                let k = n;
                async move {
                    Attempt::Retry {
                        error: k,
                        reason: "flaky".into(),
                    }
                }
            },
        )
        .await;
        assert_eq!(r, Err(5));
        assert_eq!(n, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn stops_when_the_time_budget_is_spent() {
        let p = RetryPolicy {
            max_attempts: 2,
            max_elapsed: Duration::from_secs(20),
            ..RetryPolicy::default()
        };
        let start = tokio::time::Instant::now();
        let mut n = 0;
        let r: Result<(), u32> = with_retry(
            &p,
            "t",
            || (),
            || {
                n += 1;
                let k = n;
                async move {
                    Attempt::Wait {
                        error: k,
                        wait: Duration::from_secs(7),
                        reason: "429".into(),
                        counts: false,
                    }
                }
            },
        )
        .await;
        // Waits use no attempt (2 allowed), but a third wait would end at 21 s > 20 s.
        assert_eq!(r, Err(3));
        assert_eq!(start.elapsed(), Duration::from_secs(14));
    }

    #[tokio::test(start_paused = true)]
    async fn honours_the_wait_it_is_given() {
        let p = RetryPolicy::default();
        let start = tokio::time::Instant::now();
        let mut n = 0;
        let r: Result<u32, ()> = with_retry(
            &p,
            "t",
            || (),
            || {
                n += 1;
                let k = n;
                async move {
                    if k < 3 {
                        Attempt::Wait {
                            error: (),
                            wait: Duration::from_secs(7),
                            reason: "429".into(),
                            counts: false,
                        }
                    } else {
                        Attempt::Done(Ok(k))
                    }
                }
            },
        )
        .await;
        assert_eq!(r, Ok(3));
        assert_eq!(start.elapsed(), Duration::from_secs(14));
    }
}
