//! `chest demo`: Flask-Chest's sample usage, served by axum.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::{Json, Router};
use chest::batch::{Batched, Stats};
use chest::chests::prometheus::PrometheusChest;
use chest::chests::sqlite::SqliteChest;
use chest::config::{Config, Pipeline};
use chest::layer::ChestLayer;
use chest::{Chest, Recorder, Tracked};

use crate::CliError;

/// Options of `chest demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// SQLite database file, or a `mysql://…` / `postgres://…` / `nats://HOST:4222/STREAM` URL.
    #[arg(long, default_value = "chest.db")]
    db: PathBuf,
    /// Table to write.
    #[arg(long, default_value = "chest")]
    table: String,
    /// Write inline, inside each request (Flask-Chest's way), instead of through a batched
    /// background queue: for comparison.
    #[arg(long, conflicts_with = "config")]
    inline: bool,
    /// A TOML pipeline (chests, delivery, tracked vars, request ids) instead of --db/--table.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Leave out the Prometheus chest and `/metrics` (to measure what it costs).
    #[arg(long)]
    no_prometheus: bool,
    /// When a record counts as accepted by the batched chest: `memory` (default), `process`
    /// (in a memory-mapped journal in the page cache: survives a crash) or `disk` (fsynced: survives
    /// power loss). Not with --inline or --config (set `durability` there).
    #[arg(long, value_enum, default_value_t = DurabilityArg::Memory, conflicts_with_all = ["inline", "config"])]
    durability: DurabilityArg,
    /// How long shutdown may take to drain batched chests.
    #[arg(long, default_value = "10s", value_parser = chest::config::parse_duration)]
    shutdown_deadline: Duration,
}

/// `--durability`: [`chest::batch::Durability`] on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DurabilityArg {
    Memory,
    Process,
    Disk,
}

impl From<DurabilityArg> for chest::batch::Durability {
    fn from(arg: DurabilityArg) -> Self {
        match arg {
            DurabilityArg::Memory => chest::batch::Durability::Memory,
            DurabilityArg::Process => chest::batch::Durability::Process,
            DurabilityArg::Disk => chest::batch::Durability::Disk,
        }
    }
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

/// `GET /traced`: records only through `tracing` (the bridge of `main` turns the fields into
/// variables). In a module of its own so that the default log filter can leave its per-request
/// event out of the log: it is a fact for the chest, not a log line.
mod traced {
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Users seen, for the `user_id` variable.
    static USERS: AtomicU64 = AtomicU64::new(0);

    #[tracing::instrument(skip_all, fields(user_id))]
    pub async fn traced() -> &'static str {
        let user_id = USERS.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::Span::current().record("user_id", user_id);
        tracing::info!(cart_total = 12.5, "checkout");
        "Hello, traced World!"
    }
}

/// The demo's routes: the recorded sample endpoint, `/traced`, `/bare`, `GET /chest/stats`, and
/// `GET /metrics` when there is a Prometheus chest.
fn app(recorder: Recorder, batched: Vec<Batched>, prometheus: Option<&PrometheusChest>) -> Router {
    let stats = move || {
        let all: Vec<Stats> = batched.iter().map(Batched::stats).collect();
        std::future::ready(Json(all))
    };
    // The same chests, every variable, and the automatic request facts.
    let traced_recorder = recorder
        .clone()
        .tracked_vars(Tracked::all())
        .request_facts(true);
    let app = Router::new()
        .route("/api-endpoint", get(api_endpoint).post(api_endpoint))
        .route_layer(ChestLayer::new(recorder))
        .route(
            "/traced",
            get(traced::traced).route_layer(ChestLayer::new(traced_recorder)),
        )
        .route("/bare", get(api_endpoint))
        .route("/chest/stats", get(stats));
    match prometheus {
        Some(prometheus) => app.merge(prometheus.router()),
        None => app,
    }
}

pub fn run(args: DemoArgs) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

/// The sample's pipeline: SQLite, batched (spool and dead letters beside the database) unless
/// `--inline`; GET → transaction, POST → transaction and response_time.
async fn sample_pipeline(
    args: &DemoArgs,
    prometheus: Option<&PrometheusChest>,
) -> Result<Pipeline, CliError> {
    let store: Arc<dyn Chest> = match crate::db_url(&args.db, &args.table) {
        Some(url) => chest::open(&url).await?,
        None => Arc::new(SqliteChest::builder(&args.db).table(&args.table).build()?),
    };
    let mut recorder = Recorder::new().tracked_vars(
        Tracked::methods()
            .method("GET", ["transaction"])
            .method("POST", ["transaction", "response_time"]),
    );
    if let Some(prometheus) = prometheus {
        recorder = recorder.chest(prometheus.clone());
    }
    if args.inline {
        return Ok(Pipeline::new(recorder.chest(store), Vec::new()));
    }
    // Beside the SQLite file; in the current folder for a server URL.
    let beside_db = |suffix: &str| {
        let mut path = match args.db.to_str() {
            Some(db) if db.contains("://") => "chest-demo".into(),
            _ => args.db.clone().into_os_string(),
        };
        path.push(suffix);
        PathBuf::from(path)
    };
    let batched = Batched::builder(store)
        .spool(beside_db(".spool"))
        .dead_letter(beside_db(".dead.jsonl"))
        .durability(args.durability.into())
        .build()?;
    Ok(Pipeline::new(
        recorder.chest(batched.clone()),
        vec![batched],
    ))
}

async fn serve(args: DemoArgs) -> Result<(), CliError> {
    // The sample's metrics: transaction numbers as a gauge, response times as a histogram.
    let prometheus = (!args.no_prometheus && args.config.is_none())
        .then(|| {
            PrometheusChest::builder()
                .gauge("transaction")
                .histogram(
                    "response_time",
                    [1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0],
                )
                .build()
        })
        .transpose()?;
    let pipeline = match &args.config {
        Some(path) => Config::load(path)?.build().await?,
        None => sample_pipeline(&args, prometheus.as_ref()).await?,
    };
    if let Some(prometheus) = &prometheus {
        for batched in &pipeline.batched {
            prometheus.register_batched(batched)?;
        }
    }
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
    let addr = listener.local_addr()?;
    // The banner is a courtesy: a closed stdout (a pipe whose reader left) must not stop the server.
    let banner = format!(
        "chest demo listening on http://{addr}\n  recorded:   curl http://{addr}/api-endpoint  \
         (GET and POST)\n  traced:     curl http://{addr}/traced  (recorded through tracing)\n  no layer:   curl http://{addr}/bare\n  counters:   curl \
         http://{addr}/chest/stats  and  curl http://{addr}/metrics\n  then:       chest query --db {} --table {}\n",
        args.db.display(),
        args.table
    );
    let _ = std::io::Write::write_all(&mut std::io::stdout(), banner.as_bytes());
    let batched = pipeline.batched.clone();
    let dashboard = crate::dashboard::mounted(&args.db, &args.table, batched.clone()).await;
    axum::serve(
        listener,
        app(pipeline.recorder, batched, prometheus.as_ref()).merge(dashboard),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    for chest in &pipeline.batched {
        let stats = chest.shutdown(args.shutdown_deadline).await;
        tracing::info!(
            chest = %stats.chest,
            written = stats.written,
            spooled = stats.spool_records,
            dropped = stats.dropped.total(),
            "batched chest drained"
        );
    }
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
