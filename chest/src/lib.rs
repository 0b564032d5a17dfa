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

#![warn(missing_docs)]

#[cfg(feature = "actix")]
pub mod actix;
#[cfg(feature = "batch")]
pub mod batch;
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
mod track;
mod value;
pub mod vars;

#[cfg(feature = "batch")]
pub use crate::batch::{Batched, Durability, OverflowPolicy, Stats};
pub use crate::chest::{BoxError, BoxFuture, Chest, ChestError, ErrorKind};
pub use crate::chests::memory::MemoryChest;
pub use crate::error::{error_chain, Error};
pub use crate::open::open;
pub use crate::record::Record;
pub use crate::recorder::{Finished, Recorder};
pub use crate::request_id::{MakeRequestId, Uuid4, Uuid7};
pub use crate::track::Tracked;
pub use crate::value::Value;
pub use crate::vars::{VarError, Vars};
