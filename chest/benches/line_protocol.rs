//! How fast records become InfluxDB line protocol (the InfluxDB chest's CPU cost per record),
//! and, when `CHEST_TEST_VM_URL` points at a VictoriaMetrics, how fast the chest writes large
//! batches into it end to end (encoding, gzip, HTTP, VictoriaMetrics' ingestion, all on this
//! machine): straight, and through `Batched` as a service would use it (one `write` per request
//! of 4 records, from the first write until the worker reports the last record written).
//!
//! `cargo bench -p chest --features influxdb --bench line_protocol`

use std::hint::black_box;
use std::time::{Duration, Instant, UNIX_EPOCH};

use chest::chests::influxdb::{InfluxDbChest, LineEncoder};
use chest::{Batched, Chest, OverflowPolicy, Record, Value};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// `n` records as a service makes them: a few variables per request (a latency float, a count,
/// a flag, a short text), UUID request ids shared by a request's records, route templates.
fn records(n: usize) -> Vec<Record> {
    let routes = ["/items/{id}", "/users/{id}/orders", "/health"];
    let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    (0..n)
        .map(|i| {
            let request = i / 4;
            let (name, value) = match i % 4 {
                0 => ("latency_ms", Value::Float(0.5 + (i % 977) as f64 * 1.37)),
                1 => ("items", Value::Int((i % 250) as i64)),
                2 => ("cache_hit", Value::Bool(i % 3 == 0)),
                _ => ("user", Value::Text(format!("user-{}", i % 1000))),
            };
            let request_id = format!("{:08x}-7d3c-4f0e-9a1b-{:012x}", request, request * 7919);
            Record::new(
                request_id,
                name,
                value,
                "GET",
                Some(routes[request % routes.len()]),
            )
            .at(t0 + Duration::from_nanos(request as u64 * 1_000_013))
        })
        .collect()
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("line protocol");
    let tags = [("service", "shop"), ("host", "web-1")];
    for (shape, as_tag) in [("request_id field", false), ("request_id tag", true)] {
        let encoder = LineEncoder::new(tags, as_tag).expect("valid tags");
        for n in [1_000, 10_000] {
            let batch = records(n);
            let mut out = Vec::with_capacity(n * 160);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new(shape, n), &batch, |b, batch| {
                b.iter(|| {
                    out.clear();
                    let refused = encoder.encode(black_box(batch), &mut out);
                    assert!(refused.is_empty());
                    black_box(out.len())
                })
            });
        }
    }
    group.finish();
}

fn into_victoria_metrics(c: &mut Criterion) {
    let Ok(vm) = std::env::var("CHEST_TEST_VM_URL") else {
        eprintln!("*** SKIPPED the VictoriaMetrics benchmark: CHEST_TEST_VM_URL is not set ***");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("write into VictoriaMetrics");
    group.sample_size(10);
    for gzip in [true, false] {
        let chest = InfluxDbChest::v2(&vm, "bench", "bench")
            .gzip(gzip)
            .build()
            .expect("valid settings");
        for n in [10_000, 50_000] {
            let batch = records(n);
            group.throughput(Throughput::Elements(n as u64));
            let id = BenchmarkId::new(if gzip { "gzip" } else { "plain" }, n);
            group.bench_with_input(id, &batch, |b, batch| {
                b.to_async(&runtime)
                    .iter(|| async { chest.write(batch).await.expect("written") })
            });
        }
    }
    group.finish();
    batched_into_victoria_metrics(c, &vm);
}

/// Records per request in [`records`].
const PER_REQUEST: usize = 4;

fn batched_into_victoria_metrics(c: &mut Criterion, vm: &str) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let total = 200_000;
    let requests: Vec<Vec<Record>> = records(total)
        .chunks(PER_REQUEST)
        .map(<[Record]>::to_vec)
        .collect();
    let mut group = c.benchmark_group("Batched into VictoriaMetrics");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(total as u64));
    for (batch, in_flight) in [(10_000, 2), (20_000, 2)] {
        let id = format!("gzip, batches of {batch}, {in_flight} in flight");
        group.bench_function(id, |b| {
            b.to_async(&runtime).iter_custom(|iters| {
                let requests = &requests;
                async move {
                    let mut elapsed = Duration::ZERO;
                    for _ in 0..iters {
                        let chest = InfluxDbChest::v2(vm, "bench", "bench")
                            .build()
                            .expect("valid settings");
                        let batched = Batched::builder(chest)
                            .max_batch_records(batch)
                            .max_batch_bytes(64 << 20)
                            .max_in_flight(in_flight)
                            .linger(Duration::from_millis(10))
                            .queue_capacity(total)
                            .overflow(OverflowPolicy::Block(Duration::from_secs(60)))
                            .build()
                            .expect("valid settings");
                        let started = Instant::now();
                        for request in requests {
                            batched.write(request).await.expect("queued");
                        }
                        while batched.stats().written < total as u64 {
                            tokio::time::sleep(Duration::from_micros(200)).await;
                        }
                        elapsed += started.elapsed();
                        let stats = batched.shutdown(Duration::from_secs(30)).await;
                        assert_eq!(stats.dropped.total() + stats.dead_lettered, 0, "{stats:?}");
                    }
                    elapsed
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encode, into_victoria_metrics);
criterion_main!(benches);
