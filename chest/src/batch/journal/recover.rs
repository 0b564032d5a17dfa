//! Start-up recovery: the frames a crashed process left in the journal go into the spool, once.
//!
//! Every segment is read in order, its checksums checked; a torn or corrupt frame is cut and
//! counted. Released frames are skipped. A batch in the control segment whose frames are not all
//! released goes into the spool with its id and exactly its frames' records (the chest may have
//! stored it before the crash: under the same id, it stores nothing twice). The other frames go
//! in as new batches, whose formation is written to a control file first, so that a crash during
//! recovery gives them the same ids the next time. Then the journal's files are removed.

use std::collections::BTreeMap;
use std::path::Path;

use super::error::JournalError;
use super::frame::{self, decode_formed, encode_formed, push_frame, Key, Scan};
use crate::batch::spool::Spool;
use crate::{BatchId, Record};

/// What a recovery did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// Records put into the spool.
    pub records: u64,
    /// Batches (spool rows) they make.
    pub batches: u64,
    /// Frames cut: torn, failing their checksum, or undecodable.
    pub torn: u64,
}

/// A formed batch: its id and its frames.
type Formed = (BatchId, Vec<Key>);

/// The frames read back.
#[derive(Default)]
struct Read {
    /// Unreleased messages, in (shard, seq) order.
    messages: BTreeMap<Key, Vec<Record>>,
    /// Formed batches not released, in the order of the control files.
    formed: Vec<Formed>,
    torn: u64,
}

/// Recovers the journal in `dir` into `spool` (new batches of at most `batch_records` records)
/// and removes it. Nothing is removed if the spool could not take the records.
pub(crate) fn recover(
    dir: &Path,
    spool: &mut Spool,
    batch_records: usize,
) -> Result<Recovered, JournalError> {
    let io = |path: &Path, source| JournalError::Io {
        path: path.to_owned(),
        source,
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    names.sort_by_key(|name| order(name));
    let mut read = Read::default();
    for name in &names {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
        match order(name) {
            (0, shard, _) => read.segment(shard, &bytes),
            (1, ..) => read.control(&bytes),
            _ => {}
        }
    }
    let torn = read.torn;
    let (batches, new) = read.batches(batch_records);
    if !new.is_empty() {
        // After every control generation a run can reach, and new on each attempt.
        let path = dir.join(format!("control-{}.seg", u32::MAX - names.len() as u32));
        std::fs::write(&path, control_frames(&new)).map_err(|e| io(&path, e))?;
    }
    let recovered = Recovered {
        records: batches.iter().map(|(_, r)| r.len() as u64).sum(),
        batches: batches.len() as u64,
        torn,
    };
    if !batches.is_empty() {
        let first = spool.next_seq().map_err(JournalError::Spool)?;
        let rows: Vec<(u64, Option<BatchId>, &[Record])> = batches
            .iter()
            .zip(first..)
            .map(|((id, records), seq)| (seq, Some(*id), &records[..]))
            .collect();
        // Unbounded: the journal's own cap bounds what it can hold.
        spool
            .append_bounded(&rows, u64::MAX, false, &[])
            .map_err(JournalError::Spool)?;
    }
    std::fs::remove_dir_all(dir).map_err(|e| io(dir, e))?;
    Ok(recovered)
}

/// A file's place in the reading order: shard segments (by shard, then generation), then control
/// segments (by generation); anything else last, and ignored.
fn order(name: &str) -> (u8, u16, u32) {
    let parse = || -> Option<(u8, u16, u32)> {
        let stem = name.strip_suffix(".seg")?;
        if let Some(generation) = stem.strip_prefix("control-") {
            return Some((1, 0, generation.parse().ok()?));
        }
        let (shard, generation) = stem.strip_prefix("shard-")?.split_once('-')?;
        Some((0, shard.parse().ok()?, generation.parse().ok()?))
    };
    parse().unwrap_or((2, 0, 0))
}

impl Read {
    /// Reads a shard segment's unreleased messages.
    fn segment(&mut self, shard: u16, bytes: &[u8]) {
        let messages = &mut self.messages;
        self.torn += unreleased_frames(bytes, |f| {
            let records = frame::decode_records(f.payload, f.count).ok()?;
            messages.insert((shard, f.seq), records);
            Some(())
        });
    }

    /// Reads a control segment's formed batches that are not released.
    fn control(&mut self, bytes: &[u8]) {
        let formed = &mut self.formed;
        self.torn += unreleased_frames(bytes, |f| {
            formed.push(decode_formed(f.payload, f.count)?);
            Some(())
        });
    }

    /// The batches to spool: the formed ones that hold unreleased records, under their ids,
    /// then the rest, as new batches (also returned with their frames, to be written down).
    fn batches(mut self, batch_records: usize) -> (Vec<(BatchId, Vec<Record>)>, Vec<Formed>) {
        let mut batches = Vec::new();
        for (id, keys) in std::mem::take(&mut self.formed) {
            if !keys.iter().any(|key| self.messages.contains_key(key)) {
                continue; // settled before the crash, or torn
            }
            let records = keys
                .iter()
                .filter_map(|key| self.messages.remove(key))
                .flatten()
                .collect();
            batches.push((id, records));
        }
        let mut new: Vec<Formed> = Vec::new();
        let mut records: Vec<Record> = Vec::new();
        for (key, message) in std::mem::take(&mut self.messages) {
            if !records.is_empty() && records.len() + message.len() > batch_records {
                batches.push((
                    new.last().expect("open batch").0,
                    std::mem::take(&mut records),
                ));
            }
            if records.is_empty() {
                new.push((BatchId::new(), Vec::new()));
            }
            new.last_mut().expect("open batch").1.push(key);
            records.extend(message);
        }
        if let Some((id, _)) = new.last().filter(|_| !records.is_empty()) {
            batches.push((*id, records));
        }
        (batches, new)
    }
}

/// Hands each unreleased frame of a segment to `take`, up to the segment's end or the first frame
/// it cannot get past. Returns the frames cut: torn, failing their checksum, or refused by `take`.
fn unreleased_frames(bytes: &[u8], mut take: impl FnMut(frame::Frame<'_>) -> Option<()>) -> u64 {
    let (mut at, mut torn) = (0, 0);
    loop {
        match frame::scan(bytes, at) {
            Scan::End => return torn,
            Scan::Bad(next) => {
                torn += 1;
                match next {
                    Some(next) => at = next,
                    None => return torn,
                }
            }
            Scan::Frame(f, next) => {
                at = next;
                if !f.released && take(f).is_none() {
                    torn += 1;
                }
            }
        }
    }
}

/// Control frames for `batches`, as [`super::Journal::form`] writes them.
fn control_frames(batches: &[Formed]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut payload = Vec::new();
    for (seq, (id, keys)) in batches.iter().enumerate() {
        encode_formed(*id, keys.iter().copied(), &mut payload);
        push_frame(&mut out, seq as u64, keys.len() as u32, &payload);
    }
    out
}
