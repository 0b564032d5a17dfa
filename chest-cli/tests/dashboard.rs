//! `chest dashboard` in a real headless Chromium: the plotted series equal what SQL computes for
//! the same buckets, the request-id search, live updates without a reload, and recorded text
//! shown as text (a `<script>` value).

mod browser;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use browser::{Browser, Guard};
use chest::chests::sqlite::SqliteChest;
use chest::{Chest, Record};
use serde_json::{json, Value};

const CHEST: &str = env!("CARGO_BIN_EXE_chest");
const XSS: &str = "<script>window.xss = 1</script><img src=x onerror=\"window.xss = 2\">";

/// The known records: response times and transactions of many requests over the last four
/// minutes, one request with three variables, and a text value that is markup.
fn known_records(now: SystemTime) -> Vec<Record> {
    let mut records = Vec::new();
    for i in 0..120u32 {
        let at = now - Duration::from_millis(2_000 * u64::from(i) + 500);
        let id = format!("req-{i}");
        let rt = f64::from(i * 7 % 50) / 10.0;
        records.push(
            Record::new(
                id.as_str(),
                "response_time",
                rt,
                "POST",
                Some("/api-endpoint"),
            )
            .at(at),
        );
        records.push(
            Record::new(
                id.as_str(),
                "transaction",
                i64::from(i),
                "GET",
                Some("/api-endpoint"),
            )
            .at(at),
        );
    }
    let at = now - Duration::from_secs(10);
    records.push(
        Record::new(
            "req-search-1",
            "response_time",
            0.25,
            "POST",
            Some("/checkout"),
        )
        .at(at),
    );
    records.push(
        Record::new(
            "req-search-1",
            "cart_items",
            3_i64,
            "POST",
            Some("/checkout"),
        )
        .at(at),
    );
    records.push(Record::new("req-search-1", "user", XSS, "POST", Some("/checkout")).at(at));
    records
}

/// Per (name, method, route) and bucket index: count, min, p50, p95, p99, max (nearest rank),
/// computed by SQLite for buckets of `width` µs from `from`.
type Expected = BTreeMap<(String, usize), [Option<f64>; 6]>;

fn sql_buckets(db: &Path, from: i64, width: i64) -> Expected {
    let conn = rusqlite::Connection::open(db).unwrap();
    let sql =
        "WITH b AS (SELECT name || ' ' || method || ' ' || COALESCE(route, '') AS key, value_num, \
          (CAST(strftime('%s', recorded_at) AS INTEGER) * 1000000 \
           + CAST(substr(recorded_at, 21, 6) AS INTEGER)) AS micros FROM chest), \
        r AS (SELECT key, value_num, (micros - ?1) / ?2 AS i, \
          ROW_NUMBER() OVER (PARTITION BY key, (micros - ?1) / ?2 \
                             ORDER BY value_num IS NULL, value_num) AS rn, \
          COUNT(value_num) OVER (PARTITION BY key, (micros - ?1) / ?2) AS n \
          FROM b WHERE micros >= ?1) \
        SELECT key, i, COUNT(*), MIN(value_num), \
          MAX(CASE WHEN rn = (n * 50 + 99) / 100 THEN value_num END), \
          MAX(CASE WHEN rn = (n * 95 + 99) / 100 THEN value_num END), \
          MAX(CASE WHEN rn = (n * 99 + 99) / 100 THEN value_num END), MAX(value_num) \
        FROM r GROUP BY key, i";
    let mut stmt = conn.prepare(sql).unwrap();
    let rows = stmt
        .query_map([from, width], |row| {
            let count: i64 = row.get(2)?;
            Ok((
                (row.get::<_, String>(0)?, row.get::<_, i64>(1)? as usize),
                [
                    Some(count as f64),
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                    row.get(6)?,
                    row.get(7)?,
                ],
            ))
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// The same, as the page plotted it: the count from the records/s plot, the rest from the
/// values plot (by its labels).
fn plotted(page: &Value, width: i64) -> Expected {
    let mut out = Expected::new();
    let plots = page["plots"].as_object().unwrap();
    for plot in plots.values() {
        let key = plot["key"].as_str().unwrap().to_owned();
        let data = plot["data"].as_array().unwrap();
        let labels: Vec<&str> = plot["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        for i in 0..data[0].as_array().unwrap().len() {
            if plot["kind"] == "rate" {
                let rate = data[1][i].as_f64().unwrap();
                if rate > 0.0 {
                    let count = (rate * width as f64 / 1e6).round();
                    out.entry((key.clone(), i)).or_default()[0] = Some(count);
                }
                continue;
            }
            for (label, series) in labels.iter().zip(&data[1..]) {
                let slot = ["min", "p50", "p95", "p99", "max"]
                    .iter()
                    .position(|l| l == label)
                    .unwrap()
                    + 1;
                if let Some(v) = series[i].as_f64() {
                    out.entry((key.clone(), i)).or_default()[slot] = Some(v);
                }
            }
        }
    }
    out
}

async fn write(db: &Path, records: &[Record]) {
    let chest = SqliteChest::builder(db).build().unwrap();
    chest.write(records).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_plots_what_sql_computes_searches_updates_live_and_escapes_text() {
    let Some((chromium, driver)) = browser::binaries() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dash.db");
    write(&db, &known_records(SystemTime::now())).await;

    let port = browser::free_port();
    let server = Command::new(CHEST)
        .args(["dashboard", "--db"])
        .arg(&db)
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn chest dashboard");
    let _server = Guard(server);
    browser::wait_for_port(port, "chest dashboard");

    let browser = Browser::start(&chromium, &driver).await;
    browser
        .open(&format!("http://127.0.0.1:{port}/?range=5m&poll=300"))
        .await;
    // Both plots of each of the four numeric series, and the rate plot of the text one, drawn.
    let drawn = "const d = window.chestDashboard; \
        return d && d.updates > 0 && d.draws >= 9 && Object.keys(d.plots).length === 9 \
          && document.querySelectorAll('#plots canvas').length >= 9 && JSON.stringify(d);";
    let page: Value = browser.wait_for_json("plots drawn", drawn).await;
    assert_eq!(page["range"], "5m");
    let (from, width) = (
        page["from_micros"].as_i64().unwrap(),
        page["bucket_micros"].as_i64().unwrap(),
    );
    assert_eq!(width, 5_000_000, "5 s buckets for 5 minutes");
    let expected = sql_buckets(&db, from, width);
    assert!(
        expected.len() > 40,
        "the records fall in many buckets: {}",
        expected.len()
    );
    assert_eq!(
        plotted(&page, width),
        expected,
        "the plotted series are SQL's buckets"
    );
    let total: f64 = expected.values().map(|v| v[0].unwrap()).sum();
    assert_eq!(total, 243.0, "every record is in a bucket");

    // The latest text value, and every recorded text, shown as text.
    assert_eq!(page["texts"][0][4], XSS);
    let cells = "return [...document.querySelectorAll('#texts td.value, #records td.value')]\
        .map(td => td.textContent).filter(t => t.includes('<script>'));";
    let shown = browser.run(cells, json!([])).await;
    assert_eq!(shown, json!([XSS, XSS]), "the markup shows as its text");
    let injected =
        "return [typeof window.xss, document.querySelectorAll('#texts script, #texts img, \
        #records script, #records img').length];";
    assert_eq!(
        browser.run(injected, json!([])).await,
        json!(["undefined", 0])
    );

    // The request-id search shows that request's variables (and only them).
    let search = "document.getElementById('request-id').value = arguments[0]; \
        document.querySelector('#search button[type=submit]').click();";
    browser.run(search, json!(["req-search-1"])).await;
    let found = "const rows = [...document.querySelectorAll('#records tbody tr')]\
        .map(tr => [...tr.children].map(td => td.textContent)); \
        return rows.length > 0 && rows.every(r => r[1] === 'req-search-1') && rows;";
    let rows = browser.wait_for("the searched request", found).await;
    let mut vars: Vec<(String, String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[2].as_str().unwrap().into(),
                r[3].as_str().unwrap().into(),
                r[4].as_str().unwrap().into(),
            )
        })
        .collect();
    vars.sort();
    let want = [
        ("cart_items", "3", "int"),
        ("response_time", "0.25", "float"),
        ("user", XSS, "text"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(
        vars, want,
        "every variable of the request, with its value and type"
    );

    // Live: new records appear without a reload (the page's own marker survives).
    browser
        .run(
            "window.notReloaded = true; document.getElementById('clear').click();",
            json!([]),
        )
        .await;
    let live =
        Record::new("req-live", "live_var", 42.5, "PUT", Some("/live")).at(SystemTime::now());
    write(&db, std::slice::from_ref(&live)).await;
    let appeared = "const d = window.chestDashboard; \
        return window.notReloaded === true && d.records.some(r => r.request_id === 'req-live') \
          && Object.values(d.plots).some(p => p.key === 'live_var PUT /live' && p.kind === 'values') \
          && JSON.stringify(d);";
    let page: Value = browser.wait_for_json("the live record", appeared).await;
    let live_plot = page["plots"]
        .as_object()
        .unwrap()
        .values()
        .find(|p| p["key"] == "live_var PUT /live" && p["kind"] == "values")
        .unwrap();
    let p50: Vec<f64> = live_plot["data"][1]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert_eq!(p50, [42.5], "the new record's value is plotted");

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    browser
        .run("document.getElementById('clear').click();", json!([]))
        .await;
    browser.screenshot(&shot).await;
    browser.quit().await;
}

/// `chest demo` mounts the dashboard at `/chest/dashboard/` with its pipeline's health: the
/// requests it served show in the plots, and the health panel counts what it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mounts_the_dashboard_with_pipeline_health() {
    let Some((chromium, driver)) = browser::binaries() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = browser::free_port();
    let demo = Command::new(CHEST)
        .args([
            "demo",
            "--no-prometheus",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--db",
        ])
        .arg(dir.path().join("demo.db"))
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn chest demo");
    let _demo = Guard(demo);
    browser::wait_for_port(port, "chest demo");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let ok = http
            .get(format!("http://127.0.0.1:{port}/api-endpoint"))
            .send()
            .await
            .unwrap();
        assert!(ok.status().is_success());
    }
    let browser = Browser::start(&chromium, &driver).await;
    // Without the trailing slash: redirected to the page.
    browser
        .open(&format!("http://127.0.0.1:{port}/chest/dashboard?poll=300"))
        .await;
    let healthy = "const d = window.chestDashboard; \
        const p = d && d.health && d.health.attached && d.health.pipelines[0]; \
        return p && p.written === 3 && !document.getElementById('health').hidden \
          && Object.values(d.plots).some(x => x.key === 'transaction GET /api-endpoint') \
          && [...document.querySelectorAll('#pipelines dt')].map(dt => dt.textContent);";
    let shown = browser.wait_for("the pipeline's health", healthy).await;
    for field in [
        "queue_depth",
        "spooled",
        "replayed",
        "retried",
        "last_error",
        "dropped oldest",
    ] {
        assert!(
            shown.as_array().unwrap().iter().any(|f| f == field),
            "{field} in {shown}"
        );
    }
    browser.quit().await;
}
