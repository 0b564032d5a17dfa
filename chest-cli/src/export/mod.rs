//! `chest export`: Flask-Chest's exporter, without its data loss.
//!
//! Reads a chest's rows (SQLite, MySQL/MariaDB or PostgreSQL) in `unique_id` order and writes
//! them to any chest URL in batches. After the target acknowledges a batch, one transaction on
//! the source moves the checkpoint (a row per target in the `chest_export_checkpoint` table beside
//! the source table) and, with `--delete`, removes exactly the rows of that batch. So an
//! interrupted export resumes after the last acknowledged batch, with no gaps. Each batch has a
//! [`BatchId`], noted in `chest_export_pending` before it is sent: if the process dies between
//! the target's acknowledgement and the checkpoint, the next run sends the same rows under the
//! same id first, and a target that keeps ids (the SQL chests; an HTTP receiver honouring
//! `Idempotency-Key`) stores them once. InfluxDB and VictoriaMetrics overwrite identical points.
//!
//! Sources keep microseconds. A store keyed by time (InfluxDB: measurement, tags and time) would
//! keep one point of two rows of one name in the same microsecond, so each record is sent with
//! the row's `unique_id` modulo 1000 as its nanoseconds (see [`distinct_instant`]): the same on
//! every run, invisible to targets that keep microseconds.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chest::read::{Filter, Reader, StoredRecord};
use chest::{BatchId, Chest, ChestError, ErrorKind, Record, RetryPolicy, Written};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::CliError;

mod nats;

/// Options of `chest export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The chest to read: `sqlite://PATH[?table=T]`, `mysql://…`, `postgres://…`, or a JetStream
    /// stream through a durable consumer: `nats://HOST:4222/STREAM?consumer=NAME` (see `nats`).
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

async fn export(args: ExportArgs) -> Result<(), CliError> {
    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn(set_on_signal(stop.clone()));
    if nats::is_nats(&args.from) {
        return nats::export(&args, &stop).await;
    }
    let reader = Reader::open(&args.from).await?;
    let target = chest::open(&args.to).await?;

    let consumer = target.name().to_owned();
    let at = reader.checkpoint(&consumer).await?;
    let mut last = at.last_id;
    let progress = Progress::new(reader.count_after(last).await?);
    tracing::info!(
        target: "chest::export",
        from = %args.from,
        to = target.name(),
        resume_after = last,
        "export started"
    );
    // A batch sent before the last run stopped, maybe acknowledged without the checkpoint
    // moving: the same rows again, under the same id, so a target that keeps ids stores them once.
    let mut pending = at.pending;
    while !stop.load(Ordering::Relaxed) {
        let (rows, id, resent) = match pending.take() {
            Some((to, id)) => {
                let filter = Filter {
                    after_id: Some(last),
                    until_id: Some(to),
                    ..Filter::default()
                };
                tracing::info!(target: "chest::export", batch = %id, to, "sending again the batch of the last run");
                (reader.query(&filter).await?, id, true)
            }
            None => {
                let filter = Filter {
                    after_id: Some(last),
                    limit: Some(args.batch),
                    ..Filter::default()
                };
                (reader.query(&filter).await?, BatchId::new(), false)
            }
        };
        let Some(newest) = rows.last().map(|r| r.unique_id) else {
            if resent {
                continue; // Its rows are gone (deleted by hand): nothing to send again.
            }
            if !args.follow {
                break;
            }
            tokio::time::sleep(args.interval).await;
            progress.grow(reader.count_after(last).await?);
            continue;
        };
        let records: Vec<Record> = rows.into_iter().map(distinct_instant).collect();
        reader.begin(&consumer, newest, id).await?;
        write_with_retries(&*target, id, &records, &stop).await?;
        reader.advance(&consumer, newest, args.delete).await?;
        last = newest;
        progress.advance(records.len() as u64);
    }
    progress.finish();
    if stop.load(Ordering::Relaxed) {
        tracing::info!(target: "chest::export", last_id = last, "interrupted; run the same command to resume");
    }
    Ok(())
}

/// The row's record, its time given the row's `unique_id` modulo 1000 as nanoseconds, so that
/// rows in one microsecond stay distinct instants.
fn distinct_instant(row: StoredRecord) -> Record {
    let nanos = row.unique_id.rem_euclid(1000).unsigned_abs();
    let time = row.record.time + Duration::from_nanos(nanos);
    row.record.at(time)
}

/// Writes one batch, retrying what a retry can fix: up to 8 attempts, a random wait up to 200 ms
/// doubling to 30 s, or the target's `Retry-After`. A stop signal ends the retries.
async fn write_with_retries(
    target: &dyn Chest,
    id: BatchId,
    records: &[Record],
    stop: &AtomicBool,
) -> Result<Written, ChestError> {
    let mut policy = RetryPolicy::new(Duration::from_millis(200), Duration::from_secs(30));
    policy.max_attempts = Some(8);
    policy
        .retry(
            || target.write_batch(id, records),
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
