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

/// The exporter dies after the target acknowledged a batch and before the checkpoint moved (the
/// source is locked by the test at that moment, then the process is killed): the next run sends
/// exactly that batch again, under the same `Idempotency-Key` and with the same body, then goes
/// on. A receiver that keeps keys stores every record once.
#[tokio::test]
async fn a_crash_between_acknowledgement_and_checkpoint_resends_the_same_batch() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.db");
    fill(&src, 0, 300).await;
    // The receiver: records (key, body); on the second request it locks the source, then answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
    type Requests = Arc<Mutex<Vec<(String, Vec<u8>)>>>;
    let seen: Requests = Arc::default();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let lock_holder: Arc<Mutex<Option<rusqlite::Connection>>> = Arc::default();
    {
        let (seen, lock_holder, src) = (seen.clone(), lock_holder.clone(), src.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let (mut key, mut length) = (String::new(), 0);
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        let lower = line.to_lowercase();
                        if let Some(v) = lower.strip_prefix("idempotency-key:") {
                            key = v.trim().to_owned();
                        }
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    if line != "\r\n" {
                        break; // The connection ended.
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let second = {
                        let mut seen = seen.lock().unwrap();
                        seen.push((key, body));
                        seen.len() == 2
                    };
                    if second {
                        let conn = rusqlite::Connection::open(&src).unwrap();
                        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
                        *lock_holder.lock().unwrap() = Some(conn);
                        locked_tx.send(()).unwrap();
                    }
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(ok).is_err() {
                        break;
                    }
                }
            }
        });
    }
    let export = |url: &str| {
        Command::new(CHEST)
            .args(["export", "--from"])
            .arg(format!("sqlite://{}", src.display()))
            .args(["--to", url, "--batch", "100"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = export(&url);
    locked_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the exporter never sent a second batch");
    // The exporter now waits for the lock to move its checkpoint: kill it there.
    std::thread::sleep(Duration::from_millis(300));
    first.kill().unwrap();
    first.wait().unwrap();
    lock_holder.lock().unwrap().take(); // Rolls back, releasing the source.
    let second = export(&url).wait_with_output().unwrap();
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    let seen = seen.lock().unwrap().clone();
    let keys: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), 4, "batches sent: {keys:?}");
    assert_eq!(
        keys[1], keys[2],
        "the unacknowledged batch went under another key"
    );
    assert_eq!(
        seen[1].1, seen[2].1,
        "the batch sent again has another body"
    );
    let distinct: std::collections::BTreeSet<&str> = keys.iter().copied().collect();
    assert_eq!(distinct.len(), 3);
    // Stored once per key, the receiver has every record exactly once.
    let mut ids = std::collections::BTreeSet::new();
    let mut stored = std::collections::BTreeSet::new();
    for (key, body) in &seen {
        if !stored.insert(key) {
            continue;
        }
        let records: serde_json::Value = serde_json::from_slice(body).unwrap();
        for record in records.as_array().unwrap() {
            assert!(ids.insert(record["request_id"].as_str().unwrap().to_owned()));
        }
    }
    assert_eq!(ids.len(), 300);
    assert_eq!(
        count(&src, "SELECT last_id FROM chest_export_checkpoint"),
        300
    );
    assert_eq!(count(&src, "SELECT COUNT(*) FROM chest_export_pending"), 0);
}
