//! `chest demo`: Flask-Chest's sample usage, served by axum.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::routing::get;
use axum::Router;
use chest::chests::sqlite::SqliteChest;
use chest::layer::ChestLayer;
use chest::{Recorder, Tracked};

use crate::CliError;

/// Options of `chest demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// SQLite database file.
    #[arg(long, default_value = "chest.db")]
    db: PathBuf,
    /// Table to write.
    #[arg(long, default_value = "chest")]
    table: String,
}

/// Transactions handled, for the `transaction` variable.
static TRANSACTIONS: AtomicU64 = AtomicU64::new(0);

/// The sample handler. It records through the task-local functions, so the very same handler
/// serves `/bare` (no layer: the calls find no request scope and record nothing).
async fn api_endpoint() -> &'static str {
    let started = Instant::now();
    let transaction = TRANSACTIONS.fetch_add(1, Ordering::Relaxed) + 1;
    let _ = chest::vars::set("transaction", transaction);
    let _ = chest::vars::set("response_time", started.elapsed());
    "Hello, World!"
}

pub fn app(recorder: Recorder) -> Router {
    Router::new()
        .route("/api-endpoint", get(api_endpoint).post(api_endpoint))
        .route_layer(ChestLayer::new(recorder))
        .route("/bare", get(api_endpoint))
}

pub fn run(args: DemoArgs) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: DemoArgs) -> Result<(), CliError> {
    let sqlite = SqliteChest::builder(&args.db).table(&args.table).build()?;
    let recorder = Recorder::new().chest(sqlite).tracked_vars(
        Tracked::methods()
            .method("GET", ["transaction"])
            .method("POST", ["transaction", "response_time"]),
    );
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
    let addr = listener.local_addr()?;
    // The banner is a courtesy: a closed stdout (a pipe whose reader left) must not stop the server.
    let banner = format!(
        "chest demo listening on http://{addr}\n  recorded:   curl http://{addr}/api-endpoint  \
         (GET and POST)\n  no layer:   curl http://{addr}/bare\n  then:       chest query --db {} \
         --table {}\n",
        args.db.display(),
        args.table
    );
    let _ = std::io::Write::write_all(&mut std::io::stdout(), banner.as_bytes());
    axum::serve(listener, app(recorder))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("chest demo stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
