//! The `chest` binary end to end: demo answers and writes; query and stats print it.

use std::path::Path;
use std::process::{Command, Output};

mod common;

use common::{http_client, psql, server_table, succeeded, Demo, CHEST};

fn chest(args: &[&str]) -> Output {
    Command::new(CHEST).args(args).output().unwrap()
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    succeeded(out);
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn demo_writes_and_query_and_stats_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let demo = Demo::start(&db);
    let client = http_client();
    let api = format!("{}/api-endpoint", demo.url);
    let mut ids = Vec::new();
    for post in [false, true, true] {
        let req = if post {
            client.post(&api)
        } else {
            client.get(&api)
        };
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        ids.push(res.headers()["x-request-id"].to_str().unwrap().to_owned());
        assert_eq!(res.text().await.unwrap(), "Hello, World!");
    }
    let bare = client
        .get(format!("{}/bare", demo.url))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 200);
    assert!(bare.headers().get("x-request-id").is_none());
    let stats: serde_json::Value = client
        .get(format!("{}/chest/stats", demo.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats[0]["enqueued"], 5, "{stats}");
    let metrics = client
        .get(format!("{}/metrics", demo.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Two POSTs observed response_time on the sample route; the batched chest's counters too.
    assert!(
        metrics.contains(r#"chest_response_time_count{method="POST",route="/api-endpoint"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("chest_pipeline_enqueued_total"),
        "{metrics}"
    );
    assert!(demo.stop().success(), "demo exits cleanly on SIGTERM");

    let db = db.to_str().unwrap();
    let rows = json_lines(&chest(&["query", "--db", db, "--json"]));
    // GET → transaction; POST → transaction, response_time; /bare → nothing.
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert_eq!(rows[0]["request_id"], ids[0].as_str());
    assert_eq!(rows[0]["name"], "transaction");
    assert_eq!(rows[0]["method"], "GET");
    assert_eq!(rows[0]["route"], "/api-endpoint");
    assert_eq!(rows[0]["value_type"], "int");
    assert_eq!(rows[2]["name"], "response_time");
    assert_eq!(rows[2]["value_type"], "float");
    assert_eq!(rows[2]["request_id"], ids[1].as_str());
    assert!(rows[2]["value"].as_f64().unwrap() >= 0.0);

    let only = json_lines(&chest(&[
        "query",
        "--db",
        db,
        "--json",
        "--request-id",
        &ids[2],
    ]));
    assert_eq!(only.len(), 2);
    let limited = json_lines(&chest(&[
        "query",
        "--db",
        db,
        "--json",
        "--name",
        "transaction",
        "--limit",
        "2",
    ]));
    assert_eq!(limited.len(), 2);
    assert!(limited.iter().all(|r| r["name"] == "transaction"));

    let table = chest(&["query", "--db", db]);
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.starts_with("unique_id"), "{text}");
    assert!(
        text.contains(&ids[0]) && text.contains("(5 rows)"),
        "{text}"
    );

    let stats = json_lines(&chest(&["stats", "--db", db, "--json"]));
    assert_eq!(stats.len(), 2);
    let transaction = stats.iter().find(|s| s["name"] == "transaction").unwrap();
    assert_eq!(transaction["count"], 3);
    // The demo numbers its transactions 1, 2, 3.
    assert_eq!(transaction["min"], 1.0);
    assert_eq!(transaction["max"], 3.0);
    assert_eq!(transaction["mean"], 2.0);
    assert_eq!(transaction["p50"], 2.0);
    let response_time = stats.iter().find(|s| s["name"] == "response_time").unwrap();
    assert_eq!(response_time["count"], 2);
    let text = String::from_utf8(chest(&["stats", "--db", db]).stdout).unwrap();
    assert!(
        text.contains("p95") && text.contains("response_time"),
        "{text}"
    );
}

#[tokio::test]
async fn demo_traced_records_through_tracing_with_facts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let demo = Demo::start(&db);
    let client = http_client();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let res = client
            .get(format!("{}/traced", demo.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        ids.push(res.headers()["x-request-id"].to_str().unwrap().to_owned());
        assert_eq!(res.text().await.unwrap(), "Hello, traced World!");
    }
    assert!(demo.stop().success());

    let db = db.to_str().unwrap();
    for (user_id, id) in ids.iter().enumerate() {
        let rows = json_lines(&chest(&["query", "--db", db, "--json", "--request-id", id]));
        let value = |name: &str| {
            let row = rows
                .iter()
                .find(|r| r["name"] == name)
                .unwrap_or_else(|| panic!("no {name} in {rows:?}"));
            assert_eq!(row["route"], "/traced");
            (row["value"].clone(), row["value_type"].clone())
        };
        assert_eq!(
            value("user_id"),
            (serde_json::json!(user_id + 1), "int".into())
        );
        assert_eq!(
            value("cart_total"),
            (serde_json::json!(12.5), "float".into())
        );
        assert_eq!(
            value("chest.status"),
            (serde_json::json!(200), "int".into())
        );
        let body_bytes = "Hello, traced World!".len();
        assert_eq!(
            value("chest.response_bytes"),
            (serde_json::json!(body_bytes), "int".into())
        );
        assert_eq!(value("chest.body_complete").1, "bool");
        assert_eq!(value("chest.time_to_last_byte_s").1, "float");
        assert_eq!(
            rows.len(),
            7,
            "two variables and five facts (no request body): {rows:?}"
        );
    }
}

/// Sends one GET and one POST, stops the demo, and returns the rows written.
async fn round_trip(db: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let demo = Demo::start_with(db, extra);
    let client = http_client();
    let api = format!("{}/api-endpoint", demo.url);
    assert_eq!(client.get(&api).send().await.unwrap().status(), 200);
    assert_eq!(client.post(&api).send().await.unwrap().status(), 200);
    assert!(demo.stop().success());
    json_lines(&chest(&["query", "--db", db.to_str().unwrap(), "--json"]))
}

#[tokio::test]
async fn demo_inline_writes_inside_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inline.db");
    let rows = round_trip(&db, &["--inline"]).await;
    assert_eq!(rows.len(), 3);
    assert!(
        !dir.path().join("inline.db.spool").exists(),
        "inline needs no spool"
    );
}

#[tokio::test]
async fn demo_reads_a_toml_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("config.db");
    let config = dir.path().join("chest.toml");
    std::fs::write(
        &config,
        format!(
            "request_id_header = \"x-trace-id\"\n[tracked_vars]\nPOST = [\"response_time\"]\n\
             [[chest]]\nurl = \"sqlite://{}\"\n[chest.batch]\nlinger = \"50ms\"\n",
            db.display()
        ),
    )
    .unwrap();
    let rows = round_trip(&db, &["--config", config.to_str().unwrap()]).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["name"], "response_time");
    assert_eq!(rows[0]["method"], "POST");

    std::fs::write(
        &config,
        "[[chest]]\nurl = \"sqlite://x.db\"\nsurprise = 1\n",
    )
    .unwrap();
    let out = chest(&[
        "demo",
        "--addr",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("unknown field `surprise`"), "{err}");
}

#[test]
fn errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let out = chest(&["query", "--db", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no such database file"), "{err}");

    let db = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE chest (unique_id INTEGER, request_id TEXT, name TEXT, value TEXT)",
    )
    .unwrap();
    let db = db.to_str().unwrap();
    let out = chest(&["stats", "--db", db]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success());
    assert!(
        err.contains("value_num") && err.contains("recorded_at"),
        "{err}"
    );

    let out = chest(&["query", "--db", db, "--table", "no_such"]);
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("no table `no_such`"));
    let out = chest(&["query", "--db", db, "--table", "a;drop"]);
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("invalid table name"));
    let out = chest(&["demo", "--db", db, "--addr", "127.0.0.1:0"]);
    assert!(
        !out.status.success(),
        "demo refuses a table with missing columns"
    );
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("lacks the columns"));
}

/// Runs `sql` on the MySQL server at `url` (`mysql://user[:password]@host[:port]/db`) with the
/// mysql client.
fn mysql(url: &str, sql: &str) {
    let rest = url.strip_prefix("mysql://").unwrap();
    let (auth, place) = rest.rsplit_once('@').unwrap();
    let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
    let (host_port, db) = place.split_once('/').unwrap();
    let (host, port) = host_port.split_once(':').unwrap_or((host_port, "3306"));
    let db = db.split('?').next().unwrap();
    let out = Command::new("mysql")
        .args(["-h", host, "-P", port, "-u", user, db, "-e", sql])
        .env("MYSQL_PWD", password)
        .output();
    succeeded(&out.unwrap());
}

/// `chest query --db postgres://…` prints what a PostgreSQL chest wrote, every field exact (NUL
/// in text included), and filters it.
#[tokio::test]
async fn query_reads_a_postgres_url() {
    use chest::chests::postgres::PostgresChest;
    use chest::{Chest, Record};

    let Some((url, table)) = server_table("CHEST_TEST_POSTGRES_URL", "cli_query") else {
        return;
    };
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_000_001);
    let note = "it's \"x\" \\ \0 🦀";
    let records = [
        Record::new("q-1", "latency", 12.5, "GET", Some("/items/{id}")).at(at),
        Record::new("q-1", "note", note, "GET", Some("/items/{id}")).at(at),
        Record::new("q-2", "latency", 7, "POST", None).at(at + std::time::Duration::from_secs(1)),
    ];
    let writer = PostgresChest::builder(&url).table(&table).build().await;
    let writer = writer.unwrap();
    writer.write(&records).await.unwrap();
    writer.close().await;

    let rows = json_lines(&chest(&[
        "query", "--db", &url, "--table", &table, "--json",
    ]));
    let table_text = chest(&["query", "--db", &url, "--table", &table]);
    let q2 = json_lines(&chest(&[
        "query",
        "--db",
        &format!("{url}?table={table}"),
        "--json",
        "--request-id",
        "q-2",
    ]));
    psql(&url, &format!("DROP TABLE \"{table}\""));

    let route = "/items/{id}";
    let second = "2023-11-14T22:13:20.000001Z";
    let want = [
        serde_json::json!({"request_id": "q-1", "name": "latency", "value": 12.5,
            "value_type": "float", "method": "GET", "route": route, "recorded_at": second}),
        serde_json::json!({"request_id": "q-1", "name": "note", "value": note,
            "value_type": "text", "method": "GET", "route": route, "recorded_at": second}),
        serde_json::json!({"request_id": "q-2", "name": "latency", "value": 7,
            "value_type": "int", "method": "POST", "route": null,
            "recorded_at": "2023-11-14T22:13:21.000001Z"}),
    ];
    let ids: Vec<i64> = rows
        .iter()
        .map(|r| r["unique_id"].as_i64().unwrap())
        .collect();
    let mut fields = rows.clone();
    for row in &mut fields {
        row.as_object_mut().unwrap().remove("unique_id");
    }
    assert_eq!(fields, want);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(q2.len(), 1, "{q2:?}");
    assert_eq!(q2[0], rows[2]);
    let text = String::from_utf8(table_text.stdout).unwrap();
    assert!(text.starts_with("unique_id"), "{text}");
    assert!(text.contains("q-2") && text.contains("(3 rows)"), "{text}");
}

/// `chest stats --db mysql://…` summarises what a MySQL chest wrote.
#[tokio::test]
async fn stats_reads_a_mysql_url() {
    use chest::chests::mysql::MySqlChest;
    use chest::{Chest, Record};

    let Some((url, table)) = server_table("CHEST_TEST_MYSQL_URL", "cli_stats") else {
        return;
    };
    let mut records: Vec<Record> = [1.0, 2.0, 3.0, 10.0]
        .into_iter()
        .enumerate()
        .map(|(n, latency)| Record::new(format!("s-{n}"), "latency", latency, "GET", None))
        .collect();
    records.push(Record::new("s-0", "user", "alice", "GET", None));
    // Another variable whose name differs only in case: not `latency`.
    records.push(Record::new("s-0", "Latency", 1000, "GET", None));
    let writer = MySqlChest::builder(&url).table(&table).build().await;
    let writer = writer.unwrap();
    writer.write(&records).await.unwrap();
    writer.close().await;

    let text = chest(&["stats", "--db", &url, "--table", &table]);
    succeeded(&text);
    let json = json_lines(&chest(&[
        "stats", "--db", &url, "--table", &table, "--json",
    ]));
    let one = json_lines(&chest(&[
        "stats", "--db", &url, "--table", &table, "--name", "latency", "--json",
    ]));
    mysql(&url, &format!("DROP TABLE `{table}`"));

    let text = String::from_utf8(text.stdout).unwrap();
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let big = "1000.000000";
    assert_eq!(
        lines,
        [
            "name count min mean p50 p95 p99 max".to_owned(),
            format!("Latency 1 {big} {big} {big} {big} {big} {big}"),
            "latency 4 1.000000 4.000000 2.000000 10.000000 10.000000 10.000000".to_owned(),
            "user 1 - - - - - -".to_owned(),
            "(3 rows)".to_owned(),
        ],
        "{text}"
    );
    assert_eq!(json.len(), 3, "{json:?}");
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(one[0], json[1]);
    assert_eq!(one[0]["name"], "latency");
    assert_eq!(
        (one[0]["count"].as_u64(), one[0]["numeric"].as_u64()),
        (Some(4), Some(4))
    );
    assert_eq!(one[0]["mean"], 4.0);
    assert_eq!(json[2]["numeric"], 0);
}

#[tokio::test]
async fn demo_writes_to_a_postgres_url() {
    let Some((url, table)) = server_table("CHEST_TEST_POSTGRES_URL", "demo") else {
        return;
    };
    let demo = Demo::start_with(Path::new(&url), &["--table", &table, "--inline"]);
    let client = http_client();
    let api = format!("{}/api-endpoint", demo.url);
    let res = client.post(&api).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(demo.stop().success());
    let rows = psql(
        &url,
        &format!(
            "SELECT name || '|' || value_type || '|' || method || '|' || route FROM {table} \
             WHERE request_id = '{id}' ORDER BY unique_id"
        ),
    );
    psql(&url, &format!("DROP TABLE {table}"));
    assert_eq!(
        rows,
        "transaction|int|POST|/api-endpoint\nresponse_time|float|POST|/api-endpoint\n"
    );
}

/// `chest export --from mysql://… / postgres://…`: the checkpoint is kept beside the source table
/// (in `chest_export_checkpoint`), a second run sends nothing again, and `--delete` removes only
/// what the target acknowledged.
#[tokio::test]
async fn export_reads_server_urls_and_resumes_from_their_checkpoint() {
    use chest::chests::{mysql::MySqlChest, postgres::PostgresChest};
    use chest::read::Reader;
    use chest::{Chest, Record};

    for (var, prefix) in [
        ("CHEST_TEST_POSTGRES_URL", "export_pg"),
        ("CHEST_TEST_MYSQL_URL", "export_my"),
    ] {
        let Some((url, table)) = server_table(var, prefix) else {
            continue;
        };
        let source = format!("{url}?table={table}");
        let writer: std::sync::Arc<dyn Chest> = if var.contains("POSTGRES") {
            std::sync::Arc::new(
                PostgresChest::builder(&url)
                    .table(&table)
                    .build()
                    .await
                    .unwrap(),
            )
        } else {
            std::sync::Arc::new(
                MySqlChest::builder(&url)
                    .table(&table)
                    .build()
                    .await
                    .unwrap(),
            )
        };
        let batch = |from: i64, to: i64| -> Vec<Record> {
            (from..to)
                .map(|i| Record::new(format!("req-{i}"), "n", i, "GET", Some("/x")))
                .collect()
        };
        writer.write(&batch(0, 300)).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let dst = dir.path().join("dst.db");
        let target = format!("sqlite://{}", dst.display());
        let export = |extra: &[&str]| {
            let mut args = vec![
                "export", "--from", &source, "--to", &target, "--batch", "64",
            ];
            args.extend_from_slice(extra);
            let out = chest(&args);
            succeeded(&out);
        };
        let copied = |sql: &str| -> i64 {
            let conn = rusqlite::Connection::open(&dst).unwrap();
            conn.query_row(sql, [], |r| r.get(0)).unwrap()
        };

        export(&[]);
        assert_eq!(copied("SELECT COUNT(*) FROM chest"), 300, "{var}");
        let exact = "SELECT COUNT(*) FROM chest WHERE request_id = 'req-' || value \
                     AND value_num = CAST(value AS INTEGER) AND value_type = 'int'";
        assert_eq!(copied(exact), 300, "{var}");
        export(&[]);
        assert_eq!(
            copied("SELECT COUNT(*) FROM chest"),
            300,
            "{var}: sent again"
        );

        writer.write(&batch(300, 400)).await.unwrap();
        export(&["--delete"]);
        assert_eq!(copied("SELECT COUNT(*) FROM chest"), 400, "{var}");
        assert_eq!(
            copied("SELECT COUNT(DISTINCT request_id) FROM chest"),
            400,
            "{var}"
        );
        let reader = Reader::open(&source).await.unwrap();
        assert_eq!(reader.count_after(0).await.unwrap(), 0, "{var}: deleted");
        let consumer = chest::open(&target).await.unwrap().name().to_owned();
        let checkpoint = reader.checkpoint(&consumer).await.unwrap();
        assert!(checkpoint.last_id >= 400, "{var}: {checkpoint:?}");
        assert_eq!(checkpoint.pending, None, "{var}: a batch left pending");
        reader.close().await;

        let cleanup = [
            format!("DROP TABLE {table}"),
            format!("DELETE FROM chest_export_checkpoint WHERE source_table = '{table}'"),
        ];
        for sql in cleanup {
            if var.contains("POSTGRES") {
                psql(&url, &sql);
            } else {
                mysql(&url, &sql);
            }
        }
    }
}
