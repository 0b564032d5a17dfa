//! The Prometheus chest: its builder, its metric families and the collector behind its exposition.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::family::{label_set, Family, FastMap, Kind};
use super::source::{self, MetricSource};
use super::{names, series_cache};
use crate::{BoxFuture, Chest, ChestError, Error, Record, Value};

/// Prometheus' default histogram buckets (those of the Go client).
const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const DEFAULT_PREFIX: &str = "chest_";
const DEFAULT_NAME: &str = "prometheus";
const DEFAULT_SERIES_CAP: usize = 1_000;
const DEFAULT_MAX_METRICS: usize = 1_000;
/// How many refused records a write's error describes; the rest are only counted.
const REFUSALS_SHOWN: usize = 3;

/// A chest that aggregates numeric variables into Prometheus metrics per (variable, method,
/// route). See the [module docs](super). Clones share the same metrics.
#[derive(Clone)]
pub struct PrometheusChest {
    pub(super) shared: Arc<Shared>,
    pub(super) registry: Arc<Registry>,
}

/// Settings of a [`PrometheusChest`], checked by [`build`](Self::build).
#[derive(Debug, Clone)]
pub struct PrometheusChestBuilder {
    name: String,
    prefix: String,
    constant_labels: Vec<(String, String)>,
    default_buckets: Vec<f64>,
    variables: Vec<(String, KindSetting)>,
    series_cap: usize,
    max_metrics: usize,
}

/// A kind as configured, before its buckets are checked.
#[derive(Debug, Clone)]
enum KindSetting {
    Histogram(Option<Vec<f64>>),
    Gauge,
    Counter,
}

impl Default for PrometheusChestBuilder {
    fn default() -> Self {
        PrometheusChestBuilder {
            name: DEFAULT_NAME.to_owned(),
            prefix: DEFAULT_PREFIX.to_owned(),
            constant_labels: Vec::new(),
            default_buckets: DEFAULT_BUCKETS.to_vec(),
            variables: Vec::new(),
            series_cap: DEFAULT_SERIES_CAP,
            max_metrics: DEFAULT_MAX_METRICS,
        }
    }
}

impl PrometheusChestBuilder {
    /// The chest's name in logs and errors (default `prometheus`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The prefix of every variable's metric name (default `chest_`), prepended as is: letters,
    /// digits and `_`, not starting with a digit or `__`; may be empty.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// A label with the same value on every metric, e.g. `service="shop"`. Its name must be a
    /// valid label name and not one chest sets (`method`, `route`, `le`, `quantile`, `reason`,
    /// `metric`, `chest`).
    pub fn constant_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.constant_labels.push((name.into(), value.into()));
        self
    }

    /// The buckets (finite, strictly increasing upper bounds; `+Inf` is implied) of histograms
    /// without buckets of their own.
    pub fn default_buckets(mut self, buckets: impl IntoIterator<Item = f64>) -> Self {
        self.default_buckets = buckets.into_iter().collect();
        self
    }

    /// `variable` is a histogram with these buckets (finite, strictly increasing upper bounds;
    /// `+Inf` is implied).
    pub fn histogram(
        mut self,
        variable: impl Into<String>,
        buckets: impl IntoIterator<Item = f64>,
    ) -> Self {
        let buckets = buckets.into_iter().collect();
        self.variables
            .push((variable.into(), KindSetting::Histogram(Some(buckets))));
        self
    }

    /// `variable` is a gauge: the metric is the last value observed.
    pub fn gauge(mut self, variable: impl Into<String>) -> Self {
        self.variables.push((variable.into(), KindSetting::Gauge));
        self
    }

    /// `variable` is a counter: each value is added; negative values are refused.
    pub fn counter(mut self, variable: impl Into<String>) -> Self {
        self.variables.push((variable.into(), KindSetting::Counter));
        self
    }

    /// The most label sets one metric keeps (default 1,000); observations beyond go to the
    /// `__overflow__` series.
    pub fn series_cap(mut self, cap: usize) -> Self {
        self.series_cap = cap;
        self
    }

    /// The most metric families the chest creates (default 1,000); variables beyond are skipped.
    pub fn max_metrics(mut self, max: usize) -> Self {
        self.max_metrics = max;
        self
    }

    /// Checks the settings and builds the chest.
    ///
    /// ```
    /// use chest::chests::prometheus::PrometheusChest;
    ///
    /// assert!(PrometheusChest::builder().gauge("queue depth").build().is_ok());
    /// let refused = PrometheusChest::builder().gauge("---").build().unwrap_err();
    /// assert!(refused.to_string().contains("\"---\""));
    /// assert!(PrometheusChest::builder().constant_label("route", "x").build().is_err());
    /// assert!(PrometheusChest::builder().histogram("t", [1.0, 0.5]).build().is_err());
    /// ```
    pub fn build(self) -> Result<PrometheusChest, Error> {
        let (default_buckets, variables) = self.check()?;
        Ok(self.assemble(default_buckets, variables))
    }

    /// Checks the settings; returns the default buckets and the configured variables' families.
    fn check(&self) -> Result<(Arc<[f64]>, Variables), Error> {
        let config_error =
            |what: String| Error::Config(format!("prometheus chest `{}`: {what}", self.name));
        names::check_prefix(&self.prefix)
            .map_err(|e| config_error(format!("invalid prefix {:?}: {e}", self.prefix)))?;
        for (i, (label, _)) in self.constant_labels.iter().enumerate() {
            names::check_label_name(label)
                .map_err(|e| config_error(format!("invalid constant label name {label:?}: {e}")))?;
            if self.constant_labels[..i].iter().any(|(l, _)| l == label) {
                return Err(config_error(format!(
                    "constant label {label:?} is given twice"
                )));
            }
        }
        if self.series_cap == 0 || self.max_metrics == 0 {
            return Err(config_error(
                "series_cap and max_metrics must be at least 1".into(),
            ));
        }
        let default_buckets: Arc<[f64]> = check_buckets(&self.default_buckets)
            .map_err(|e| config_error(format!("default buckets: {e}")))?
            .into();

        let mut variables = Variables::default();
        for (variable, setting) in &self.variables {
            let kind = match setting {
                KindSetting::Histogram(Some(buckets)) => Kind::Histogram(
                    check_buckets(buckets)
                        .map_err(|e| config_error(format!("buckets of {variable:?}: {e}")))?
                        .into(),
                ),
                KindSetting::Histogram(None) => Kind::Histogram(Arc::clone(&default_buckets)),
                KindSetting::Gauge => Kind::Gauge,
                KindSetting::Counter => Kind::Counter,
            };
            let name =
                names::metric_name(&self.prefix, variable, kind == Kind::Counter).map_err(|e| {
                    config_error(format!(
                        "variable {variable:?} cannot be a metric name: {e}"
                    ))
                })?;
            if variables.by_variable.contains_key(variable.as_str()) {
                return Err(config_error(format!(
                    "variable {variable:?} is configured twice"
                )));
            }
            let family = match variables.families.get(&name) {
                Some(existing) if *existing.kind() != kind => {
                    return Err(config_error(format!(
                        "variable {variable:?} gives the metric name {name} that another variable \
                         uses with another kind or other buckets"
                    )))
                }
                Some(existing) => Arc::clone(existing),
                None => {
                    let help = names::help_text(variable, kind.as_str());
                    let family = Arc::new(Family::new(name.clone(), help, kind, self.series_cap));
                    variables.families.insert(name, Arc::clone(&family));
                    family
                }
            };
            variables.by_variable.insert(
                Arc::from(variable.as_str()),
                Variable::new(Target::Family(family)),
            );
        }
        if variables.families.len() > self.max_metrics {
            return Err(config_error(format!(
                "{} variables are configured but max_metrics is {}",
                variables.families.len(),
                self.max_metrics
            )));
        }
        Ok((default_buckets, variables))
    }

    /// The chest of checked settings.
    fn assemble(self, default_buckets: Arc<[f64]>, variables: Variables) -> PrometheusChest {
        let shared = Arc::new(Shared {
            number: series_cache::chest_number(),
            name: Arc::from(self.name),
            prefix: self.prefix,
            constant_labels: self.constant_labels,
            default_buckets,
            series_cap: self.series_cap,
            max_metrics: self.max_metrics,
            variables: RwLock::new(variables),
            skipped: Default::default(),
            warned_too_many: AtomicBool::new(false),
            pushes: AtomicU64::new(0),
            push_failures: AtomicU64::new(0),
            sources: RwLock::default(),
        });
        let mut registry = Registry::default();
        registry.register_collector(Box::new(PrometheusCollector(Arc::clone(&shared))));
        PrometheusChest {
            shared,
            registry: Arc::new(registry),
        }
    }
}

/// Checks histogram buckets: at least one, finite, strictly increasing.
fn check_buckets(buckets: &[f64]) -> Result<Vec<f64>, &'static str> {
    if buckets.is_empty() {
        Err("give at least one bucket bound")
    } else if buckets.iter().any(|b| !b.is_finite()) {
        Err("bucket bounds must be finite (+Inf is implied)")
    } else if buckets.windows(2).any(|w| w[0] >= w[1]) {
        Err("bucket bounds must be strictly increasing")
    } else {
        Ok(buckets.to_vec())
    }
}

impl PrometheusChest {
    /// A chest with the default settings: prefix `chest_`, histograms with Prometheus' default
    /// buckets, 1,000 series per metric.
    pub fn new() -> Self {
        // The default settings need no check (a test builds them through `build`).
        Self::builder().assemble(DEFAULT_BUCKETS.into(), Variables::default())
    }

    /// Settings for a chest.
    pub fn builder() -> PrometheusChestBuilder {
        PrometheusChestBuilder::default()
    }

    /// The metric name of `variable` under this chest's prefix (for a histogram or gauge; a
    /// counter also loses a trailing `_total`), or `None` when no valid name can be made from it.
    ///
    /// ```
    /// use chest::chests::prometheus::PrometheusChest;
    ///
    /// let chest = PrometheusChest::new();
    /// assert_eq!(chest.metric_name("latency (ms)").as_deref(), Some("chest_latency_ms"));
    /// assert_eq!(chest.metric_name("%%"), None);
    /// ```
    pub fn metric_name(&self, variable: &str) -> Option<String> {
        names::metric_name(&self.shared.prefix, variable, false).ok()
    }

    /// Adds this chest's metrics to a registry you already have, to be encoded with yours. This
    /// is the one place the public API uses a `prometheus-client` (0.26) type.
    ///
    /// ```
    /// use chest::chests::prometheus::PrometheusChest;
    /// use prometheus_client::registry::Registry;
    ///
    /// let mut registry = Registry::default();
    /// PrometheusChest::new().register_into(&mut registry);
    /// let mut text = String::new();
    /// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    /// assert!(text.contains("chest_prometheus_skipped_total{reason=\"text\"} 0"));
    /// ```
    pub fn register_into(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(PrometheusCollector(Arc::clone(&self.shared))));
    }

    /// Exports `source`'s figures with this chest's metrics, read at each scrape and push, with
    /// the constant labels (see [`MetricSource`] for an example). The chest keeps the source.
    /// Refused when a source with the same [`key`](MetricSource::key) is registered already
    /// (their series would clash).
    ///
    /// ```
    /// use chest::chests::prometheus::{Figures, MetricSource, PrometheusChest};
    ///
    /// struct Version;
    ///
    /// impl MetricSource for Version {
    ///     fn key(&self) -> &str {
    ///         "version"
    ///     }
    ///
    ///     fn collect(&self, figures: &mut Figures) {
    ///         figures.gauge("app_info", "The running version", &[("version", "1.2.0")], 1);
    ///     }
    /// }
    ///
    /// let chest = PrometheusChest::new();
    /// chest.register_source(Version)?;
    /// assert!(chest.register_source(Version).is_err());
    /// # Ok::<(), chest::Error>(())
    /// ```
    pub fn register_source(&self, source: impl MetricSource) -> Result<(), Error> {
        let key = source.key().to_owned();
        let added = self
            .shared
            .sources
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .add(Box::new(source));
        if added {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "prometheus chest `{}`: a metric source `{key}` is registered already",
                self.name()
            )))
        }
    }
}

impl Default for PrometheusChest {
    fn default() -> Self {
        Self::new()
    }
}

impl Chest for PrometheusChest {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn write<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), ChestError>> {
        Box::pin(std::future::ready(self.shared.observe_all(records)))
    }
}

impl fmt::Debug for PrometheusChest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let variables = self.shared.variables();
        f.debug_struct("PrometheusChest")
            .field("name", &self.shared.name)
            .field("prefix", &self.shared.prefix)
            .field("constant_labels", &self.shared.constant_labels)
            .field("metrics", &variables.families.len())
            .finish_non_exhaustive()
    }
}

/// Why a value was not observed: the `reason` label of `chest_prometheus_skipped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SkipReason {
    Text,
    Json,
    Nan,
    Infinite,
    InvalidName,
    TooManyMetrics,
    NegativeCounter,
}

impl SkipReason {
    const ALL: [SkipReason; 7] = [
        SkipReason::Text,
        SkipReason::Json,
        SkipReason::Nan,
        SkipReason::Infinite,
        SkipReason::InvalidName,
        SkipReason::TooManyMetrics,
        SkipReason::NegativeCounter,
    ];

    fn as_str(self) -> &'static str {
        match self {
            SkipReason::Text => "text",
            SkipReason::Json => "json",
            SkipReason::Nan => "nan",
            SkipReason::Infinite => "infinite",
            SkipReason::InvalidName => "invalid_name",
            SkipReason::TooManyMetrics => "too_many_metrics",
            SkipReason::NegativeCounter => "negative_counter",
        }
    }

    /// Why a value that [`Value::as_f64`] refused is not a number.
    fn of(value: &Value) -> SkipReason {
        match value {
            Value::Text(_) => SkipReason::Text,
            Value::Json(_) => SkipReason::Json,
            Value::Float(f) if f.is_nan() => SkipReason::Nan,
            // `as_f64` refuses only text, JSON, NaN and ±Inf.
            _ => SkipReason::Infinite,
        }
    }

    /// This reason's bit in [`Variable::warned`].
    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    fn explain(self) -> &'static str {
        match self {
            SkipReason::Text | SkipReason::Json => "text and JSON values are not metrics",
            SkipReason::Nan | SkipReason::Infinite => "NaN and infinite values are not observed",
            SkipReason::InvalidName => "no valid metric name can be made from its name",
            SkipReason::TooManyMetrics => "the chest already has max_metrics metric families",
            SkipReason::NegativeCounter => "a counter cannot decrease",
        }
    }
}

/// Where a variable's values go.
#[derive(Debug)]
enum Target {
    Family(Arc<Family>),
    Refused(SkipReason),
}

/// A variable seen by the chest.
#[derive(Debug)]
struct Variable {
    target: Target,
    /// One bit per [`SkipReason`] already logged for this variable.
    warned: AtomicU8,
}

impl Variable {
    fn new(target: Target) -> Self {
        Variable {
            target,
            warned: AtomicU8::new(0),
        }
    }
}

/// The variables seen so far and the families they feed.
#[derive(Debug, Default)]
struct Variables {
    by_variable: FastMap<Arc<str>, Variable>,
    /// By metric name: sorted, for a stable exposition.
    families: BTreeMap<String, Arc<Family>>,
}

/// The state every clone of a chest shares.
#[derive(Debug)]
pub(super) struct Shared {
    /// This chest's number in the per-thread series cache ([`series_cache`]).
    number: u64,
    name: Arc<str>,
    prefix: String,
    pub(super) constant_labels: Vec<(String, String)>,
    default_buckets: Arc<[f64]>,
    series_cap: usize,
    max_metrics: usize,
    variables: RwLock<Variables>,
    skipped: [AtomicU64; SkipReason::ALL.len()],
    /// Whether the variables beyond what the chest remembers were logged (once, for all).
    warned_too_many: AtomicBool,
    /// Successful pushes to a Pushgateway.
    pub(super) pushes: AtomicU64,
    /// Failed push attempts, retries included.
    pub(super) push_failures: AtomicU64,
    /// Figures from elsewhere, exported with the chest's own.
    sources: RwLock<source::Sources>,
}

/// The records of a write that were refused (negative values for counters): the cause of the
/// write's permanent error. The first few are described, all are counted.
#[derive(Debug, Default, thiserror::Error)]
#[error("{count} record(s) refused: {}", .shown.join("; "))]
struct RefusedRecords {
    count: usize,
    shown: Vec<String>,
}

impl Shared {
    fn variables(&self) -> std::sync::RwLockReadGuard<'_, Variables> {
        self.variables
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Observes every record; refuses negative values of counters, after observing the others.
    fn observe_all(&self, records: &[Record]) -> Result<(), ChestError> {
        let mut refused: Option<RefusedRecords> = None;
        for record in records {
            if let Err(reason) = self.observe(record) {
                let refusals = refused.get_or_insert_with(RefusedRecords::default);
                refusals.count += 1;
                if refusals.shown.len() < REFUSALS_SHOWN {
                    refusals.shown.push(reason);
                }
            }
        }
        match refused {
            None => Ok(()),
            Some(refused) => Err(ChestError::permanent(&*self.name, refused)),
        }
    }

    /// Observes one record. `Err` describes a refused record (a negative value for a counter).
    fn observe(&self, record: &Record) -> Result<(), String> {
        // The series this thread observed the same strings in: a value it takes is observed
        // there; anything else (a refusal to count) goes the whole way below.
        let value = record.value.as_f64();
        let cached =
            series_cache::with_series(self.number, record, |metric, counter| match value {
                Some(value) if !(counter && value < 0.0) => {
                    metric.observe(value);
                    true
                }
                _ => false,
            });
        if cached == Some(true) {
            return Ok(());
        }
        let variables = self.variables();
        let Some(variable) = variables.by_variable.get(&*record.name) else {
            drop(variables);
            if self.add_variable(&record.name) {
                return self.observe(record);
            }
            // The chest remembers no more variables: count, and log once for all of them.
            self.count_skip(SkipReason::TooManyMetrics);
            if !self.warned_too_many.swap(true, Ordering::Relaxed) {
                tracing::warn!(target: "chest", chest = &*self.name, variable = &*record.name,
                    "prometheus chest: too many distinct variables; values of new variables are skipped (logged once)");
            }
            return Ok(());
        };
        let family = match &variable.target {
            Target::Family(family) => family,
            Target::Refused(reason) => {
                self.skip(variable, *reason, &record.name);
                return Ok(());
            }
        };
        let Some(value) = value else {
            self.skip(variable, SkipReason::of(&record.value), &record.name);
            return Ok(());
        };
        if value < 0.0 && *family.kind() == Kind::Counter {
            self.count_skip(SkipReason::NegativeCounter);
            return Err(format!(
                "counter {} (variable {:?}) cannot decrease, value {value} refused",
                family.name(),
                &*record.name
            ));
        }
        if let Some(series) = family.observe(&record.method, record.route.as_ref(), value) {
            let counter = *family.kind() == Kind::Counter;
            series_cache::keep(self.number, record, series, counter);
        }
        Ok(())
    }

    /// Remembers a variable first seen in a request. `false` when the chest remembers too many
    /// variables already (twice `max_metrics`: variables may share a family or be refused).
    fn add_variable(&self, name: &Arc<str>) -> bool {
        let mut variables = self
            .variables
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if variables.by_variable.contains_key(&**name) {
            return true;
        }
        if variables.by_variable.len() >= self.max_metrics.saturating_mul(2) {
            return false;
        }
        let target = match names::metric_name(&self.prefix, name, false) {
            Err(_) => Target::Refused(SkipReason::InvalidName),
            Ok(metric) => match variables.families.get(&metric) {
                Some(family) => Target::Family(Arc::clone(family)),
                None if variables.families.len() >= self.max_metrics => {
                    Target::Refused(SkipReason::TooManyMetrics)
                }
                None => {
                    let kind = Kind::Histogram(Arc::clone(&self.default_buckets));
                    let help = names::help_text(name, kind.as_str());
                    let family = Arc::new(Family::new(metric.clone(), help, kind, self.series_cap));
                    variables.families.insert(metric, Arc::clone(&family));
                    Target::Family(family)
                }
            },
        };
        variables
            .by_variable
            .insert(Arc::clone(name), Variable::new(target));
        true
    }

    fn count_skip(&self, reason: SkipReason) {
        self.skipped[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a skipped value, and logs it the first time for this variable and reason.
    fn skip(&self, variable: &Variable, reason: SkipReason, name: &str) {
        self.count_skip(reason);
        // Read first: once logged, a skip writes nothing shared but its counter.
        let warned = |bits: u8| bits & reason.bit() != 0;
        if !warned(variable.warned.load(Ordering::Relaxed))
            && !warned(variable.warned.fetch_or(reason.bit(), Ordering::Relaxed))
        {
            tracing::warn!(target: "chest", chest = &*self.name, variable = name, reason = reason.as_str(),
                "prometheus chest: values of this variable are skipped: {} (logged once per variable)",
                reason.explain());
        }
    }

    /// Writes every metric: the variables' families, then chest's own.
    fn encode(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let variables = self.variables();
        for family in variables.families.values() {
            family.encode(encoder, &self.constant_labels)?;
        }
        let constant = &self.constant_labels;
        let mut skipped = encoder.encode_descriptor(
            "chest_prometheus_skipped",
            "Values of tracked variables that were not observed, by reason",
            None,
            MetricType::Counter,
        )?;
        for reason in SkipReason::ALL {
            let count = self.skipped[reason as usize].load(Ordering::Relaxed);
            let labels = label_set(constant, [("reason", reason.as_str())]);
            ConstCounter::new(count).encode(skipped.encode_family(&labels)?)?;
        }
        for (name, help, count) in [
            (
                "chest_prometheus_pushes",
                "Successful pushes to a Pushgateway",
                &self.pushes,
            ),
            (
                "chest_prometheus_push_failures",
                "Failed attempts to push to a Pushgateway, retries included",
                &self.push_failures,
            ),
        ] {
            let mut pushes = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            let labels = label_set(constant, []);
            ConstCounter::new(count.load(Ordering::Relaxed))
                .encode(pushes.encode_family(&labels)?)?;
        }
        let families = || variables.families.values();
        let mut overflow = encoder.encode_descriptor(
            "chest_prometheus_overflow",
            "Observations that went to the __overflow__ series because the metric had series_cap series",
            None,
            MetricType::Counter,
        )?;
        for family in families() {
            let labels = label_set(constant, [("metric", family.name())]);
            ConstCounter::new(family.overflowed()).encode(overflow.encode_family(&labels)?)?;
        }
        let mut series = encoder.encode_descriptor(
            "chest_prometheus_series",
            "Label sets (series) of each metric, without the __overflow__ series",
            None,
            MetricType::Gauge,
        )?;
        for family in families() {
            let labels = label_set(constant, [("metric", family.name())]);
            let count = i64::try_from(family.series_count()).unwrap_or(i64::MAX);
            ConstGauge::new(count).encode(series.encode_family(&labels)?)?;
        }
        self.sources
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .encode(encoder, constant)?;
        Ok(())
    }
}

/// Encodes a chest's metrics at each scrape, in its own registry or in a user's.
#[derive(Debug)]
struct PrometheusCollector(Arc<Shared>);

impl Collector for PrometheusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        self.0.encode(&mut encoder)
    }
}
