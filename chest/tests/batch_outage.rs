//! Outages under sustained load: a chest that fails for a while then recovers (a controllable
//! memory chest, and a real SQLite database locked by another connection). Every record arrives
//! exactly once afterwards, writers see no errors, and memory stays within its bound.

mod batch_util;

use std::time::Duration;

use batch_util::{request, sqlite_rows, wait_until};
use chest::batch::{Batched, OverflowPolicy, Stats};
use chest::chests::sqlite::SqliteChest;
use chest::{Chest, ErrorKind, MemoryChest};

const REQUESTS: usize = 6_000;
const CAPACITY: usize = 3_000;

/// Writes `REQUESTS` requests at a steady pace, calling `outage(true)` at a third and
/// `outage(false)` at two thirds; returns the largest memory use seen.
async fn sustained_load(batched: &Batched, mut outage: impl FnMut(bool)) -> u64 {
    let mut peak = 0;
    for i in 0..REQUESTS {
        if i == REQUESTS / 3 {
            outage(true);
        }
        if i == 2 * REQUESTS / 3 {
            outage(false);
        }
        batched
            .write(&request(i))
            .await
            .expect("writers see no errors");
        if i % 50 == 0 {
            peak = peak.max(batched.stats().in_memory());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    peak
}

fn check(stats: &Stats, peak: u64) {
    assert!(stats.is_balanced(), "{stats:#?}");
    assert!(peak <= CAPACITY as u64, "memory peaked at {peak} records");
    assert_eq!(stats.dropped.total(), 0, "{stats:#?}");
    assert!(
        stats.spooled > 0,
        "the outage should have spilled to the spool: {stats:#?}"
    );
    assert!(stats.replayed > 0, "{stats:#?}");
    assert!(stats.retried > 0, "{stats:#?}");
    assert_eq!(stats.written, REQUESTS as u64 * 3, "{stats:#?}");
}

fn batched(chest: impl Chest, dir: &std::path::Path) -> Batched {
    Batched::builder(chest)
        .spool(dir.join("spool.db"))
        .queue_capacity(CAPACITY)
        .linger(Duration::from_millis(20))
        .backoff(Duration::from_millis(10), Duration::from_millis(100))
        .retry_budget(Duration::from_millis(300))
        // Never drop in this test: a writer that finds memory full waits for the spill.
        .overflow(OverflowPolicy::Block(Duration::from_secs(60)))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_chest_outage_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let memory = MemoryChest::new();
    let batched = batched(memory.clone(), dir.path());
    let peak = sustained_load(&batched, |down| {
        memory.fail_with(down.then_some(ErrorKind::Retryable));
    })
    .await;
    wait_until("every record written", Duration::from_secs(120), || {
        batched.stats().written == REQUESTS as u64 * 3
    })
    .await;
    let stats = batched.shutdown(Duration::from_secs(10)).await;
    check(&stats, peak);
    batch_util::assert_exactly_once(&memory.records(), REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_locked_by_another_connection_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chest.db");
    let chest = SqliteChest::builder(&db)
        .busy_timeout(Duration::from_millis(20))
        .build()
        .unwrap();
    let batched = batched(chest, dir.path());
    let mut locker: Option<rusqlite::Connection> = None;
    let peak = sustained_load(&batched, |down| {
        if down {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
            locker = Some(conn);
        } else if let Some(conn) = locker.take() {
            conn.execute_batch("COMMIT").unwrap();
        }
    })
    .await;
    wait_until("every record written", Duration::from_secs(120), || {
        batched.stats().written == REQUESTS as u64 * 3
    })
    .await;
    let stats = batched.shutdown(Duration::from_secs(10)).await;
    check(&stats, peak);
    assert!(
        stats
            .last_error
            .as_ref()
            .is_some_and(|e| e.message.contains("locked") || e.message.contains("busy")),
        "{stats:#?}"
    );

    // Read back from the database itself: every record once, with its value and type.
    let rows = sqlite_rows(&db, "chest");
    assert_eq!(rows.len(), REQUESTS * 3);
    let mut seen = std::collections::BTreeSet::new();
    for (request_id, name, value, value_type) in &rows {
        assert!(
            seen.insert((request_id.clone(), name.clone())),
            "{request_id} {name} twice"
        );
        let i: usize = request_id.strip_prefix("req-").unwrap().parse().unwrap();
        let want = request(i).into_iter().find(|r| &*r.name == name).unwrap();
        assert_eq!(
            (value, value_type.as_str()),
            (&want.value.to_string(), want.value.type_name())
        );
    }
}
