//! Spool replay against live delivery, into PostgreSQL (and MariaDB): a backlog left in the spool
//! by an outage must drain at least as fast as the same records delivered live by the same
//! `Batched` settings (the defaults). A timed binary, not criterion: each round moves a large
//! spool into a real server.
//!
//! ```text
//! eval "$(scripts/services start)"
//! cargo bench -p chest --no-default-features --features mysql,postgres,batch --bench replay
//! ```
//!
//! Each round alternates the two cases on a freshly emptied table: *live* writes the records as
//! requests of 3 through `Batched` (its defaults, with a queue that holds the whole burst, from
//! the first write until `shutdown` has written everything); *replay* opens `Batched` on a copy of
//! a spool that holds the same records (filled once, while the chest was down) and times it until
//! `shutdown` has emptied the spool. `CHEST_BENCH_RECORDS` sets the records (default 1,000,000),
//! `CHEST_BENCH_ROUNDS` the rounds (default 3); the median and the spread are printed.

use std::path::{Path, PathBuf};
mod workload;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chest::batch::{Batched, OverflowPolicy};
use chest::chests::memory::MemoryChest;
use chest::chests::mysql::MySqlChest;
use chest::chests::postgres::PostgresChest;
use chest::{Chest, ErrorKind, Record};
use workload::{env_number, requests, write_through};

/// A spool holding `records`, as an outage leaves it: the chest was down, so every batch went
/// to the spool.
/// Returns the number of spooled batches.
async fn fill_spool(path: &Path, records: &[Record]) -> u64 {
    let down = MemoryChest::new();
    down.fail_with(Some(ErrorKind::Retryable));
    let batched = Batched::builder(down)
        .spool(path)
        .spool_max_bytes(u64::MAX)
        .retry_budget(Duration::ZERO)
        .queue_capacity(records.len() + 1)
        .queue_max_bytes(1 << 32)
        .build()
        .expect("batched chest");
    for request in records.chunks(3) {
        batched.write(request).await.expect("enqueue");
    }
    let stats = batched.shutdown(Duration::from_secs(600)).await;
    assert_eq!(stats.spool_records, records.len() as u64, "{stats:?}");
    stats.spool_batches
}

async fn live(chest: Arc<dyn Chest>, records: &[Record]) -> Duration {
    let batched = Batched::builder(chest)
        .queue_capacity(records.len() + 1)
        .queue_max_bytes(1 << 32)
        .overflow(OverflowPolicy::Block(Duration::from_secs(60)))
        .build()
        .expect("batched chest");
    write_through(batched, records).await
}

async fn replay(chest: Arc<dyn Chest>, spool: &Path, copy: &Path, records: usize) -> Duration {
    std::fs::copy(spool, copy).expect("copy the spool");
    let started = Instant::now();
    let batched = Batched::builder(chest)
        .spool(copy)
        .spool_max_bytes(u64::MAX)
        .build()
        .expect("batched chest");
    let stats = batched.shutdown(Duration::from_secs(600)).await;
    let elapsed = started.elapsed();
    assert_eq!(stats.replayed, records as u64, "{stats:?}");
    assert_eq!(stats.spool_records, 0, "{stats:?}");
    elapsed
}

/// Empties the table and its batch ids.
async fn truncate(server: &Server, table: &str) {
    // The batch ids too: every replay sends the spool's batches under the same ids.
    let sql = match server {
        Server::MariaDb(_) => format!("TRUNCATE TABLE `{table}`; TRUNCATE TABLE `{table}_batches`"),
        Server::Postgres(_) => format!("TRUNCATE TABLE \"{table}\", \"{table}_batches\""),
    };
    let truncated = match server {
        Server::MariaDb(pool) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .map(drop),
        Server::Postgres(pool) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .map(drop),
    };
    truncated.expect("truncate");
}

enum Server {
    MariaDb(sqlx::MySqlPool),
    Postgres(sqlx::PgPool),
}

fn report(server: &str, case: &str, mut rates: Vec<f64>) {
    rates.sort_by(f64::total_cmp);
    println!(
        "{server:<10} {case:<7}: median {:>7.0} records/s (min {:.0}, max {:.0}, {} rounds)",
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1],
        rates.len(),
    );
}

async fn bench(name: &str, chest: Arc<dyn Chest>, server: Server, table: &str, dir: &Path) {
    let count = env_number("CHEST_BENCH_RECORDS", 1_000_000);
    let rounds = env_number("CHEST_BENCH_ROUNDS", 3).max(1);
    let records = requests(count.div_ceil(3));
    let spool: PathBuf = dir.join(format!("backlog-{name}.db"));
    let filled = Instant::now();
    let batches = fill_spool(&spool, &records).await;
    eprintln!(
        "{name}: spool of {} records in {batches} batches filled in {:.1} s",
        records.len(),
        filled.elapsed().as_secs_f64()
    );
    let (mut live_rates, mut replay_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        truncate(&server, table).await;
        let live_rate = records.len() as f64 / live(chest.clone(), &records).await.as_secs_f64();
        truncate(&server, table).await;
        let copy = dir.join(format!("replay-{name}-{round}.db"));
        let replayed = replay(chest.clone(), &spool, &copy, records.len()).await;
        let replay_rate = records.len() as f64 / replayed.as_secs_f64();
        for side in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{side}", copy.display()));
        }
        eprintln!("{name} round {round}: live {live_rate:.0}/s, replay {replay_rate:.0}/s");
        live_rates.push(live_rate);
        replay_rates.push(replay_rate);
        ratios.push(replay_rate / live_rate);
    }
    report(name, "live", live_rates);
    report(name, "replay", replay_rates);
    ratios.sort_by(f64::total_cmp);
    println!(
        "{name:<10} replay/live: median {:.2} (min {:.2}, max {:.2})",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
}

fn table() -> String {
    format!("bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temporary folder");
    if let Ok(url) = std::env::var("CHEST_TEST_POSTGRES_URL") {
        let table = table();
        let chest = PostgresChest::builder(&url)
            .table(&table)
            .build()
            .await
            .expect("PostgreSQL");
        let pool = sqlx::PgPool::connect(&url).await.expect("PostgreSQL");
        let server = Server::Postgres(pool.clone());
        bench("PostgreSQL", Arc::new(chest), server, &table, dir.path()).await;
        let drop = format!("DROP TABLE \"{table}\", \"{table}_batches\"");
        sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
            .execute(&pool)
            .await
            .expect("drop");
    } else {
        eprintln!("*** SKIPPED PostgreSQL: CHEST_TEST_POSTGRES_URL is not set ***");
    }
    if let Ok(url) = std::env::var("CHEST_TEST_MYSQL_URL") {
        let table = table();
        let chest = MySqlChest::builder(&url)
            .table(&table)
            .build()
            .await
            .expect("MySQL");
        let pool = sqlx::MySqlPool::connect(&url).await.expect("MySQL");
        let server = Server::MariaDb(pool.clone());
        bench("MariaDB", Arc::new(chest), server, &table, dir.path()).await;
        let drop = format!("DROP TABLE `{table}`, `{table}_batches`");
        sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
            .execute(&pool)
            .await
            .expect("drop");
    } else {
        eprintln!("*** SKIPPED MySQL: CHEST_TEST_MYSQL_URL is not set ***");
    }
}
