//! `chest query` and `chest stats`.

use std::path::{Path, PathBuf};

use chest::chests::sqlite::SqliteReader;
use chest::read::{Filter, Reader, StoredRecord, VarSummary};

use crate::CliError;

/// Options of `chest query`.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// SQLite database file, or a `sqlite://…`, `mysql://…` or `postgres://…` URL.
    #[arg(long, default_value = "chest.db")]
    db: PathBuf,
    /// Table to read (a `table=` in a --db URL wins).
    #[arg(long, default_value = "chest")]
    table: String,
    /// Only this request's rows.
    #[arg(long)]
    request_id: Option<String>,
    /// Only this variable's rows.
    #[arg(long)]
    name: Option<String>,
    /// At most this many rows.
    #[arg(long)]
    limit: Option<u64>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

/// Options of `chest stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// SQLite database file, or a `sqlite://…`, `mysql://…` or `postgres://…` URL.
    #[arg(long, default_value = "chest.db")]
    db: PathBuf,
    /// Table to read (a `table=` in a --db URL wins).
    #[arg(long, default_value = "chest")]
    table: String,
    /// Only this variable.
    #[arg(long)]
    name: Option<String>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

/// The reader of `--db` (a plain path is a SQLite file) and `--table`.
pub(crate) async fn open(db: &Path, table: &str) -> Result<Reader, CliError> {
    Ok(match crate::db_url(db, table) {
        Some(url) => Reader::open(&url).await?,
        None => SqliteReader::open(db, table)?.into(),
    })
}

pub async fn query(args: &QueryArgs) -> Result<(), CliError> {
    let reader = open(&args.db, &args.table).await?;
    let filter = Filter {
        request_id: args.request_id.clone(),
        name: args.name.clone(),
        limit: args.limit,
        ..Filter::default()
    };
    let rows = reader.query(&filter).await;
    reader.close().await;
    let rows = rows?;
    if args.json {
        return print_json_lines(&rows);
    }
    let header = [
        "unique_id",
        "request_id",
        "name",
        "value",
        "type",
        "method",
        "route",
        "recorded_at",
    ];
    let cells = rows.iter().map(|row: &StoredRecord| {
        let r = &row.record;
        vec![
            row.unique_id.to_string(),
            r.request_id.to_string(),
            r.name.to_string(),
            r.value.to_string(),
            r.value.type_name().to_owned(),
            r.method.to_string(),
            r.route.as_deref().unwrap_or("-").to_owned(),
            r.recorded_at(),
        ]
    });
    print_table(&header, cells.collect());
    Ok(())
}

pub async fn stats(args: &StatsArgs) -> Result<(), CliError> {
    let reader = open(&args.db, &args.table).await?;
    let summaries = reader.summaries(args.name.as_deref()).await;
    reader.close().await;
    let summaries = summaries?;
    if args.json {
        return print_json_lines(&summaries);
    }
    let header = ["name", "count", "min", "mean", "p50", "p95", "p99", "max"];
    let number = |n: Option<f64>| n.map_or_else(|| "-".to_owned(), |n| format!("{n:.6}"));
    let cells = summaries.iter().map(|s: &VarSummary| {
        vec![
            s.name.clone(),
            s.count.to_string(),
            number(s.min),
            number(s.mean),
            number(s.p50),
            number(s.p95),
            number(s.p99),
            number(s.max),
        ]
    });
    print_table(&header, cells.collect());
    Ok(())
}

fn print_json_lines<T: serde::Serialize>(items: &[T]) -> Result<(), CliError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for item in items {
        serde_json::to_writer(&mut out, item)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Prints rows under a header, columns padded to their widest cell. Long cells are cut so that one
/// 1 MB value does not flood the terminal (`--json` prints everything).
fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
    const MAX_CELL: usize = 60;
    let cut = |s: &str| -> String {
        let one_line = s.replace(['\n', '\r', '\t'], " ");
        if one_line.chars().count() > MAX_CELL {
            one_line.chars().take(MAX_CELL - 1).chain(['…']).collect()
        } else {
            one_line
        }
    };
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cut(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    println!("({} rows)", rows.len());
}
