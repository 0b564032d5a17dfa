//! Figures from elsewhere, exported with the chest's own metrics: [`MetricSource`] and
//! [`Figures`]. The chest knows nothing of what a source measures; it adds its constant labels,
//! merges the families of all sources by name and encodes them at each scrape and push.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::family::ConstantLabels;
use super::names::{clean_help, is_valid_name};

/// Counters and gauges that a [`PrometheusChest`](super::PrometheusChest) exports with its own
/// metrics, read at each scrape and push. Register one with
/// [`register_source`](super::PrometheusChest::register_source).
///
/// The batched chest's pipeline figures (`chest_pipeline_*`, features `batch` and `prometheus`)
/// are one; any other figures kept elsewhere can be another.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use chest::chests::prometheus::{Figures, Format, MetricSource, PrometheusChest};
///
/// /// Jobs done so far, counted by the application.
/// struct Jobs(Arc<AtomicU64>);
///
/// impl MetricSource for Jobs {
///     fn key(&self) -> &str {
///         "jobs"
///     }
///
///     fn collect(&self, figures: &mut Figures) {
///         let done = self.0.load(Ordering::Relaxed);
///         figures.counter("app_jobs_done", "Jobs done", &[("queue", "main")], done);
///     }
/// }
///
/// let done = Arc::new(AtomicU64::new(0));
/// let chest = PrometheusChest::new();
/// chest.register_source(Jobs(done.clone()))?;
/// done.fetch_add(3, Ordering::Relaxed);
/// let text = chest.encode(Format::PrometheusText);
/// assert!(text.contains("app_jobs_done_total{queue=\"main\"} 3"));
/// # Ok::<(), chest::Error>(())
/// ```
pub trait MetricSource: Send + Sync + 'static {
    /// Tells this source apart from the others registered with the same chest: a second source
    /// with the same key is refused, as its series would clash with the first's. Typically the
    /// value of the label its series are told apart by.
    fn key(&self) -> &str;

    /// Writes the current figures (called at every scrape and push: keep it cheap).
    fn collect(&self, figures: &mut Figures);
}

/// What [`MetricSource`]s report at one scrape: counters and gauges, each series with its labels.
///
/// Families are merged by name across sources, in the order they first appear. A series is
/// skipped (logged at debug level) when its metric or label name is not a valid Prometheus name
/// (`[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`), when its family was reported as the other
/// kind, or when a label repeats one of the chest's constant labels (which every series gets).
///
/// ```
/// use chest::chests::prometheus::Figures;
///
/// fn report(figures: &mut Figures) {
///     figures.counter("app_retries", "Retries made", &[("backend", "db")], 7);
///     figures.gauge("app_queue_depth", "Jobs waiting", &[("backend", "db")], 12);
/// }
/// ```
#[derive(Debug, Default)]
pub struct Figures {
    families: Vec<Collected>,
}

/// A counter's or gauge's value.
#[derive(Debug, Clone, Copy)]
enum Reading {
    Counter(u64),
    Gauge(i64),
}

impl Reading {
    fn metric_type(self) -> MetricType {
        match self {
            Reading::Counter(_) => MetricType::Counter,
            Reading::Gauge(_) => MetricType::Gauge,
        }
    }
}

/// One family's series, as reported.
#[derive(Debug)]
struct Collected {
    name: String,
    help: String,
    kind: MetricType,
    series: Vec<(Vec<(String, String)>, Reading)>,
}

impl Figures {
    /// Reports a counter's series. `name` is given without `_total` (the exposition adds it).
    ///
    /// ```
    /// # let mut figures = chest::chests::prometheus::Figures::default();
    /// figures.counter("app_requests", "Requests served", &[("route", "/")], 10);
    /// ```
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: u64) {
        self.add(name, help, labels, Reading::Counter(value));
    }

    /// Reports a gauge's series.
    ///
    /// ```
    /// # let mut figures = chest::chests::prometheus::Figures::default();
    /// figures.gauge("app_temperature", "Degrees Celsius", &[], -4);
    /// ```
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: i64) {
        self.add(name, help, labels, Reading::Gauge(value));
    }

    fn add(&mut self, name: &str, help: &str, labels: &[(&str, &str)], reading: Reading) {
        if let Some(bad) = std::iter::once(name)
            .chain(labels.iter().map(|(label, _)| *label))
            .find(|n| !is_valid_name(n))
        {
            tracing::debug!(target: "chest", metric = name, name = bad,
                "prometheus chest: a metric source's series with an invalid name is skipped");
            return;
        }
        let kind = reading.metric_type();
        let family = match self.families.iter().position(|f| f.name == name) {
            Some(at) => &mut self.families[at],
            None => {
                self.families.push(Collected {
                    name: name.to_owned(),
                    help: clean_help(help),
                    kind,
                    series: Vec::new(),
                });
                self.families.last_mut().expect("just pushed")
            }
        };
        if family.kind != kind {
            tracing::debug!(target: "chest", metric = name,
                "prometheus chest: a metric source's series of the other kind is skipped");
            return;
        }
        let labels = labels
            .iter()
            .map(|(l, v)| ((*l).to_owned(), (*v).to_owned()))
            .collect();
        family.series.push((labels, reading));
    }

    /// Encodes every family, each series with the constant labels first.
    pub(crate) fn encode(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        constant: &ConstantLabels,
    ) -> fmt::Result {
        for family in &self.families {
            let mut metric =
                encoder.encode_descriptor(&family.name, &family.help, None, family.kind)?;
            for (labels, reading) in &family.series {
                if labels
                    .iter()
                    .any(|(l, _)| constant.iter().any(|(c, _)| c == l))
                {
                    continue;
                }
                let labels = (constant, labels.as_slice());
                let series = metric.encode_family(&labels)?;
                match *reading {
                    Reading::Counter(value) => ConstCounter::new(value).encode(series)?,
                    Reading::Gauge(value) => ConstGauge::new(value).encode(series)?,
                }
            }
        }
        Ok(())
    }
}

/// The registered sources.
#[derive(Default)]
pub(crate) struct Sources(Vec<Box<dyn MetricSource>>);

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|s| s.key()))
            .finish()
    }
}

impl Sources {
    /// Adds a source; `false` (nothing added) when one with the same key is there already.
    pub(crate) fn add(&mut self, source: Box<dyn MetricSource>) -> bool {
        if self.0.iter().any(|s| s.key() == source.key()) {
            return false;
        }
        self.0.push(source);
        true
    }

    /// Collects every source's figures and encodes them.
    pub(crate) fn encode(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        constant: &ConstantLabels,
    ) -> fmt::Result {
        let mut figures = Figures::default();
        for source in &self.0 {
            source.collect(&mut figures);
        }
        figures.encode(encoder, constant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_merge_by_name_and_bad_series_are_skipped() {
        let mut figures = Figures::default();
        figures.counter("a", "A", &[("chest", "x")], 1);
        figures.gauge("b", "B", &[], 2);
        figures.counter("a", "A", &[("chest", "y")], 3);
        figures.gauge("a", "A as a gauge", &[], 4);
        figures.counter("1bad", "", &[], 5);
        figures.counter("c", "", &[("__bad", "v")], 6);
        figures.counter("d", "say \"hi\"\n", &[], 7);
        let names: Vec<(&str, usize)> = figures
            .families
            .iter()
            .map(|f| (f.name.as_str(), f.series.len()))
            .collect();
        assert_eq!(names, [("a", 2), ("b", 1), ("d", 1)]);
        assert_eq!(figures.families[2].help, "say _hi__");
    }
}
