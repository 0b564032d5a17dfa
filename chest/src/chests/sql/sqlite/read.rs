//! Reading a SQLite chest back: [`SqliteReader`], and `chest export`'s checkpoint in the same file.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

use crate::chests::sql::{self, Dialect};
use crate::series::{Series, SeriesBuilder, SeriesQuery};
use crate::stored::{
    checkpoint_of, parse_utc_micros, Checkpoint, Filter, ReadBack, StoredRecord, StoredRow, Tally,
    VarSummary,
};
use crate::{BatchId, BoxFuture, Error};

/// Reads what a [`SqliteChest`](super::SqliteChest) stored, without writing: for the `chest` CLI, exports and tests.
///
/// ```no_run
/// use chest::chests::sqlite::SqliteReader;
/// use chest::read::Filter;
///
/// # fn main() -> Result<(), chest::Error> {
/// let reader = SqliteReader::open("chest.db", "chest")?;
/// for row in reader.query(&Filter { limit: Some(10), ..Default::default() })? {
///     println!("{} {} = {}", row.record.request_id, row.record.name, row.record.value);
/// }
/// # Ok(()) }
/// ```
pub struct SqliteReader {
    conn: Connection,
    path: PathBuf,
    table: String,
    name: String,
    /// A read-write connection, opened by the first checkpoint operation of `chest export`.
    writer: Option<Connection>,
}

impl SqliteReader {
    /// Opens an existing database read-only and checks that `table` has chest's columns.
    pub fn open(path: impl AsRef<Path>, table: &str) -> Result<Self, Error> {
        let path = path.as_ref();
        sql::validate_identifier(table)?;
        let name = format!("sqlite:{}", path.display());
        if !path.is_file() {
            return Err(Error::backend(&name, "no such database file"));
        }
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let conn =
            Connection::open_with_flags(path, flags).map_err(|e| Error::backend(&name, e))?;
        let columns = table_columns(&conn, table).map_err(|e| Error::backend(&name, e))?;
        if columns.is_empty() {
            return Err(Error::backend(&name, format!("no table `{table}`")));
        }
        sql::check_columns(table, &columns)?;
        Ok(SqliteReader {
            conn,
            path: path.to_owned(),
            table: table.to_owned(),
            name,
            writer: None,
        })
    }

    /// The rows that pass `filter`, in `unique_id` order.
    pub fn query(&self, filter: &Filter) -> Result<Vec<StoredRecord>, Error> {
        let mut sql = format!(
            "SELECT unique_id, request_id, name, value, value_type, method, route, recorded_at \
             FROM \"{}\" WHERE 1=1",
            self.table
        );
        let mut params: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(id) = &filter.request_id {
            sql.push_str(" AND request_id = ?");
            params.push(id.clone().into());
        }
        if let Some(name) = &filter.name {
            sql.push_str(" AND name = ?");
            params.push(name.clone().into());
        }
        if let Some(after) = filter.after_id {
            sql.push_str(" AND unique_id > ?");
            params.push(after.into());
        }
        if let Some(until) = filter.until_id {
            sql.push_str(" AND unique_id <= ?");
            params.push(until.into());
        }
        sql.push_str(if filter.newest_first {
            " ORDER BY unique_id DESC"
        } else {
            " ORDER BY unique_id"
        });
        if let Some(limit) = filter.limit {
            sql.push_str(" LIMIT ?");
            params.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
        }
        let read = || -> rusqlite::Result<Vec<StoredRecord>> {
            let mut stmt = self.conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(params), |row| {
                Ok(StoredRecord::from(StoredRow {
                    unique_id: row.get(0)?,
                    request_id: row.get(1)?,
                    name: row.get(2)?,
                    value: row.get(3)?,
                    value_type: row.get(4)?,
                    method: row.get(5)?,
                    route: row.get(6)?,
                    recorded_at: row.get(7)?,
                }))
            })?;
            rows.collect()
        };
        read().map_err(|e| Error::backend(&self.name, e))
    }

    /// Count and distribution of each variable (or only of `name`), by name.
    pub fn summaries(&self, name: Option<&str>) -> Result<Vec<VarSummary>, Error> {
        let sql = format!(
            "SELECT name, value_num FROM \"{}\" WHERE ?1 IS NULL OR name = ?1",
            self.table
        );
        let read = || -> rusqlite::Result<Vec<VarSummary>> {
            let mut stmt = self.conn.prepare(&sql)?;
            let mut rows = stmt.query([name])?;
            let mut tally = Tally::default();
            while let Some(row) = rows.next()? {
                tally.add(row.get(0)?, row.get(1)?);
            }
            Ok(tally.summaries())
        };
        read().map_err(|e| Error::backend(&self.name, e))
    }

    /// Records and distributions per time bucket of `query`, per (name, route, method).
    pub fn series(&self, query: &SeriesQuery) -> Result<Vec<Series>, Error> {
        let (sql, bounds) = sql::series_select(Dialect::Sqlite, &self.table, query, "recorded_at");
        let read = || -> rusqlite::Result<Vec<Series>> {
            let mut stmt = self.conn.prepare(&sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(bounds))?;
            let mut builder = SeriesBuilder::new(query.clone());
            while let Some(row) = rows.next()? {
                let at: Option<String> = row.get(3)?;
                let micros = at.as_deref().and_then(parse_utc_micros).unwrap_or(0);
                let name: String = row.get(0)?;
                let (route, method): (Option<String>, Option<String>) = (row.get(1)?, row.get(2)?);
                let text: Option<String> = row.get(5)?;
                builder.add(
                    &name,
                    route.as_deref(),
                    method.as_deref().unwrap_or(""),
                    micros,
                    row.get(4)?,
                    text.as_deref(),
                );
            }
            Ok(builder.finish())
        };
        read().map_err(|e| Error::backend(&self.name, e))
    }

    /// The times of the oldest and newest records (through the `recorded_at` index).
    pub fn time_span(&self) -> Result<Option<(i64, i64)>, Error> {
        let [first, last] = sql::time_span_selects(Dialect::Sqlite, &self.table, "recorded_at");
        let at = |sql: &str| -> rusqlite::Result<Option<i64>> {
            let text: Option<Option<String>> =
                self.conn.query_row(sql, [], |row| row.get(0)).optional()?;
            Ok(text.flatten().as_deref().and_then(parse_utc_micros))
        };
        let read = || Ok::<_, rusqlite::Error>(at(&first)?.zip(at(&last)?));
        read().map_err(|e| Error::backend(&self.name, e))
    }

    /// A reader for [`Reader`](crate::read::Reader): in a mutex so that it is `Sync` and its
    /// reads can be awaited in spawned tasks.
    pub(crate) fn into_read_back(self) -> Box<dyn ReadBack> {
        Box::new(Shared(Mutex::new(self)))
    }

    fn count_after(&self, after: i64) -> Result<u64, Error> {
        let sql = Dialect::Sqlite.count_after(&self.table);
        self.conn
            .query_row(&sql, [after], |row| row.get(0))
            .map_err(|e| Error::backend(&self.name, e))
    }

    /// The read-write connection of the checkpoint, opened (and its table made) on first use.
    fn writer(&mut self) -> rusqlite::Result<&mut Connection> {
        if self.writer.is_none() {
            let conn = Connection::open(&self.path)?;
            conn.busy_timeout(Duration::from_secs(10))?;
            conn.execute_batch(&Dialect::Sqlite.create_checkpoint_table())?;
            conn.execute_batch(&Dialect::Sqlite.create_pending_table())?;
            self.writer = Some(conn);
        }
        Ok(self.writer.as_mut().expect("opened above"))
    }

    fn checkpoint(&mut self, consumer: &str) -> Result<Checkpoint, Error> {
        let table = self.table.clone();
        let read = |conn: &mut Connection| -> rusqlite::Result<StoredCheckpoint> {
            let keys = [table.as_str(), consumer];
            let last = conn
                .query_row(&Dialect::Sqlite.select_checkpoint(), keys, |row| row.get(0))
                .optional()?;
            let pending = conn
                .query_row(&Dialect::Sqlite.select_pending(), keys, |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?;
            Ok((last, pending))
        };
        let (last, pending) = self
            .writer()
            .and_then(read)
            .map_err(|e| Error::backend(&self.name, e))?;
        checkpoint_of(&self.name, last, pending)
    }

    fn begin(&mut self, consumer: &str, to: i64, id: BatchId) -> Result<(), Error> {
        let table = self.table.clone();
        let write = |conn: &mut Connection| {
            conn.execute(
                &Dialect::Sqlite.upsert_pending(),
                rusqlite::params![table, consumer, to, id.to_string()],
            )
        };
        self.writer()
            .and_then(write)
            .map(drop)
            .map_err(|e| Error::backend(&self.name, e))
    }

    fn advance(&mut self, consumer: &str, to: i64, delete: bool) -> Result<(), Error> {
        let table = self.table.clone();
        let write = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            tx.execute(
                &Dialect::Sqlite.upsert_checkpoint(),
                rusqlite::params![table, consumer, to],
            )?;
            tx.execute(
                &Dialect::Sqlite.delete_pending(),
                rusqlite::params![table, consumer],
            )?;
            if delete {
                tx.execute(&Dialect::Sqlite.delete_through(&table), [to])?;
            }
            tx.commit()
        };
        self.writer()
            .and_then(write)
            .map_err(|e| Error::backend(&self.name, e))
    }
}

/// A checkpoint as its tables hold it: the last id, and the pending batch's last id and id.
type StoredCheckpoint = (Option<i64>, Option<(i64, String)>);

/// A [`SqliteReader`] shared by tasks: SQLite reads on the calling thread, one at a time.
struct Shared(Mutex<SqliteReader>);

impl Shared {
    /// The reader. A panic in another read leaves nothing half-done: reads change nothing, and a
    /// checkpoint's transaction rolls back when dropped.
    fn lock(&self) -> std::sync::MutexGuard<'_, SqliteReader> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ReadBack for Shared {
    fn query<'a>(&'a self, filter: &'a Filter) -> BoxFuture<'a, Result<Vec<StoredRecord>, Error>> {
        let result = self.lock().query(filter);
        Box::pin(async move { result })
    }

    fn summaries<'a>(
        &'a self,
        name: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<VarSummary>, Error>> {
        let result = self.lock().summaries(name);
        Box::pin(async move { result })
    }

    fn series<'a>(&'a self, query: &'a SeriesQuery) -> BoxFuture<'a, Result<Vec<Series>, Error>> {
        let result = self.lock().series(query);
        Box::pin(async move { result })
    }

    fn time_span(&self) -> BoxFuture<'_, Result<Option<(i64, i64)>, Error>> {
        let result = self.lock().time_span();
        Box::pin(async move { result })
    }

    fn count_after(&self, after_id: i64) -> BoxFuture<'_, Result<u64, Error>> {
        let result = self.lock().count_after(after_id);
        Box::pin(async move { result })
    }

    fn checkpoint<'a>(&'a self, consumer: &'a str) -> BoxFuture<'a, Result<Checkpoint, Error>> {
        let result = self.lock().checkpoint(consumer);
        Box::pin(async move { result })
    }

    fn begin<'a>(
        &'a self,
        consumer: &'a str,
        to: i64,
        id: BatchId,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let result = self.lock().begin(consumer, to, id);
        Box::pin(async move { result })
    }

    fn advance<'a>(
        &'a self,
        consumer: &'a str,
        to: i64,
        delete: bool,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let result = self.lock().advance(consumer, to, delete);
        Box::pin(async move { result })
    }

    /// Nothing to do: the file is closed when the reader is dropped.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.lock().fmt(f)
    }
}

/// The column names of `table` (validated), empty when it does not exist.
pub(crate) fn table_columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info(\"{table}\")"))?;
    let names = stmt.query_map([], |row| row.get::<_, String>(1))?;
    names.collect()
}

impl std::fmt::Debug for SqliteReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReader")
            .field("name", &self.name)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}
