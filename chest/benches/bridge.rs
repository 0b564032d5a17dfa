//! The tracing bridge's cost: a field recorded through it (event fields, `Span::record`) against
//! the same value through `vars.set`, an event outside any chest scope (with and without the
//! bridge in the subscriber, so its own share shows), and whole requests through the axum layer
//! in process: three variables through `vars.set` or through tracing, request facts off or on.
//!
//! `cargo bench -p chest --features tracing --bench bridge`

use std::hint::black_box;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use chest::bridge::TracingBridge;
use chest::layer::ChestLayer;
use chest::{Recorder, Vars};
use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use tower::ServiceExt;
use tracing::{info, info_span, Span};
use tracing_subscriber::prelude::*;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../examples/support/discard.rs"]
mod discard;
use discard::Discard;

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
        info!(probe = 1, "the bridge is there");
        assert!(vars.get("probe").is_some(), "the bridge records");
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

async fn three_vars(vars: Vars) -> &'static str {
    vars.set("user_id", 42).unwrap();
    vars.set("cart_total", 12.5).unwrap();
    vars.set("plan", "pro").unwrap();
    "ok"
}

/// The same three variables through tracing only: a span field recorded later, two event fields.
#[tracing::instrument(skip_all, fields(user_id))]
async fn three_fields() -> &'static str {
    Span::current().record("user_id", 42);
    info!(cart_total = 12.5, plan = "pro", "checkout");
    "ok"
}

fn request_path(c: &mut Criterion) {
    // One thread, so that the bridge as this thread's subscriber sees the requests.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _subscriber =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(TracingBridge::new()));
    let layer = |facts: bool| {
        ChestLayer::new(
            Recorder::new()
                .chest(Discard::default())
                .request_facts(facts),
        )
    };
    let apps = [
        (
            "vars.set",
            Router::new()
                .route("/work", get(three_vars))
                .route_layer(layer(false)),
        ),
        (
            "vars.set + facts",
            Router::new()
                .route("/work", get(three_vars))
                .route_layer(layer(true)),
        ),
        (
            "tracing",
            Router::new()
                .route("/work", get(three_fields))
                .route_layer(layer(false)),
        ),
        (
            "tracing + facts",
            Router::new()
                .route("/work", get(three_fields))
                .route_layer(layer(true)),
        ),
    ];
    let mut group = c.benchmark_group("request path, inline discarding chest");
    for (name, app) in &apps {
        group.bench_function(*name, |b| {
            b.to_async(&runtime).iter(|| async {
                let request = Request::get("/work").body(Body::empty()).unwrap();
                let response = app.clone().oneshot(request).await.unwrap();
                assert!(response.status().is_success());
                // Dropped unread, as a server drops a body it has sent: the body facts' write.
            })
        });
    }
    group.finish();
}

criterion_group!(benches, per_field, outside_a_scope, request_path);
criterion_main!(benches);
