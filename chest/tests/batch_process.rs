//! `Durability::Process` (the memory-mapped journal): a server SIGKILLed at random points under
//! load, several rounds on the same files, loses nothing it answered 2xx for and stores nothing
//! twice; a full disk (a small tmpfs), a read-only directory (a read-only bind mount) and a
//! journal at its cap keep it serving, in memory, with the unprotected records counted; torn and
//! flipped frames are cut and counted; the books balance across a crash. The mounts need root: under `CI=true` a failed mount fails
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
    // Each round's restart recovered what the kill before it left in the journal; under load the
    // last kill always finds records there (those of the last `linger` at least).
    let (stats, rows) = restart_and_replay(&runtime, dir.path(), || {
        process(dir.path(), &dir.path().join("spool.db"))
    });
    assert!(
        stats.restored > 0,
        "the journal held nothing at the kill: {stats:#?}"
    );
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
    // Small segments: a few fit, then the disk is full at a segment's creation.
    let batched = Batched::builder(SqliteChest::open(dir.path().join("chest.db")).unwrap())
        .spool(&spool)
        .durability(Durability::Process)
        .journal_segment_bytes(16 << 10)
        .linger(Duration::from_millis(50))
        .build()
        .unwrap();
    let stats = serve(batched, n).await;
    assert!(
        stats.unprotected > 0 && stats.unprotected < 3 * n as u64,
        "the disk never filled, or the journal took nothing: {stats:#?}"
    );
    assert_eq!(
        stats.written + stats.spool_records,
        3 * n as u64,
        "{stats:#?}"
    );
    let error = stats
        .last_error
        .as_ref()
        .expect("the journal error is kept");
    assert!(
        error.message.contains("journal") && error.message.contains("No space left"),
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
    assert!(
        !dir_of(&spool).exists(),
        "a clean shutdown leaves no journal"
    );
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

/// `<spool>.journal`.
fn dir_of(spool: &Path) -> PathBuf {
    PathBuf::from(format!("{}.journal", spool.display()))
}

/// A `Process` chest on `spool` that delivers nothing (its linger is an hour).
fn holding(dir: &Path, spool: &Path, segment_bytes: usize, max_bytes: u64) -> Batched {
    Batched::builder(SqliteChest::open(dir.join("chest.db")).unwrap())
        .spool(spool)
        .durability(Durability::Process)
        .linger(Duration::from_secs(3600))
        .max_batch_records(100_000)
        .journal_segment_bytes(segment_bytes)
        .journal_max_bytes(max_bytes)
        .build()
        .unwrap()
}

/// Opens a chest on `spool` as a restart would, and returns its stats at start (what recovery
/// put into the spool, and what it cut), then shuts it down.
async fn restart_stats(spool: &Path) -> Stats {
    let restarted = Batched::builder(chest::MemoryChest::new())
        .spool(spool)
        .linger(Duration::from_secs(3600))
        .build()
        .unwrap();
    let stats = restarted.stats();
    assert!(stats.is_balanced(), "{stats:#?}");
    restarted.shutdown(Duration::from_secs(5)).await;
    stats
}

const WRITES: usize = 4;

/// The shard segment a crash leaves after `WRITES` writes of one request each (3 records) from
/// one thread (so one shard), and where each frame starts.
async fn crashed_segment(dir: &Path) -> (Vec<u8>, Vec<usize>) {
    let spool = dir.join("spool.db");
    let batched = holding(dir, &spool, 1 << 20, 1 << 30);
    for i in 0..WRITES {
        batched.write_owned(request(i)).await.unwrap();
    }
    assert_eq!(batched.stats().unprotected, 0);
    let segments: Vec<_> = std::fs::read_dir(dir_of(&spool))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    let bytes = std::fs::read(&segments[0]).unwrap();
    std::mem::forget(batched); // as a crash: no shutdown
    let mut starts = vec![0];
    for _ in 1..WRITES {
        let at = *starts.last().unwrap();
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        starts.push(at + (20 + len).div_ceil(8) * 8);
    }
    (bytes, starts)
}

/// What a restart recovers from a journal holding only `segment`: records, frames cut.
async fn recovered(scratch: &Path, segment: &[u8]) -> (u64, u64) {
    let spool = scratch.join("s.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", spool.display()));
    }
    std::fs::create_dir_all(dir_of(&spool)).unwrap();
    std::fs::write(dir_of(&spool).join("shard-0-0.seg"), segment).unwrap();
    let stats = restart_stats(&spool).await;
    assert!(
        !dir_of(&spool).exists(),
        "the journal is removed once recovered"
    );
    (stats.restored, stats.journal_torn)
}

#[tokio::test(flavor = "current_thread")]
async fn torn_and_flipped_journal_frames_are_cut_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (segment, starts) = crashed_segment(dir.path()).await;
    let scratch = tempfile::tempdir().unwrap();
    let whole = 3 * WRITES as u64;
    assert_eq!(recovered(scratch.path(), &segment).await, (whole, 0));
    let last = starts[WRITES - 1];
    let len = u32::from_le_bytes(segment[last..last + 4].try_into().unwrap()) as usize;
    assert_eq!(
        recovered(scratch.path(), &segment[..last]).await,
        (whole - 3, 0)
    );
    for cut in last + 1..last + 20 + len {
        assert_eq!(
            recovered(scratch.path(), &segment[..cut]).await,
            (whole - 3, 1),
            "the segment cut at byte {cut} (the last frame is {last}..{})",
            last + 20 + len
        );
    }
    for flip in last..last + 20 + len {
        let mut flipped = segment.clone();
        flipped[flip] ^= 0x10;
        let (records, torn) = recovered(scratch.path(), &flipped).await;
        assert_eq!(records, whole - 3, "a bit flipped at byte {flip}");
        assert!(torn >= 1, "a bit flipped at byte {flip} was not counted");
    }
    // A flip in a frame before the last costs that frame only: the next ones are found again.
    let mut flipped = segment.clone();
    flipped[starts[1] + 30] ^= 0x01;
    assert_eq!(recovered(scratch.path(), &flipped).await, (whole - 3, 1));
}

#[tokio::test(flavor = "current_thread")]
async fn a_journal_at_its_cap_keeps_serving_and_the_books_balance_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.db");
    // Two segments of 4 KiB: a few dozen requests, then the cap.
    let batched = holding(dir.path(), &spool, 4096, 8192);
    let n = 200;
    for i in 0..n {
        batched.write_owned(request(i)).await.unwrap();
    }
    let before = batched.stats();
    let protected = 3 * n as u64 - before.unprotected;
    assert!(
        before.unprotected > 0 && protected > 0,
        "the cap was never reached, or nothing was journaled: {before:#?}"
    );
    assert_eq!(before.enqueued, 3 * n as u64);
    assert!(before.is_balanced(), "{before:#?}");
    // The worker moves the journal's error into the stats on its next round.
    wait_until("the cap reported", Duration::from_secs(10), || {
        batched.stats().last_error.is_some()
    })
    .await;
    let error = batched.stats().last_error.unwrap();
    assert!(error.message.contains("cap"), "{error:?}");
    std::mem::forget(batched); // as a crash: no shutdown
    let after = restart_stats(&spool).await;
    assert_eq!(
        (after.restored, after.journal_torn),
        (protected, 0),
        "the restart recovered what the journal took: {after:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_gives_up_waiting_for_room_releases_its_frame() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.db");
    let memory = chest::MemoryChest::new();
    memory.fail_with(Some(chest::ErrorKind::Retryable));
    // Memory for 20 records, never spilled: with the chest failing it fills and stays full.
    let batched = Batched::builder(memory.clone())
        .spool(&spool)
        .durability(Durability::Process)
        .queue_capacity(20)
        .max_batch_records(10)
        .spill_at(1.0)
        .linger(Duration::from_millis(1))
        .backoff(Duration::from_millis(5), Duration::from_millis(20))
        .retry_budget(Duration::from_secs(600))
        .overflow(chest::batch::OverflowPolicy::Block(Duration::from_secs(60)))
        .build()
        .unwrap();
    for i in 0..20 {
        let one = vec![chest::Record::new(format!("r{i}"), "n", 1, "GET", None)];
        batched.write_owned(one).await.unwrap();
    }
    wait_until("memory full", Duration::from_secs(30), || {
        batched.stats().in_memory() == 20
    })
    .await;
    let one = vec![chest::Record::new("late", "n", 1, "GET", None)];
    let gave_up = tokio::time::timeout(Duration::from_millis(100), batched.write_owned(one)).await;
    assert!(gave_up.is_err(), "the write should still wait for room");
    memory.fail_with(None);
    let stats = batched.shutdown(Duration::from_secs(30)).await;
    assert_eq!((stats.written, stats.enqueued), (20, 20), "{stats:#?}");
    assert!(
        !dir_of(&spool).exists(),
        "a frame was left unreleased: the journal outlived a clean shutdown"
    );
}
