//! The identity of a batch of records, and what a write of one reports: [`BatchId`], [`Written`].

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// The identity of one batch of records: given when the batch is formed and the same on every
/// retry, in the spool, after a restart and in `chest export`'s replay, so that a chest that
/// already stored the batch (its acknowledgement lost on the way back) can recognise it and store
/// nothing twice. See [`Chest::write_batch`](crate::Chest::write_batch).
///
/// 128 bits: the milliseconds since the Unix epoch when the batch was formed (48 bits, so ids
/// sort by time and a database index of them grows at its end), then 80 random bits. Written as
/// 32 lowercase hexadecimal digits.
///
/// ```
/// use chest::BatchId;
///
/// let id = BatchId::new();
/// let text = id.to_string();
/// assert_eq!(text.len(), 32);
/// assert_eq!(text.parse::<BatchId>(), Ok(id));
/// // The part of a batch that a split gives its own write has an id derived from the whole's:
/// // the same split of the same batch gives the same ids, after a restart too.
/// assert_eq!(id.part(0, 50), id.part(0, 50));
/// assert_ne!(id.part(0, 50), id.part(50, 100));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId(u128);

impl BatchId {
    /// A new id: now, and 80 random bits.
    pub fn new() -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let random: u128 = rand::random::<u128>() & ((1 << 80) - 1);
        BatchId(((millis & ((1 << 48) - 1)) << 80) | random)
    }

    /// The id of records `start..end` of this batch, when a write splits it (to set a refused
    /// record apart): derived from this id and the range alone, so it is the same whenever the
    /// same split is made. Keeps this id's time.
    pub fn part(&self, start: usize, end: usize) -> BatchId {
        // FNV-1a over the id and the range: stable across releases and platforms, since the ids
        // are stored in databases.
        let mut hash: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
        let bytes = self
            .0
            .to_be_bytes()
            .into_iter()
            .chain((start as u64).to_be_bytes())
            .chain((end as u64).to_be_bytes());
        for byte in bytes {
            hash =
                (hash ^ u128::from(byte)).wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
        }
        let time = self.0 & !((1 << 80) - 1);
        BatchId(time | (hash & ((1 << 80) - 1)))
    }

    /// The id with these 128 bits.
    pub const fn from_u128(bits: u128) -> Self {
        BatchId(bits)
    }

    /// The id's 128 bits.
    pub const fn as_u128(&self) -> u128 {
        self.0
    }
}

impl Default for BatchId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BatchId({self})")
    }
}

/// Why a text is not a [`BatchId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a batch id is 32 hexadecimal digits, not {0:?}")]
pub struct ParseBatchIdError(String);

impl FromStr for BatchId {
    type Err = ParseBatchIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse = || ParseBatchIdError(text.chars().take(40).collect());
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(refuse());
        }
        u128::from_str_radix(text, 16)
            .map(BatchId)
            .map_err(|_| refuse())
    }
}

/// What a write of a batch did ([`Chest::write_batch`](crate::Chest::write_batch)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Written {
    /// The records were stored now.
    Stored,
    /// The chest had stored this batch before (a retry whose earlier attempt succeeded without
    /// its answer arriving): nothing was stored again.
    AlreadyStored,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_parts_keep_it() {
        let a = BatchId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = BatchId::new();
        assert!(a < b);
        let part = a.part(3, 9);
        assert_eq!(part.as_u128() >> 80, a.as_u128() >> 80);
        assert_ne!(part, a);
        // Stored ids must never change: this value was computed independently (FNV-1a 128 over
        // the id's and the range's big-endian bytes, in Python).
        let fixed = BatchId::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(
            fixed.part(0, 1).to_string(),
            "0123456789ab3a61883f52493069f1d2"
        );
    }

    #[test]
    fn text_round_trips_and_bad_text_is_refused() {
        let id = BatchId::from_u128(42);
        assert_eq!(id.to_string(), "0000000000000000000000000000002a");
        assert_eq!("0000000000000000000000000000002A".parse(), Ok(id));
        for bad in [
            "",
            "2a",
            "zz000000000000000000000000000000",
            &"0".repeat(33),
            "+000000000000000000000000000002a",
        ] {
            assert!(bad.parse::<BatchId>().is_err(), "{bad}");
        }
    }
}
