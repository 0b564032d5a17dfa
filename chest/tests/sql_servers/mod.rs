//! The scenarios the MySQL and PostgreSQL chest tests share, run against the real servers. Each
//! test file implements [`Target`] for its chest and calls these with its server's URL.
#![allow(dead_code)] // Each test binary uses the parts of its own server.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use chest::layer::ChestLayer;
use chest::{Chest, ChestError, Error, Record, Recorder, Value, Vars};
use sqlx::AssertSqlSafe;

pub mod reading;
pub mod series;

/// A password the error tests put in URLs: it must never come out.
pub const SECRET: &str = "Hunter2-s3cr3t-pw";

/// The [`Target`] methods of a sqlx chest type `$chest` (built through its builder), whose raw
/// SQL access is `Admin::$admin`: to be used inside `impl Target for …`.
macro_rules! sqlx_target_methods {
    ($chest:ty, $admin:ident) => {
        type Chest = $chest;

        async fn build(url: &str, table: &str, connections: u32) -> Result<$chest, Error> {
            <$chest>::builder(url)
                .table(table)
                .max_connections(connections)
                .connect_timeout(Duration::from_secs(5))
                .build()
                .await
        }

        fn lazy(url: &str, table: &str, timeout: Duration) -> Result<$chest, Error> {
            <$chest>::builder(url)
                .table(table)
                .connect_timeout(timeout)
                .build_lazy()
        }

        fn builder_debug(url: &str) -> String {
            format!("{:?}", <$chest>::builder(url))
        }

        async fn admin(url: &str) -> Admin {
            Admin::$admin(url).await
        }
    };
}
pub(crate) use sqlx_target_methods;

/// A chest type under test.
pub trait Target {
    /// The chest.
    type Chest: Chest + Clone + std::fmt::Debug;

    /// Connects now (creating `table` if missing), with at most `connections` connections.
    async fn build(url: &str, table: &str, connections: u32) -> Result<Self::Chest, Error>;
    /// Without connecting; `timeout` to get a connection.
    fn lazy(url: &str, table: &str, timeout: Duration) -> Result<Self::Chest, Error>;
    /// The `Debug` of a builder for `url` (to check it hides the password).
    fn builder_debug(url: &str) -> String;
    /// Raw SQL access to the server, to check what the chest wrote.
    async fn admin(url: &str) -> Admin;
    /// The `value` and `value_type` this server stores for `value`.
    fn stored(value: &Value) -> (String, &'static str) {
        (value.to_string(), value.type_name())
    }
    /// The value back from what [`stored`](Self::stored) gave.
    fn unstore(text: &str, type_name: &str) -> Value {
        Value::from_stored(text, type_name)
    }
}

/// The name of `table`'s batch ids: `<table>_batches`, or for a name too long for that, its
/// first 40 characters, an FNV-1a hash of it and `_bat` (as the chests name it).
pub fn batches_table(table: &str) -> String {
    if table.len() + "_batches".len() <= 63 {
        return format!("{table}_batches");
    }
    let hash = table.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{}_{hash:08x}_bat", &table[..40])
}

/// A table name no other test uses.
pub fn unique_table(test: &str) -> String {
    format!(
        "t_{test}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// One row of chest's table, read back with SQL.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub request_id: String,
    pub name: String,
    pub value: Option<String>,
    pub value_num: Option<f64>,
    pub value_type: Option<String>,
    pub method: Option<String>,
    pub route: Option<String>,
    /// As `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC), like [`Record::recorded_at`].
    pub recorded_at: Option<String>,
}

type StoredTuple = (
    String,
    String,
    Option<String>,
    Option<f64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl From<StoredTuple> for Stored {
    fn from(t: StoredTuple) -> Self {
        Stored {
            request_id: t.0,
            name: t.1,
            value: t.2,
            value_num: t.3,
            value_type: t.4,
            method: t.5,
            route: t.6,
            recorded_at: t.7,
        }
    }
}

/// A raw connection pool to the server under test.
pub enum Admin {
    #[cfg(feature = "mysql")]
    MySql(sqlx::MySqlPool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

/// A lock that makes inserts into a table wait, held on a connection of its own.
pub enum TableLock {
    #[cfg(feature = "mysql")]
    MySql(sqlx::MySqlConnection),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgConnection),
}

impl TableLock {
    /// Releases the lock.
    pub async fn release(self) {
        use sqlx::Connection;
        match self {
            #[cfg(feature = "mysql")]
            TableLock::MySql(mut conn) => {
                sqlx::raw_sql("UNLOCK TABLES")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.unwrap();
            }
            #[cfg(feature = "postgres")]
            TableLock::Postgres(mut conn) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }
}

impl Admin {
    #[cfg(feature = "mysql")]
    pub async fn mysql(url: &str) -> Admin {
        Admin::MySql(
            sqlx::MySqlPool::connect(url)
                .await
                .expect("admin connection"),
        )
    }

    #[cfg(feature = "postgres")]
    pub async fn postgres(url: &str) -> Admin {
        Admin::Postgres(sqlx::PgPool::connect(url).await.expect("admin connection"))
    }

    /// Runs one statement (built by the test from validated names).
    pub async fn execute(&self, sql: String) {
        match self {
            #[cfg(feature = "mysql")]
            Admin::MySql(pool) => drop(
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(pool)
                    .await
                    .unwrap(),
            ),
            #[cfg(feature = "postgres")]
            Admin::Postgres(pool) => drop(
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(pool)
                    .await
                    .unwrap(),
            ),
        }
    }

    /// Every row of `table`, in insert order.
    pub async fn rows(&self, table: &str) -> Vec<Stored> {
        let rows: Vec<StoredTuple> = match self {
            #[cfg(feature = "mysql")]
            Admin::MySql(pool) => sqlx::query_as(AssertSqlSafe(format!(
                "SELECT request_id, name, value, value_num, value_type, method, route, \
                 DATE_FORMAT(recorded_at, '%Y-%m-%dT%H:%i:%s.%fZ') FROM `{table}` ORDER BY unique_id"
            )))
            .fetch_all(pool)
            .await
            .unwrap(),
            #[cfg(feature = "postgres")]
            Admin::Postgres(pool) => sqlx::query_as(AssertSqlSafe(format!(
                "SELECT request_id, name, value, value_num, value_type, method, route, \
                 to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') \
                 FROM \"{table}\" ORDER BY unique_id"
            )))
            .fetch_all(pool)
            .await
            .unwrap(),
        };
        rows.into_iter().map(Stored::from).collect()
    }

    /// (rows, distinct (request_id, name) pairs) of `table`.
    pub async fn counts(&self, table: &str) -> (i64, i64) {
        match self {
            #[cfg(feature = "mysql")]
            Admin::MySql(pool) => sqlx::query_as(AssertSqlSafe(format!(
                "SELECT COUNT(*), COUNT(DISTINCT request_id, name) FROM `{table}`"
            )))
            .fetch_one(pool)
            .await
            .unwrap(),
            #[cfg(feature = "postgres")]
            Admin::Postgres(pool) => sqlx::query_as(AssertSqlSafe(format!(
                "SELECT COUNT(*), COUNT(DISTINCT (request_id, name)) FROM \"{table}\""
            )))
            .fetch_one(pool)
            .await
            .unwrap(),
        }
    }

    /// The one integer `sql` selects.
    pub async fn scalar(&self, sql: String) -> i64 {
        match self {
            #[cfg(feature = "mysql")]
            Admin::MySql(pool) => sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_one(pool)
                .await
                .unwrap(),
            #[cfg(feature = "postgres")]
            Admin::Postgres(pool) => sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_one(pool)
                .await
                .unwrap(),
        }
    }

    /// The distinct request ids in `table`.
    pub async fn request_ids(&self, table: &str) -> Vec<String> {
        match self {
            #[cfg(feature = "mysql")]
            Admin::MySql(pool) => sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT DISTINCT request_id FROM `{table}`"
            )))
            .fetch_all(pool)
            .await
            .unwrap(),
            #[cfg(feature = "postgres")]
            Admin::Postgres(pool) => sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT DISTINCT request_id FROM \"{table}\""
            )))
            .fetch_all(pool)
            .await
            .unwrap(),
        }
    }

    /// Whether `table` exists.
    pub async fn table_exists(&self, table: &str) -> bool {
        let (n,): (i64,) = match self {
            #[cfg(feature = "mysql")]
            Admin::MySql(pool) => sqlx::query_as(
                "SELECT COUNT(*) FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
            )
            .bind(table)
            .fetch_one(pool)
            .await
            .unwrap(),
            #[cfg(feature = "postgres")]
            Admin::Postgres(pool) => sqlx::query_as(
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = $1",
            )
            .bind(table)
            .fetch_one(pool)
            .await
            .unwrap(),
        };
        n == 1
    }

    /// The names of the indexes on `table`.
    pub async fn indexes(&self, table: &str) -> Vec<String> {
        let rows: Vec<(String,)> = match self {
            #[cfg(feature = "mysql")]
            Admin::MySql(pool) => sqlx::query_as(
                "SELECT DISTINCT CAST(INDEX_NAME AS CHAR) FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
            )
            .bind(table)
            .fetch_all(pool)
            .await
            .unwrap(),
            #[cfg(feature = "postgres")]
            Admin::Postgres(pool) => sqlx::query_as(
                "SELECT indexname::text FROM pg_indexes \
                 WHERE schemaname = current_schema() AND tablename = $1",
            )
            .bind(table)
            .fetch_all(pool)
            .await
            .unwrap(),
        };
        rows.into_iter().map(|(n,)| n).collect()
    }

    pub async fn drop_table(&self, table: &str) {
        // The chest's table and the batch ids beside it.
        for table in [table.to_owned(), batches_table(table)] {
            match self {
                #[cfg(feature = "mysql")]
                Admin::MySql(_) => {
                    self.execute(format!("DROP TABLE IF EXISTS `{table}`"))
                        .await
                }
                #[cfg(feature = "postgres")]
                Admin::Postgres(_) => {
                    self.execute(format!("DROP TABLE IF EXISTS \"{table}\""))
                        .await
                }
            }
        }
    }

    /// Takes a lock on `table` that makes inserts wait, on a connection of its own (`url`).
    pub async fn lock(&self, url: &str, table: &str) -> TableLock {
        use sqlx::Connection;
        match self {
            #[cfg(feature = "mysql")]
            Admin::MySql(_) => {
                let mut conn = sqlx::MySqlConnection::connect(url).await.unwrap();
                sqlx::raw_sql(AssertSqlSafe(format!("LOCK TABLES `{table}` WRITE")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                TableLock::MySql(conn)
            }
            #[cfg(feature = "postgres")]
            Admin::Postgres(_) => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "BEGIN; LOCK TABLE \"{table}\" IN ACCESS EXCLUSIVE MODE"
                )))
                .execute(&mut conn)
                .await
                .unwrap();
                TableLock::Postgres(conn)
            }
        }
    }

    /// Waits (up to a minute) until a connection is blocked in an insert into `table`, then kills
    /// that connection (`KILL` / `pg_terminate_backend`).
    pub async fn kill_blocked_insert(&self, table: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let ids: Vec<i64> = match self {
                #[cfg(feature = "mysql")]
                Admin::MySql(pool) => sqlx::query_scalar(
                    "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST \
                     WHERE INFO LIKE CONCAT('INSERT INTO `', ?, '`%') AND STATE LIKE 'Waiting%'",
                )
                .bind(table)
                .fetch_all(pool)
                .await
                .unwrap(),
                #[cfg(feature = "postgres")]
                Admin::Postgres(pool) => sqlx::query_scalar(
                    "SELECT pid::int8 FROM pg_stat_activity \
                     WHERE query LIKE 'INSERT INTO \"' || $1 || '\"%' AND wait_event_type = 'Lock'",
                )
                .bind(table)
                .fetch_all(pool)
                .await
                .unwrap(),
            };
            if !ids.is_empty() {
                for id in ids {
                    match self {
                        #[cfg(feature = "mysql")]
                        Admin::MySql(_) => self.execute(format!("KILL {id}")).await,
                        #[cfg(feature = "postgres")]
                        Admin::Postgres(pool) => {
                            let _: (bool,) =
                                sqlx::query_as("SELECT pg_terminate_backend($1::int4)")
                                    .bind(id)
                                    .fetch_one(pool)
                                    .await
                                    .unwrap();
                        }
                    }
                }
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no insert into {table} became blocked within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `url` with some of its parts replaced (`scheme://user[:password]@host:port/database`).
pub fn url_with(
    url: &str,
    user: Option<&str>,
    password: Option<&str>,
    port: Option<u16>,
    database: Option<&str>,
) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or(("", authority));
    let (old_user, old_password) = match userinfo.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (userinfo, None),
    };
    let (host, old_port) = hostport.rsplit_once(':').unwrap_or((hostport, ""));
    let (old_db, query) = match path.split_once('?') {
        Some((db, q)) => (db, format!("?{q}")),
        None => (path, String::new()),
    };
    let user = user.unwrap_or(old_user);
    let password = password
        .or(old_password)
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let port = port.map_or_else(|| old_port.to_owned(), |p| p.to_string());
    let database = database.unwrap_or(old_db);
    format!("{scheme}://{user}{password}@{host}:{port}/{database}{query}")
}

/// The records of `requests` requests, `per_request` variables each, ids `{tag}-{n}`.
pub fn records(tag: &str, requests: usize, per_request: usize) -> Vec<Record> {
    (0..requests)
        .flat_map(|n| {
            let id: Arc<str> = Arc::from(format!("{tag}-{n}"));
            (0..per_request).map(move |v| {
                Record::new(
                    id.clone(),
                    format!("var{v}"),
                    n as i64,
                    "POST",
                    Some("/load"),
                )
            })
        })
        .collect()
}

// ------------------------------------------------------------------------------------ scenarios

async fn item(vars: Vars, Path(id): Path<u32>) -> String {
    vars.set("item", id).unwrap();
    vars.set("user", "o'brien \"the\" `user`").unwrap();
    vars.set("ratio", f64::from(id) / 4.0).unwrap();
    vars.set("even", id % 2 == 0).unwrap();
    vars.set("tags", serde_json::json!({"id": id, "q": "\"x\""}))
        .unwrap();
    format!("item {id}")
}

/// GET and POST through an axum app with the chest's layer, over real HTTP; then every row is
/// read back with SQL and compared: names, values and their types, one request id per request,
/// method and route template.
pub async fn axum_round_trip<T: Target>(url: &str) {
    let table = unique_table("axum");
    let chest = T::build(url, &table, 4).await.unwrap();
    let app = Router::new()
        .route("/items/{id}", get(item).post(item))
        .route_layer(ChestLayer::new(Recorder::new().chest(chest.clone())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let before = Record::new("", "", 0, "", None).recorded_at();
    let client = crate::common::http_client();
    let mut sent: BTreeMap<String, (&str, u32)> = BTreeMap::new();
    for id in 0..12u32 {
        let method = if id % 3 == 0 { "POST" } else { "GET" };
        let request = match method {
            "POST" => client.post(format!("http://{addr}/items/{id}")),
            _ => client.get(format!("http://{addr}/items/{id}")),
        };
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(response.text().await.unwrap(), format!("item {id}"));
        assert!(
            sent.insert(request_id, (method, id)).is_none(),
            "request ids repeat"
        );
    }
    let after = Record::new("", "", 0, "", None).recorded_at();
    server.abort();

    let admin = T::admin(url).await;
    let rows = admin.rows(&table).await;
    assert_eq!(rows.len(), 12 * 5, "{rows:#?}");
    let mut by_request: BTreeMap<&str, Vec<&Stored>> = BTreeMap::new();
    for row in &rows {
        by_request.entry(&row.request_id).or_default().push(row);
    }
    assert_eq!(
        by_request.keys().copied().collect::<BTreeSet<_>>(),
        sent.keys().map(String::as_str).collect::<BTreeSet<_>>()
    );
    for (request_id, (method, id)) in &sent {
        let rows = &by_request[request_id.as_str()];
        let expected = [
            ("item", Value::from(*id)),
            ("user", Value::from("o'brien \"the\" `user`")),
            ("ratio", Value::from(f64::from(*id) / 4.0)),
            ("even", Value::from(id % 2 == 0)),
            (
                "tags",
                Value::from(serde_json::json!({"id": id, "q": "\"x\""})),
            ),
        ];
        let names: BTreeSet<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, expected.iter().map(|(n, _)| *n).collect());
        for (name, value) in expected {
            let row = rows.iter().find(|r| r.name == name).unwrap();
            let (text, type_name) = T::stored(&value);
            assert_eq!(row.value.as_deref(), Some(text.as_str()), "{name}");
            assert_eq!(row.value_type.as_deref(), Some(type_name), "{name}");
            assert_eq!(row.value_num, value.as_f64(), "{name}");
            assert_eq!(
                Value::from_stored(row.value.as_deref().unwrap(), type_name),
                value
            );
            assert_eq!(row.method.as_deref(), Some(*method));
            assert_eq!(row.route.as_deref(), Some("/items/{id}"));
            let at = row.recorded_at.as_deref().unwrap();
            assert!(
                before.as_str() <= at && at <= after.as_str(),
                "{at} not in {before}..{after}"
            );
        }
    }
    admin.drop_table(&table).await;
}

/// Table names that are not plain identifiers are refused before any SQL is sent; the longest
/// valid one works (its index name fits the server's limit).
pub async fn hostile_table_names<T: Target>(url: &str, longest: usize) {
    let too_long = "t".repeat(longest + 1);
    for table in [
        "chest; DROP TABLE chest",
        "a`b",
        "a\"b",
        "a'b",
        "",
        "1abc",
        "ta ble",
        "tablé",
        "t--",
        "t/**/",
        too_long.as_str(),
    ] {
        for result in [
            T::build(url, table, 1).await.map(drop),
            T::lazy(url, table, Duration::from_secs(1)).map(drop),
        ] {
            match result {
                Err(Error::InvalidTableName { name, .. }) => {
                    assert_eq!(name, table.chars().take(80).collect::<String>())
                }
                other => panic!("table {table:?} was not refused: {other:?}"),
            }
        }
    }
    // The longest name the server allows, twice (the second time the table and its index exist).
    let table = format!("{}{}", unique_table("long"), "x".repeat(longest))
        .chars()
        .take(longest)
        .collect::<String>();
    let admin = T::admin(url).await;
    let chest = T::build(url, &table, 1).await.unwrap();
    chest.write(&records("long", 1, 1)).await.unwrap();
    let again = T::build(url, &table, 1).await.unwrap();
    again.write(&records("long", 1, 1)).await.unwrap();
    assert_eq!(admin.counts(&table).await.0, 2);
    let indexes = admin.indexes(&table).await;
    assert!(indexes.iter().any(|i| i.ends_with("_rid")), "{indexes:?}");
    admin.drop_table(&table).await;
}

/// The values a hostile or careless handler may record, and what must be stored for them.
pub fn awkward_values() -> Vec<(&'static str, Value)> {
    vec![
        (
            "quotes",
            Value::from("it's a \"quote\"; DROP TABLE chest; -- `tick`"),
        ),
        ("backslashes", Value::from("C:\\path\\n \\0 \\\\ \\' end\\")),
        ("nul", Value::from("before\0after\0")),
        ("emoji", Value::from("🦀🎉 ünïcödé 𝄞 \u{200d}")),
        ("megabyte", Value::from("é🦀x".repeat(150_000))),
        ("nan", Value::Float(f64::NAN)),
        ("inf", Value::Float(f64::INFINITY)),
        ("neg_inf", Value::Float(f64::NEG_INFINITY)),
        ("tenth", Value::Float(0.1)),
        ("min", Value::Int(i64::MIN)),
        ("max", Value::Int(i64::MAX)),
        ("yes", Value::Bool(true)),
        (
            "json",
            Value::from(serde_json::json!({"q": "\"'", "nul": "\u{0}", "e": "🦀"})),
        ),
        ("control", Value::from("tab\tcr\rlf\n\u{1b}[0m")),
    ]
}

/// Awkward values, request ids and times are stored exactly (or, where the server cannot hold a
/// character, as [`Target::stored`] says), and read back to the same [`Value`].
pub async fn awkward_values_stored_exactly<T: Target>(url: &str) {
    let table = unique_table("values");
    let chest = T::build(url, &table, 2).await.unwrap();
    let request_id = "'; DROP TABLE chest; -- \"`\\";
    let start = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
    let values = awkward_values();
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, (name, value))| {
            Record::new(request_id, *name, value.clone(), "PATCH", Some("/v/{x}"))
                .at(start + Duration::from_micros(i as u64))
        })
        .chain([
            // Before 1970, and a route-less request.
            Record::new("r2", "old", 1, "GET", None).at(UNIX_EPOCH - Duration::from_micros(1)),
        ])
        .collect();
    chest.write(&records).await.unwrap();

    let admin = T::admin(url).await;
    let rows = admin.rows(&table).await;
    assert_eq!(rows.len(), records.len());
    for (record, row) in records.iter().zip(&rows) {
        let name = &*record.name;
        let (text, type_name) = T::stored(&record.value);
        assert_eq!(row.request_id, &*record.request_id);
        assert_eq!(row.name, name);
        assert!(
            row.value.as_deref() == Some(text.as_str()),
            "{name}: value differs"
        );
        assert_eq!(row.value_type.as_deref(), Some(type_name), "{name}");
        assert_eq!(row.value_num, record.value.as_f64(), "{name}");
        assert_eq!(row.method.as_deref(), Some(&*record.method));
        assert_eq!(row.route.as_deref(), record.route.as_deref());
        assert_eq!(
            row.recorded_at.as_deref(),
            Some(record.recorded_at().as_str()),
            "{name}"
        );
        let back = T::unstore(
            row.value.as_deref().unwrap(),
            row.value_type.as_deref().unwrap(),
        );
        match (&back, &record.value) {
            (Value::Float(a), Value::Float(b)) if b.is_nan() => assert!(a.is_nan()),
            (a, b) => assert!(a == b, "{name}: read back differs"),
        }
    }
    assert_eq!(
        rows[0].recorded_at.as_deref(),
        Some("2023-11-14T22:13:20.123456Z")
    );
    assert_eq!(
        rows.last().unwrap().recorded_at.as_deref(),
        Some("1969-12-31T23:59:59.999999Z")
    );
    assert_eq!(
        rows.iter()
            .find(|r| r.name == "nan")
            .unwrap()
            .value
            .as_deref(),
        Some("NaN")
    );
    assert_eq!(
        rows.iter()
            .find(|r| r.name == "inf")
            .unwrap()
            .value
            .as_deref(),
        Some("inf")
    );
    admin.drop_table(&table).await;
}

/// A `tracing` subscriber that keeps every event (all levels) in memory, for this thread.
pub fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let writer = Buffer(buffer.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    (buffer, tracing::subscriber::set_default(subscriber))
}

/// The name a chest gives itself for `url`: no password, no query.
pub fn expected_name(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let rest = rest.split('?').next().unwrap();
    let (userinfo, place) = rest.rsplit_once('@').unwrap();
    format!("{scheme}://{}@{place}", userinfo.split(':').next().unwrap())
}

/// Refused connections, bad credentials and unknown databases give typed errors that name the
/// chest, say whether a retry can help, and never show a password (nor do names, `Debug` and
/// logs). `bad_login` is a URL (with [`SECRET`]) the server refuses, saying `bad_login_says`;
/// for an unknown database it says `unknown_db_says`.
pub async fn errors_are_typed_and_redacted<T: Target>(
    url: &str,
    bad_login: &str,
    bad_login_says: &str,
    unknown_db_says: &str,
) {
    let (logs, _guard) = capture_logs();
    let table = unique_table("errors");
    let refused = url_with(url, None, Some(SECRET), Some(1), None);
    let unknown_db = url_with(url, None, None, None, Some("chest_no_such_db"));
    let cases = [
        (refused.as_str(), true, "connection refused"),
        (bad_login, false, bad_login_says),
        (unknown_db.as_str(), false, unknown_db_says),
    ];
    let mut secrets = vec![SECRET.to_owned()];
    secrets.extend(password_of(url));
    let assert_redacted = |what: &str, text: &str| {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{what} shows a password: {text}"
            );
        }
    };
    for (bad_url, retryable, says) in cases {
        let name = expected_name(bad_url);

        let lazy = T::lazy(bad_url, &table, Duration::from_secs(1)).unwrap();
        assert_eq!(lazy.name(), name);
        assert_redacted("Debug", &format!("{lazy:?}"));
        assert_redacted("builder Debug", &T::builder_debug(bad_url));
        let error: ChestError = lazy
            .write(&records("err", 1, 1))
            .await
            .expect_err("a write to a bad server must fail");
        let text = error.to_string();
        assert_redacted("ChestError", &text);
        assert_redacted("ChestError Debug", &format!("{error:?}"));
        assert_eq!(error.chest(), name);
        assert_eq!(error.is_retryable(), retryable, "{text}");
        assert!(
            text.to_lowercase().contains(says),
            "{text} should say {says}"
        );

        let eager = T::build(bad_url, &table, 1)
            .await
            .expect_err("connect must fail");
        let text = eager.to_string();
        assert_redacted("Error", &text);
        assert_redacted("Error Debug", &format!("{eager:?}"));
        assert!(
            matches!(eager, Error::Backend { ref chest, .. } if *chest == name),
            "{text}"
        );
        assert!(
            text.to_lowercase().contains(says),
            "{text} should say {says}"
        );
    }
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert_redacted("logs", &logs);
    assert!(!T::admin(url).await.table_exists(&table).await);
}

/// The password of `url`, if it has one.
fn password_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split('/').next()?.rsplit_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then(|| password.to_owned())
}

/// `write_batch` stores a batch once: its id goes into `<table>_batches` in the same transaction,
/// a second write of the id (sequential or concurrent) stores nothing, and what is deduplicated
/// is the batch, never a request: another batch with the same request ids, and plain writes, are
/// all stored. Flask-Chest's query keeps working on the table.
pub async fn batches_are_stored_once<T: Target>(url: &str, quote: char) {
    use chest::{BatchId, Written};

    let table = unique_table("batches");
    let chest = T::build(url, &table, 4).await.unwrap();
    let admin = T::admin(url).await;
    let records = records("same", 5, 2);
    let first = BatchId::new();
    assert_eq!(
        chest.write_batch(first, &records).await.unwrap(),
        Written::Stored
    );
    assert_eq!(
        chest.write_batch(first, &records).await.unwrap(),
        Written::AlreadyStored
    );
    assert_eq!(admin.counts(&table).await, (10, 10));
    // A custom request-id generator may repeat ids: a different batch is still stored.
    let second = BatchId::new();
    assert_eq!(
        chest.write_batch(second, &records).await.unwrap(),
        Written::Stored
    );
    chest.write(&records).await.unwrap();
    assert_eq!(admin.counts(&table).await, (30, 10));
    // Two attempts of one batch at once: one stores it, the other waits for it and stores nothing.
    let third = BatchId::new();
    let (a, b) = tokio::join!(
        chest.write_batch(third, &records),
        chest.write_batch(third, &records)
    );
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|w| *w == Written::Stored);
    assert_eq!(outcomes, [Written::AlreadyStored, Written::Stored]);
    assert_eq!(admin.counts(&table).await, (40, 10));
    let q = |name: &str| format!("{quote}{name}{quote}");
    let batches = format!("{table}_batches");
    assert_eq!(
        admin
            .scalar(format!("SELECT COUNT(*) FROM {}", q(&batches)))
            .await,
        3
    );
    let flask = format!(
        "SELECT COUNT(*) FROM (SELECT unique_id, request_id, name, value FROM {}) f",
        q(&table)
    );
    assert_eq!(admin.scalar(flask).await, 40);
    admin.drop_table(&table).await;
}

/// An existing table without chest's columns is refused (by the chest and by the reader), naming
/// the missing ones; a table made by chest is reused.
pub async fn existing_tables<T: Target>(url: &str, create_partial: String, table: &str) {
    let admin = T::admin(url).await;
    admin.execute(create_partial).await;
    match T::build(url, table, 1).await {
        Err(Error::MissingColumns { table: t, missing }) => {
            assert_eq!(t, table);
            assert_eq!(
                missing,
                ["value_num", "value_type", "method", "route", "recorded_at"]
            );
        }
        other => panic!("a table without chest's columns was accepted: {other:?}"),
    }
    let lazy = T::lazy(url, table, Duration::from_secs(5)).unwrap();
    let error = lazy.write(&records("partial", 1, 1)).await.unwrap_err();
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("recorded_at"), "{error}");
    match chest::read::Reader::open(&reading::with_table(url, table)).await {
        Err(Error::MissingColumns { table: t, missing }) => {
            assert_eq!((t.as_str(), missing.len()), (table, 5));
        }
        other => panic!("a table without chest's columns was read: {other:?}"),
    }
    admin.drop_table(table).await;
}

/// A connection killed while a write is in flight: that write fails, retryably, and wrote
/// nothing (one transaction); the next write reconnects and succeeds.
pub async fn killed_connection<T: Target>(url: &str) {
    let table = unique_table("kill");
    let admin = T::admin(url).await;
    let chest = T::build(url, &table, 1).await.unwrap();
    chest.write(&records("first", 10, 1)).await.unwrap();

    let lock = admin.lock(url, &table).await;
    let writer = chest.clone();
    let write = tokio::spawn(async move { writer.write(&records("killed", 3000, 1)).await });
    admin.kill_blocked_insert(&table).await;
    lock.release().await;
    let error = tokio::time::timeout(Duration::from_secs(60), write)
        .await
        .expect("the killed write must end")
        .unwrap()
        .expect_err("the killed write must fail");
    assert!(error.is_retryable(), "{error}");
    assert_eq!(error.chest(), chest.name());

    chest.write(&records("after", 20, 1)).await.unwrap();
    let rows = admin.rows(&table).await;
    assert_eq!(rows.len(), 30);
    assert!(rows.iter().all(|r| !r.request_id.starts_with("killed")));
    admin.drop_table(&table).await;
}

// ---------------------------------------------------------------------------- through Batched

#[cfg(feature = "batch")]
mod batched {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use axum::routing::post;
    use axum::Router;
    use chest::batch::{Batched, OverflowPolicy};
    use chest::layer::ChestLayer;
    use chest::{Chest, Recorder, Vars};

    use super::{unique_table, Target};

    /// A batched chest for `chest`, spooling into `dir`: generous bounds (the test counts every
    /// record), quick retries.
    fn batched(chest: impl Chest, dir: &tempfile::TempDir) -> Batched {
        Batched::builder(chest)
            .max_batch_records(5_000)
            .max_batch_bytes(8 << 20)
            .linger(Duration::from_millis(20))
            .max_in_flight(2)
            .queue_capacity(1_000_000)
            .queue_max_bytes(1 << 30)
            .overflow(OverflowPolicy::Block(Duration::from_secs(60)))
            .backoff(Duration::from_millis(20), Duration::from_millis(500))
            .retry_budget(Duration::from_secs(120))
            .spool(dir.path().join("spool.db"))
            .build()
            .expect("batched chest")
    }

    async fn handler(vars: Vars, body: String) -> &'static str {
        vars.set("client", body).unwrap();
        vars.set("n", 1).unwrap();
        "ok"
    }

    /// Serves an app recording two variables per request into `chest`; `clients` concurrent
    /// clients send `requests` requests each, and go on while `more` is set. Returns the request
    /// ids the responses carried.
    async fn load(
        chest: Batched,
        clients: usize,
        requests: usize,
        more: Arc<AtomicBool>,
    ) -> Vec<String> {
        let app = Router::new()
            .route("/load", post(handler))
            .route_layer(ChestLayer::new(Recorder::new().chest(chest)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let client = crate::common::http_client();
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let (client, more) = (client.clone(), more.clone());
                tokio::spawn(async move {
                    let mut ids = Vec::with_capacity(requests);
                    while ids.len() < requests || more.load(Ordering::Relaxed) {
                        let response = client
                            .post(format!("http://{addr}/load"))
                            .body(format!("client-{c}"))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(response.status(), 200);
                        ids.push(
                            response.headers()["x-request-id"]
                                .to_str()
                                .unwrap()
                                .to_owned(),
                        );
                    }
                    ids
                })
            })
            .collect();
        let mut ids = Vec::with_capacity(clients * requests);
        for task in tasks {
            ids.extend(task.await.unwrap());
        }
        server.abort();
        ids
    }

    /// After the load: every request's two rows are there, once.
    async fn assert_all_stored<T: Target>(
        url: &str,
        table: &str,
        ids: &[String],
        batched: &Batched,
    ) {
        let stats = batched.shutdown(Duration::from_secs(120)).await;
        let rows = (ids.len() * 2) as u64;
        assert!(stats.is_balanced(), "{stats:?}");
        assert_eq!(stats.written, rows, "{stats:?}");
        assert_eq!(
            stats.dropped.total() + stats.dead_lettered + stats.spool_records,
            0,
            "{stats:?}"
        );
        let admin = T::admin(url).await;
        let (count, distinct) = admin.counts(table).await;
        assert_eq!(count as u64, rows, "rows in the table");
        assert_eq!(distinct, count, "duplicated rows");
        let stored: BTreeSet<String> = admin.request_ids(table).await.into_iter().collect();
        let sent: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(sent.len(), ids.len(), "request ids repeat");
        assert!(
            stored == sent,
            "stored request ids differ from the responses'"
        );
        admin.drop_table(table).await;
    }

    /// `clients` × `requests` requests through a batched chest: exact row count, no duplicates.
    pub async fn load_through_batched<T: Target>(url: &str, clients: usize, requests: usize) {
        let table = unique_table("load");
        let dir = tempfile::tempdir().unwrap();
        let batched = batched(T::build(url, &table, 4).await.unwrap(), &dir);
        let ids = load(batched.clone(), clients, requests, Arc::default()).await;
        assert_all_stored::<T>(url, &table, &ids, &batched).await;
    }

    /// Connections killed three times in the middle of a load: the batched chest retries and
    /// nothing is lost or duplicated.
    pub async fn killed_connections_under_load<T: Target>(url: &str) {
        let table = unique_table("killload");
        let dir = tempfile::tempdir().unwrap();
        let chest = T::build(url, &table, 4).await.unwrap();
        let batched = batched(chest, &dir);
        let admin = Arc::new(T::admin(url).await);
        // The clients go on until the third kill: the killer needs inserts to block.
        let more = Arc::new(AtomicBool::new(true));
        let killer = {
            let (admin, url, table, more) =
                (admin.clone(), url.to_owned(), table.clone(), more.clone());
            tokio::spawn(async move {
                for _ in 0..3 {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let lock = admin.lock(&url, &table).await;
                    admin.kill_blocked_insert(&table).await;
                    lock.release().await;
                }
                more.store(false, Ordering::Relaxed);
            })
        };
        let ids = load(batched.clone(), 16, 250, more).await;
        killer.await.unwrap();
        let retried = batched.stats().retried;
        assert!(
            retried >= 1,
            "the killed writes were not retried: {:?}",
            batched.stats()
        );
        assert_all_stored::<T>(url, &table, &ids, &batched).await;
    }
}

#[cfg(feature = "batch")]
pub use batched::{killed_connections_under_load, load_through_batched};
