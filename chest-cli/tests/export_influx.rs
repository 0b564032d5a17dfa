//! `chest export` end to end into InfluxDB 1.6 and VictoriaMetrics, interrupted in the middle:
//! after the resume every point is there exactly once.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

use chest::chests::sqlite::SqliteChest;
use chest::{Chest, Record};

const CHEST: &str = env!("CARGO_BIN_EXE_chest");
const TOTAL: usize = 20_000;

fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "{var} is not set under CI=true: run `eval \"$(scripts/services start)\"`"
            );
            eprintln!("*** SKIPPED: {var} is not set ***");
            None
        }
    }
}

fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A source with TOTAL records of one measurement, a hundred requests in each microsecond (the
/// export must keep them distinct points: the same series and time would be one point).
async fn fill(db: &Path, measurement: &str) {
    let chest = SqliteChest::open(db).unwrap();
    let start = UNIX_EPOCH + Duration::from_secs(1_780_000_000);
    let records: Vec<Record> = (0..TOTAL)
        .map(|i| {
            Record::new(format!("req-{i}"), measurement, i as i64, "GET", Some("/x"))
                .at(start + Duration::from_micros(i as u64 / 100))
        })
        .collect();
    chest.write(&records).await.unwrap();
}

fn checkpoint(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .and_then(|c| {
            c.query_row(
                "SELECT COALESCE(MAX(last_id), 0) FROM chest_export_checkpoint",
                [],
                |r| r.get(0),
            )
        })
        .unwrap_or(0)
}

/// Exports with --follow, interrupts it with SIGTERM once some batches are acknowledged, then
/// resumes without --follow. Returns how many records the first run had acknowledged.
fn export_interrupted(src: &Path, to: &str) -> i64 {
    let from = format!("sqlite://{}", src.display());
    let mut child = Command::new(CHEST)
        .args([
            "export",
            "--batch",
            "200",
            "--follow",
            "--interval",
            "100ms",
        ])
        .args(["--from", &from, "--to", to])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while checkpoint(src) == 0 {
        if let Some(status) = child.try_wait().unwrap() {
            let mut log = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
            panic!("export ended early ({status}): {log}");
        }
        assert!(Instant::now() < deadline, "export made no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "SIGTERM ends the export cleanly"
    );
    let partial = checkpoint(src);
    let out = Command::new(CHEST)
        .args(["export", "--batch", "1000", "--from", &from, "--to", to])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(checkpoint(src), TOTAL as i64, "the resume reached the end");
    partial
}

async fn poll<F, Fut>(what: &str, mut probe: F) -> serde_json::Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<serde_json::Value>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not readable in 30 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn export_into_influxdb1_resumes_without_gaps_or_duplicates() {
    let (Some(url), Some(db)) = (
        service("CHEST_TEST_INFLUXDB1_URL"),
        service("CHEST_TEST_INFLUXDB1_DB"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.db");
    let measurement = format!("export_test_{}", std::process::id());
    fill(&src, &measurement).await;
    let host = url.trim_start_matches("http://");
    let partial = export_interrupted(&src, &format!("influxdb1://{host}/{db}"));
    assert!(
        partial > 0 && partial < TOTAL as i64,
        "interrupted mid-way: {partial}"
    );

    let client = http_client();
    let query = format!("SELECT COUNT(value), SUM(value) FROM \"{measurement}\"");
    let found = poll("InfluxDB 1.6", || {
        let request = client
            .get(format!("{url}/query"))
            .query(&[("db", db.as_str()), ("q", query.as_str())]);
        async move {
            let body: serde_json::Value = request.send().await.ok()?.json().await.ok()?;
            let row = body["results"][0]["series"][0]["values"][0].clone();
            (row[1] == TOTAL).then_some(row)
        }
    })
    .await;
    // Every value 0..TOTAL exactly once: the count and the sum both match.
    let sum = (TOTAL as i64 - 1) * TOTAL as i64 / 2;
    assert_eq!(found[2], sum, "{found}");
}

#[tokio::test]
async fn export_into_victoriametrics_resumes_without_gaps_or_duplicates() {
    let Some(url) = service("CHEST_TEST_VM_URL") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.db");
    let measurement = format!("export_vm_{}", std::process::id());
    fill(&src, &measurement).await;
    let host = url.trim_start_matches("http://");
    let partial = export_interrupted(&src, &format!("influxdb://{host}?org=chest&bucket=test"));
    assert!(
        partial > 0 && partial < TOTAL as i64,
        "interrupted mid-way: {partial}"
    );

    let client = http_client();
    let selector = format!("{{__name__=\"{measurement}_value\"}}");
    poll("VictoriaMetrics", || {
        let flush = client.get(format!("{url}/internal/force_flush"));
        let export = client
            .get(format!("{url}/api/v1/export"))
            .query(&[("match[]", selector.as_str())]);
        async move {
            flush.send().await.ok()?;
            let text = export.send().await.ok()?.text().await.ok()?;
            let mut values: Vec<i64> = Vec::new();
            for line in text.lines() {
                let series: serde_json::Value = serde_json::from_str(line).ok()?;
                values.extend(
                    series["values"]
                        .as_array()?
                        .iter()
                        .filter_map(|v| v.as_f64())
                        .map(|v| v as i64),
                );
            }
            values.sort_unstable();
            // Exactly the values 0..TOTAL, each once.
            (values == (0..TOTAL as i64).collect::<Vec<_>>()).then_some(serde_json::Value::Null)
        }
    })
    .await;
}
