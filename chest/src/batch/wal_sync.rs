//! [`Durability::Process`](super::Durability::Process): the journal's segments and the spool are
//! written without `fsync` (they are in the kernel's page cache, which outlives the process), and
//! synced on a timer (`sync_every`) and at shutdown, which bounds what a power loss can take.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use super::journal::Journal;

/// When the spool's log was last synced, and whether commits have been made since.
#[derive(Debug)]
pub(crate) struct SyncTimer {
    /// `None`: every commit syncs itself (`Disk`) or nothing is durable (`Memory`).
    pub every: Option<Duration>,
    /// The oldest commit not yet synced.
    pending_since: Option<Instant>,
}

impl SyncTimer {
    pub fn new(every: Option<Duration>) -> Self {
        SyncTimer {
            every,
            pending_since: None,
        }
    }

    /// A commit was made: it is due for a sync within `every`.
    pub fn committed(&mut self) {
        if self.every.is_some() {
            self.pending_since.get_or_insert_with(Instant::now);
        }
    }

    /// When the next sync is due, if a commit is waiting for one.
    pub fn due_at(&self) -> Option<Instant> {
        Some(self.pending_since? + self.every?)
    }

    /// Whether a sync is due now (or, with `force`, whenever a commit is waiting); marks it done.
    pub fn take_due(&mut self, force: bool) -> bool {
        let due = match self.due_at() {
            Some(at) => force || at <= Instant::now(),
            None => false,
        };
        if due {
            self.pending_since = None;
        }
        due
    }

    /// Syncs the `spool`'s files (if there is one) and the `journal`'s segments if a commit has
    /// waited `every` (or, with `force`, if any waits), off the worker's thread. A failed sync is
    /// logged and returned.
    pub async fn sync_if_due(
        &mut self,
        spool: Option<&Path>,
        journal: Option<&Journal>,
        chest: &str,
        force: bool,
    ) -> Result<(), String> {
        let Some(spool) = spool else {
            return Ok(());
        };
        if !self.take_due(force) {
            return Ok(());
        }
        let path = spool.to_owned();
        let segments = journal.map(Journal::handles).unwrap_or_default();
        let synced = tokio::task::spawn_blocking(move || {
            sync_spool(&path)?;
            segments.iter().try_for_each(std::fs::File::sync_data)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(error) = &synced {
            tracing::error!(target: "chest", chest, spool = %spool.display(), %error,
                "cannot sync the spool or the journal to the disk: a power loss may take their last writes");
        }
        synced
    }
}

/// The spool's write-ahead log (`<spool>-wal`).
fn wal_of(spool: &Path) -> PathBuf {
    let mut name = spool.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Flushes the spool's log and database to the disk (`fsync` of each file: it flushes the file's
/// dirty pages whichever descriptor wrote them). A missing log (checkpointed away) is fine.
pub(crate) fn sync_spool(spool: &Path) -> std::io::Result<()> {
    for path in [wal_of(spool), spool.to_owned()] {
        match std::fs::File::open(&path) {
            Ok(file) => file.sync_data()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_is_synced_after_the_interval_or_when_forced() {
        let mut timer = SyncTimer::new(Some(Duration::from_millis(300)));
        assert!(!timer.take_due(true), "nothing committed");
        timer.committed();
        assert!(!timer.take_due(false));
        std::thread::sleep(Duration::from_millis(301));
        assert!(timer.take_due(false));
        assert!(!timer.take_due(true), "already synced");
        timer.committed();
        assert!(timer.take_due(true));
        let mut disk = SyncTimer::new(None);
        disk.committed();
        assert_eq!(disk.due_at(), None);
    }

    #[test]
    fn syncing_a_spool_flushes_its_files_and_accepts_a_missing_log() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool.db");
        std::fs::write(&spool, b"x").unwrap();
        sync_spool(&spool).unwrap();
        std::fs::write(wal_of(&spool), b"y").unwrap();
        sync_spool(&spool).unwrap();
        let missing = dir.path().join("nowhere").join("spool.db");
        assert!(sync_spool(&missing).is_ok());
    }
}
