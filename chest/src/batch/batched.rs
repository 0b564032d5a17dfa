//! The batched chest and its builder: the hand-off to the queue, and the worker's life.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::deadletter;
use super::journal::{self, Journal};
use super::policy::{Durability, OverflowPolicy};
use super::queue::{Limits, Offer, Queue, Waiting};
use super::spool::Spool;
use super::stats::Stats;
use super::wal_sync::SyncTimer;
use super::worker::{SpoolSlot, Worker};
use crate::{BoxFuture, Chest, ChestError, Error, Record, RetryPolicy};

/// Settings of a [`Batched`] chest, from [`Batched::builder`].
#[derive(Clone)]
#[must_use]
pub struct BatchedBuilder {
    chest: Arc<dyn Chest>,
    /// `None`: [`DEFAULT_BATCH_RECORDS`], or the queue's capacity when that is smaller.
    batch_records: Option<u64>,
    batch_bytes: u64,
    linger: Duration,
    max_in_flight: usize,
    queue_records: u64,
    queue_bytes: u64,
    spill_at: f64,
    overflow: OverflowPolicy,
    durability: Durability,
    sync_every: Duration,
    retry: RetryPolicy,
    spool: Option<PathBuf>,
    spool_max_bytes: u64,
    journal_segment_bytes: usize,
    journal_max_bytes: Option<u64>,
    dead_letter: Option<PathBuf>,
}

impl std::fmt::Debug for BatchedBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchedBuilder")
            .field("chest", &self.chest.name())
            .field("batch_records", &self.batch_records())
            .field("batch_bytes", &self.batch_bytes)
            .field("linger", &self.linger)
            .field("max_in_flight", &self.max_in_flight)
            .field("queue_records", &self.queue_records)
            .field("queue_bytes", &self.queue_bytes)
            .field("spill_at", &self.spill_at)
            .field("overflow", &self.overflow)
            .field("durability", &self.durability)
            .field("sync_every", &self.sync_every)
            .field("retry", &self.retry)
            .field("spool", &self.spool)
            .field("spool_max_bytes", &self.spool_max_bytes)
            .field("journal_segment_bytes", &self.journal_segment_bytes)
            .field("journal_max_bytes", &self.journal_max_bytes)
            .field("dead_letter", &self.dead_letter)
            .finish()
    }
}

/// The default [`max_batch_records`](BatchedBuilder::max_batch_records): one SQLite commit, one
/// InfluxDB write or one HTTP body per 5,000 records, within the default 1 MiB of
/// `max_batch_bytes` for records of up to ~200 bytes. `Batched` → SQLite ran at 618k records/s
/// with it against 462k with 1,000 (BENCHMARKS.md); a record still waits at most about `linger`.
pub const DEFAULT_BATCH_RECORDS: u64 = 5_000;

impl BatchedBuilder {
    /// The most records in one write to the wrapped chest (default [`DEFAULT_BATCH_RECORDS`], or
    /// the [`queue_capacity`](Self::queue_capacity) when that is smaller).
    pub fn max_batch_records(mut self, records: usize) -> Self {
        self.batch_records = Some(records as u64);
        self
    }

    /// The most bytes ([`Record::approx_size`]) in one write to the wrapped chest (default 1 MiB).
    pub fn max_batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = bytes as u64;
        self
    }

    /// How long a record may wait for its batch to fill (default 1 s). With `Disk` it applies to
    /// spooled batches.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// How many batches may be written at once (default 1). Spool replays are always one at a time,
    /// in order.
    pub fn max_in_flight(mut self, batches: usize) -> Self {
        self.max_in_flight = batches;
        self
    }

    /// The most records in memory, queued and in flight (default 100,000).
    pub fn queue_capacity(mut self, records: usize) -> Self {
        self.queue_records = records as u64;
        self
    }

    /// The most bytes ([`Record::approx_size`]) in memory (default 64 MiB).
    pub fn queue_max_bytes(mut self, bytes: usize) -> Self {
        self.queue_bytes = bytes as u64;
        self
    }

    /// The share of the memory bounds from which the worker moves the oldest queued records to
    /// the spool, in `(0, 1]` (default 0.5). Without a spool it has no effect.
    pub fn spill_at(mut self, fraction: f64) -> Self {
        self.spill_at = fraction;
        self
    }

    /// What to do when full (default [`OverflowPolicy::DropOldest`]).
    pub fn overflow(mut self, policy: OverflowPolicy) -> Self {
        self.overflow = policy;
        self
    }

    /// When a write counts as accepted (default [`Durability::Memory`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// With [`Durability::Process`]: how often the journal and the spool are synced to the disk
    /// (default 1 s), the window of writes a power loss can take. They are also synced at
    /// shutdown.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use chest::{batch::{Batched, Durability}, MemoryChest};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let batched = Batched::builder(MemoryChest::new())
    ///     .spool(dir.path().join("spool.db"))
    ///     .durability(Durability::Process)
    ///     .sync_every(Duration::from_millis(200))
    ///     .build()?;
    /// # batched.shutdown(Duration::from_secs(1)).await;
    /// # Ok(()) }
    /// ```
    pub fn sync_every(mut self, interval: Duration) -> Self {
        self.sync_every = interval;
        self
    }

    /// The backoff before the first retry and the cap on any backoff (defaults 100 ms and 10 s).
    /// The cap is also the pause after a batch was given up.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.retry.initial_backoff = initial;
        self.retry.max_backoff = max;
        self
    }

    /// How long one batch is retried, from its first failure, before it is spooled (default 30 s).
    pub fn retry_budget(mut self, budget: Duration) -> Self {
        self.retry.budget = Some(budget);
        self
    }

    /// The whole retry policy at once (default [`RetryPolicy::default`]): what
    /// [`backoff`](Self::backoff) and [`retry_budget`](Self::retry_budget) set, plus an attempt
    /// limit and a cap on `Retry-After`. A batch whose retries end is spooled. Without a budget
    /// or an attempt limit a batch is retried for as long as the chest stays down (or until
    /// shutdown).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), chest::Error> {
    /// use std::time::Duration;
    /// use chest::{batch::Batched, MemoryChest, RetryPolicy};
    ///
    /// let mut policy = RetryPolicy::new(Duration::from_millis(50), Duration::from_secs(5));
    /// policy.budget = Some(Duration::from_secs(20));
    /// policy.max_retry_after = Some(Duration::from_secs(5));
    /// let batched = Batched::builder(MemoryChest::new()).retry_policy(policy).build()?;
    /// # batched.shutdown(Duration::from_secs(1)).await;
    /// # Ok(()) }
    /// ```
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The spool file (created if missing; none by default). Its dead-letter file defaults to
    /// `<spool>.dead-letter.jsonl`.
    pub fn spool(mut self, path: impl Into<PathBuf>) -> Self {
        self.spool = Some(path.into());
        self
    }

    /// The bound on the spooled batches' encoded bytes (default 1 GiB).
    pub fn spool_max_bytes(mut self, bytes: u64) -> Self {
        self.spool_max_bytes = bytes;
        self
    }

    /// With [`Durability::Process`]: the size of each journal segment file (default 8 MiB). A
    /// shard moves to a new segment (one file creation) when its segment is full; a write larger
    /// than a segment is accepted in memory only.
    pub fn journal_segment_bytes(mut self, bytes: usize) -> Self {
        self.journal_segment_bytes = bytes;
        self
    }

    /// With [`Durability::Process`]: the bound on the journal's segment files, in bytes (default:
    /// `spool_max_bytes`). Past it, writes are accepted in memory only (counted in
    /// [`Stats::unprotected`]) and the overflow policy governs memory.
    pub fn journal_max_bytes(mut self, bytes: u64) -> Self {
        self.journal_max_bytes = Some(bytes);
        self
    }

    /// The dead-letter file (JSON lines). Without one (and without a spool), records refused for
    /// good are logged and counted in [`Dropped::permanent_error`](super::Dropped::permanent_error).
    pub fn dead_letter(mut self, path: impl Into<PathBuf>) -> Self {
        self.dead_letter = Some(path.into());
        self
    }

    /// The batch size in effect.
    fn batch_records(&self) -> u64 {
        self.batch_records
            .unwrap_or(DEFAULT_BATCH_RECORDS.min(self.queue_records))
    }

    fn validate(&self) -> Result<(), Error> {
        let problem = if self.batch_records() == 0 || self.batch_bytes == 0 {
            "max_batch_records and max_batch_bytes must be at least 1"
        } else if self.max_in_flight == 0 {
            "max_in_flight must be at least 1"
        } else if self.queue_records < self.batch_records() || self.queue_bytes < self.batch_bytes {
            "queue_capacity and queue_max_bytes must hold at least one batch"
        } else if !(self.spill_at > 0.0 && self.spill_at <= 1.0) {
            "spill_at must be in (0, 1]"
        } else if self.durability == Durability::Disk && self.spool.is_none() {
            "Durability::Disk needs a spool file (BatchedBuilder::spool)"
        } else if self.durability == Durability::Process && self.spool.is_none() {
            "Durability::Process needs a spool file (BatchedBuilder::spool)"
        } else if self.journal_segment_bytes < 4096 || self.journal_segment_bytes > 1 << 30 {
            "journal_segment_bytes must be between 4 KiB and 1 GiB"
        } else if self.sync_every.is_zero() {
            "sync_every must be more than 0"
        } else if self.retry.initial_backoff.is_zero()
            || self.retry.max_backoff < self.retry.initial_backoff
        {
            "backoff needs 0 < initial <= max"
        } else {
            return Ok(());
        };
        Err(Error::Config(format!(
            "batched chest `{}`: {problem}",
            self.chest.name()
        )))
    }

    /// Opens the spool (setting a bad one aside) and starts the worker on the current tokio
    /// runtime.
    ///
    /// Errors: a setting that cannot work, or no tokio runtime. A spool that cannot be used is
    /// not an error (see [the module docs](super#the-spool)).
    pub fn build(self) -> Result<Batched, Error> {
        self.validate()?;
        let name = self.chest.name().to_owned();
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config(format!(
                "batched chest `{name}`: Batched::build must be called inside a tokio runtime \
                 (it spawns its worker task there)"
            ))
        })?;
        let durable = self.durability == Durability::Disk;
        let (spool, set_aside) = match &self.spool {
            Some(path) => {
                let (spool, set_aside, errors) = Spool::open_or_set_aside(path, durable);
                for error in &errors {
                    tracing::error!(target: "chest", chest = %name, %error, "spool unusable");
                }
                if set_aside {
                    tracing::error!(target: "chest", chest = %name, spool = %path.display(),
                        "bad spool file renamed aside (<path>.corrupt-<unix ms>); a new one was started");
                }
                (spool, (set_aside, errors.last().map(ToString::to_string)))
            }
            None => (None, (false, None)),
        };
        let mut spool = spool;
        let (journal, journal_torn, journal_error) = self.journal(&name, spool.as_mut());
        let first_seq = spool.as_ref().and_then(|s| s.next_seq().ok()).unwrap_or(0);
        let totals = spool.as_ref().map(Spool::totals).unwrap_or_default();
        let fraction = |bound: u64| ((bound as f64) * self.spill_at) as u64;
        let limits = Limits {
            max_records: self.queue_records,
            max_bytes: self.queue_bytes,
            batch_records: self.batch_records(),
            batch_bytes: self.batch_bytes,
            linger: self.linger,
            spill_records: fraction(self.queue_records),
            spill_bytes: fraction(self.queue_bytes),
            overflow: self.overflow,
            durability: self.durability,
        };
        let queue = Arc::new(Queue::new(name, limits, first_seq, totals, journal));
        queue.update(|s| {
            if set_aside.0 {
                s.ledger.spool_set_aside_at_open();
            }
            s.ledger.journal_torn(journal_torn);
        });
        if let Some(error) = set_aside.1.into_iter().chain(journal_error).last() {
            queue.set_last_error(error);
        }
        let has_spool = spool.is_some();
        let dead_letter = self
            .dead_letter
            .or_else(|| self.spool.as_deref().map(deadletter::beside));
        let (done, finished) = watch::channel(false);
        let worker = Worker::new(
            queue.clone(),
            self.chest,
            self.retry,
            self.max_in_flight,
            SpoolSlot {
                spool: spool.map(|s| Arc::new(Mutex::new(s))),
                path: self.spool.unwrap_or_default(),
                durable,
                max_bytes: self.spool_max_bytes,
                generation: 0,
                sync: SyncTimer::new(
                    (self.durability == Durability::Process).then_some(self.sync_every),
                ),
            },
            dead_letter,
            done,
        );
        queue.set_durable(has_spool);
        runtime.spawn(worker.run());
        Ok(Batched {
            queue: queue.clone(),
            finished,
            _handle: Arc::new(Handle { queue }),
        })
    }
}

impl BatchedBuilder {
    /// Recovers what a crashed run left in the journal beside the spool (whatever the durability
    /// now), then, with `Process`, opens the journal. Returns it, the frames recovery cut, and the
    /// error that left the chest without a journal, if any (logged).
    fn journal(
        &self,
        chest: &str,
        spool: Option<&mut Spool>,
    ) -> (Option<Arc<Journal>>, u64, Option<String>) {
        let (Some(spool), Some(path)) = (spool, &self.spool) else {
            return (None, 0, None);
        };
        let dir = journal::dir_of(path);
        let mut torn = 0;
        if dir.exists() {
            let started = std::time::Instant::now();
            match journal::recover(&dir, spool, self.batch_records() as usize) {
                Ok(recovered) => {
                    torn = recovered.torn;
                    tracing::info!(target: "chest", chest, records = recovered.records,
                        batches = recovered.batches, elapsed = ?started.elapsed(),
                        "journal left by an earlier run recovered into the spool");
                    if torn > 0 {
                        tracing::warn!(target: "chest", chest, frames = torn,
                            "journal frames torn or corrupt: cut (their records are lost)");
                    }
                }
                Err(error) => {
                    // Kept for the next start; this run writes in memory only.
                    tracing::error!(target: "chest", chest, %error,
                        "cannot recover the journal; running without one");
                    return (None, 0, Some(error.to_string()));
                }
            }
        }
        if self.durability != Durability::Process {
            return (None, torn, None);
        }
        let sizes = journal::Sizes {
            segment_bytes: self.journal_segment_bytes,
            max_bytes: self.journal_max_bytes.unwrap_or(self.spool_max_bytes),
        };
        match Journal::open(chest, dir, sizes) {
            Ok(journal) => (Some(Arc::new(journal)), torn, None),
            Err(error) => {
                tracing::error!(target: "chest", chest, %error,
                    "cannot open the journal: writes are accepted in memory only");
                (None, torn, Some(error.to_string()))
            }
        }
    }
}

/// A chest that delivers to another chest in the background: see [the module docs](super).
///
/// Clones share the queue and the worker; keep one to call [`shutdown`](Batched::shutdown) and
/// [`stats`](Batched::stats) after giving another to a [`Recorder`](crate::Recorder). Its
/// [`name`](Chest::name) is the wrapped chest's.
#[derive(Clone)]
pub struct Batched {
    queue: Arc<Queue>,
    finished: watch::Receiver<bool>,
    _handle: Arc<Handle>,
}

/// The handles' shared part: its drop (the last handle's) warns if shutdown was not called.
struct Handle {
    queue: Arc<Queue>,
}

/// How long the worker gets to drain when the last handle is dropped without shutdown.
const DROP_DEADLINE: Duration = Duration::from_secs(5);

impl Drop for Handle {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        if state.closing.is_none() {
            state.closing = Some(Instant::now() + DROP_DEADLINE);
            let in_memory = state.ledger.stats().in_memory();
            drop(state);
            tracing::warn!(target: "chest", chest = %self.queue.name, in_memory,
                "Batched chest dropped without shutdown(): draining for {DROP_DEADLINE:?} if the \
                 runtime still runs; call `Batched::shutdown` to be sure nothing is lost");
            self.queue.wake.notify_one();
        }
    }
}

impl Batched {
    /// Settings for a batched chest wrapping `chest`, with the defaults.
    pub fn builder(chest: impl Chest) -> BatchedBuilder {
        BatchedBuilder {
            chest: Arc::new(chest),
            batch_records: None,
            batch_bytes: 1 << 20,
            linger: Duration::from_secs(1),
            max_in_flight: 1,
            queue_records: 100_000,
            queue_bytes: 64 << 20,
            spill_at: 0.5,
            overflow: OverflowPolicy::default(),
            durability: Durability::default(),
            sync_every: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            spool: None,
            spool_max_bytes: 1 << 30,
            journal_segment_bytes: 8 << 20,
            journal_max_bytes: None,
            dead_letter: None,
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.queue.stats()
    }

    /// Drains the queue to the wrapped chest, spools what misses `deadline`, stops the worker and
    /// returns the final counters. Later writes are dropped (counted in [`Dropped::shutdown`](super::Dropped::shutdown)).
    /// Calling it again waits for the same end. Works on a `current_thread` runtime.
    pub async fn shutdown(&self, deadline: Duration) -> Stats {
        let end = Instant::now() + deadline;
        {
            let mut state = self.queue.lock();
            state.closing = Some(state.closing.map_or(end, |at| at.min(end)));
        }
        self.queue.wake.notify_one();
        self.queue.room.notify_waiters();
        let mut finished = self.finished.clone();
        // The worker keeps its own deadline; the margin covers a spool write still running then.
        let waited = tokio::time::timeout_at(
            end + Duration::from_secs(5),
            finished.wait_for(|done| *done),
        )
        .await;
        if !matches!(waited, Ok(Ok(_))) {
            tracing::error!(target: "chest", chest = %self.queue.name,
                "batched chest's worker did not finish in time (or its runtime stopped)");
        }
        self.stats()
    }

    /// Waits for room in a full queue (`Block`), up to `timeout`.
    async fn queue_when_room<'a>(
        &'a self,
        mut waiting: Waiting<'a>,
        timeout: Duration,
    ) -> Offer<'a> {
        let deadline = Instant::now() + timeout;
        let mut timed_out = false;
        loop {
            let room = self.queue.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.queue.offer(waiting.take(), timed_out) {
                Offer::Full(back, _) => waiting = back,
                settled => return settled,
            }
            timed_out = tokio::time::timeout_at(deadline, room).await.is_err();
        }
    }
}

impl Chest for Batched {
    fn name(&self) -> &str {
        &self.queue.name
    }

    fn write<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), ChestError>> {
        self.write_owned(records.to_vec())
    }

    fn write_owned(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), ChestError>> {
        if records.is_empty() {
            return Box::pin(Accepted);
        }
        let (message, acked) = self.queue.message(records);
        let offer = self.queue.offer(message, false);
        match (offer, acked) {
            (Offer::Queued, None) => Box::pin(Accepted),
            (Offer::Settled(result), _) => Box::pin(std::future::ready(result)),
            (offer, acked) => Box::pin(async move {
                let offer = match offer {
                    Offer::Full(waiting, timeout) => self.queue_when_room(waiting, timeout).await,
                    offer => offer,
                };
                match offer {
                    Offer::Settled(result) => result,
                    // Queued: with `Disk`, wait for the group commit. The ack is dropped, not
                    // sent, so a dropped record releases its writer too.
                    _ => {
                        if let Some(acked) = acked {
                            let _ = acked.await;
                        }
                        Ok(())
                    }
                }
            }),
        }
    }
}

/// The answer to a write that was queued: a future of size zero, so boxing it allocates nothing on
/// the request path.
struct Accepted;

impl Future for Accepted {
    type Output = Result<(), ChestError>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Ok(()))
    }
}

impl std::fmt::Debug for Batched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batched")
            .field("chest", &self.queue.name)
            .field("limits", &self.queue.limits)
            .finish_non_exhaustive()
    }
}
