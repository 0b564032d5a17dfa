//! [`Reader::series`], [`Reader::time_span`] and newest-first reads against a real chest: the
//! buckets equal what the written records give when counted and ranked here. Shared by the
//! server tests (through `reading`) and the SQLite one (`tests/sqlite_series.rs`).

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use chest::read::{Filter, Reader, SeriesQuery};
use chest::{Record, Value};

/// The start of the records' times (µs since the epoch).
const START: i64 = 1_700_000_000_000_000;

/// The records: `lat` (numbers) on GET and POST /a, and text `note`s on POST /b, one every
/// 1.5 s for a minute, the last `note` the latest.
pub fn timed_records() -> Vec<Record> {
    let mut out = Vec::new();
    for i in 0..40_i64 {
        let at = UNIX_EPOCH + Duration::from_micros((START + i * 1_500_000) as u64);
        let method = if i % 3 == 0 { "POST" } else { "GET" };
        let id = format!("s{i}");
        out.push(
            Record::new(
                id.as_str(),
                "lat",
                (i * 37 % 23) as f64 / 4.0,
                method,
                Some("/a"),
            )
            .at(at),
        );
        if i % 4 == 0 {
            let note = Value::from(format!("note <{i}>"));
            out.push(Record::new(id.as_str(), "note", note, "POST", Some("/b")).at(at));
        }
    }
    out
}

/// Per (name, method, bucket start): count and numbers, counted from `records` in `[from, to)`.
fn expected(
    records: &[Record],
    from: i64,
    to: i64,
    width: i64,
) -> BTreeMap<(String, String, i64), (u64, Vec<f64>)> {
    let mut out: BTreeMap<_, (u64, Vec<f64>)> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| (from..to).contains(&r.unix_micros()))
    {
        let start = from + (r.unix_micros() - from) / width * width;
        let e = out
            .entry((r.name.to_string(), r.method.to_string(), start))
            .or_default();
        e.0 += 1;
        if let Value::Float(v) = r.value {
            e.1.push(v);
        }
    }
    out
}

/// Asserts the reader's series, span and newest-first reads over `records` (already written).
pub async fn assert_series(reader: &Reader, records: &[Record]) {
    let (from, to, width) = (START + 3_000_000, START + 50_000_000, 10_000_000);
    let query = SeriesQuery::new(width).range(Some(from), Some(to));
    let series = reader.series(&query).await.unwrap();
    let want = expected(records, from, to, width);
    let mut got = BTreeMap::new();
    for s in &series {
        assert_eq!(
            s.route.as_deref(),
            Some(if s.name == "lat" { "/a" } else { "/b" })
        );
        for b in &s.buckets {
            got.insert(
                (s.name.clone(), s.method.clone(), b.start_micros),
                b.clone(),
            );
        }
    }
    assert_eq!(
        got.len(),
        want.len(),
        "one bucket per (name, method, start): {got:?}"
    );
    for (key, (count, mut numbers)) in want {
        let b = &got[&key];
        numbers.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            numbers
                .get(((q * numbers.len() as f64).ceil() as usize).max(1) - 1)
                .copied()
        };
        assert_eq!(
            (b.count, b.numeric),
            (count, numbers.len() as u64),
            "{key:?}"
        );
        assert_eq!(
            (b.min, b.max),
            (numbers.first().copied(), numbers.last().copied()),
            "{key:?}"
        );
        assert_eq!(
            (b.p50, b.p95, b.p99),
            (rank(0.5), rank(0.95), rank(0.99)),
            "{key:?}"
        );
    }
    // The latest text in the range: note <32> (at 48 s), not <36> (54 s, after `to`).
    let note = series.iter().find(|s| s.name == "note").unwrap();
    assert_eq!(
        note.latest_text,
        Some((START + 48_000_000, "note <32>".to_owned()))
    );
    assert_eq!(note.numeric, 0);

    let only = reader
        .series(&SeriesQuery::new(width).name("note"))
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].count, 10, "every note, with no range");

    let last = START + 39 * 1_500_000;
    assert_eq!(reader.time_span().await.unwrap(), Some((START, last)));

    let newest = Filter {
        limit: Some(3),
        newest_first: true,
        ..Default::default()
    };
    let rows = reader.query(&newest).await.unwrap();
    let all = reader.query(&Filter::default()).await.unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.unique_id).collect();
    let mut want: Vec<i64> = all.iter().rev().take(3).map(|r| r.unique_id).collect();
    want.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, want, "the three newest rows, newest first");
}
