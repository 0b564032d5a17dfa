//! chest with actix-web: Flask-Chest's sample usage, recorded into SQLite.
//!
//! ```text
//! cargo run -p chest --features actix --example actix -- [ADDR] [DB]   # 127.0.0.1:8080 chest.db
//! curl -i http://127.0.0.1:8080/api-endpoint
//! curl -i -X POST http://127.0.0.1:8080/api-endpoint
//! sqlite3 chest.db 'SELECT request_id, name, value, method, route FROM chest'
//! ```
//!
//! `/bare` serves the same handler body without the middleware's recording: the handler uses only
//! the `chest::vars` free functions, which refuse (and are ignored here) outside a recorded request.

use std::time::Instant;

use actix_web::{web, App, HttpServer};
use chest::actix::ChestMiddleware;
use chest::chests::sqlite::SqliteChest;
use chest::{Recorder, Tracked, Vars};

/// The recorded route: the handler gets its request's store with the `Vars` extractor, exactly as
/// with axum.
async fn api_endpoint(vars: Vars) -> &'static str {
    let started = Instant::now();
    vars.set("transaction", 42).expect("a valid variable name");
    record_response_time(started);
    "Hello, World!"
}

/// Code further down the call stack records through the task-local free functions.
fn record_response_time(started: Instant) {
    // Outside a recorded request this is an error, which a helper may choose to ignore.
    let _ = chest::vars::set("response_time", started.elapsed());
}

async fn bare() -> &'static str {
    record_response_time(Instant::now());
    "Hello, World!"
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let db = args.next().unwrap_or_else(|| "chest.db".to_owned());

    let chest = SqliteChest::open(&db).map_err(std::io::Error::other)?;
    let recorder = Recorder::new().chest(chest).tracked_vars(
        Tracked::methods()
            .method("GET", ["transaction"])
            .method("POST", ["transaction", "response_time"]),
    );
    let middleware = ChestMiddleware::new(recorder);

    let server = HttpServer::new(move || {
        App::new()
            .service(
                web::resource("/api-endpoint")
                    .wrap(middleware.clone())
                    .route(web::get().to(api_endpoint))
                    .route(web::post().to(api_endpoint)),
            )
            .route("/bare", web::get().to(bare))
    })
    .bind(&addr)?;
    println!("serving http://{addr}/api-endpoint (recorded into {db}) and http://{addr}/bare");
    server.run().await
}
