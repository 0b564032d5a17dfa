//! From a fleet to one store: two `chest demo --db nats://…` processes under concurrent load
//! publish to one JetStream stream, and `chest export --from nats://…?consumer=…` copies it into
//! PostgreSQL while being SIGKILLed and restarted (then two exporters share the consumer). Every
//! request's variables arrive exactly once, under the responses' `x-request-id`.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{http_client, psql, server_table, terminate, Demo, CHEST};

/// A `chest export` child process, its log in `log`.
fn exporter(from: &str, to: &str, log: &std::path::Path) -> Child {
    Command::new(CHEST)
        .args([
            "export",
            "--from",
            from,
            "--to",
            to,
            "--follow",
            "--interval",
            "300ms",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn rows(pg: &str, table: &str) -> usize {
    psql(pg, &format!("SELECT count(*) FROM {table}"))
        .trim()
        .parse()
        .unwrap()
}

/// Sends `n` requests (every third a POST) to `demo`, 8 at a time; (request id, method) of each.
async fn load(demo: &str, n: usize) -> Vec<(String, String)> {
    let client = http_client();
    let mut out = Vec::new();
    for start in (0..n).step_by(8) {
        let mut set = tokio::task::JoinSet::new();
        for i in start..(start + 8).min(n) {
            let method = if i % 3 == 0 { "POST" } else { "GET" };
            let request = client.request(method.parse().unwrap(), format!("{demo}/api-endpoint"));
            set.spawn(async move {
                let res = request.send().await.unwrap();
                assert!(res.status().is_success(), "{}", res.status());
                let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
                (id, method.to_owned())
            });
        }
        out.extend(set.join_all().await);
        // A steady pace, so that the exporter is killed while the demos still publish.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_demos_one_stream_one_killed_exporter_into_postgres() {
    let Some((nats, name)) = server_table("CHEST_TEST_NATS_URL", "export_nats") else {
        return;
    };
    let Some((pg, table)) = server_table("CHEST_TEST_POSTGRES_URL", "from_nats") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let stream = name.to_uppercase();
    let subject = format!("chest.{name}");
    let db = format!("{nats}/{stream}?subject={subject}&create=true&max_age=10m");
    let demos: Vec<Demo> = (0..2)
        .map(|i| {
            let home = dir.path().join(format!("demo-{i}"));
            std::fs::create_dir(&home).unwrap();
            Demo::start_in(&home, std::path::Path::new(&db), &["--no-prometheus"])
        })
        .collect();
    let from = format!("{nats}/{stream}?subject={subject}&consumer=pg&ack_wait=2s");
    let sep = if pg.contains('?') { '&' } else { '?' };
    let to = format!("{pg}{sep}table={table}");

    let mut first = exporter(&from, &to, &dir.path().join("export-1.log"));
    const N: usize = 1_200;
    let (a, b) = (demos[0].url.clone(), demos[1].url.clone());
    let loads = tokio::spawn(async move {
        let (x, y) = tokio::join!(load(&a, N), load(&b, N));
        [x, y].concat()
    });
    // SIGKILL the exporter once it has written something, in the middle of the stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    while psql(&pg, &format!("SELECT to_regclass('{table}') IS NOT NULL")).trim() != "t"
        || rows(&pg, &table) == 0
    {
        assert!(Instant::now() < deadline, "the exporter wrote nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let killed_at = rows(&pg, &table);
    // Two exporters on the same consumer from now on.
    let mut second = exporter(&from, &to, &dir.path().join("export-2.log"));
    let mut third = exporter(&from, &to, &dir.path().join("export-3.log"));

    let answered = loads.await.unwrap();
    for demo in demos {
        assert!(demo.stop().success(), "demo exit");
    }
    let expected: usize = answered
        .iter()
        .map(|(_, method)| if method == "POST" { 2 } else { 1 })
        .sum();
    assert!(
        killed_at < expected,
        "killed after the end: {killed_at}/{expected}"
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    while rows(&pg, &table) < expected {
        assert!(
            Instant::now() < deadline,
            "{} of {expected} rows; exporter log: {}",
            rows(&pg, &table),
            std::fs::read_to_string(dir.path().join("export-2.log")).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A little longer: a duplicate would show now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for child in [&mut second, &mut third] {
        terminate(child);
        assert!(child.wait().unwrap().success());
    }

    assert_eq!(rows(&pg, &table), expected, "exactly N × vars rows");
    let pairs = psql(
        &pg,
        &format!("SELECT request_id || ' ' || name || ' ' || method FROM {table}"),
    );
    let pairs: Vec<&str> = pairs.lines().collect();
    let distinct: BTreeSet<&str> = pairs.iter().copied().collect();
    assert_eq!(distinct.len(), pairs.len(), "no duplicates");
    let mut want = BTreeSet::new();
    for (id, method) in &answered {
        want.insert(format!("{id} transaction {method}"));
        if method == "POST" {
            want.insert(format!("{id} response_time {method}"));
        }
    }
    let got: BTreeSet<String> = distinct.iter().map(|s| s.to_string()).collect();
    assert_eq!(got, want, "request ids are the responses' x-request-id");
    let logs: String = (2..=3)
        .map(|i| std::fs::read_to_string(dir.path().join(format!("export-{i}.log"))).unwrap())
        .collect();
    assert!(logs.contains("export started"), "{logs}");
    psql(
        &pg,
        &format!("DROP TABLE {table}; DROP TABLE {table}_batches"),
    );
}
