//! Helpers shared by the `batch_*` integration tests (each includes it with `mod batch_util;`).
#![allow(dead_code)] // Each test binary uses a different part.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chest::{BoxFuture, Chest, ChestError, MemoryChest, Record};

/// The three records of request `i`: an int, a float and a text, on route `/work`.
pub fn request(i: usize) -> Vec<Record> {
    let id = format!("req-{i}");
    vec![
        Record::new(id.as_str(), "a", i as i64, "GET", Some("/work")),
        Record::new(id.as_str(), "b", i as f64 / 2.0, "GET", Some("/work")),
        Record::new(id.as_str(), "c", format!("t{i}"), "GET", Some("/work")),
    ]
}

/// Polls `done` every 10 ms until it is true; panics after `timeout` naming `what`.
pub async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How many times each (request id, name) pair is in `records`.
pub fn multiplicity(records: &[Record]) -> BTreeMap<(String, String), usize> {
    let mut seen = BTreeMap::new();
    for r in records {
        *seen
            .entry((r.request_id.to_string(), r.name.to_string()))
            .or_insert(0) += 1;
    }
    seen
}

/// Asserts that `records` hold requests `0..n` exactly once each, with their values.
pub fn assert_exactly_once(records: &[Record], n: usize) {
    let seen = multiplicity(records);
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c != 1).take(5).collect();
    assert!(
        twice.is_empty(),
        "records written more than once: {twice:?}"
    );
    assert_eq!(records.len(), n * 3, "records written");
    let expected: Vec<Record> = (0..n).flat_map(request).collect();
    for want in &expected {
        let got = records
            .iter()
            .find(|r| r.request_id == want.request_id && r.name == want.name)
            .unwrap_or_else(|| panic!("missing {} {}", want.request_id, want.name));
        assert_eq!(got.value, want.value);
        assert_eq!(got.route, want.route);
    }
}

/// Rows of a SQLite chest table: (request_id, name, value, value_type).
pub fn sqlite_rows(db: &Path, table: &str) -> Vec<(String, String, String, String)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT request_id, name, value, value_type FROM {table} ORDER BY unique_id"
        ))
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

/// A chest in front of a [`MemoryChest`] that refuses for good any write holding a record named
/// `poison`, and counts its write attempts.
#[derive(Clone)]
pub struct Refusing {
    pub inner: MemoryChest,
    pub poison: &'static str,
    pub attempts: Arc<Mutex<usize>>,
}

impl Refusing {
    pub fn new(poison: &'static str) -> Self {
        Refusing {
            inner: MemoryChest::new(),
            poison,
            attempts: Arc::default(),
        }
    }
}

impl Chest for Refusing {
    fn name(&self) -> &str {
        "refusing"
    }

    fn write<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), ChestError>> {
        *self.attempts.lock().unwrap() += 1;
        if let Some(bad) = records.iter().find(|r| &*r.name == self.poison) {
            let error = ChestError::permanent(
                self.name(),
                format!("record {} {} is poison", bad.request_id, bad.name),
            );
            return Box::pin(std::future::ready(Err(error)));
        }
        self.inner.write(records)
    }
}
