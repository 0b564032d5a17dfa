//! Retrying what failed: [`RetryPolicy`] (exponential backoff with full jitter, the backend's
//! `Retry-After` honoured, a time budget and an attempt limit) and [`Backoff`], one operation's
//! retry state.
//!
//! This module knows nothing of chests or delivery: the batched chest, the Pushgateway and
//! `chest export` all retry through it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::Duration;
//! use chest::{ErrorKind, RetryPolicy};
//!
//! let mut policy = RetryPolicy::new(Duration::from_millis(1), Duration::from_millis(10));
//! policy.max_attempts = Some(3);
//! let mut calls = 0;
//! let result: Result<(), &str> = policy
//!     .retry(
//!         || {
//!             calls += 1;
//!             std::future::ready(Err("connection refused"))
//!         },
//!         |_| ErrorKind::Retryable,
//!         |error, retry, delay| eprintln!("retry {retry} in {delay:?}: {error}"),
//!     )
//!     .await;
//! assert_eq!(result, Err("connection refused"));
//! assert_eq!(calls, 3);
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::ErrorKind;

/// How failed attempts are retried.
///
/// The wait before retry `n` (0 for the first) is the backend's `Retry-After` when it gave one
/// ([`ErrorKind::Throttled`], cut to [`max_retry_after`](Self::max_retry_after) if set), else a
/// uniformly random duration between zero and `initial_backoff × 2ⁿ`, capped at `max_backoff`
/// ("full jitter": many clients that failed together do not retry together). Retries end when
/// the error is [`ErrorKind::Permanent`], when [`max_attempts`](Self::max_attempts) attempts
/// were made, or when the next wait would end past the [`budget`](Self::budget), counted from
/// the first failure.
///
/// The default is the batched chest's: 100 ms, 10 s, a 30 s budget, no attempt limit, any
/// `Retry-After` honoured. Start from it or from [`new`](Self::new) and set the fields (the
/// struct is `#[non_exhaustive]`: later versions may add settings, with defaults).
///
/// ```
/// use std::time::Duration;
/// use chest::RetryPolicy;
///
/// let mut policy = RetryPolicy::new(Duration::from_millis(200), Duration::from_secs(30));
/// policy.max_attempts = Some(8);
/// policy.max_retry_after = Some(Duration::from_secs(60));
/// assert!(policy.delay(2, None) <= Duration::from_millis(800));
/// assert_eq!(policy.delay(2, Some(Duration::from_secs(3))), Duration::from_secs(3));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// The ceiling of the wait before the first retry; it doubles with each retry.
    pub initial_backoff: Duration,
    /// The cap on any wait computed from the backoff.
    pub max_backoff: Duration,
    /// How long retries go on, from the first failure: a retry whose wait would end past it is
    /// not made. `None`: no time limit.
    pub budget: Option<Duration>,
    /// The most attempts, the first included (so `Some(1)` never retries). `None`: no limit.
    pub max_attempts: Option<u32>,
    /// The longest `Retry-After` obeyed; a longer one is cut to this. `None`: obeyed whatever it
    /// is (the budget still applies).
    pub max_retry_after: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            budget: Some(Duration::from_secs(30)),
            max_attempts: None,
            max_retry_after: None,
        }
    }
}

impl RetryPolicy {
    /// A policy with this backoff, no budget, no attempt limit and any `Retry-After` obeyed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use chest::RetryPolicy;
    ///
    /// let policy = RetryPolicy::new(Duration::from_millis(250), Duration::from_secs(10));
    /// assert_eq!(policy.budget, None);
    /// assert_eq!(policy.max_attempts, None);
    /// ```
    pub fn new(initial_backoff: Duration, max_backoff: Duration) -> Self {
        RetryPolicy {
            initial_backoff,
            max_backoff,
            budget: None,
            max_attempts: None,
            max_retry_after: None,
        }
    }

    /// The wait before retry number `retry` (0-based): `retry_after` if the backend gave one
    /// (cut to [`max_retry_after`](Self::max_retry_after)), else a random duration up to
    /// `initial_backoff × 2^retry`, at most `max_backoff`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use chest::RetryPolicy;
    ///
    /// let policy = RetryPolicy::new(Duration::from_millis(100), Duration::from_secs(1));
    /// assert!(policy.delay(0, None) <= Duration::from_millis(100));
    /// assert!(policy.delay(30, None) <= Duration::from_secs(1));
    /// ```
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return self.max_retry_after.map_or(wait, |max| wait.min(max));
        }
        let ceiling = self
            .initial_backoff
            .saturating_mul(1u32 << retry.min(31))
            .min(self.max_backoff);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }

    /// The retry state of one operation under this policy.
    ///
    /// ```
    /// use chest::{ErrorKind, RetryPolicy};
    ///
    /// let mut policy = RetryPolicy::default();
    /// policy.max_attempts = Some(2);
    /// let mut backoff = policy.backoff();
    /// assert!(backoff.next_delay(ErrorKind::Retryable).is_some());
    /// assert_eq!(backoff.next_delay(ErrorKind::Retryable), None);
    /// ```
    pub fn backoff(&self) -> Backoff {
        Backoff {
            policy: *self,
            retries: 0,
            first_failure: None,
        }
    }

    /// Runs `attempt` until it succeeds or the policy says to stop, and returns its last result.
    ///
    /// After each failure `kind` says whether a retry can help (and when, for
    /// [`ErrorKind::Throttled`]); it sees every error, the last one included, so it may count
    /// them, and it may answer [`ErrorKind::Permanent`] to stop retrying (e.g. on a stop
    /// signal). Before each wait, `on_retry` gets the error, the retry's number (from 1) and the
    /// wait, to log them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use chest::{ChestError, ErrorKind, RetryPolicy};
    ///
    /// let policy = RetryPolicy::new(Duration::from_millis(1), Duration::from_millis(1));
    /// let mut failures = 0;
    /// let result = policy
    ///     .retry(
    ///         || {
    ///             failures += 1;
    ///             std::future::ready(if failures < 3 {
    ///                 Err(ChestError::retryable("db", "locked"))
    ///             } else {
    ///                 Ok(failures)
    ///             })
    ///         },
    ///         ChestError::kind,
    ///         |_, _, _| {},
    ///     )
    ///     .await;
    /// assert_eq!(result.unwrap(), 3);
    /// # }
    /// ```
    pub async fn retry<T, E, Fut>(
        &self,
        mut attempt: impl FnMut() -> Fut,
        mut kind: impl FnMut(&E) -> ErrorKind,
        mut on_retry: impl FnMut(&E, u32, Duration),
    ) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let mut backoff = self.backoff();
        loop {
            let error = match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let Some(delay) = backoff.next_delay(kind(&error)) else {
                return Err(error);
            };
            on_retry(&error, backoff.retries(), delay);
            tokio::time::sleep(delay).await;
        }
    }
}

/// One operation's retry state under a [`RetryPolicy`]: how many retries were made and when the
/// first failure was. From [`RetryPolicy::backoff`].
///
/// Use it where [`RetryPolicy::retry`] does not fit (the batched chest bisects failing batches
/// between retries): ask [`next_delay`](Self::next_delay) after each failure, and call
/// [`succeeded`](Self::succeeded) after a success that should restart the backoff.
///
/// ```
/// use std::time::Duration;
/// use chest::{ErrorKind, RetryPolicy};
///
/// let mut backoff = RetryPolicy::new(Duration::from_millis(100), Duration::from_secs(1)).backoff();
/// let throttled = ErrorKind::Throttled { retry_after: Duration::from_secs(2) };
/// assert_eq!(backoff.next_delay(throttled), Some(Duration::from_secs(2)));
/// assert_eq!(backoff.next_delay(ErrorKind::Permanent), None);
/// assert_eq!(backoff.retries(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    /// Retries granted since the start or the last success.
    retries: u32,
    /// When the first failure was: the budget runs from it, across successes.
    first_failure: Option<Instant>,
}

impl Backoff {
    /// After a failure of this kind: the wait before the next attempt, or `None` to give up (a
    /// permanent error, the attempts spent, or a wait that would end past the budget). A
    /// `Some` counts as a retry.
    ///
    /// ```
    /// use std::time::Duration;
    /// use chest::{ErrorKind, RetryPolicy};
    ///
    /// let mut policy = RetryPolicy::default();
    /// policy.budget = Some(Duration::from_secs(1));
    /// let mut backoff = policy.backoff();
    /// let slow_down = ErrorKind::Throttled { retry_after: Duration::from_secs(5) };
    /// assert_eq!(backoff.next_delay(slow_down), None, "past the budget");
    /// ```
    pub fn next_delay(&mut self, kind: ErrorKind) -> Option<Duration> {
        let retry_after = match kind {
            ErrorKind::Permanent => return None,
            ErrorKind::Retryable => None,
            ErrorKind::Throttled { retry_after } => Some(retry_after),
        };
        let started = *self.first_failure.get_or_insert_with(Instant::now);
        // The attempt that just failed is number `retries + 1`.
        if self
            .policy
            .max_attempts
            .is_some_and(|max| self.retries.saturating_add(1) >= max)
        {
            return None;
        }
        let delay = self.policy.delay(self.retries, retry_after);
        if self
            .policy
            .budget
            .is_some_and(|budget| started.elapsed() + delay > budget)
        {
            return None;
        }
        self.retries += 1;
        Some(delay)
    }

    /// After a success: the next failure's wait starts again from the initial backoff, and its
    /// attempts are counted afresh. The budget still runs from the very first failure.
    ///
    /// ```
    /// use chest::{ErrorKind, RetryPolicy};
    ///
    /// let mut backoff = RetryPolicy::default().backoff();
    /// backoff.next_delay(ErrorKind::Retryable);
    /// backoff.succeeded();
    /// assert_eq!(backoff.retries(), 0);
    /// ```
    pub fn succeeded(&mut self) {
        self.retries = 0;
    }

    /// Retries granted since the start or the last [`succeeded`](Self::succeeded).
    ///
    /// ```
    /// use chest::{ErrorKind, RetryPolicy};
    ///
    /// let mut backoff = RetryPolicy::default().backoff();
    /// backoff.next_delay(ErrorKind::Retryable);
    /// assert_eq!(backoff.retries(), 1);
    /// ```
    pub fn retries(&self) -> u32 {
        self.retries
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::new(Duration::from_millis(100), Duration::from_secs(1))
    }

    #[test]
    fn delays_stay_under_the_doubling_ceiling_and_the_cap() {
        let policy = policy();
        for retry in 0..40 {
            let ceiling =
                Duration::from_millis(100 * (1u64 << retry.min(20))).min(policy.max_backoff);
            assert!(policy.delay(retry, None) <= ceiling, "retry {retry}");
        }
        let spread: HashSet<Duration> = (0..20).map(|_| policy.delay(5, None)).collect();
        assert!(spread.len() > 1, "no jitter");
        // Extreme settings neither overflow nor panic.
        let huge = RetryPolicy::new(Duration::MAX, Duration::MAX);
        let _ = huge.delay(u32::MAX, None);
        assert_eq!(
            RetryPolicy::new(Duration::ZERO, Duration::ZERO).delay(3, None),
            Duration::ZERO
        );
    }

    #[test]
    fn retry_after_wins_within_its_cap() {
        let policy = policy();
        let seven = Some(Duration::from_secs(7));
        assert_eq!(policy.delay(3, seven), Duration::from_secs(7));
        let mut capped = policy;
        capped.max_retry_after = Some(Duration::from_secs(2));
        assert_eq!(capped.delay(3, seven), Duration::from_secs(2));
        let mut backoff = policy.backoff();
        assert_eq!(
            backoff.next_delay(ErrorKind::Throttled {
                retry_after: Duration::from_secs(7)
            }),
            Some(Duration::from_secs(7))
        );
    }

    #[test]
    fn attempts_are_counted_and_limited() {
        let mut three = policy();
        three.max_attempts = Some(3);
        let mut backoff = three.backoff();
        assert!(backoff.next_delay(ErrorKind::Retryable).is_some());
        assert!(backoff.next_delay(ErrorKind::Retryable).is_some());
        assert_eq!(backoff.retries(), 2);
        assert_eq!(backoff.next_delay(ErrorKind::Retryable), None);
        assert_eq!(backoff.retries(), 2);
        backoff.succeeded();
        assert!(backoff.next_delay(ErrorKind::Retryable).is_some());
        let mut once = policy();
        once.max_attempts = Some(1);
        assert_eq!(once.backoff().next_delay(ErrorKind::Retryable), None);
        assert_eq!(policy().backoff().next_delay(ErrorKind::Permanent), None);
    }

    #[tokio::test]
    async fn the_budget_ends_the_retries() {
        let mut policy = RetryPolicy::new(Duration::from_millis(1), Duration::from_millis(10));
        policy.budget = Some(Duration::from_millis(60));
        let mut backoff = policy.backoff();
        let mut retries = 0;
        while let Some(delay) = backoff.next_delay(ErrorKind::Retryable) {
            retries += 1;
            tokio::time::sleep(delay).await;
        }
        assert!(
            retries >= 6,
            "only {retries} retries in a 60 ms budget with waits up to 10 ms"
        );
        // A wait past what is left of the budget is not granted, even a Retry-After.
        let mut backoff = policy.backoff();
        let slow_down = ErrorKind::Throttled {
            retry_after: Duration::from_millis(61),
        };
        assert_eq!(backoff.next_delay(slow_down), None);
        // A success does not give the budget back.
        assert!(backoff.next_delay(ErrorKind::Retryable).is_some());
        backoff.succeeded();
        tokio::time::sleep(Duration::from_millis(70)).await;
        assert_eq!(backoff.next_delay(ErrorKind::Retryable), None);
    }

    #[tokio::test]
    async fn retry_runs_until_success_or_the_end() {
        let mut policy = RetryPolicy::new(Duration::from_millis(1), Duration::from_millis(2));
        policy.max_attempts = Some(4);
        let mut calls = 0;
        let mut seen = Vec::new();
        let result: Result<u32, &str> = policy
            .retry(
                || {
                    calls += 1;
                    std::future::ready(if calls == 3 { Ok(calls) } else { Err("down") })
                },
                |_| ErrorKind::Retryable,
                |_, retry, _| seen.push(retry),
            )
            .await;
        assert_eq!(result, Ok(3));
        assert_eq!(seen, [1, 2]);

        let mut errors = 0;
        let result: Result<(), &str> = policy
            .retry(
                || std::future::ready(Err("down")),
                |_| {
                    errors += 1;
                    ErrorKind::Retryable
                },
                |_, _, _| {},
            )
            .await;
        assert_eq!(result, Err("down"));
        assert_eq!(errors, 4, "every failure is seen, the last one included");

        let mut calls = 0;
        let permanent: Result<(), &str> = policy
            .retry(
                || {
                    calls += 1;
                    std::future::ready(Err("bad"))
                },
                |_| ErrorKind::Permanent,
                |_, _, _| {},
            )
            .await;
        assert_eq!(permanent, Err("bad"));
        assert_eq!(calls, 1);
    }
}
