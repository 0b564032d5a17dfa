//! Permanent failures: a poison record is isolated (the batch is split) and dead-lettered, the
//! others are written. Throttling: the chest's `retry_after` is honoured.

mod batch_util;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use batch_util::{request, Refusing};
use chest::batch::Batched;
use chest::{BoxFuture, Chest, ChestError, MemoryChest, Record};

#[tokio::test]
async fn a_poison_record_is_dead_lettered_and_the_rest_written() {
    let dir = tempfile::tempdir().unwrap();
    let dead_letter = dir.path().join("dead.jsonl");
    let chest = Refusing::new("poison");
    let batched = Batched::builder(chest.clone())
        .dead_letter(&dead_letter)
        .max_batch_records(1000)
        .linger(Duration::from_secs(3600))
        .build()
        .unwrap();
    for i in 0..100 {
        let mut records = request(i);
        if i == 37 {
            records.push(Record::new("req-37", "poison", 7, "GET", Some("/work")));
        }
        batched.write(&records).await.unwrap();
    }
    let stats = batched.shutdown(Duration::from_secs(30)).await;

    // The 300 good records are written, each once, in one batch of 301 split around the bad one.
    batch_util::assert_exactly_once(&chest.inner.records(), 100);
    assert_eq!((stats.written, stats.dead_lettered), (300, 1), "{stats:#?}");
    assert!(stats.is_balanced(), "{stats:#?}");
    let attempts = *chest.attempts.lock().unwrap();
    assert!(attempts <= 2 * 9 + 1, "bisection took {attempts} writes");
    let last = stats.last_error.expect("the refusal is the last error");
    assert!(last.message.contains("poison"), "{}", last.message);

    let text = std::fs::read_to_string(&dead_letter).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line = &lines[0];
    assert_eq!(line["record"]["request_id"], "req-37");
    assert_eq!(line["record"]["name"], "poison");
    assert_eq!(line["record"]["value"], 7);
    assert_eq!(line["record"]["value_type"], "int");
    assert!(line["error"].as_str().unwrap().contains("is poison"));
    assert!(line["time"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn without_a_dead_letter_file_refused_records_are_counted_as_dropped() {
    let chest = Refusing::new("poison");
    let batched = Batched::builder(chest.clone()).build().unwrap();
    batched
        .write(&[
            Record::new("r", "poison", 1, "GET", None),
            Record::new("r", "good", 2, "GET", None),
        ])
        .await
        .unwrap();
    let stats = batched.shutdown(Duration::from_secs(30)).await;
    assert_eq!((stats.written, stats.dropped.permanent_error), (1, 1));
    assert_eq!(chest.inner.len(), 1);
}

/// Throttles its first write with a `retry_after`, then accepts; remembers when it was called.
#[derive(Clone, Default)]
struct Throttling {
    inner: MemoryChest,
    calls: Arc<Mutex<Vec<Instant>>>,
}

impl Chest for Throttling {
    fn name(&self) -> &str {
        "throttling"
    }

    fn write<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), ChestError>> {
        let mut calls = self.calls.lock().unwrap();
        calls.push(Instant::now());
        if calls.len() == 1 {
            let error = ChestError::throttled(self.name(), Duration::from_millis(400), "slow down");
            return Box::pin(std::future::ready(Err(error)));
        }
        self.inner.write(records)
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let chest = Throttling::default();
    let batched = Batched::builder(chest.clone())
        .linger(Duration::from_millis(1))
        .backoff(Duration::from_millis(1), Duration::from_millis(2))
        .build()
        .unwrap();
    batched.write(&request(1)).await.unwrap();
    let stats = batched.shutdown(Duration::from_secs(30)).await;
    let calls = chest.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    // Well above the 2 ms backoff cap: the wait came from retry_after.
    assert!(calls[1] - calls[0] >= Duration::from_millis(400));
    assert_eq!((stats.written, stats.retried), (3, 1));
}
