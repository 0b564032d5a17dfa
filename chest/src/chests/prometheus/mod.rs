//! The Prometheus chest (feature `prometheus`): per-route metrics from tracked variables, served
//! for Prometheus to scrape and pushable to a Pushgateway.
//!
//! Each tracked numeric variable becomes one metric family, named from the variable (see
//! [Names](#names)) and labelled by `method` and `route`, the route *template* (`/items/{id}`,
//! never the raw path; `unmatched` when the request matched no route), plus the constant labels you
//! give. A request id is never a label: it would make one series per request.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use chest::chests::prometheus::PrometheusChest;
//! use chest::{layer::ChestLayer, Recorder, Vars};
//!
//! async fn checkout(vars: Vars) -> &'static str {
//!     vars.set("cart_items", 3).unwrap();
//!     vars.set("payment_ms", 41.5).unwrap();
//!     "paid"
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let prometheus = PrometheusChest::builder()
//!     .constant_label("service", "shop")
//!     .histogram("payment_ms", [10.0, 25.0, 50.0, 100.0, 250.0])
//!     .gauge("cart_items")
//!     .build()?;
//! let app = Router::new()
//!     .route("/checkout", get(checkout))
//!     .route_layer(ChestLayer::new(Recorder::new().chest(prometheus.clone())))
//!     // GET /metrics: the text exposition, outside the recorded routes.
//!     .merge(prometheus.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! ## Kinds
//! - **histogram** (the default): buckets per variable with
//!   [`histogram`](PrometheusChestBuilder::histogram), else
//!   [`default_buckets`](PrometheusChestBuilder::default_buckets) (Prometheus' usual
//!   `0.005 … 10`);
//! - **gauge**: the last value, with [`gauge`](PrometheusChestBuilder::gauge);
//! - **counter**: adds each value, with [`counter`](PrometheusChestBuilder::counter). A negative
//!   value is refused: the write returns a permanent [`ChestError`](crate::ChestError) naming the variable, and the
//!   other records of the write are still observed.
//!
//! Integers, finite floats and booleans (as 0 or 1) are observed; integers beyond 2⁵³ lose
//! precision as `f64`. Text and JSON values are not metrics, nor are NaN and ±Inf: they are
//! skipped, counted in `chest_prometheus_skipped_total{reason}` (`text`, `json`, `nan`,
//! `infinite`, and `invalid_name`, `too_many_metrics`, `negative_counter` below) and logged once
//! per variable, not once per request.
//!
//! ## Names
//! The metric name is the prefix (default `chest_`, set with
//! [`prefix`](PrometheusChestBuilder::prefix), prepended as is) followed by the variable name with
//! each run of characters other than ASCII letters, digits and `_` replaced by one `_`, and `_`
//! trimmed at both ends: `payment ms` and `payment-ms` both give `chest_payment_ms` (variables
//! whose names sanitise alike share one family, with the first one's kind). A counter's trailing
//! `_total` is dropped, as the exposition adds it. A configured variable whose name cannot be made
//! valid (nothing left, a leading digit with an empty prefix, or the namespace of chest's own
//! metrics `chest_prometheus_*` and `chest_pipeline_*`) is refused by
//! [`build`](PrometheusChestBuilder::build); a variable first seen in a request is skipped with
//! reason `invalid_name`.
//!
//! ## Bounded cardinality
//! A family keeps at most [`series_cap`](PrometheusChestBuilder::series_cap) label sets (default
//! 1,000). Beyond it, observations go to one series labelled `method="__overflow__",
//! route="__overflow__"` and are counted in `chest_prometheus_overflow_total{metric}`;
//! `chest_prometheus_series{metric}` tells how many series each family has. At most
//! [`max_metrics`](PrometheusChestBuilder::max_metrics) families are created (default 1,000);
//! variables beyond are skipped with reason `too_many_metrics`.
//!
//! ## Exposition
//! [`router`](PrometheusChest::router) serves `GET /metrics`, [`handler`](PrometheusChest::handler)
//! mounts it at a path of your choice, [`serve`](PrometheusChest::serve) runs a standalone
//! listener, and [`encode`](PrometheusChest::encode) returns the text for any other server. The
//! format follows the scraper's `Accept` header: OpenMetrics 1.0 for Prometheus, the Prometheus
//! text format 0.0.4 otherwise (see [`Format`]).
//! [`pushgateway`](PrometheusChest::pushgateway) pushes the same metrics to a Pushgateway.
//!
//! ## Figures from elsewhere
//! [`register_source`](PrometheusChest::register_source) exports the counters and gauges of any
//! [`MetricSource`] with this chest's metrics, read at each scrape and push, with the constant
//! labels. With the `batch` feature too, `register_batched` exports a batched chest's pipeline
//! figures (written, dropped by reason, spooled, queue depth, …) as `chest_pipeline_*` metrics
//! labelled by `chest`: see `chest::batch::PipelineMetrics`.
//!
//! ## Writes are cheap and not all-or-nothing
//! [`Chest::write`](crate::Chest::write) observes synchronously, in memory, without I/O: there is nothing to gain from
//! wrapping this chest in a `Batched` queue. A write with a refused record still observes the
//! others, so do not let a retrying wrapper replay it: the observed records would count twice.
//!
//! ## Using your own registry
//! The public API exposes no `prometheus-client` type with one exception:
//! [`register_into`](PrometheusChest::register_into) adds this chest's metrics to a
//! `prometheus_client::registry::Registry` you already have (that registry's prefix and labels then
//! apply too). It follows `prometheus-client`'s version (0.26) and may change with it.

mod chest;
mod exposition;
mod family;
mod names;
mod push;
mod series_cache;
mod sharded;
mod source;

pub use chest::{PrometheusChest, PrometheusChestBuilder};
pub use exposition::{Format, MetricsServer};
pub use push::{PushTask, Pushgateway, PushgatewayBuilder};
pub use source::{Figures, MetricSource};
