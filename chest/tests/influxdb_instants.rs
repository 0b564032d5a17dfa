//! InfluxDB keeps one point per measurement, tag set and time, so two requests that set the same
//! variable in the same instant would leave one point. Concurrent requests through the layer must
//! stay distinct points in InfluxDB 1.6, written at once and replayed from the spool (which keeps
//! microseconds), with the request id a field (the default), not a tag.
#![cfg(all(feature = "influxdb", feature = "batch", feature = "axum"))]

mod common;

use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Query;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use chest::batch::Batched;
use chest::chests::influxdb::InfluxDbChest;
use chest::layer::ChestLayer;
use chest::{Chest, Recorder, Vars};
use tower::ServiceExt;

const TASKS: usize = 8;
const PER_TASK: usize = 500;
const REQUESTS: usize = TASKS * PER_TASK;

#[derive(serde::Deserialize)]
struct Hit {
    i: i64,
}

/// `REQUESTS` concurrent requests, each setting `measurement` to its number, recorded into `chest`.
async fn load(chest: impl Chest, measurement: &'static str) {
    let handler = move |vars: Vars, Query(hit): Query<Hit>| async move {
        vars.set(measurement, hit.i).unwrap();
        "ok"
    };
    let app = Router::new()
        .route("/hit", get(handler))
        .route_layer(ChestLayer::new(Recorder::new().chest(chest)));
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let app = app.clone();
            tokio::spawn(async move {
                for k in 0..PER_TASK {
                    let uri = format!("/hit?i={}", t * PER_TASK + k);
                    let request = Request::get(uri).body(Body::empty()).unwrap();
                    let response = app.clone().oneshot(request).await.unwrap();
                    assert!(response.status().is_success());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// The number of points of `measurement`, and the sum of their values, once all arrived (or as
/// they are after 20 s).
async fn count_and_sum(url: &str, db: &str, measurement: &str) -> (i64, i64) {
    let client = common::http_client();
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("db", db)
        .append_pair(
            "q",
            &format!("SELECT COUNT(value), SUM(value) FROM \"{measurement}\""),
        )
        .finish();
    let mut found = (0, 0);
    for _ in 0..200 {
        let body: serde_json::Value = client
            .get(format!("{url}/query?{query}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let row = &body["results"][0]["series"][0]["values"][0];
        found = (row[1].as_i64().unwrap_or(0), row[2].as_i64().unwrap_or(0));
        if found.0 >= REQUESTS as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    found
}

fn leak(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}

async fn spool_then_replay(url: &str, db: &str, measurement: &'static str, spool: &Path) {
    // InfluxDB unreachable: every record ends in the spool at shutdown.
    let down = InfluxDbChest::v1(format!("http://127.0.0.1:{}", common::free_port()), db)
        .build()
        .unwrap();
    let batched = Batched::builder(down)
        .spool(spool)
        .retry_budget(Duration::ZERO)
        .build()
        .unwrap();
    load(batched.clone(), measurement).await;
    let stats = batched.shutdown(Duration::from_secs(10)).await;
    assert_eq!(stats.spool_records, REQUESTS as u64, "{stats:?}");
    assert!(stats.is_balanced(), "{stats:?}");

    let up = InfluxDbChest::v1(url, db).build().unwrap();
    let batched = Batched::builder(up).spool(spool).build().unwrap();
    let stats = batched.shutdown(Duration::from_secs(30)).await;
    assert_eq!(stats.spool_records, 0, "{stats:?}");
    assert_eq!(stats.restored, REQUESTS as u64, "{stats:?}");
    assert_eq!(stats.replayed, REQUESTS as u64, "{stats:?}");
    assert_eq!(stats.written, REQUESTS as u64, "{stats:?}");
    assert!(stats.is_balanced(), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_stay_distinct_points_live_and_replayed() {
    let Some(url) = common::service_url("CHEST_TEST_INFLUXDB1_URL") else {
        return;
    };
    let db = std::env::var("CHEST_TEST_INFLUXDB1_DB").expect("CHEST_TEST_INFLUXDB1_DB");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let sum = (REQUESTS as i64 - 1) * REQUESTS as i64 / 2;

    let live = leak(format!("instants_live_{stamp}"));
    load(InfluxDbChest::v1(&url, &db).build().unwrap(), live).await;
    assert_eq!(
        count_and_sum(&url, &db, live).await,
        (REQUESTS as i64, sum),
        "written at once: every request one point"
    );

    let replayed = leak(format!("instants_replayed_{stamp}"));
    let dir = tempfile::tempdir().unwrap();
    spool_then_replay(&url, &db, replayed, &dir.path().join("spool.db")).await;
    assert_eq!(
        count_and_sum(&url, &db, replayed).await,
        (REQUESTS as i64, sum),
        "replayed from the spool: every request one point"
    );
}
