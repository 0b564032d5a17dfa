//! The sqlx code shared by the MySQL and PostgreSQL chests, one job a file:
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | the pool, schema preparation, writes in one transaction |
//! | `settings.rs` | settings, URLs, the redaction of passwords |
//! | `insert.rs` | chunked multi-row inserts |
//! | `read.rs` | reading the table back, `chest export`'s checkpoint |
//! | `errors.rs` | error classification |
//! | `tcp_nodelay.rs` | `TCP_NODELAY` on the pool's connections |
//! | `public.rs` | the public chest types, made by [`sqlx_chest!`] |
//!
//! What differs between the two servers is a [`Backend`].

mod errors;
mod insert;
pub(crate) mod public;
mod read;
mod settings;
mod tcp_nodelay;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use sqlx::error::DatabaseError;
use sqlx::pool::{Pool, PoolOptions};
use sqlx::{
    Arguments, AssertSqlSafe, Connection, Database, Encode, Executor, FromRow, IntoArguments, Type,
};
use tokio::sync::OnceCell;

pub(crate) use self::insert::utc_micros;
use self::insert::{statement_row_counts, statement_sizes, MAX_STATEMENT_BYTES};
pub(crate) use self::settings::{Secrets, Settings};
use super::{self as sql, Dialect};
use crate::stored::StoredRow;
use crate::{BatchId, BoxError, ChestError, Error, ErrorKind, Record, Written};

/// The connect options of a sqlx database.
pub(crate) type Options<DB> = <<DB as Database>::Connection as Connection>::Options;

/// An insert statement and the values it binds.
type Statement<DB> = (Arc<str>, <DB as Database>::Arguments);

/// Room left in a MySQL packet for the statement text and the encoding of the values.
const PACKET_HEADROOM: usize = 64 << 10;

/// What differs between the servers.
pub(crate) trait Backend: Send + Sync + 'static {
    /// The sqlx driver.
    type Db: Database;
    /// The SQL flavour.
    const DIALECT: Dialect;
    /// The URL scheme used in the chest's name.
    const SCHEME: &'static str;
    /// The most rows one insert statement carries (a power of two).
    const MAX_STATEMENT_ROWS: usize;
    /// Whether one insert statement serves every row count (else the text depends on the count).
    const ANY_ROW_COUNT: bool;
    /// Returns the column names of the table bound as the only parameter, in the connection's
    /// current database (MySQL) or schema (PostgreSQL).
    const COLUMNS_SQL: &'static str;
    /// Returns the largest packet the server accepts (as a signed 64-bit integer), when it has
    /// such a limit.
    const MAX_PACKET_SQL: Option<&'static str>;
    /// Run on every new connection.
    const SESSION_SQL: Option<&'static str>;
    /// `recorded_at` as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC), the text form reads parse.
    const RECORDED_AT_TEXT: &'static str;
    /// Put before a text parameter so that comparing a column with it is byte for byte (not
    /// case- or trailing-space-insensitive, as MySQL's collations are).
    const EXACT_TEXT: &'static str;

    /// Refuses a (valid) table name the server cannot keep as is.
    fn check_table(_table: &str) -> Result<(), Error> {
        Ok(())
    }
    /// Applies chest's connection settings (no statement logging, …) to parsed options.
    fn configure(options: Options<Self::Db>) -> Options<Self::Db>;
    /// Where the options point, for the chest's name.
    fn endpoint(options: &Options<Self::Db>) -> Endpoint<'_>;
    /// The insert of `rows` rows (any number when [`ANY_ROW_COUNT`](Self::ANY_ROW_COUNT)) into
    /// `table` (validated).
    fn insert_sql(table: &str, rows: usize) -> String;
    /// Binds `records` as the rows of one insert, in [`sql::INSERT_COLUMNS`] order. A record the
    /// server cannot take refuses them all: its index in `records`, and why.
    fn bind_rows(
        args: &mut <Self::Db as Database>::Arguments,
        records: &[Record],
    ) -> Result<(), (usize, BoxError)>;
    /// Whether retrying can help after this error from the server.
    fn database_error_kind(error: &dyn DatabaseError) -> ErrorKind;
    /// Whether this error says the index being created exists already.
    fn index_exists(error: &dyn DatabaseError) -> bool;
    /// The rows a statement changed.
    fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;
    /// Undoes what [`bind_rows`](Self::bind_rows) did to a value to store it.
    fn unescape(_row: &mut StoredRow) {}
}

/// The parts of a connection URL that go into a chest's name: never the password.
pub(crate) struct Endpoint<'a> {
    pub user: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub database: Option<&'a str>,
}

/// Limits learnt from the server when the table is prepared.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Bytes of values per statement.
    statement_bytes: usize,
    /// The largest record the server can take, if it has a limit.
    record_bytes: Option<usize>,
}

/// Why preparing the table failed.
enum PrepareError {
    Sql(sqlx::Error),
    Schema(Error),
}

impl From<sqlx::Error> for PrepareError {
    fn from(e: sqlx::Error) -> Self {
        PrepareError::Sql(e)
    }
}

/// A pooled chest on a sqlx driver: the body of [`MySqlChest`](super::mysql::MySqlChest) and
/// [`PostgresChest`](super::postgres::PostgresChest), and, opened with
/// [`open_existing`](Self::open_existing), the reader of their tables.
pub(crate) struct SqlxChest<B: Backend> {
    name: Arc<str>,
    table: String,
    pool: Pool<B::Db>,
    /// To diagnose a pool timeout with a connection attempt of its own.
    options: Options<B::Db>,
    /// Insert statements by row count (one under 0 when one serves every count).
    inserts: BTreeMap<usize, Arc<str>>,
    /// Set once the table exists with the right columns.
    limits: OnceCell<Limits>,
    secrets: Secrets,
    /// When batch ids older than the retention were last deleted.
    pruned_at: std::sync::Mutex<Option<std::time::Instant>>,
}

impl<B: Backend> SqlxChest<B>
where
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    for<'r> (String,): FromRow<'r, <B::Db as Database>::Row>,
    for<'r> (i64,): FromRow<'r, <B::Db as Database>::Row>,
    for<'q> &'q str: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> i64: Encode<'q, B::Db> + Type<B::Db>,
{
    /// Checks the settings and makes the pool without connecting: the table is prepared by the
    /// first write. Needs a Tokio runtime (the pool's maintenance task runs on it).
    pub fn new(settings: Settings) -> Result<Self, Error> {
        let secrets = Secrets::of_url(&settings.url);
        sql::validate_identifier(&settings.table)?;
        B::check_table(&settings.table)?;
        if settings.max_connections == 0 {
            return Err(Error::Config("max_connections must be at least 1".into()));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Config(format!(
                "a {} chest must be built inside a Tokio runtime",
                B::SCHEME
            )));
        }
        let options = Options::<B::Db>::from_str(&settings.url).map_err(|e| {
            Error::InvalidUrl {
                url: secrets.redact(&settings.url),
                // sqlx does not say which part it refused; its message does.
                part: "url",
                reason: secrets.redact(&e.to_string()),
            }
        })?;
        let options = B::configure(options);
        let name = chest_name::<B>(&options);
        let port = B::endpoint(&options).port;
        let pool_options = PoolOptions::<B::Db>::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.connect_timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    tcp_nodelay::set_for_peer_port(port);
                    if let Some(session) = B::SESSION_SQL {
                        sqlx::query(session).execute(conn).await?;
                    }
                    Ok(())
                })
            });
        let pool = pool_options.connect_lazy_with(options.clone());
        let inserts = if B::ANY_ROW_COUNT {
            BTreeMap::from([(0, Arc::from(B::insert_sql(&settings.table, 0)))])
        } else {
            statement_row_counts(B::MAX_STATEMENT_ROWS)
                .map(|rows| (rows, Arc::from(B::insert_sql(&settings.table, rows))))
                .collect()
        };
        Ok(SqlxChest {
            name: Arc::from(name),
            table: settings.table,
            pool,
            options,
            inserts,
            limits: OnceCell::new(),
            secrets,
            pruned_at: Default::default(),
        })
    }

    /// [`new`](Self::new), then connects and prepares the table now.
    pub async fn connect(settings: Settings) -> Result<Self, Error> {
        let chest = Self::new(settings)?;
        match chest.prepared().await {
            Ok(_) => Ok(chest),
            Err(PrepareError::Schema(e)) => Err(e),
            Err(PrepareError::Sql(e)) => Err(chest.backend_error(e).await),
        }
    }

    /// [`new`](Self::new), then connects and checks that the table exists with chest's columns,
    /// changing nothing: to read the table with [`query`](Self::query) and
    /// [`summaries`](Self::summaries).
    pub async fn open_existing(settings: Settings) -> Result<Self, Error> {
        let chest = Self::new(settings)?;
        let columns = match chest.columns().await {
            Ok(columns) => columns,
            Err(e) => return Err(chest.backend_error(e).await),
        };
        if columns.is_empty() {
            let missing = format!("no table `{}`", chest.table);
            return Err(Error::backend(&*chest.name, missing));
        }
        sql::check_columns(&chest.table, &columns)?;
        Ok(chest)
    }

    /// Writes `records` in one transaction; with a batch id, the id too (in the batches table),
    /// and nothing if the id is there already.
    pub async fn write(
        &self,
        records: &[Record],
        batch: Option<BatchId>,
    ) -> Result<Written, ChestError> {
        if records.is_empty() && batch.is_none() {
            return Ok(Written::Stored);
        }
        let limits = match self.prepared().await {
            Ok(limits) => limits,
            Err(PrepareError::Schema(e)) => return Err(ChestError::permanent(&*self.name, e)),
            Err(PrepareError::Sql(e)) => return Err(self.error(e).await),
        };
        // Encoded before a connection is taken: a record the server cannot take fails the write
        // without a round trip, and the connection is held only for the I/O.
        let statements = self.encode(records, limits)?;
        let mut tx = match self.pool.begin().await {
            Ok(tx) => tx,
            Err(e) => return Err(self.error(e).await),
        };
        let now = unix_seconds();
        if let Some(id) = batch {
            let id = id.to_string();
            let claim = sqlx::query(AssertSqlSafe(B::DIALECT.claim_batch(&self.table)))
                .bind(id.as_str())
                .bind(now);
            match claim.execute(&mut *tx).await {
                // Stored by an earlier attempt: the transaction rolls back when dropped. A
                // concurrent attempt with the same id waits here for the first one's end.
                Ok(result) if B::rows_affected(&result) == 0 => return Ok(Written::AlreadyStored),
                Ok(_) => {}
                Err(e) => return Err(self.error(e).await),
            }
        }
        for (sql, args) in statements {
            let insert = sqlx::query_with(AssertSqlSafe(sql), args);
            if let Err(e) = insert.execute(&mut *tx).await {
                return Err(self.error(e).await);
            }
        }
        if let Err(e) = tx.commit().await {
            return Err(self.error(e).await);
        }
        self.prune_batches(now).await;
        Ok(Written::Stored)
    }

    /// Forgets batch ids older than [`sql::BATCH_ID_RETENTION`], at most every
    /// [`sql::PRUNE_EVERY`]. Best effort: a failure is logged, and tried again next time.
    async fn prune_batches(&self, now: i64) {
        let due = {
            let mut last = self.pruned_at.lock().unwrap_or_else(|e| e.into_inner());
            let due = last.is_none_or(|at| at.elapsed() >= sql::PRUNE_EVERY);
            if due {
                *last = Some(std::time::Instant::now());
            }
            due
        };
        if !due {
            return;
        }
        let before = now - sql::BATCH_ID_RETENTION.as_secs() as i64;
        let prune = sqlx::query(AssertSqlSafe(B::DIALECT.prune_batches(&self.table))).bind(before);
        if let Err(error) = prune.execute(&self.pool).await {
            let error = self.secrets.redact(&error.to_string());
            tracing::warn!(target: "chest", chest = %self.name, %error, "could not forget old batch ids");
        }
    }

    fn encode(
        &self,
        records: &[Record],
        limits: Limits,
    ) -> Result<Vec<Statement<B::Db>>, ChestError> {
        let refuse = |index: usize, record: &Record, cause: &dyn fmt::Display| {
            ChestError::permanent(
                &*self.name,
                format!("record {index} (`{}`) refused: {cause}", record.name),
            )
        };
        if let Some(largest) = limits.record_bytes {
            if let Some((index, record)) = records
                .iter()
                .enumerate()
                .find(|(_, r)| r.approx_size() > largest)
            {
                let cause = format!(
                    "about {} bytes, more than the server accepts in one packet ({largest})",
                    record.approx_size()
                );
                return Err(refuse(index, record, &cause));
            }
        }
        let mut start = 0;
        let mut statements = Vec::new();
        let sizes = statement_sizes(
            records,
            B::MAX_STATEMENT_ROWS,
            limits.statement_bytes,
            !B::ANY_ROW_COUNT,
        );
        for rows in sizes {
            let chunk = &records[start..start + rows];
            let mut args = <B::Db as Database>::Arguments::default();
            args.reserve(
                rows * sql::INSERT_COLUMNS.len(),
                chunk.iter().map(Record::approx_size).sum(),
            );
            B::bind_rows(&mut args, chunk)
                .map_err(|(offset, cause)| refuse(start + offset, &chunk[offset], &cause))?;
            let key = if B::ANY_ROW_COUNT { 0 } else { rows };
            statements.push((self.inserts[&key].clone(), args));
            start += rows;
        }
        Ok(statements)
    }

    /// The limits, once the table exists with chest's columns (made if missing).
    async fn prepared(&self) -> Result<Limits, PrepareError> {
        self.limits
            .get_or_try_init(|| self.prepare())
            .await
            .copied()
    }

    async fn prepare(&self) -> Result<Limits, PrepareError> {
        let columns = self.columns().await?;
        if columns.is_empty() {
            let create = B::DIALECT.create_table(&self.table);
            if let Err(e) = sqlx::query(AssertSqlSafe(create)).execute(&self.pool).await {
                // Another process may have made it meanwhile (PostgreSQL's `IF NOT EXISTS` can
                // still fail in that race): then use theirs.
                let again = self.columns().await?;
                if again.is_empty() {
                    return Err(e.into());
                }
                sql::check_columns(&self.table, &again).map_err(PrepareError::Schema)?;
            } else {
                tracing::info!(target: "chest", chest = %self.name, table = %self.table, "created table");
            }
        } else {
            sql::check_columns(&self.table, &columns).map_err(PrepareError::Schema)?;
        }
        for create in B::DIALECT.create_batches_table(&self.table) {
            sqlx::query(AssertSqlSafe(create))
                .execute(&self.pool)
                .await?;
        }
        for index in B::DIALECT.create_indexes(&self.table) {
            match sqlx::query(AssertSqlSafe(index)).execute(&self.pool).await {
                Ok(_) => {}
                Err(sqlx::Error::Database(e)) if B::index_exists(&*e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut limits = Limits {
            statement_bytes: MAX_STATEMENT_BYTES,
            record_bytes: None,
        };
        if let Some(query) = B::MAX_PACKET_SQL {
            let (packet,): (i64,) = sqlx::query_as(query).fetch_one(&self.pool).await?;
            let packet = usize::try_from(packet).unwrap_or(usize::MAX);
            let room = packet.saturating_sub(PACKET_HEADROOM).max(1);
            limits.statement_bytes = limits.statement_bytes.min(room / 2).max(1);
            limits.record_bytes = Some(room);
        }
        Ok(limits)
    }

    async fn columns(&self) -> Result<Vec<String>, sqlx::Error> {
        let rows: Vec<(String,)> = sqlx::query_as(B::COLUMNS_SQL)
            .bind(self.table.as_str())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|(c,)| c).collect())
    }
}

impl<B: Backend> fmt::Debug for SqlxChest<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlxChest")
            .field("name", &self.name)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// `scheme://user@host:port/database`: never the password.
fn chest_name<B: Backend>(options: &Options<B::Db>) -> String {
    let Endpoint {
        user,
        host,
        port,
        database,
    } = B::endpoint(options);
    format!(
        "{}://{user}@{host}:{port}/{}",
        B::SCHEME,
        database.unwrap_or("")
    )
}

/// Seconds since the Unix epoch, now.
fn unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
