//! What a [`Batched`](super::Batched) chest did with its records: [`Stats`].

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::record::format_utc_micros;

/// A snapshot of one batched chest's counters, from [`Batched::stats`](super::Batched::stats).
///
/// Counters (`enqueued` … `spool_set_aside`) only grow; gauges (`queue_depth` … `spool_bytes`)
/// say where records are now. All counts are records unless the name says otherwise.
///
/// # Where every record is
///
/// Each record handed to [`Chest::write`](crate::Chest::write) in this process (`enqueued`), and
/// each record found in the spool when it was opened (`restored`), is in exactly one place:
///
/// ```text
/// enqueued + restored = written + dead_lettered + dropped.total()
///                       + spool_records + queue_depth + in_flight
/// ```
///
/// The snapshot is taken under the same lock that moves records between those places, so the
/// equation holds in every snapshot ([`Stats::is_balanced`] checks it). A record replayed from the
/// spool stays in `spool_records` until its write has settled, then moves to `written` (or
/// `dead_lettered`); `replayed` counts those moves.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use chest::{batch::Batched, Chest, MemoryChest, Record};
///
/// let batched = Batched::builder(MemoryChest::new()).build()?;
/// batched.write(&[Record::new("r1", "n", 1, "GET", None)]).await?;
/// let stats = batched.stats();
/// assert_eq!(stats.enqueued, 1);
/// assert!(stats.is_balanced());
/// println!("{}", serde_json::to_string(&stats)?);
/// batched.shutdown(std::time::Duration::from_secs(5)).await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// The wrapped chest's name.
    pub chest: String,
    /// Records handed to `write`, whatever happened to them next (refused ones included).
    pub enqueued: u64,
    /// Records that were in the spool when it was opened (left by an earlier run).
    pub restored: u64,
    /// Records the wrapped chest accepted.
    pub written: u64,
    /// Write attempts that failed with a retryable error and were tried again.
    pub retried: u64,
    /// Batches (or parts of one) the wrapped chest recognised as stored already: an earlier
    /// attempt had reached it without its answer coming back, and nothing was stored twice (see
    /// [`Chest::write_batch`](crate::Chest::write_batch)). Their records count in `written`.
    pub already_stored: u64,
    /// Records put into the spool (a record spooled twice counts twice).
    pub spooled: u64,
    /// Records read back from the spool and settled (written or dead-lettered).
    pub replayed: u64,
    /// Records given up on, by reason.
    pub dropped: Dropped,
    /// Records the wrapped chest refused for good, written to the dead-letter file.
    pub dead_lettered: u64,
    /// Records waiting in the memory queue.
    pub queue_depth: u64,
    /// Approximate bytes ([`Record::approx_size`](crate::Record::approx_size)) of the records in the memory queue.
    pub queue_bytes: u64,
    /// Records taken out of the queue that are neither settled nor in the spool: being written,
    /// waiting for a retry, or being moved to the spool.
    pub in_flight: u64,
    /// Records in the spool.
    pub spool_records: u64,
    /// Batches (rows) in the spool.
    pub spool_batches: u64,
    /// Bytes of the spooled batches (their encoded size; the file is a little larger).
    pub spool_bytes: u64,
    /// With [`Durability::Disk`](super::Durability::Disk) or
    /// [`Durability::Process`](super::Durability::Process): records accepted in memory only,
    /// because the spool could not take them (full, disk full, read-only, gone). A crash loses
    /// them, as with `Memory`. They are counted where they are, like any other record; this
    /// counter only says they were not protected.
    pub unprotected: u64,
    /// Spool files found unreadable or corrupt and renamed aside.
    pub spool_set_aside: u64,
    /// Journal frames ([`Durability::Process`](super::Durability::Process)) found torn or
    /// corrupt at start, and cut: their records were lost in the crash (they are in no other
    /// count; a frame whose write was cut before its header was never acknowledged and is not
    /// counted).
    pub journal_torn: u64,
    /// The latest failure (of the wrapped chest, the spool or the dead-letter file).
    pub last_error: Option<LastError>,
}

impl Stats {
    /// Whether every record is accounted for (see [the equation](Stats#where-every-record-is)).
    pub fn is_balanced(&self) -> bool {
        self.enqueued + self.restored
            == self.written
                + self.dead_lettered
                + self.dropped.total()
                + self.spool_records
                + self.queue_depth
                + self.in_flight
    }

    /// Records in memory: queued or in flight.
    pub fn in_memory(&self) -> u64 {
        self.queue_depth + self.in_flight
    }
}

/// Records given up on, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Dropped {
    /// Evicted from a full queue or spool to make room, under [`OverflowPolicy::DropOldest`](super::OverflowPolicy::DropOldest).
    pub oldest: u64,
    /// Not queued because the queue was full, under [`OverflowPolicy::DropNewest`](super::OverflowPolicy::DropNewest)
    /// (or `DropOldest` when nothing older could be evicted).
    pub newest: u64,
    /// Refused with an error because the queue was full, under [`OverflowPolicy::Reject`](super::OverflowPolicy::Reject).
    pub rejected: u64,
    /// Not queued because the queue stayed full for the whole [`OverflowPolicy::Block`](super::OverflowPolicy::Block) timeout.
    pub block_timeout: u64,
    /// Refused for good by the wrapped chest when no dead-letter file could take them.
    pub permanent_error: u64,
    /// Neither written nor spooled when shutdown ended (no usable spool), or written after shutdown.
    pub shutdown: u64,
    /// In a spool batch that could not be decoded, or in a spool file set aside while running.
    pub spool_corrupt: u64,
}

impl Dropped {
    /// All dropped records.
    pub fn total(&self) -> u64 {
        self.oldest
            + self.newest
            + self.rejected
            + self.block_timeout
            + self.permanent_error
            + self.shutdown
            + self.spool_corrupt
    }
}

/// A failure, as text, and when it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LastError {
    /// The error's message (it names the chest; never a secret).
    pub message: String,
    /// When, as UTC RFC 3339 with microseconds.
    pub at: String,
}

impl LastError {
    pub(crate) fn now(message: String) -> Self {
        LastError {
            message,
            at: utc_now(),
        }
    }
}

/// The current time as UTC RFC 3339 with microseconds.
pub(crate) fn utc_now() -> String {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    format_utc_micros(micros)
}
