//! Records per second into MySQL/MariaDB and PostgreSQL: large writes straight into the chest
//! (one writer and two concurrent ones), and requests of three records each through a
//! [`Batched`] chest (from the first write until `shutdown` has written everything). A timed
//! binary, not criterion: every round writes a few hundred thousand rows into a real server, so
//! the figure is a throughput, not a latency.
//!
//! ```text
//! eval "$(scripts/services start)"
//! cargo bench -p chest --no-default-features --features mysql,postgres,batch --bench sql
//! ```
//!
//! A baseline alternates with the chest's first case: the same rows through plain sqlx multi-row
//! `VALUES` inserts, so the chest's cost shows whatever else the machine is doing.
//!
//! `CHEST_BENCH_RECORDS` sets the records per round (default 400,000), `CHEST_BENCH_ROUNDS` the
//! rounds per case (default 3; the best and the median are printed). Each server is skipped,
//! loudly, when its URL is not set.

mod workload;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chest::batch::{Batched, OverflowPolicy};
use chest::chests::mysql::MySqlChest;
use chest::chests::postgres::PostgresChest;
use chest::{BatchId, Chest, Record};
use workload::{env_number, requests, write_through};

/// How each write is made: plain `write`, or `write_batch` under a fresh id (what `Batched`
/// does: the id is claimed in the batches table in the write's transaction).
#[derive(Clone, Copy)]
enum Write {
    Plain,
    Idempotent,
}

/// Writes `records` in writes of `batch` records from `writers` concurrent tasks; the elapsed
/// time.
async fn round(
    chest: Arc<dyn Chest>,
    records: Arc<Vec<Record>>,
    batch: usize,
    writers: usize,
    how: Write,
) -> Duration {
    let started = Instant::now();
    let chunks: Vec<(usize, usize)> = (0..records.len())
        .step_by(batch)
        .map(|start| (start, (start + batch).min(records.len())))
        .collect();
    let chunks = Arc::new(std::sync::Mutex::new(chunks.into_iter()));
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (chest, records, chunks) = (chest.clone(), records.clone(), chunks.clone());
            tokio::spawn(async move {
                loop {
                    let next = chunks.lock().unwrap().next();
                    let Some((start, end)) = next else { break };
                    let records = &records[start..end];
                    match how {
                        Write::Plain => chest.write(records).await.expect("write"),
                        Write::Idempotent => chest
                            .write_batch(BatchId::new(), records)
                            .await
                            .map(drop)
                            .expect("write_batch"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer task");
    }
    started.elapsed()
}

/// Writes `records` as requests of 3 through a `Batched` chest with `in_flight` batches of `batch`
/// records in flight. The queue holds the whole burst and there is no spool: this measures
/// delivery, not spilling (with a spool, a burst above half the queue would go through it).
async fn batched_round(
    chest: Arc<dyn Chest>,
    records: &[Record],
    batch: usize,
    in_flight: usize,
) -> Duration {
    let batched = Batched::builder(chest)
        .max_batch_records(batch)
        .max_batch_bytes(64 << 20)
        .linger(Duration::from_millis(5))
        .max_in_flight(in_flight)
        .queue_capacity(records.len() + 1)
        .queue_max_bytes(1 << 30)
        .overflow(OverflowPolicy::Block(Duration::from_secs(60)))
        .build()
        .expect("batched chest");
    write_through(batched, records).await
}

/// What the bench needs besides the chest: emptying its table between rounds (so every round
/// inserts into a table of the same size), dropping it at the end, and the baseline.
trait Table {
    async fn truncate(&self);
    async fn drop(self);
    /// The baseline: the same rows written with plain sqlx, without the chest: multi-row
    /// `VALUES` inserts of 2,048 rows in one transaction per write (what DESIGN.md's "raw sqlx
    /// multi-row inserts" figures measured), binding the values the chest binds.
    async fn raw_write(&self, records: &[Record]);
}

/// Rows per statement of the baseline.
const RAW_ROWS: usize = 2048;

fn placeholders(rows: usize, mut placeholder: impl FnMut(usize) -> String) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (0..8).map(|c| placeholder(r * 8 + c + 1)).collect();
            format!("({})", row.join(","))
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn utc(record: &Record) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(record.unix_micros()) * 1000)
        .expect("time in range")
}

const COLUMNS: &str = "request_id, name, value, value_num, value_type, method, route, recorded_at";

struct MySqlTable(sqlx::MySqlPool, String);
struct PgTable(sqlx::PgPool, String);

impl Table for MySqlTable {
    async fn truncate(&self) {
        let sql = format!("TRUNCATE TABLE `{}`", self.1);
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&self.0)
            .await
            .expect("truncate");
    }
    async fn drop(self) {
        let sql = format!("DROP TABLE `{0}`, `{0}_batches`", self.1);
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&self.0)
            .await
            .expect("drop");
    }
    async fn raw_write(&self, records: &[Record]) {
        use sqlx::Arguments;
        let mut tx = self.0.begin().await.expect("begin");
        for chunk in records.chunks(RAW_ROWS) {
            let sql = format!(
                "INSERT INTO `{}` ({COLUMNS}) VALUES {}",
                self.1,
                placeholders(chunk.len(), |_| "?".into())
            );
            let mut args = sqlx::mysql::MySqlArguments::default();
            for r in chunk {
                let at = utc(r);
                args.add(&*r.request_id).unwrap();
                args.add(&*r.name).unwrap();
                args.add(r.value.to_string()).unwrap();
                args.add(r.value.as_f64()).unwrap();
                args.add(r.value.type_name()).unwrap();
                args.add(&*r.method).unwrap();
                args.add(r.route.as_deref()).unwrap();
                args.add(time::PrimitiveDateTime::new(at.date(), at.time()))
                    .unwrap();
            }
            let insert = sqlx::query_with(sqlx::AssertSqlSafe(sql), args);
            insert.execute(&mut *tx).await.expect("insert");
        }
        tx.commit().await.expect("commit");
    }
}

impl Table for PgTable {
    async fn truncate(&self) {
        let sql = format!("TRUNCATE TABLE \"{}\"", self.1);
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&self.0)
            .await
            .expect("truncate");
    }
    async fn drop(self) {
        let sql = format!("DROP TABLE \"{0}\", \"{0}_batches\"", self.1);
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&self.0)
            .await
            .expect("drop");
    }
    async fn raw_write(&self, records: &[Record]) {
        use sqlx::Arguments;
        let mut tx = self.0.begin().await.expect("begin");
        for chunk in records.chunks(RAW_ROWS) {
            let sql = format!(
                "INSERT INTO \"{}\" ({COLUMNS}) VALUES {}",
                self.1,
                placeholders(chunk.len(), |n| format!("${n}"))
            );
            let mut args = sqlx::postgres::PgArguments::default();
            for r in chunk {
                args.add(&*r.request_id).unwrap();
                args.add(&*r.name).unwrap();
                args.add(r.value.to_string()).unwrap();
                args.add(r.value.as_f64()).unwrap();
                args.add(r.value.type_name()).unwrap();
                args.add(&*r.method).unwrap();
                args.add(r.route.as_deref()).unwrap();
                args.add(utc(r)).unwrap();
            }
            let insert = sqlx::query_with(sqlx::AssertSqlSafe(sql), args);
            insert.execute(&mut *tx).await.expect("insert");
        }
        tx.commit().await.expect("commit");
    }
}

async fn bench(server: &str, chest: Arc<dyn Chest>, table: impl Table) {
    let per_round = env_number("CHEST_BENCH_RECORDS", 400_000);
    let rounds = env_number("CHEST_BENCH_ROUNDS", 3).max(1);
    let records = Arc::new(requests(per_round.div_ceil(3)));
    // Warm up: connections, prepared statements, the table's first pages.
    round(
        chest.clone(),
        Arc::new(records[..30_000.min(records.len())].to_vec()),
        10_000,
        2,
        Write::Plain,
    )
    .await;
    // The chest and the baseline alternate, so both see the same machine.
    let mut chest_rates = Vec::new();
    let mut raw_rates = Vec::new();
    for _ in 0..rounds {
        table.truncate().await;
        let elapsed = round(chest.clone(), records.clone(), 10_000, 1, Write::Plain).await;
        chest_rates.push(records.len() as f64 / elapsed.as_secs_f64());
        table.truncate().await;
        let started = Instant::now();
        for write in records.chunks(10_000) {
            table.raw_write(write).await;
        }
        raw_rates.push(records.len() as f64 / started.elapsed().as_secs_f64());
    }
    report(
        server,
        "chest, writes of  10000 records, 1 writer",
        chest_rates,
        records.len(),
    );
    report(
        server,
        "plain sqlx VALUES (baseline), same writes",
        raw_rates,
        records.len(),
    );
    // 1,000-record writes are `Batched`'s default batch: the case sqlx 0.9.0's Nagle stall hit
    // hardest (see `tcp_nodelay` in sqlx_common.rs). Each size runs plain and idempotent writes
    // alternately: the difference is what effectively-once costs.
    let cases = [(1_000, 1), (2_000, 1), (50_000, 2)];
    for (batch, writers) in cases {
        let (mut plain, mut idempotent, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let rate = |elapsed: Duration| records.len() as f64 / elapsed.as_secs_f64();
            table.truncate().await;
            let a = rate(round(chest.clone(), records.clone(), batch, writers, Write::Plain).await);
            table.truncate().await;
            let b = rate(
                round(
                    chest.clone(),
                    records.clone(),
                    batch,
                    writers,
                    Write::Idempotent,
                )
                .await,
            );
            plain.push(a);
            idempotent.push(b);
            ratios.push(b / a);
        }
        let case = format!("writes of {batch:>6} records, {writers} writer(s)");
        report(server, &format!("{case}, write"), plain, records.len());
        report(
            server,
            &format!("{case}, write_batch"),
            idempotent,
            records.len(),
        );
        ratios.sort_by(f64::total_cmp);
        println!(
            "{server:<10} {case}: write_batch / write median {:.3} (min {:.3}, max {:.3})",
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
    for (batch, in_flight) in [(5_000, 2), (20_000, 2), (20_000, 4), (20_000, 8)] {
        let mut rates: Vec<f64> = Vec::new();
        for _ in 0..rounds {
            table.truncate().await;
            let elapsed = batched_round(chest.clone(), &records, batch, in_flight).await;
            rates.push(records.len() as f64 / elapsed.as_secs_f64());
        }
        report(
            server,
            &format!("Batched, batches of {batch:>6}, {in_flight} in flight"),
            rates,
            records.len(),
        );
    }
    table.drop().await;
}

fn report(server: &str, case: &str, mut rates: Vec<f64>, records: usize) {
    rates.sort_by(f64::total_cmp);
    println!(
        "{server:<10} {case}: median {:>7.0} records/s, best {:>7.0} ({} rounds of {records})",
        rates[rates.len() / 2],
        rates[rates.len() - 1],
        rates.len(),
    );
}

fn table() -> String {
    format!("bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

#[tokio::main]
async fn main() {
    if let Ok(url) = std::env::var("CHEST_TEST_MYSQL_URL") {
        let table = table();
        let chest = MySqlChest::builder(&url)
            .table(&table)
            .max_connections(2)
            .build()
            .await
            .expect("MySQL");
        let pool = sqlx::MySqlPool::connect(&url).await.expect("MySQL");
        bench("MariaDB", Arc::new(chest), MySqlTable(pool, table)).await;
    } else {
        eprintln!("*** SKIPPED MySQL: CHEST_TEST_MYSQL_URL is not set (eval \"$(scripts/services start)\") ***");
    }
    if let Ok(url) = std::env::var("CHEST_TEST_POSTGRES_URL") {
        let table = table();
        let chest = PostgresChest::builder(&url)
            .table(&table)
            .max_connections(2)
            .build()
            .await
            .expect("PostgreSQL");
        let pool = sqlx::PgPool::connect(&url).await.expect("PostgreSQL");
        bench("PostgreSQL", Arc::new(chest), PgTable(pool, table)).await;
    } else {
        eprintln!("*** SKIPPED PostgreSQL: CHEST_TEST_POSTGRES_URL is not set ***");
    }
}
