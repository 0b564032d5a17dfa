//! Reading back what SQL chests stored: for the `chest` CLI, exports and tests. [`Reader`]
//! opens a SQLite file or a MySQL/MariaDB or PostgreSQL table from a URL.

#[cfg(any(feature = "mysql", feature = "postgres"))]
use std::collections::BTreeMap;
use std::sync::Arc;

#[cfg(any(feature = "mysql", feature = "postgres"))]
use crate::chests::sqlx_common::{Settings, SqlxChest};
#[cfg(any(feature = "sqlite", feature = "mysql", feature = "postgres"))]
use crate::open::{self, ChestUrl};
use crate::record::{parse_utc_micros, time_from_micros};
#[cfg(any(feature = "sqlite", feature = "mysql", feature = "postgres"))]
use crate::Error;
use crate::{Record, Value};

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
    /// At most this many rows.
    pub limit: Option<u64>,
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
    pub fn new(name: impl Into<String>, count: u64, mut numbers: Vec<f64>) -> Self {
        numbers.retain(|n| n.is_finite());
        numbers.sort_by(f64::total_cmp);
        let rank = |q: f64| -> Option<f64> {
            let n = numbers.len();
            // Nearest rank: the smallest value with at least q of the values at or below it.
            (n > 0).then(|| numbers[((q * n as f64).ceil() as usize).clamp(1, n) - 1])
        };
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
#[cfg(any(feature = "mysql", feature = "postgres"))]
#[derive(Default)]
pub(crate) struct Tally(BTreeMap<String, (u64, Vec<f64>)>);

#[cfg(any(feature = "mysql", feature = "postgres"))]
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

/// Reads what a SQL chest stored, in a SQLite file or on a MySQL/MariaDB or PostgreSQL server:
/// for the `chest` CLI, exports and tests. It changes nothing (and creates no table).
///
/// ```no_run
/// use chest::read::{Filter, Reader};
///
/// # async fn run() -> Result<(), chest::Error> {
/// let reader = Reader::open("postgres://app@127.0.0.1:5432/metrics?table=chest").await?;
/// let one_request = Filter {
///     request_id: Some("3f2c9a7e-0b1d-4e55-9a0c-2d4b8e6f1a3c".into()),
///     ..Default::default()
/// };
/// for row in reader.query(&one_request).await? {
///     let r = &row.record;
///     println!("{} {} = {} ({})", row.unique_id, r.name, r.value, r.recorded_at());
/// }
/// for s in reader.summaries(Some("latency_ms")).await? {
///     println!("{}: {} rows, p50 {:?}", s.name, s.count, s.p50);
/// }
/// reader.close().await;
/// # Ok(()) }
/// ```
#[cfg(any(feature = "sqlite", feature = "mysql", feature = "postgres"))]
pub struct Reader {
    inner: Inner,
}

#[cfg(any(feature = "sqlite", feature = "mysql", feature = "postgres"))]
enum Inner {
    /// In a mutex so that a `Reader` is `Sync`, and its reads can be awaited in spawned tasks.
    #[cfg(feature = "sqlite")]
    Sqlite(std::sync::Mutex<crate::chests::sqlite::SqliteReader>),
    #[cfg(feature = "mysql")]
    MySql(SqlxChest<crate::chests::mysql::MySqlServer>),
    #[cfg(feature = "postgres")]
    Postgres(SqlxChest<crate::chests::postgres::PostgresServer>),
}

/// `$call` on the reader `$inner` holds, named `$reader`: as it is for SQLite (which reads on the
/// calling thread), awaited for a server.
#[cfg(any(feature = "sqlite", feature = "mysql", feature = "postgres"))]
macro_rules! read {
    ($inner:expr, $reader:ident => $call:expr) => {
        match $inner {
            #[cfg(feature = "sqlite")]
            Inner::Sqlite(reader) => {
                // A panic in another read leaves nothing half-done: the reader only reads.
                let $reader = &*reader.lock().unwrap_or_else(|e| e.into_inner());
                $call
            }
            #[cfg(feature = "mysql")]
            Inner::MySql($reader) => $call.await,
            #[cfg(feature = "postgres")]
            Inner::Postgres($reader) => $call.await,
        }
    };
}

#[cfg(any(feature = "sqlite", feature = "mysql", feature = "postgres"))]
impl Reader {
    /// Opens the table a URL names, and checks that it has chest's columns:
    ///
    /// | URL | feature |
    /// |---|---|
    /// | `sqlite://PATH[?table=T]` (`sqlite:///abs/path.db` for an absolute path) | `sqlite` |
    /// | `mysql://USER[:PASSWORD]@HOST[:PORT]/DB[?table=T&…]` (other parameters go to sqlx) | `mysql` |
    /// | `postgres://…` or `postgresql://…` (same shape) | `postgres` |
    ///
    /// The table is `chest` unless `table=` says otherwise, as for [`chest::open`](crate::open()).
    /// A server's pool connects inside the Tokio runtime this is called in; a SQLite file is
    /// opened read-only, and read on the calling thread.
    ///
    /// Errors: [`Error::InvalidUrl`] (or [`Error::InvalidTableName`]) for a URL that cannot be
    /// used, [`Error::Backend`] naming the server (never its password) when it cannot be reached
    /// or has no such table, [`Error::MissingColumns`] for a table that is not chest's.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), chest::Error> {
    /// let sqlite = chest::read::Reader::open("sqlite://chest.db?table=flask_chest").await?;
    /// let mysql = chest::read::Reader::open("mysql://root@127.0.0.1:3306/metrics").await?;
    /// # Ok(()) }
    /// ```
    pub async fn open(url: &str) -> Result<Reader, Error> {
        let parsed = ChestUrl::parse(url)?;
        let inner = match parsed.scheme {
            #[cfg(feature = "sqlite")]
            "sqlite" => {
                let source = open::sqlite_builder_of(url, &parsed)?;
                let reader =
                    crate::chests::sqlite::SqliteReader::open(source.path(), source.table_name())?;
                Inner::Sqlite(reader.into())
            }
            #[cfg(feature = "mysql")]
            "mysql" => {
                Inner::MySql(SqlxChest::open_existing(server_settings(url, &parsed)?).await?)
            }
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => {
                Inner::Postgres(SqlxChest::open_existing(server_settings(url, &parsed)?).await?)
            }
            other => {
                return Err(open::invalid(
                    url,
                    "scheme",
                    format!("`{other}` cannot be read (is its cargo feature on?)"),
                ))
            }
        };
        Ok(Reader { inner })
    }

    /// The rows that pass `filter`, in `unique_id` order. Request ids and names are compared
    /// exactly (case and trailing spaces count, whatever the server's collation).
    ///
    /// ```no_run
    /// # async fn run(reader: chest::read::Reader) -> Result<(), chest::Error> {
    /// use chest::read::Filter;
    ///
    /// // Page through a variable's rows, 1,000 at a time.
    /// let mut page = Filter { name: Some("latency_ms".into()), limit: Some(1000), ..Default::default() };
    /// loop {
    ///     let rows = reader.query(&page).await?;
    ///     let Some(last) = rows.last() else { break };
    ///     page.after_id = Some(last.unique_id);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn query(&self, filter: &Filter) -> Result<Vec<StoredRecord>, Error> {
        read!(&self.inner, reader => reader.query(filter))
    }

    /// Count and distribution of each variable (or only of `name`), by name.
    ///
    /// ```no_run
    /// # async fn run(reader: chest::read::Reader) -> Result<(), chest::Error> {
    /// for s in reader.summaries(None).await? {
    ///     println!("{}: {} rows, {} numeric, max {:?}", s.name, s.count, s.numeric, s.max);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn summaries(&self, name: Option<&str>) -> Result<Vec<VarSummary>, Error> {
        read!(&self.inner, reader => reader.summaries(name))
    }

    /// Closes a server's connections (waiting for reads in progress). Reads after this fail.
    /// Nothing to do for SQLite: its file is closed when the reader is dropped.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), chest::Error> {
    /// let reader = chest::read::Reader::open("postgres://postgres@127.0.0.1/metrics").await?;
    /// reader.close().await;
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) {
        match &self.inner {
            #[cfg(feature = "sqlite")]
            Inner::Sqlite(_) => {}
            #[cfg(feature = "mysql")]
            Inner::MySql(reader) => reader.close().await,
            #[cfg(feature = "postgres")]
            Inner::Postgres(reader) => reader.close().await,
        }
    }
}

/// A reader of a SQLite file opened by path (rather than by `sqlite://` URL).
///
/// ```no_run
/// use chest::chests::sqlite::SqliteReader;
/// use chest::read::Reader;
///
/// # fn main() -> Result<(), chest::Error> {
/// let reader = Reader::from(SqliteReader::open("chest.db", "chest")?);
/// # Ok(()) }
/// ```
#[cfg(feature = "sqlite")]
impl From<crate::chests::sqlite::SqliteReader> for Reader {
    fn from(reader: crate::chests::sqlite::SqliteReader) -> Self {
        Reader {
            inner: Inner::Sqlite(reader.into()),
        }
    }
}

#[cfg(any(feature = "sqlite", feature = "mysql", feature = "postgres"))]
impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reader: &dyn std::fmt::Debug = match &self.inner {
            #[cfg(feature = "sqlite")]
            Inner::Sqlite(reader) => reader,
            #[cfg(feature = "mysql")]
            Inner::MySql(reader) => reader,
            #[cfg(feature = "postgres")]
            Inner::Postgres(reader) => reader,
        };
        f.debug_tuple("Reader").field(reader).finish()
    }
}

/// The settings of a `mysql://` or `postgres://` URL: its table, and the rest for sqlx.
#[cfg(any(feature = "mysql", feature = "postgres"))]
fn server_settings(url: &str, parsed: &ChestUrl<'_>) -> Result<Settings, Error> {
    let (sqlx_url, table) = open::sql_server_url(url, parsed)?;
    let mut settings = Settings::new(&sqlx_url);
    if let Some(table) = table {
        settings.table = table;
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let s = VarSummary::new("x", 100, (1..=100).map(f64::from).collect());
        assert_eq!((s.p50, s.p95, s.p99), (Some(50.0), Some(95.0), Some(99.0)));
        let empty = VarSummary::new("t", 3, vec![]);
        assert_eq!((empty.count, empty.numeric, empty.p50), (3, 0, None));
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn reader_opens_sqlite_urls_and_refuses_other_schemes() {
        use crate::chests::sqlite::SqliteChest;
        use crate::Chest;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("read.db");
        let chest = SqliteChest::builder(&path).table("t").build().unwrap();
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_234_567);
        let record = Record::new("r", "n", 1.5, "GET", Some("/x")).at(at);
        chest.write(std::slice::from_ref(&record)).await.unwrap();
        let url = format!("sqlite://{}?table=t", path.display());
        let reader = Reader::open(&url).await.unwrap();
        let rows = reader.query(&Filter::default()).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].record, record);
        let summaries = reader.summaries(None).await.unwrap();
        assert_eq!((summaries[0].count, summaries[0].max), (1, Some(1.5)));
        reader.close().await;
        assert!(format!("{reader:?}").contains("read.db"));

        let error = Reader::open("memory://x").await.unwrap_err();
        assert!(
            matches!(error, Error::InvalidUrl { part: "scheme", .. }),
            "{error}"
        );
        let missing = format!("sqlite://{}?table=other", path.display());
        let error = Reader::open(&missing).await.unwrap_err();
        assert!(error.to_string().contains("no table `other`"), "{error}");
    }

    /// A reader can be shared, and its reads awaited, by tasks on a multi-threaded runtime.
    #[cfg(any(feature = "sqlite", feature = "mysql", feature = "postgres"))]
    #[test]
    fn readers_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>(_: T) {}
        send_sync::<Reader>();
        let _reads_are_send = |reader: &Reader, filter: &Filter| {
            send(reader.query(filter));
            send(reader.summaries(None));
            send(reader.close());
        };
    }

    #[test]
    fn stored_rows_become_typed_records() {
        let row = StoredRow {
            unique_id: 7,
            request_id: "r".into(),
            name: "n".into(),
            value: Some("1.5".into()),
            value_type: Some("float".into()),
            method: Some("GET".into()),
            route: None,
            recorded_at: Some("1970-01-01T00:00:00.000002Z".into()),
        };
        let stored = StoredRecord::from(row);
        assert_eq!(stored.record.value, Value::Float(1.5));
        assert_eq!(stored.record.unix_micros(), 2);
        let json = serde_json::to_value(&stored).unwrap();
        assert_eq!(json["unique_id"], 7);
        assert_eq!(json["value_type"], "float");
    }
}
