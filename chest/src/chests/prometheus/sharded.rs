//! Histograms and counters kept in per-thread shards. An observation adds to its own thread's
//! shard: threads observing the same series take no lock and never write to the same cache line
//! (prometheus-client's histogram takes a mutex per observation, and its counter is one atomic
//! every thread writes). A scrape adds the shards up.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use prometheus_client::encoding::{MetricEncoder, NoLabelSet};

/// The most shards a metric has, whatever the number of cores: bounds each series' memory
/// (a default histogram: 128 bytes a shard).
const MAX_SHARDS: usize = 8;

/// How many shards a metric has on this machine: one per core, up to [`MAX_SHARDS`], a power
/// of two.
pub(crate) fn shard_count() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    cores.min(MAX_SHARDS).next_power_of_two()
}

/// Sixteen counters, 128 bytes: two cache lines, which adjacent-line prefetching moves together.
#[repr(align(128))]
struct Line([AtomicU64; 16]);

/// The counters of a metric, `per_shard` per shard, each shard on lines of its own.
struct Counters {
    lines: Box<[Line]>,
    lines_per_shard: usize,
    /// `shards - 1` (the count is a power of two).
    mask: usize,
}

/// Numbers the threads that observe, for their shard: the first gets 0, the next 1, and so on.
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD: usize = NEXT_THREAD.fetch_add(1, Relaxed);
}

impl Counters {
    fn new(shards: usize, per_shard: usize) -> Self {
        let shards = shards.max(1).next_power_of_two();
        let lines_per_shard = per_shard.div_ceil(16).max(1);
        let lines = (0..shards * lines_per_shard)
            .map(|_| Line(std::array::from_fn(|_| AtomicU64::new(0))))
            .collect();
        Counters {
            lines,
            lines_per_shard,
            mask: shards - 1,
        }
    }

    fn at(&self, shard: usize, i: usize) -> &AtomicU64 {
        let at = shard * self.lines_per_shard * 16 + i;
        &self.lines[at / 16].0[at % 16]
    }

    /// Counter `i` of the calling thread's shard.
    fn mine(&self, i: usize) -> &AtomicU64 {
        // A thread being torn down has no number: shard 0 (still correct, only shared).
        let thread = THREAD.try_with(|t| *t).unwrap_or(0);
        self.at(thread & self.mask, i)
    }

    /// Counter `i` of every shard.
    fn each(&self, i: usize) -> impl Iterator<Item = u64> + '_ {
        (0..=self.mask).map(move |shard| self.at(shard, i).load(Relaxed))
    }

    /// Counter `i` of every shard, read as `f64` and added up.
    fn sum_f64(&self, i: usize) -> f64 {
        self.each(i).map(f64::from_bits).sum()
    }
}

/// Adds `value` to the `f64` whose bits `cell` holds.
fn add_f64(cell: &AtomicU64, value: f64) {
    // Only this thread writes its shard (unless there are more threads than shards), so the
    // exchange succeeds the first time.
    let _ = cell.fetch_update(Relaxed, Relaxed, |bits| {
        Some((f64::from_bits(bits) + value).to_bits())
    });
}

/// A histogram: per shard, the sum of the values (counter 0) and the count of each bucket
/// (counters 1..), the last bucket `+Inf`.
pub(crate) struct ShardedHistogram {
    /// Finite, increasing upper bounds, `+Inf` not included.
    bounds: Arc<[f64]>,
    counters: Counters,
}

impl ShardedHistogram {
    pub(crate) fn new(bounds: Arc<[f64]>, shards: usize) -> Self {
        let counters = Counters::new(shards, bounds.len() + 2);
        ShardedHistogram { bounds, counters }
    }

    pub(crate) fn observe(&self, value: f64) {
        // The first bucket whose bound is not below the value; NaN goes to `+Inf`, as in
        // prometheus-client.
        let bucket = if value.is_nan() {
            self.bounds.len()
        } else {
            self.bounds.partition_point(|bound| *bound < value)
        };
        self.counters.mine(1 + bucket).fetch_add(1, Relaxed);
        add_f64(self.counters.mine(0), value);
    }

    /// The sum, count and per-bucket counts (not cumulative), as the encoder takes them. The
    /// count is the buckets' total, so the two always agree in a scrape.
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let bounds = self.bounds.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds
            .enumerate()
            .map(|(i, bound)| (bound, self.counters.each(1 + i).sum()))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        (self.counters.sum_f64(0), count, buckets)
    }

    pub(crate) fn encode(&self, mut encoder: MetricEncoder<'_>) -> fmt::Result {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}

/// A counter of `f64` increments: per shard, its part of the total.
pub(crate) struct ShardedCounter {
    counters: Counters,
}

impl ShardedCounter {
    pub(crate) fn new(shards: usize) -> Self {
        ShardedCounter {
            counters: Counters::new(shards, 1),
        }
    }

    /// Adds `value` (not negative: the chest refuses those first).
    pub(crate) fn inc_by(&self, value: f64) {
        add_f64(self.counters.mine(0), value);
    }

    fn total(&self) -> f64 {
        self.counters.sum_f64(0)
    }

    pub(crate) fn encode(&self, mut encoder: MetricEncoder<'_>) -> fmt::Result {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.total(), None)
    }
}

impl fmt::Debug for ShardedHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (sum, count, _) = self.snapshot();
        f.debug_struct("ShardedHistogram")
            .field("sum", &sum)
            .field("count", &count)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ShardedCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedCounter")
            .field("total", &self.total())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every thread's observations are counted once, in the right bucket, whichever shard they
    /// fell in, with more threads than shards.
    #[test]
    fn shards_add_up_to_every_observation() {
        let histogram = Arc::new(ShardedHistogram::new(Arc::from([1.0, 10.0]), 2));
        let counter = Arc::new(ShardedCounter::new(2));
        let threads: Vec<_> = (0..5)
            .map(|_| {
                let (histogram, counter) = (histogram.clone(), counter.clone());
                std::thread::spawn(move || {
                    for value in [0.5, 1.0, 5.0, 10.0, 50.0] {
                        for _ in 0..1000 {
                            histogram.observe(value);
                            counter.inc_by(value);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let (sum, count, buckets) = histogram.snapshot();
        assert_eq!(count, 25_000);
        // le=1: 0.5 and 1.0; le=10: 5 and 10; +Inf: 50.
        assert_eq!(
            buckets,
            vec![(1.0, 10_000), (10.0, 10_000), (f64::INFINITY, 5_000)]
        );
        assert_eq!(sum, 5.0 * 1000.0 * 66.5);
        assert_eq!(counter.total(), 5.0 * 1000.0 * 66.5);
    }

    #[test]
    fn nan_goes_to_the_last_bucket_and_shard_counts_are_powers_of_two() {
        let histogram = ShardedHistogram::new(Arc::from([1.0]), 3);
        histogram.observe(f64::NAN);
        histogram.observe(-5.0);
        let (_, count, buckets) = histogram.snapshot();
        assert_eq!(count, 2);
        assert_eq!(buckets, vec![(1.0, 1), (f64::INFINITY, 1)]);
        assert_eq!(histogram.counters.mask, 3);
        let shards = shard_count();
        assert!(shards.is_power_of_two() && shards <= MAX_SHARDS);
    }
}
