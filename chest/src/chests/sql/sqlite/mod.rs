//! The embedded default: SQLite through rusqlite (bundled SQLite).
//!
//! One writer thread owns the connection (WAL journal, a busy timeout, `synchronous=NORMAL`:
//! durable across a crash of the process, not of the machine). Each write is one transaction of
//! prepared multi-row inserts; writes that arrive while the thread is busy are committed together
//! (group commit), and if such a group fails each write is retried alone so one bad write cannot
//! fail the others.
//!
//! ```no_run
//! use chest::chests::sqlite::SqliteChest;
//!
//! # fn main() -> Result<(), chest::Error> {
//! // Flask-Chest's table name; the default is `chest`.
//! let chest = SqliteChest::builder("chest.db").table("flask_chest").build()?;
//! # Ok(()) }
//! ```
//!
//! The table:
//!
//! | column | type | |
//! |---|---|---|
//! | `unique_id` | INTEGER PRIMARY KEY AUTOINCREMENT | Flask-Chest |
//! | `request_id` | TEXT | Flask-Chest; indexed |
//! | `name` | TEXT | Flask-Chest |
//! | `value` | TEXT | Flask-Chest: the value's text form |
//! | `value_num` | REAL | the number for int, float (finite) and bool (0/1); else NULL |
//! | `value_type` | TEXT | `int`, `float`, `bool`, `text` or `json` |
//! | `method` | TEXT | HTTP method |
//! | `route` | TEXT | route template, NULL when none matched |
//! | `recorded_at` | TEXT | UTC, RFC 3339 with microseconds |
//!
//! NaN and ±Inf are stored as text (`NaN`, `inf`, `-inf`) with a NULL `value_num`.
//!
//! # Cost
//! The writer thread spends about 7,900 instructions a row (`bench/instructions.sh`), of which
//! each index takes ~2,200; the caller spends ~1,000 more encoding the rows (times and values
//! formatted, texts copied into one buffer) so that the writer thread neither formats nor drops
//! records. SQLite reads the bound texts in that buffer without copying them (`SQLITE_STATIC`).
//! The bundled SQLite keeps memory statistics under a global mutex unless it is built with
//! `LIBSQLITE3_FLAGS="-DSQLITE_DEFAULT_MEMSTATUS=0"` (set in a service's `.cargo/config.toml`
//! `[env]`, as this repository does): about a tenth of those instructions.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, TransactionBehavior};
use tokio::sync::oneshot;

mod insert;
mod read;
mod rows;

use insert::Inserts;
use read::table_columns;
pub use read::SqliteReader;
use rows::Rows;

use super::{self as sql, Dialect};
use crate::chests::scheme::{Opening, Scheme};
use crate::stored::ReadBack;
use crate::url::ChestUrl;
use crate::{BatchId, BoxFuture, Chest, ChestError, Error, Record, Written};

/// `sqlite://PATH[?table=T]` (`sqlite:///abs/path.db` for an absolute path): written by a
/// [`SqliteChest`], read back by a [`SqliteReader`].
pub(crate) const SCHEME: Scheme = Scheme {
    names: &["sqlite"],
    open: open_url,
    read: Some(read_url),
};

fn open_url(url: &ChestUrl<'_>) -> Result<Opening<Arc<dyn Chest>>, Error> {
    let builder = SqliteChestBuilder::from_parsed(url)?;
    Ok(Box::pin(async move {
        Ok(Arc::new(builder.build()?) as Arc<dyn Chest>)
    }))
}

fn read_url(url: &ChestUrl<'_>) -> Result<Opening<Box<dyn ReadBack>>, Error> {
    let source = SqliteChestBuilder::from_parsed(url)?;
    let reader = SqliteReader::open(source.path(), source.table_name())?;
    Ok(Box::pin(async move { Ok(reader.into_read_back()) }))
}

/// Rows per prepared insert: 64 × 8 bound values, well under SQLite's limit of 32,766.
const CHUNK_ROWS: usize = 64;
/// The most rows the writer thread commits in one group.
const MAX_GROUP_ROWS: usize = 20_000;

/// A chest that writes to a SQLite file. Clones share one writer thread, which ends when the last
/// clone is dropped (after finishing the writes already sent).
#[derive(Clone)]
pub struct SqliteChest {
    name: Arc<str>,
    jobs: mpsc::Sender<Job>,
}

struct Job {
    rows: Rows,
    /// The batch's identity, for a [`Chest::write_batch`]: stored in the same transaction as the
    /// records, and a job whose id is there already stores nothing.
    batch: Option<BatchId>,
    done: oneshot::Sender<rusqlite::Result<Written>>,
}

/// Settings of a [`SqliteChest`].
#[derive(Debug, Clone)]
pub struct SqliteChestBuilder {
    path: PathBuf,
    table: String,
    busy_timeout: Duration,
}

impl SqliteChest {
    /// Opens (or creates) the database at `path` with the default settings.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::builder(path).build()
    }

    /// Settings for the database at `path`: table `chest`, busy timeout 5 s.
    pub fn builder(path: impl AsRef<Path>) -> SqliteChestBuilder {
        SqliteChestBuilder {
            path: path.as_ref().to_owned(),
            table: sql::DEFAULT_TABLE.to_owned(),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

impl SqliteChestBuilder {
    /// Settings from a `sqlite://PATH[?table=T]` URL (`sqlite:///abs/path.db` for an absolute
    /// path), as [`chest::open`](crate::open) reads it.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        let parsed = ChestUrl::parse(url)?;
        if parsed.scheme != "sqlite" {
            return Err(parsed.invalid("scheme", "expected `sqlite://`".into()));
        }
        Self::from_parsed(&parsed)
    }

    fn from_parsed(url: &ChestUrl<'_>) -> Result<Self, Error> {
        if url.rest.is_empty() {
            return Err(url.invalid("path", "no database file given".into()));
        }
        let mut builder = SqliteChest::builder(url.rest);
        if let Some(table) = url.param("table") {
            builder = builder.table(table);
        }
        url.check_all_used()?;
        Ok(builder)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The table name (not yet validated: [`build`](Self::build) does that).
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// The table to write (default `chest`; `flask_chest` for Flask-Chest's). It must match
    /// `[A-Za-z_][A-Za-z0-9_]{0,63}`.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// How long a write waits for another connection's lock before failing (default 5 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Opens the database, creates the table and its index if missing (or checks an existing
    /// table's columns), and starts the writer thread.
    pub fn build(self) -> Result<SqliteChest, Error> {
        sql::validate_identifier(&self.table)?;
        let name = format!("sqlite:{}", self.path.display());
        let conn =
            open(&self.path, &self.table, self.busy_timeout).map_err(|e| e.into_error(&name))?;
        let (jobs, queue) = mpsc::channel();
        let writer = Writer {
            inserts: Inserts::new(
                (0..=CHUNK_ROWS)
                    .map(|rows| Dialect::Sqlite.insert(&self.table, rows))
                    .collect(),
            ),
            conn,
            claim: Dialect::Sqlite.claim_batch(&self.table),
            prune: Dialect::Sqlite.prune_batches(&self.table),
            pruned_at: None,
        };
        std::thread::Builder::new()
            .name("chest-sqlite".into())
            .spawn(move || writer.run(queue))
            .map_err(|e| Error::backend(&name, e))?;
        Ok(SqliteChest {
            name: Arc::from(name),
            jobs,
        })
    }
}

enum OpenError {
    Sqlite(rusqlite::Error),
    Schema(Error),
}

impl OpenError {
    fn into_error(self, chest: &str) -> Error {
        match self {
            OpenError::Sqlite(e) => Error::backend(chest, e),
            OpenError::Schema(e) => e,
        }
    }
}

impl From<rusqlite::Error> for OpenError {
    fn from(e: rusqlite::Error) -> Self {
        OpenError::Sqlite(e)
    }
}

fn open(path: &Path, table: &str, busy_timeout: Duration) -> Result<Connection, OpenError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // 64 MiB of page cache: the `request_id` index takes random (UUID) keys, and once it outgrows
    // the default 2 MiB cache every insert reads pages back from the file.
    conn.pragma_update(None, "cache_size", -65_536)?;
    let columns = table_columns(&conn, table)?;
    if columns.is_empty() {
        conn.execute_batch(&Dialect::Sqlite.create_table(table))?;
    } else {
        sql::check_columns(table, &columns).map_err(OpenError::Schema)?;
    }
    for create in Dialect::Sqlite.create_indexes(table) {
        conn.execute_batch(&create)?;
    }
    for create in Dialect::Sqlite.create_batches_table(table) {
        conn.execute_batch(&create)?;
    }
    Ok(conn)
}

struct Writer {
    /// Declared before `conn`, so dropped (finalized) before it closes.
    inserts: Inserts,
    conn: Connection,
    /// Records a batch id, unless it is there.
    claim: String,
    /// Forgets old batch ids.
    prune: String,
    /// When old batch ids were last forgotten.
    pruned_at: Option<std::time::Instant>,
}

impl Writer {
    fn run(mut self, queue: mpsc::Receiver<Job>) {
        while let Ok(first) = queue.recv() {
            let mut rows = first.rows.len();
            let mut group = vec![first];
            while rows < MAX_GROUP_ROWS {
                match queue.try_recv() {
                    Ok(job) => {
                        rows += job.rows.len();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
        tracing::debug!(target: "chest", "sqlite writer thread stopped");
    }

    fn commit_group(&mut self, group: Vec<Job>) {
        if group.len() > 1 {
            if let Ok(outcomes) = self.commit(&group) {
                for (job, outcome) in group.into_iter().zip(outcomes) {
                    let _ = job.done.send(Ok(outcome));
                }
                return;
            }
        }
        // Alone, so that one bad write fails only itself.
        for job in group {
            let result = self.commit(std::slice::from_ref(&job)).map(|o| o[0]);
            let _ = job.done.send(result);
        }
    }

    /// Stores `jobs` in one transaction: each job's batch id (if it has one) and its records,
    /// unless its id was stored before. What each job did, in order.
    fn commit(&mut self, jobs: &[Job]) -> rusqlite::Result<Vec<Written>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = unix_seconds(std::time::SystemTime::now());
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut fresh_jobs = Vec::with_capacity(jobs.len());
        for job in jobs {
            let fresh = match job.batch {
                None => true,
                Some(id) => {
                    let mut claim = tx.prepare_cached(&self.claim)?;
                    claim.execute(rusqlite::params![id.to_string(), now])? == 1
                }
            };
            if fresh {
                fresh_jobs.push(&job.rows);
                outcomes.push(Written::Stored);
            } else {
                outcomes.push(Written::AlreadyStored);
            }
        }
        self.inserts.insert(&tx, &fresh_jobs)?;
        let prune_due = self
            .pruned_at
            .is_none_or(|at| at.elapsed() >= sql::PRUNE_EVERY);
        if prune_due {
            let before = now - sql::BATCH_ID_RETENTION.as_secs() as i64;
            tx.execute(&self.prune, [before])?;
        }
        tx.commit()?;
        if prune_due {
            self.pruned_at = Some(std::time::Instant::now());
        }
        Ok(outcomes)
    }
}

/// Seconds since the Unix epoch (negative before it).
fn unix_seconds(at: std::time::SystemTime) -> i64 {
    match at.duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => after.as_secs() as i64,
        Err(before) => -(before.duration().as_secs() as i64),
    }
}

/// Whether waiting can fix a SQLite error: locks, a full disk, I/O and permission trouble can
/// clear; constraint, schema and size errors cannot.
fn classify(chest: &str, error: rusqlite::Error) -> ChestError {
    let transient = matches!(
        error.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::ReadOnly
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory
                | ErrorCode::PermissionDenied
        )
    );
    if transient {
        ChestError::retryable(chest, error)
    } else {
        ChestError::permanent(chest, error)
    }
}

impl SqliteChest {
    /// Hands `records` to the writer thread and waits for its answer.
    async fn submit(
        &self,
        records: &[Record],
        batch: Option<BatchId>,
    ) -> Result<Written, ChestError> {
        let (done, result) = oneshot::channel();
        let job = Job {
            rows: Rows::new(records),
            batch,
            done,
        };
        let stopped = || ChestError::retryable(&*self.name, "the SQLite writer thread stopped");
        self.jobs.send(job).map_err(|_| stopped())?;
        match result.await {
            Ok(Ok(written)) => Ok(written),
            Ok(Err(e)) => Err(classify(&self.name, e)),
            Err(_) => Err(stopped()),
        }
    }
}

impl Chest for SqliteChest {
    fn name(&self) -> &str {
        &self.name
    }

    fn write<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), ChestError>> {
        Box::pin(async move {
            if records.is_empty() {
                return Ok(());
            }
            self.submit(records, None).await.map(|_| ())
        })
    }

    /// Stores the batch's id in `<table>_batches` in the same transaction as its records (ids are
    /// kept for 24 hours); a batch whose id is there is
    /// not stored again.
    fn write_batch<'a>(
        &'a self,
        id: BatchId,
        records: &'a [Record],
    ) -> BoxFuture<'a, Result<Written, ChestError>> {
        Box::pin(self.submit(records, Some(id)))
    }
}

impl std::fmt::Debug for SqliteChest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteChest")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(path: &Path, sql: &str) -> i64 {
        let conn = Connection::open(path).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// A batch id is stored with the batch's rows; its second write stores nothing, also when it
    /// shares a group commit with the first. Repeated request ids in other batches are stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_are_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let chest = SqliteChest::builder(&path).table("t").build().unwrap();
        let records: Vec<Record> = (0..10)
            .map(|i| Record::new("same-id", format!("v{i}"), i, "GET", None))
            .collect();
        let id = BatchId::new();
        assert_eq!(
            chest.write_batch(id, &records).await.unwrap(),
            Written::Stored
        );
        assert_eq!(
            chest.write_batch(id, &records).await.unwrap(),
            Written::AlreadyStored
        );
        assert_eq!(count(&path, "SELECT COUNT(*) FROM t"), 10);
        // Many writes at once are committed in groups: each id still counts once.
        let ids: Vec<BatchId> = (0..20).map(|_| BatchId::new()).collect();
        let writes = ids
            .iter()
            .chain(&ids)
            .map(|id| chest.write_batch(*id, &records));
        let outcomes = futures_util::future::join_all(writes).await;
        let stored = outcomes
            .iter()
            .filter(|o| *o.as_ref().unwrap() == Written::Stored)
            .count();
        assert_eq!(stored, 20);
        chest.write(&records).await.unwrap();
        assert_eq!(count(&path, "SELECT COUNT(*) FROM t"), 220);
        assert_eq!(count(&path, "SELECT COUNT(*) FROM t_batches"), 21);
        assert_eq!(
            count(
                &path,
                "SELECT COUNT(*) FROM (SELECT unique_id, request_id, name, value FROM t)"
            ),
            220
        );
    }

    /// Every column of every row comes back as written across statements of 64, 64 and 2 rows,
    /// with a 1 MiB text, non-ASCII text, NaN and no route; an insert SQLite refuses fails its
    /// own write with SQLite's message, and the next writes are whole (no binding outlives its
    /// write's rows).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_of_several_statements_come_back_and_a_refused_insert_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.db");
        let chest = SqliteChest::builder(&path).table("t").build().unwrap();
        let big = "x".repeat(1 << 20);
        let records: Vec<Record> = (0..130)
            .map(|i| match i {
                0 => Record::new("r0", "big", big.as_str(), "POST", Some("/a/{id}")),
                1 => Record::new("r1", "ü", "naïve ✓", "GET", None),
                2 => Record::new("r2", "nan", f64::NAN, "GET", Some("/b")),
                i => Record::new(format!("r{i}"), "n", i, "PUT", Some("/c")),
            })
            .collect();
        chest.write(&records).await.unwrap();
        let read = |sql: &str| -> Vec<rows::ExpectedColumns> {
            let conn = Connection::open(&path).unwrap();
            let mut stmt = conn.prepare(sql).unwrap();
            stmt.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
        };
        let got = read(
            "SELECT request_id, name, value, value_num, value_type, method, route FROM t \
             ORDER BY unique_id",
        );
        let expected: Vec<_> = records.iter().map(rows::expected_columns).collect();
        assert_eq!(got.len(), 130);
        // Compared as text: NaN is not equal to itself.
        assert_eq!(format!("{got:?}"), format!("{expected:?}"));
        assert_eq!(got[0].2.len(), 1 << 20);

        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON t WHEN NEW.name = 'boom' \
             BEGIN SELECT RAISE(ABORT, 'boom is refused'); END;",
        )
        .unwrap();
        let refused: Vec<Record> = (0..70)
            .map(|i| Record::new("bad", if i == 66 { "boom" } else { "ok" }, i, "GET", None))
            .collect();
        let fine: Vec<Record> = (0..70)
            .map(|i| Record::new("good", "ok", i, "GET", None))
            .collect();
        let (bad, good) = tokio::join!(chest.write(&refused), chest.write(&fine));
        let error = bad.unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::Permanent);
        assert!(error.to_string().contains("boom is refused"), "{error}");
        good.unwrap();
        chest.write(&fine).await.unwrap();
        assert_eq!(
            count(&path, "SELECT COUNT(*) FROM t WHERE request_id = 'bad'"),
            0
        );
        assert_eq!(
            count(&path, "SELECT COUNT(*) FROM t WHERE request_id = 'good'"),
            140
        );
        let good = read(
            "SELECT request_id, name, value, value_num, value_type, method, route FROM t \
             WHERE request_id = 'good' ORDER BY unique_id",
        );
        for (i, row) in good.iter().enumerate() {
            assert_eq!(row.2, (i % 70).to_string());
        }
    }
}
