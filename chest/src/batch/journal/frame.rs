//! One journal frame and the records it carries.
//!
//! A frame is `[payload len u32][record count u32][crc32 u32][seq u64][payload]`, little-endian,
//! padded to 8 bytes. The checksum covers the seq, the count and the payload. The count's top bit
//! is not covered: it is the "released" mark the worker sets once the frame's records are settled
//! (written, dead-lettered, dropped or in the spool), so recovery skips them.
//!
//! The payload is the records, one after the other: request id, name, method, route (a flag, then
//! the text), the value (a type tag, then its bits or text), the time in µs since the epoch.
//! Texts are a `u32` length and UTF-8 bytes. The request id, method and route a record shares with
//! the record before it (a request's records share them) are written as a marker instead, which
//! saves most of the copies on the request path.

use std::sync::Arc;

use crate::record::time_from_micros;
use crate::{BatchId, Record, Value};

/// The header's size; the payload follows it.
pub(crate) const HEADER: usize = 20;
/// The released mark, in the count word.
pub(crate) const RELEASED: u32 = 1 << 31;

/// A text's length that says "the same as the record before".
const SAME: u32 = u32::MAX;
/// Route flags: none, a text, the same as the record before.
const ROUTE_NONE: u8 = 0;
const ROUTE_TEXT: u8 = 1;
const ROUTE_SAME: u8 = 2;

/// Frames start at multiples of this, so that their words are stored whole.
const ALIGN: usize = 8;

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// The payload ended inside a field.
    #[error("journal frame payload ends inside a record")]
    Truncated,
    /// A text is not UTF-8.
    #[error("journal frame payload has a text that is not UTF-8")]
    Utf8,
    /// An unknown value type or route flag.
    #[error("journal frame payload has an unknown tag {0}")]
    Tag(u8),
    /// A JSON value that does not parse.
    #[error("journal frame payload has a JSON value that does not parse")]
    Json,
    /// A "same as before" marker on the first record.
    #[error("journal frame payload refers to a record before its first")]
    NoPrevious,
    /// Bytes left after the records the header counts.
    #[error("journal frame payload has bytes after its records")]
    Trailing,
}

/// The checksum of a frame: over the seq, the count (without the released mark) and the payload.
pub(crate) fn checksum(seq: u64, count: u32, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(&(count & !RELEASED).to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// The bytes a frame with `payload` bytes takes, padding included.
pub(crate) fn frame_len(payload: usize) -> usize {
    (HEADER + payload).div_ceil(ALIGN) * ALIGN
}

/// Appends a whole frame to `out` (for files written in one go: the control file at recovery).
pub(crate) fn push_frame(out: &mut Vec<u8>, seq: u64, count: u32, payload: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&checksum(seq, count, payload).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
    out.resize(start + frame_len(payload.len()), 0);
}

/// A frame read back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    pub seq: u64,
    /// The record count, without the mark.
    pub count: u32,
    pub released: bool,
    pub payload: &'a [u8],
}

/// What is at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan<'a> {
    /// Zeros (never written, or a writer killed before its header) or the end of the file.
    End,
    /// A frame whose checksum holds, and where the next one starts.
    Frame(Frame<'a>, usize),
    /// A torn or corrupt frame; where the next one may start, if its length is plausible.
    Bad(Option<usize>),
}

/// Reads the frame at `at` of `segment`.
pub(crate) fn scan(segment: &[u8], at: usize) -> Scan<'_> {
    let rest = segment.get(at..).unwrap_or(&[]);
    if rest.len() < HEADER {
        // A tail too short for a header: zeros are the preallocated end, anything else was cut.
        return if rest.iter().all(|b| *b == 0) {
            Scan::End
        } else {
            Scan::Bad(None)
        };
    }
    let word = |i: usize| u32::from_le_bytes(rest[i..i + 4].try_into().expect("4 bytes"));
    let (len, count, crc) = (word(0) as usize, word(4), word(8));
    if len == 0 {
        return if rest[..HEADER].iter().all(|b| *b == 0) {
            Scan::End
        } else {
            Scan::Bad(None)
        };
    }
    let seq = u64::from_le_bytes(rest[12..20].try_into().expect("8 bytes"));
    let next = at + frame_len(len);
    let Some(payload) = rest.get(HEADER..HEADER + len) else {
        return Scan::Bad(None);
    };
    if checksum(seq, count, payload) != crc {
        return Scan::Bad((next <= segment.len()).then_some(next));
    }
    let frame = Frame {
        seq,
        count: count & !RELEASED,
        released: count & RELEASED != 0,
        payload,
    };
    Scan::Frame(frame, next)
}

/// A frame's identity: its shard and sequence number.
pub(crate) type Key = (u16, u64);

/// Encodes a control frame's payload into `out` (cleared first): the batch id, then each of its
/// frames' shard and seq.
pub(crate) fn encode_formed(id: BatchId, keys: impl Iterator<Item = Key>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&id.as_u128().to_le_bytes());
    for (shard, seq) in keys {
        out.extend_from_slice(&shard.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
    }
}

/// Decodes what [`encode_formed`] wrote, for `count` frames.
pub(crate) fn decode_formed(payload: &[u8], count: u32) -> Option<(BatchId, Vec<Key>)> {
    let (id, rest) = payload.split_first_chunk::<16>()?;
    if rest.len() != count as usize * 10 {
        return None;
    }
    let keys = rest
        .chunks_exact(10)
        .map(|k| {
            let shard = u16::from_le_bytes([k[0], k[1]]);
            let seq = u64::from_le_bytes(k[2..10].try_into().expect("10 bytes"));
            (shard, seq)
        })
        .collect();
    Some((BatchId::from_u128(u128::from_le_bytes(*id)), keys))
}

/// Encodes `records` as a payload into `out` (cleared first).
pub(crate) fn encode_records(records: &[Record], out: &mut Vec<u8>) {
    out.clear();
    let mut previous: Option<&Record> = None;
    for record in records {
        let same = |field: fn(&Record) -> &Arc<str>| {
            previous.is_some_and(|p| Arc::ptr_eq(field(p), field(record)))
        };
        put_shared(out, &record.request_id, same(|r| &r.request_id));
        put_text(out, &record.name);
        put_shared(out, &record.method, same(|r| &r.method));
        let previous_route = previous.and_then(|p| p.route.as_ref());
        match (&record.route, previous_route) {
            (Some(route), Some(before)) if Arc::ptr_eq(route, before) => out.push(ROUTE_SAME),
            (Some(route), _) => {
                out.push(ROUTE_TEXT);
                put_text(out, route);
            }
            (None, _) => out.push(ROUTE_NONE),
        }
        match &record.value {
            Value::Int(i) => {
                out.push(0);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Value::Float(x) => {
                out.push(1);
                out.extend_from_slice(&x.to_bits().to_le_bytes());
            }
            Value::Bool(b) => out.extend_from_slice(&[2, u8::from(*b)]),
            Value::Text(t) => {
                out.push(3);
                put_text(out, t);
            }
            Value::Json(j) => {
                out.push(4);
                put_text(out, &j.to_string());
            }
        }
        out.extend_from_slice(&record.unix_micros().to_le_bytes());
        previous = Some(record);
    }
}

/// A text, or the marker for the record before's, if it is that one (`same`).
fn put_shared(out: &mut Vec<u8>, text: &str, same: bool) {
    if same {
        out.extend_from_slice(&SAME.to_le_bytes());
    } else {
        put_text(out, text);
    }
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Decodes `count` records from `payload`: an error, never a panic, on anything else.
pub(crate) fn decode_records(payload: &[u8], count: u32) -> Result<Vec<Record>, DecodeError> {
    let mut reader = Reader(payload);
    // A garbage count cannot make it reserve more than the payload could hold.
    let mut records = Vec::with_capacity((count as usize).min(payload.len() / 30));
    for _ in 0..count {
        let previous = records.last();
        let request_id = reader.shared(previous.map(|r: &Record| &r.request_id))?;
        let name: Arc<str> = reader.text()?.into();
        let method = reader.shared(previous.map(|r| &r.method))?;
        let route = match reader.byte()? {
            ROUTE_NONE => None,
            ROUTE_TEXT => Some(Arc::from(reader.text()?)),
            ROUTE_SAME => Some(
                previous
                    .and_then(|r| r.route.clone())
                    .ok_or(DecodeError::NoPrevious)?,
            ),
            tag => return Err(DecodeError::Tag(tag)),
        };
        let value = match reader.byte()? {
            0 => Value::Int(i64::from_le_bytes(reader.array()?)),
            1 => Value::Float(f64::from_bits(u64::from_le_bytes(reader.array()?))),
            2 => match reader.byte()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                tag => return Err(DecodeError::Tag(tag)),
            },
            3 => Value::Text(reader.text()?.to_owned()),
            4 => Value::Json(serde_json::from_str(reader.text()?).map_err(|_| DecodeError::Json)?),
            tag => return Err(DecodeError::Tag(tag)),
        };
        let micros = i64::from_le_bytes(reader.array()?);
        records.push(Record {
            request_id,
            name,
            value,
            method,
            route,
            time: time_from_micros(micros),
        });
    }
    if !reader.0.is_empty() {
        return Err(DecodeError::Trailing);
    }
    Ok(records)
}

/// The unread part of a payload.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn text(&mut self) -> Result<&'a str, DecodeError> {
        let len = u32::from_le_bytes(self.array()?);
        self.utf8(len)
    }

    fn utf8(&mut self, len: u32) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.take(len as usize)?).map_err(|_| DecodeError::Utf8)
    }

    /// A text [`put_shared`] wrote: `previous` is the record before's.
    fn shared(&mut self, previous: Option<&Arc<str>>) -> Result<Arc<str>, DecodeError> {
        match u32::from_le_bytes(self.array()?) {
            SAME => previous.cloned().ok_or(DecodeError::NoPrevious),
            len => Ok(Arc::from(self.utf8(len)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn records() -> Vec<Record> {
        let first = Record::new("r1", "int", -3, "GET", Some("/items/{id}"));
        // As a request's records do: the same request id, method and route.
        let mut second = first.clone();
        second.name = "float".into();
        second.value = Value::Float(f64::NAN);
        vec![
            first,
            second,
            Record::new("r1", "bool", true, "GET", None),
            Record::new("r2", "text", "héllo", "POST", None),
            Record::new(
                "r2",
                "json",
                serde_json::json!({"a": [1, "x"]}),
                "PUT",
                None,
            ),
        ]
    }

    #[test]
    fn records_round_trip_with_their_types() {
        let records = records();
        let mut payload = Vec::new();
        encode_records(&records, &mut payload);
        let back = decode_records(&payload, records.len() as u32).unwrap();
        assert_eq!(back.len(), records.len());
        for (a, b) in records.iter().zip(&back) {
            assert_eq!(
                (&a.request_id, &a.name, &a.method, &a.route),
                (&b.request_id, &b.name, &b.method, &b.route)
            );
            assert_eq!(a.value.type_name(), b.value.type_name());
            assert_eq!(a.value.to_string(), b.value.to_string());
            assert_eq!(a.unix_micros(), b.unix_micros());
        }
        assert!(Arc::ptr_eq(&back[0].request_id, &back[1].request_id));
        assert!(Arc::ptr_eq(
            back[0].route.as_ref().unwrap(),
            back[1].route.as_ref().unwrap()
        ));
        let shared = payload.len();
        let mut unshared = records.clone();
        unshared[1].request_id = "r1".into();
        encode_records(&unshared, &mut payload);
        assert!(payload.len() > shared, "the shared id was written once");
        assert_eq!(
            decode_records(&payload, records.len() as u32 + 1),
            Err(DecodeError::Truncated)
        );
        // A marker on the first record is refused.
        let mut marked = SAME.to_le_bytes().to_vec();
        marked.extend_from_slice(&payload[4..]);
        assert_eq!(decode_records(&marked, 1), Err(DecodeError::NoPrevious));
        assert_eq!(
            decode_records(&payload, records.len() as u32 - 1),
            Err(DecodeError::Trailing)
        );
    }

    #[test]
    fn a_formed_batch_round_trips() {
        let id = BatchId::new();
        let mut payload = Vec::new();
        encode_formed(id, [(0, 5), (3, u64::MAX)].into_iter(), &mut payload);
        assert_eq!(
            decode_formed(&payload, 2),
            Some((id, vec![(0, 5), (3, u64::MAX)]))
        );
        assert_eq!(decode_formed(&payload, 3), None);
        assert_eq!(decode_formed(&payload[..10], 0), None);
    }

    /// The payload of [`records`], and a segment holding it as one frame.
    fn one_frame(seq: u64) -> (Vec<u8>, Vec<u8>) {
        let mut payload = Vec::new();
        encode_records(&records(), &mut payload);
        let mut segment = Vec::new();
        push_frame(&mut segment, seq, 5, &payload);
        (payload, segment)
    }

    #[test]
    fn a_frame_scans_back_and_its_mark_keeps_the_checksum() {
        let (payload, mut segment) = one_frame(7);
        assert!(segment.len().is_multiple_of(ALIGN));
        segment.resize(segment.len() + 64, 0);
        let Scan::Frame(frame, next) = scan(&segment, 0) else {
            panic!("no frame")
        };
        assert_eq!((frame.seq, frame.count, frame.released), (7, 5, false));
        assert_eq!(frame.payload, &payload[..]);
        assert_eq!(scan(&segment, next), Scan::End);
        segment[4..8].copy_from_slice(&(5 | RELEASED).to_le_bytes());
        assert!(matches!(scan(&segment, 0), Scan::Frame(f, _) if f.released));
        segment[HEADER + 3] ^= 1;
        assert_eq!(scan(&segment, 0), Scan::Bad(Some(next)));
    }

    #[test]
    fn every_cut_of_a_frame_is_bad_and_a_zero_tail_is_the_end() {
        let (payload, segment) = one_frame(1);
        for cut in 1..HEADER + payload.len() {
            assert!(
                matches!(scan(&segment[..cut], 0), Scan::Bad(_)),
                "cut at {cut}"
            );
        }
        assert_eq!(scan(&[0; 30], 0), Scan::End);
        assert_eq!(scan(&[0; 3], 0), Scan::End);
        assert_eq!(scan(&[], 0), Scan::End);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), count in any::<u32>()) {
            let _ = decode_records(&bytes, count);
            let mut at = 0;
            while let Scan::Frame(_, next) | Scan::Bad(Some(next)) = scan(&bytes, at) {
                prop_assert!(next > at);
                at = next;
            }
        }

        #[test]
        fn a_flipped_bit_is_caught(flip in 0usize..(HEADER + 40) * 8) {
            let payload = b"0123456789012345678901234567890123456789";
            let mut segment = Vec::new();
            push_frame(&mut segment, 3, 2, payload);
            let (byte, bit) = (flip / 8, flip % 8);
            segment[byte] ^= 1 << bit;
            // The released mark is the one bit the checksum leaves out, on purpose.
            let is_mark = byte == 7 && bit == 7;
            prop_assert!(is_mark || !matches!(scan(&segment, 0), Scan::Frame(..)));
        }
    }
}
