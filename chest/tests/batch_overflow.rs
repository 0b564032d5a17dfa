//! Full memory (and spool): each overflow policy does what it says, and the counters add up.

mod batch_util;

use std::time::Duration;

use batch_util::{request, wait_until};
use chest::batch::{Batched, BatchedBuilder, OverflowPolicy, Stats};
use chest::{Chest, ErrorKind, MemoryChest, Record};

/// One record per write, request ids `one-{i}`.
fn one(i: usize) -> Vec<Record> {
    vec![Record::new(format!("one-{i}"), "n", i as i64, "GET", None)]
}

/// Memory for 20 records, batches of 10, no linger: with the chest failing, the worker holds the
/// first batch (1..=10) in flight and the queue holds the next ten.
fn full_setup(memory: &MemoryChest, policy: OverflowPolicy) -> BatchedBuilder {
    Batched::builder(memory.clone())
        .queue_capacity(20)
        .max_batch_records(10)
        .linger(Duration::from_secs(3600))
        .backoff(Duration::from_millis(5), Duration::from_millis(20))
        .retry_budget(Duration::from_secs(600))
        .overflow(policy)
}

async fn fill(batched: &Batched) {
    for i in 1..=20 {
        batched.write(&one(i)).await.unwrap();
    }
    wait_until("the first batch in flight", Duration::from_secs(30), || {
        batched.stats().in_flight == 10
    })
    .await;
    let stats = batched.stats();
    assert_eq!((stats.queue_depth, stats.in_flight), (10, 10));
}

/// Lets the chest recover, shuts down, and returns the ids written and the final stats.
async fn recover(memory: &MemoryChest, batched: &Batched) -> (Vec<String>, Stats) {
    memory.fail_with(None);
    let stats = batched.shutdown(Duration::from_secs(30)).await;
    assert!(stats.is_balanced(), "{stats:#?}");
    let ids = memory
        .records()
        .iter()
        .map(|r| r.request_id.to_string())
        .collect();
    (ids, stats)
}

fn ids(range: impl IntoIterator<Item = usize>) -> Vec<String> {
    range.into_iter().map(|i| format!("one-{i}")).collect()
}

#[tokio::test]
async fn drop_newest_drops_the_writes_that_find_it_full() {
    let memory = MemoryChest::new();
    memory.fail_with(Some(ErrorKind::Retryable));
    let batched = full_setup(&memory, OverflowPolicy::DropNewest)
        .build()
        .unwrap();
    fill(&batched).await;
    for i in 21..=25 {
        batched.write(&one(i)).await.unwrap();
    }
    let stats = batched.stats();
    assert_eq!(stats.dropped.newest, 5);
    assert_eq!(stats.enqueued, 25);
    assert!(stats.is_balanced(), "{stats:#?}");
    let (written, stats) = recover(&memory, &batched).await;
    assert_eq!(written, ids(1..=20));
    assert_eq!((stats.written, stats.dropped.total()), (20, 5));
}

#[tokio::test]
async fn drop_oldest_evicts_the_oldest_queued() {
    let memory = MemoryChest::new();
    memory.fail_with(Some(ErrorKind::Retryable));
    let batched = full_setup(&memory, OverflowPolicy::DropOldest)
        .build()
        .unwrap();
    fill(&batched).await;
    for i in 21..=25 {
        batched.write(&one(i)).await.unwrap();
    }
    let stats = batched.stats();
    assert_eq!(stats.dropped.oldest, 5);
    assert_eq!(
        stats.queue_depth + stats.in_flight,
        20,
        "memory stays at its bound"
    );
    assert!(stats.is_balanced(), "{stats:#?}");
    let (written, stats) = recover(&memory, &batched).await;
    // 1..=10 were in flight (not evictable); 11..=15 were the oldest queued.
    assert_eq!(written, ids((1..=10).chain(16..=25)));
    assert_eq!((stats.written, stats.dropped.oldest), (20, 5));
}

#[tokio::test]
async fn reject_refuses_with_an_error_naming_the_chest() {
    let memory = MemoryChest::named("memory-under-test");
    memory.fail_with(Some(ErrorKind::Retryable));
    let batched = full_setup(&memory, OverflowPolicy::Reject).build().unwrap();
    fill(&batched).await;
    for i in 21..=23 {
        let error = batched.write(&one(i)).await.unwrap_err();
        assert_eq!(error.chest(), "memory-under-test");
        assert!(error.to_string().contains("queue is full"), "{error}");
    }
    assert_eq!(batched.stats().dropped.rejected, 3);
    let (written, stats) = recover(&memory, &batched).await;
    assert_eq!(written, ids(1..=20));
    assert_eq!(
        (stats.enqueued, stats.written, stats.dropped.rejected),
        (23, 20, 3)
    );
}

#[tokio::test]
async fn block_waits_for_room_then_gives_up_at_its_timeout() {
    let memory = MemoryChest::new();
    memory.fail_with(Some(ErrorKind::Retryable));
    let batched = full_setup(&memory, OverflowPolicy::Block(Duration::from_millis(200)))
        .build()
        .unwrap();
    fill(&batched).await;
    // Nothing leaves memory while the chest fails: the write waits out its timeout.
    let started = std::time::Instant::now();
    batched.write(&one(21)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(batched.stats().dropped.block_timeout, 1);

    // A longer wait ends when the chest recovers and memory empties.
    let patient = full_setup(&memory, OverflowPolicy::Block(Duration::from_secs(60)))
        .build()
        .unwrap();
    fill(&patient).await;
    let waiting = {
        let patient = patient.clone();
        tokio::spawn(async move { patient.write(&one(22)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "the write should wait for room");
    memory.fail_with(None);
    waiting.await.unwrap().unwrap();
    let stats = patient.shutdown(Duration::from_secs(30)).await;
    assert_eq!(
        (stats.enqueued, stats.written, stats.dropped.total()),
        (21, 21, 0)
    );
    let stats = batched.shutdown(Duration::from_secs(30)).await;
    assert_eq!((stats.written, stats.dropped.block_timeout), (20, 1));
    assert!(stats.is_balanced(), "{stats:#?}");
}

#[tokio::test]
async fn a_full_spool_evicts_its_oldest_batches_under_drop_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let memory = MemoryChest::new();
    memory.fail_with(Some(ErrorKind::Retryable));
    // Room in the spool for about two of the ten batches; each batch is given up at once.
    let one_batch = 40 * 3 * 60;
    let batched = Batched::builder(memory.clone())
        .spool(dir.path().join("spool.db"))
        .spool_max_bytes(2 * one_batch)
        .queue_capacity(240)
        .spill_at(0.25)
        .max_batch_records(120)
        .linger(Duration::from_millis(1))
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .retry_budget(Duration::ZERO)
        .build()
        .unwrap();
    for i in 0..400 {
        batched.write(&request(i)).await.unwrap();
        if i % 40 == 39 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    wait_until("spool batches evicted", Duration::from_secs(30), || {
        batched.stats().dropped.oldest > 0
    })
    .await;
    let stats = batched.stats();
    assert!(stats.spool_bytes <= 2 * one_batch, "{stats:#?}");
    assert!(stats.is_balanced(), "{stats:#?}");
    memory.fail_with(None);
    wait_until("everything settled", Duration::from_secs(60), || {
        let s = batched.stats();
        s.written + s.dropped.total() == 1200
    })
    .await;
    let stats = batched.shutdown(Duration::from_secs(30)).await;
    assert_eq!(stats.enqueued, 1200);
    assert_eq!(stats.written + stats.dropped.oldest, 1200, "{stats:#?}");
    assert_eq!(memory.len() as u64, stats.written);
    // The newest records survived: the last request is there.
    assert!(memory.records().iter().any(|r| &*r.request_id == "req-399"));
}
