//! [`Durability::Process`](super::Durability::Process): the request path copies each write's
//! records into a memory-mapped segment file (the kernel's page cache outlives the process) and
//! goes on; it makes no syscall and waits for nobody.
//!
//! - `error.rs`: what can go wrong;
//! - `frame.rs`: a frame's layout, checksum, and the records' encoding;
//! - `segment.rs`: one preallocated, mapped segment file;
//! - this file: the shards (one segment being written each, one lock each, picked per thread),
//!   the control segment (the batches formed, with their ids), and the releases;
//! - `recover.rs`: at start, what a crashed process left, into the spool.
//!
//! Files: `<spool>.journal/shard-<k>-<generation>.seg` and `control-<generation>.seg`. A frame is
//! marked released once its records are settled (acknowledged by the chest, dead-lettered,
//! dropped, or in the spool); a segment is removed when it is no longer written to and all its
//! frames are released. A batch the worker forms is written to the control segment (its id and
//! the frames it holds) before its first attempt, so a crash replays it under the same id.

mod error;
mod frame;
mod recover;
mod segment;

use std::cell::RefCell;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub(crate) use error::JournalError;
pub(crate) use recover::recover;
use segment::Segment;

use crate::{BatchId, Record};

/// The most shards, whatever the number of cores.
const MAX_SHARDS: usize = 16;
/// After a segment could not be created, the shard writes in memory only for this long before
/// it tries again (and logs again): a full disk costs no syscall per request, and no log flood.
const RETRY_CREATE: Duration = Duration::from_secs(1);
/// The pseudo-shard of the control segment, in a [`Pos`].
const CONTROL: u16 = u16::MAX;

/// The journal's directory beside a spool file: `<spool>.journal`.
pub(crate) fn dir_of(spool: &Path) -> PathBuf {
    let mut name = spool.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// Where a frame is: its shard (or [`CONTROL`]), segment, offset, and its shard's sequence
/// number (its identity in the control segment and at recovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    shard: u16,
    generation: u32,
    offset: u32,
    seq: u64,
}

/// The journal's sizes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizes {
    pub segment_bytes: usize,
    pub max_bytes: u64,
}

/// The journal of one batched chest.
pub(crate) struct Journal {
    chest: String,
    dir: PathBuf,
    sizes: Sizes,
    /// Bytes of the segment files that exist.
    allocated: AtomicU64,
    shards: Box<[Shard]>,
    control: Shard,
    /// Set at shutdown: the files are gone, later writes are in memory only.
    closed: AtomicBool,
    /// The latest failure, for the worker to put in the stats.
    error: Mutex<Option<String>>,
}

/// A sequence of segments, written one at a time under its own lock.
struct Shard {
    prefix: String,
    lane: Mutex<Lane>,
}

struct Lane {
    current: Option<Segment>,
    /// Older segments with frames not yet released.
    retired: Vec<Segment>,
    next_generation: u32,
    next_seq: u64,
    /// After a failed creation: no new try before this.
    retry_at: Option<Instant>,
}

/// Gives each thread its shard, round-robin on first use.
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SLOT: usize = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
    /// Records are encoded here before the shard's lock is taken.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Journal {
    /// Makes the directory (segments are created on first use).
    pub fn open(chest: &str, dir: PathBuf, sizes: Sizes) -> Result<Journal, JournalError> {
        std::fs::create_dir_all(&dir).map_err(|source| JournalError::Dir {
            path: dir.clone(),
            source,
        })?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = (0..cores.min(MAX_SHARDS))
            .map(|k| Shard::new(format!("shard-{k}")))
            .collect();
        Ok(Journal {
            chest: chest.to_owned(),
            dir,
            sizes,
            allocated: AtomicU64::new(0),
            shards,
            control: Shard::new("control".to_owned()),
            closed: AtomicBool::new(false),
            error: Mutex::new(None),
        })
    }

    /// Copies `records` into this thread's shard. `None`: they are in memory only (the journal
    /// is full, closed, or a segment could not be created; logged, rate-limited).
    pub fn append(&self, records: &[Record]) -> Option<Pos> {
        if self.closed.load(Ordering::Relaxed) {
            return None;
        }
        SCRATCH.with_borrow_mut(|payload| {
            frame::encode_records(records, payload);
            let k = SLOT.with(|slot| *slot) % self.shards.len();
            self.shards[k].append(self, k as u16, records.len() as u32, payload)
        })
    }

    /// Writes a batch's formation to the control segment: its id and its frames.
    fn form(&self, id: BatchId, messages: &[Pos]) -> Option<Pos> {
        let mut payload = Vec::with_capacity(16 + messages.len() * 10);
        let keys = messages.iter().map(|pos| (pos.shard, pos.seq));
        frame::encode_formed(id, keys, &mut payload);
        self.control
            .append(self, CONTROL, messages.len() as u32, &payload)
    }

    /// Marks frames released (theirs, then the control's), removing the segments they empty.
    fn release(&self, messages: &[Pos], formed: Option<Pos>) {
        let mut sorted: Vec<&Pos> = messages.iter().collect();
        sorted.sort_unstable_by_key(|pos| pos.shard);
        for group in sorted.chunk_by(|a, b| a.shard == b.shard) {
            let mut lane = self.shards[usize::from(group[0].shard)].lock();
            for pos in group {
                lane.release(self, pos);
            }
        }
        if let Some(pos) = formed {
            self.control.lock().release(self, &pos);
        }
    }

    /// Releases a single message's frame (one that was never queued, or was evicted).
    pub fn release_one(&self, pos: Pos) {
        self.release(&[pos], None);
    }

    /// Handles of every segment file, to sync off the locks.
    pub fn handles(&self) -> Vec<File> {
        let mut handles = Vec::new();
        for shard in self.shards.iter().chain([&self.control]) {
            let lane = shard.lock();
            let segments = lane.current.iter().chain(&lane.retired);
            handles.extend(segments.filter_map(|s| s.handle().ok()));
        }
        handles
    }

    /// At shutdown: later writes are in memory only, and if nothing is outstanding (every record
    /// was settled or spooled) the files are removed.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let mut outstanding = 0;
        for shard in self.shards.iter().chain([&self.control]) {
            let mut lane = shard.lock();
            outstanding += lane.current.iter().map(|s| s.outstanding).sum::<u64>();
            if let Some(segment) = lane.current.take() {
                lane.retire(self, segment);
            }
            outstanding += lane.retired.iter().map(|s| s.outstanding).sum::<u64>();
        }
        if outstanding == 0 {
            if let Err(e) = std::fs::remove_dir(&self.dir) {
                tracing::warn!(target: "chest", chest = %self.chest, dir = %self.dir.display(),
                    error = %e, "cannot remove the empty journal directory");
            }
        } else {
            tracing::warn!(target: "chest", chest = %self.chest, frames = outstanding,
                "journal frames still outstanding at shutdown: kept, recovered at the next start");
        }
    }

    /// The failure met since the last call, if any.
    pub fn take_error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Logs a failure and keeps it for the stats. Callers rate-limit (see [`RETRY_CREATE`]).
    fn failed(&self, error: &JournalError) {
        tracing::error!(target: "chest", chest = %self.chest, %error,
            "journal cannot take records: they are accepted in memory only (counted unprotected)");
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
    }

    fn create(&self, prefix: &str, generation: u32) -> Result<Segment, JournalError> {
        let size = self.sizes.segment_bytes as u64;
        let before = self.allocated.fetch_add(size, Ordering::Relaxed);
        if before + size > self.sizes.max_bytes {
            self.allocated.fetch_sub(size, Ordering::Relaxed);
            return Err(JournalError::Full {
                path: self.dir.clone(),
                max_bytes: self.sizes.max_bytes,
            });
        }
        let path = self.dir.join(format!("{prefix}-{generation}.seg"));
        Segment::create(path, generation, self.sizes.segment_bytes).inspect_err(|_| {
            self.allocated.fetch_sub(size, Ordering::Relaxed);
        })
    }

    fn remove(&self, segment: Segment) {
        let path = segment.path.clone();
        drop(segment); // unmapped first
        match std::fs::remove_file(&path) {
            Ok(()) => {
                self.allocated
                    .fetch_sub(self.sizes.segment_bytes as u64, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(target: "chest", chest = %self.chest, segment = %path.display(),
                    error = %e, "cannot remove a released journal segment");
            }
        }
    }
}

impl Shard {
    fn new(prefix: String) -> Shard {
        Shard {
            prefix,
            lane: Mutex::new(Lane {
                current: None,
                retired: Vec::new(),
                next_generation: 0,
                next_seq: 0,
                retry_at: None,
            }),
        }
    }

    /// Poison is ignored: a lane's state stays consistent between its statements.
    fn lock(&self) -> MutexGuard<'_, Lane> {
        self.lane.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a frame, moving to a new segment if the current one is full.
    fn append(&self, journal: &Journal, shard: u16, count: u32, payload: &[u8]) -> Option<Pos> {
        let mut lane = self.lock();
        if !lane.current.as_ref().is_some_and(|s| s.fits(payload.len())) {
            lane.rotate(journal, &self.prefix, payload.len())?;
        }
        let seq = lane.next_seq;
        lane.next_seq += 1;
        let segment = lane.current.as_mut()?;
        let offset = segment.append(seq, count, payload);
        Some(Pos {
            shard,
            generation: segment.generation,
            offset,
            seq,
        })
    }
}

impl Lane {
    /// Starts a new segment (the one before is retired); `None` if it cannot be created.
    fn rotate(&mut self, journal: &Journal, prefix: &str, payload: usize) -> Option<()> {
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return None;
        }
        let created = if frame::frame_len(payload) > journal.sizes.segment_bytes {
            Err(JournalError::TooLarge {
                bytes: payload,
                segment_bytes: journal.sizes.segment_bytes,
            })
        } else {
            journal.create(prefix, self.next_generation)
        };
        match created {
            Ok(segment) => {
                self.next_generation += 1;
                self.retry_at = None;
                if let Some(old) = self.current.replace(segment) {
                    self.retire(journal, old);
                }
                Some(())
            }
            Err(error) => {
                journal.failed(&error);
                self.retry_at = Some(Instant::now() + RETRY_CREATE);
                None
            }
        }
    }

    fn retire(&mut self, journal: &Journal, segment: Segment) {
        if segment.outstanding == 0 {
            journal.remove(segment);
        } else {
            self.retired.push(segment);
        }
    }

    fn release(&mut self, journal: &Journal, pos: &Pos) {
        if let Some(current) = self
            .current
            .as_mut()
            .filter(|s| s.generation == pos.generation)
        {
            current.release(pos.offset);
            return;
        }
        let Some(at) = self
            .retired
            .iter()
            .position(|s| s.generation == pos.generation)
        else {
            return;
        };
        self.retired[at].release(pos.offset);
        if self.retired[at].outstanding == 0 {
            let segment = self.retired.swap_remove(at);
            journal.remove(segment);
        }
    }
}

/// The journal frames of a batch (shared by the parts a split makes of it): released when the
/// last part is dropped, i.e. once the batch is settled or in the spool.
pub(crate) struct Claim {
    journal: Arc<Journal>,
    messages: Vec<Pos>,
    formed: OnceLock<Pos>,
}

impl Claim {
    /// The claim on `messages`' frames; `None` if there are none.
    pub fn new(journal: &Arc<Journal>, messages: Vec<Pos>) -> Option<Arc<Claim>> {
        (!messages.is_empty()).then(|| {
            Arc::new(Claim {
                journal: journal.clone(),
                messages,
                formed: OnceLock::new(),
            })
        })
    }

    /// Writes the batch's formation under `id` (once): a crash then replays exactly these
    /// messages under this id. Without it they would be replayed as a new batch.
    pub fn form(&self, id: BatchId) {
        if self.formed.get().is_none() {
            if let Some(pos) = self.journal.form(id, &self.messages) {
                let _ = self.formed.set(pos);
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.journal
            .release(&self.messages, self.formed.get().copied());
    }
}
