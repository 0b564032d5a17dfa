//! The bounded memory queue shared by the request path and the worker, and the books
//! ([`Ledger`]) that move with it under one lock (so every [`Stats`] snapshot balances).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use super::journal::{Claim, Journal, Pos};
use super::ledger::{Ledger, Refusal};
use super::policy::{Durability, OverflowPolicy};
use super::spool::Totals;
use super::stats::{LastError, Stats};
use crate::{BatchId, ChestError, Record};

/// The records of one `write` call.
pub(crate) struct Message {
    pub records: Vec<Record>,
    pub bytes: u64,
    /// The order key: messages are numbered as they are queued.
    pub seq: u64,
    /// With [`Durability::Disk`]: completed (or dropped) once the records are in the spool.
    pub ack: Option<oneshot::Sender<()>>,
    /// With [`Durability::Process`]: its frame in the journal.
    pub journal: Option<Pos>,
}

/// Records taken out of the queue together, in order.
pub(crate) struct Batch {
    /// The order key of the first message.
    pub seq: u64,
    /// Its identity towards the chest, given when it is first written (or read back from the
    /// spool with it).
    pub id: Option<BatchId>,
    pub records: Vec<Record>,
    pub bytes: u64,
    pub acks: Vec<oneshot::Sender<()>>,
    /// Its messages' journal frames, released when the batch (and every part of it) is dropped.
    pub claim: Option<Arc<Claim>>,
}

/// The queue's limits and what to do when it is full.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub max_records: u64,
    pub max_bytes: u64,
    pub batch_records: u64,
    pub batch_bytes: u64,
    pub linger: Duration,
    /// Memory above which the worker moves the oldest queued records to the spool.
    pub spill_records: u64,
    pub spill_bytes: u64,
    pub overflow: OverflowPolicy,
    pub durability: Durability,
}

/// Everything behind the lock.
pub(crate) struct State {
    messages: VecDeque<Message>,
    /// When the worker first saw the queue's oldest messages (`None`: not seen yet, or empty).
    /// The request path never reads the clock: the worker notices new messages on its tick.
    first_seen: Option<Instant>,
    next_seq: u64,
    /// Set by `shutdown` (or the last handle's drop): the worker's deadline.
    pub closing: Option<Instant>,
    /// Set by the worker when it has finished.
    pub closed: bool,
    /// Where every record is: changed only through its transitions.
    pub ledger: Ledger,
}

/// What an offer to the queue came to.
pub(crate) enum Offer<'a> {
    /// Queued.
    Queued,
    /// Settled without queueing: dropped (counted) or refused.
    Settled(Result<(), ChestError>),
    /// Full under `Block`: the message is handed back to wait for room, up to the timeout.
    Full(Waiting<'a>, Duration),
}

/// A message handed back to wait for room. Dropped without being offered again (the writer gave
/// up: its future was dropped), it releases its journal frame.
pub(crate) struct Waiting<'a> {
    queue: &'a Queue,
    message: Option<Message>,
}

impl Waiting<'_> {
    /// The message, to offer again.
    pub fn take(mut self) -> Message {
        self.message.take().expect("held until taken")
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(message) = &self.message {
            self.queue.release(message);
        }
    }
}

/// The queue, its lock and its wake-ups.
pub(crate) struct Queue {
    pub name: String,
    pub limits: Limits,
    state: Mutex<State>,
    /// Wakes the worker: a message arrived in an empty queue, a batch filled, memory passed the
    /// spill mark, or shutdown began.
    pub wake: Notify,
    /// Wakes writers blocked on a full queue (`Block`) when records leave memory.
    pub room: Notify,
    /// Whether writers wait for their records to be in the spool: `Disk` with a usable spool.
    durable: AtomicBool,
    /// `Process` with a usable journal.
    pub journal: Option<Arc<Journal>>,
}

impl Queue {
    pub fn new(
        name: String,
        limits: Limits,
        first_seq: u64,
        spool: Totals,
        journal: Option<Arc<Journal>>,
    ) -> Self {
        let ledger = Ledger::new(name.clone(), spool);
        Queue {
            name,
            limits,
            state: Mutex::new(State {
                messages: VecDeque::new(),
                first_seen: None,
                next_seq: first_seq,
                closing: None,
                closed: false,
                ledger,
            }),
            wake: Notify::new(),
            room: Notify::new(),
            durable: AtomicBool::new(false),
            journal,
        }
    }

    /// The lock. A panic while it was held cannot leave the counters half-updated in a way that
    /// matters more than stopping would, so poison is ignored.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> Stats {
        self.lock().ledger.snapshot()
    }

    /// Sets whether writers wait for the spool (`Disk` with a usable spool).
    /// Without a spool, they degrade to `Memory` rather than making writers wait for the chest.
    pub fn set_durable(&self, durable: bool) {
        let spooled_first = self.limits.durability.spooled_first();
        self.durable
            .store(durable && spooled_first, Ordering::Relaxed);
    }

    fn durable(&self) -> bool {
        self.durable.load(Ordering::Relaxed)
    }

    /// Builds the message for a `write` call.
    pub fn message(&self, records: Vec<Record>) -> (Message, Option<oneshot::Receiver<()>>) {
        let bytes = records.iter().map(|r| r.approx_size() as u64).sum();
        let (ack, acked) = if self.durable() {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let journal = self.journal.as_ref().and_then(|j| j.append(&records));
        let message = Message {
            records,
            bytes,
            seq: 0,
            ack,
            journal,
        };
        (message, acked)
    }

    /// Queues the message if there is room, or applies the overflow policy. `final_try` (the
    /// `Block` timeout has passed) makes a full queue drop the message.
    pub fn offer(&self, mut message: Message, final_try: bool) -> Offer<'_> {
        let n = message.records.len() as u64;
        let mut state = self.lock();
        if state.closing.is_some() {
            state.ledger.refused_on_arrival(n, Refusal::Shutdown);
            drop(state);
            self.release(&message);
            tracing::warn!(target: "chest", chest = %self.name, records = n,
                "record written to a batched chest after its shutdown; dropped");
            return Offer::Settled(Ok(()));
        }
        if !state.fits(&self.limits, &message) {
            match self.limits.overflow {
                OverflowPolicy::DropOldest => {
                    while !state.fits(&self.limits, &message) {
                        let Some(old) = state.messages.pop_front() else {
                            break;
                        };
                        // Its ack, if any, is dropped: the writer stops waiting.
                        state
                            .ledger
                            .evicted_from_queue(old.records.len() as u64, old.bytes);
                        self.release(&old);
                    }
                }
                OverflowPolicy::Block(timeout) if !final_try => {
                    drop(state);
                    let waiting = Waiting {
                        queue: self,
                        message: Some(message),
                    };
                    return Offer::Full(waiting, timeout);
                }
                _ => {}
            }
        }
        if !state.fits(&self.limits, &message) {
            let (why, result) = match self.limits.overflow {
                OverflowPolicy::Reject => (
                    Refusal::Rejected,
                    Err(ChestError::retryable(
                        &*self.name,
                        "the batched chest's queue is full; record refused (overflow policy Reject)",
                    )),
                ),
                OverflowPolicy::Block(_) => (Refusal::BlockTimeout, Ok(())),
                OverflowPolicy::DropOldest | OverflowPolicy::DropNewest => {
                    (Refusal::Newest, Ok(()))
                }
            };
            state.ledger.refused_on_arrival(n, why);
            drop(state);
            self.release(&message);
            return Offer::Settled(result);
        }
        let was_empty = state.messages.is_empty();
        let before = state.fill();
        message.seq = state.next_seq;
        state.next_seq += 1;
        state.ledger.enqueued(n, message.bytes);
        let unprotected = match self.limits.durability {
            Durability::Disk => message.ack.is_none(),
            Durability::Process => message.journal.is_none(),
            Durability::Memory => false,
        };
        if unprotected {
            // Neither the spool (`Disk`) nor the journal (`Process`) took it: in memory only.
            state.ledger.unprotected(n);
        }
        state.messages.push_back(message);
        let after = state.fill();
        drop(state);
        // Waking the worker costs a syscall; it is done once per batch (or spill), not per
        // message. With `Disk` the writer waits for the commit, so the first message wakes it.
        let commit_now = was_empty && self.durable();
        if commit_now || self.limits.crossed(before, after) {
            self.wake.notify_one();
        }
        Offer::Queued
    }

    /// Takes up to one batch's worth of messages from the front (at least one message), moving
    /// them to in-flight. `None` when the queue is empty.
    pub fn take_batch(&self) -> Option<Batch> {
        let mut state = self.lock();
        let first = state.messages.pop_front()?;
        let mut frames: Vec<Pos> = first.journal.into_iter().collect();
        let mut batch = Batch {
            seq: first.seq,
            id: None,
            records: first.records,
            bytes: first.bytes,
            acks: first.ack.into_iter().collect(),
            claim: None,
        };
        // Room for every queued record that can join (the first message's are counted in the
        // depth), so the batch is copied once, not at each doubling.
        let joining = state
            .ledger
            .stats()
            .queue_depth
            .min(self.limits.batch_records) as usize;
        batch
            .records
            .reserve(joining.saturating_sub(batch.records.len()));
        while let Some(next) = state.messages.front() {
            let records = (batch.records.len() + next.records.len()) as u64;
            if records > self.limits.batch_records
                || batch.bytes + next.bytes > self.limits.batch_bytes
            {
                break;
            }
            let next = state.messages.pop_front().expect("front exists");
            batch.bytes += next.bytes;
            batch.records.extend(next.records);
            batch.acks.extend(next.ack);
            frames.extend(next.journal);
        }
        state
            .ledger
            .taken_into_flight(batch.records.len() as u64, batch.bytes);
        // What is left has waited at most as long as what was taken; restarting its linger here
        // keeps the clock to one read per batch instead of one per message.
        state.first_seen = (!state.messages.is_empty()).then(Instant::now);
        drop(state);
        batch.claim = self.journal.as_ref().and_then(|j| Claim::new(j, frames));
        Some(batch)
    }

    /// When the queued records are due to the worker: now if a batch is full, else `linger`
    /// after the worker first saw them (this call is how it sees them). `None` when the queue is
    /// empty.
    pub fn due_at(&self) -> Option<Instant> {
        let mut state = self.lock();
        if state.messages.is_empty() {
            return None;
        }
        let now = Instant::now();
        let first_seen = *state.first_seen.get_or_insert(now);
        let queued = state.ledger.stats();
        let full = queued.queue_depth >= self.limits.batch_records
            || queued.queue_bytes >= self.limits.batch_bytes;
        Some(if full {
            first_seen
        } else {
            first_seen + self.limits.linger
        })
    }

    /// Whether memory (queue and in flight) is above the spill mark.
    pub fn memory_above_spill_mark(&self) -> bool {
        let (records, bytes) = self.lock().ledger.memory();
        records > self.limits.spill_records || bytes > self.limits.spill_bytes
    }

    /// Whether the queue alone is above half the spill mark: spilling goes on until it is not.
    pub fn queue_above_half_spill_mark(&self) -> bool {
        let state = self.lock();
        let stats = state.ledger.stats();
        stats.queue_depth > self.limits.spill_records / 2
            || stats.queue_bytes > self.limits.spill_bytes / 2
    }

    /// Runs ledger transitions (and other updates) with `f` under the lock, then wakes blocked
    /// writers.
    pub fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.room.notify_waiters();
    }

    /// Releases the journal frame of a message that leaves without being queued or batched.
    fn release(&self, message: &Message) {
        if let (Some(journal), Some(pos)) = (&self.journal, message.journal) {
            journal.release_one(pos);
        }
    }

    /// Records an error as the last one.
    pub fn set_last_error(&self, message: String) {
        self.lock().ledger.failed(LastError::now(message));
    }
}

impl Limits {
    /// Whether an enqueue moved the queue past a point where the worker must act: a full batch,
    /// or the spill mark.
    fn crossed(&self, before: (u64, u64, (u64, u64)), after: (u64, u64, (u64, u64))) -> bool {
        let past = |b: u64, a: u64, mark: u64| b < mark && a >= mark;
        past(before.0, after.0, self.batch_records)
            || past(before.1, after.1, self.batch_bytes)
            || past(before.2 .0, after.2 .0, self.spill_records + 1)
            || past(before.2 .1, after.2 .1, self.spill_bytes + 1)
    }
}

impl State {
    /// The queue's records and bytes, and memory's: what an enqueue may push past a mark.
    fn fill(&self) -> (u64, u64, (u64, u64)) {
        let stats = self.ledger.stats();
        (stats.queue_depth, stats.queue_bytes, self.ledger.memory())
    }

    /// Whether `message` fits in memory. A message larger than the whole bound fits an empty
    /// memory, so that it is not refused forever.
    fn fits(&self, limits: &Limits, message: &Message) -> bool {
        let (records, bytes) = self.ledger.memory();
        records == 0
            || (records + message.records.len() as u64 <= limits.max_records
                && bytes + message.bytes <= limits.max_bytes)
    }
}
