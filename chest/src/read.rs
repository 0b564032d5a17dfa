//! Reading back what chests stored: for the `chest` CLI, exports and tests. [`Reader`] opens
//! any chest whose backend can read back (SQLite, MySQL/MariaDB, PostgreSQL) from its URL.

pub use crate::series::{Bucket, Series, SeriesBuilder, SeriesQuery};
pub use crate::stored::{Checkpoint, Filter, ReadBack, StoredRecord, StoredRow, VarSummary};
use crate::url::ChestUrl;
use crate::Error;

/// Reads what a chest stored (a SQLite file, a MySQL/MariaDB or PostgreSQL table): for the
/// `chest` CLI, exports and tests. Reading changes nothing (and creates no table); only the
/// checkpoint methods of `chest export` write.
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
pub struct Reader {
    inner: Box<dyn ReadBack>,
}

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
        let opening = {
            let parsed = ChestUrl::parse(url)?;
            let scheme = crate::chests::scheme(&parsed)?;
            let read = scheme.read.ok_or_else(|| {
                parsed.invalid("scheme", format!("`{}` cannot be read back", parsed.scheme))
            })?;
            read(&parsed)?
        };
        Ok(Reader {
            inner: opening.await?,
        })
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
        self.inner.query(filter).await
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
        self.inner.summaries(name).await
    }

    /// Per variable, route and method: records per time bucket, and for numeric values their
    /// distribution (min, p50, p95, p99, max), over `query`'s range; and the latest text value.
    /// The range is read through the `recorded_at` index.
    ///
    /// ```no_run
    /// # async fn run(reader: chest::read::Reader) -> Result<(), chest::Error> {
    /// use chest::read::SeriesQuery;
    ///
    /// let minute = 60_000_000;
    /// for s in reader.series(&SeriesQuery::new(minute).name("response_time")).await? {
    ///     for b in &s.buckets {
    ///         println!("{} {:?} {} {}: {} rows, p95 {:?}", s.name, s.route, s.method, b.start_micros, b.count, b.p95);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn series(&self, query: &SeriesQuery) -> Result<Vec<Series>, Error> {
        self.inner.series(query).await
    }

    /// The times (microseconds since the Unix epoch) of the oldest and the newest record; `None`
    /// for an empty table.
    ///
    /// ```no_run
    /// # async fn run(reader: chest::read::Reader) -> Result<(), chest::Error> {
    /// if let Some((first, last)) = reader.time_span().await? {
    ///     println!("{} s of records", (last - first) / 1_000_000);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn time_span(&self) -> Result<Option<(i64, i64)>, Error> {
        self.inner.time_span().await
    }

    /// How many rows have a `unique_id` greater than `after_id`.
    pub async fn count_after(&self, after_id: i64) -> Result<u64, Error> {
        self.inner.count_after(after_id).await
    }

    /// Where `consumer` stands: the highest `unique_id` acknowledged by
    /// [`advance`](Self::advance) (0 when none is), and the batch announced by
    /// [`begin`](Self::begin) and not yet acknowledged (`chest export` names its consumer after
    /// its target). The first call makes the checkpoint tables (`chest_export_checkpoint`,
    /// `chest_export_pending`) beside the chest's table if they are missing.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), chest::Error> {
    /// use chest::read::{Filter, Reader};
    ///
    /// let reader = Reader::open("sqlite://chest.db").await?;
    /// let at = reader.checkpoint("my-exporter").await?;
    /// // (`at.pending`: a batch sent before a crash, to send again under its id first.)
    /// let filter = Filter { after_id: Some(at.last_id), limit: Some(500), ..Default::default() };
    /// let rows = reader.query(&filter).await?;
    /// if let Some(last) = rows.last() {
    ///     let id = chest::BatchId::new();
    ///     reader.begin("my-exporter", last.unique_id, id).await?;
    ///     // ... hand `rows` to their destination as batch `id`; once it acknowledged them:
    ///     reader.advance("my-exporter", last.unique_id, false).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn checkpoint(&self, consumer: &str) -> Result<Checkpoint, Error> {
        self.inner.checkpoint(consumer).await
    }

    /// Notes that `consumer` is about to send the rows after its checkpoint up to `to` as batch
    /// `id` (see [`ReadBack::begin`]).
    pub async fn begin(&self, consumer: &str, to: i64, id: crate::BatchId) -> Result<(), Error> {
        self.inner.begin(consumer, to, id).await
    }

    /// Moves `consumer`'s checkpoint to `to`, forgets its pending batch and, with `delete`,
    /// deletes every row up to it, in one transaction: call it only for rows their destination
    /// acknowledged.
    pub async fn advance(&self, consumer: &str, to: i64, delete: bool) -> Result<(), Error> {
        self.inner.advance(consumer, to, delete).await
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
        self.inner.close().await;
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
            inner: reader.into_read_back(),
        }
    }
}

/// A reader of any backend that implements [`ReadBack`], one of your own included.
impl From<Box<dyn ReadBack>> for Reader {
    fn from(inner: Box<dyn ReadBack>) -> Self {
        Reader { inner }
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Reader").field(&self.inner).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;

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
        use crate::{Chest, Record};

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
