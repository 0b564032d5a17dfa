//! The program `bench/instructions.sh` runs under valgrind's callgrind: REQUESTS requests through
//! an axum router, in process (`tower::ServiceExt::oneshot`, a current-thread runtime, so every
//! instruction of the request path and of the `Batched` worker is counted on one thread).
//!
//! ```text
//! cargo run --release -p chest --features axum,batch,prometheus --example request_instructions -- VARIANT REQUESTS
//! ```
//!
//! VARIANT is one of:
//! - `bare`: the handler alone (it sets nothing: there is no request scope);
//! - `identity`: the same behind a `route_layer` that does nothing (`tower`'s `Identity`): what
//!   axum charges for any route layer (its boxing of the layered route), which no layer avoids;
//! - `inline`: `ChestLayer`, a handler setting 3 variables, a chest that discards them, written
//!   inside the request;
//! - `batched`: the same through a `Batched` chest whose sink discards (the worker's work
//!   included);
//! - `two`: the same with a second chest beside the `Batched` one: a discarding chest answering
//!   at once;
//! - `prometheus`: the same with `chest demo`'s second chest, a `PrometheusChest` (a gauge, a
//!   histogram; the text variable is skipped, as it would be there);
//! - `process`: the same with `Durability::Process`: each write is also copied into the
//!   memory-mapped journal (in a temporary folder), and released once the sink took it.
//!
//! Instruction counts do not move with the machine's other tenants, unlike timings; they do not
//! see what memory shared between cores costs either (see BENCHMARKS.md).

use std::error::Error;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use chest::batch::{Batched, Durability};
use chest::chests::prometheus::PrometheusChest;
use chest::layer::ChestLayer;
use chest::{Recorder, Vars};
use http::Request;
use tower::ServiceExt;

/// The allocator `chest demo` ships with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/discard.rs"]
mod discard;
use discard::Discard;

async fn bare() -> &'static str {
    let _ = chest::vars::set("user_id", 42);
    "ok"
}

async fn three_vars(vars: Vars) -> &'static str {
    vars.set("user_id", 42).expect("valid name");
    vars.set("latency_ms", 1.5).expect("valid name");
    vars.set("plan", "pro").expect("valid name");
    "ok"
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let usage =
        "usage: request_instructions bare|identity|inline|batched|two|prometheus|process REQUESTS";
    let variant = args.next().ok_or(usage)?;
    let requests: u64 = args.next().ok_or(usage)?.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let sink = Discard::default();
        let dir = tempfile::tempdir()?;
        let mut builder = Batched::builder(sink.clone());
        if variant == "process" {
            builder = builder
                .spool(dir.path().join("spool.db"))
                .durability(Durability::Process);
        }
        let batched = builder.build()?;
        let app = match variant.as_str() {
            "bare" => Router::new().route("/work", get(bare)),
            "identity" => Router::new()
                .route("/work", get(bare))
                .route_layer(tower::layer::util::Identity::new()),
            "inline" => Router::new()
                .route("/work", get(three_vars))
                .route_layer(ChestLayer::new(Recorder::new().chest(sink.clone()))),
            "batched" | "process" => Router::new()
                .route("/work", get(three_vars))
                .route_layer(ChestLayer::new(Recorder::new().chest(batched.clone()))),
            "two" => Router::new()
                .route("/work", get(three_vars))
                .route_layer(ChestLayer::new(
                    Recorder::new().chest(sink.clone()).chest(batched.clone()),
                )),
            "prometheus" => {
                let prometheus = PrometheusChest::builder()
                    .gauge("user_id")
                    .histogram("latency_ms", [0.5, 1.0, 2.0, 5.0, 10.0])
                    .build()?;
                Router::new()
                    .route("/work", get(three_vars))
                    .route_layer(ChestLayer::new(
                        Recorder::new().chest(prometheus).chest(batched.clone()),
                    ))
            }
            other => return Err(format!("unknown variant `{other}`; {usage}").into()),
        }
        // What `axum::serve` does once: the handlers become routes (with their layers) here, not
        // on every request.
        .with_state(());
        for n in 0..requests {
            // A request that never waits never yields: let the `Batched` worker (on this same
            // thread) take what is queued, as it would between requests on a server.
            if n % 256 == 0 {
                tokio::task::yield_now().await;
            }
            let request = Request::get("/work").body(Body::empty())?;
            let response = app.clone().oneshot(request).await?;
            if !response.status().is_success() {
                return Err(format!("status {}", response.status()).into());
            }
        }
        batched.shutdown(Duration::from_secs(10)).await;
        let expected = if matches!(variant.as_str(), "bare" | "identity") {
            0
        } else {
            3 * requests * if variant == "two" { 2 } else { 1 }
        };
        let got = sink.0.load(std::sync::atomic::Ordering::Relaxed);
        if got != expected {
            return Err(format!("the sink got {got} records, expected {expected}").into());
        }
        Ok::<_, Box<dyn Error>>(())
    })
}
