//! The axum (tower) layer: Flask-Chest's decorator as middleware.
//!
//! [`ChestLayer`] makes a request id and a [`Vars`](crate::Vars) store for each request, runs the
//! handler with the store reachable through the [`Vars`](crate::Vars) extractor and the
//! [`chest::vars`](crate::vars) functions, and, once the handler has returned a response (whatever
//! its status), writes the tracked variables to every chest.
//!
//! Put it on the routes you want recorded with `route_layer` (per route, like the decorator, or on
//! a whole `Router`): the route template (`MatchedPath`) is known there. With `Router::layer` it
//! runs before routing, so the route is taken from the `Vars` extractor when a handler uses it and
//! is `None` otherwise.
//!
//! When the inner service fails instead of answering (a tower service with an error type, below
//! axum's `HandleError`, say), what the handler set before failing is still written, exactly as
//! the actix-web middleware does; the error is then passed on unchanged, without the request-id
//! header (an error carries no headers). If a chest write failed and `raise_exceptions` is on,
//! the bare 500 is sent instead of the error, as it would replace a response.
//!
//! With [`Recorder::request_facts`](crate::Recorder::request_facts) on, the layer also records
//! the request's [facts](crate::facts), and wraps the response body to count its bytes and
//! notice its end; with it off (the default) neither the clock nor the body is touched.
//!
//! ```
//! use axum::{routing::get, Router};
//! use chest::{layer::ChestLayer, MemoryChest, Recorder, Tracked, Vars};
//!
//! async fn handler(vars: Vars) -> &'static str {
//!     vars.set("transaction", 42).unwrap();
//!     "Hello, World!"
//! }
//!
//! let memory = MemoryChest::new();
//! let recorder = Recorder::new()
//!     .chest(memory.clone())
//!     .tracked_vars(Tracked::methods().method("GET", ["transaction"]));
//! let app: Router = Router::new()
//!     .route("/api-endpoint", get(handler))
//!     .route_layer(ChestLayer::new(recorder));
//! ```

mod extract;
mod service;

pub use extract::MissingChestLayer;
pub use service::{ChestService, ResponseFuture};

use std::sync::Arc;

use crate::Recorder;

/// A tower [`Layer`](tower_layer::Layer) that records each request's variables into chests.
/// Cloning it is cheap.
#[derive(Clone, Debug)]
pub struct ChestLayer {
    recorder: Arc<Recorder>,
}

impl ChestLayer {
    /// A layer that records with `recorder`'s chests and settings.
    pub fn new(recorder: Recorder) -> Self {
        ChestLayer {
            recorder: Arc::new(recorder),
        }
    }

    /// The recorder this layer uses.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }
}

impl From<Recorder> for ChestLayer {
    fn from(recorder: Recorder) -> Self {
        ChestLayer::new(recorder)
    }
}

impl<S> tower_layer::Layer<S> for ChestLayer {
    type Service = ChestService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ChestService::new(inner, self.recorder.clone())
    }
}
