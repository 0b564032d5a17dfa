//! What a [`Batched`](super::Batched) chest does when it is full, and when a write counts as
//! accepted.

use std::time::Duration;

/// What to do when memory (and the spool) are full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Evict the oldest queued records (and, with a full spool, its oldest batches) to make room.
    #[default]
    DropOldest,
    /// Drop the records being written.
    DropNewest,
    /// Refuse the records being written: `write` returns an error.
    Reject,
    /// Wait up to the timeout for room, then drop the records being written.
    Block(Duration),
}

/// When a write counts as accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Accepted once in the memory queue; spooled only on failure, a full queue or shutdown. A
    /// crash loses what is in memory.
    #[default]
    Memory,
    /// Accepted once in the spool (group commit, `synchronous=FULL`): a crash loses nothing that
    /// was accepted. Needs a [`spool`](super::BatchedBuilder::spool).
    Disk,
    /// Accepted once copied into a memory-mapped journal segment, i.e. in the kernel's page cache,
    /// which outlives the process: the process killed loses nothing that was accepted; the
    /// machine losing power loses at most the writes of the last
    /// [`sync_every`](super::BatchedBuilder::sync_every) (the worker syncs the journal and the
    /// spool on that timer and at shutdown). The write makes no syscall and waits for nobody.
    /// Needs a [`spool`](super::BatchedBuilder::spool): the journal is `<spool>.journal/`, and
    /// what a crash left in it goes into the spool at the next start. If the journal cannot
    /// take a write (disk full, read-only, at its cap), the write is accepted in memory, as
    /// with `Memory`, and counted in [`Stats::unprotected`](super::Stats::unprotected).
    Process,
}

impl Durability {
    /// Whether writers wait for their records to be in the spool (`Disk`).
    pub(crate) fn spooled_first(self) -> bool {
        self == Durability::Disk
    }
}
