//! Aggregates over time for the dashboard: [`SeriesQuery`] asks for time buckets of records per
//! (name, route, method); [`Series`] holds, per bucket, the count and the distribution of the
//! numeric values, and the latest text value. A leaf like `stored`: every backend that reads
//! back feeds its rows to the same [`SeriesBuilder`], so they all bucket and rank alike.

use std::collections::BTreeMap;

/// Which records to aggregate, and in which time buckets.
///
/// ```
/// let last_hour = chest::read::SeriesQuery::new(60_000_000)
///     .range(Some(1_000_000_000_000), Some(1_003_600_000_000));
/// assert_eq!(last_hour.bucket_micros, 60_000_000);
/// assert_eq!(last_hour.bucket_of(1_000_061_000_000), 1_000_060_000_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SeriesQuery {
    /// Only records at or after this time (microseconds since the Unix epoch).
    pub from_micros: Option<i64>,
    /// Only records before this time.
    pub to_micros: Option<i64>,
    /// The width of a bucket, in microseconds (at least 1).
    pub bucket_micros: i64,
    /// Only this variable.
    pub name: Option<String>,
}

impl SeriesQuery {
    /// Every record, in buckets of `bucket_micros` (see [`range`](Self::range) to narrow it).
    pub fn new(bucket_micros: i64) -> Self {
        SeriesQuery {
            from_micros: None,
            to_micros: None,
            bucket_micros: bucket_micros.max(1),
            name: None,
        }
    }

    /// Only the records in `[from, to)` (either end open when `None`).
    pub fn range(mut self, from_micros: Option<i64>, to_micros: Option<i64>) -> Self {
        self.from_micros = from_micros;
        self.to_micros = to_micros;
        self
    }

    /// Only the records of variable `name`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The start of the bucket that holds time `micros`: buckets are aligned on `from_micros`
    /// (on the epoch when there is none).
    pub fn bucket_of(&self, micros: i64) -> i64 {
        let origin = self.from_micros.unwrap_or(0);
        origin + (micros - origin).div_euclid(self.bucket_micros) * self.bucket_micros
    }
}

/// The finite `numbers`, sorted: for [`nearest_rank`]. Shared with
/// [`VarSummary`](crate::read::VarSummary), so that every figure of chest ranks alike.
pub(crate) fn sorted_finite(mut numbers: Vec<f64>) -> Vec<f64> {
    numbers.retain(|n| n.is_finite());
    numbers.sort_by(f64::total_cmp);
    numbers
}

/// The nearest-rank quantile `q` of `sorted` (see [`sorted_finite`]): the smallest value with
/// at least `q` of the values at or below it; `None` when there are none.
pub(crate) fn nearest_rank(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    (n > 0).then(|| sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1])
}

/// One time bucket of a [`Series`]: how many records, and the distribution of their numeric
/// values (nearest-rank percentiles, as [`VarSummary`](crate::read::VarSummary)).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct Bucket {
    /// The bucket's start, in microseconds since the Unix epoch.
    pub start_micros: i64,
    /// Records in the bucket.
    pub count: u64,
    /// How many of them are numeric.
    pub numeric: u64,
    /// Smallest numeric value.
    pub min: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Largest numeric value.
    pub max: Option<f64>,
}

/// The records of one (name, route, method) over time.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct Series {
    /// The variable.
    pub name: String,
    /// The route (none for Flask-Chest's rows).
    pub route: Option<String>,
    /// The HTTP method (empty for Flask-Chest's rows).
    pub method: String,
    /// Records in every bucket.
    pub count: u64,
    /// Numeric records in every bucket.
    pub numeric: u64,
    /// The latest text (non-numeric) value, and its time in microseconds.
    pub latest_text: Option<(i64, String)>,
    /// The buckets that hold records, by time.
    pub buckets: Vec<Bucket>,
}

/// The key of a series: name, route, method.
type Key = (String, Option<String>, String);

#[derive(Default)]
struct Acc {
    buckets: BTreeMap<i64, (u64, Vec<f64>)>,
    latest_text: Option<(i64, String)>,
}

/// Gathers rows into [`Series`]: every backend that reads back feeds it the rows in a
/// [`SeriesQuery`]'s range.
///
/// ```
/// use chest::read::{SeriesBuilder, SeriesQuery};
///
/// let mut b = SeriesBuilder::new(SeriesQuery::new(10));
/// b.add("t", Some("/x"), "GET", 3, Some(1.0), None);
/// b.add("t", Some("/x"), "GET", 4, Some(3.0), None);
/// b.add("t", Some("/x"), "GET", 12, None, Some("slow"));
/// let s = b.finish();
/// assert_eq!(s[0].buckets.len(), 2);
/// assert_eq!((s[0].buckets[0].count, s[0].buckets[0].max), (2, Some(3.0)));
/// assert_eq!(s[0].latest_text, Some((12, "slow".to_owned())));
/// ```
pub struct SeriesBuilder {
    query: SeriesQuery,
    series: BTreeMap<Key, Acc>,
}

impl SeriesBuilder {
    /// An empty builder for `query`'s buckets.
    pub fn new(query: SeriesQuery) -> Self {
        SeriesBuilder {
            query,
            series: BTreeMap::new(),
        }
    }

    /// Counts a record of `name` on (`route`, `method`) at `micros`, with its numeric value or,
    /// for a text value, its text.
    pub fn add(
        &mut self,
        name: &str,
        route: Option<&str>,
        method: &str,
        micros: i64,
        number: Option<f64>,
        text: Option<&str>,
    ) {
        let key = (name.to_owned(), route.map(str::to_owned), method.to_owned());
        let acc = self.series.entry(key).or_default();
        let (count, numbers) = acc.buckets.entry(self.query.bucket_of(micros)).or_default();
        *count += 1;
        numbers.extend(number);
        if let (None, Some(text)) = (number, text) {
            if acc.latest_text.as_ref().is_none_or(|(at, _)| *at <= micros) {
                acc.latest_text = Some((micros, text.to_owned()));
            }
        }
    }

    /// The series, by name, route and method.
    pub fn finish(self) -> Vec<Series> {
        let series = |((name, route, method), acc): (Key, Acc)| {
            let buckets: Vec<Bucket> = acc
                .buckets
                .into_iter()
                .map(|(start_micros, (count, numbers))| {
                    let sorted = sorted_finite(numbers);
                    Bucket {
                        start_micros,
                        count,
                        numeric: sorted.len() as u64,
                        min: sorted.first().copied(),
                        p50: nearest_rank(&sorted, 0.50),
                        p95: nearest_rank(&sorted, 0.95),
                        p99: nearest_rank(&sorted, 0.99),
                        max: sorted.last().copied(),
                    }
                })
                .collect();
            Series {
                name,
                route,
                method,
                count: buckets.iter().map(|b| b.count).sum(),
                numeric: buckets.iter().map(|b| b.numeric).sum(),
                latest_text: acc.latest_text,
                buckets,
            }
        };
        self.series.into_iter().map(series).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_align_on_the_start_of_the_range() {
        let q = SeriesQuery::new(10).range(Some(5), None);
        assert_eq!(
            (q.bucket_of(5), q.bucket_of(14), q.bucket_of(15)),
            (5, 5, 15)
        );
        assert_eq!(q.bucket_of(4), -5);
    }

    #[test]
    fn series_are_kept_apart_by_route_and_method() {
        let mut b = SeriesBuilder::new(SeriesQuery::new(100));
        for (i, method) in ["GET", "POST", "GET"].into_iter().enumerate() {
            b.add("t", Some("/a"), method, i as i64, Some(i as f64), None);
        }
        b.add("t", None, "", 1, None, Some("x"));
        b.add("t", None, "", 0, None, Some("older"));
        let s = b.finish();
        let keys: Vec<_> = s
            .iter()
            .map(|s| (s.route.clone(), s.method.clone(), s.count))
            .collect();
        assert_eq!(
            keys,
            [
                (None, String::new(), 2),
                (Some("/a".into()), "GET".into(), 2),
                (Some("/a".into()), "POST".into(), 1)
            ]
        );
        assert_eq!(s[0].latest_text, Some((1, "x".into())));
        assert_eq!((s[0].numeric, s[1].buckets[0].p99), (0, Some(2.0)));
    }
}
