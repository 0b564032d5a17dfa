//! The server `bench/overhead-actix.sh` measures: one handler served bare and behind chest's
//! actix-web middleware, in one process.
//!
//! ```text
//! cargo run --release -p chest --features actix,sqlite,batch --example actix_overhead -- DB [PORT] [SINK]
//! ```
//!
//! - `GET /bare`: the handler alone. Its `chest::vars::set` finds no request scope; the error is
//!   ignored, so it records nothing.
//! - `GET /api-endpoint`: the same handler behind [`ChestMiddleware`], recording `transaction`
//!   into a [`Batched`] chest: with SINK `sqlite` (the default) a SQLite chest at `DB` (which
//!   should not exist yet); with `discard` a chest that only counts what it gets, to measure the
//!   middleware and the queue without a backend's own cost; with `none` no chest at all (the
//!   middleware makes the id and the records and writes them nowhere; the batched chest is
//!   built but idle).
//!
//! The first stdout line is `listening on http://ADDR` (PORT defaults to 0: a free port). On
//! SIGTERM or Ctrl-C the server stops, the batched chest is drained, and two more lines follow:
//! `stats <the batched chest's counters as JSON>` and `rows transaction=<rows in DB>`, read back
//! from the database (with `discard`: the records the sink got).

use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use chest::actix::ChestMiddleware;
use chest::batch::Batched;
use chest::chests::sqlite::{SqliteChest, SqliteReader};
use chest::{Recorder, Tracked};

/// The allocator `chest demo` ships with, on both routes alike.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transactions handled, for the `transaction` variable.
static TRANSACTIONS: AtomicU64 = AtomicU64::new(0);

/// How long the batched chest may take to drain at shutdown.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// The one handler of both routes.
async fn handler() -> &'static str {
    let transaction = TRANSACTIONS.fetch_add(1, Ordering::Relaxed) + 1;
    // Under /bare there is no request scope: the refusal is expected and ignored.
    let _ = chest::vars::set("transaction", transaction);
    "Hello, World!"
}

#[path = "support/discard.rs"]
mod discard;
use discard::Discard;

#[actix_web::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let db = args
        .next()
        .ok_or("usage: actix_overhead DB [PORT] [SINK] (DB: a fresh SQLite file)")?;
    let port: u16 = match args.next() {
        Some(port) => port
            .parse()
            .map_err(|e| format!("bad PORT `{port}`: {e}"))?,
        None => 0,
    };
    let (discard, attached) = match args.next().as_deref() {
        None | Some("sqlite") => (None, true),
        Some("discard") => (Some(Discard::default()), true),
        Some("none") => (Some(Discard::default()), false),
        Some(other) => return Err(format!("bad SINK `{other}`: sqlite, discard or none").into()),
    };

    // Built inside the runtime: the batched chest's worker runs on this (the main) thread's
    // runtime, off the HTTP workers.
    let batched = match &discard {
        Some(discard) => Batched::builder(discard.clone()).build()?,
        None => Batched::builder(SqliteChest::open(&db)?).build()?,
    };
    let mut recorder =
        Recorder::new().tracked_vars(Tracked::methods().method("GET", ["transaction"]));
    if attached {
        recorder = recorder.chest(batched.clone());
    }
    let middleware = ChestMiddleware::new(recorder);

    let server = HttpServer::new(move || {
        App::new().route("/bare", web::get().to(handler)).service(
            web::resource("/api-endpoint")
                .wrap(middleware.clone())
                .route(web::get().to(handler)),
        )
    })
    .shutdown_timeout(5)
    .bind(("127.0.0.1", port))?;
    let addr = server.addrs()[0];
    println!("listening on http://{addr}");

    // actix-web stops on SIGTERM (gracefully) and on Ctrl-C by itself.
    server.run().await?;
    let stats = batched.shutdown(DRAIN_DEADLINE).await;
    println!("stats {}", serde_json::to_string(&stats)?);
    let rows = match discard {
        Some(discard) => discard.0.load(Ordering::Relaxed),
        // SqliteChest's default table.
        None => SqliteReader::open(&db, "chest")?
            .summaries(Some("transaction"))?
            .first()
            .map_or(0, |summary| summary.count),
    };
    println!("rows transaction={rows}");
    Ok(())
}
