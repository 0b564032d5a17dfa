//! `Durability::Process`: a server SIGKILLed at random points under load, several rounds on the
//! same files, loses nothing it answered 2xx for and stores nothing twice; a full disk (a small
//! tmpfs) and a read-only directory (a read-only bind mount) keep it serving, in memory, with
//! the unprotected records counted. The mounts need root: under `CI=true` a failed mount fails
//! the test, elsewhere it is skipped loudly.

mod batch_util;
mod common;
#[path = "batch_util/crash.rs"]
mod crash;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use batch_util::{request, sqlite_rows, wait_until};
use chest::batch::{Batched, Durability};
use chest::chests::sqlite::SqliteChest;
use chest::{Chest, Stats};
use crash::{
    assert_none_lost, assert_stored_once, child, load_then_kill, restart_and_replay, start_child,
    CHILD,
};

const TEST: &str = "process_durability_survives_sigkill_rounds";

fn process(dir: &Path, spool: &Path) -> Batched {
    Batched::builder(SqliteChest::open(dir.join("chest.db")).unwrap())
        .spool(spool)
        .durability(Durability::Process)
        .sync_every(Duration::from_millis(100))
        .linger(Duration::from_millis(50))
        .max_batch_records(500)
        .build()
        .unwrap()
}

/// A pseudo-random delay up to `max_ms`, so that each kill lands somewhere else.
fn jitter(max_ms: u64) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    Duration::from_millis(u64::from(nanos) % max_ms)
}

#[test]
fn process_durability_survives_sigkill_rounds() {
    if let Some(dir) = std::env::var_os(CHILD) {
        let dir = Path::new(&dir);
        return child(|| process(dir, &dir.join("spool.db")));
    }
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut ok_ids = Vec::new();
    for round in 0..4 {
        let (server, port, _) = start_child(TEST, dir.path());
        let pause = jitter(400);
        let answered = load_then_kill(&runtime, server, port, move |ok| {
            Box::pin(async move {
                wait_until("2xx responses under load", Duration::from_secs(60), || {
                    ok.lock().unwrap().len() >= 300
                })
                .await;
                tokio::time::sleep(pause).await;
            })
        });
        assert!(answered.len() >= 300, "round {round}: {}", answered.len());
        ok_ids.extend(answered);
    }
    // The last kill may find the spool empty (a fast chest keeps it so): `restored` may be 0,
    // and each round's restart replayed what the kill before it left.
    let (stats, rows) = restart_and_replay(&runtime, dir.path(), || {
        process(dir.path(), &dir.path().join("spool.db"))
    });
    assert_eq!(stats.spool_records, 0, "{stats:#?}");
    assert_eq!(
        stats.written + stats.dropped.total() + stats.dead_lettered,
        stats.restored,
        "the restart delivered what it found: {stats:#?}"
    );
    assert_none_lost(&ok_ids, &rows);
    assert_stored_once(&rows);
}

/// Runs `mount args…`; `false` (after saying so) if it cannot, which fails under `CI=true`.
fn mount(args: &[&str]) -> bool {
    let status = Command::new("mount").args(args).status();
    let ok = matches!(&status, Ok(s) if s.success());
    if !ok {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "`mount {}` failed under CI=true: {status:?}",
            args.join(" ")
        );
        eprintln!(
            "SKIPPED: `mount {}` failed ({status:?}); needs root",
            args.join(" ")
        );
    }
    ok
}

/// Unmounts its folder when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes `n` requests' records through `batched` (each write must succeed: the service keeps
/// serving), waits until none is left in memory (written or spooled), shuts it down, and returns
/// its balanced stats.
async fn serve(batched: Batched, n: usize) -> Stats {
    for i in 0..n {
        batched.write_owned(request(i)).await.unwrap();
    }
    let settled = tokio::time::timeout(Duration::from_secs(60), async {
        while batched.stats().in_memory() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    assert!(
        settled.await.is_ok(),
        "still in memory: {:#?}",
        batched.stats()
    );
    let stats = batched.shutdown(Duration::from_secs(10)).await;
    assert!(stats.is_balanced(), "{stats:#?}");
    stats
}

/// Asserts that the SQLite chest in `dir` holds `records` rows, none twice.
fn assert_rows_once(dir: &Path, records: u64) {
    let rows = sqlite_rows(&dir.join("chest.db"), "chest");
    assert_stored_once(&rows);
    assert_eq!(rows.len() as u64, records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_keeps_serving_in_memory_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let target = small.to_str().unwrap();
    if !mount(&["-t", "tmpfs", "-o", "size=96k", "tmpfs", target]) {
        return;
    }
    let _mounted = Mounted(small.clone());
    let spool = small.join("spool.db");
    let n = 6_000;
    let stats = serve(process(dir.path(), &spool), n).await;
    assert!(stats.unprotected > 0, "the disk never filled: {stats:#?}");
    assert_eq!(
        stats.written + stats.spool_records,
        3 * n as u64,
        "{stats:#?}"
    );
    let error = stats.last_error.as_ref().expect("the spool error is kept");
    assert!(
        error.message.contains("spool") && error.message.contains("full"),
        "{error:?}"
    );
    assert_rows_once(dir.path(), stats.written);
    // Room again: a restart on the same spool delivers what it kept, once.
    assert!(mount(&["-o", "remount,size=16m", target]));
    let restarted = process(dir.path(), &spool);
    assert_eq!(restarted.stats().restored, stats.spool_records);
    wait_until("the spool replayed", Duration::from_secs(60), || {
        restarted.stats().spool_records == 0
    })
    .await;
    let after = restarted.shutdown(Duration::from_secs(10)).await;
    assert!(after.is_balanced(), "{after:#?}");
    assert_rows_once(dir.path(), 3 * n as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_directory_keeps_serving_in_memory_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let (source, read_only) = (dir.path().join("source"), dir.path().join("ro"));
    std::fs::create_dir(&source).unwrap();
    std::fs::create_dir(&read_only).unwrap();
    let (from, to) = (source.to_str().unwrap(), read_only.to_str().unwrap());
    if !mount(&["--bind", from, to]) {
        return;
    }
    let _mounted = Mounted(read_only.clone());
    if !mount(&["-o", "remount,bind,ro", to]) {
        return;
    }
    assert!(
        std::fs::write(read_only.join("probe"), b"x").is_err(),
        "the bind mount is writable"
    );
    let spool = read_only.join("spool.db");
    let batched = process(dir.path(), &spool);
    let error = batched.stats().last_error.expect("the spool error is kept");
    assert!(
        error.message.contains(&spool.display().to_string()),
        "{error:?}"
    );
    let n = 500;
    let stats = serve(batched, n).await;
    assert_eq!(stats.unprotected, 3 * n as u64, "{stats:#?}");
    assert_eq!(
        (stats.spooled, stats.written),
        (0, 3 * n as u64),
        "{stats:#?}"
    );
    assert_rows_once(dir.path(), 3 * n as u64);
}

/// The spool's files as a crash leaves them with `Process`: `WRITES` group commits of one
/// request each (3 records), in the database file and its write-ahead log, not checkpointed.
async fn crashed_spool(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let spool = dir.join("spool.db");
    let batched = Batched::builder(SqliteChest::open(dir.join("chest.db")).unwrap())
        .spool(&spool)
        .durability(Durability::Process)
        .linger(Duration::from_secs(3600))
        .build()
        .unwrap();
    for i in 0..WRITES {
        batched.write_owned(request(i)).await.unwrap();
        assert_eq!(batched.stats().spool_records, 3 * (i as u64 + 1));
    }
    let files = (
        std::fs::read(&spool).unwrap(),
        std::fs::read(dir.join("spool.db-wal")).unwrap(),
    );
    std::mem::forget(batched); // as a crash: no shutdown
    files
}

const WRITES: usize = 4;

/// Where the write-ahead log's last commit starts: after the frame that ends the one before
/// (a frame: a 24-byte header whose second word is non-zero on a commit, then a page).
fn last_commit_start(wal: &[u8]) -> usize {
    let page = u32::from_be_bytes(wal[8..12].try_into().unwrap()) as usize;
    let frame = 24 + page;
    let mut ends = vec![32];
    let mut at = 32;
    while at + frame <= wal.len() {
        if wal[at + 4..at + 8] != [0; 4] {
            ends.push(at + frame);
        }
        at += frame;
    }
    assert_eq!(*ends.last().unwrap(), wal.len(), "the log ends on a commit");
    ends[ends.len() - 2]
}

/// The records a spool made of `db` and `wal` holds once opened (recovered).
fn spooled(dir: &Path, db: &[u8], wal: &[u8]) -> u64 {
    let _ = std::fs::remove_file(dir.join("s.db-shm"));
    std::fs::write(dir.join("s.db"), db).unwrap();
    std::fs::write(dir.join("s.db-wal"), wal).unwrap();
    let spool = chest::batch::Spool::open(dir.join("s.db")).unwrap();
    spool.inspect().unwrap().records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_or_flipped_last_commit_leaves_exactly_the_commits_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (db, wal) = crashed_spool(dir.path()).await;
    let scratch = tempfile::tempdir().unwrap();
    let whole = 3 * WRITES as u64;
    assert_eq!(spooled(scratch.path(), &db, &wal), whole);
    let start = last_commit_start(&wal);
    for cut in start..wal.len() {
        assert_eq!(
            spooled(scratch.path(), &db, &wal[..cut]),
            whole - 3,
            "the log cut at byte {cut} of {}",
            wal.len()
        );
    }
    for flip in (start..wal.len()).step_by(97) {
        let mut flipped = wal.clone();
        flipped[flip] ^= 0x10;
        assert_eq!(
            spooled(scratch.path(), &db, &flipped),
            whole - 3,
            "a bit flipped at byte {flip}"
        );
    }
}
