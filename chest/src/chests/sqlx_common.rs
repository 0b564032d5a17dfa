//! The sqlx glue shared by the MySQL and PostgreSQL chests: settings, the pool, schema
//! preparation, chunked multi-row inserts in one transaction per write, reads, error
//! classification and the redaction of passwords. What differs between the two servers is a
//! [`Backend`]; their public chest types are made by [`sqlx_chest!`].

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use sqlx::error::DatabaseError;
use sqlx::pool::{Pool, PoolOptions};
use sqlx::{
    Arguments, AssertSqlSafe, ConnectOptions, Connection, Database, Encode, Executor, FromRow,
    IntoArguments, Type,
};
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use super::sql::{self, Dialect};
use crate::read::{Filter, StoredRecord, StoredRow, Tally, VarSummary};
use crate::{BoxError, ChestError, Error, ErrorKind, Record};

/// The connect options of a sqlx database.
pub(crate) type Options<DB> = <<DB as Database>::Connection as Connection>::Options;

/// An insert statement and the values it binds.
type Statement<DB> = (Arc<str>, <DB as Database>::Arguments);

/// A row as a read selects it: `unique_id`, `request_id`, `name`, `value`, `value_type`, `method`,
/// `route` and `recorded_at` as text.
type ReadRow = (
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// With inserts whose text depends on their row count, counts up to this get a statement of their
/// own size and larger counts are split into powers of two (64, 128, …). So a connection prepares
/// few distinct inserts (38 for 2,048 rows at most), which all stay in sqlx's per-connection
/// statement cache (100), whatever the sizes of the writes.
const EXACT_STATEMENT_ROWS: usize = 32;
/// A statement carries at most this many bytes of values (unless one row alone is larger), to keep
/// packets and server memory bounded.
const MAX_STATEMENT_BYTES: usize = 4 << 20;
/// Room left in a MySQL packet for the statement text and the encoding of the values.
const PACKET_HEADROOM: usize = 64 << 10;
/// How long the diagnosis of a pool timeout may try a connection of its own.
const DIAGNOSE_TIMEOUT: Duration = Duration::from_secs(3);

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

/// The record's time as a UTC timestamp with microseconds (what `recorded_at` keeps).
pub(crate) fn utc_micros(record: &Record) -> Result<OffsetDateTime, BoxError> {
    let nanos = i128::from(record.unix_micros()) * 1_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map_err(|e| format!("its time is out of range: {e}").into())
}

/// The settings both SQL server chests share; their builders fill it.
#[derive(Clone)]
pub(crate) struct Settings {
    pub url: String,
    pub table: String,
    pub max_connections: u32,
    pub connect_timeout: Duration,
}

impl Settings {
    pub fn new(url: &str) -> Self {
        Settings {
            url: url.to_owned(),
            table: sql::DEFAULT_TABLE.to_owned(),
            max_connections: 8,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("url", &Secrets::of_url(&self.url).redact(&self.url))
            .field("table", &self.table)
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// The password of a connection URL, as written and percent-decoded, to scrub from messages.
#[derive(Clone, Default)]
pub(crate) struct Secrets(Vec<String>);

impl Secrets {
    /// The password in `url`'s user info and any `password=` query parameter.
    pub fn of_url(url: &str) -> Self {
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let (authority, query) = match rest.split_once('?') {
            Some((before, query)) => (before, query),
            None => (rest, ""),
        };
        let authority = authority.split('/').next().unwrap_or("");
        let mut found = Vec::new();
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            found.extend(userinfo.split_once(':').map(|(_, password)| password));
        }
        found.extend(
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .filter(|(key, _)| key.eq_ignore_ascii_case("password"))
                .map(|(_, value)| value),
        );
        let mut secrets: Vec<String> = Vec::new();
        for raw in found.into_iter().filter(|p| !p.is_empty()) {
            secrets.push(raw.to_owned());
            secrets.push(percent_decode(raw));
        }
        // Longest first, so a password that contains another is scrubbed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Secrets(secrets)
    }

    /// `text` with every occurrence of a secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        self.0
            .iter()
            .fold(text.to_owned(), |text, secret| text.replace(secret, "***"))
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
}

impl<B: Backend> SqlxChest<B>
where
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    for<'r> (String,): FromRow<'r, <B::Db as Database>::Row>,
    for<'r> (i64,): FromRow<'r, <B::Db as Database>::Row>,
    for<'r> ReadRow: FromRow<'r, <B::Db as Database>::Row>,
    for<'r> (String, Option<f64>): FromRow<'r, <B::Db as Database>::Row>,
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

    /// The rows that pass `filter`, in `unique_id` order. Text is compared byte for byte.
    pub async fn query(&self, filter: &Filter) -> Result<Vec<StoredRecord>, Error> {
        let mut sql = format!(
            "SELECT unique_id, request_id, name, value, value_type, method, route, {} FROM {} \
             WHERE 1=1",
            B::RECORDED_AT_TEXT,
            quote::<B>(&self.table)
        );
        let mut args = <B::Db as Database>::Arguments::default();
        // The first error of binding, if any, fails the query.
        let mut bound: Result<(), BoxError> = Ok(());
        let texts = [
            ("request_id", filter.request_id.as_deref()),
            ("name", filter.name.as_deref()),
        ];
        for (column, text) in texts {
            if let Some(text) = text {
                bound = bound.and(args.add(text));
                let n = args.len();
                let _ = write!(
                    sql,
                    " AND {column} = {}{}",
                    B::EXACT_TEXT,
                    parameter::<B>(n)
                );
            }
        }
        if let Some(after) = filter.after_id {
            bound = bound.and(args.add(after));
            let _ = write!(sql, " AND unique_id > {}", parameter::<B>(args.len()));
        }
        sql.push_str(" ORDER BY unique_id");
        if let Some(limit) = filter.limit {
            bound = bound.and(args.add(i64::try_from(limit).unwrap_or(i64::MAX)));
            let _ = write!(sql, " LIMIT {}", parameter::<B>(args.len()));
        }
        bound.map_err(|e| Error::backend(&*self.name, e))?;
        let read = sqlx::query_as_with(AssertSqlSafe(sql), args);
        let rows: Vec<ReadRow> = match read.fetch_all(&self.pool).await {
            Ok(rows) => rows,
            Err(e) => return Err(self.backend_error(e).await),
        };
        let records = rows.into_iter().map(|row| {
            let mut row = StoredRow {
                unique_id: row.0,
                request_id: row.1,
                name: row.2,
                value: row.3,
                value_type: row.4,
                method: row.5,
                route: row.6,
                recorded_at: row.7,
            };
            B::unescape(&mut row);
            StoredRecord::from(row)
        });
        Ok(records.collect())
    }

    /// Count and distribution of each variable (or only of `name`), by name.
    pub async fn summaries(&self, name: Option<&str>) -> Result<Vec<VarSummary>, Error> {
        let mut sql = format!("SELECT name, value_num FROM {}", quote::<B>(&self.table));
        if name.is_some() {
            let _ = write!(sql, " WHERE name = {}{}", B::EXACT_TEXT, parameter::<B>(1));
        }
        let mut query = sqlx::query_as::<_, (String, Option<f64>)>(AssertSqlSafe(sql));
        if let Some(name) = name {
            query = query.bind(name);
        }
        let mut rows = query.fetch(&self.pool);
        let mut tally = Tally::default();
        loop {
            match rows.try_next().await {
                Ok(Some((name, number))) => tally.add(name, number),
                Ok(None) => return Ok(tally.summaries()),
                Err(e) => return Err(self.backend_error(e).await),
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Closes the pool: waits for connections in use to come back, then closes them all.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Writes `records` in one transaction.
    pub async fn write(&self, records: &[Record]) -> Result<(), ChestError> {
        if records.is_empty() {
            return Ok(());
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
        for (sql, args) in statements {
            let insert = sqlx::query_with(AssertSqlSafe(sql), args);
            if let Err(e) = insert.execute(&mut *tx).await {
                return Err(self.error(e).await);
            }
        }
        match tx.commit().await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.error(e).await),
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
        let index = B::DIALECT.create_index(&self.table);
        match sqlx::query(AssertSqlSafe(index)).execute(&self.pool).await {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if B::index_exists(&*e) => {}
            Err(e) => return Err(e.into()),
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

    /// A `ChestError` for `error`: see [`failure`](Self::failure).
    async fn error(&self, error: sqlx::Error) -> ChestError {
        let (kind, message) = self.failure(error).await;
        ChestError::new(&*self.name, kind, message)
    }

    /// An [`Error::Backend`] for `error`: see [`failure`](Self::failure).
    async fn backend_error(&self, error: sqlx::Error) -> Error {
        let (kind, message) = self.failure(error).await;
        Error::backend(&*self.name, format!("{message} ({kind})"))
    }

    /// Whether retrying can help after `error`, and its description without secrets. A pool
    /// timeout says little (the pool retries a refused connection until the timeout): a
    /// connection attempt of its own finds the cause.
    async fn failure(&self, error: sqlx::Error) -> (ErrorKind, String) {
        let (kind, message) = match error {
            sqlx::Error::PoolTimedOut => {
                let attempt = tokio::time::timeout(DIAGNOSE_TIMEOUT, self.options.connect()).await;
                match attempt {
                    Ok(Err(cause)) => (
                        classify::<B>(&cause),
                        format!("{error}; connecting: {}", describe(&cause)),
                    ),
                    Ok(Ok(conn)) => {
                        let _ = conn.close().await;
                        (ErrorKind::Retryable, describe(&error))
                    }
                    Err(_) => (ErrorKind::Retryable, describe(&error)),
                }
            }
            error => (classify::<B>(&error), describe(&error)),
        };
        (kind, self.secrets.redact(&message))
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

/// `ident` (a validated identifier) quoted for `B`'s SQL.
fn quote<B: Backend>(ident: &str) -> String {
    match B::DIALECT {
        Dialect::MySql => format!("`{ident}`"),
        Dialect::Sqlite | Dialect::Postgres => format!("\"{ident}\""),
    }
}

/// The `n`th (from 1) bound parameter of a statement in `B`'s SQL.
fn parameter<B: Backend>(n: usize) -> String {
    match B::DIALECT {
        Dialect::Postgres => format!("${n}"),
        Dialect::Sqlite | Dialect::MySql => "?".to_owned(),
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

/// The error's text, with the server's code when the text lacks it.
fn describe(error: &sqlx::Error) -> String {
    let mut text = error.to_string();
    if let Some(code) = error.as_database_error().and_then(|e| e.code()) {
        if !text.contains(&*code) {
            let _ = write!(text, " (SQLSTATE {code})");
        }
    }
    text
}

/// Whether retrying can help: lost or refused connections, timeouts and the server's transient
/// errors (as the backend tells) can clear; configuration, encoding and data errors cannot.
fn classify<B: Backend>(error: &sqlx::Error) -> ErrorKind {
    match error {
        sqlx::Error::Database(e) => B::database_error_kind(&**e),
        // TLS failures are retryable: a handshake can fail in transit, and a batched chest keeps
        // the records (spooled) until a fixed configuration lets them through.
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => ErrorKind::Retryable,
        _ => ErrorKind::Permanent,
    }
}

/// Every row count [`statement_sizes`] can produce when it splits, up to `max_rows` (a power of
/// two).
fn statement_row_counts(max_rows: usize) -> impl Iterator<Item = usize> {
    let powers = std::iter::successors(Some(EXACT_STATEMENT_ROWS * 2), |n| Some(n * 2))
        .take_while(move |n| *n <= max_rows);
    (1..=EXACT_STATEMENT_ROWS.min(max_rows)).chain(powers)
}

/// The row counts of the insert statements for `records`, in order: each statement at most
/// `max_rows` rows and `max_bytes` of values (a larger row goes alone); with `split`, each count
/// one of [`statement_row_counts`].
fn statement_sizes(
    records: &[Record],
    max_rows: usize,
    max_bytes: usize,
    split: bool,
) -> Vec<usize> {
    let mut sizes = Vec::new();
    let flush = |rows: usize, sizes: &mut Vec<usize>| {
        if split {
            split_rows(rows, sizes);
        } else {
            sizes.push(rows);
        }
    };
    let (mut rows, mut bytes) = (0, 0);
    for record in records {
        let size = record.approx_size();
        if rows > 0 && (rows == max_rows || bytes + size > max_bytes) {
            flush(rows, &mut sizes);
            (rows, bytes) = (0, 0);
        }
        rows += 1;
        bytes += size;
    }
    if rows > 0 {
        flush(rows, &mut sizes);
    }
    sizes
}

/// Splits `rows` (at most a power of two) into powers of two above [`EXACT_STATEMENT_ROWS`] and
/// one exact remainder.
fn split_rows(mut rows: usize, sizes: &mut Vec<usize>) {
    while rows > EXACT_STATEMENT_ROWS {
        // 33..=63 rows: 32 and the rest.
        let power = 1 << rows.ilog2();
        sizes.push(power);
        rows -= power;
    }
    if rows > 0 {
        sizes.push(rows);
    }
}

/// Makes a public chest type over [`SqlxChest<backend>`](SqlxChest) and its builder: what the
/// MySQL and PostgreSQL chests share. The chest's own docs (with examples) come first; `url` and
/// `table` document its `connect` and its builder's `table`.
macro_rules! sqlx_chest {
    (
        $(#[$doc:meta])*
        pub struct $chest:ident(SqlxChest<$backend:ty>);
        builder: $builder:ident,
        url: $url:literal,
        table: $table:literal $(,)?
    ) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $chest {
            inner: std::sync::Arc<$crate::chests::sqlx_common::SqlxChest<$backend>>,
        }

        #[doc = concat!("Settings of a [`", stringify!($chest), "`].")]
        #[derive(Debug, Clone)]
        pub struct $builder {
            settings: $crate::chests::sqlx_common::Settings,
        }

        impl $chest {
            /// Connects with the default settings, and creates the table `chest` if it is missing.
            ///
            #[doc = $url]
            pub async fn connect(url: &str) -> Result<Self, $crate::Error> {
                Self::builder(url).build().await
            }

            /// Settings for the server at `url`: table `chest`, up to 8 connections, 10 s to
            /// connect.
            pub fn builder(url: &str) -> $builder {
                $builder {
                    settings: $crate::chests::sqlx_common::Settings::new(url),
                }
            }

            /// The table written to.
            pub fn table(&self) -> &str {
                self.inner.table()
            }

            /// Closes the pool: waits for the connections in use, then closes every connection.
            /// Writes after this fail (permanently).
            pub async fn close(&self) {
                self.inner.close().await;
            }
        }

        impl $builder {
            /// The table to write (default `chest`; `flask_chest` for Flask-Chest's).
            #[doc = $table]
            pub fn table(mut self, table: impl Into<String>) -> Self {
                self.settings.table = table.into();
                self
            }

            /// The most connections the pool opens (default 8).
            pub fn max_connections(mut self, max: u32) -> Self {
                self.settings.max_connections = max;
                self
            }

            /// How long a write waits for a connection, opening one included (default 10 s).
            pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
                self.settings.connect_timeout = timeout;
                self
            }

            /// Connects, and creates the table and its index if missing (or checks an existing
            /// table's columns).
            pub async fn build(self) -> Result<$chest, $crate::Error> {
                let inner = $crate::chests::sqlx_common::SqlxChest::connect(self.settings).await?;
                Ok($chest {
                    inner: std::sync::Arc::new(inner),
                })
            }

            /// Checks the settings without connecting: the first write connects and prepares the
            /// table, and its errors are [`ChestError`](crate::ChestError)s (so a batched chest
            /// keeps the records while the server is away). Must be called inside a Tokio
            /// runtime.
            pub fn build_lazy(self) -> Result<$chest, $crate::Error> {
                let inner = $crate::chests::sqlx_common::SqlxChest::new(self.settings)?;
                Ok($chest {
                    inner: std::sync::Arc::new(inner),
                })
            }
        }

        impl $crate::Chest for $chest {
            fn name(&self) -> &str {
                self.inner.name()
            }

            fn write<'a>(
                &'a self,
                records: &'a [$crate::Record],
            ) -> $crate::BoxFuture<'a, Result<(), $crate::ChestError>> {
                Box::pin(self.inner.write(records))
            }
        }

        impl std::fmt::Debug for $chest {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($chest))
                    .field("name", &self.inner.name())
                    .field("table", &self.inner.table())
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use sqlx_chest;

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize, text_len: usize) -> Vec<Record> {
        (0..n)
            .map(|i| {
                Record::new("r", "n", "x".repeat(text_len), "GET", None)
                    .at(std::time::UNIX_EPOCH + Duration::from_micros(i as u64))
            })
            .collect()
    }

    #[test]
    fn statements_use_cached_sizes_and_cover_every_record() {
        let known: Vec<usize> = statement_row_counts(2048).collect();
        assert_eq!(known.len(), 38);
        for n in [1, 2, 31, 32, 33, 63, 64, 65, 1000, 2048, 2049, 5000, 20_000] {
            let sizes = statement_sizes(&records(n, 1), 2048, MAX_STATEMENT_BYTES, true);
            assert_eq!(sizes.iter().sum::<usize>(), n, "{n}: {sizes:?}");
            assert!(sizes.iter().all(|s| known.contains(s)), "{n}: {sizes:?}");
        }
        assert_eq!(
            statement_sizes(&records(1000, 1), 2048, usize::MAX, true),
            [512, 256, 128, 64, 32, 8]
        );
        assert_eq!(
            statement_sizes(&records(5000, 1), 2048, usize::MAX, true),
            [2048, 2048, 512, 256, 128, 8]
        );
        assert_eq!(
            statement_sizes(&records(40, 1), 2048, usize::MAX, true),
            [32, 8]
        );
    }

    #[test]
    fn statements_stay_under_the_byte_budget() {
        let big = records(5, 1_000_000);
        let sizes = statement_sizes(&big, 2048, 2_500_000, true);
        assert_eq!(sizes, [2, 2, 1]);
        // A row larger than the budget goes alone.
        assert_eq!(statement_sizes(&records(2, 10), 2048, 1, true), [1, 1]);
    }

    #[test]
    fn statements_for_any_row_count_are_only_bounded() {
        let sizes = statement_sizes(&records(25_000, 1), 10_000, MAX_STATEMENT_BYTES, false);
        assert_eq!(sizes, [10_000, 10_000, 5_000]);
        assert_eq!(
            statement_sizes(&records(5, 1_000_000), 10_000, 2_500_000, false),
            [2, 2, 1]
        );
    }

    #[test]
    fn passwords_are_found_and_scrubbed() {
        let url = "mysql://root:p%40ss@127.0.0.1:3306/db?password=other&ssl-mode=disabled";
        let secrets = Secrets::of_url(url);
        let text = format!("{url} p@ss other");
        let redacted = secrets.redact(&text);
        for secret in ["p%40ss", "p@ss", "other"] {
            assert!(!redacted.contains(secret), "{redacted}");
        }
        assert!(
            redacted.starts_with("mysql://root:***@127.0.0.1:3306/db"),
            "{redacted}"
        );
        assert_eq!(Secrets::of_url("postgres://u@h/db").redact("u@h"), "u@h");
        // An `@` in the password (unescaped) still counts as part of it.
        let odd = Secrets::of_url("postgres://u:a@b@h:5432/db");
        assert_eq!(odd.redact("x a@b y"), "x *** y");
    }

    #[test]
    fn settings_debug_hides_the_password() {
        let settings = Settings::new("postgres://chest:hunter2@127.0.0.1/db");
        let debug = format!("{settings:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("chest:***@127.0.0.1"), "{debug}");
    }
}

/// sqlx 0.9.0 leaves Nagle's algorithm on for its TCP connections (sqlx issue 4335: the fix, pull
/// request 4336, is merged but not released). A statement whose last TCP segment is short then
/// waits for the server's delayed ACK, about 40 ms: 1,000-record writes into PostgreSQL ran at 27k
/// records/s over TCP here, 316k over a Unix socket. Until sqlx sets `TCP_NODELAY` itself, each new
/// pool connection sets it on the process's TCP sockets whose peer has the server's port (that
/// includes the new one; on others to that port it is harmless). Remove once sqlx sets it.
mod tcp_nodelay {
    /// Sets `TCP_NODELAY` on this process's TCP sockets connected to `port`. Best effort: on
    /// systems without `/proc/self/fd`, or on any error, it does nothing.
    #[cfg(target_os = "linux")]
    pub(super) fn set_for_peer_port(port: u16) {
        use std::os::fd::{BorrowedFd, RawFd};
        use std::os::unix::ffi::OsStrExt;

        let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
            return;
        };
        for entry in entries.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<RawFd>().ok())
            else {
                continue;
            };
            let is_socket = std::fs::read_link(entry.path())
                .is_ok_and(|target| target.as_os_str().as_bytes().starts_with(b"socket:"));
            if !is_socket {
                continue;
            }
            // SAFETY: the descriptor is only passed to getpeername and setsockopt below. If
            // another thread closed it meanwhile, they fail (EBADF); if the number was reused,
            // they reach the new descriptor, where a read of the peer changes nothing and
            // TCP_NODELAY is set only on a TCP socket to the server's port. No memory is shared.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            let socket = socket2::SockRef::from(&fd);
            let peer = socket.peer_addr().ok().and_then(|a| a.as_socket());
            if peer.is_some_and(|peer| peer.port() == port) {
                if let Err(error) = socket.set_tcp_nodelay(true) {
                    tracing::debug!(target: "chest", %error, "could not set TCP_NODELAY");
                }
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn set_for_peer_port(_port: u16) {}
}
