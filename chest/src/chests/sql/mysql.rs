//! MySQL and MariaDB, through a pool of sqlx connections (feature `mysql`).
//!
//! ```no_run
//! use chest::chests::mysql::MySqlChest;
//! use chest::{layer::ChestLayer, Recorder};
//!
//! # async fn run() -> Result<(), chest::Error> {
//! let chest = MySqlChest::connect("mysql://app:secret@127.0.0.1:3306/metrics").await?;
//! assert_eq!(chest::Chest::name(&chest), "mysql://app@127.0.0.1:3306/metrics");
//! let layer = ChestLayer::new(Recorder::new().chest(chest));
//! # Ok(()) }
//! ```
//!
//! With settings (Flask-Chest's table name, a smaller pool, a short connect timeout), and without
//! connecting until the first write:
//!
//! ```no_run
//! use std::time::Duration;
//! use chest::chests::mysql::MySqlChest;
//!
//! # async fn run() -> Result<(), chest::Error> {
//! let chest = MySqlChest::builder("mysql://root@127.0.0.1:3306/chest_test")
//!     .table("flask_chest")
//!     .max_connections(4)
//!     .connect_timeout(Duration::from_secs(2))
//!     .build_lazy()?;
//! # Ok(()) }
//! ```
//!
//! The table (created, with its index, when missing; an existing table must have every column,
//! else [`Error::MissingColumns`](crate::Error::MissingColumns)):
//!
//! | column | type | |
//! |---|---|---|
//! | `unique_id` | BIGINT AUTO_INCREMENT PRIMARY KEY | Flask-Chest |
//! | `request_id` | VARCHAR(255) | Flask-Chest; indexed |
//! | `name` | VARCHAR(255) | Flask-Chest |
//! | `value` | LONGTEXT | Flask-Chest: the value's text form |
//! | `value_num` | DOUBLE | the number for int, float (finite) and bool (0/1); else NULL |
//! | `value_type` | VARCHAR(16) | `int`, `float`, `bool`, `text` or `json` |
//! | `method` | VARCHAR(255) | HTTP method |
//! | `route` | TEXT | route template, NULL when none matched |
//! | `recorded_at` | DATETIME(6) | UTC, microseconds (bound as a timestamp, not text) |
//!
//! The table is `utf8mb4` (emoji included); text is stored byte for byte, NUL and backslashes
//! included. NaN and ±Inf are stored as text (`NaN`, `inf`, `-inf`) with a NULL `value_num`.
//!
//! Each write is one transaction of multi-row inserts (at most 2,048 rows and a few MB a
//! statement, far under MySQL's 65,535 bound values and the server's `max_allowed_packet`; a
//! record larger than that packet is refused with a permanent error). Sessions run with
//! `STRICT_ALL_TABLES` added to the server's `sql_mode`, so a value that does not fit fails
//! instead of being silently cut.
//!
//! Errors: a refused or lost connection, a pool timeout, a deadlock, a lock wait timeout, a full
//! disk, a read-only server or a killed connection are retryable; bad credentials, an unknown
//! database, SQL and data errors are permanent. The chest's name is
//! `mysql://user@host:port/database`: passwords never appear in names, errors, logs or `Debug`.
//!
//! A failed write wrote nothing (its transaction is rolled back), with one exception no client
//! can rule out: a connection lost while the server commits. That write is reported retryable,
//! and if the commit did happen a retry stores its rows twice (delivery is at least once).
//!
//! ## Connections
//!
//! The pool's TCP connections run with `TCP_NODELAY`, which sqlx 0.9.0 no longer sets: without
//! it a statement whose last TCP segment is short waits ~40 ms for the server's delayed ACK
//! (PostgreSQL 1,000-record writes: 27k records/s before, 302k after, BENCHMARKS.md). sqlx offers
//! no hook on its sockets, so on Linux each new connection sets the option on the process's TCP
//! sockets whose peer has the server's port: other connections of the process to that port get it
//! too, which only removes the same delay from them.

use sqlx::error::DatabaseError;
use sqlx::mysql::{MySqlArguments, MySqlConnectOptions, MySqlDatabaseError};
use sqlx::{Arguments, ConnectOptions};
use time::PrimitiveDateTime;

use super::server::{self, Backend, Endpoint};
use super::{Dialect, Row};
use crate::{BoxError, ErrorKind, Record};

server::public::sqlx_chest! {
    /// A chest that writes to a MySQL or MariaDB table through a connection pool. Clones share the
    /// pool.
    ///
    /// Written directly (the layer does this for each request, or a batched chest for each batch):
    ///
    /// ```no_run
    /// use chest::chests::mysql::MySqlChest;
    /// use chest::{Chest, Record};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let chest = MySqlChest::connect("mysql://root@127.0.0.1:3306/chest_test").await?;
    /// chest
    ///     .write(&[
    ///         Record::new("req-1", "latency_ms", 12.5, "GET", Some("/items/{id}")),
    ///         Record::new("req-1", "user", "alice", "GET", Some("/items/{id}")),
    ///     ])
    ///     .await?;
    /// chest.close().await;
    /// # Ok(()) }
    /// ```
    pub struct MySqlChest(SqlxChest<MySqlServer>);
    builder: MySqlChestBuilder,
    url: "`url`: `mysql://user:password@host:port/database`, with sqlx's options \
          (e.g. `?ssl-mode=required`).",
    table: "It must match `[A-Za-z_][A-Za-z0-9_]{0,63}`.",
    schemes: ["mysql"],
}

/// MySQL and MariaDB as a [`Backend`].
pub(crate) struct MySqlServer;

/// MySQL and MariaDB error numbers after which a retry can succeed.
const RETRYABLE_ERRORS: &[u16] = &[
    1021, // ER_DISK_FULL
    1037, // ER_OUTOFMEMORY
    1038, // ER_OUT_OF_SORTMEMORY
    1040, // ER_CON_COUNT_ERROR: too many connections
    1041, // ER_OUT_OF_RESOURCES
    1043, // ER_HANDSHAKE_ERROR
    1053, // ER_SERVER_SHUTDOWN
    1114, // ER_RECORD_FILE_FULL: table full
    1135, // ER_CANT_CREATE_THREAD
    1152, // ER_ABORTING_CONNECTION
    1154, // ER_NET_READ_ERROR_FROM_PIPE
    1156, // ER_NET_PACKETS_OUT_OF_ORDER
    1158, // ER_NET_READ_ERROR
    1159, // ER_NET_READ_INTERRUPTED
    1160, // ER_NET_ERROR_ON_WRITE
    1161, // ER_NET_WRITE_INTERRUPTED
    1180, // ER_ERROR_DURING_COMMIT
    1181, // ER_ERROR_DURING_ROLLBACK
    1203, // ER_TOO_MANY_USER_CONNECTIONS
    1205, // ER_LOCK_WAIT_TIMEOUT
    1206, // ER_LOCK_TABLE_FULL
    1213, // ER_LOCK_DEADLOCK
    1290, // ER_OPTION_PREVENTS_STATEMENT: --read-only (a replica during failover)
    1317, // ER_QUERY_INTERRUPTED
    1614, // ER_XA_RBDEADLOCK
    1637, // ER_TOO_MANY_CONCURRENT_TRXS
    1792, // ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
    1836, // ER_READ_ONLY_MODE
    1927, // ER_CONNECTION_KILLED (MariaDB)
    1969, // ER_STATEMENT_TIMEOUT (MariaDB)
    3024, // ER_QUERY_TIMEOUT (MySQL)
    3032, // ER_SERVER_OFFLINE_MODE
    4031, // ER_CLIENT_INTERACTION_TIMEOUT
];

/// ER_DUP_KEYNAME: `CREATE INDEX` of an index that exists.
const DUPLICATE_KEY_NAME: u16 = 1061;

/// Binds a record's values, in [`INSERT_COLUMNS`](super::sql::INSERT_COLUMNS) order.
fn bind_row(args: &mut MySqlArguments, record: &Record) -> Result<(), BoxError> {
    let row = Row::from(record);
    // DATETIME has no time zone: it holds the UTC time.
    let at = server::utc_micros(record)?;
    args.add(row.request_id)?;
    args.add(row.name)?;
    args.add(&*row.value)?;
    args.add(row.value_num)?;
    args.add(row.value_type)?;
    args.add(row.method)?;
    args.add(row.route)?;
    args.add(PrimitiveDateTime::new(at.date(), at.time()))
}

fn error_number(error: &dyn DatabaseError) -> Option<u16> {
    error
        .try_downcast_ref::<MySqlDatabaseError>()
        .map(MySqlDatabaseError::number)
}

impl Backend for MySqlServer {
    type Db = sqlx::MySql;
    const DIALECT: Dialect = Dialect::MySql;
    const SCHEME: &'static str = "mysql";
    /// 2,048 rows × 8 columns = 16,384 bound values, far under MySQL's 65,535.
    const MAX_STATEMENT_ROWS: usize = 2048;
    const ANY_ROW_COUNT: bool = false;
    const COLUMNS_SQL: &'static str =
        "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?";
    const MAX_PACKET_SQL: Option<&'static str> =
        Some("SELECT CAST(@@max_allowed_packet AS SIGNED)");
    const SESSION_SQL: Option<&'static str> = Some(
        "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'STRICT_ALL_TABLES')",
    );
    /// DATETIME has no time zone: it holds the UTC time.
    const RECORDED_AT_TEXT: &'static str = "DATE_FORMAT(recorded_at, '%Y-%m-%dT%H:%i:%s.%fZ')";
    /// A binary string makes the comparison byte for byte (and still uses the index).
    const EXACT_TEXT: &'static str = "BINARY ";

    fn configure(options: MySqlConnectOptions) -> MySqlConnectOptions {
        // Statements are up to thousands of rows long: not for logs.
        options.disable_statement_logging()
    }

    fn endpoint(options: &MySqlConnectOptions) -> Endpoint<'_> {
        Endpoint {
            user: options.get_username(),
            host: options.get_host(),
            port: options.get_port(),
            database: options.get_database(),
        }
    }

    fn insert_sql(table: &str, rows: usize) -> String {
        Dialect::MySql.insert(table, rows)
    }

    fn bind_rows(args: &mut MySqlArguments, records: &[Record]) -> Result<(), (usize, BoxError)> {
        for (index, record) in records.iter().enumerate() {
            bind_row(args, record).map_err(|e| (index, e))?;
        }
        Ok(())
    }

    fn database_error_kind(error: &dyn DatabaseError) -> ErrorKind {
        match error_number(error) {
            Some(number) if RETRYABLE_ERRORS.contains(&number) => ErrorKind::Retryable,
            _ => ErrorKind::Permanent,
        }
    }

    fn rows_affected(result: &sqlx::mysql::MySqlQueryResult) -> u64 {
        result.rows_affected()
    }

    fn index_exists(error: &dyn DatabaseError) -> bool {
        error_number(error) == Some(DUPLICATE_KEY_NAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chest, Error};

    #[test]
    fn needs_a_runtime_and_says_so() {
        let error = MySqlChest::builder("mysql://root@127.0.0.1/db")
            .build_lazy()
            .unwrap_err();
        assert!(error.to_string().contains("Tokio runtime"), "{error}");
    }

    #[tokio::test]
    async fn bad_settings_are_refused_without_the_password() {
        let url = "mysql://root:pa55-w0rd@127.0.0.1:notaport/db";
        let error = MySqlChest::builder(url).build_lazy().unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, Error::InvalidUrl { .. }), "{text}");
        assert!(
            text.contains("mysql://root:***@127.0.0.1:notaport/db"),
            "{text}"
        );
        assert!(!text.contains("pa55-w0rd"), "{text}");
        let error = MySqlChest::builder("mysql://root@127.0.0.1/db")
            .max_connections(0)
            .build_lazy()
            .unwrap_err();
        assert!(matches!(error, Error::Config(_)), "{error}");
    }

    #[tokio::test]
    async fn names_have_no_password() {
        let chest = MySqlChest::builder("mysql://app:pa55-w0rd@db.internal:3307/metrics")
            .build_lazy()
            .unwrap();
        assert_eq!(chest.name(), "mysql://app@db.internal:3307/metrics");
        assert!(!format!("{chest:?}").contains("pa55"));
        let default_port = MySqlChest::builder("mysql://app@db.internal/metrics")
            .build_lazy()
            .unwrap();
        assert_eq!(default_port.name(), "mysql://app@db.internal:3306/metrics");
    }
}
