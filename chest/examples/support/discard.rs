//! A sink that only counts the records it gets: for measuring what surrounds a chest (the layer,
//! the queue) without a backend's own cost. Shared by `examples/actix_overhead.rs`,
//! `benches/batch.rs` and `benches/bridge.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chest::{BoxFuture, Chest, ChestError, Record};

/// Counts what it is given (the records written so far); clones share the count.
#[derive(Clone, Default)]
pub struct Discard(pub Arc<AtomicU64>);

impl Chest for Discard {
    fn name(&self) -> &str {
        "discard"
    }

    fn write<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), ChestError>> {
        self.0.fetch_add(records.len() as u64, Ordering::Relaxed);
        Box::pin(std::future::ready(Ok(())))
    }
}
