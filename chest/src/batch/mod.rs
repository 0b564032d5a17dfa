//! Batched delivery: [`Batched`] takes a chest's writes off the request path, batches them,
//! retries them, spools them to disk when the chest is down, and accounts for every record.
//!
//! `Batched` wraps any [`Chest`](crate::Chest) and is itself a chest, so the choice between inline and
//! background delivery is made per chest:
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use chest::{batch::{Batched, Durability}, chests::sqlite::SqliteChest, layer::ChestLayer, Recorder, Vars};
//!
//! async fn handler(vars: Vars) -> &'static str {
//!     vars.set("transaction", 42).unwrap();
//!     "Hello, World!"
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // Built inside the runtime: it starts its worker task there.
//!     let batched = Batched::builder(SqliteChest::open("chest.db")?)
//!         .spool("chest-spool.db")
//!         .durability(Durability::Memory)
//!         .build()?;
//!     let app = Router::new()
//!         .route("/api-endpoint", get(handler))
//!         .route_layer(ChestLayer::new(Recorder::new().chest(batched.clone())));
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     // Send on `stop` to shut down, e.g. from `tokio::signal::ctrl_c()` (feature `signal`).
//!     let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//!     # drop(stop);
//!     axum::serve(listener, app)
//!         .with_graceful_shutdown(async { stopped.await.unwrap_or(()) })
//!         .await?;
//!     // Drain what is queued, spool what misses the deadline.
//!     let stats = batched.shutdown(Duration::from_secs(10)).await;
//!     println!("{}", serde_json::to_string(&stats)?);
//!     Ok(())
//! }
//! ```
//!
//! # The request path
//! [`Chest::write`](crate::Chest::write) on a `Batched` chest copies the records into a bounded memory queue (one
//! message per call, the records' strings shared, not copied) under a briefly held lock, and
//! returns. It does no I/O and never waits on the wrapped chest. With [`Durability::Process`]
//! it first copies the records, encoded, into a memory-mapped journal segment (a memcpy under the
//! lock of its thread's shard, one shard per core; no syscall but one file creation per 8 MiB
//! segment): they are then in the kernel's page cache, which outlives the process. The worker
//! syncs the journal (and the spool) every `sync_every` (1 s by default,
//! [`BatchedBuilder::sync_every`]) and at shutdown. It only waits:
//! - with [`OverflowPolicy::Block`], for room in a full queue, up to the timeout;
//! - with [`Durability::Disk`], for the group commit that puts its records in the spool (one
//!   commit, one `fsync`, for every write that arrived meanwhile), never for the wrapped chest.
//!
//! Its only error is a refused enqueue under [`OverflowPolicy::Reject`] (a retryable
//! [`ChestError`](crate::ChestError) naming the wrapped chest). So with a `Batched` chest,
//! [`Recorder::raise_exceptions`](crate::Recorder::raise_exceptions) turns a response into a 500
//! only for that.
//!
//! # The worker
//! [`BatchedBuilder::build`] spawns a worker task on the current tokio runtime (so it must be
//! called inside one; any flavour, `current_thread` included). Writers do not wake the worker for
//! every message (a wake-up is a syscall, about a microsecond): it looks at the queue every
//! `min(linger, 50 ms)`, and is woken when a batch fills, when memory passes the spill mark, and
//! (with `Disk`) when a message lands in an empty queue. A record waits at most about `linger`
//! plus that tick before its batch is written. It writes batches of up to
//! `max_batch_records` records and `max_batch_bytes` bytes ([`Record::approx_size`](crate::Record::approx_size)), at most
//! `max_in_flight` at a time (default 1).
//!
//! A failed write is retried with exponential backoff and full jitter (a random wait up to
//! `initial × 2^attempt`, capped at `max_backoff`), or after the chest's
//! [`retry_after`](crate::ChestError::retry_after) when it gives one, until the batch's
//! `retry_budget` is spent (the [`RetryPolicy`](crate::RetryPolicy), see
//! [`retry_policy`](BatchedBuilder::retry_policy)). Then the batch goes to the spool, the worker pauses for
//! `max_backoff`, and retries the oldest spooled batch; once that succeeds the spool is
//! replayed in order before newer records. A batch that fails permanently is split in two, again
//! and again, until the bad records are alone: they go to the dead-letter file (JSON lines: the
//! record, the error, the time) and the rest is written.
//!
//! # The spool
//! A SQLite file (WAL, one row per batch, the records as JSON with their value types). With
//! [`Durability::Memory`] (the default) batches go there when the chest stays down past the retry
//! budget, when memory passes the spill mark (`spill_at`, half the queue's bound by default),
//! and at shutdown. With [`Durability::Disk`] every write is in the spool before `write` returns;
//! the spool is then the queue. The spool is bounded (`spool_max_bytes`). A spool file that cannot
//! be opened or is corrupt is renamed aside (`<path>.corrupt-<unix ms>`), counted in
//! [`Stats::spool_set_aside`] and logged, and a new one is started: never a crash loop. If even
//! that fails the chest runs without a spool (and `Disk` without durability), loudly.
//! [`Spool`] opens a spool file by hand (the `chest spool` command).
//!
//! # The journal (`Process`)
//! `<spool>.journal/`: per shard, `shard-<k>-<generation>.seg` files of `journal_segment_bytes`
//! (8 MiB), allocated in full when created (`posix_fallocate`: a full disk is an error there,
//! never a fault on a later store), and a `control-<generation>.seg` the worker writes. Each
//! write is one frame (length, record count, CRC-32, sequence number, the records); the length is
//! stored last, so a write cut by the kill leaves the end of the segment. When the worker forms a
//! batch it writes the batch id and its frames to the control segment before the first attempt
//! (or before spooling it); once the batch is settled (written, dead-lettered, dropped) or in the
//! spool, its frames and its control frame are marked released, and a segment no longer written
//! to whose frames are all released is removed. The journal is bounded by `journal_max_bytes`
//! (default `spool_max_bytes`); past it, and when a segment cannot be created (disk full,
//! read-only), writes are accepted in memory only, counted in [`Stats::unprotected`], the error
//! logged (at most once a second per shard) and kept in [`Stats::last_error`].
//!
//! At the next start, before the worker serves, the journal is read back: checksums checked,
//! torn or corrupt frames cut and counted in [`Stats::journal_torn`] (with a warning), released
//! frames skipped; a formed batch not released goes into the spool with its id and exactly its
//! records, the rest as new batches; then the journal is removed, and the spool replay delivers
//! them (counted in [`Stats::restored`]). A clean shutdown leaves no journal.
//!
//! # When full
//! Memory is full when the queued and in-flight records reach `queue_capacity` records or
//! `queue_max_bytes` bytes. Since the worker spills to the spool from the spill mark, memory fills
//! only when the spool is full (or absent, or failing) or cannot keep up. Then
//! [`OverflowPolicy`] decides, and every record dropped is counted by reason in
//! [`Stats::dropped`]. With `DropOldest` a full spool also makes room by deleting its oldest
//! batches.
//!
//! # Shutdown
//! [`Batched::shutdown`] is async and works on any runtime. It stops the linger, writes what is
//! queued (and replays the spool while the chest answers) until three quarters of the deadline
//! (at most 2 s before it), then stops the writes in progress and puts everything left into the
//! spool. A write stopped half-way may still have reached the chest: it is spooled under its
//! batch id, so a chest that keeps ids does not store it twice when it is replayed (see below).
//! Dropping the last handle without calling it logs a warning and starts the same
//! drain with a 5 s deadline, if the runtime still runs.
//!
//! # Delivery guarantees
//! Every batch is written with [`Chest::write_batch`](crate::Chest::write_batch) under a
//! [`BatchId`](crate::BatchId) given when the batch is formed. The id stays the same on every
//! retry; a part of a batch split to set a refused record apart gets an id derived from it
//! ([`BatchId::part`](crate::BatchId::part)); the spool stores it with the batch, and rows
//! spooled before any attempt get theirs (written into the spool) before their first replay. So
//! after a lost acknowledgement, a cut connection, a retry, a restart or a crash, the same
//! records go to the chest under the same id. What a chest does with it:
//!
//! | chest | a retried batch whose first attempt was stored |
//! |---|---|
//! | SQLite, MySQL/MariaDB, PostgreSQL | stores nothing: the id is in `<table>_batches`, written in the same transaction as the rows; ids are kept 24 h |
//! | HTTP | sends the same body with the same `Idempotency-Key`: stored once by a receiver that keeps keys |
//! | InfluxDB | rewrites the same points (same series and timestamps), which InfluxDB treats as one; distinct requests never share a point, since each request has a stamp of its own |
//! | Prometheus | not retried: a write is an in-memory observation that cannot fail for a transient reason, so each record is observed once in this process's metrics (the Pushgateway is sent the whole state, which replaces the last push) |
//! | your own | stores it again, unless it overrides `write_batch` |
//!
//! What survives what, by [`Durability`]:
//!
//! | durability | the process killed | the machine loses power |
//! |---|---|---|
//! | `Memory` (default) | the records in memory are lost: those written in the last `linger` (plus one 50 ms tick) and any waiting for a chest that is down (at most the spill mark, then they are in the spool) | the same, and the spool's last commits (`synchronous=NORMAL`) |
//! | `Process` | nothing accepted is lost (the journal is recovered at the next start) | the writes of the last `sync_every` (1 s by default) |
//! | `Disk` | nothing accepted is lost | nothing accepted is lost (`synchronous=FULL`) |
//!
//! `Process` and `Disk` fall back to `Memory` when the journal (`Process`) or the spool (`Disk`)
//! cannot take the records (the disk full, a read-only directory, the journal at its cap, a
//! spool that cannot be opened): writes are still accepted and
//! served, the error is logged and kept in [`Stats::last_error`], and every record accepted that
//! way is counted in [`Stats::unprotected`]. Records the journal or the spool took before stay
//! there and are delivered when it can be written again (or on the next start). What each costs
//! on the request path, measured with `bench/durability.sh`, is in BENCHMARKS.md ("Durability
//! levels"): in five runs `Process` was 0.044 and 0.039 behind `Memory` in the end-to-end
//! ratio, then 0.02–0.03 ahead (the machine's noise), with 0–1 µs more server CPU and about
//! 1,400 more instructions per request. It did not stay within the 0.03 that would make it the
//! default in every run, so `Memory` stays the default.
//!
//! What effectively-once costs: one more small insert per batch in the SQL chests (1 row per
//! 5,000 records by default) and a delete of old ids once a minute; for the spool, one update of
//! the rows of a replay before its first attempt. Figures in BENCHMARKS.md.
//!
//! A backlog in the spool replays at about the rate of live delivery into the same chest: the
//! next batch is read from the spool while one is delivered, and a delivered batch's rows are
//! removed while the next one is (1M records into PostgreSQL: 0.98 of the live rate, into
//! MariaDB 0.93, in BENCHMARKS.md).
//!
//! # Accounting
//! [`Batched::stats`] returns a [`Stats`] snapshot in which every record is in exactly one place;
//! see [`Stats`] for the equation.

//!
//! # Files
//! This file only declares and re-exports: `batched.rs` is the chest and its builder,
//! `policy.rs` its overflow and durability settings, `queue.rs` the memory queue, `journal/`
//! `Process`'s memory-mapped journal and its recovery, `worker.rs`
//! the task that delivers (`deliver.rs`, one batch with retries and bisection) and settles
//! (`deadletter.rs`, `spool.rs`), `ledger.rs` the counts behind `stats.rs`, `metrics.rs` the
//! Prometheus figures.

mod batched;
mod deadletter;
mod deliver;
mod journal;
mod ledger;
#[cfg(feature = "prometheus")]
mod metrics;
mod policy;
mod queue;
mod spool;
mod stats;
mod wal_sync;
mod worker;

pub use batched::{Batched, BatchedBuilder, DEFAULT_BATCH_RECORDS};
#[cfg(feature = "prometheus")]
pub use metrics::PipelineMetrics;
pub use policy::{Durability, OverflowPolicy};
pub use spool::{DrainReport, Spool, SpoolError, SpoolSummary};
pub use stats::{Dropped, LastError, Stats};
