//! The program `bench/nats.sh` runs: records per second through `Batched` into a JetStream stream.
//!
//! ```text
//! cargo run --release -p chest --features nats,batch --example nats_throughput -- URL REQUESTS
//! ```
//!
//! URL is a chest URL (`nats://127.0.0.1:4222/STREAM?create=true`); REQUESTS requests of 3
//! records each are handed to a `Batched` chest as fast as it takes them (the queue is bounded;
//! writers wait while it is full), and the clock stops when JetStream acknowledged the last one.
//! Prints `records=N seconds=S records_per_s=R`.

use std::error::Error;
use std::time::{Duration, Instant};

use chest::batch::{Batched, OverflowPolicy};
use chest::{Chest, Record};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("usage: nats_throughput URL REQUESTS")?;
    let requests: u64 = args.next().ok_or("REQUESTS missing")?.parse()?;
    let chest = chest::open(&url).await?;
    let batched = Batched::builder(chest)
        .overflow(OverflowPolicy::Block(Duration::from_secs(60)))
        .build()?;
    let started = Instant::now();
    for i in 0..requests {
        let id = format!("bench-{i}");
        let records = [
            Record::new(
                id.as_str(),
                "transaction",
                i as i64,
                "GET",
                Some("/api-endpoint"),
            ),
            Record::new(
                id.as_str(),
                "response_time",
                1e-6 * i as f64,
                "GET",
                Some("/api-endpoint"),
            ),
            Record::new(id.as_str(), "user", "someone", "GET", Some("/api-endpoint")),
        ];
        batched.write(&records).await?;
    }
    let total = requests * 3;
    while batched.stats().written < total {
        if started.elapsed() > Duration::from_secs(300) {
            return Err(format!("not all written in 300 s: {:#?}", batched.stats()).into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let stats = batched.shutdown(Duration::from_secs(10)).await;
    assert!(
        stats.is_balanced() && stats.dropped.total() == 0,
        "{stats:#?}"
    );
    println!(
        "records={total} seconds={seconds:.3} records_per_s={:.0}",
        total as f64 / seconds
    );
    Ok(())
}
