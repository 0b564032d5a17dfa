//! The tracing bridge (feature `tracing`): the fields your spans and events already carry become
//! the request's variables, with no second `vars.set`.
//!
//! [`TracingBridge`] is a [`tracing_subscriber::Layer`]. While a request is inside a chest scope
//! (the axum [`ChestLayer`](crate::layer::ChestLayer), the actix-web
//! `chest::actix::ChestMiddleware`, or [`Vars::scope`](crate::Vars::scope)), it records into
//! that request's [`Vars`]:
//! - the fields of spans **created** inside the scope, at creation;
//! - fields given to **`Span::record`** while the scope is current, whatever span they are recorded
//!   on and wherever it was created: the request span of a tower-http `TraceLayer` placed outside
//!   `ChestLayer` is created before the scope starts, so its creation-time fields (method, URI...)
//!   are not taken, but the fields the handler records on it later are. The scope is looked up
//!   when the field is recorded, never remembered from the span's creation;
//! - the fields of **events** emitted inside the scope, except `message` (and the `log.*`
//!   bookkeeping fields of events forwarded from the `log` crate). chest's own events (target
//!   `chest`, and those of its chests and batched delivery) are never recorded.
//!
//! Like the task-local store, the scope follows the request's task, not tasks it spawns: fields
//! recorded in a spawned task are not the request's unless that task runs in `Vars::scope` too.
//!
//! Values are typed: `i64`, `u64`, `i128` and `u128` within `i64`'s range → Int (wider values →
//! Text, so no digit is lost); `f64` → Float; `bool` → Bool; `&str` → Text; `Debug` (`?x`) and
//! `Display` (`%x`) values and errors → Text, formatted.
//!
//! **Which wins:** a value set through [`Vars::set`](crate::Vars::set) (or `chest::vars::set`) is
//! never replaced by a field of the same name, whichever comes first: the explicit call wins. A
//! field replaces an earlier field of the same name (the last one recorded wins), as a second
//! `Span::record` does.
//!
//! **Selection:** the recorder's [`Tracked`](crate::Tracked) selection applies exactly as to
//! `vars.set`: with a per-method selection, only the listed names are written.
//!
//! **Names:** by default every field is taken under its own name. [`TracingBridge::strip_prefix`]
//! takes only fields whose names start with a prefix (such as `chest.`) and records them without
//! it; [`TracingBridge::allow`] takes only the listed names (after the prefix is stripped, when
//! both are given). A name that is not a valid variable name ([`validate_name`]: empty, longer
//! than 255 bytes, with a control character, or in the reserved `chest.` namespace of chest's own
//! [facts](crate::facts)) is skipped and counted in [`BridgeStats::invalid_names`], never a
//! panic.
//!
//! **Cost:** outside a chest scope each span, record and event costs one thread-local read and
//! records nothing. Use tracing-subscriber's per-layer filters (`bridge.with_filter(...)`) to
//! take only some levels or targets.
//!
//! ## axum with tower-http's `TraceLayer`
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use chest::{bridge::TracingBridge, chests::sqlite::SqliteChest, layer::ChestLayer, Recorder};
//! use tower_http::trace::TraceLayer;
//! use tracing::{field::Empty, info, info_span, instrument, Span};
//! use tracing_subscriber::prelude::*;
//!
//! async fn checkout() -> &'static str {
//!     // No span of its own here: this records on the TraceLayer's request span, made outside
//!     // ChestLayer, and the request gets `user_id`.
//!     Span::current().record("user_id", 7);
//!     price_cart().await
//! }
//!
//! #[instrument(fields(cart_items))]
//! async fn price_cart() -> &'static str {
//!     Span::current().record("cart_items", 3); // a span made inside the request
//!     info!(order_total = 12.5, "priced"); // an event field, a Float
//!     "ok"
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! tracing_subscriber::registry()
//!     .with(tracing_subscriber::fmt::layer())
//!     .with(TracingBridge::new())
//!     .init();
//! let recorder = Recorder::new()
//!     .chest(SqliteChest::open("chest.db")?)
//!     .request_facts(true);
//! let app = Router::new()
//!     .route("/checkout", get(checkout))
//!     .route_layer(ChestLayer::new(recorder))
//!     .layer(TraceLayer::new_for_http().make_span_with(|req: &http::Request<_>| {
//!         info_span!("request", method = %req.method(), user_id = Empty)
//!     }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! The request then writes `user_id`, `cart_items`, `order_total` and the automatic
//! [facts](crate::facts). With a `tower::service_fn` inner service (not an axum handler), mind
//! that the closure runs when the service is called, before the scope is entered: record in the
//! future it returns.
//!
//! ## actix-web
//!
//! The same layer serves actix-web (feature `actix`):
//!
//! ```no_run
//! # #[cfg(feature = "actix")]
//! # mod example {
//! use actix_web::{web, App, HttpServer};
//! use chest::{actix::ChestMiddleware, bridge::TracingBridge, chests::sqlite::SqliteChest, Recorder};
//! use tracing_subscriber::prelude::*;
//!
//! #[tracing::instrument(fields(user_id))]
//! async fn traced() -> &'static str {
//!     tracing::Span::current().record("user_id", 42);
//!     tracing::info!(cart_total = 12.5, "checkout");
//!     "ok"
//! }
//!
//! pub fn serve() -> Result<(), Box<dyn std::error::Error>> {
//!     tracing_subscriber::registry()
//!         .with(tracing_subscriber::fmt::layer())
//!         .with(TracingBridge::new())
//!         .init();
//!     let recorder = Recorder::new()
//!         .chest(SqliteChest::open("chest.db")?)
//!         .request_facts(true);
//!     let middleware = ChestMiddleware::new(recorder);
//!     actix_web::rt::System::new().block_on(
//!         HttpServer::new(move || {
//!             App::new().service(web::resource("/traced").wrap(middleware.clone()).to(traced))
//!         })
//!         .bind("127.0.0.1:8080")?
//!         .run(),
//!     )?;
//!     Ok(())
//! }
//! # }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::span;
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::vars::{self, validate_name};
use crate::{Value, Vars};

/// A [`Layer`] that records the fields of a request's spans and events as its variables; see the
/// [module documentation](self). Cloning it is cheap; clones share their [`BridgeStats`].
///
/// ```
/// use chest::{bridge::TracingBridge, Value, Vars};
/// use tracing_subscriber::prelude::*;
///
/// let bridge = TracingBridge::new();
/// let stats = bridge.stats();
/// let subscriber = tracing_subscriber::registry().with(bridge);
/// let vars = Vars::new("req-1");
/// tracing::subscriber::with_default(subscriber, || {
///     let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
///     runtime.block_on(vars.scope(async {
///         tracing::info!(user_id = 7_u64, ok = true, "checked out");
///         tracing::info!("bad\tname" = 1, "a field that is no variable name");
///     }));
///     tracing::info!(outside = 1, "no scope: nothing recorded");
/// });
/// assert_eq!(vars.get("user_id"), Some(Value::Int(7)));
/// assert_eq!(vars.get("ok"), Some(Value::Bool(true)));
/// assert_eq!(vars.get("message"), None);
/// assert_eq!(vars.get("outside"), None);
/// assert_eq!(stats.invalid_names(), 1);
/// ```
#[derive(Clone, Debug, Default)]
pub struct TracingBridge {
    names: Arc<NameFilter>,
    stats: BridgeStats,
}

#[derive(Clone, Debug, Default)]
struct NameFilter {
    prefix: Option<Box<str>>,
    allow: Option<Vec<Box<str>>>,
}

impl NameFilter {
    /// The variable name for a field, or `None` when the filters leave it out.
    fn name<'a>(&self, field: &'a str) -> Option<&'a str> {
        let name = match &self.prefix {
            Some(prefix) => field.strip_prefix(&**prefix)?,
            None => field,
        };
        match &self.allow {
            Some(allowed) if !allowed.iter().any(|a| **a == *name) => None,
            _ => Some(name),
        }
    }
}

/// What a [`TracingBridge`] skipped. Get it with [`TracingBridge::stats`] before handing the
/// layer to the subscriber; every clone sees the same counts.
#[derive(Clone, Debug, Default)]
pub struct BridgeStats {
    invalid_names: Arc<AtomicU64>,
}

impl BridgeStats {
    /// Fields skipped inside a scope because their (stripped) name is not a valid variable name.
    pub fn invalid_names(&self) -> u64 {
        self.invalid_names.load(Ordering::Relaxed)
    }
}

impl TracingBridge {
    /// A bridge that takes every field under its own name.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes only fields whose names start with `prefix`, recorded without it:
    /// with `strip_prefix("chest.")`, `info!(chest.user_id = 7)` records `user_id` and
    /// `info!(user_id = 7)` records nothing.
    ///
    /// ```
    /// let bridge = chest::bridge::TracingBridge::new().strip_prefix("chest.");
    /// ```
    pub fn strip_prefix(mut self, prefix: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.names).prefix = Some(prefix.into().into_boxed_str());
        self
    }

    /// Takes only these names (compared after [`strip_prefix`](Self::strip_prefix), when given).
    ///
    /// ```
    /// let bridge = chest::bridge::TracingBridge::new().allow(["user_id", "cart_total"]);
    /// ```
    pub fn allow<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        let names = names.into_iter().map(|n| n.as_ref().into()).collect();
        Arc::make_mut(&mut self.names).allow = Some(names);
        self
    }

    /// The counters of what this bridge (and its clones) skipped.
    pub fn stats(&self) -> BridgeStats {
        self.stats.clone()
    }

    /// Records the fields `record` visits into the current request's store, if there is one.
    fn capture(&self, record: impl FnOnce(&mut FieldVisitor<'_>)) {
        vars::with_current(|vars| {
            record(&mut FieldVisitor {
                vars,
                names: &self.names,
                stats: &self.stats,
            });
        });
    }
}

impl<S: Subscriber> Layer<S> for TracingBridge {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, _id: &span::Id, _ctx: Context<'_, S>) {
        self.capture(|visitor| attrs.record(visitor));
    }

    fn on_record(&self, _span: &span::Id, values: &span::Record<'_>, _ctx: Context<'_, S>) {
        self.capture(|visitor| values.record(visitor));
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        self.capture(|visitor| {
            // chest's own log events (a failed write, say) are not the request's facts.
            if !is_chests_own(event.metadata().target()) {
                event.record(visitor);
            }
        });
    }
}

/// Whether an event is chest's own: the target `chest` of its adapters and recorder, or the
/// module of one of its chests or of batched delivery. Not any `chest::` target: a binary
/// named `chest` (such as chest's own CLI) has module paths like `chest::demo`.
fn is_chests_own(target: &str) -> bool {
    target == "chest" || target.starts_with("chest::chests::") || target.starts_with("chest::batch")
}

/// Turns visited fields into variables of one request's store.
struct FieldVisitor<'a> {
    vars: &'a Vars,
    names: &'a NameFilter,
    stats: &'a BridgeStats,
}

impl FieldVisitor<'_> {
    /// Sets the field's value, made only when the field is taken (`Debug` values are formatted
    /// here, outside the store's lock: a `Debug` impl may itself log or set variables).
    fn put(&self, field: &Field, value: impl FnOnce() -> Value) {
        let field = field.name();
        if field == "message" || field.starts_with("log.") {
            return;
        }
        let Some(name) = self.names.name(field) else {
            return;
        };
        if validate_name(name).is_err() {
            self.stats.invalid_names.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.vars.set_bridged(name, value());
    }
}

impl Visit for FieldVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, || Value::Float(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, || Value::Int(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, || Value::from(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.put(field, || Value::from(value));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.put(field, || Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, || Value::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, || Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, || Value::Text(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, || Value::Text(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::prelude::*;

    use super::*;

    /// Runs `f` in `vars`'s scope with `bridge` as this thread's subscriber.
    fn in_scope(bridge: TracingBridge, vars: &Vars, f: impl FnOnce()) {
        let subscriber = tracing_subscriber::registry().with(bridge);
        tracing::subscriber::with_default(subscriber, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(vars.scope(async { f() }));
        });
    }

    #[test]
    fn prefix_and_allow_list() {
        let vars = Vars::new("r");
        let bridge = TracingBridge::new()
            .strip_prefix("chest.")
            .allow(["user_id", "total"]);
        in_scope(bridge, &vars, || {
            tracing::info!(total = 2, chest.user_id = 7, chest.other = 1, "x");
            tracing::info!(other = 0, chest.total = 2.5, "y");
        });
        assert_eq!(vars.names().len(), 2, "{vars:?}");
        assert_eq!(vars.get("user_id"), Some(Value::Int(7)));
        assert_eq!(vars.get("total"), Some(Value::Float(2.5)));
    }

    #[test]
    fn wide_integers_errors_and_chest_events() {
        let vars = Vars::new("r");
        let error = std::io::Error::other("disk full");
        in_scope(TracingBridge::new(), &vars, || {
            tracing::info!(big = i128::MAX, small = -3_i128, "x");
            tracing::info!(error = &error as &(dyn std::error::Error + 'static), "y");
            tracing::error!(target: "chest", chest = "sqlite", "chest's own event");
            tracing::info!(target: "chest::chests::http", status = 200, "a chest's event");
            tracing::info!(target: "chest::demo", demo = true, "a binary named chest");
        });
        assert_eq!(vars.get("status"), None);
        assert_eq!(vars.get("demo"), Some(Value::Bool(true)));
        assert_eq!(vars.get("big"), Some(Value::Text(i128::MAX.to_string())));
        assert_eq!(vars.get("small"), Some(Value::Int(-3)));
        assert_eq!(vars.get("error"), Some(Value::Text("disk full".into())));
        assert_eq!(
            vars.get("chest"),
            None,
            "chest's own events are not recorded"
        );
    }

    /// A `Debug` value that logs and sets a variable itself while being formatted.
    struct Reentrant;

    impl fmt::Debug for Reentrant {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            tracing::info!(from_debug = 1, "inside Debug");
            crate::vars::set("set_in_debug", 2).unwrap();
            f.write_str("reentrant")
        }
    }

    #[test]
    fn debug_values_may_log_and_set_without_deadlock() {
        let vars = Vars::new("r");
        in_scope(TracingBridge::new(), &vars, || {
            tracing::info!(value = ?Reentrant, "x");
        });
        assert_eq!(vars.get("value"), Some(Value::Text("reentrant".into())));
        // tracing itself drops an event dispatched while another is (no recursion); what
        // matters is that nothing deadlocks and the variable set meanwhile is there.
        assert_eq!(vars.get("from_debug"), None);
        assert_eq!(vars.get("set_in_debug"), Some(Value::Int(2)));
    }

    #[test]
    fn a_field_named_after_a_vars_set_name_replaces_it_only_if_it_was_a_field() {
        let vars = Vars::new("r");
        in_scope(TracingBridge::new(), &vars, || {
            tracing::info!(a = 1, "field first");
            crate::vars::set("a", 2).unwrap();
            tracing::info!(a = 3, "ignored: vars.set owns `a` now");
            assert_eq!(vars.remove("a"), Some(Value::Int(2)));
            tracing::info!(a = 4, "removed: the field may set it again");
        });
        assert_eq!(vars.get("a"), Some(Value::Int(4)));
    }
}
