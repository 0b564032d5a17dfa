//! The layouts and their writers. L0 reproduces chest's `Writer::insert` (chest/src/chests/sql/sqlite).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{Connection, Statement, TransactionBehavior};

use crate::{Record, Value};

const TABLE: &str = "chest";
/// Rows per transaction.
const TX_ROWS: usize = 5_000;
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const RETENTION_SECS: i64 = 24 * 3600;

#[derive(Clone, Copy, Debug)]
pub struct Flat {
    /// recorded_at as RFC 3339 text (else INTEGER unix micros).
    pub text_time: bool,
    /// value_type as text (else INTEGER code 0..4).
    pub text_type: bool,
    pub autoinc: bool,
    pub idx_request: bool,
    pub idx_time: bool,
    /// request_id as a 16-byte BLOB (the UUID's bytes) instead of its 36-char text.
    pub blob_id: bool,
    /// One `value` column with no affinity holding the native int / real / text (no value_num).
    pub typed_value: bool,
    /// Rows per multi-row INSERT.
    pub chunk: usize,
    /// PRAGMA page_size (None: SQLite's default, 4096).
    pub page_size: Option<u32>,
    /// Bind texts with SQLITE_STATIC through rusqlite::ffi (no copy by SQLite) instead of
    /// rusqlite's raw_bind_parameter (SQLITE_TRANSIENT: SQLite copies every text).
    pub static_text: bool,
}

const L0F: Flat = Flat {
    text_time: true,
    text_type: true,
    autoinc: true,
    idx_request: true,
    idx_time: true,
    blob_id: false,
    typed_value: false,
    chunk: 64,
    page_size: None,
    static_text: false,
};
const L1F: Flat = Flat {
    text_time: false,
    text_type: false,
    ..L0F
};

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Flat(Flat),
    /// `<t>_requests` + `<t>_values` + view `<t>`.
    Split(SplitCfg),
}

#[derive(Clone, Copy, Debug)]
pub struct SplitCfg {
    /// An index on `<t>_requests.recorded_at` too.
    pub idx_time: bool,
    /// values: one native-typed `value` column, no value_num.
    pub typed_value: bool,
    pub page_size: Option<u32>,
    /// Bind through rusqlite::ffi, texts SQLITE_STATIC (only with typed_value).
    pub static_text: bool,
}

const L4S: SplitCfg = SplitCfg {
    idx_time: false,
    typed_value: false,
    page_size: None,
    static_text: false,
};
const S1S: SplitCfg = SplitCfg {
    idx_time: true,
    typed_value: true,
    page_size: Some(16384),
    static_text: false,
};

#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub name: &'static str,
    pub about: &'static str,
    pub per_request: usize,
    pub kind: Kind,
}

pub const LAYOUTS: &[Layout] = &[
    Layout {
        name: "L0",
        about: "current table (TEXT time and type, AUTOINCREMENT, 2 indexes)",
        per_request: 3,
        kind: Kind::Flat(L0F),
    },
    Layout {
        name: "L0x1",
        about: "L0, 1 record per request",
        per_request: 1,
        kind: Kind::Flat(L0F),
    },
    Layout {
        name: "L1",
        about: "L0 + recorded_at INTEGER micros, value_type INTEGER",
        per_request: 3,
        kind: Kind::Flat(L1F),
    },
    Layout {
        name: "L1x1",
        about: "L1, 1 record per request",
        per_request: 1,
        kind: Kind::Flat(L1F),
    },
    Layout {
        name: "L2",
        about: "L1 without AUTOINCREMENT",
        per_request: 3,
        kind: Kind::Flat(Flat {
            autoinc: false,
            ..L1F
        }),
    },
    Layout {
        name: "L3",
        about: "L1 without the recorded_at index",
        per_request: 3,
        kind: Kind::Flat(Flat {
            idx_time: false,
            ..L1F
        }),
    },
    Layout {
        name: "L4",
        about: "split requests/values + view (per value row); request_id index only",
        per_request: 3,
        kind: Kind::Split(L4S),
    },
    Layout {
        name: "L4x1",
        about: "L4, 1 record per request",
        per_request: 1,
        kind: Kind::Split(L4S),
    },
    Layout {
        name: "L4t",
        about: "L4 + index on requests.recorded_at",
        per_request: 3,
        kind: Kind::Split(SplitCfg {
            idx_time: true,
            ..L4S
        }),
    },
    Layout {
        name: "L4tx1",
        about: "L4t, 1 record per request",
        per_request: 1,
        kind: Kind::Split(SplitCfg {
            idx_time: true,
            ..L4S
        }),
    },
    Layout {
        name: "X1blob",
        about: "L1 + request_id as 16-byte BLOB",
        per_request: 3,
        kind: Kind::Flat(Flat {
            blob_id: true,
            ..L1F
        }),
    },
    Layout {
        name: "X2typed",
        about: "L1 + one native-typed value column, no value_num",
        per_request: 3,
        kind: Kind::Flat(Flat {
            typed_value: true,
            ..L1F
        }),
    },
    Layout {
        name: "X3page16k",
        about: "L1 + page_size 16384",
        per_request: 3,
        kind: Kind::Flat(Flat {
            page_size: Some(16384),
            ..L1F
        }),
    },
    Layout {
        name: "X4chunk256",
        about: "L1 + 256-row inserts",
        per_request: 3,
        kind: Kind::Flat(Flat { chunk: 256, ..L1F }),
    },
    Layout {
        name: "X5flat",
        about: "L2 + typed value + page 16k, both indexes",
        per_request: 3,
        kind: Kind::Flat(Flat {
            autoinc: false,
            typed_value: true,
            page_size: Some(16384),
            ..L1F
        }),
    },
    Layout {
        name: "X6static",
        about: "L0 with texts bound SQLITE_STATIC (ffi), no SQLite copy",
        per_request: 3,
        kind: Kind::Flat(Flat {
            static_text: true,
            ..L0F
        }),
    },
    Layout {
        name: "X7flatst",
        about: "X5flat + SQLITE_STATIC texts",
        per_request: 3,
        kind: Kind::Flat(Flat {
            autoinc: false,
            typed_value: true,
            page_size: Some(16384),
            static_text: true,
            ..L1F
        }),
    },
    Layout {
        name: "S1",
        about: "L4t + typed value + page 16k (split, both indexes)",
        per_request: 3,
        kind: Kind::Split(S1S),
    },
    Layout {
        name: "S1x1",
        about: "S1, 1 record per request",
        per_request: 1,
        kind: Kind::Split(S1S),
    },
    Layout {
        name: "S2static",
        about: "S1 + SQLITE_STATIC texts (ffi)",
        per_request: 3,
        kind: Kind::Split(SplitCfg {
            static_text: true,
            ..S1S
        }),
    },
    Layout {
        name: "S2x1",
        about: "S2static, 1 record per request",
        per_request: 1,
        kind: Kind::Split(SplitCfg {
            static_text: true,
            ..S1S
        }),
    },
    Layout {
        name: "S3",
        about: "L4t + typed value + SQLITE_STATIC texts, 4 KiB pages",
        per_request: 3,
        kind: Kind::Split(SplitCfg {
            static_text: true,
            page_size: None,
            ..S1S
        }),
    },
    Layout {
        name: "S3x1",
        about: "S3, 1 record per request",
        per_request: 1,
        kind: Kind::Split(SplitCfg {
            static_text: true,
            page_size: None,
            ..S1S
        }),
    },
    Layout {
        name: "F0noidx",
        about: "floor: L2 with no index at all",
        per_request: 3,
        kind: Kind::Flat(Flat {
            autoinc: false,
            idx_request: false,
            idx_time: false,
            ..L1F
        }),
    },
    Layout {
        name: "F1noidx",
        about: "floor: X5flat with no index at all",
        per_request: 3,
        kind: Kind::Flat(Flat {
            autoinc: false,
            idx_request: false,
            idx_time: false,
            typed_value: true,
            page_size: Some(16384),
            ..L1F
        }),
    },
];

pub struct Stats {
    pub cpu: Duration,
    pub sys: Duration,
    pub wall: Duration,
}

/// (user + system, system) CPU time of the calling thread.
fn thread_cpu() -> (Duration, Duration) {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(rc, 0);
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    (t(usage.ru_utime) + t(usage.ru_stime), t(usage.ru_stime))
}

fn type_code(v: &Value) -> i64 {
    // int 0, float 1, bool 2, text 3, json 4
    match v {
        Value::Int(_) => 0,
        Value::Float(_) => 1,
        Value::Text(_) => 3,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Text(_) => "text",
    }
}

/// chest's `Value::text_in`.
fn text_in<'a>(v: &'a Value, scratch: &'a mut String) -> &'a str {
    scratch.clear();
    match v {
        Value::Text(t) => t,
        Value::Int(i) => {
            scratch.push_str(itoa::Buffer::new().format(*i));
            scratch
        }
        Value::Float(x) => {
            use std::fmt::Write;
            let _ = write!(scratch, "{x}");
            scratch
        }
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match *v {
        Value::Int(i) => Some(i as f64),
        Value::Float(f) if f.is_finite() => Some(f),
        _ => None,
    }
}

pub fn unix_micros(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// chest's `push_utc_micros` (4-digit years).
pub fn push_utc_micros(out: &mut String, micros: i64) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let year = y as u32;
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let fields = [
        (0..4, year),
        (5..7, m),
        (8..10, d),
        (11..13, (rem / 3600) as u32),
        (14..16, (rem % 3600 / 60) as u32),
        (17..19, (rem % 60) as u32),
        (20..26, frac as u32),
    ];
    for (at, mut value) in fields {
        for digit in text[at].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `INSERT INTO "table" ("c1", ...) VALUES (?, ...), ...` for `rows` rows.
fn insert_sql(table: &str, columns: &[&str], rows: usize) -> String {
    let cols: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
    let mut sql = format!("INSERT INTO \"{table}\" ({}) VALUES ", cols.join(", "));
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..columns.len() {
            if col > 0 {
                sql.push_str(", ");
            }
            sql.push('?');
        }
        sql.push(')');
    }
    sql
}

fn flat_columns(f: &Flat) -> Vec<&'static str> {
    let mut c = vec!["request_id", "name", "value"];
    if !f.typed_value {
        c.push("value_num");
    }
    c.extend(["value_type", "method", "route", "recorded_at"]);
    c
}

fn ddl(layout: &Layout) -> Vec<String> {
    let t = TABLE;
    let mut out = Vec::new();
    match layout.kind {
        Kind::Flat(f) => {
            let id = if f.autoinc {
                "INTEGER PRIMARY KEY AUTOINCREMENT"
            } else {
                "INTEGER PRIMARY KEY"
            };
            let rid = if f.blob_id {
                "BLOB NOT NULL"
            } else {
                "TEXT NOT NULL"
            };
            let value = if f.typed_value {
                "\"value\"".to_owned()
            } else {
                "\"value\" TEXT, \"value_num\" REAL".to_owned()
            };
            let vt = if f.text_type { "TEXT" } else { "INTEGER" };
            let at = if f.text_time { "TEXT" } else { "INTEGER" };
            out.push(format!(
                "CREATE TABLE IF NOT EXISTS \"{t}\" (\"unique_id\" {id}, \"request_id\" {rid}, \"name\" TEXT NOT NULL, \
                 {value}, \"value_type\" {vt}, \"method\" TEXT, \"route\" TEXT, \"recorded_at\" {at})"
            ));
            if f.idx_request {
                out.push(format!(
                    "CREATE INDEX IF NOT EXISTS \"{t}_request_id\" ON \"{t}\" (\"request_id\")"
                ));
            }
            if f.idx_time {
                out.push(format!(
                    "CREATE INDEX IF NOT EXISTS \"{t}_recorded_at\" ON \"{t}\" (\"recorded_at\")"
                ));
            }
        }
        Kind::Split(c) => {
            out.push(format!(
                "CREATE TABLE IF NOT EXISTS \"{t}_requests\" (\"id\" INTEGER PRIMARY KEY, \"request_id\" TEXT NOT NULL, \
                 \"method\" TEXT, \"route\" TEXT, \"recorded_at\" INTEGER)"
            ));
            out.push(format!("CREATE INDEX IF NOT EXISTS \"{t}_request_id\" ON \"{t}_requests\" (\"request_id\")"));
            if c.idx_time {
                out.push(format!("CREATE INDEX IF NOT EXISTS \"{t}_recorded_at\" ON \"{t}_requests\" (\"recorded_at\")"));
            }
            let value = if c.typed_value {
                "\"value\""
            } else {
                "\"value\" TEXT, \"value_num\" REAL"
            };
            let num = if c.typed_value {
                ""
            } else {
                "v.value_num AS value_num,"
            };
            out.push(format!(
                "CREATE TABLE IF NOT EXISTS \"{t}_values\" (\"unique_id\" INTEGER PRIMARY KEY AUTOINCREMENT, \
                 \"request\" INTEGER NOT NULL, \"name\" TEXT NOT NULL, {value}, \"value_type\" INTEGER)"
            ));
            out.push(format!(
                "CREATE VIEW IF NOT EXISTS \"{t}\" AS SELECT v.unique_id AS unique_id, r.request_id AS request_id, \
                 v.name AS name, v.value AS value, {num} v.value_type AS value_type, \
                 r.method AS method, r.route AS route, r.recorded_at AS recorded_at \
                 FROM \"{t}_values\" v JOIN \"{t}_requests\" r ON r.id = v.request"
            ));
        }
    }
    // chest's batch ids (Dialect::create_batches_table for SQLite).
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS \"{t}_batches\" (batch_id TEXT NOT NULL PRIMARY KEY, written_at BIGINT NOT NULL) WITHOUT ROWID"
    ));
    out.push(format!(
        "CREATE INDEX IF NOT EXISTS \"{t}_batches_at\" ON \"{t}_batches\" (written_at)"
    ));
    out
}

fn open(layout: &Layout, path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let page = match layout.kind {
        Kind::Flat(f) => f.page_size,
        Kind::Split(c) => c.page_size,
    };
    if let Some(p) = page {
        conn.pragma_update(None, "page_size", p).unwrap();
    }
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.pragma_update(None, "cache_size", -65_536).unwrap();
    conn.set_prepared_statement_cache_capacity(256 + 8);
    for sql in ddl(layout) {
        conn.execute_batch(&sql).unwrap();
    }
    conn
}

/// A pseudo-random 128-bit batch id (splitmix64 twice), formatted by the writer as chest does.
fn batch_id(n: u64) -> u128 {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (u128::from(mix(2 * n)) << 64) | u128::from(mix(2 * n + 1))
}

pub fn run_writer(layout: &Layout, path: &Path, records: &[Record]) -> Stats {
    let conn = open(layout, path);
    let claim =
        format!("INSERT OR IGNORE INTO \"{TABLE}_batches\" (batch_id, written_at) VALUES (?1, ?2)");
    let prune = format!("DELETE FROM \"{TABLE}_batches\" WHERE written_at < ?1");
    let mut split = SplitState { last: None };
    let (inserts, chunk) = match layout.kind {
        Kind::Flat(f) => {
            let cols = flat_columns(&f);
            (
                (0..=f.chunk)
                    .map(|n| insert_sql(TABLE, &cols, n))
                    .collect::<Vec<_>>(),
                f.chunk,
            )
        }
        Kind::Split(_) => (Vec::new(), 64),
    };
    let typed = matches!(
        layout.kind,
        Kind::Split(SplitCfg {
            typed_value: true,
            ..
        })
    );
    let value_cols: &[&str] = if typed {
        &["request", "name", "value", "value_type"]
    } else {
        &["request", "name", "value", "value_num", "value_type"]
    };
    let split_sql = SplitSql {
        requests: (0..=chunk)
            .map(|n| {
                insert_sql(
                    &format!("{TABLE}_requests"),
                    &["id", "request_id", "method", "route", "recorded_at"],
                    n,
                )
            })
            .collect(),
        values: (0..=chunk)
            .map(|n| insert_sql(&format!("{TABLE}_values"), value_cols, n))
            .collect(),
        next_id: format!("SELECT COALESCE(MAX(id), 0) + 1 FROM \"{TABLE}_requests\""),
        typed,
    };
    let mut pruned_at: Option<Instant> = None;
    let mut statics = StaticWriter {
        stmts: Vec::new(),
        arena: String::new(),
        spans: Vec::new(),
    };
    let mut statics2 = StaticWriter {
        stmts: Vec::new(),
        arena: String::new(),
        spans: Vec::new(),
    };

    let cpu0 = thread_cpu();
    let wall0 = Instant::now();
    let mut conn = conn;
    for (n, txr) in records.chunks(TX_ROWS).enumerate() {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        {
            let mut c = tx.prepare_cached(&claim).unwrap();
            assert_eq!(
                c.execute(rusqlite::params![batch_id(n as u64).to_string_hex(), now])
                    .unwrap(),
                1
            );
        }
        match layout.kind {
            Kind::Flat(f) if f.static_text => statics.insert(&tx, &f, &inserts, txr),
            Kind::Flat(f) => insert_flat(&tx, &f, &inserts, txr).unwrap(),
            Kind::Split(c) if c.static_text => insert_split_static(
                &tx,
                &split_sql,
                &mut split,
                &mut statics,
                &mut statics2,
                chunk,
                txr,
            ),
            Kind::Split(_) => insert_split(&tx, &split_sql, &mut split, chunk, txr).unwrap(),
        }
        let due = pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY);
        if due {
            tx.execute(&prune, [now - RETENTION_SECS]).unwrap();
        }
        tx.commit().unwrap();
        if due {
            pruned_at = Some(Instant::now());
        }
    }
    let wall = wall0.elapsed();
    let cpu1 = thread_cpu();
    statics.finalize();
    statics2.finalize();
    drop(conn);
    Stats {
        cpu: cpu1.0 - cpu0.0,
        sys: cpu1.1 - cpu0.1,
        wall,
    }
}

trait Hex {
    fn to_string_hex(self) -> String;
}
impl Hex for u128 {
    fn to_string_hex(self) -> String {
        format!("{self:032x}")
    }
}

/// 16 bytes of a UUID's text form (chest would fall back to text for non-UUID ids).
fn uuid_bytes(text: &str) -> [u8; 16] {
    *uuid::Uuid::parse_str(text).expect("a UUID").as_bytes()
}

/// chest's `Writer::insert`, generalised over the flat layouts.
fn insert_flat(
    tx: &rusqlite::Transaction<'_>,
    f: &Flat,
    inserts: &[String],
    records: &[Record],
) -> rusqlite::Result<()> {
    let width = flat_columns(f).len();
    let mut time: Option<SystemTime> = None;
    let mut time_text = String::new();
    let mut micros = 0i64;
    let mut value_text = String::new();
    let mut last_id: Option<&Arc<str>> = None;
    let mut id_bytes = [0u8; 16];
    let mut full: Option<rusqlite::CachedStatement<'_>> = None;
    for chunk in records.chunks(f.chunk) {
        let mut last: Option<rusqlite::CachedStatement<'_>> = None;
        let stmt: &mut Statement<'_> = if chunk.len() == f.chunk {
            match &mut full {
                Some(stmt) => stmt,
                none => none.insert(tx.prepare_cached(&inserts[f.chunk])?),
            }
        } else {
            last.insert(tx.prepare_cached(&inserts[chunk.len()])?)
        };
        let mut at = 1;
        for record in chunk {
            if time != Some(record.time) {
                time = Some(record.time);
                micros = unix_micros(record.time);
                if f.text_time {
                    time_text.clear();
                    push_utc_micros(&mut time_text, micros);
                }
            }
            let mut col = at;
            if f.blob_id {
                if last_id.is_none_or(|l| !Arc::ptr_eq(l, &record.request_id)) {
                    last_id = Some(&record.request_id);
                    id_bytes = uuid_bytes(&record.request_id);
                }
                stmt.raw_bind_parameter(col, &id_bytes[..])?;
            } else {
                stmt.raw_bind_parameter(col, &*record.request_id)?;
            }
            stmt.raw_bind_parameter(col + 1, &*record.name)?;
            col += 2;
            if f.typed_value {
                match &record.value {
                    Value::Int(i) => stmt.raw_bind_parameter(col, *i)?,
                    Value::Float(x) if x.is_finite() => stmt.raw_bind_parameter(col, *x)?,
                    v => stmt.raw_bind_parameter(col, text_in(v, &mut value_text))?,
                }
                col += 1;
            } else {
                stmt.raw_bind_parameter(col, text_in(&record.value, &mut value_text))?;
                stmt.raw_bind_parameter(col + 1, as_f64(&record.value))?;
                col += 2;
            }
            if f.text_type {
                stmt.raw_bind_parameter(col, type_name(&record.value))?;
            } else {
                stmt.raw_bind_parameter(col, type_code(&record.value))?;
            }
            stmt.raw_bind_parameter(col + 1, &*record.method)?;
            stmt.raw_bind_parameter(col + 2, record.route.as_deref())?;
            if f.text_time {
                stmt.raw_bind_parameter(col + 3, time_text.as_str())?;
            } else {
                stmt.raw_bind_parameter(col + 3, micros)?;
            }
            at += width;
        }
        stmt.raw_execute()?;
    }
    Ok(())
}

struct SplitSql {
    requests: Vec<String>,
    values: Vec<String>,
    next_id: String,
    typed: bool,
}

struct SplitState {
    /// The last request written (its row is stored), carried across transactions.
    last: Option<(Arc<str>, i64)>,
}

/// Executes `sql[n]` chunks over `items`, binding each item's columns with `bind`.
fn chunked<T>(
    tx: &rusqlite::Transaction<'_>,
    sql: &[String],
    chunk_rows: usize,
    width: usize,
    items: &[T],
    mut bind: impl FnMut(&mut Statement<'_>, usize, &T) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut full: Option<rusqlite::CachedStatement<'_>> = None;
    for chunk in items.chunks(chunk_rows) {
        let mut last: Option<rusqlite::CachedStatement<'_>> = None;
        let stmt: &mut Statement<'_> = if chunk.len() == chunk_rows {
            match &mut full {
                Some(stmt) => stmt,
                none => none.insert(tx.prepare_cached(&sql[chunk_rows])?),
            }
        } else {
            last.insert(tx.prepare_cached(&sql[chunk.len()])?)
        };
        let mut at = 1;
        for item in chunk {
            bind(stmt, at, item)?;
            at += width;
        }
        stmt.raw_execute()?;
    }
    Ok(())
}

fn insert_split(
    tx: &rusqlite::Transaction<'_>,
    sql: &SplitSql,
    state: &mut SplitState,
    chunk_rows: usize,
    records: &[Record],
) -> rusqlite::Result<()> {
    let mut next: i64 = tx
        .prepare_cached(&sql.next_id)?
        .query_row([], |r| r.get(0))?;
    // The request rows this transaction adds, and each record's request row id.
    let mut requests: Vec<(&Record, i64)> = Vec::new();
    let mut ids: Vec<i64> = Vec::with_capacity(records.len());
    let mut last: Option<(&Arc<str>, i64)> = state.last.as_ref().map(|(a, i)| (a, *i));
    for record in records {
        let id = match last {
            Some((l, id)) if Arc::ptr_eq(l, &record.request_id) || **l == *record.request_id => id,
            _ => {
                let id = next;
                next += 1;
                requests.push((record, id));
                id
            }
        };
        last = Some((&record.request_id, id));
        ids.push(id);
    }
    let carry = last.map(|(a, i)| (a.clone(), i));
    chunked(
        tx,
        &sql.requests,
        chunk_rows,
        5,
        &requests,
        |stmt, at, (r, id)| {
            stmt.raw_bind_parameter(at, *id)?;
            stmt.raw_bind_parameter(at + 1, &*r.request_id)?;
            stmt.raw_bind_parameter(at + 2, &*r.method)?;
            stmt.raw_bind_parameter(at + 3, r.route.as_deref())?;
            stmt.raw_bind_parameter(at + 4, unix_micros(r.time))
        },
    )?;
    let mut value_text = String::new();
    let pairs: Vec<(&Record, i64)> = records.iter().zip(ids).collect();
    if sql.typed {
        chunked(
            tx,
            &sql.values,
            chunk_rows,
            4,
            &pairs,
            |stmt, at, (r, id)| {
                stmt.raw_bind_parameter(at, *id)?;
                stmt.raw_bind_parameter(at + 1, &*r.name)?;
                match &r.value {
                    Value::Int(i) => stmt.raw_bind_parameter(at + 2, *i)?,
                    Value::Float(x) if x.is_finite() => stmt.raw_bind_parameter(at + 2, *x)?,
                    v => stmt.raw_bind_parameter(at + 2, text_in(v, &mut value_text))?,
                }
                stmt.raw_bind_parameter(at + 3, type_code(&r.value))
            },
        )?;
    } else {
        chunked(
            tx,
            &sql.values,
            chunk_rows,
            5,
            &pairs,
            |stmt, at, (r, id)| {
                stmt.raw_bind_parameter(at, *id)?;
                stmt.raw_bind_parameter(at + 1, &*r.name)?;
                stmt.raw_bind_parameter(at + 2, text_in(&r.value, &mut value_text))?;
                stmt.raw_bind_parameter(at + 3, as_f64(&r.value))?;
                stmt.raw_bind_parameter(at + 4, type_code(&r.value))
            },
        )?;
    }
    state.last = carry;
    Ok(())
}

/// `ffi` version of `chunked`: binds with `bind(stmt, first_parameter, item)`, steps, resets.
fn ffi_chunked<T>(
    w: &mut StaticWriter,
    tx: &rusqlite::Transaction<'_>,
    sql: &[String],
    chunk_rows: usize,
    width: i32,
    items: &[T],
    mut bind: impl FnMut(*mut rusqlite::ffi::sqlite3_stmt, i32, &T),
) {
    use rusqlite::ffi;
    for chunk in items.chunks(chunk_rows) {
        let stmt = w.stmt(tx, &sql[chunk.len()], chunk.len());
        let mut at = 1;
        for item in chunk {
            bind(stmt, at, item);
            at += width;
        }
        unsafe {
            let rc = ffi::sqlite3_step(stmt);
            assert_eq!(rc, ffi::SQLITE_DONE);
            ffi::sqlite3_reset(stmt);
        }
    }
}

/// `insert_split` (typed values) bound through ffi with SQLITE_STATIC texts: no text is copied
/// or formatted by the writer.
fn insert_split_static(
    tx: &rusqlite::Transaction<'_>,
    sql: &SplitSql,
    state: &mut SplitState,
    requests_w: &mut StaticWriter,
    values_w: &mut StaticWriter,
    chunk_rows: usize,
    records: &[Record],
) {
    use rusqlite::ffi;
    assert!(sql.typed);
    let mut next: i64 = tx
        .prepare_cached(&sql.next_id)
        .unwrap()
        .query_row([], |r| r.get(0))
        .unwrap();
    let mut requests: Vec<(&Record, i64)> = Vec::new();
    let mut pairs: Vec<(&Record, i64)> = Vec::with_capacity(records.len());
    let mut last: Option<(&Arc<str>, i64)> = state.last.as_ref().map(|(a, i)| (a, *i));
    for record in records {
        let id = match last {
            Some((l, id)) if Arc::ptr_eq(l, &record.request_id) || **l == *record.request_id => id,
            _ => {
                let id = next;
                next += 1;
                requests.push((record, id));
                id
            }
        };
        last = Some((&record.request_id, id));
        pairs.push((record, id));
    }
    let carry = last.map(|(a, i)| (a.clone(), i));
    let text = |stmt, at: i32, s: &[u8]| unsafe {
        ffi::sqlite3_bind_text(
            stmt,
            at,
            s.as_ptr().cast(),
            s.len() as i32,
            ffi::SQLITE_STATIC(),
        );
    };
    ffi_chunked(
        requests_w,
        tx,
        &sql.requests,
        chunk_rows,
        5,
        &requests,
        |stmt, at, (r, id)| unsafe {
            ffi::sqlite3_bind_int64(stmt, at, *id);
            text(stmt, at + 1, r.request_id.as_bytes());
            text(stmt, at + 2, r.method.as_bytes());
            match r.route.as_deref() {
                Some(route) => text(stmt, at + 3, route.as_bytes()),
                None => {
                    ffi::sqlite3_bind_null(stmt, at + 3);
                }
            }
            ffi::sqlite3_bind_int64(stmt, at + 4, unix_micros(r.time));
        },
    );
    let mut scratch: Vec<String> = Vec::new(); // NaN/inf texts (none in this data), kept alive
    ffi_chunked(
        values_w,
        tx,
        &sql.values,
        chunk_rows,
        4,
        &pairs,
        |stmt, at, (r, id)| unsafe {
            ffi::sqlite3_bind_int64(stmt, at, *id);
            text(stmt, at + 1, r.name.as_bytes());
            match &r.value {
                Value::Int(i) => {
                    ffi::sqlite3_bind_int64(stmt, at + 2, *i);
                }
                Value::Float(x) if x.is_finite() => {
                    ffi::sqlite3_bind_double(stmt, at + 2, *x);
                }
                Value::Float(x) => {
                    scratch.push(format!("{x}"));
                    ffi::sqlite3_bind_text(
                        stmt,
                        at + 2,
                        scratch.last().unwrap().as_ptr().cast(),
                        scratch.last().unwrap().len() as i32,
                        ffi::SQLITE_TRANSIENT(),
                    );
                }
                Value::Text(t) => text(stmt, at + 2, t.as_bytes()),
            }
            ffi::sqlite3_bind_int64(stmt, at + 3, type_code(&r.value));
        },
    );
    state.last = carry;
}

fn count(conn: &Connection, sql: &str) -> Result<i64, String> {
    conn.query_row(sql, [], |r| r.get(0))
        .map_err(|e| format!("{sql}: {e}"))
}

/// The file holds every row: Flask-Chest's query on `<t>` counts `rows`, one batch id per
/// transaction, and (split) one request row per request.
pub fn verify(layout: &Layout, path: &Path, rows: usize, requests: usize) -> Result<(), String> {
    let conn = Connection::open(path).map_err(|e| e.to_string())?;
    let mut checks = vec![
        (
            format!(
                "SELECT COUNT(*) FROM (SELECT unique_id, request_id, name, value FROM \"{TABLE}\")"
            ),
            rows,
        ),
        (
            format!("SELECT COUNT(*) FROM \"{TABLE}_batches\""),
            rows.div_ceil(TX_ROWS),
        ),
    ];
    if let Kind::Split(_) = layout.kind {
        checks.push((
            format!("SELECT COUNT(*) FROM \"{TABLE}_requests\""),
            requests,
        ));
        checks.push((format!("SELECT COUNT(*) FROM \"{TABLE}_values\""), rows));
    }
    for (sql, want) in checks {
        let got = count(&conn, &sql)?;
        if got != want as i64 {
            return Err(format!("{}: {sql} = {got}, want {want}", layout.name));
        }
    }
    Ok(())
}

/// Every row reads back as the record it came from (test only: reads the whole table).
#[cfg_attr(not(test), allow(dead_code))]
pub fn check_content(layout: &Layout, path: &Path, records: &[Record]) -> Result<(), String> {
    let conn = Connection::open(path).map_err(|e| e.to_string())?;
    let mut stmt = conn
        .prepare(&format!(
            "SELECT request_id, name, value, value_type, method, route, recorded_at FROM \"{TABLE}\" ORDER BY unique_id"
        ))
        .map_err(|e| e.to_string())?;
    let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
    let mut scratch = String::new();
    for (n, record) in records.iter().enumerate() {
        let row = rows
            .next()
            .map_err(|e| e.to_string())?
            .ok_or("too few rows")?;
        use rusqlite::types::ValueRef;
        let rid = match row.get_ref(0).unwrap() {
            ValueRef::Text(t) => String::from_utf8(t.to_vec()).unwrap(),
            ValueRef::Blob(b) => uuid::Uuid::from_slice(b).unwrap().to_string(),
            other => return Err(format!("row {n}: request_id {other:?}")),
        };
        let value = match row.get_ref(2).unwrap() {
            ValueRef::Text(t) => String::from_utf8(t.to_vec()).unwrap(),
            ValueRef::Integer(i) => i.to_string(),
            ValueRef::Real(x) => format!("{x}"),
            other => return Err(format!("row {n}: value {other:?}")),
        };
        let vtype = match row.get_ref(3).unwrap() {
            ValueRef::Text(t) => String::from_utf8(t.to_vec()).unwrap(),
            ValueRef::Integer(i) => ["int", "float", "bool", "text", "json"][i as usize].to_owned(),
            other => return Err(format!("row {n}: value_type {other:?}")),
        };
        let at = match row.get_ref(6).unwrap() {
            ValueRef::Text(t) => String::from_utf8(t.to_vec()).unwrap(),
            ValueRef::Integer(i) => {
                let mut s = String::new();
                push_utc_micros(&mut s, i);
                s
            }
            other => return Err(format!("row {n}: recorded_at {other:?}")),
        };
        let mut want_at = String::new();
        push_utc_micros(&mut want_at, unix_micros(record.time));
        let got = (
            rid,
            row.get::<_, String>(1).unwrap(),
            value,
            vtype,
            row.get::<_, String>(4).unwrap(),
            row.get::<_, Option<String>>(5).unwrap(),
            at,
        );
        let want = (
            record.request_id.to_string(),
            record.name.to_string(),
            text_in(&record.value, &mut scratch).to_owned(),
            type_name(&record.value).to_owned(),
            record.method.to_string(),
            record.route.as_deref().map(str::to_owned),
            want_at,
        );
        if got != want {
            return Err(format!(
                "{} row {n}: got {got:?}, want {want:?}",
                layout.name
            ));
        }
    }
    if rows.next().map_err(|e| e.to_string())?.is_some() {
        return Err("too many rows".into());
    }
    Ok(())
}

/// The flat insert with texts bound SQLITE_STATIC: formatted texts of a chunk go to one arena that
/// is not touched until the statement has run.
struct StaticWriter {
    /// stmts[n]: the prepared insert of n rows (null until needed).
    stmts: Vec<*mut rusqlite::ffi::sqlite3_stmt>,
    arena: String,
    /// Per record: the (start, end) in the arena of its value text and of its time text.
    spans: Vec<((usize, usize), (usize, usize))>,
}

impl StaticWriter {
    fn stmt(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        sql: &str,
        rows: usize,
    ) -> *mut rusqlite::ffi::sqlite3_stmt {
        use rusqlite::ffi;
        if self.stmts.len() <= rows {
            self.stmts.resize(rows + 1, std::ptr::null_mut());
        }
        if self.stmts[rows].is_null() {
            let mut stmt = std::ptr::null_mut();
            let rc = unsafe {
                ffi::sqlite3_prepare_v3(
                    tx.handle(),
                    sql.as_ptr().cast(),
                    sql.len() as i32,
                    ffi::SQLITE_PREPARE_PERSISTENT as u32,
                    &mut stmt,
                    std::ptr::null_mut(),
                )
            };
            assert_eq!(rc, ffi::SQLITE_OK);
            self.stmts[rows] = stmt;
        }
        self.stmts[rows]
    }

    fn insert(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        f: &Flat,
        inserts: &[String],
        records: &[Record],
    ) {
        use rusqlite::ffi;
        let width = flat_columns(f).len() as i32;
        let mut time: Option<SystemTime> = None;
        let mut micros = 0i64;
        let mut time_span = (0, 0);
        for chunk in records.chunks(f.chunk) {
            let stmt = self.stmt(tx, &inserts[chunk.len()], chunk.len());
            // 1. Every formatted text of the chunk, into the arena.
            self.arena.clear();
            self.spans.clear();
            time = time.filter(|_| false); // the arena was cleared: format the time again
            for record in chunk {
                if time != Some(record.time) {
                    time = Some(record.time);
                    if f.text_time {
                        let start = self.arena.len();
                        push_utc_micros(&mut self.arena, unix_micros(record.time));
                        time_span = (start, self.arena.len());
                    }
                }
                let start = self.arena.len();
                let formatted = match &record.value {
                    Value::Text(_) => false,
                    Value::Int(_) | Value::Float(_) if f.typed_value => false,
                    Value::Int(i) => {
                        self.arena.push_str(itoa::Buffer::new().format(*i));
                        true
                    }
                    Value::Float(x) => {
                        use std::fmt::Write;
                        let _ = write!(self.arena, "{x}");
                        true
                    }
                };
                let end = if formatted { self.arena.len() } else { start };
                self.spans.push(((start, end), time_span));
            }
            // 2. Bind (the arena does not move from here until the step).
            let arena = self.arena.as_bytes();
            let text = |at: i32, s: &[u8]| unsafe {
                let rc = ffi::sqlite3_bind_text(
                    stmt,
                    at,
                    s.as_ptr().cast(),
                    s.len() as i32,
                    ffi::SQLITE_STATIC(),
                );
                debug_assert_eq!(rc, ffi::SQLITE_OK);
            };
            let mut at = 1;
            time = None;
            for (record, &(value_span, t_span)) in chunk.iter().zip(&self.spans) {
                if time != Some(record.time) {
                    time = Some(record.time);
                    micros = unix_micros(record.time);
                }
                let mut col = at;
                text(col, record.request_id.as_bytes());
                text(col + 1, record.name.as_bytes());
                col += 2;
                let value: &[u8] = match &record.value {
                    Value::Text(t) => t.as_bytes(),
                    _ => &arena[value_span.0..value_span.1],
                };
                if f.typed_value {
                    unsafe {
                        match &record.value {
                            Value::Int(i) => {
                                ffi::sqlite3_bind_int64(stmt, col, *i);
                            }
                            Value::Float(x) if x.is_finite() => {
                                ffi::sqlite3_bind_double(stmt, col, *x);
                            }
                            _ => text(col, value),
                        }
                    }
                    col += 1;
                } else {
                    text(col, value);
                    unsafe {
                        match as_f64(&record.value) {
                            Some(x) => ffi::sqlite3_bind_double(stmt, col + 1, x),
                            None => ffi::sqlite3_bind_null(stmt, col + 1),
                        };
                    }
                    col += 2;
                }
                if f.text_type {
                    text(col, type_name(&record.value).as_bytes());
                } else {
                    unsafe { ffi::sqlite3_bind_int64(stmt, col, type_code(&record.value)) };
                }
                text(col + 1, record.method.as_bytes());
                match record.route.as_deref() {
                    Some(r) => text(col + 2, r.as_bytes()),
                    None => unsafe {
                        ffi::sqlite3_bind_null(stmt, col + 2);
                    },
                }
                if f.text_time {
                    text(col + 3, &arena[t_span.0..t_span.1]);
                } else {
                    unsafe { ffi::sqlite3_bind_int64(stmt, col + 3, micros) };
                }
                at += width;
            }
            unsafe {
                let rc = ffi::sqlite3_step(stmt);
                assert_eq!(rc, ffi::SQLITE_DONE);
                ffi::sqlite3_reset(stmt);
            }
        }
    }

    fn finalize(&mut self) {
        for stmt in self.stmts.drain(..) {
            if !stmt.is_null() {
                unsafe { rusqlite::ffi::sqlite3_finalize(stmt) };
            }
        }
    }
}
