//! Crash: with `Durability::Disk`, a server killed with SIGKILL mid-load loses nothing it
//! answered 2xx for. The test binary re-executes itself as the server (child mode), loads it over
//! HTTP, kills it, then restarts the batched chest on the same spool and checks the database.

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

fn batched(dir: &Path) -> Batched {
    Batched::builder(SqliteChest::open(dir.join("chest.db")).unwrap())
        .spool(dir.join("spool.db"))
        .durability(Durability::Disk)
        // Long linger: at the kill most records are only in the spool.
        .linger(Duration::from_secs(30))
        .max_batch_records(2_000)
        .build()
        .unwrap()
}

async fn handler(vars: Vars) -> &'static str {
    vars.set("a", 1).unwrap();
    vars.set("b", 2.5).unwrap();
    vars.set("c", "three").unwrap();
    "ok"
}

/// The server: prints its port, serves until killed.
fn child(dir: &Path) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let recorder = Recorder::new().chest(batched(dir));
        let app = Router::new()
            .route("/work", get(handler))
            .route_layer(ChestLayer::new(recorder));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("PORT {}", listener.local_addr().unwrap().port());
        axum::serve(listener, app).await.unwrap();
    });
}

#[test]
fn disk_durability_survives_sigkill() {
    if let Some(dir) = std::env::var_os(CHILD) {
        return child(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let port: u16 = BufReader::new(server.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        // The harness prints `test <name> ... ` before it on the same line.
        .find_map(|line| {
            line.split_once("PORT ")
                .map(|(_, p)| p.trim().parse().unwrap())
        })
        .expect("the child printed no port");

    let runtime = tokio::runtime::Runtime::new().unwrap();
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
        wait_until("2xx responses under load", Duration::from_secs(60), || {
            ok_ids.lock().unwrap().len() >= 1_500
        })
        .await;
        server.kill().unwrap(); // SIGKILL
        server.wait().unwrap();
        for task in load {
            task.await.unwrap();
        }
    });
    let ok_ids = ok_ids.lock().unwrap().clone();
    assert!(ok_ids.len() >= 1_500);

    // Restart: the same chest and spool; the spool replays into the database.
    let rows = runtime.block_on(async {
        let restarted = batched(dir.path());
        let restored = restarted.stats().restored;
        assert!(restored > 0, "nothing was left in the spool at the kill");
        wait_until("the spool replayed", Duration::from_secs(120), || {
            restarted.stats().spool_records == 0
        })
        .await;
        let stats = restarted.shutdown(Duration::from_secs(10)).await;
        assert!(stats.is_balanced(), "{stats:#?}");
        sqlite_rows(&dir.path().join("chest.db"), "chest")
    });
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
    let b = rows
        .iter()
        .find(|(id, name, _, _)| id == &ok_ids[0] && name == "b")
        .unwrap();
    assert_eq!((b.2.as_str(), b.3.as_str()), ("2.5", "float"));
}
