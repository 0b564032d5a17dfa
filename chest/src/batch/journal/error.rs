//! Why the journal could not take or give back records: [`JournalError`].

use std::path::PathBuf;

use crate::batch::spool::SpoolError;

/// Why the journal could not take or give back records.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JournalError {
    /// Its directory could not be made.
    #[error("journal {}: cannot create the directory: {source}", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A segment could not be created, allocated or mapped (disk full, read-only, …).
    #[error("journal segment {}: cannot create: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// One more segment would pass the journal's byte cap.
    #[error("journal {}: full (its cap is {max_bytes} bytes)", path.display())]
    Full { path: PathBuf, max_bytes: u64 },
    /// A single write is larger than a segment.
    #[error("journal: a write of {bytes} bytes does not fit a segment of {segment_bytes} bytes")]
    TooLarge { bytes: usize, segment_bytes: usize },
    /// A file left by an earlier run could not be read or removed.
    #[error("journal {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// What was recovered could not be put into the spool (the journal is kept for next time).
    #[error("journal: cannot put the recovered records into the spool: {0}")]
    Spool(#[source] SpoolError),
}
