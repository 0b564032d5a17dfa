//! The peers a user would pick instead of chest, on one axum server, for `bench/peers.sh`:
//!
//! - `GET /bare`: the handler alone;
//! - `GET /identity`: the same behind a route layer that does nothing (`tower_layer::Identity`):
//!   what axum charges for any route layer, the floor of every layer here and of chest's;
//! - `GET /axum-prometheus`: the same handler behind axum-prometheus's layer (a request counter,
//!   a duration histogram and an in-flight gauge, in memory; `/metrics` renders them);
//! - `GET /trace-json`: behind tower-http's `TraceLayer`, one JSON line per request written to
//!   `--log-dir`/requests.log by tracing-appender's non-blocking writer.
//!
//! The handler is `chest demo`'s: a transaction counter and the time it took.
//!
//! ```text
//! chest-peers [--addr 127.0.0.1:0] [--log-dir DIR]
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::routing::get;
use axum::Router;
use axum_prometheus::PrometheusMetricLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

static TRANSACTIONS: AtomicU64 = AtomicU64::new(0);

/// `chest demo`'s handler, with the two values the peers can carry: the JSON-lines route logs
/// them, the Prometheus layer keeps only its own request metrics.
async fn api_endpoint() -> &'static str {
    let started = Instant::now();
    let transaction = TRANSACTIONS.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::Span::current().record("transaction", transaction);
    tracing::Span::current().record("response_time", started.elapsed().as_secs_f64());
    "Hello, World!"
}

fn args() -> (SocketAddr, PathBuf) {
    let mut addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut log_dir = std::env::temp_dir();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--addr" => addr = value.parse().expect("--addr: a socket address"),
            "--log-dir" => log_dir = value.into(),
            other => panic!("unknown argument {other}"),
        }
    }
    (addr, log_dir)
}

#[tokio::main]
async fn main() {
    let (addr, log_dir) = args();
    let (writer, _flush_on_exit) =
        tracing_appender::non_blocking(tracing_appender::rolling::never(log_dir, "requests.log"));
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_writer(writer)
        .with_max_level(Level::INFO)
        .init();
    let (prometheus, handle) = PrometheusMetricLayer::pair();
    let traced = TraceLayer::new_for_http()
        .make_span_with(|request: &axum::http::Request<_>| {
            tracing::info_span!("request", method = %request.method(), uri = %request.uri(),
                transaction = tracing::field::Empty, response_time = tracing::field::Empty)
        })
        .on_request(())
        .on_response(DefaultOnResponse::new().level(Level::INFO));
    let app = Router::new()
        .route("/bare", get(api_endpoint))
        .merge(
            Router::new()
                .route("/identity", get(api_endpoint))
                .route_layer(tower_layer::Identity::new()),
        )
        .merge(
            Router::new()
                .route("/axum-prometheus", get(api_endpoint))
                .route_layer(prometheus),
        )
        .merge(
            Router::new()
                .route("/trace-json", get(api_endpoint))
                .route_layer(traced),
        )
        .route("/metrics", get(move || async move { handle.render() }));
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    println!(
        "chest-peers listening on http://{}",
        listener.local_addr().expect("address")
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .expect("serve");
}
