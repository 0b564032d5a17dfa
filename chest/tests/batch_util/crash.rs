//! The crash tests' server and load (included by `batch_crash.rs` and `batch_process.rs`): this
//! test binary re-executes itself as an axum server on a batched chest, is loaded over HTTP from
//! 8 clients, SIGKILLed, and restarted on the same files.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use chest::batch::Batched;
use chest::layer::ChestLayer;
use chest::{Recorder, Vars};

use crate::batch_util::{sqlite_rows, wait_until};

/// Set (to the data folder) in the child: run as the server.
pub const CHILD: &str = "CHEST_BATCH_CRASH_CHILD";

async fn handler(vars: Vars) -> &'static str {
    vars.set("a", 1).unwrap();
    vars.set("b", 2.5).unwrap();
    vars.set("c", "three").unwrap();
    "ok"
}

/// The server: prints its port, serves until killed.
pub fn child(batched: impl FnOnce() -> Batched) {
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
pub fn start_child(
    test: &str,
    dir: &Path,
) -> (std::process::Child, u16, impl Iterator<Item = String>) {
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
pub fn load_then_kill(
    runtime: &tokio::runtime::Runtime,
    mut server: std::process::Child,
    port: u16,
    kill: impl FnOnce(
        Arc<Mutex<Vec<String>>>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
) -> Vec<String> {
    let ok_ids: Arc<Mutex<Vec<String>>> = Arc::default();
    runtime.block_on(async {
        let client = crate::common::http_client();
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
/// stats (`restored`: what the kill left in the spool) and the database's rows.
pub fn restart_and_replay(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    batched: impl FnOnce() -> Batched,
) -> (chest::Stats, Vec<(String, String, String, String)>) {
    runtime.block_on(async {
        let restarted = batched();
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
pub fn assert_none_lost(ok_ids: &[String], rows: &[(String, String, String, String)]) {
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

/// No (request id, name) pair is in `rows` twice.
pub fn assert_stored_once(rows: &[(String, String, String, String)]) {
    let distinct: BTreeSet<(&str, &str)> = rows
        .iter()
        .map(|(id, name, _, _)| (id.as_str(), name.as_str()))
        .collect();
    assert_eq!(distinct.len(), rows.len(), "records were stored twice");
}
