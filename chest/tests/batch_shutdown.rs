//! Shutdown under load: every accepted record is written or spooled before `shutdown` returns,
//! within its deadline, on a multi-thread and on a current-thread runtime. Dropping the last
//! handle without shutdown still drains.

mod batch_util;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use batch_util::{request, sqlite_rows, wait_until};
use chest::batch::{Batched, Spool};
use chest::chests::sqlite::SqliteChest;
use chest::{Chest, ErrorKind, MemoryChest};

/// Slack on top of a deadline for a loaded machine: the worker aims to finish well before it.
const SLACK: Duration = Duration::from_secs(2);

/// Writes requests from 4 tasks until `stop`; returns the request numbers whose write returned Ok.
/// Each task pauses 1 ms every 5 writes (~60k records/s in all, under what the SQLite chest and
/// the spool take here): unpaced, the tasks outran the worker's spilling on a loaded machine and
/// the queue dropped its oldest records, which is the overflow tests' subject, not this one's.
fn load(batched: &Batched, stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<Vec<usize>>> {
    (0..4)
        .map(|task| {
            let batched = batched.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut accepted = Vec::new();
                let mut i = task;
                while !stop.load(Ordering::Relaxed) {
                    if batched.write(&request(i)).await.is_ok() {
                        accepted.push(i);
                    }
                    i += 4;
                    if i % 20 < 4 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                accepted
            })
        })
        .collect()
}

/// Runs load, shuts down mid-load, and checks that every accepted record is in the SQLite chest
/// or in the spool, once, and that shutdown kept its deadline.
async fn shutdown_under_load(dir: &Path, deadline: Duration) {
    let db = dir.join("chest.db");
    let spool_path = dir.join("spool.db");
    let batched = Batched::builder(SqliteChest::open(&db).unwrap())
        .spool(&spool_path)
        .linger(Duration::from_millis(20))
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(&batched, &stop);
    wait_until("some records written", Duration::from_secs(60), || {
        batched.stats().written > 3_000
    })
    .await;
    let started = Instant::now();
    let stats = batched.shutdown(deadline).await;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut accepted = BTreeSet::new();
    for task in tasks {
        accepted.extend(task.await.unwrap());
    }
    assert!(took <= deadline + SLACK, "shutdown took {took:?}");
    assert!(stats.is_balanced(), "{stats:#?}");
    assert_eq!(stats.in_memory(), 0, "{stats:#?}");
    // Writes after shutdown began are dropped (and counted); the rest are written or spooled.
    let stats = batched.stats();
    let after_shutdown = stats.dropped.shutdown;
    assert_eq!(stats.dropped.total(), after_shutdown, "{stats:#?}");
    assert_eq!(stats.enqueued, accepted.len() as u64 * 3);
    assert!(stats.is_balanced(), "{stats:#?}");

    let mut found: Vec<(String, String)> = sqlite_rows(&db, "chest")
        .into_iter()
        .map(|(id, name, _, _)| (id, name))
        .collect();
    assert_eq!(found.len() as u64, stats.written);
    let mut spool = Spool::open(&spool_path).unwrap();
    assert_eq!(spool.inspect().unwrap().records, stats.spool_records);
    let spooled = MemoryChest::new();
    spool.drain_into(&spooled).await.unwrap();
    found.extend(
        spooled
            .records()
            .iter()
            .map(|r| (r.request_id.to_string(), r.name.to_string())),
    );
    let unique: BTreeSet<&(String, String)> = found.iter().collect();
    assert_eq!(unique.len(), found.len(), "a record was delivered twice");
    let expected_missing = after_shutdown as usize;
    let missing: Vec<usize> = accepted
        .iter()
        .copied()
        .filter(|i| !unique.contains(&(format!("req-{i}"), "a".to_owned())))
        .collect();
    assert!(
        missing.len() * 3 <= expected_missing,
        "accepted requests neither written nor spooled: {:?}",
        &missing[..missing.len().min(10)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_multi_thread() {
    let dir = tempfile::tempdir().unwrap();
    shutdown_under_load(dir.path(), Duration::from_secs(5)).await;
}

#[test]
fn shutdown_under_load_current_thread() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(shutdown_under_load(dir.path(), Duration::from_secs(5)));
}

#[test]
fn shutdown_with_the_chest_down_spools_everything_in_time_on_current_thread() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let memory = MemoryChest::new();
        memory.fail_with(Some(ErrorKind::Retryable));
        let batched = Batched::builder(memory.clone())
            .spool(dir.path().join("spool.db"))
            .linger(Duration::from_millis(5))
            .build()
            .unwrap();
        for i in 0..2_000 {
            batched.write(&request(i)).await.unwrap();
        }
        let deadline = Duration::from_secs(2);
        let started = Instant::now();
        let stats = batched.shutdown(deadline).await;
        assert!(started.elapsed() <= deadline + SLACK);
        assert_eq!(stats.enqueued, 6_000);
        assert_eq!(stats.spool_records, 6_000, "{stats:#?}");
        assert!(stats.is_balanced());
        assert!(memory.is_empty());

        // The next run replays the spool once the chest answers.
        memory.fail_with(None);
        let again = Batched::builder(memory.clone())
            .spool(dir.path().join("spool.db"))
            .build()
            .unwrap();
        assert_eq!(again.stats().restored, 6_000);
        wait_until("the spool replayed", Duration::from_secs(60), || {
            again.stats().spool_records == 0
        })
        .await;
        let stats = again.shutdown(Duration::from_secs(10)).await;
        assert_eq!((stats.written, stats.replayed), (6_000, 6_000));
        batch_util::assert_exactly_once(&memory.records(), 2_000);
    });
}

#[tokio::test]
async fn dropping_the_last_handle_without_shutdown_still_drains() {
    let memory = MemoryChest::new();
    let batched = Batched::builder(memory.clone())
        .linger(Duration::from_secs(3600))
        .build()
        .unwrap();
    for i in 0..10 {
        batched.write(&request(i)).await.unwrap();
    }
    assert!(memory.is_empty(), "lingering: nothing written yet");
    drop(batched);
    wait_until("the drop's drain", Duration::from_secs(30), || {
        memory.len() == 30
    })
    .await;
    batch_util::assert_exactly_once(&memory.records(), 10);
}

#[tokio::test]
async fn build_needs_a_runtime_and_sane_settings() {
    let outside = std::thread::spawn(|| Batched::builder(MemoryChest::new()).build().err())
        .join()
        .unwrap()
        .expect("no runtime on that thread");
    assert!(outside.to_string().contains("tokio runtime"), "{outside}");
    let disk = Batched::builder(MemoryChest::named("m"))
        .durability(chest::Durability::Disk)
        .build()
        .unwrap_err();
    assert!(
        disk.to_string().contains("`m`") && disk.to_string().contains("spool"),
        "{disk}"
    );
    let spill = Batched::builder(MemoryChest::new())
        .spill_at(0.0)
        .build()
        .unwrap_err();
    assert!(spill.to_string().contains("spill_at"), "{spill}");
    let name = Batched::builder(MemoryChest::named("inner"))
        .build()
        .unwrap();
    assert_eq!(name.name(), "inner");
    name.shutdown(Duration::from_secs(5)).await;
}
