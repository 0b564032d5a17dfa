//! The spool file: a corrupt or unreadable one is set aside, counted, and the chest keeps
//! working; undecodable batches are dropped and counted; `Spool` inspects and drains by hand.

mod batch_util;

use std::path::{Path, PathBuf};
use std::time::Duration;

use batch_util::{request, sqlite_rows, wait_until};
use chest::batch::{Batched, Spool};
use chest::chests::sqlite::SqliteChest;
use chest::{Chest, ErrorKind, MemoryChest};

/// The files next to `spool` that were set aside.
fn set_aside(spool: &Path) -> Vec<PathBuf> {
    let name = spool.file_name().unwrap().to_str().unwrap().to_owned();
    std::fs::read_dir(spool.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let file = p.file_name().unwrap().to_str().unwrap();
            file.starts_with(&format!("{name}.corrupt-"))
                && !file.ends_with("-wal")
                && !file.ends_with("-shm")
        })
        .collect()
}

/// Builds a batched memory chest on a bad spool and checks it is set aside and records flow.
async fn survives_bad_spool(spool: &Path) {
    let memory = MemoryChest::new();
    let batched = Batched::builder(memory.clone())
        .spool(spool)
        .linger(Duration::from_millis(5))
        .build()
        .expect("a bad spool is not a build error");
    let stats = batched.stats();
    assert_eq!(stats.spool_set_aside, 1, "{stats:#?}");
    assert!(stats.last_error.is_some(), "{stats:#?}");
    assert_eq!(set_aside(spool).len(), 1);
    for i in 0..10 {
        batched.write(&request(i)).await.unwrap();
    }
    wait_until("records written", Duration::from_secs(30), || {
        memory.len() == 30
    })
    .await;
    // The new spool works: a failure spills into it.
    memory.fail_with(Some(ErrorKind::Retryable));
    batched.write(&request(10)).await.unwrap();
    let stats = batched.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats.spool_records, 3, "{stats:#?}");
    assert_eq!(Spool::open(spool).unwrap().inspect().unwrap().records, 3);
}

#[tokio::test]
async fn a_garbage_spool_file_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.db");
    let garbage = b"this is not a database, just bytes that look like nothing".repeat(100);
    std::fs::write(&spool, &garbage).unwrap();
    survives_bad_spool(&spool).await;
    // The bad file is kept, renamed, for a person to look at.
    assert_eq!(std::fs::read(&set_aside(&spool)[0]).unwrap(), garbage);
}

#[tokio::test]
async fn an_unopenable_spool_path_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.db");
    // A directory cannot be opened as a database (permissions do not stop root, this does).
    std::fs::create_dir(&spool).unwrap();
    survives_bad_spool(&spool).await;
}

#[tokio::test]
async fn another_sqlite_database_is_not_taken_for_a_spool() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.db");
    rusqlite::Connection::open(&spool)
        .unwrap()
        .execute_batch("CREATE TABLE precious (x); INSERT INTO precious VALUES (1);")
        .unwrap();
    survives_bad_spool(&spool).await;
}

#[tokio::test]
async fn a_spool_corrupted_inside_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.db");
    fill_spool(&spool, 200).await;
    // Overwrite the middle of the file: SQLite's page structure breaks.
    let mut bytes = std::fs::read(&spool).unwrap();
    assert!(
        bytes.len() > 8192,
        "spool too small to corrupt: {}",
        bytes.len()
    );
    for b in &mut bytes[4096..8192] {
        *b = 0xA5;
    }
    std::fs::write(&spool, &bytes).unwrap();
    survives_bad_spool(&spool).await;
}

/// Leaves `requests` requests in a spool (the chest is down at shutdown).
async fn fill_spool(spool: &Path, requests: usize) {
    let memory = MemoryChest::new();
    memory.fail_with(Some(ErrorKind::Retryable));
    let batched = Batched::builder(memory)
        .spool(spool)
        .max_batch_records(30)
        .retry_budget(Duration::ZERO)
        .build()
        .unwrap();
    for i in 0..requests {
        batched.write(&request(i)).await.unwrap();
    }
    let stats = batched.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats.spool_records, requests as u64 * 3);
    // Make sure the content is in the main file, not only in the WAL.
    rusqlite::Connection::open(spool)
        .unwrap()
        .pragma_update(None, "wal_checkpoint", "TRUNCATE")
        .unwrap();
}

#[tokio::test]
async fn an_undecodable_batch_is_dropped_and_counted_the_rest_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.db");
    fill_spool(&spool, 100).await;
    let conn = rusqlite::Connection::open(&spool).unwrap();
    let bad: i64 = conn
        .query_row(
            "UPDATE chest_spool SET payload = '[[\"truncated' WHERE id = (SELECT min(id) FROM chest_spool) RETURNING records",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(conn);
    let memory = MemoryChest::new();
    let batched = Batched::builder(memory.clone())
        .spool(&spool)
        .build()
        .unwrap();
    wait_until("the spool replayed", Duration::from_secs(30), || {
        batched.stats().spool_records == 0
    })
    .await;
    let stats = batched.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats.restored, 300);
    assert_eq!(stats.dropped.spool_corrupt, bad as u64);
    assert_eq!(stats.written, 300 - bad as u64);
    assert!(stats.is_balanced(), "{stats:#?}");
    assert_eq!(memory.len() as u64, stats.written);
}

#[tokio::test]
async fn spool_inspect_and_drain_into_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let spool_path = dir.path().join("spool.db");
    fill_spool(&spool_path, 50).await;
    let mut spool = Spool::open(&spool_path).unwrap();
    let summary = spool.inspect().unwrap();
    assert_eq!((summary.records, summary.batches), (150, 5));
    assert!(summary.bytes > 0);
    let (oldest, newest) = (
        summary.oldest.clone().unwrap(),
        summary.newest.clone().unwrap(),
    );
    assert!(
        oldest <= newest && oldest.ends_with('Z'),
        "{oldest} {newest}"
    );
    assert!(summary.to_string().contains("records: 150"));

    // A chest that refuses stops the drain and keeps the batch.
    let down = MemoryChest::new();
    down.fail_with(Some(ErrorKind::Retryable));
    assert!(spool.drain_into(&down).await.is_err());
    assert_eq!(spool.inspect().unwrap().records, 150);

    let db = dir.path().join("chest.db");
    let sqlite = SqliteChest::open(&db).unwrap();
    let report = spool.drain_into(&sqlite as &dyn Chest).await.unwrap();
    assert_eq!((report.records, report.batches), (150, 5));
    assert_eq!(spool.inspect().unwrap().records, 0);
    let rows = sqlite_rows(&db, "chest");
    assert_eq!(rows.len(), 150);
    // Values and types survive the spool.
    let first = rows
        .iter()
        .find(|(id, name, _, _)| id == "req-7" && name == "b")
        .unwrap();
    assert_eq!((first.2.as_str(), first.3.as_str()), ("3.5", "float"));
}

#[tokio::test]
async fn disk_durability_without_a_usable_spool_does_not_make_writers_wait_for_the_chest() {
    let dir = tempfile::tempdir().unwrap();
    // A spool in a folder that does not exist cannot be created (nor set aside).
    let spool = dir.path().join("missing-folder").join("spool.db");
    let memory = MemoryChest::new();
    memory.fail_with(Some(ErrorKind::Retryable));
    let batched = Batched::builder(memory.clone())
        .spool(&spool)
        .durability(chest::Durability::Disk)
        .linger(Duration::from_millis(1))
        .build()
        .unwrap();
    let stats = batched.stats();
    assert_eq!(stats.spool_set_aside, 0);
    assert!(stats.last_error.is_some(), "{stats:#?}");
    let written = tokio::time::timeout(Duration::from_secs(10), batched.write(&request(1))).await;
    assert!(matches!(written, Ok(Ok(()))), "{written:?}");
    memory.fail_with(None);
    let stats = batched.shutdown(Duration::from_secs(30)).await;
    assert_eq!(stats.written, 3, "{stats:#?}");
}

#[tokio::test]
async fn disk_durability_writes_return_once_spooled_even_with_the_chest_down() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.db");
    let memory = MemoryChest::new();
    memory.fail_with(Some(ErrorKind::Retryable));
    let batched = Batched::builder(memory.clone())
        .spool(&spool)
        .durability(chest::Durability::Disk)
        .build()
        .unwrap();
    for i in 0..20 {
        let written =
            tokio::time::timeout(Duration::from_secs(10), batched.write(&request(i))).await;
        assert!(matches!(written, Ok(Ok(()))), "{written:?}");
    }
    // Accepted means in the spool: another connection sees all of it before any delivery.
    assert_eq!(Spool::open(&spool).unwrap().inspect().unwrap().records, 60);
    memory.fail_with(None);
    wait_until("the spool delivered", Duration::from_secs(60), || {
        memory.len() == 60
    })
    .await;
    let stats = batched.shutdown(Duration::from_secs(30)).await;
    assert_eq!(
        (stats.spooled, stats.replayed, stats.written),
        (60, 60, 60),
        "{stats:#?}"
    );
    batch_util::assert_exactly_once(&memory.records(), 20);
}
