//! Crash: with `Durability::Disk`, a server killed with SIGKILL mid-load loses nothing it
//! answered 2xx for, and one killed after the chest stored a batch but before the spool heard of
//! it stores that batch only once. The test binary re-executes itself as the server (child mode),
//! loads it over HTTP, kills it, then restarts the batched chest on the same spool and checks the
//! database.

mod batch_util;
mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use batch_util::{sqlite_rows, wait_until};
use chest::batch::{Batched, Durability};
use chest::chests::sqlite::SqliteChest;
use chest::layer::ChestLayer;
use chest::{Recorder, Vars};

/// Set (to the data folder) in the child: run as the server.
const CHILD: &str = "CHEST_BATCH_CRASH_CHILD";
const TEST: &str = "disk_durability_survives_sigkill";
const STALL_TEST: &str = "a_kill_between_commit_and_settlement_stores_nothing_twice";
/// What the stalling child prints when its chest has stored a batch it will never settle.
const STORED: &str = "STORED";

fn batched(dir: &Path) -> Batched {
    batched_into(
        dir,
        SqliteChest::open(dir.join("chest.db")).unwrap(),
        Duration::from_secs(30),
    )
}

/// With a long linger, at the kill most records are only in the spool.
fn batched_into(dir: &Path, chest: impl chest::Chest, linger: Duration) -> Batched {
    Batched::builder(chest)
        .spool(dir.join("spool.db"))
        .durability(Durability::Disk)
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

async fn handler(vars: Vars) -> &'static str {
    vars.set("a", 1).unwrap();
    vars.set("b", 2.5).unwrap();
    vars.set("c", "three").unwrap();
    "ok"
}

/// The server: prints its port, serves until killed.
fn child(batched: impl FnOnce() -> Batched) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let recorder = Recorder::new().chest(batched());
        let app = Router::new()
            .route("/work", get(handler))
            .route_layer(ChestLayer::new(recorder));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("PORT {}", listener.local_addr().unwrap().port());
        axum::serve(listener, app).await.unwrap();
    });
}

/// Starts this test binary as the server of test `test` on `dir`; its port, and its stdout.
fn start_child(test: &str, dir: &Path) -> (std::process::Child, u16, impl Iterator<Item = String>) {
    let mut server = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap);
    let port: u16 = lines
        .by_ref()
        // The harness prints `test <name> ... ` before it on the same line.
        .find_map(|line| {
            line.split_once("PORT ")
                .map(|(_, p)| p.trim().parse().unwrap())
        })
        .expect("the child printed no port");
    (server, port, lines)
}

/// Loads the server on `port` from 8 clients until `kill` says to stop, kills it (SIGKILL), and
/// returns the request ids it answered 2xx for.
fn load_then_kill(
    runtime: &tokio::runtime::Runtime,
    mut server: std::process::Child,
    port: u16,
    kill: impl FnOnce(
        Arc<Mutex<Vec<String>>>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
) -> Vec<String> {
    let ok_ids: Arc<Mutex<Vec<String>>> = Arc::default();
    runtime.block_on(async {
        let client = common::http_client();
        let url = format!("http://127.0.0.1:{port}/work");
        let load: Vec<_> = (0..8)
            .map(|_| {
                let (client, url, ok_ids) = (client.clone(), url.clone(), ok_ids.clone());
                tokio::spawn(async move {
                    // Bounded: stops at the first failure (the kill) or after 20,000 requests.
                    for _ in 0..20_000 {
                        let Ok(response) = client.get(&url).send().await else {
                            return;
                        };
                        if response.status().is_success() {
                            let id = response.headers()["x-request-id"].to_str().unwrap();
                            ok_ids.lock().unwrap().push(id.to_owned());
                        }
                    }
                })
            })
            .collect();
        kill(ok_ids.clone()).await;
        server.kill().unwrap(); // SIGKILL
        server.wait().unwrap();
        for task in load {
            task.await.unwrap();
        }
    });
    let ids = ok_ids.lock().unwrap().clone();
    ids
}

/// Restarts the batched chest on the same files, lets the spool replay, and returns the final
/// stats and the database's rows.
fn restart_and_replay(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
) -> (chest::Stats, Vec<(String, String, String, String)>) {
    runtime.block_on(async {
        let restarted = batched(dir);
        let restored = restarted.stats().restored;
        assert!(restored > 0, "nothing was left in the spool at the kill");
        wait_until("the spool replayed", Duration::from_secs(120), || {
            restarted.stats().spool_records == 0
        })
        .await;
        let stats = restarted.shutdown(Duration::from_secs(10)).await;
        assert!(stats.is_balanced(), "{stats:#?}");
        (stats, sqlite_rows(&dir.join("chest.db"), "chest"))
    })
}

/// Every answered request has its three records.
fn assert_none_lost(ok_ids: &[String], rows: &[(String, String, String, String)]) {
    let stored: BTreeSet<(String, String)> = rows
        .iter()
        .map(|(id, name, _, _)| (id.clone(), name.clone()))
        .collect();
    let missing: Vec<&String> = ok_ids
        .iter()
        .filter(|id| {
            ["a", "b", "c"]
                .iter()
                .any(|name| !stored.contains(&((*id).clone(), (*name).to_owned())))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered requests lost records, e.g. {:?}",
        missing.len(),
        ok_ids.len(),
        &missing[..missing.len().min(5)]
    );
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
    let (_, rows) = restart_and_replay(&runtime, dir.path());
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
    if let Some(dir) = std::env::var_os(CHILD) {
        let dir = Path::new(&dir);
        let chest = StallAfterCommit {
            inner: SqliteChest::open(dir.join("chest.db")).unwrap(),
            batches: Default::default(),
        };
        return child(|| batched_into(dir, chest, Duration::from_millis(20)));
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, port, mut lines) = start_child(STALL_TEST, dir.path());
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
    let (stats, rows) = restart_and_replay(&runtime, dir.path());
    assert!(
        stats.already_stored >= 1,
        "the replayed batch was not recognised: {stats:#?}"
    );
    assert_none_lost(&ok_ids, &rows);
    let distinct: BTreeSet<(&str, &str)> = rows
        .iter()
        .map(|(id, name, _, _)| (id.as_str(), name.as_str()))
        .collect();
    assert_eq!(distinct.len(), rows.len(), "records were stored twice");
}
