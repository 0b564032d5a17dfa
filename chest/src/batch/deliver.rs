//! Delivering one batch: retries under the [`RetryPolicy`] (backoff, `retry_after`, budget),
//! and bisection of permanently failing batches.

use std::collections::VecDeque;
use std::ops::Range;

use tokio::sync::watch;

use crate::{BatchId, Chest, Record, RetryPolicy, Written};

/// What happened to a batch's records.
#[derive(Debug, Default)]
pub(crate) struct Delivery {
    /// Records the chest accepted (those it had stored already included).
    pub written: u64,
    /// Writes the chest answered with [`Written::AlreadyStored`]: an earlier attempt had stored
    /// them (its answer lost), so nothing was stored twice.
    pub already_stored: u64,
    /// Records refused for good (index in the batch, error text).
    pub dead: Vec<(usize, String)>,
    /// Records given up on (retry budget spent, or told to stop), in order.
    pub gave_up: Vec<Range<usize>>,
    /// Retries made.
    pub retries: u64,
    /// The latest error's text.
    pub last_error: Option<String>,
}

/// Writes `records`, the batch `id`, to `chest`. Retryable failures are retried until the
/// policy's budget (counted from the first failure) is spent; a permanent failure splits the
/// failing part in two until the bad records are alone. When `stop` turns true the delivery ends
/// at once: what is not written yet, including a write in progress (which may still land), is
/// given up. Every write of a range carries the range's id ([`part_id`]), the same on every
/// attempt, so a chest that keeps ids stores nothing twice.
pub(crate) async fn deliver(
    chest: &dyn Chest,
    id: BatchId,
    records: &[Record],
    policy: &RetryPolicy,
    stop: &mut watch::Receiver<bool>,
) -> Delivery {
    let mut out = Delivery::default();
    let mut todo = VecDeque::new();
    todo.push_back(0..records.len());
    let mut backoff = policy.backoff();
    while let Some(range) = todo.pop_front() {
        let result = tokio::select! {
            result = chest.write_batch(part_id(id, records.len(), &range), &records[range.clone()]) => result,
            _ = stop.wait_for(|stop| *stop) => {
                todo.push_front(range);
                break;
            }
        };
        let error = match result {
            Ok(written) => {
                if written == Written::AlreadyStored {
                    out.already_stored += 1;
                }
                out.written += range.len() as u64;
                backoff.succeeded();
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
        let Some(delay) = backoff.next_delay(error.kind()) else {
            break;
        };
        out.retries += 1;
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
    out.gave_up = todo.into_iter().collect();
    out
}

/// The id of records `range` of a batch `id` of `len` records: the batch's own for all of it,
/// else the part's, derived from it ([`BatchId::part`]).
pub(crate) fn part_id(id: BatchId, len: usize, range: &Range<usize>) -> BatchId {
    if range.start == 0 && range.end == len {
        id
    } else {
        id.part(range.start, range.end)
    }
}
