//! The tracing bridge's cost: a field recorded through it (event fields, `Span::record`) against
//! the same value through `vars.set`, and an event outside any chest scope (with and without the
//! bridge in the subscriber, so its own share shows).
//!
//! `cargo bench -p chest --features tracing --bench bridge`

use std::hint::black_box;

use chest::bridge::TracingBridge;
use chest::Vars;
use criterion::{criterion_group, criterion_main, Criterion};
use tracing::{info, info_span};
use tracing_subscriber::prelude::*;

/// Runs `f` with `vars` as the current request's store.
fn in_scope(vars: &Vars, f: impl FnOnce()) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(vars.scope(async { f() }));
}

fn per_field(c: &mut Criterion) {
    let _subscriber =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(TracingBridge::new()));
    let vars = Vars::new("bench");
    in_scope(&vars, || {
        let mut group = c.benchmark_group("one field in a scope");
        group.bench_function("vars.set", |b| {
            b.iter(|| vars.set("user_id", black_box(7_i64)).unwrap());
        });
        group.bench_function("chest::vars::set", |b| {
            b.iter(|| chest::vars::set("user_id", black_box(7_i64)).unwrap());
        });
        group.bench_function("event, 1 field", |b| {
            b.iter(|| info!(user_id = black_box(7_i64), "checkout"));
        });
        group.bench_function("event, 4 fields", |b| {
            b.iter(|| {
                info!(
                    user_id = black_box(7_i64),
                    cart_total = black_box(12.5),
                    paid = true,
                    region = "eu",
                    "checkout"
                )
            });
        });
        let span = info_span!("request", user_id = tracing::field::Empty);
        group.bench_function("Span::record", |b| {
            b.iter(|| {
                span.record("user_id", black_box(7_i64));
            });
        });
        group.finish();
    });
    assert!(vars.get("cart_total").is_some(), "the bridge recorded");
}

fn outside_a_scope(c: &mut Criterion) {
    let mut group = c.benchmark_group("one event outside a scope");
    {
        let _subscriber = tracing::subscriber::set_default(
            tracing_subscriber::registry().with(TracingBridge::new()),
        );
        group.bench_function("with the bridge", |b| {
            b.iter(|| info!(user_id = black_box(7_i64), "checkout"));
        });
    }
    {
        // The same subscriber without it: an enabled event that no layer records.
        let _subscriber = tracing::subscriber::set_default(
            tracing_subscriber::registry().with(tracing_subscriber::layer::Identity::new()),
        );
        group.bench_function("without the bridge", |b| {
            b.iter(|| info!(user_id = black_box(7_i64), "checkout"));
        });
    }
    group.finish();
}

criterion_group!(benches, per_field, outside_a_scope);
criterion_main!(benches);
