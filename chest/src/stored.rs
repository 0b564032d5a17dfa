//! What chest's tables hold, as read back, and the trait of every backend that can read its
//! records back ([`ReadBack`]). A leaf: it knows no backend; [`Reader`](crate::read::Reader)
//! finds the backend of a URL in the scheme table and wraps its `ReadBack`.

#[cfg(any(feature = "sqlite", feature = "mysql", feature = "postgres"))]
use std::collections::BTreeMap;
use std::sync::Arc;

pub(crate) use crate::record::parse_utc_micros;
use crate::record::time_from_micros;
use crate::series::{Series, SeriesQuery};
use crate::{BatchId, BoxFuture, Error, Record, Value};

/// Where a consumer of a chest's rows (`chest export`) stands, from
/// [`ReadBack::checkpoint`](ReadBack::checkpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Checkpoint {
    /// The highest `unique_id` its destination acknowledged (0 when none).
    pub last_id: i64,
    /// The batch it announced and had not acknowledged when it stopped: its last `unique_id`
    /// and its id. Send those rows again under that id before anything else.
    pub pending: Option<(i64, BatchId)>,
}

/// A row of chest's table: its `unique_id` and the record it holds.
///
/// Serialises as the record's fields (see [`Record`]) plus `unique_id`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct StoredRecord {
    /// The row's `unique_id` (insertion order).
    pub unique_id: i64,
    /// The record. Rows written by Flask-Chest (no method, route or time) get an empty method,
    /// no route and the Unix epoch as time.
    #[serde(flatten)]
    pub record: Record,
}

/// The raw columns of one row, as every SQL backend reads them.
#[derive(Debug, Clone, Default)]
pub struct StoredRow {
    /// `unique_id`.
    pub unique_id: i64,
    /// `request_id`.
    pub request_id: String,
    /// `name`.
    pub name: String,
    /// `value` (text form).
    pub value: Option<String>,
    /// `value_type`.
    pub value_type: Option<String>,
    /// `method`.
    pub method: Option<String>,
    /// `route`.
    pub route: Option<String>,
    /// `recorded_at`, as text.
    pub recorded_at: Option<String>,
}

impl From<StoredRow> for StoredRecord {
    fn from(row: StoredRow) -> Self {
        let value = Value::from_stored(
            row.value.as_deref().unwrap_or(""),
            row.value_type.as_deref().unwrap_or("text"),
        );
        let micros = row.recorded_at.as_deref().and_then(parse_utc_micros);
        StoredRecord {
            unique_id: row.unique_id,
            record: Record {
                request_id: Arc::from(row.request_id),
                name: Arc::from(row.name),
                value,
                method: Arc::from(row.method.unwrap_or_default()),
                route: row.route.map(Arc::from),
                time: time_from_micros(micros.unwrap_or(0)),
            },
        }
    }
}

/// Which rows to read. The default reads every row in `unique_id` order.
///
/// ```
/// let filter = chest::read::Filter {
///     name: Some("response_time".into()),
///     limit: Some(10),
///     ..Default::default()
/// };
/// assert!(filter.request_id.is_none());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only rows of this request.
    pub request_id: Option<String>,
    /// Only rows of this variable.
    pub name: Option<String>,
    /// Only rows with a `unique_id` greater than this (to resume a scan).
    pub after_id: Option<i64>,
    /// Only rows with a `unique_id` at most this.
    pub until_id: Option<i64>,
    /// At most this many rows.
    pub limit: Option<u64>,
    /// Newest (highest `unique_id`) first, for the latest rows with `limit`.
    pub newest_first: bool,
}

/// Count and distribution of one variable's values.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct VarSummary {
    /// The variable's name.
    pub name: String,
    /// How many rows it has.
    pub count: u64,
    /// How many of them have a numeric value (`value_num` not NULL).
    pub numeric: u64,
    /// Smallest numeric value.
    pub min: Option<f64>,
    /// Mean of the numeric values.
    pub mean: Option<f64>,
    /// Median (nearest rank).
    pub p50: Option<f64>,
    /// 95th percentile (nearest rank).
    pub p95: Option<f64>,
    /// 99th percentile (nearest rank).
    pub p99: Option<f64>,
    /// Largest numeric value.
    pub max: Option<f64>,
}

impl VarSummary {
    /// Summarises `count` rows of `name`, whose numeric values are `numbers`.
    ///
    /// ```
    /// let s = chest::read::VarSummary::new("t", 5, vec![3.0, 1.0, 2.0, 4.0]);
    /// assert_eq!((s.min, s.p50, s.max, s.mean), (Some(1.0), Some(2.0), Some(4.0), Some(2.5)));
    /// assert_eq!(s.numeric, 4);
    /// ```
    pub fn new(name: impl Into<String>, count: u64, numbers: Vec<f64>) -> Self {
        let numbers = crate::series::sorted_finite(numbers);
        let rank = |q: f64| crate::series::nearest_rank(&numbers, q);
        let mean =
            (!numbers.is_empty()).then(|| numbers.iter().sum::<f64>() / numbers.len() as f64);
        VarSummary {
            name: name.into(),
            count,
            numeric: numbers.len() as u64,
            min: numbers.first().copied(),
            mean,
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max: numbers.last().copied(),
        }
    }
}

/// Counts and numeric values of rows by variable, for [`VarSummary`]s in name order.
#[cfg(any(feature = "sqlite", feature = "mysql", feature = "postgres"))]
#[derive(Default)]
pub(crate) struct Tally(BTreeMap<String, (u64, Vec<f64>)>);

#[cfg(any(feature = "sqlite", feature = "mysql", feature = "postgres"))]
impl Tally {
    /// Counts a row of variable `name`, whose `value_num` is `number`.
    pub fn add(&mut self, name: String, number: Option<f64>) {
        let (count, numbers) = self.0.entry(name).or_default();
        *count += 1;
        numbers.extend(number);
    }

    /// One summary per variable, by name (byte order).
    pub fn summaries(self) -> Vec<VarSummary> {
        let summary = |(name, (count, numbers))| VarSummary::new(name, count, numbers);
        self.0.into_iter().map(summary).collect()
    }
}

/// A [`Checkpoint`] from what a checkpoint table holds; `chest` names the source in the error
/// for a batch id that is not one (a damaged table).
#[cfg(any(feature = "sqlite", feature = "mysql", feature = "postgres"))]
pub(crate) fn checkpoint_of(
    chest: &str,
    last_id: Option<i64>,
    pending: Option<(i64, String)>,
) -> Result<Checkpoint, Error> {
    let pending = match pending {
        Some((to, id)) => Some((to, id.parse().map_err(|e| Error::backend(chest, e))?)),
        None => None,
    };
    Ok(Checkpoint {
        last_id: last_id.unwrap_or(0),
        pending,
    })
}

/// The read half of a backend: what [`Reader`](crate::read::Reader) and `chest export` ask of it.
///
/// A backend that can read back what it stored implements it and names its opener in its row of
/// the scheme table (see "Adding a chest" in the crate docs). The trait is object-safe; every
/// method returns a boxed `Send` future, so a reader can be shared by tasks.
///
/// The checkpoint methods serve `chest export`: a *consumer* (the export's target name) keeps the
/// highest `unique_id` it has had acknowledged, and moves it (optionally deleting the rows up to
/// it) in one transaction. Reading never changes the table; the checkpoint methods change only
/// the checkpoint table and, with `delete`, the acknowledged rows.
pub trait ReadBack: Send + Sync + std::fmt::Debug {
    /// The rows that pass `filter`, in `unique_id` order; request ids and names compared exactly.
    fn query<'a>(&'a self, filter: &'a Filter) -> BoxFuture<'a, Result<Vec<StoredRecord>, Error>>;

    /// Count and distribution of each variable (or only of `name`), by name.
    fn summaries<'a>(
        &'a self,
        name: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<VarSummary>, Error>>;

    /// Per (name, route, method): records and numeric distribution per time bucket of `query`
    /// (see [`SeriesBuilder`](crate::read::SeriesBuilder)), reading its range by `recorded_at`.
    fn series<'a>(&'a self, query: &'a SeriesQuery) -> BoxFuture<'a, Result<Vec<Series>, Error>>;

    /// The times (microseconds since the Unix epoch) of the oldest and newest records.
    fn time_span(&self) -> BoxFuture<'_, Result<Option<(i64, i64)>, Error>>;

    /// How many rows have a `unique_id` greater than `after_id`.
    fn count_after(&self, after_id: i64) -> BoxFuture<'_, Result<u64, Error>>;

    /// Where `consumer` stands: the highest `unique_id` acknowledged (0 when none is), and the
    /// batch it had announced with [`begin`](Self::begin) and not yet acknowledged, if any.
    fn checkpoint<'a>(&'a self, consumer: &'a str) -> BoxFuture<'a, Result<Checkpoint, Error>>;

    /// Notes that `consumer` is about to send the rows up to `to` (after its checkpoint) as batch
    /// `id`: if it stops before [`advance`](Self::advance), its next
    /// [`checkpoint`](Self::checkpoint) says so, and the same rows go again under the same id.
    fn begin<'a>(
        &'a self,
        consumer: &'a str,
        to: i64,
        id: BatchId,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Moves `consumer`'s checkpoint to `to`, forgets its pending batch and, with `delete`,
    /// deletes every row up to it (all acknowledged), in one transaction.
    fn advance<'a>(
        &'a self,
        consumer: &'a str,
        to: i64,
        delete: bool,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Closes the backend's connections (waiting for reads in progress). Reads after this fail.
    fn close(&self) -> BoxFuture<'_, ()>;
}
