//! `chest export` between SQLite chests: order, checkpoint, --delete, --follow and interruption.
//! (Exports into InfluxDB and VictoriaMetrics are tested in `export_influx.rs`.)

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chest::chests::sqlite::SqliteChest;
use chest::{Chest, Record};

const CHEST: &str = env!("CARGO_BIN_EXE_chest");

async fn fill(db: &Path, from: usize, to: usize) {
    let chest = SqliteChest::open(db).unwrap();
    let records: Vec<Record> = (from..to)
        .map(|i| Record::new(format!("req-{i}"), "n", i as i64, "GET", Some("/x")))
        .collect();
    chest.write(&records).await.unwrap();
}

fn count(db: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn export(src: &Path, dst: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(CHEST)
        .args(["export", "--from"])
        .arg(format!("sqlite://{}", src.display()))
        .arg("--to")
        .arg(format!("sqlite://{}?table=copy", dst.display()))
        .args(extra)
        .output()
        .unwrap()
}

#[tokio::test]
async fn exports_in_order_resumes_and_deletes_only_after_ack() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.db"), dir.path().join("dst.db"));
    fill(&src, 0, 1000).await;

    let out = export(&src, &dst, &["--batch", "64"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("exported 1000/1000 records"),
        "plain log lines off a terminal: {log}"
    );
    assert_eq!(count(&dst, "SELECT COUNT(*) FROM copy"), 1000);
    // Same order, same values and ids.
    assert_eq!(
        count(&dst, "SELECT COUNT(*) FROM copy WHERE request_id = 'req-' || value AND value_num = unique_id - 1"),
        1000
    );

    // Nothing new: nothing sent again.
    assert!(export(&src, &dst, &[]).status.success());
    assert_eq!(count(&dst, "SELECT COUNT(*) FROM copy"), 1000);

    fill(&src, 1000, 1500).await;
    assert!(export(&src, &dst, &["--delete"]).status.success());
    assert_eq!(count(&dst, "SELECT COUNT(*) FROM copy"), 1500);
    assert_eq!(
        count(&dst, "SELECT COUNT(DISTINCT request_id) FROM copy"),
        1500
    );
    assert_eq!(count(&src, "SELECT COUNT(*) FROM chest"), 0);
}

#[tokio::test]
async fn a_failed_target_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.db");
    fill(&src, 0, 10).await;
    // A target whose table lacks chest's columns cannot be opened: nothing may be deleted.
    let dst = dir.path().join("bad.db");
    rusqlite::Connection::open(&dst)
        .unwrap()
        .execute_batch("CREATE TABLE copy (unique_id INTEGER, request_id TEXT)")
        .unwrap();
    let out = export(&src, &dst, &["--delete"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lacks the columns"));
    assert_eq!(count(&src, "SELECT COUNT(*) FROM chest"), 10);
}

#[tokio::test]
async fn interrupted_follow_resumes_without_gaps_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.db"), dir.path().join("dst.db"));
    const TOTAL: i64 = 40_000;
    fill(&src, 0, TOTAL as usize).await;
    let mut child = Command::new(CHEST)
        .args([
            "export",
            "--batch",
            "50",
            "--follow",
            "--interval",
            "100ms",
            "--from",
        ])
        .arg(format!("sqlite://{}", src.display()))
        .arg("--to")
        .arg(format!("sqlite://{}?table=copy", dst.display()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Interrupt once some, but not all, batches are checkpointed.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = dst.exists()
            && rusqlite::Connection::open(&dst)
                .and_then(|c| c.query_row("SELECT COUNT(*) FROM copy", [], |r| r.get::<_, i64>(0)))
                .unwrap_or(0)
                > 0;
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "export made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "SIGTERM ends the export cleanly"
    );
    let partial = count(&dst, "SELECT COUNT(*) FROM copy");
    assert!(
        partial > 0 && partial < TOTAL,
        "interrupted mid-way: {partial}"
    );

    assert!(export(&src, &dst, &[]).status.success());
    assert_eq!(count(&dst, "SELECT COUNT(*) FROM copy"), TOTAL);
    assert_eq!(
        count(&dst, "SELECT COUNT(DISTINCT request_id) FROM copy"),
        TOTAL
    );
}
