//! What `bench/durability-sqlite.sh` runs: records/s into SQLite through a `Batched` chest with
//! each durability level, and the recovery of records a crash left in the spool.
//!
//! ```text
//! cargo run --release -p chest --features sqlite,batch --example durability_sqlite -- ingest DIR RECORDS ROUNDS
//! cargo run --release -p chest --features sqlite,batch --example durability_sqlite -- crash DIR RECORDS
//! cargo run --release -p chest --features sqlite,batch --example durability_sqlite -- recover DIR
//! ```
//!
//! - `ingest`: ROUNDS rounds, each level in turn (memory, process, disk) on a fresh database:
//!   16 tasks write RECORDS records, one per `write` (one request's worth), and the time runs
//!   until the chest has them all. Prints one line per run and each level's median records/s.
//! - `crash`: writes RECORDS records (three a write) with `Durability::Process` while nothing
//!   is delivered (a batch limit above RECORDS, an hour's linger): they are all in the journal.
//!   Then it aborts the process (no shutdown, no flush).
//! - `recover`: opens the same spool and database (recovering the journal into the spool), and
//!   times that and the replay of what it found.

use std::error::Error;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chest::batch::{Batched, BatchedBuilder, Durability};
use chest::chests::sqlite::SqliteChest;
use chest::{Chest, Record};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn record(i: usize) -> Record {
    Record::new(
        format!("r{i}"),
        "transaction",
        i as i64,
        "GET",
        Some("/api-endpoint"),
    )
}

fn builder(dir: &Path, name: &str) -> Result<BatchedBuilder> {
    Ok(
        Batched::builder(SqliteChest::open(dir.join(format!("{name}.db")))?)
            .spool(dir.join(format!("{name}.spool"))),
    )
}

async fn wait(batched: &Batched, done: impl Fn(&chest::Stats) -> bool) {
    while !done(&batched.stats()) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One ingest run: records/s from the first write until the chest has them all.
async fn ingest_once(dir: &Path, name: &str, level: Durability, n: usize) -> Result<f64> {
    let batched = builder(dir, name)?.durability(level).build()?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let batched = batched.clone();
            tokio::spawn(async move {
                for i in (t..n).step_by(16) {
                    batched.write_owned(vec![record(i)]).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    wait(&batched, |s| s.written >= n as u64).await;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    batched.shutdown(Duration::from_secs(10)).await;
    Ok(rate)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn ingest(dir: &Path, n: usize, rounds: usize) -> Result<()> {
    let levels = [
        ("memory", Durability::Memory),
        ("process", Durability::Process),
        ("disk", Durability::Disk),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); levels.len()];
    for round in 0..rounds {
        for (k, (name, level)) in levels.iter().enumerate() {
            let rate = ingest_once(dir, &format!("{name}-{round}"), *level, n).await?;
            println!("round {round} {name}: {rate:.0} records/s");
            rates[k].push(rate);
        }
    }
    for ((name, _), rates) in levels.iter().zip(rates) {
        let (lo, hi) = rates
            .iter()
            .fold((f64::MAX, 0.0_f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        println!(
            "{name}: median {:.0} records/s (min {lo:.0}, max {hi:.0})",
            median(rates)
        );
    }
    Ok(())
}

async fn crash(dir: &Path, n: usize) -> Result<()> {
    let batched = builder(dir, "crash")?
        .durability(Durability::Process)
        .max_batch_records(n + 1)
        .max_batch_bytes(usize::MAX / 2)
        .queue_capacity(n + 1)
        .queue_max_bytes(usize::MAX / 2)
        .linger(Duration::from_secs(3600))
        .build()?;
    let records: Vec<Record> = (0..n).map(record).collect();
    let records = Arc::new(records);
    // Three records a write, as a request with three variables.
    for chunk in records.chunks(3) {
        batched.write(chunk).await?;
    }
    let stats = batched.stats();
    println!(
        "{} records written, {} of them in the journal only; aborting",
        stats.enqueued,
        stats.enqueued - stats.unprotected
    );
    std::process::abort();
}

async fn recover(dir: &Path) -> Result<()> {
    let started = Instant::now();
    let batched = builder(dir, "crash")?
        .durability(Durability::Process)
        .build()?;
    let journal = started.elapsed().as_secs_f64();
    let restored = batched.stats().restored;
    let torn = batched.stats().journal_torn;
    wait(&batched, |s| s.spool_records == 0).await;
    let seconds = started.elapsed().as_secs_f64();
    let stats = batched.shutdown(Duration::from_secs(10)).await;
    println!(
        "journal read into the spool in {journal:.2} s; recovered {restored} records into SQLite \
         in {seconds:.2} s ({:.0} records/s), written {}, balanced {}, torn frames {torn}",
        restored as f64 / seconds,
        stats.written,
        stats.is_balanced()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number =
        |i: usize| -> Result<usize> { Ok(args.get(i).ok_or("missing argument")?.parse()?) };
    let dir = Path::new(args.get(1).ok_or("usage: ingest|crash|recover DIR …")?);
    match args[0].as_str() {
        "ingest" => ingest(dir, number(2)?, number(3)?).await,
        "crash" => crash(dir, number(2)?).await,
        "recover" => recover(dir).await,
        other => Err(format!("unknown mode {other}").into()),
    }
}
