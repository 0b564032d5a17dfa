//! The program `bench/instructions.sh` runs under valgrind's callgrind for the SQLite writer:
//! ROWS records (3 per request, like `benches/workload`: an int, a float and a short text) written
//! to a new SQLite file through `SqliteChest::write_batch` in batches of BATCH (default 1,000,
//! `Batched`'s default batch). Every thread is counted, the writer thread included.
//!
//! ```text
//! cargo run --release -p chest --features sqlite --example sqlite_instructions -- DIR ROWS [BATCH]
//! ```

use std::error::Error;

use chest::chests::sqlite::SqliteChest;
use chest::{BatchId, Chest, MakeRequestId, Record, Uuid7};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: sqlite_instructions DIR ROWS [BATCH]";
    let dir = std::path::PathBuf::from(args.next().ok_or(usage)?);
    let rows: usize = args.next().ok_or(usage)?.parse()?;
    let batch: usize = args.next().map_or(Ok(1000), |b| b.parse())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let chest = SqliteChest::open(dir.join("rows.db"))?;
        let route = Some("/items/{id}");
        let records: Vec<Record> = (0..rows.div_ceil(3))
            .flat_map(|n| {
                let id = Uuid7.make_shared_request_id();
                [
                    Record::new(id.clone(), "item", n as i64, "GET", route),
                    Record::new(id.clone(), "latency_ms", n as f64 / 7.0, "GET", route),
                    Record::new(id, "user", "alice@example.com", "GET", route),
                ]
            })
            .take(rows)
            .collect();
        for batch in records.chunks(batch.max(1)) {
            chest.write_batch(BatchId::new(), batch).await?;
        }
        Ok::<_, Box<dyn Error>>(())
    })
}
