//! The NATS JetStream chest against real servers: the shared one (`CHEST_TEST_NATS_URL`), the
//! shared 3-node cluster (`CHEST_TEST_NATS_CLUSTER_URLS`), and nats-server children of the test's
//! own (`CHEST_TEST_NATS_SERVER`) for outages, a node SIGKILLed during load, and credentials. What
//! was published is read back from the stream with a client of the test's own.
#![cfg(all(feature = "nats", feature = "batch"))]

mod batch_util;
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use batch_util::{assert_exactly_once, request, wait_until};
use chest::batch::{Batched, OverflowPolicy, Stats};
use chest::chests::nats::{message, NatsChest};
use chest::{BatchId, Chest, Record, Written};
use common::nats::{nats_server_binary, NatsCluster, NatsServer};
use common::service_url;

/// A stream name (and subject) no other test or earlier run uses.
fn unique(prefix: &str) -> (String, String) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    (
        format!("{prefix}_{nanos}_{n}"),
        format!("chest.test.{prefix}.{nanos}.{n}"),
    )
}

/// Every message of `stream` on `servers` (`host:port,…`): its `Nats-Msg-Id` and decoded batch.
async fn read_stream(servers: &str, stream: &str) -> Vec<(String, BatchId, Vec<Record>)> {
    let addrs: Vec<String> = servers.split(',').map(|s| format!("nats://{s}")).collect();
    let client = async_nats::connect(addrs.as_slice()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut handle = js.get_stream(stream).await.unwrap();
    let info = handle.info().await.unwrap().clone();
    let mut out = Vec::new();
    for seq in info.state.first_sequence..=info.state.last_sequence {
        if info.state.messages == 0 {
            break;
        }
        let raw = handle.get_raw_message(seq).await.unwrap();
        let msg_id = raw
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let (id, records) = message::decode(&raw.payload).unwrap();
        out.push((msg_id, id, records));
    }
    out
}

/// The server name of the stream's cluster leader.
async fn stream_leader(servers: &str, stream: &str) -> String {
    let addrs: Vec<String> = servers.split(',').map(|s| format!("nats://{s}")).collect();
    let client = async_nats::connect(addrs.as_slice()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut handle = js.get_stream(stream).await.unwrap();
    let info = handle.info().await.unwrap();
    info.cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("a clustered stream has a leader")
}

async fn delete_stream(servers: &str, stream: &str) {
    let addrs: Vec<String> = servers.split(',').map(|s| format!("nats://{s}")).collect();
    let client = async_nats::connect(addrs.as_slice()).await.unwrap();
    let _ = async_nats::jetstream::new(client)
        .delete_stream(stream)
        .await;
}

/// `host:port,…` of a `nats://host:port,…` URL.
fn hosts(url: &str) -> String {
    url.split(',')
        .map(|u| u.trim_start_matches("nats://").to_owned())
        .collect::<Vec<_>>()
        .join(",")
}

/// Published batches come back from the stream as written: one message per batch, its
/// `Nats-Msg-Id` the batch id, every value with its type, request id, method, route and time. A
/// retried batch id is stored once and answered `AlreadyStored`.
async fn round_trip(servers: &str, replicas: usize) {
    let (stream, subject) = unique("rt");
    let url =
        format!("nats://{servers}/{stream}?subject={subject}&create=true&replicas={replicas}");
    let chest = chest::open(&url).await.unwrap();
    assert_eq!(chest.name(), format!("nats://{servers}/{stream}"));
    let mut batches = Vec::new();
    for b in 0..3 {
        let id = BatchId::new();
        let mut records: Vec<Record> = (b * 10..b * 10 + 10).flat_map(request).collect();
        records.push(Record::new(
            format!("json-{b}"),
            "doc",
            serde_json::json!({"b": b, "s": "🦀\"'"}),
            "POST",
            None,
        ));
        assert_eq!(
            chest.write_batch(id, &records).await.unwrap(),
            Written::Stored
        );
        batches.push((id, records));
    }
    // The first batch again, as a retry whose answer was lost would send it.
    let (id0, records0) = &batches[0];
    assert_eq!(
        chest.write_batch(*id0, records0).await.unwrap(),
        Written::AlreadyStored
    );
    let stored = read_stream(servers, &stream).await;
    assert_eq!(
        stored.len(),
        3,
        "one message per batch, the retry not stored"
    );
    for ((msg_id, id, records), (want_id, want)) in stored.iter().zip(&batches) {
        assert_eq!(msg_id, &want_id.to_string());
        assert_eq!(id, want_id);
        assert_eq!(records, want);
    }
    let all: Vec<Record> = stored
        .into_iter()
        .flat_map(|(_, _, r)| r)
        .filter(|r| r.name.as_ref() != "doc")
        .collect();
    assert_exactly_once(&all, 30);
    delete_stream(servers, &stream).await;
}

#[tokio::test]
async fn round_trip_on_the_single_server() {
    let Some(url) = service_url("CHEST_TEST_NATS_URL") else {
        return;
    };
    round_trip(&hosts(&url), 1).await;
}

#[tokio::test]
async fn round_trip_on_the_three_node_cluster_with_three_replicas() {
    let Some(urls) = service_url("CHEST_TEST_NATS_CLUSTER_URLS") else {
        return;
    };
    round_trip(&hosts(&urls), 3).await;
}

fn batched(chest: impl Chest, dir: &std::path::Path) -> Batched {
    Batched::builder(chest)
        .spool(dir.join("spool.db"))
        .queue_capacity(2_000)
        .linger(Duration::from_millis(20))
        .max_batch_records(300)
        .backoff(Duration::from_millis(20), Duration::from_millis(300))
        .retry_budget(Duration::from_millis(500))
        .overflow(OverflowPolicy::Block(Duration::from_secs(60)))
        .build()
        .unwrap()
}

/// Writes `n` requests at a steady pace, calling `fault(i)` before each; no write may fail.
async fn load(batched: &Batched, n: usize, mut fault: impl FnMut(usize)) {
    for i in 0..n {
        fault(i);
        batched
            .write(&request(i))
            .await
            .expect("writers see no errors");
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
}

/// Every record arrived once, and the stats say where each one went.
async fn check_delivered(batched: Batched, servers: &str, stream: &str, n: usize) -> Stats {
    wait_until("every record published", Duration::from_secs(120), || {
        batched.stats().written == n as u64 * 3
    })
    .await;
    let stats = batched.shutdown(Duration::from_secs(10)).await;
    assert!(stats.is_balanced(), "{stats:#?}");
    assert_eq!(stats.dropped.total() + stats.dead_lettered, 0, "{stats:#?}");
    let stored = read_stream(servers, stream).await;
    let ids: std::collections::BTreeSet<_> = stored.iter().map(|(_, id, _)| *id).collect();
    assert_eq!(ids.len(), stored.len(), "a batch id stored twice");
    let all: Vec<Record> = stored.into_iter().flat_map(|(_, _, r)| r).collect();
    assert_exactly_once(&all, n);
    stats
}

/// JetStream SIGKILLed for a while under load: `Batched` keeps the records (queue, then spool),
/// retries under the same batch ids, and once the server is back every record is in the stream
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_rides_out_jetstream_being_down() {
    let Some(binary) = nats_server_binary() else {
        return;
    };
    let mut server = NatsServer::start(&binary, &[]);
    let (stream, subject) = unique("outage");
    let url = format!(
        "{}/{stream}?subject={subject}&create=true&timeout=1s",
        server.url()
    );
    let chest = NatsChest::open(&url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let batched = batched(chest, dir.path());
    const N: usize = 3_000;
    let mut down_at = None;
    load(&batched, N, |i| {
        if i == N / 4 {
            server.kill();
            down_at = Some(std::time::Instant::now());
        }
        if i == N / 2 {
            // Down for at least 2 s, whatever the pace of the load.
            let elapsed = down_at.unwrap().elapsed();
            std::thread::sleep(Duration::from_secs(2).saturating_sub(elapsed));
            server.restart();
        }
    })
    .await;
    let stats = check_delivered(batched, &hosts(&server.url()), &stream, N).await;
    assert!(
        stats.retried > 0,
        "the outage must have been seen: {stats:#?}"
    );
}

/// The 3-node cluster, a stream with 3 replicas: its leader SIGKILLed in the middle of the load
/// and started again, then a follower stopped with SIGTERM: no record lost or duplicated, no
/// writer error, the stats balanced. (Leadership may move back afterwards: not asserted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_survives_a_node_killed_during_load() {
    let Some(binary) = nats_server_binary() else {
        return;
    };
    let mut cluster = NatsCluster::start(&binary);
    let (stream, subject) = unique("cluster");
    let url = format!(
        "{}/{stream}?subject={subject}&create=true&replicas=3&timeout=2s",
        cluster.hosts()
    );
    // The cluster elects its JetStream leader a moment after the nodes start.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let chest = loop {
        match NatsChest::open(&url).await {
            Ok(chest) => break chest,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("cluster not ready yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("cluster never ready: {e}"),
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let batched = batched(chest, dir.path());
    const N: usize = 3_000;
    let servers = hosts(&cluster.hosts());
    // The node that leads the stream: killing it makes the other two elect a new leader.
    let leader = stream_leader(&servers, &stream).await;
    let victim = (0..3)
        .find(|i| leader.starts_with(&format!("node{i}-")))
        .unwrap_or_else(|| panic!("leader {leader} is none of the nodes"));
    // Then a follower stopped cleanly (SIGTERM) once the first is back.
    let follower = (victim + 1) % 3;
    load(&batched, N, |i| {
        if i == N / 4 {
            cluster.nodes[victim].kill();
        }
        if i == N / 2 {
            cluster.nodes[victim].restart();
        }
        if i == 3 * N / 4 {
            cluster.nodes[follower].terminate();
        }
    })
    .await;
    cluster.nodes[follower].restart();
    check_delivered(batched, &servers, &stream, N).await;
}

/// Unknown stream, bad URL, wrong credentials: one clear error naming the chest and the cause,
/// never the secret.
#[tokio::test]
async fn bad_input_gets_one_clear_error() {
    let Some(url) = service_url("CHEST_TEST_NATS_URL") else {
        return;
    };
    let (stream, _) = unique("missing");
    let err = chest::open(&format!("{url}/{stream}")).await.unwrap_err();
    let text = chest::error_chain(&err);
    assert!(text.contains(&format!("{url}/{stream}")), "{text}");
    assert!(
        text.contains("does not exist") && text.contains("create=true"),
        "{text}"
    );

    let err = chest::open(&format!("{url}/S?token=t0psecret"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, chest::Error::InvalidUrl { part: "query", .. }),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("t0psecret"), "{err:?}");

    let Some(binary) = nats_server_binary() else {
        return;
    };
    let server = NatsServer::start(&binary, &["--auth", "right-t0ken"]);
    std::env::set_var("CHEST_TEST_NATS_WRONG_TOKEN", "wr0ng-t0ken");
    std::env::set_var("CHEST_TEST_NATS_RIGHT_TOKEN", "right-t0ken");
    let wrong = format!(
        "{}/AUTH?create=true&token_env=CHEST_TEST_NATS_WRONG_TOKEN",
        server.url()
    );
    let err = chest::open(&wrong).await.unwrap_err();
    let text = format!("{} | {err:?}", chest::error_chain(&err));
    assert!(text.contains(&format!("{}/AUTH", server.url())), "{text}");
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(
        !text.contains("wr0ng-t0ken") && !text.contains("right-t0ken"),
        "{text}"
    );
    // The right token works, and the chest's Debug shows no secret either.
    let right = wrong.replace("WRONG", "RIGHT");
    let chest = NatsChest::open(&right).await.unwrap();
    assert!(!format!("{chest:?}").contains("right-t0ken"));
    let written = chest
        .write_batch(BatchId::new(), &[Record::new("r", "n", 1, "GET", None)])
        .await;
    assert_eq!(written.unwrap(), Written::Stored);
}
