//! # chest
//!
//! Record variables while a request is handled and, once the handler has returned, write the
//! tracked ones, tagged with the request's id, to one or more storage backends ("chests"). The
//! Rust successor of Python's Flask-Chest.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use chest::{chests::sqlite::SqliteChest, layer::ChestLayer, Recorder, Tracked, Vars};
//!
//! async fn handler(vars: Vars) -> &'static str {
//!     vars.set("transaction", 42).unwrap();
//!     "Hello, World!"
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let recorder = Recorder::new()
//!     .chest(SqliteChest::open("chest.db")?)
//!     .tracked_vars(Tracked::methods().method("GET", ["transaction"]));
//! let app = Router::new()
//!     .route("/api-endpoint", get(handler))
//!     .route_layer(ChestLayer::new(recorder));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! ## Where Flask-Chest was careless, chest is deliberate
//! - a failing chest does not stop the others from being written;
//! - SQL table names are validated and every value is a bound parameter;
//! - variable names are validated when they are set;
//! - a client's `x-request-id` is used only when you opt in.
//!
//! ## Features
//! - `axum` (default): [`layer::ChestLayer`] and the [`Vars`] extractor.
//! - `sqlite` (default): [`chests::sqlite::SqliteChest`].
//! - `actix`: `actix::ChestMiddleware` and the `Vars` extractor for actix-web.
//! - `tracing`: `bridge::TracingBridge`, which turns the fields of a request's spans and events
//!   into its variables.
//!
//! [`Recorder::request_facts`] records chest's own facts about each request (status, timings,
//! body sizes): see [`facts`].
//!
//! ## Adding a chest
//!
//! A backend is one folder (or file) under `chest/src/chests/`, one row in the scheme table and
//! one cargo feature. It knows the [`Chest`] trait and the crate's leaf modules (records, values,
//! errors, URL helpers, stored rows), and nothing of delivery ([`Batched`] wraps any chest), the
//! web adapters, the reader or the CLI; `scripts/module-graph` (run by CI) refuses an arrow from a
//! backend to those, or an import circle. The files to touch:
//!
//! 1. `chest/src/chests/NAME/mod.rs` (split by job into more files of that folder as it grows):
//!    - the chest type, implementing [`Chest`] (`name` never shows a secret; errors are
//!      [`ChestError`]s, [`ErrorKind::Retryable`] only when a retry can help), and its builder;
//!    - `pub(crate) const SCHEME: Scheme` (`chests/scheme.rs`): the URL schemes it answers to, and
//!      an `open` function that parses its own URL with the crate's `ChestUrl` (`param`,
//!      `secret_from_env` for `…_env` secrets, then `check_all_used`, so a misspelt parameter is an
//!      error) before returning the future that connects;
//!    - if it can read back what it wrote, a [`read::ReadBack`] implementation and `read: Some(…)`
//!      in its row: [`read::Reader`], `chest query`, `chest stats` and `chest export --from` then
//!      take its URLs.
//! 2. `chest/src/chests/mod.rs`: `#[cfg(feature = "NAME")] pub mod NAME;` and its row in
//!    `SCHEMES`. [`open()`], TOML [`config`], `chest demo --db` and `chest export --to` take its
//!    URLs from there; add the URL to the table in [`open()`]'s docs.
//! 3. `chest/Cargo.toml`: the feature `NAME = ["dep:…"]` and its optional dependencies.
//! 4. `chest/tests/NAME.rs`: tests against the real server (start it from `scripts/services`),
//!    reading back what was written from the server itself; and `CHANGELOG.md`.

#![warn(missing_docs)]

#[cfg(feature = "actix")]
pub mod actix;
#[cfg(feature = "batch")]
pub mod batch;
mod batch_id;
#[cfg(feature = "tracing")]
pub mod bridge;
mod chest;
pub mod chests;
pub mod config;
mod error;
pub mod facts;
#[cfg(feature = "axum")]
pub mod layer;
mod open;
pub mod read;
mod record;
mod recorder;
pub mod request_id;
pub mod retry;
mod series;
mod shared_strings;
mod stored;
mod track;
mod url;
mod value;
pub mod vars;

#[cfg(feature = "batch")]
pub use crate::batch::{Batched, Durability, OverflowPolicy, Stats};
pub use crate::batch_id::{BatchId, ParseBatchIdError, Written};
pub use crate::chest::{BoxError, BoxFuture, Chest, ChestError, ErrorKind};
pub use crate::chests::memory::MemoryChest;
pub use crate::error::{error_chain, Error};
pub use crate::open::open;
pub use crate::record::Record;
pub use crate::recorder::{Finished, Recorder};
pub use crate::request_id::{MakeRequestId, Uuid4, Uuid7};
pub use crate::retry::RetryPolicy;
pub use crate::track::Tracked;
pub use crate::value::Value;
pub use crate::vars::{VarError, Vars};
