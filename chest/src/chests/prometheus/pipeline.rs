//! The delivery pipeline's own figures: each registered [`Batched`] chest's [`Stats`], read at
//! every scrape, as `chest_pipeline_*` metrics labelled by `chest` (feature `batch`).

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::family::{label_set, ConstantLabels};
use super::PrometheusChest;
use crate::batch::{Batched, Dropped, Stats};
use crate::{Chest, Error};

/// A figure of [`Stats`]: metric name (without `_total`), help, and how to read it.
type Figure = (&'static str, &'static str, fn(&Stats) -> u64);

/// Counters: they only grow.
const COUNTERS: [Figure; 8] = [
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

/// The batched chests whose stats are exported.
#[derive(Default)]
pub(crate) struct Pipelines(Vec<Batched>);

impl fmt::Debug for Pipelines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(Chest::name))
            .finish()
    }
}

impl Pipelines {
    /// Writes every figure of every pipeline, one family per figure.
    pub(crate) fn encode(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        constant: &ConstantLabels,
    ) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        let snapshots: Vec<Stats> = self.0.iter().map(Batched::stats).collect();
        for (name, help, read) in COUNTERS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for stats in &snapshots {
                let labels = label_set(constant, [("chest", stats.chest.as_str())]);
                ConstCounter::new(read(stats)).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut dropped = encoder.encode_descriptor(
            "chest_pipeline_dropped",
            "Records given up on, by reason",
            None,
            MetricType::Counter,
        )?;
        for stats in &snapshots {
            for (reason, read) in DROPPED {
                let labels = label_set(
                    constant,
                    [("chest", stats.chest.as_str()), ("reason", reason)],
                );
                ConstCounter::new(read(&stats.dropped)).encode(dropped.encode_family(&labels)?)?;
            }
        }
        for (name, help, read) in GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for stats in &snapshots {
                let labels = label_set(constant, [("chest", stats.chest.as_str())]);
                let value = i64::try_from(read(stats)).unwrap_or(i64::MAX);
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

impl PrometheusChest {
    /// Exports `batched`'s [`Stats`] with this chest's metrics, read at each scrape (or push):
    /// `chest_pipeline_{enqueued,restored,written,retried,spooled,replayed,dead_lettered,
    /// spool_set_aside}_total`, `chest_pipeline_dropped_total{reason}` and the gauges
    /// `chest_pipeline_{queue_depth,queue_bytes,in_flight,spool_records,spool_batches,spool_bytes}`,
    /// each labelled `chest="<the wrapped chest's name>"`.
    ///
    /// The Prometheus chest keeps a handle on `batched`, so its final figures stay visible after
    /// [`Batched::shutdown`]. Refused when a batched chest of the same name is registered already
    /// (their series would clash).
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
        let mut pipelines = self.shared.pipelines_mut();
        if pipelines.0.iter().any(|b| b.name() == batched.name()) {
            return Err(Error::Config(format!(
                "prometheus chest `{}`: a batched chest named `{}` is registered already",
                self.name(),
                batched.name()
            )));
        }
        pipelines.0.push(batched.clone());
        Ok(())
    }
}
