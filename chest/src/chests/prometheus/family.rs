//! One metric family per variable: its series per (method, route), the series cap and the
//! `__overflow__` series.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;

use super::sharded::{self, ShardedCounter, ShardedHistogram};

/// The `route` label of requests that matched no route. Route templates start with `/`, so it
/// cannot be mistaken for one.
pub(crate) const UNMATCHED_ROUTE: &str = "unmatched";
/// The `method` and `route` labels of the series that takes observations beyond the series cap.
pub(crate) const OVERFLOW_LABEL: &str = "__overflow__";

/// The user's constant labels, shared by every series.
pub(crate) type ConstantLabels = [(String, String)];

/// What a variable's metric does with a value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// Observes the value into buckets with these (finite, increasing) upper bounds.
    Histogram(Arc<[f64]>),
    /// Keeps the last value.
    Gauge,
    /// Adds the value; negative values are refused before they get here.
    Counter,
}

impl Kind {
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Kind::Histogram(_) => "histogram",
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }

    fn metric_type(&self) -> MetricType {
        match self {
            Kind::Histogram(_) => MetricType::Histogram,
            Kind::Gauge => MetricType::Gauge,
            Kind::Counter => MetricType::Counter,
        }
    }

    /// A new metric of this kind, its histogram or counter in `shards` per-thread shards.
    fn new_metric(&self, shards: usize) -> Metric {
        match self {
            Kind::Histogram(bounds) => {
                Metric::Histogram(ShardedHistogram::new(Arc::clone(bounds), shards))
            }
            Kind::Gauge => Metric::Gauge(Gauge::default()),
            Kind::Counter => Metric::Counter(ShardedCounter::new(shards)),
        }
    }
}

/// One series' metric. Each is internally synchronised: observing needs only `&self`. A gauge
/// keeps the last value, which shards could not tell, so it stays one atomic.
#[derive(Debug)]
pub(crate) enum Metric {
    Histogram(ShardedHistogram),
    Gauge(Gauge<f64, AtomicU64>),
    Counter(ShardedCounter),
}

impl Metric {
    pub(crate) fn observe(&self, value: f64) {
        match self {
            Metric::Histogram(h) => h.observe(value),
            Metric::Gauge(g) => {
                g.set(value);
            }
            Metric::Counter(c) => {
                c.inc_by(value);
            }
        }
    }

    fn encode(&self, encoder: MetricEncoder<'_>) -> fmt::Result {
        match self {
            Metric::Histogram(h) => h.encode(encoder),
            Metric::Gauge(g) => g.encode(encoder),
            Metric::Counter(c) => c.encode(encoder),
        }
    }
}

/// The labels of one series: the constant labels, then chest's own (`method` and `route` for a
/// variable's metric).
pub(crate) fn label_set<'a, const N: usize>(
    constant: &'a ConstantLabels,
    own: [(&'static str, &'a str); N],
) -> impl EncodeLabelSet + 'a {
    (constant, own)
}

/// Series by method, then by route label: two levels so a lookup borrows the record's strings
/// instead of building a key.
type SeriesMap = FastMap<Arc<str>, FastMap<Arc<str>, Arc<Metric>>>;

/// The chest's maps, looked up on every observation with keys chest chose (variable names,
/// methods, matched routes): foldhash instead of SipHash, which took half of an observation's
/// instructions. Its seed is still random per map.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The metric family of one (or several, when their names sanitise alike) variables.
#[derive(Debug)]
pub(crate) struct Family {
    name: String,
    help: String,
    kind: Kind,
    series_cap: usize,
    /// Per-thread shards of each histogram and counter ([`sharded::shard_count`]).
    shards: usize,
    series: RwLock<SeriesMap>,
    /// How many series `series` holds; changed only under its write lock.
    series_count: AtomicUsize,
    overflow: Metric,
    /// How many observations went to the overflow series.
    overflowed: AtomicU64,
}

impl Family {
    pub(crate) fn new(name: String, help: String, kind: Kind, series_cap: usize) -> Self {
        let shards = sharded::shard_count();
        Family {
            overflow: kind.new_metric(shards),
            name,
            help,
            kind,
            series_cap,
            shards,
            series: RwLock::default(),
            series_count: AtomicUsize::new(0),
            overflowed: AtomicU64::new(0),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn kind(&self) -> &Kind {
        &self.kind
    }

    /// How many series (label sets) the family has, without the overflow series.
    pub(crate) fn series_count(&self) -> usize {
        self.series_count.load(Ordering::Acquire)
    }

    /// How many observations went to the `__overflow__` series.
    pub(crate) fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// Observes `value` in the series of (`method`, `route`), creating it while the family has
    /// fewer than the cap, else in the overflow series. `value` is finite, and not negative for
    /// a counter. The series observed, unless it was the overflow series.
    pub(crate) fn observe(
        &self,
        method: &Arc<str>,
        route: Option<&Arc<str>>,
        value: f64,
    ) -> Option<Arc<Metric>> {
        let route_label = route.map_or(UNMATCHED_ROUTE, |r| &**r);
        let observed = |metric: &Arc<Metric>| {
            metric.observe(value);
            Some(Arc::clone(metric))
        };
        {
            let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(metric) = series.get(&**method).and_then(|m| m.get(route_label)) {
                return observed(metric);
            }
        }
        // A new label set. Once the cap is reached no write lock is taken, so a flood of new
        // label sets cannot stall the existing series.
        if self.series_count.load(Ordering::Acquire) < self.series_cap {
            let mut series = self.series.write().unwrap_or_else(PoisonError::into_inner);
            // Another writer may have created it, or reached the cap, since the read above.
            if let Some(metric) = series.get(&**method).and_then(|m| m.get(route_label)) {
                return observed(metric);
            }
            let count = self.series_count.load(Ordering::Acquire);
            if count < self.series_cap {
                let route = route.cloned().unwrap_or_else(|| Arc::from(UNMATCHED_ROUTE));
                let metric = Arc::new(self.kind.new_metric(self.shards));
                series
                    .entry(Arc::clone(method))
                    .or_default()
                    .insert(route, Arc::clone(&metric));
                self.series_count.store(count + 1, Ordering::Release);
                return observed(&metric);
            }
        }
        self.overflow.observe(value);
        self.overflowed.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Writes the family (nothing when it has no observation yet), its series sorted by method
    /// and route, the overflow series last.
    pub(crate) fn encode(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        constant: &ConstantLabels,
    ) -> fmt::Result {
        let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
        let mut sorted: Vec<(&str, &str, &Metric)> = series
            .iter()
            .flat_map(|(method, routes)| {
                routes
                    .iter()
                    .map(move |(route, metric)| (&**method, &**route, &**metric))
            })
            .collect();
        let overflowed = self.overflowed() > 0;
        if sorted.is_empty() && !overflowed {
            return Ok(());
        }
        sorted.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        if overflowed {
            sorted.push((OVERFLOW_LABEL, OVERFLOW_LABEL, &self.overflow));
        }
        let mut metric_encoder =
            encoder.encode_descriptor(&self.name, &self.help, None, self.kind.metric_type())?;
        for (method, route, metric) in sorted {
            let labels = label_set(constant, [("method", method), ("route", route)]);
            metric.encode(metric_encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
