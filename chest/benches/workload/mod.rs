//! What the server benches (`sql`, `replay`) write, and their knobs.

use chest::{MakeRequestId, Record, Uuid7};

/// Three variables per request, like a typical handler: an int, a float and a short text. The
/// request ids are the layer's default (time-ordered UUIDs).
pub fn requests(count: usize) -> Vec<Record> {
    let route = Some("/items/{id}");
    (0..count)
        .flat_map(|n| {
            let id = Uuid7.make_shared_request_id();
            [
                Record::new(id.clone(), "item", n as i64, "GET", route),
                Record::new(id.clone(), "latency_ms", n as f64 / 7.0, "GET", route),
                Record::new(id, "user", "alice@example.com", "GET", route),
            ]
        })
        .collect()
}

/// The number in the environment variable `var`, else `default`.
pub fn env_number(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes `records` through `batched` as requests of 3, shuts it down, checks that every record
/// was written, and returns the time from the first write until the shutdown ended.
pub async fn write_through(
    batched: chest::batch::Batched,
    records: &[Record],
) -> std::time::Duration {
    let started = std::time::Instant::now();
    for request in records.chunks(3) {
        chest::Chest::write(&batched, request)
            .await
            .expect("enqueue");
    }
    let stats = batched.shutdown(std::time::Duration::from_secs(600)).await;
    let elapsed = started.elapsed();
    assert_eq!(stats.written, records.len() as u64, "{stats:?}");
    elapsed
}
