//! The worker task: cuts the queue into batches, delivers them, spools what cannot be delivered
//! (or, with `Disk`, everything first), replays the spool in order, and drains on shutdown.

use std::collections::VecDeque;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::OptionFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinError;
use tokio::time::{sleep_until, Instant};

use super::deadletter;
use super::deliver::{deliver, part_id, Delivery};
use super::ledger::Outcome;
use super::policy::OverflowPolicy;
use super::queue::{Batch, Queue};
use super::spool::{Loaded, Spool, SpoolError, Totals};
use super::stats::LastError;
use super::wal_sync::SyncTimer;
use crate::{BatchId, BoxFuture, Chest, Record, RetryPolicy};

/// The longest the worker sleeps while records may be queued: how late it may notice them.
const TICK: Duration = Duration::from_millis(50);

/// The spool as the worker holds it: shared with blocking tasks, one operation at a time.
pub(crate) struct SpoolSlot {
    pub spool: Option<Arc<Mutex<Spool>>>,
    pub path: PathBuf,
    pub durable: bool,
    pub max_bytes: u64,
    /// Bumped when a bad file is set aside while running: batches loaded from the old file are
    /// then treated as memory batches.
    pub generation: u64,
    /// `Process`: when the commits made without `fsync` are synced.
    pub sync: SyncTimer,
}

/// Where a batch being delivered came from.
enum Origin {
    /// The memory queue (or held back after a failure): its records count as in flight.
    Memory,
    /// Spool rows: its records count in the spool until settled.
    Spool { ids: Vec<i64>, generation: u64 },
}

/// What the worker remembers of the spool batch being replayed.
struct Replaying {
    records: u64,
    bytes: u64,
    /// Its rows, which eviction must leave alone.
    ids: Vec<i64>,
}

/// The spool batch after the one being replayed, loaded while that one is delivered, so that
/// reading the spool costs the replay no time of its own.
enum Prefetch {
    Loading(tokio::task::JoinHandle<Result<(Loaded, Totals), SpoolError>>),
    Ready(Loaded),
}

/// A prefetch, and what it may be used after: the same spool file, and no eviction since it
/// started (an eviction may have taken its rows).
struct Prefetched {
    prefetch: Prefetch,
    generation: u64,
    evictions: u64,
}

/// A replayed batch whose rows are being removed from the spool while the next one is
/// delivered: booked as replayed once that is done.
struct Removing {
    task: tokio::task::JoinHandle<Result<((), Totals), SpoolError>>,
    outcome: Outcome,
    generation: u64,
}

struct Settled {
    origin: Origin,
    batch: Batch,
    delivery: Delivery,
}

pub(crate) struct Worker {
    pub queue: Arc<Queue>,
    pub chest: Arc<dyn Chest>,
    pub retry: RetryPolicy,
    pub max_in_flight: usize,
    pub spool: SpoolSlot,
    pub dead_letter: Option<PathBuf>,
    /// Told when the worker has finished.
    pub done: watch::Sender<bool>,
    /// Batches given up on that no spool could take: delivered before anything else.
    held: VecDeque<Batch>,
    deliveries: FuturesUnordered<BoxFuture<'static, Settled>>,
    /// The spool batch being replayed (one at a time, to keep order).
    replaying: Option<Replaying>,
    /// The next one, being read meanwhile.
    prefetched: Option<Prefetched>,
    /// The one replayed before, being removed from the spool meanwhile.
    removing: Option<Removing>,
    /// Spool operations that evicted rows.
    evictions: u64,
    /// After a batch was given up: no delivery starts before this.
    down_until: Option<Instant>,
    /// When spooled batches are due for replay.
    spool_due: Option<Instant>,
    stop: watch::Sender<bool>,
}

impl Worker {
    pub fn new(
        queue: Arc<Queue>,
        chest: Arc<dyn Chest>,
        retry: RetryPolicy,
        max_in_flight: usize,
        spool: SpoolSlot,
        dead_letter: Option<PathBuf>,
        done: watch::Sender<bool>,
    ) -> Self {
        let spool_due = (queue.stats().spool_records > 0).then(Instant::now);
        Worker {
            queue,
            chest,
            retry,
            max_in_flight,
            spool,
            dead_letter,
            done,
            held: VecDeque::new(),
            deliveries: FuturesUnordered::new(),
            replaying: None,
            prefetched: None,
            removing: None,
            evictions: 0,
            down_until: None,
            spool_due,
            stop: watch::channel(false).0,
        }
    }

    fn disk(&self) -> bool {
        self.queue.limits.durability.spooled_first() && self.spool.spool.is_some()
    }

    pub async fn run(mut self) {
        let mut stop_at: Option<Instant> = None;
        loop {
            let closing = self.queue.lock().closing;
            if let Some(deadline) = closing {
                let now = Instant::now();
                let at = *stop_at.get_or_insert_with(|| {
                    let left = deadline.saturating_duration_since(now);
                    deadline - (left / 4).min(Duration::from_secs(2))
                });
                // With the chest down, waiting for it is pointless when a spool can take the rest.
                let down = self.down_until.is_some() && self.spool.spool.is_some();
                if now >= at || down || self.drained() {
                    break;
                }
            }
            if self.disk() {
                self.commit().await;
            } else if self.spool.spool.is_some() && self.queue.memory_above_spill_mark() {
                self.spill().await;
            }
            if let Some(journal) = &self.queue.journal {
                if let Some(error) = journal.take_error() {
                    self.queue.set_last_error(error);
                }
                // Writers do not tell the worker they wrote: the journal is synced on the timer.
                self.spool.sync.committed();
                self.sync_if_due(false).await;
            }
            self.start_deliveries(closing.is_some()).await;
            let wake_at = self
                .next_wake(closing.is_some())
                .into_iter()
                .chain(stop_at)
                .chain(self.spool.sync.due_at())
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                Some(settled) = self.deliveries.next(), if !self.deliveries.is_empty() => {
                    self.settle(settled).await;
                }
                Some(joined) = OptionFuture::from(self.removing.as_mut().map(|r| &mut r.task)) => {
                    self.removed(joined).await;
                }
                () = self.queue.wake.notified() => {}
                () = sleep_until(wake_at) => {}
            }
        }
        self.finish().await;
    }

    /// Whether nothing is left to do before shutting down: memory is empty, nothing is being
    /// delivered, and the spool is empty or its chest is down.
    fn drained(&self) -> bool {
        let stats = self.queue.stats();
        stats.in_memory() == 0
            && self.deliveries.is_empty()
            && (stats.spool_records == 0 || self.down_until.is_some())
    }

    /// The earliest time the worker has something to do on its own, if any (deliveries ending,
    /// writes and shutdown wake it too).
    fn next_wake(&self, closing: bool) -> Option<Instant> {
        let now = Instant::now();
        if let Some(until) = self.down_until.filter(|until| *until > now) {
            return Some(until);
        }
        if self.deliveries.len() >= self.max_in_flight {
            return None;
        }
        let spooled = self.queue.stats().spool_records > 0;
        let due = if spooled {
            self.spool_due.filter(|_| self.replaying.is_none())
        } else if self.disk() {
            None
        } else {
            // The tick on which the worker notices new messages (writers do not wake it).
            let tick = self.queue.limits.linger.min(TICK);
            Some(self.queue.due_at().unwrap_or(now + tick))
        };
        if closing {
            // Shutting down, everything is due: look again soon.
            due.map(|at| at.min(now + Duration::from_millis(10)))
        } else {
            due
        }
    }

    /// Starts deliveries while there is room: held batches first, then the spool (oldest first,
    /// one batch at a time), then the memory queue (not with `Disk`: there the spool is the queue).
    async fn start_deliveries(&mut self, closing: bool) {
        let now = Instant::now();
        if self.down_until.is_some_and(|until| until > now) {
            return;
        }
        while self.deliveries.len() < self.max_in_flight {
            if let Some(batch) = self.held.pop_front() {
                self.launch(Origin::Memory, batch);
                continue;
            }
            if self.queue.stats().spool_records > 0 {
                let due = closing
                    || self.spool_due.is_some_and(|at| at <= now)
                    || self.queue.stats().spool_records >= self.queue.limits.batch_records;
                if self.replaying.is_some() || !due || !self.replay().await {
                    return;
                }
                continue;
            }
            if self.disk() {
                return;
            }
            let due = closing || self.queue.due_at().is_some_and(|at| at <= now);
            match due.then(|| self.queue.take_batch()).flatten() {
                Some(batch) => self.launch(Origin::Memory, batch),
                None => return,
            }
        }
    }

    fn launch(&mut self, origin: Origin, mut batch: Batch) {
        // Writers never wait for the chest: a memory batch releases any still waiting.
        batch.acks.clear();
        let chest = self.chest.clone();
        let retry = self.retry;
        let mut stop = self.stop.subscribe();
        let id = batch.form();
        self.deliveries.push(Box::pin(async move {
            let delivery = deliver(&*chest, id, &batch.records, &retry, &mut stop).await;
            Settled {
                origin,
                batch,
                delivery,
            }
        }));
    }

    /// Loads the oldest spooled batches and starts replaying them. `false` if nothing could be
    /// loaded.
    async fn replay(&mut self) -> bool {
        let loaded = match self.take_prefetched().await {
            Some(loaded) => loaded,
            None => {
                let (records, bytes) = self.batch_limits();
                let load = move |s: &mut Spool| s.load(records, bytes, None);
                match self.with_spool(load).await {
                    None => return false,
                    Some(Ok((loaded, totals))) => self.booked(loaded, totals),
                    Some(Err(())) => {
                        self.spool_due = Some(Instant::now() + self.retry.max_backoff);
                        return false;
                    }
                }
            }
        };
        if loaded.ids.is_empty() {
            self.spool_due = None;
            return false;
        }
        if self.queue.stats().spool_records > loaded.records.len() as u64 {
            self.prefetch(loaded.last);
        }
        let bytes = loaded.records.iter().map(|r| r.approx_size() as u64).sum();
        self.replaying = Some(Replaying {
            records: loaded.records.len() as u64,
            bytes,
            ids: loaded.ids.clone(),
        });
        let origin = Origin::Spool {
            ids: loaded.ids,
            generation: self.spool.generation,
        };
        let batch = Batch {
            seq: loaded.seq,
            id: Some(loaded.batch_id),
            records: loaded.records,
            bytes,
            acks: Vec::new(),
            claim: None,
        };
        self.launch(origin, batch);
        true
    }

    fn batch_limits(&self) -> (usize, u64) {
        let limits = &self.queue.limits;
        (limits.batch_records as usize, limits.batch_bytes)
    }

    /// Books what a load found (rows it could not decode are gone) and returns the batch.
    fn booked(&self, loaded: Loaded, totals: Totals) -> Loaded {
        self.queue.update(|s| {
            s.ledger.undecodable_in_spool(loaded.undecodable);
            s.ledger.spool_totals(totals);
        });
        loaded
    }

    /// Starts reading the batch after `after` from the spool, on the blocking pool.
    fn prefetch(&mut self, after: (i64, i64)) {
        let (records, bytes) = self.batch_limits();
        if let Some(task) = self.spawn_spool(move |s| s.load(records, bytes, Some(after))) {
            self.prefetched = Some(Prefetched {
                prefetch: Prefetch::Loading(task),
                generation: self.spool.generation,
                evictions: self.evictions,
            });
        }
    }

    /// Waits for the prefetch to be read; `None` if it failed or was read from a file set aside
    /// since (whose records were counted with that file).
    async fn settle_prefetch(&mut self) -> Option<Prefetched> {
        let mut prefetched = self.prefetched.take()?;
        if let Prefetch::Loading(task) = prefetched.prefetch {
            let joined = task.await;
            if !matches!(joined, Ok(Ok(_))) {
                // The failure may set the spool aside: nothing may be left pending in it.
                self.finish_removing().await;
            }
            if prefetched.generation != self.spool.generation {
                return None;
            }
            // Nothing to book: a read ahead changes no count (see `Spool::load`), and its
            // totals may be older than those booked since.
            let Ok((loaded, _)) = self.spool_result(joined).await else {
                return None;
            };
            prefetched.prefetch = Prefetch::Ready(loaded);
        }
        Some(prefetched)
    }

    /// The prefetched batch, if it is still the next one to replay.
    async fn take_prefetched(&mut self) -> Option<Loaded> {
        let prefetched = self.settle_prefetch().await?;
        let current = (self.spool.generation, self.evictions);
        match prefetched.prefetch {
            Prefetch::Ready(loaded)
                if (prefetched.generation, prefetched.evictions) == current
                    && !loaded.ids.is_empty() =>
            {
                Some(loaded)
            }
            // Its rows stay in the spool (named, if they were): the next load reads them again.
            _ => None,
        }
    }

    /// Runs a spool operation on the blocking pool, then brings the spool gauges up to date in
    /// the same lock as `apply` (which gets the operation's value and the state). A corrupt file
    /// is set aside and replaced. `None` without a spool; `Some(Err(()))` if the operation
    /// failed (logged, and kept as the last error).
    async fn with_spool<T: Send + 'static>(
        &mut self,
        op: impl FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
    ) -> Option<Result<(T, Totals), ()>> {
        // Every other spool operation sees the replayed rows gone, and their records booked.
        self.finish_removing().await;
        let task = self.spawn_spool(op)?;
        Some(self.spool_result(task.await).await)
    }

    /// Starts a spool operation on the blocking pool; `None` without a spool.
    fn spawn_spool<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
    ) -> Option<tokio::task::JoinHandle<Result<(T, Totals), SpoolError>>> {
        let spool = self.spool.spool.clone()?;
        Some(tokio::task::spawn_blocking(move || {
            let mut spool = spool.lock().unwrap_or_else(|p| p.into_inner());
            op(&mut spool).map(|value| (value, spool.totals()))
        }))
    }

    /// What a spool operation gave; a failure is handled as [`Self::with_spool`] says.
    async fn spool_result<T>(
        &mut self,
        joined: Result<Result<(T, Totals), SpoolError>, JoinError>,
    ) -> Result<(T, Totals), ()> {
        match joined {
            Ok(Ok((value, totals))) => Ok((value, totals)),
            Ok(Err(error)) => {
                self.spool_failed(error).await;
                Err(())
            }
            Err(join) => {
                self.queue
                    .set_last_error(format!("spool task failed: {join}"));
                Err(())
            }
        }
    }

    /// Logs a spool failure; a corrupt file is renamed aside and a new one opened, and the
    /// records it held (but a batch being replayed) are counted as dropped.
    async fn spool_failed(&mut self, error: SpoolError) {
        tracing::error!(target: "chest", chest = %self.queue.name, %error, "spool operation failed");
        self.queue.set_last_error(error.to_string());
        let path = self.spool.path.clone();
        let Some(renamed) = error.set_aside_if_corrupt(&path) else {
            return;
        };
        if let Err(e) = renamed {
            tracing::error!(target: "chest", chest = %self.queue.name, spool = %path.display(),
                error = %e, "cannot set the corrupt spool aside; continuing without a spool");
            self.spool.spool = None;
            self.queue.set_durable(false);
            return;
        }
        let durable = self.spool.durable;
        let reopened = tokio::task::spawn_blocking(move || Spool::open_with(&path, durable))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        self.spool.generation += 1;
        let (replaying, replaying_bytes) = self
            .replaying
            .as_ref()
            .map_or((0, 0), |r| (r.records, r.bytes));
        self.queue.set_durable(reopened.is_ok());
        self.spool.spool = match reopened {
            Ok(spool) => Some(Arc::new(Mutex::new(spool))),
            Err(e) => {
                tracing::error!(target: "chest", chest = %self.queue.name, error = %e,
                    "cannot open a new spool; continuing without one");
                None
            }
        };
        self.queue
            .update(|s| s.ledger.spool_set_aside(replaying, replaying_bytes));
        tracing::error!(target: "chest", chest = %self.queue.name,
            "corrupt spool set aside and replaced");
    }

    /// Appends batches taken out of memory to the spool, within its bound and the overflow
    /// policy. Returns the batches that did not fit (or all of them if the spool failed); the
    /// appended ones leave the in-flight gauges.
    async fn spool_batches(&mut self, mut batches: Vec<Batch>) -> Vec<Batch> {
        if batches.is_empty() {
            return batches;
        }
        for batch in batches.iter_mut().filter(|b| b.claim.is_some()) {
            // Spooled under an id, and formed first: a crash before the release finds the same
            // id in the spool and in the journal.
            batch.form();
        }
        let max = self.spool.max_bytes;
        let evict = self.queue.limits.overflow == OverflowPolicy::DropOldest;
        let keep: Vec<i64> = self
            .replaying
            .as_ref()
            .map_or_else(Vec::new, |r| r.ids.clone());
        let batches = Arc::new(batches);
        let shared = batches.clone();
        let result = self
            .with_spool(move |s| {
                let list: Vec<(u64, Option<BatchId>, &[Record])> = shared
                    .iter()
                    .map(|b| (b.seq, b.id, &b.records[..]))
                    .collect();
                s.append_bounded(&list, max, evict, &keep)
            })
            .await;
        let batches = Arc::try_unwrap(batches).unwrap_or_else(|arc| {
            // The blocking task is over, so this is the only reference; cloning is a fallback.
            arc.iter().map(Batch::duplicate).collect()
        });
        let (evicted, appended, totals) = match result {
            Some(Ok(((evicted, appended), totals))) => (evicted, appended, totals),
            _ => return batches,
        };
        let (records, bytes) = batches.iter().fold((0, 0), |(r, b), batch| {
            (r + batch.records.len() as u64, b + batch.bytes)
        });
        if evicted > 0 {
            self.evictions += 1;
        }
        self.queue.update(|s| {
            s.ledger.evicted_from_spool(evicted);
            if appended {
                s.ledger.spooled(records, bytes);
            }
            s.ledger.spool_totals(totals);
        });
        if !appended {
            return batches;
        }
        let now = Instant::now();
        let linger = if self.disk() {
            self.queue.limits.linger
        } else {
            Duration::ZERO
        };
        self.spool_due = Some(self.spool_due.unwrap_or(now + linger).min(now + linger));
        Vec::new()
    }

    /// `Disk`: moves every queued message into the spool in one transaction (group commit) and
    /// releases their writers. What the spool cannot take stays in memory (held), released too.
    async fn commit(&mut self) {
        let batches = self.drain_queue(|_| true);
        let taken = batches.len();
        let unspooled = self.spool_batches(batches).await;
        if unspooled.len() < taken {
            self.spool.sync.committed();
        }
        if !unspooled.is_empty() {
            let records: usize = unspooled.iter().map(|b| b.records.len()).sum();
            tracing::warn!(target: "chest", chest = %self.queue.name, records,
                "the spool cannot take these records (full or failing): kept in memory only");
            self.queue.update(|s| s.ledger.unprotected(records as u64));
        }
        self.hold(unspooled);
        self.sync_if_due(false).await;
    }

    /// `Process`: syncs the journal and the spool when due (or, with `force`, if anything waits).
    async fn sync_if_due(&mut self, force: bool) {
        let spool = self
            .spool
            .spool
            .is_some()
            .then_some(self.spool.path.as_path());
        let journal = self.queue.journal.as_deref();
        let _ = self
            .spool
            .sync
            .sync_if_due(spool, journal, &self.queue.name, force)
            .await;
    }

    /// `Memory`: moves the oldest queued records to the spool until memory is under half the
    /// spill mark.
    async fn spill(&mut self) {
        let batches = self.drain_queue(Queue::queue_above_half_spill_mark);
        let unspooled = self.spool_batches(batches).await;
        self.hold(unspooled);
    }

    /// Takes batches from the queue while `more` says so.
    fn drain_queue(&self, more: impl Fn(&Queue) -> bool) -> Vec<Batch> {
        let mut batches = Vec::new();
        while more(&self.queue) {
            match self.queue.take_batch() {
                Some(batch) => batches.push(batch),
                None => break,
            }
        }
        batches
    }

    /// Keeps batches in memory, to be delivered before anything else. Their writers (`Disk`) are
    /// released: the records are accepted, in memory only.
    fn hold(&mut self, batches: Vec<Batch>) {
        for mut batch in batches {
            batch.acks.clear();
            self.held.push_back(batch);
        }
    }

    /// Accounts for a finished delivery: the refused records go to the dead-letter file, the
    /// settled ones are booked where they went, what was given up goes back to the spool (or is
    /// held), and a chest that made the delivery give up pauses the worker.
    async fn settle(&mut self, settled: Settled) {
        let Settled {
            origin,
            batch,
            delivery,
        } = settled;
        if matches!(origin, Origin::Spool { .. }) {
            self.replaying = None;
        }
        let outcome = Outcome {
            written: delivery.written,
            refused: delivery.dead.len() as u64,
            dead_lettered: self.dead_letter(&batch.records, &delivery.dead).await,
        };
        let rest = batch.parts(&delivery.gave_up);
        let last_error = delivery.last_error.map(LastError::now);
        self.queue.update(|s| {
            s.ledger.retried(delivery.retries);
            s.ledger.already_stored(delivery.already_stored);
            if let Some(error) = last_error {
                s.ledger.failed(error);
            }
        });
        let gave_up = !rest.is_empty();
        if gave_up {
            // The parts given up go back to the spool ahead of the prefetched batch.
            let _ = self.settle_prefetch().await;
        }
        match origin {
            Origin::Spool { ids, generation } if generation == self.spool.generation => {
                let remaining = rest
                    .into_iter()
                    .map(|part| (part.seq, part.id.unwrap_or_default(), part.records))
                    .collect();
                self.settle_replay(ids, outcome, remaining).await;
            }
            // From memory, or from a spool file set aside meanwhile (its records moved to
            // flight then).
            _ => {
                let rest_bytes: u64 = rest.iter().map(|part| part.bytes).sum();
                let settled_bytes = batch.bytes.saturating_sub(rest_bytes);
                self.settle_flight(outcome, settled_bytes, rest).await;
            }
        }
        self.pause_if_down(gave_up);
    }

    /// A replayed spool batch settled: its rows are replaced by `remaining` (the parts given up,
    /// each with its id), then the settled records leave the spool in the books. If the rows
    /// could not be updated they will be replayed again under the same id (a chest that keeps
    /// ids stores nothing twice), so their records stay counted in the spool.
    ///
    /// A batch settled whole is removed while the next one is delivered (see [`Removing`]): the
    /// replay then waits for the chest only, as live delivery does.
    async fn settle_replay(
        &mut self,
        ids: Vec<i64>,
        outcome: Outcome,
        remaining: Vec<(u64, BatchId, Vec<Record>)>,
    ) {
        self.finish_removing().await;
        if !remaining.is_empty() {
            let result = self.with_spool(move |s| s.settle(&ids, remaining)).await;
            if let Some(Ok(((), totals))) = result {
                self.book_replayed(outcome, totals);
            }
            return;
        }
        if let Some(task) = self.spawn_spool(move |s| s.settle(&ids, Vec::new())) {
            self.removing = Some(Removing {
                task,
                outcome,
                generation: self.spool.generation,
            });
        }
    }

    /// Waits for the removal of the batch replayed before, if any, and books it.
    async fn finish_removing(&mut self) {
        if let Some(removing) = self.removing.as_mut() {
            let joined = (&mut removing.task).await;
            self.removed(joined).await;
        }
    }

    /// Books the removal of a replayed batch's rows: its records were replayed.
    async fn removed(&mut self, joined: Result<Result<((), Totals), SpoolError>, JoinError>) {
        let Some(removing) = self.removing.take() else {
            return;
        };
        let result = self.spool_result(joined).await;
        if let Ok(((), totals)) = result {
            if removing.generation == self.spool.generation {
                self.book_replayed(removing.outcome, totals);
            }
        }
    }

    fn book_replayed(&mut self, outcome: Outcome, totals: Totals) {
        self.queue.update(|s| {
            s.ledger.replayed(outcome);
            s.ledger.spool_totals(totals);
        });
        if self.queue.stats().spool_records == 0 {
            self.spool_due = None;
        }
    }

    /// A batch in flight settled (`bytes`: those of its settled records): they leave flight,
    /// and `rest`, the parts given up (each with its id), goes to the spool or, if none takes
    /// it, is held to be delivered first.
    async fn settle_flight(&mut self, outcome: Outcome, bytes: u64, rest: Vec<Batch>) {
        self.queue.update(|s| s.ledger.delivered(outcome, bytes));
        if rest.is_empty() {
            return;
        }
        let unspooled = self.spool_batches(rest).await;
        for batch in unspooled.into_iter().rev() {
            self.held.push_front(batch);
        }
    }

    /// After a delivery: records given up mean the chest is down, so no delivery starts for
    /// `max_backoff`; otherwise it is up.
    fn pause_if_down(&mut self, gave_up: bool) {
        if gave_up {
            let pause = self.retry.max_backoff;
            tracing::warn!(target: "chest", chest = %self.queue.name, ?pause,
                "chest unavailable: its records wait (spooled if possible) and are retried later");
            self.down_until = Some(Instant::now() + pause);
        } else {
            self.down_until = None;
        }
    }

    /// Writes the records at `dead` (index in `records`, error) to the dead-letter file. `false`
    /// if there is none or it failed (the records are then logged).
    async fn dead_letter(&mut self, records: &[Record], dead: &[(usize, String)]) -> bool {
        if dead.is_empty() {
            return true;
        }
        let dead: Vec<(Record, String)> = dead
            .iter()
            .map(|(at, error)| (records[*at].clone(), error.clone()))
            .collect();
        let written = match self.dead_letter.clone() {
            Some(path) => {
                let entries = dead.clone();
                let result =
                    tokio::task::spawn_blocking(move || deadletter::append(&path, &entries)).await;
                match result {
                    Ok(Ok(())) => true,
                    Ok(Err(e)) => {
                        self.queue
                            .set_last_error(format!("cannot write the dead-letter file: {e}"));
                        false
                    }
                    Err(e) => {
                        self.queue
                            .set_last_error(format!("dead-letter task failed: {e}"));
                        false
                    }
                }
            }
            None => false,
        };
        if !written {
            for (record, error) in &dead {
                tracing::error!(target: "chest", chest = %self.queue.name,
                    request_id = %record.request_id, name = %record.name, %error,
                    "record refused for good and no dead-letter file took it; dropped");
            }
        }
        written
    }

    /// Shutdown's end: stops deliveries (what they did not write is given up), settles them,
    /// and moves everything left in memory to the spool; what no spool takes is dropped.
    async fn finish(mut self) {
        self.stop.send_replace(true);
        while let Some(settled) = self.deliveries.next().await {
            self.settle(settled).await;
        }
        // What it read stays in the spool; what it found undecodable is booked.
        let _ = self.settle_prefetch().await;
        self.finish_removing().await;
        let mut left: Vec<Batch> = self.held.drain(..).collect();
        left.extend(self.drain_queue(|_| true));
        let unspooled = self.spool_batches(left).await;
        let lost: u64 = unspooled.iter().map(|b| b.records.len() as u64).sum();
        if lost > 0 {
            tracing::error!(target: "chest", chest = %self.queue.name, records = lost,
                "shutdown: records neither written nor spooled; dropped");
        }
        let (records, bytes) = unspooled.iter().fold((0, 0), |(r, b), batch| {
            (r + batch.records.len() as u64, b + batch.bytes)
        });
        drop(unspooled); // what is lost is released from the journal too, counted below
        self.spool.sync.committed();
        self.sync_if_due(true).await;
        if let Some(journal) = &self.queue.journal {
            journal.close();
        }
        self.queue.update(|s| {
            s.ledger.abandoned(records, bytes);
            s.closed = true;
        });
        self.done.send_replace(true);
    }
}

impl Batch {
    /// The records of each of `ranges`, in order, as batches of their own: same order key, no
    /// acks, and each the id its writes carried ([`part_id`]), so that a retry is recognised.
    fn parts(&self, ranges: &[Range<usize>]) -> Vec<Batch> {
        let id = self.id.unwrap_or_default();
        ranges
            .iter()
            .filter(|range| !range.is_empty())
            .map(|range| {
                let records = self.records[range.clone()].to_vec();
                Batch {
                    seq: self.seq,
                    id: Some(part_id(id, self.records.len(), range)),
                    bytes: records.iter().map(|r| r.approx_size() as u64).sum(),
                    records,
                    acks: Vec::new(),
                    claim: self.claim.clone(),
                }
            })
            .collect()
    }

    /// A copy (the records are cheap to clone: their strings are shared).
    fn duplicate(&self) -> Batch {
        Batch {
            seq: self.seq,
            id: self.id,
            records: self.records.clone(),
            bytes: self.bytes,
            acks: Vec::new(),
            claim: self.claim.clone(),
        }
    }

    /// Gives the batch its id, if it has none yet, and writes its formation to the journal (if
    /// its records are there) before it leaves memory: its first attempt, or the spool.
    fn form(&mut self) -> BatchId {
        let id = *self.id.get_or_insert_with(BatchId::new);
        if let Some(claim) = &self.claim {
            claim.form(id);
        }
        id
    }
}
