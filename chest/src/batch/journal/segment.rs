//! One journal segment: a preallocated file mapped into memory, written by appending frames.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU32, Ordering};

use memmap2::MmapMut;

use super::error::JournalError;
use super::frame::{checksum, frame_len, HEADER, RELEASED};

/// A mapped segment file and the frames appended to it.
pub(crate) struct Segment {
    map: MmapMut,
    file: File,
    pub path: PathBuf,
    pub generation: u32,
    /// Where the next frame goes.
    end: usize,
    /// Frames appended and not yet released: the file is removed when this is 0 and the segment
    /// is no longer the one written to.
    pub outstanding: u64,
}

impl Segment {
    /// Creates the file with all its blocks allocated (so that a full disk fails here, with an
    /// error, and never as a SIGBUS on a store into the mapping) and maps it.
    pub fn create(path: PathBuf, generation: u32, size: usize) -> Result<Segment, JournalError> {
        let fail = |path: &Path, source: std::io::Error| JournalError::Create {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| fail(&path, e))?;
        let allocated = allocate(&file, size).and_then(|()| {
            // SAFETY: the file is ours (just created, `create_new`), of `size` bytes, and is
            // neither truncated nor written other than through this mapping while it lives.
            unsafe { MmapMut::map_mut(&file) }
        });
        match allocated {
            Ok(map) => Ok(Segment {
                map,
                file,
                path,
                generation,
                end: 0,
                outstanding: 0,
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(fail(&path, e))
            }
        }
    }

    /// Whether a frame of `payload` bytes fits.
    pub fn fits(&self, payload: usize) -> bool {
        self.end + frame_len(payload) <= self.map.len()
    }

    /// Appends a frame (it must fit) and returns its offset. The payload and the rest of the
    /// header are stored before the length, so a process killed in between leaves a zero length:
    /// the end of the segment for recovery, and a write that was never acknowledged.
    pub fn append(&mut self, seq: u64, count: u32, payload: &[u8]) -> u32 {
        let at = self.end;
        {
            let frame = &mut self.map[at..at + frame_len(payload.len())];
            frame[HEADER..HEADER + payload.len()].copy_from_slice(payload);
            frame[4..8].copy_from_slice(&count.to_le_bytes());
            frame[8..12].copy_from_slice(&checksum(seq, count, payload).to_le_bytes());
            frame[12..20].copy_from_slice(&seq.to_le_bytes());
        }
        fence(Ordering::Release);
        self.word(at).store(payload.len() as u32, Ordering::Release);
        self.end = at + frame_len(payload.len());
        self.outstanding += 1;
        at as u32
    }

    /// Marks the frame at `at` released (its records are settled) and counts it out.
    pub fn release(&mut self, at: u32) {
        let count = self.word(at as usize + 4);
        count.fetch_or(RELEASED, Ordering::Release);
        self.outstanding = self.outstanding.saturating_sub(1);
    }

    /// The aligned word at `at`, stored whole.
    fn word(&mut self, at: usize) -> &AtomicU32 {
        assert!(at.is_multiple_of(4) && at + 4 <= self.map.len());
        // SAFETY: in bounds and 4-aligned (frames start at multiples of 8 of a page-aligned
        // mapping); the mapping lives as long as `self`, which is borrowed mutably meanwhile.
        unsafe { AtomicU32::from_ptr(self.map.as_mut_ptr().add(at).cast::<u32>()) }
    }

    /// A handle to sync the file with, off the lock.
    pub fn handle(&self) -> std::io::Result<File> {
        self.file.try_clone()
    }
}

/// Allocates `size` bytes of blocks for `file`.
fn allocate(file: &File, size: usize) -> std::io::Result<()> {
    let len = libc::off_t::try_from(size).map_err(std::io::Error::other)?;
    // SAFETY: a valid descriptor; posix_fallocate only reads its arguments.
    let errno = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if errno == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(errno))
    }
}

#[cfg(test)]
mod tests {
    use super::super::frame::{scan, Scan};
    use super::*;

    #[test]
    fn frames_appended_read_back_and_a_release_marks_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.seg");
        let mut segment = Segment::create(path.clone(), 0, 4096).unwrap();
        assert!(
            Segment::create(path.clone(), 0, 4096).is_err(),
            "create_new"
        );
        let a = segment.append(1, 2, b"first");
        let b = segment.append(2, 3, b"second");
        segment.release(a);
        assert_eq!(segment.outstanding, 1);
        assert!(!segment.fits(4096));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 4096);
        let Scan::Frame(first, next) = scan(&bytes, a as usize) else {
            panic!()
        };
        assert_eq!((first.seq, first.count, first.released), (1, 2, true));
        assert_eq!(next, b as usize);
        let Scan::Frame(second, next) = scan(&bytes, next) else {
            panic!()
        };
        assert_eq!((second.payload, second.released), (&b"second"[..], false));
        assert_eq!(scan(&bytes, next), Scan::End);
    }
}
