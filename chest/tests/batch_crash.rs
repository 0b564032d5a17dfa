//! Crash: with `Durability::Disk`, a server killed with SIGKILL mid-load loses nothing it
//! answered 2xx for, and one killed after the chest stored a batch but before the spool heard of
//! it stores that batch only once. The test binary re-executes itself as the server (child mode),
//! loads it over HTTP, kills it, then restarts the batched chest on the same spool and checks the
//! database. The stalled kill is also run with `Durability::Process`, whose journal must give
//! the stored batch its id back.

mod batch_util;
mod common;
#[path = "batch_util/crash.rs"]
mod crash;

use std::path::Path;
use std::time::Duration;

use batch_util::wait_until;
use chest::batch::{Batched, Durability};
use chest::chests::sqlite::SqliteChest;
use crash::{
    assert_none_lost, assert_stored_once, child, load_then_kill, restart_and_replay, start_child,
    CHILD,
};
const TEST: &str = "disk_durability_survives_sigkill";
const STALL_TEST: &str = "a_kill_between_commit_and_settlement_stores_nothing_twice";
const JOURNAL_STALL_TEST: &str =
    "a_kill_between_commit_and_release_stores_nothing_twice_with_the_journal";
/// What the stalling child prints when its chest has stored a batch it will never settle.
const STORED: &str = "STORED";

fn batched(dir: &Path) -> Batched {
    batched_into(
        dir,
        SqliteChest::open(dir.join("chest.db")).unwrap(),
        Duration::from_secs(30),
        Durability::Disk,
    )
}

/// With a long linger, at the kill most records are only in the spool.
fn batched_into(
    dir: &Path,
    chest: impl chest::Chest,
    linger: Duration,
    durability: Durability,
) -> Batched {
    Batched::builder(chest)
        .spool(dir.join("spool.db"))
        .durability(durability)
        .linger(linger)
        .max_batch_records(2_000)
        .build()
        .unwrap()
}

/// The SQLite chest, but after storing the third batch it says so on stdout and never answers:
/// the parent kills the process in that moment, after the commit and before the settlement.
struct StallAfterCommit {
    inner: SqliteChest,
    batches: std::sync::atomic::AtomicUsize,
}

impl chest::Chest for StallAfterCommit {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn write<'a>(
        &'a self,
        records: &'a [chest::Record],
    ) -> chest::BoxFuture<'a, Result<(), chest::ChestError>> {
        self.inner.write(records)
    }

    fn write_batch<'a>(
        &'a self,
        id: chest::BatchId,
        records: &'a [chest::Record],
    ) -> chest::BoxFuture<'a, Result<chest::Written, chest::ChestError>> {
        Box::pin(async move {
            let written = self.inner.write_batch(id, records).await?;
            if self
                .batches
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                == 2
            {
                println!("{STORED} {id} {}", records.len());
                std::future::pending::<()>().await;
            }
            Ok(written)
        })
    }
}

#[test]
fn disk_durability_survives_sigkill() {
    if let Some(dir) = std::env::var_os(CHILD) {
        let dir = Path::new(&dir);
        return child(|| batched(dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, port, _) = start_child(TEST, dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ok_ids = load_then_kill(&runtime, server, port, |ok_ids| {
        Box::pin(async move {
            wait_until("2xx responses under load", Duration::from_secs(60), || {
                ok_ids.lock().unwrap().len() >= 1_500
            })
            .await;
        })
    });
    assert!(ok_ids.len() >= 1_500);
    let (stats, rows) = restart_and_replay(&runtime, dir.path(), || batched(dir.path()));
    assert!(
        stats.restored > 0,
        "nothing was left in the spool at the kill"
    );
    assert_none_lost(&ok_ids, &rows);
    let b = rows
        .iter()
        .find(|(id, name, _, _)| id == &ok_ids[0] && name == "b")
        .unwrap();
    assert_eq!((b.2.as_str(), b.3.as_str()), ("2.5", "float"));
}

/// SIGKILL after the chest committed a batch and before the spool settled it: on restart the
/// spool replays that batch under the same id, the chest recognises it, and every answered
/// request's records are stored exactly once.
#[test]
fn a_kill_between_commit_and_settlement_stores_nothing_twice() {
    stall_then_kill(STALL_TEST, Durability::Disk);
}

/// The same with `Process`: the batch's formation in the journal's control segment gives it
/// the same id after the restart.
#[test]
fn a_kill_between_commit_and_release_stores_nothing_twice_with_the_journal() {
    stall_then_kill(JOURNAL_STALL_TEST, Durability::Process);
}

fn stall_then_kill(test: &str, durability: Durability) {
    if let Some(dir) = std::env::var_os(CHILD) {
        let dir = Path::new(&dir);
        let chest = StallAfterCommit {
            inner: SqliteChest::open(dir.join("chest.db")).unwrap(),
            batches: Default::default(),
        };
        return child(|| batched_into(dir, chest, Duration::from_millis(20), durability));
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, port, mut lines) = start_child(test, dir.path());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let stored = lines.find(|line| line.contains(STORED));
        let _ = tx.send(stored);
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ok_ids = load_then_kill(&runtime, server, port, move |_| {
        Box::pin(async move {
            let stored =
                tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
                    .await
                    .unwrap();
            assert!(
                matches!(stored, Ok(Some(_))),
                "the child never stored a third batch"
            );
        })
    });
    assert!(!ok_ids.is_empty());
    let (stats, rows) = restart_and_replay(&runtime, dir.path(), || batched(dir.path()));
    assert!(
        stats.already_stored >= 1,
        "the replayed batch was not recognised: {stats:#?}"
    );
    assert_none_lost(&ok_ids, &rows);
    assert_stored_once(&rows);
}
