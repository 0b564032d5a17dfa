//! `chest`: a demo server, and queries and statistics over what chest recorded.

use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

mod dashboard;
mod demo;
mod export;
mod query;
mod spool;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Record per-request variables with chest, and look at what was recorded.
#[derive(Debug, Parser)]
#[command(name = "chest", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve Flask-Chest's sample app (GET|POST /api-endpoint) recording into SQLite, plus /bare.
    Demo(demo::DemoArgs),
    /// Print recorded rows (from SQLite, MySQL/MariaDB or PostgreSQL): a table, or one JSON
    /// object per line with --json.
    Query(query::QueryArgs),
    /// Per variable: count, and min, mean, p50, p95, p99, max of numeric values.
    Stats(query::StatsArgs),
    /// Copy a chest's rows (SQLite, MySQL, PostgreSQL, or a NATS JetStream stream) to another chest, resumably (checkpointed), optionally deleting
    /// them from the source once the target acknowledged them.
    Export(export::ExportArgs),
    /// Serve a read-only page of plots (per variable, route and method) and recent records over a
    /// chest (SQLite, MySQL/MariaDB or PostgreSQL).
    Dashboard(dashboard::DashboardArgs),
    /// Look at, or replay by hand, a `Batched` chest's spool file.
    Spool {
        #[command(subcommand)]
        command: spool::SpoolCommand,
    },
}

type CliError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo's `/traced` handler's per-request event is for its chest, not the log.
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,chest::demo::traced=warn".into()),
        );
    // The bridge records only inside chest scopes (the demo's routes); filtered on its own, so
    // that quieting the log does not quiet the chest, and no debug or trace callsite is enabled
    // for it.
    let bridge = chest::bridge::TracingBridge::new().with_filter(LevelFilter::INFO);
    tracing_subscriber::registry()
        .with(logs)
        .with(bridge)
        .init();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Query(args) => block_on(query::query(&args)),
        Command::Stats(args) => block_on(query::stats(&args)),
        Command::Export(args) => export::run(args),
        Command::Spool { command } => block_on(spool::run(command)),
        Command::Dashboard(args) => dashboard::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", chest::error_chain(&*e));
            ExitCode::FAILURE
        }
    }
}

/// Runs a command on a single-threaded Tokio runtime.
fn block_on(
    command: impl std::future::Future<Output = Result<(), CliError>>,
) -> Result<(), CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(command)
}

/// `--db` as a URL (`scheme://…`) with `--table` added as its `table=` parameter (a `table=`
/// already in the URL comes first, and wins); `None` for a plain path, which is a SQLite file.
/// A NATS URL (`nats://…`, `tls://…`) names a stream, not a table, and `memory://` has none: they
/// are taken as they are.
fn db_url(db: &Path, table: &str) -> Option<String> {
    let url = db.to_str().filter(|db| db.contains("://"))?;
    if ["nats://", "tls://", "memory://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
    {
        return Some(url.to_owned());
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{sep}table={table}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_url_adds_the_table_where_a_url_has_tables() {
        let url = |db: &str| db_url(Path::new(db), "t");
        assert_eq!(url("chest.db"), None);
        assert_eq!(
            url("sqlite://x.db").as_deref(),
            Some("sqlite://x.db?table=t")
        );
        assert_eq!(
            url("postgres://h/db?sslmode=disable").as_deref(),
            Some("postgres://h/db?sslmode=disable&table=t")
        );
        for as_is in [
            "nats://127.0.0.1:4222/S",
            "tls://h/S",
            "memory://",
            "memory://?name=m",
        ] {
            assert_eq!(url(as_is).as_deref(), Some(as_is));
        }
    }
}
