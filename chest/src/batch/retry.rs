//! Delivering one batch: retries with exponential backoff and full jitter, `retry_after`
//! honoured, a time budget, and bisection of permanently failing batches.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{Chest, Record};

/// How a failed write is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// The backoff before the first retry (before jitter).
    pub initial_backoff: Duration,
    /// The cap on any backoff.
    pub max_backoff: Duration,
    /// How long one batch keeps being retried before it is given up (and spooled).
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            budget: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (0-based): the backend's `retry_after` if it gave
    /// one, else a uniformly random duration up to `initial × 2^attempt`, capped ("full jitter").
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait;
        }
        let ceiling = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.min(31))
            .min(self.max_backoff);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }
}

/// What happened to a batch's records.
#[derive(Debug, Default)]
pub(crate) struct Delivery {
    /// Records the chest accepted.
    pub written: u64,
    /// Records refused for good (index in the batch, error text).
    pub dead: Vec<(usize, String)>,
    /// Records given up on (retry budget spent, or told to stop), in order.
    pub gave_up: Vec<Range<usize>>,
    /// Retries made.
    pub retries: u64,
    /// The latest error's text.
    pub last_error: Option<String>,
}

/// Writes `records` to `chest`. Retryable failures are retried until the policy's budget (counted
/// from the first failure) is spent; a permanent failure splits the failing part in two until the
/// bad records are alone. When `stop` turns true the delivery ends at once: what is not written
/// yet, including a write in progress (which may still land: at-least-once), is given up.
pub(crate) async fn deliver(
    chest: &dyn Chest,
    records: &[Record],
    policy: &RetryPolicy,
    stop: &mut watch::Receiver<bool>,
) -> Delivery {
    let mut out = Delivery::default();
    let mut todo = VecDeque::new();
    todo.push_back(0..records.len());
    let mut first_failure: Option<Instant> = None;
    let mut attempt = 0;
    while let Some(range) = todo.pop_front() {
        let result = tokio::select! {
            result = chest.write(&records[range.clone()]) => result,
            _ = stop.wait_for(|stop| *stop) => {
                todo.push_front(range);
                break;
            }
        };
        let error = match result {
            Ok(()) => {
                out.written += range.len() as u64;
                attempt = 0;
                continue;
            }
            Err(error) => error,
        };
        out.last_error = Some(error.to_string());
        if !error.is_retryable() {
            if range.len() == 1 {
                out.dead.push((range.start, error.to_string()));
            } else {
                let middle = range.start + range.len() / 2;
                todo.push_front(middle..range.end);
                todo.push_front(range.start..middle);
            }
            continue;
        }
        todo.push_front(range);
        let started = *first_failure.get_or_insert_with(Instant::now);
        let delay = policy.delay(attempt, error.retry_after());
        if started.elapsed() + delay > policy.budget {
            break;
        }
        attempt += 1;
        out.retries += 1;
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
    out.gave_up = todo.into_iter().collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_capped_and_honours_retry_after() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            budget: Duration::from_secs(5),
        };
        for attempt in 0..40 {
            let ceiling =
                Duration::from_millis(100 * (1u64 << attempt.min(20))).min(policy.max_backoff);
            assert!(policy.delay(attempt, None) <= ceiling);
        }
        let spread: std::collections::HashSet<Duration> =
            (0..20).map(|_| policy.delay(5, None)).collect();
        assert!(spread.len() > 1, "no jitter");
        assert_eq!(
            policy.delay(3, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
    }
}
