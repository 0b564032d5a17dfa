//! `chest export`: Flask-Chest's exporter, without its data loss.
//!
//! Reads a SQLite chest's rows in `unique_id` order and writes them to any chest URL in batches.
//! After the target acknowledges a batch, one SQLite transaction moves the checkpoint (a row per
//! target in the `chest_export_checkpoint` table of the source database) and, with `--delete`,
//! removes exactly the rows of that batch. So an interrupted export resumes after the last
//! acknowledged batch: no gaps, and no duplicates unless the process dies between the target's
//! acknowledgement and that commit (then the one batch is sent again; InfluxDB and
//! VictoriaMetrics overwrite identical points).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chest::chests::sqlite::{SqliteChestBuilder, SqliteReader};
use chest::read::Filter;
use chest::{Chest, ChestError, ErrorKind, Record, RetryPolicy};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rusqlite::{params, Connection, OptionalExtension};

use crate::CliError;

/// Options of `chest export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The SQLite chest to read: `sqlite://PATH[?table=T]`.
    #[arg(long)]
    from: String,
    /// The chest to write, as a URL (`influxdb://…`, `influxdb1://…`, `http(s)://…`,
    /// `mysql://…`, `postgres://…`, `sqlite://…`).
    #[arg(long)]
    to: String,
    /// Records per batch.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    batch: u64,
    /// Delete exported rows from the source, only after the target acknowledged them.
    #[arg(long)]
    delete: bool,
    /// Keep running and export new rows every --interval.
    #[arg(long)]
    follow: bool,
    /// With --follow: how often to look for new rows (e.g. 500ms, 5s, 1m).
    #[arg(long, default_value = "5s", value_parser = chest::config::parse_duration)]
    interval: Duration,
}

pub fn run(args: ExportArgs) -> Result<(), CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(export(args))
}

/// The checkpoint and deletions, on a read-write connection to the source.
struct Checkpoint {
    conn: Connection,
    table: String,
    target: String,
}

impl Checkpoint {
    fn open(source: &SqliteChestBuilder, target: &str) -> Result<Self, CliError> {
        let conn = Connection::open(source.path())?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS chest_export_checkpoint (
                 source_table TEXT NOT NULL, target TEXT NOT NULL, last_id INTEGER NOT NULL,
                 updated_at TEXT NOT NULL, PRIMARY KEY (source_table, target))",
        )?;
        Ok(Checkpoint {
            conn,
            table: source.table_name().to_owned(),
            target: target.to_owned(),
        })
    }

    fn last_id(&self) -> Result<i64, CliError> {
        let id = self
            .conn
            .query_row(
                "SELECT last_id FROM chest_export_checkpoint WHERE source_table = ?1 AND target = ?2",
                params![self.table, self.target],
                |row| row.get(0),
            )
            .optional()?;
        Ok(id.unwrap_or(0))
    }

    fn remaining(&self, after: i64) -> Result<u64, CliError> {
        // The table name was validated by `SqliteReader::open`.
        let sql = format!(
            "SELECT COUNT(*) FROM \"{}\" WHERE unique_id > ?1",
            self.table
        );
        Ok(self.conn.query_row(&sql, [after], |row| row.get(0))?)
    }

    /// Moves the checkpoint to `to` and, when asked, deletes every row up to it (all acknowledged by
    /// the target, including those of earlier runs without `--delete`), in one transaction.
    fn advance(&mut self, to: i64, delete: bool) -> Result<(), CliError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO chest_export_checkpoint (source_table, target, last_id, updated_at)
             VALUES (?1, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
             ON CONFLICT (source_table, target)
             DO UPDATE SET last_id = excluded.last_id, updated_at = excluded.updated_at",
            params![self.table, self.target, to],
        )?;
        if delete {
            let sql = format!("DELETE FROM \"{}\" WHERE unique_id <= ?1", self.table);
            tx.execute(&sql, [to])?;
        }
        tx.commit()?;
        Ok(())
    }
}

async fn export(args: ExportArgs) -> Result<(), CliError> {
    let source = SqliteChestBuilder::from_url(&args.from)?;
    let reader = SqliteReader::open(source.path(), source.table_name())?;
    let target = chest::open(&args.to).await?;
    let mut checkpoint = Checkpoint::open(&source, target.name())?;
    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn(set_on_signal(stop.clone()));

    let mut last = checkpoint.last_id()?;
    let progress = Progress::new(checkpoint.remaining(last)?);
    tracing::info!(
        target: "chest::export",
        from = %args.from,
        to = target.name(),
        resume_after = last,
        "export started"
    );
    while !stop.load(Ordering::Relaxed) {
        let rows = reader.query(&Filter {
            after_id: Some(last),
            limit: Some(args.batch),
            ..Filter::default()
        })?;
        let Some(newest) = rows.last().map(|r| r.unique_id) else {
            if !args.follow {
                break;
            }
            tokio::time::sleep(args.interval).await;
            progress.grow(checkpoint.remaining(last)?);
            continue;
        };
        let records: Vec<Record> = rows.into_iter().map(|r| r.record).collect();
        write_with_retries(&*target, &records, &stop).await?;
        checkpoint.advance(newest, args.delete)?;
        last = newest;
        progress.advance(records.len() as u64);
    }
    progress.finish();
    if stop.load(Ordering::Relaxed) {
        tracing::info!(target: "chest::export", last_id = last, "interrupted; run the same command to resume");
    }
    Ok(())
}

/// Writes one batch, retrying what a retry can fix: up to 8 attempts, a random wait up to 200 ms
/// doubling to 30 s, or the target's `Retry-After`. A stop signal ends the retries.
async fn write_with_retries(
    target: &dyn Chest,
    records: &[Record],
    stop: &AtomicBool,
) -> Result<(), ChestError> {
    let mut policy = RetryPolicy::new(Duration::from_millis(200), Duration::from_secs(30));
    policy.max_attempts = Some(8);
    policy
        .retry(
            || target.write(records),
            // Interrupted: no more retries, the batch is not checkpointed.
            |e: &ChestError| {
                if stop.load(Ordering::Relaxed) {
                    ErrorKind::Permanent
                } else {
                    e.kind()
                }
            },
            |e, attempt, wait| {
                tracing::warn!(target: "chest::export", error = %e, attempt, "retrying in {wait:?}");
            },
        )
        .await
}

/// Sets `stop` on Ctrl-C or SIGTERM: the batch in flight is finished and checkpointed first.
async fn set_on_signal(stop: Arc<AtomicBool>) {
    crate::demo::shutdown_signal().await;
    stop.store(true, Ordering::Relaxed);
}

/// A progress bar on a terminal, plain log lines otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    done: std::cell::Cell<u64>,
    total: std::cell::Cell<u64>,
    started: Instant,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {human_pos}/{human_len} records  {per_sec}  ETA {eta}",
                )
                .expect("valid template"),
            );
            bar
        });
        Progress {
            bar,
            done: 0.into(),
            total: total.into(),
            started: Instant::now(),
        }
    }

    fn grow(&self, remaining: u64) {
        self.total.set(self.done.get() + remaining);
        if let Some(bar) = &self.bar {
            bar.set_length(self.total.get());
        }
    }

    fn advance(&self, n: u64) {
        self.done.set(self.done.get() + n);
        match &self.bar {
            Some(bar) => bar.inc(n),
            None => {
                let rate = self.done.get() as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
                tracing::info!(
                    target: "chest::export",
                    "exported {}/{} records ({rate:.0}/s)",
                    self.done.get(),
                    self.total.get().max(self.done.get())
                );
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
        tracing::info!(target: "chest::export", records = self.done.get(), "export finished");
    }
}
