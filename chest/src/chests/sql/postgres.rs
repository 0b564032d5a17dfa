//! PostgreSQL, through a pool of sqlx connections (feature `postgres`).
//!
//! ```no_run
//! use chest::chests::postgres::PostgresChest;
//! use chest::{layer::ChestLayer, Recorder};
//!
//! # async fn run() -> Result<(), chest::Error> {
//! let chest = PostgresChest::connect("postgres://app:secret@127.0.0.1:5432/metrics").await?;
//! assert_eq!(chest::Chest::name(&chest), "postgres://app@127.0.0.1:5432/metrics");
//! let layer = ChestLayer::new(Recorder::new().chest(chest));
//! # Ok(()) }
//! ```
//!
//! With settings, and without connecting until the first write:
//!
//! ```no_run
//! use std::time::Duration;
//! use chest::chests::postgres::PostgresChest;
//!
//! # async fn run() -> Result<(), chest::Error> {
//! let chest = PostgresChest::builder("postgres://postgres@127.0.0.1:5432/chest_test")
//!     .table("flask_chest")
//!     .max_connections(4)
//!     .connect_timeout(Duration::from_secs(2))
//!     .build_lazy()?;
//! # Ok(()) }
//! ```
//!
//! The table (created, with its index, in the connection's current schema when missing; an
//! existing table must have every column, else [`Error::MissingColumns`]):
//!
//! | column | type | |
//! |---|---|---|
//! | `unique_id` | BIGSERIAL PRIMARY KEY | Flask-Chest |
//! | `request_id` | TEXT | Flask-Chest; indexed |
//! | `name` | TEXT | Flask-Chest |
//! | `value` | TEXT | Flask-Chest: the value's text form |
//! | `value_num` | DOUBLE PRECISION | the number for int, float (finite) and bool (0/1); else NULL |
//! | `value_type` | TEXT | `int`, `float`, `bool`, `text`, `json` or `text_escaped` (below) |
//! | `method` | TEXT | HTTP method |
//! | `route` | TEXT | route template, NULL when none matched |
//! | `recorded_at` | TIMESTAMPTZ | microseconds (bound as a timestamp, not text) |
//!
//! NaN and ±Inf are stored as text (`NaN`, `inf`, `-inf`) with a NULL `value_num`.
//!
//! ## NUL characters
//!
//! PostgreSQL's text types cannot hold the NUL character (U+0000). A text value that contains
//! one is stored escaped, losslessly, and flagged: in `value`, `\` becomes `\\` and NUL becomes
//! `\0`, and `value_type` is [`ESCAPED_TEXT_TYPE`] (`text_escaped`); [`unescape_text`] gives the
//! original back. Text without NUL, JSON (which escapes NUL itself) and numbers are stored as is.
//! A NUL in a record's request id, name, method or route (none of which chest's own layer
//! produces) is refused with a permanent error naming the record.
//!
//! ```
//! use chest::chests::postgres::{escape_text, unescape_text};
//!
//! let stored = escape_text("a\0b\\c");
//! assert_eq!(stored, "a\\0b\\\\c");
//! assert_eq!(unescape_text(&stored), "a\0b\\c");
//! ```
//!
//! ## Connections
//!
//! The pool's TCP connections run with `TCP_NODELAY`, which sqlx 0.9.0 no longer sets: without
//! it a statement whose last TCP segment is short waits ~40 ms for the server's delayed ACK
//! (PostgreSQL 1,000-record writes: 27k records/s before, 302k after, BENCHMARKS.md). sqlx offers
//! no hook on its sockets, so on Linux each new connection sets the option on the process's TCP
//! sockets whose peer has the server's port: other connections of the process to that port get it
//! too, which only removes the same delay from them.
//!
//! ## Writes and errors
//!
//! Each write is one transaction of multi-row inserts: `INSERT … SELECT * FROM UNNEST($1, …, $8)`
//! with one array per column (sqlx's advice for bulk inserts into PostgreSQL, and faster here
//! than `VALUES` lists), at most 8,192 rows and a few MB a statement; 8 bound values whatever the
//! row count, so PostgreSQL's limit of 65,535 (32,767 for older servers) never comes near. A refused or lost connection (including
//! `pg_terminate_backend`), a pool timeout, a serialization failure or deadlock, a lock timeout,
//! a full disk, a server shutting down or starting up, or a read-only standby are retryable; bad
//! credentials, an unknown database, SQL and data errors are permanent. The chest's name is
//! `postgres://user@host:port/database`: passwords never appear in names, errors, logs or
//! `Debug`.
//!
//! A failed write wrote nothing (its transaction is rolled back), with one exception no client
//! can rule out: a connection lost while the server commits. That write is reported retryable,
//! and if the commit did happen a retry stores its rows twice (delivery is at least once).

use std::borrow::Cow;

use sqlx::error::DatabaseError;
use sqlx::postgres::{PgArguments, PgConnectOptions};
use sqlx::{Arguments, ConnectOptions};

use super::server::{self, Backend, Endpoint};
use super::{Dialect, Row};
use crate::stored::StoredRow;
use crate::{BoxError, Error, ErrorKind, Record};

/// The `value_type` of a text value stored escaped because it contains NUL (see the
/// [module docs](self)).
pub const ESCAPED_TEXT_TYPE: &str = "text_escaped";

/// PostgreSQL keeps identifiers up to 63 bytes (longer ones are silently cut).
const LONGEST_IDENTIFIER: usize = 63;

server::public::sqlx_chest! {
    /// A chest that writes to a PostgreSQL table through a connection pool. Clones share the pool.
    ///
    /// Written directly (the layer does this for each request, or a batched chest for each batch):
    ///
    /// ```no_run
    /// use chest::chests::postgres::PostgresChest;
    /// use chest::{Chest, Record};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let chest = PostgresChest::connect("postgres://postgres@127.0.0.1:5432/chest_test").await?;
    /// chest
    ///     .write(&[
    ///         Record::new("req-1", "latency_ms", 12.5, "GET", Some("/items/{id}")),
    ///         Record::new("req-1", "user", "alice", "GET", Some("/items/{id}")),
    ///     ])
    ///     .await?;
    /// chest.close().await;
    /// # Ok(()) }
    /// ```
    pub struct PostgresChest(SqlxChest<PostgresServer>);
    builder: PostgresChestBuilder,
    url: "`url`: `postgres://user:password@host:port/database`, with sqlx's options \
          (e.g. `?sslmode=require`, `?application_name=my-app`; the default application name \
          is `chest`).",
    table: "It must match `[A-Za-z_][A-Za-z0-9_]{0,62}` (it is quoted, so case matters).",
    schemes: ["postgres", "postgresql"],
}

/// Escapes text for a PostgreSQL text column: `\` as `\\`, NUL as `\0`. Undone by
/// [`unescape_text`].
pub fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out
}

/// The original of a value stored with `value_type` [`ESCAPED_TEXT_TYPE`]: `\0` becomes NUL,
/// `\\` becomes `\`. Any other backslash is kept as is.
pub fn unescape_text(stored: &str) -> String {
    let mut out = String::with_capacity(stored.len());
    let mut chars = stored.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('\0'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// PostgreSQL as a [`Backend`].
pub(crate) struct PostgresServer;

/// A record as PostgreSQL can store it: text with NUL in `value` escaped and flagged; NUL
/// elsewhere refused.
fn pg_row(record: &Record) -> Result<Row<'_>, BoxError> {
    let mut row = Row::from(record);
    let tags = [
        ("request id", row.request_id),
        ("name", row.name),
        ("method", row.method),
        ("route", row.route.unwrap_or("")),
    ];
    if let Some((what, _)) = tags.iter().find(|(_, text)| text.contains('\0')) {
        return Err(format!("its {what} contains NUL, which PostgreSQL text cannot hold").into());
    }
    if row.value.contains('\0') {
        row.value = Cow::Owned(escape_text(&row.value));
        row.value_type = ESCAPED_TEXT_TYPE;
    }
    Ok(row)
}

/// SQLSTATEs after which a retry can succeed, besides whole classes 08 (connection exception),
/// 40 (transaction rollback: serialization failure, deadlock) and 53 (insufficient resources).
const RETRYABLE_STATES: &[&str] = &[
    "57000", // operator_intervention
    "57014", // query_canceled
    "57P01", // admin_shutdown: pg_terminate_backend, or the server stopping
    "57P02", // crash_shutdown
    "57P03", // cannot_connect_now: starting up
    "57P05", // idle_session_timeout
    "58000", // system_error
    "58030", // io_error
    "55P03", // lock_not_available
    "55006", // object_in_use
    "25006", // read_only_sql_transaction: a standby during failover
    "72000", // snapshot_too_old
];

impl Backend for PostgresServer {
    type Db = sqlx::Postgres;
    const DIALECT: Dialect = Dialect::Postgres;
    const SCHEME: &'static str = "postgres";
    /// Rows go in arrays (`UNNEST`), not in bound values: only memory bounds a statement.
    const MAX_STATEMENT_ROWS: usize = 8192;
    const ANY_ROW_COUNT: bool = true;
    const COLUMNS_SQL: &'static str = "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1";
    const MAX_PACKET_SQL: Option<&'static str> = None;
    const SESSION_SQL: Option<&'static str> = None;
    const RECORDED_AT_TEXT: &'static str =
        "to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";
    /// PostgreSQL's equality of text is byte for byte (deterministic collations).
    const EXACT_TEXT: &'static str = "";

    fn check_table(table: &str) -> Result<(), Error> {
        if table.len() > LONGEST_IDENTIFIER {
            return Err(Error::InvalidTableName {
                name: table.to_owned(),
                reason: "it is longer than 63 characters, PostgreSQL's limit",
            });
        }
        Ok(())
    }

    fn configure(options: PgConnectOptions) -> PgConnectOptions {
        // Statements are up to thousands of rows long: not for logs.
        let options = options.disable_statement_logging();
        if options.get_application_name().is_some() {
            options
        } else {
            options.application_name("chest")
        }
    }

    fn endpoint(options: &PgConnectOptions) -> Endpoint<'_> {
        Endpoint {
            user: options.get_username(),
            host: options.get_host(),
            port: options.get_port(),
            database: options.get_database(),
        }
    }

    fn insert_sql(table: &str, _rows: usize) -> String {
        Dialect::Postgres.insert_unnest(table)
    }

    fn bind_rows(args: &mut PgArguments, records: &[Record]) -> Result<(), (usize, BoxError)> {
        let mut rows = Vec::with_capacity(records.len());
        let mut times = Vec::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            rows.push(pg_row(record).map_err(|e| (index, e))?);
            times.push(server::utc_micros(record).map_err(|e| (index, e))?);
        }
        let column =
            |value: for<'r> fn(&'r Row<'r>) -> &'r str| rows.iter().map(value).collect::<Vec<_>>();
        // An encoding error concerns the whole statement: blame its first record.
        let whole = |e: BoxError| (0, e);
        args.add(column(|r| r.request_id)).map_err(whole)?;
        args.add(column(|r| r.name)).map_err(whole)?;
        args.add(column(|r| &r.value)).map_err(whole)?;
        args.add(rows.iter().map(|r| r.value_num).collect::<Vec<_>>())
            .map_err(whole)?;
        args.add(column(|r| r.value_type)).map_err(whole)?;
        args.add(column(|r| r.method)).map_err(whole)?;
        args.add(rows.iter().map(|r| r.route).collect::<Vec<_>>())
            .map_err(whole)?;
        args.add(times).map_err(whole)
    }

    fn database_error_kind(error: &dyn DatabaseError) -> ErrorKind {
        let code = error.code().unwrap_or_default();
        let retryable = ["08", "40", "53"]
            .iter()
            .any(|class| code.starts_with(class))
            || RETRYABLE_STATES.contains(&&*code);
        if retryable {
            ErrorKind::Retryable
        } else {
            ErrorKind::Permanent
        }
    }

    fn rows_affected(result: &sqlx::postgres::PgQueryResult) -> u64 {
        result.rows_affected()
    }

    fn index_exists(error: &dyn DatabaseError) -> bool {
        // duplicate_table (the index name is taken), or unique_violation in the catalog when
        // two sessions create it at once.
        matches!(error.code().as_deref(), Some("42P07" | "23505"))
    }

    /// Text stored escaped ([`ESCAPED_TEXT_TYPE`]) comes back as the original text.
    fn unescape(row: &mut StoredRow) {
        if row.value_type.as_deref() == Some(ESCAPED_TEXT_TYPE) {
            row.value = row.value.as_deref().map(unescape_text);
            row.value_type = Some("text".to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Chest;

    #[test]
    fn escaping_round_trips() {
        for text in [
            "",
            "plain",
            "a\0b",
            "\\0",
            "\\\0\\",
            "\0\0",
            "emoji 🦀\0",
            "tail\\",
        ] {
            assert_eq!(unescape_text(&escape_text(text)), text, "{text:?}");
            assert!(!escape_text(text).contains('\0'));
        }
        // Distinct texts stay distinct once escaped.
        assert_ne!(escape_text("\\0"), escape_text("\0"));
    }

    #[tokio::test]
    async fn names_have_no_password_and_long_tables_are_refused() {
        let url = "postgres://app:pa55-w0rd@db.internal/metrics?password=other";
        let chest = PostgresChest::builder(url).build_lazy().unwrap();
        assert_eq!(chest.name(), "postgres://app@db.internal:5432/metrics");
        let debug = format!("{chest:?} {:?}", PostgresChest::builder(url));
        assert!(
            !debug.contains("pa55") && !debug.contains("other"),
            "{debug}"
        );
        let error = PostgresChest::builder(url)
            .table("t".repeat(64))
            .build_lazy()
            .unwrap_err();
        assert!(error.to_string().contains("63"), "{error}");
    }
}
