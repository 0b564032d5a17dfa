//! Batched delivery benchmarks.
//!
//! - `request_path/*`: one request through an axum router, in process (`tower::ServiceExt::oneshot`):
//!   `bare` (no layer, the handler sets nothing) against `batched` (ChestLayer, a handler doing
//!   3 `vars.set`, a `Batched` chest whose sink discards) and `batched_sqlite` (the sink is SQLite,
//!   writing on the other core meanwhile). The difference of the medians is the request path's
//!   cost. `inline_discard` (the layer writing inline to a chest that discards) separates the
//!   layer's own cost from the enqueue's.
//! - `sink/*`: records per second through `Batched` into SQLite, 3 records per request, from
//!   the first write until the last record is written, into a fresh database each run; and the
//!   same records written straight to SQLite (`sqlite_direct_1000`) as the baseline, also with
//!   random (UUID4) request ids instead of the default time-ordered ones.
//!
//! Run: `cargo bench -p chest --bench batch`. The benchmark uses mimalloc, the allocator `chest
//! demo` ships with, on both sides of every comparison.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use chest::batch::{Batched, OverflowPolicy};
use chest::chests::sqlite::SqliteChest;
use chest::layer::ChestLayer;
use chest::{Chest, MakeRequestId, Record, Recorder, Uuid4, Uuid7, Vars};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::Request;
use tower::ServiceExt;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../examples/support/discard.rs"]
mod discard;
use discard::Discard;

/// A clock for `iter_custom`.
type Clock = fn() -> Duration;

/// Time since the first call.
fn wall() -> Duration {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// The CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`), so that time spent waiting
/// for a core on a busy machine is not counted. Elsewhere than 64-bit Linux: wall time.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn thread_cpu() -> Duration {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, time: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut time = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid, writable timespec with the C layout on this target.
    if unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut time) } != 0 {
        return wall();
    }
    Duration::new(time.tv_sec.unsigned_abs(), time.tv_nsec as u32)
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn thread_cpu() -> Duration {
    wall()
}

async fn bare() -> &'static str {
    "ok"
}

async fn three_vars(vars: Vars) -> &'static str {
    vars.set("user_id", 42).unwrap();
    vars.set("latency_ms", 1.5).unwrap();
    vars.set("plan", "pro").unwrap();
    "ok"
}

fn layered(batched: &Batched) -> Router {
    Router::new()
        .route("/work", get(three_vars))
        .route_layer(ChestLayer::new(Recorder::new().chest(batched.clone())))
}

fn request_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (discard, sqlite) = runtime.block_on(async {
        let discard = Batched::builder(Discard::default()).build().unwrap();
        let sqlite = Batched::builder(SqliteChest::open(dir.path().join("bench.db")).unwrap())
            .build()
            .unwrap();
        (discard, sqlite)
    });
    let inline = Router::new()
        .route("/work", get(three_vars))
        .route_layer(ChestLayer::new(Recorder::new().chest(Discard::default())));
    let apps = [
        ("bare", Router::new().route("/work", get(bare))),
        ("inline_discard", inline),
        ("batched", layered(&discard)),
        ("batched_sqlite", layered(&sqlite)),
    ];
    // The enqueue alone: one `write` of a request's 3 records, no HTTP.
    let records = {
        let id = "0c6f3c9e-5f3a-4f5e-9d55-2a1f7c1b9e11";
        vec![
            Record::new(id, "user_id", 42, "GET", Some("/work")),
            Record::new(id, "latency_ms", 1.5, "GET", Some("/work")),
            Record::new(id, "plan", "pro", "GET", Some("/work")),
        ]
    };
    // Wall time, then the CPU time of the thread serving the requests (the worker's own thread
    // excluded): on a loaded machine the second is the steadier figure for the request path.
    for (group_name, clock) in [
        ("request_path", wall as Clock),
        ("request_path_cpu", thread_cpu),
    ] {
        let mut group = c.benchmark_group(group_name);
        for (name, app) in &apps {
            group.bench_function(*name, |b| {
                b.to_async(&runtime).iter_custom(|iters| {
                    let app = app.clone();
                    async move {
                        let started = clock();
                        for _ in 0..iters {
                            let request = Request::get("/work").body(Body::empty()).unwrap();
                            let response = app.clone().oneshot(request).await.unwrap();
                            assert!(response.status().is_success());
                        }
                        clock() - started
                    }
                })
            });
        }
        group.bench_function("enqueue_only", |b| {
            b.to_async(&runtime).iter_custom(|iters| {
                let (discard, records) = (&discard, &records);
                async move {
                    let started = clock();
                    for _ in 0..iters {
                        discard.write(records).await.unwrap();
                    }
                    clock() - started
                }
            })
        });
        group.finish();
    }
    runtime.block_on(async {
        for batched in [discard, sqlite] {
            let stats = batched.shutdown(Duration::from_secs(30)).await;
            eprintln!(
                "{}: enqueued {} written {} dropped {:?}",
                stats.chest, stats.enqueued, stats.written, stats.dropped
            );
        }
    });
}

const REQUESTS: usize = 30_000;

/// A fresh SQLite chest in `dir`: every measured run writes into a new table, so the figure does
/// not drift as the table and its index grow over thousands of runs.
fn fresh_sqlite(dir: &std::path::Path) -> SqliteChest {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    SqliteChest::open(dir.join(format!("sink-{run}.db"))).unwrap()
}

fn sink(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let requests_with = |ids: &dyn MakeRequestId| -> Vec<Vec<Record>> {
        (0..REQUESTS)
            .map(|i| {
                let id = ids.make_shared_request_id();
                vec![
                    Record::new(id.clone(), "user_id", i as i64, "GET", Some("/work")),
                    Record::new(id.clone(), "latency_ms", 1.5, "GET", Some("/work")),
                    Record::new(id, "plan", "pro", "GET", Some("/work")),
                ]
            })
            .collect()
    };
    // Ids as the layer makes them by default, and Flask-Chest's random ones.
    let requests = requests_with(&Uuid7);
    let random_id_requests = requests_with(&Uuid4);
    let mut group = c.benchmark_group("sink");
    group.throughput(Throughput::Elements(REQUESTS as u64 * 3));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    // The baseline: the same records written straight to SQLite, 1,000 a write.
    for (name, requests) in [
        ("sqlite_direct_1000", &requests),
        ("sqlite_direct_1000_uuid4_ids", &random_id_requests),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter_custom(|iters| {
                let dir = dir.path();
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let direct = fresh_sqlite(dir);
                        let started = Instant::now();
                        for chunk in requests.chunks(1_000 / 3) {
                            let records: Vec<Record> = chunk.iter().flatten().cloned().collect();
                            direct.write(&records).await.unwrap();
                        }
                        total += started.elapsed();
                    }
                    total
                }
            })
        });
    }
    for batch in [1_000, 5_000] {
        group.bench_function(format!("batched_sqlite_{batch}"), |b| {
            b.to_async(&runtime).iter_custom(|iters| {
                let (dir, requests) = (dir.path(), &requests);
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let batched = Batched::builder(fresh_sqlite(dir))
                            .max_batch_records(batch)
                            .linger(Duration::from_millis(10))
                            .queue_capacity(REQUESTS * 3)
                            .overflow(OverflowPolicy::Block(Duration::from_secs(60)))
                            .build()
                            .unwrap();
                        let target = REQUESTS as u64 * 3;
                        let started = Instant::now();
                        for records in requests {
                            batched.write(records).await.unwrap();
                        }
                        while batched.stats().written < target {
                            tokio::time::sleep(Duration::from_micros(200)).await;
                        }
                        total += started.elapsed();
                        let stats = batched.shutdown(Duration::from_secs(30)).await;
                        assert_eq!(stats.dropped.total(), 0, "{stats:?}");
                    }
                    total
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, request_path, sink);
criterion_main!(benches);
