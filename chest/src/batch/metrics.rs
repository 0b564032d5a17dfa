//! The delivery pipeline's own figures for the Prometheus chest (features `batch` and
//! `prometheus`): a [`Batched`] chest's [`Stats`], read at every scrape, as `chest_pipeline_*`
//! metrics labelled by `chest`. The Prometheus chest takes them as any other [`MetricSource`].

use super::batched::Batched;
use super::stats::{Dropped, Stats};
use crate::chests::prometheus::{Figures, MetricSource, PrometheusChest};
use crate::{Chest, Error};

/// A figure of [`Stats`]: metric name (without `_total`), help, and how to read it.
type Figure = (&'static str, &'static str, fn(&Stats) -> u64);

/// Counters: they only grow.
const COUNTERS: [Figure; 10] = [
    (
        "chest_pipeline_enqueued",
        "Records handed to the batched chest",
        |s| s.enqueued,
    ),
    (
        "chest_pipeline_restored",
        "Records found in the spool when it was opened",
        |s| s.restored,
    ),
    (
        "chest_pipeline_written",
        "Records the wrapped chest accepted",
        |s| s.written,
    ),
    (
        "chest_pipeline_retried",
        "Write attempts retried after a transient failure",
        |s| s.retried,
    ),
    (
        "chest_pipeline_already_stored",
        "Batches the wrapped chest had stored already (an earlier attempt's answer was lost): not stored twice",
        |s| s.already_stored,
    ),
    (
        "chest_pipeline_spooled",
        "Records put into the durable spool",
        |s| s.spooled,
    ),
    (
        "chest_pipeline_replayed",
        "Records read back from the spool and settled",
        |s| s.replayed,
    ),
    (
        "chest_pipeline_dead_lettered",
        "Records refused for good, written to the dead-letter file",
        |s| s.dead_lettered,
    ),
    (
        "chest_pipeline_spool_set_aside",
        "Spool files found corrupt and set aside",
        |s| s.spool_set_aside,
    ),
    (
        "chest_pipeline_journal_torn",
        "Journal frames found torn or corrupt at start and cut",
        |s| s.journal_torn,
    ),
];

/// Gauges: where records are now.
const GAUGES: [Figure; 6] = [
    (
        "chest_pipeline_queue_depth",
        "Records waiting in the memory queue",
        |s| s.queue_depth,
    ),
    (
        "chest_pipeline_queue_bytes",
        "Approximate bytes of the records in the memory queue",
        |s| s.queue_bytes,
    ),
    (
        "chest_pipeline_in_flight",
        "Records being written, waiting for a retry or being spooled",
        |s| s.in_flight,
    ),
    (
        "chest_pipeline_spool_records",
        "Records in the durable spool",
        |s| s.spool_records,
    ),
    (
        "chest_pipeline_spool_batches",
        "Batches in the durable spool",
        |s| s.spool_batches,
    ),
    (
        "chest_pipeline_spool_bytes",
        "Bytes of the batches in the durable spool",
        |s| s.spool_bytes,
    ),
];

/// A reason records are dropped: its `reason` label and how to read its count.
type DropReason = (&'static str, fn(&Dropped) -> u64);

/// The `reason` label values of `chest_pipeline_dropped_total`.
const DROPPED: [DropReason; 7] = [
    ("oldest", |d| d.oldest),
    ("newest", |d| d.newest),
    ("rejected", |d| d.rejected),
    ("block_timeout", |d| d.block_timeout),
    ("permanent_error", |d| d.permanent_error),
    ("shutdown", |d| d.shutdown),
    ("spool_corrupt", |d| d.spool_corrupt),
];

/// A [`Batched`] chest's [`Stats`] as Prometheus metrics, from [`Batched::pipeline_metrics`]:
/// `chest_pipeline_{enqueued,restored,written,retried,spooled,replayed,dead_lettered,
/// spool_set_aside,journal_torn}_total`, `chest_pipeline_dropped_total{reason}` and the gauges
/// `chest_pipeline_{queue_depth,queue_bytes,in_flight,spool_records,spool_batches,spool_bytes}`,
/// each labelled `chest="<the wrapped chest's name>"` and read at each scrape.
///
/// It holds a handle on the batched chest, so its final figures stay visible after
/// [`Batched::shutdown`]. Its [`key`](MetricSource::key) is the chest's name.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use chest::chests::prometheus::{Format, PrometheusChest};
/// use chest::{batch::Batched, MemoryChest};
///
/// let batched = Batched::builder(MemoryChest::named("archive")).build()?;
/// let prometheus = PrometheusChest::new();
/// prometheus.register_source(batched.pipeline_metrics())?;
/// let text = prometheus.encode(Format::PrometheusText);
/// assert!(text.contains("chest_pipeline_queue_depth{chest=\"archive\"} 0"));
/// # batched.shutdown(std::time::Duration::from_secs(1)).await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PipelineMetrics(Batched);

impl Batched {
    /// This chest's [`Stats`] as Prometheus metrics, for
    /// [`PrometheusChest::register_source`] (see [`PipelineMetrics`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), chest::Error> {
    /// use chest::{batch::Batched, chests::prometheus::PrometheusChest, MemoryChest};
    ///
    /// let batched = Batched::builder(MemoryChest::new()).build()?;
    /// PrometheusChest::new().register_source(batched.pipeline_metrics())?;
    /// # batched.shutdown(std::time::Duration::from_secs(1)).await;
    /// # Ok(()) }
    /// ```
    pub fn pipeline_metrics(&self) -> PipelineMetrics {
        PipelineMetrics(self.clone())
    }
}

impl MetricSource for PipelineMetrics {
    fn key(&self) -> &str {
        self.0.name()
    }

    fn collect(&self, figures: &mut Figures) {
        let stats = self.0.stats();
        let chest = [("chest", stats.chest.as_str())];
        for (name, help, read) in COUNTERS {
            figures.counter(name, help, &chest, read(&stats));
        }
        for (reason, read) in DROPPED {
            let labels = [chest[0], ("reason", reason)];
            figures.counter(
                "chest_pipeline_dropped",
                "Records given up on, by reason",
                &labels,
                read(&stats.dropped),
            );
        }
        for (name, help, read) in GAUGES {
            let value = i64::try_from(read(&stats)).unwrap_or(i64::MAX);
            figures.gauge(name, help, &chest, value);
        }
    }
}

impl PrometheusChest {
    /// Exports `batched`'s [`Stats`] with this chest's metrics: the same as
    /// `register_source(batched.pipeline_metrics())` (see [`PipelineMetrics`] for the metrics).
    ///
    /// Refused when a batched chest of the same name is registered already (their series would
    /// clash).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use chest::chests::prometheus::{Format, PrometheusChest};
    /// use chest::{batch::Batched, Chest, MemoryChest, Record};
    ///
    /// let batched = Batched::builder(MemoryChest::named("archive")).build()?;
    /// let prometheus = PrometheusChest::new();
    /// prometheus.register_batched(&batched)?;
    /// batched.write(&[Record::new("r1", "n", 1, "GET", None)]).await?;
    /// batched.shutdown(std::time::Duration::from_secs(5)).await;
    /// let text = prometheus.encode(Format::PrometheusText);
    /// assert!(text.contains("chest_pipeline_written_total{chest=\"archive\"} 1"));
    /// # Ok(()) }
    /// ```
    pub fn register_batched(&self, batched: &Batched) -> Result<(), Error> {
        self.register_source(batched.pipeline_metrics())
    }
}
