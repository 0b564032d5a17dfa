//! `chest dashboard`: a page of plots over what a chest recorded (per variable, route and
//! method), its recent records with a request-id search, and, when `chest demo` mounts it at
//! `/chest/dashboard/`, the live pipeline's health. Read-only; binds to loopback by default. The
//! page and uPlot are served from the binary; the page reads the JSON API of [`api`].

mod api;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use axum::Router;
use chest::batch::Batched;
use chest::read::Reader;

use crate::CliError;

/// Options of `chest dashboard`.
#[derive(Debug, clap::Args)]
pub struct DashboardArgs {
    /// SQLite database file, or a `sqlite://…`, `mysql://…` or `postgres://…` URL.
    #[arg(long, default_value = "chest.db")]
    db: PathBuf,
    /// Table to read (a `table=` in a --db URL wins).
    #[arg(long, default_value = "chest")]
    table: String,
    /// Address to serve the page on (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1:3030")]
    addr: SocketAddr,
}

/// The pipeline's counters for the health panel, as JSON (one object per `Batched` chest).
pub type Health = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// What the dashboard's handlers share: the reader, and the pipeline's health when attached.
#[derive(Clone)]
pub struct Dashboard {
    reader: Arc<Reader>,
    health: Option<Health>,
}

impl Dashboard {
    /// A dashboard over `reader`, with the health of a running pipeline if there is one.
    pub fn new(reader: Reader, health: Option<Health>) -> Self {
        Dashboard {
            reader: Arc::new(reader),
            health,
        }
    }
}

/// The page, its assets and the API under `base` (`""`, or a path such as `/chest/dashboard`
/// that then redirects to itself with a trailing slash: the page's links are relative).
pub fn router(base: &str, dashboard: Dashboard) -> Router {
    let mut router = Router::new()
        .route(&format!("{base}/"), get(asset(ASSETS[0])))
        .nest(&format!("{base}/api/v1"), api::router(dashboard));
    for &file in &ASSETS[1..] {
        router = router.route(&format!("{base}/{}", file.0), get(asset(file)));
    }
    if !base.is_empty() {
        let to = format!("{base}/");
        router = router.route(base, get(move || std::future::ready(Redirect::to(&to))));
    }
    router
}

/// A file of the page: its path (below the page), content type and bytes.
type Asset = (&'static str, &'static str, &'static [u8]);

/// The page's files, served from the binary; the page first.
const ASSETS: [Asset; 5] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../assets/dashboard/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/dashboard/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/dashboard/style.css"),
    ),
    (
        "vendor/uplot/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/dashboard/vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "vendor/uplot/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/dashboard/vendor/uplot/uPlot.min.css"),
    ),
];

/// The handler of one asset. The headers keep the page from being framed or from loading
/// anything but its own files.
fn asset(
    (_, content_type, bytes): Asset,
) -> impl Fn() -> std::future::Ready<axum::response::Response> + Clone + Send + Sync + 'static {
    move || {
        let headers = [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
            ),
        ];
        std::future::ready((headers, bytes).into_response())
    }
}

/// The dashboard `chest demo` mounts at `/chest/dashboard/`: over the demo's table, with the
/// health of its `Batched` chests. No routes (and a warning) when the table cannot be read.
pub async fn mounted(db: &Path, table: &str, batched: Vec<Batched>) -> Router {
    let reader = match crate::query::open(db, table).await {
        Ok(reader) => reader,
        Err(e) => {
            tracing::warn!(error = %chest::error_chain(&*e), "no dashboard: cannot read the demo's table");
            return Router::new();
        }
    };
    let health: Health = Arc::new(move || {
        let stats: Vec<_> = batched.iter().map(Batched::stats).collect();
        serde_json::to_value(stats).unwrap_or_default()
    });
    router("/chest/dashboard", Dashboard::new(reader, Some(health)))
}

pub fn run(args: DashboardArgs) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: DashboardArgs) -> Result<(), CliError> {
    let reader = crate::query::open(&args.db, &args.table).await?;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
    let addr = listener.local_addr()?;
    let banner = format!("chest dashboard listening on http://{addr}/ (read-only)\n");
    let _ = std::io::Write::write_all(&mut std::io::stdout(), banner.as_bytes());
    let app = router("", Dashboard::new(reader, None));
    axum::serve(listener, app)
        .with_graceful_shutdown(crate::demo::shutdown_signal())
        .await?;
    Ok(())
}
