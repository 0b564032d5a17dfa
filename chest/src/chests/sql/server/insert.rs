//! Chunked multi-row inserts: how a write's records are cut into statements that stay within the
//! servers' limits and sqlx's statement cache.

use time::OffsetDateTime;

use crate::{BoxError, Record};

/// With inserts whose text depends on their row count, counts up to this get a statement of their
/// own size and larger counts are split into powers of two (64, 128, …). So a connection prepares
/// few distinct inserts (38 for 2,048 rows at most), which all stay in sqlx's per-connection
/// statement cache (100), whatever the sizes of the writes.
const EXACT_STATEMENT_ROWS: usize = 32;
/// A statement carries at most this many bytes of values (unless one row alone is larger), to keep
/// packets and server memory bounded.
pub(super) const MAX_STATEMENT_BYTES: usize = 4 << 20;

/// The record's time as a UTC timestamp with microseconds (what `recorded_at` keeps).
pub(crate) fn utc_micros(record: &Record) -> Result<OffsetDateTime, BoxError> {
    let nanos = i128::from(record.unix_micros()) * 1_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map_err(|e| format!("its time is out of range: {e}").into())
}

/// Every row count [`statement_sizes`] can produce when it splits, up to `max_rows` (a power of
/// two).
pub(super) fn statement_row_counts(max_rows: usize) -> impl Iterator<Item = usize> {
    let powers = std::iter::successors(Some(EXACT_STATEMENT_ROWS * 2), |n| Some(n * 2))
        .take_while(move |n| *n <= max_rows);
    (1..=EXACT_STATEMENT_ROWS.min(max_rows)).chain(powers)
}

/// The row counts of the insert statements for `records`, in order: each statement at most
/// `max_rows` rows and `max_bytes` of values (a larger row goes alone); with `split`, each count
/// one of [`statement_row_counts`].
pub(super) fn statement_sizes(
    records: &[Record],
    max_rows: usize,
    max_bytes: usize,
    split: bool,
) -> Vec<usize> {
    let mut sizes = Vec::new();
    let flush = |rows: usize, sizes: &mut Vec<usize>| {
        if split {
            split_rows(rows, sizes);
        } else {
            sizes.push(rows);
        }
    };
    let (mut rows, mut bytes) = (0, 0);
    for record in records {
        let size = record.approx_size();
        if rows > 0 && (rows == max_rows || bytes + size > max_bytes) {
            flush(rows, &mut sizes);
            (rows, bytes) = (0, 0);
        }
        rows += 1;
        bytes += size;
    }
    if rows > 0 {
        flush(rows, &mut sizes);
    }
    sizes
}

/// Splits `rows` (at most a power of two) into powers of two above [`EXACT_STATEMENT_ROWS`] and
/// one exact remainder.
fn split_rows(mut rows: usize, sizes: &mut Vec<usize>) {
    while rows > EXACT_STATEMENT_ROWS {
        // 33..=63 rows: 32 and the rest.
        let power = 1 << rows.ilog2();
        sizes.push(power);
        rows -= power;
    }
    if rows > 0 {
        sizes.push(rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize, text_len: usize) -> Vec<Record> {
        (0..n)
            .map(|i| {
                Record::new("r", "n", "x".repeat(text_len), "GET", None)
                    .at(std::time::UNIX_EPOCH + std::time::Duration::from_micros(i as u64))
            })
            .collect()
    }

    #[test]
    fn statements_use_cached_sizes_and_cover_every_record() {
        let known: Vec<usize> = statement_row_counts(2048).collect();
        assert_eq!(known.len(), 38);
        for n in [1, 2, 31, 32, 33, 63, 64, 65, 1000, 2048, 2049, 5000, 20_000] {
            let sizes = statement_sizes(&records(n, 1), 2048, MAX_STATEMENT_BYTES, true);
            assert_eq!(sizes.iter().sum::<usize>(), n, "{n}: {sizes:?}");
            assert!(sizes.iter().all(|s| known.contains(s)), "{n}: {sizes:?}");
        }
        assert_eq!(
            statement_sizes(&records(1000, 1), 2048, usize::MAX, true),
            [512, 256, 128, 64, 32, 8]
        );
        assert_eq!(
            statement_sizes(&records(5000, 1), 2048, usize::MAX, true),
            [2048, 2048, 512, 256, 128, 8]
        );
        assert_eq!(
            statement_sizes(&records(40, 1), 2048, usize::MAX, true),
            [32, 8]
        );
    }

    #[test]
    fn statements_stay_under_the_byte_budget() {
        let big = records(5, 1_000_000);
        let sizes = statement_sizes(&big, 2048, 2_500_000, true);
        assert_eq!(sizes, [2, 2, 1]);
        // A row larger than the budget goes alone.
        assert_eq!(statement_sizes(&records(2, 10), 2048, 1, true), [1, 1]);
    }

    #[test]
    fn statements_for_any_row_count_are_only_bounded() {
        let sizes = statement_sizes(&records(25_000, 1), 10_000, MAX_STATEMENT_BYTES, false);
        assert_eq!(sizes, [10_000, 10_000, 5_000]);
        assert_eq!(
            statement_sizes(&records(5, 1_000_000), 10_000, 2_500_000, false),
            [2, 2, 1]
        );
    }
}
