//! The cost of the Prometheus chest's `write`: one observation per variable, on an existing
//! series (the steady state), and of one scrape.
//!
//! `cargo bench -p chest --features prometheus --bench prometheus`

use std::hint::black_box;

use chest::chests::prometheus::{Format, PrometheusChest};
use chest::{Chest, Record};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures_util::FutureExt;

fn chest() -> PrometheusChest {
    PrometheusChest::builder()
        .histogram(
            "latency_ms",
            [1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0],
        )
        .gauge("queue_depth")
        .counter("bytes_sent")
        .build()
        .expect("valid settings")
}

/// One write, driven to completion: the chest's future is ready at once.
fn write(chest: &PrometheusChest, records: &[Record]) {
    chest
        .write(records)
        .now_or_never()
        .expect("ready at once")
        .expect("accepted");
}

fn one_observation(c: &mut Criterion) {
    let mut group = c.benchmark_group("observe one variable");
    let cases = [
        (
            "histogram",
            Record::new("r", "latency_ms", 42.5, "GET", Some("/items/{id}")),
        ),
        (
            "gauge",
            Record::new("r", "queue_depth", 7, "GET", Some("/items/{id}")),
        ),
        (
            "counter",
            Record::new("r", "bytes_sent", 1500, "GET", Some("/items/{id}")),
        ),
        (
            "text, skipped",
            Record::new("r", "agent", "curl/8", "GET", Some("/items/{id}")),
        ),
    ];
    group.throughput(Throughput::Elements(1));
    for (kind, record) in cases {
        let chest = chest();
        let records = [record];
        write(&chest, &records); // the series exists: the steady state is measured
        group.bench_function(kind, |b| b.iter(|| write(&chest, black_box(&records))));
    }
    group.finish();
}

fn one_request(c: &mut Criterion) {
    let mut group = c.benchmark_group("observe a request's variables");
    for variables in [1usize, 3, 8] {
        let chest = chest();
        let records: Vec<Record> = (0..variables)
            .map(|i| Record::new("r", format!("var_{i}"), i as f64, "POST", Some("/orders")))
            .collect();
        write(&chest, &records);
        group.throughput(Throughput::Elements(variables as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(variables),
            &records,
            |b, records| b.iter(|| write(&chest, black_box(records))),
        );
    }
    group.finish();
}

fn scrape(c: &mut Criterion) {
    let chest = chest();
    // 3 families × 100 series (10 methods × 10 routes).
    let records: Vec<Record> = (0..100)
        .flat_map(|i| {
            let method = format!("M{}", i % 10);
            let route = format!("/r/{}", i / 10);
            ["latency_ms", "queue_depth", "bytes_sent"]
                .map(|name| Record::new("r", name, i, method.as_str(), Some(route.as_str())))
        })
        .collect();
    write(&chest, &records);
    let mut group = c.benchmark_group("scrape 300 series");
    for format in [Format::OpenMetrics, Format::PrometheusText] {
        group.bench_function(format!("{format:?}"), |b| {
            b.iter(|| black_box(chest.encode(format)))
        });
    }
    group.finish();
}

criterion_group!(benches, one_observation, one_request, scrape);
criterion_main!(benches);
