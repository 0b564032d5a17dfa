//! The durable spool: a SQLite file (WAL) with one row per batch.
//!
//! A row holds the batch's records encoded as JSON, each with its value's text form and type name
//! so that [`Value::from_stored`] gives back the same value, plus the batch's order key (`seq`),
//! its record count and size, and the times of its oldest and newest record. Rows are replayed
//! in `(seq, id)` order.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, ErrorCode};
use serde::Serialize;

use crate::record::{format_utc_micros, time_from_micros};
use crate::{BoxError, Chest, ChestError, Record, Value};

/// `PRAGMA application_id` of a spool file: "chst".
const APPLICATION_ID: i64 = 0x6368_7374;
/// `PRAGMA user_version`: the row format.
const FORMAT_VERSION: i64 = 1;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS chest_spool (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        seq INTEGER NOT NULL,
        records INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        first_us INTEGER NOT NULL,
        last_us INTEGER NOT NULL,
        created_us INTEGER NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS chest_spool_order ON chest_spool (seq, id);";

/// Why a spool could not be opened, read or drained.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// The file could not be opened (or created).
    #[error("spool {}: cannot open: {source}", path.display())]
    Open {
        /// The spool file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The file is not a chest spool, or is corrupt.
    #[error("spool {}: not a chest spool or corrupt: {reason}", path.display())]
    Corrupt {
        /// The spool file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing the file failed.
    #[error("spool {}: {source}", path.display())]
    Io {
        /// The spool file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// A chest refused a drained batch; the batch stays in the spool.
    #[error("draining the spool stopped: {0}")]
    Write(#[from] ChestError),
}

impl SpoolError {
    /// Whether the error means the file itself is bad (so it should be set aside).
    fn is_corruption(&self) -> bool {
        matches!(self, SpoolError::Corrupt { .. })
    }
}

/// What a spool holds, from [`Spool::inspect`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SpoolSummary {
    /// The spool file.
    pub path: String,
    /// Batches (rows).
    pub batches: u64,
    /// Records.
    pub records: u64,
    /// Encoded bytes of the batches.
    pub bytes: u64,
    /// The time of the oldest record (UTC RFC 3339), if any.
    pub oldest: Option<String>,
    /// The time of the newest record (UTC RFC 3339), if any.
    pub newest: Option<String>,
}

impl std::fmt::Display for SpoolSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "spool:   {}", self.path)?;
        writeln!(f, "batches: {}", self.batches)?;
        writeln!(f, "records: {}", self.records)?;
        writeln!(f, "bytes:   {}", self.bytes)?;
        writeln!(f, "oldest:  {}", self.oldest.as_deref().unwrap_or("-"))?;
        write!(f, "newest:  {}", self.newest.as_deref().unwrap_or("-"))
    }
}

/// What [`Spool::drain_into`] moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DrainReport {
    /// Batches written and removed from the spool.
    pub batches: u64,
    /// Records written.
    pub records: u64,
    /// Records in batches that could not be decoded (removed, not written).
    pub undecodable: u64,
}

/// Counts of what is in the spool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub batches: u64,
    pub records: u64,
    pub bytes: u64,
}

/// Batches read back from the spool, oldest first.
pub(crate) struct Loaded {
    /// The rows the records came from.
    pub ids: Vec<i64>,
    /// The order key of the first row.
    pub seq: u64,
    pub records: Vec<Record>,
    /// Records in rows that could not be decoded (those rows are deleted).
    pub undecodable: u64,
}

/// A spool file: batches of records waiting for their chest.
///
/// [`Batched`](super::Batched) uses one on its own; this type is public so that an operator tool
/// (`chest spool inspect|drain`) can look into one and replay it by hand. Drain a spool only while
/// no `Batched` chest uses it, or its batches may be written twice.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use chest::{batch::Spool, chests::sqlite::SqliteChest};
///
/// let mut spool = Spool::open("chest-spool.db")?;
/// println!("{}", spool.inspect()?);
/// let report = spool.drain_into(&SqliteChest::open("chest.db")?).await?;
/// println!("{} records written", report.records);
/// # Ok(()) }
/// ```
pub struct Spool {
    conn: Connection,
    path: PathBuf,
    totals: Totals,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("path", &self.path)
            .field("records", &self.totals.records)
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// Opens the spool at `path`, creating it if missing. Fails if the file is not a chest spool
    /// or is corrupt.
    pub fn open(path: impl AsRef<Path>) -> Result<Spool, SpoolError> {
        Self::open_with(path.as_ref(), false)
    }

    /// Opens the spool; `durable` makes every commit wait for the disk (`synchronous=FULL`).
    pub(crate) fn open_with(path: &Path, durable: bool) -> Result<Spool, SpoolError> {
        let open_err = |e: rusqlite::Error| SpoolError::Open {
            path: path.to_owned(),
            source: e.into(),
        };
        let conn = Connection::open(path).map_err(open_err)?;
        let mut spool = Spool {
            conn,
            path: path.to_owned(),
            totals: Totals::default(),
        };
        spool.prepare(durable)?;
        Ok(spool)
    }

    /// Opens the spool at `path`; if it cannot be opened or is corrupt, renames it aside
    /// (`<path>.corrupt-<unix ms>`) and starts a new one. Returns the spool (if even a new one
    /// could not be made), whether a file was set aside, and the errors met, for logs and stats.
    pub(crate) fn open_or_set_aside(
        path: &Path,
        durable: bool,
    ) -> (Option<Spool>, bool, Vec<SpoolError>) {
        let first = match Self::open_with(path, durable) {
            Ok(spool) => return (Some(spool), false, Vec::new()),
            Err(e) => e,
        };
        let busy = matches!(&first, SpoolError::Open { source, .. } | SpoolError::Io { source, .. }
            if is_busy(source));
        let exists = std::fs::symlink_metadata(path).is_ok();
        if busy || !exists {
            return (None, false, vec![first]);
        }
        let mut errors = vec![first];
        if let Err(e) = set_aside(path) {
            errors.push(SpoolError::Io {
                path: path.to_owned(),
                source: format!("cannot rename the bad spool aside: {e}").into(),
            });
            return (None, false, errors);
        }
        match Self::open_with(path, durable) {
            Ok(spool) => (Some(spool), true, errors),
            Err(e) => {
                errors.push(e);
                (None, true, errors)
            }
        }
    }

    fn io_err(&self, e: rusqlite::Error) -> SpoolError {
        let path = self.path.clone();
        match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => SpoolError::Corrupt {
                path,
                reason: e.to_string(),
            },
            _ => SpoolError::Io {
                path,
                source: e.into(),
            },
        }
    }

    fn corrupt(&self, reason: impl Into<String>) -> SpoolError {
        SpoolError::Corrupt {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// Sets the journal, checks the file is ours and sound, creates the table and counts rows.
    fn prepare(&mut self, durable: bool) -> Result<(), SpoolError> {
        let conn = &self.conn;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| self.io_err(e))?;
        let application_id: i64 = conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(|e| self.io_err(e))?;
        let check: String = conn
            .pragma_query_value(None, "quick_check", |r| r.get(0))
            .map_err(|e| self.io_err(e))?;
        if check != "ok" {
            return Err(self.corrupt(format!("quick_check: {check}")));
        }
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name <> 'sqlite_sequence'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.io_err(e))?;
        match application_id {
            APPLICATION_ID => {
                let version: i64 = conn
                    .pragma_query_value(None, "user_version", |r| r.get(0))
                    .map_err(|e| self.io_err(e))?;
                if version != FORMAT_VERSION {
                    return Err(self.corrupt(format!("unknown spool format {version}")));
                }
            }
            0 if tables == 0 => {
                conn.pragma_update(None, "application_id", APPLICATION_ID)
                    .and_then(|()| conn.pragma_update(None, "user_version", FORMAT_VERSION))
                    .map_err(|e| self.io_err(e))?;
            }
            other => {
                return Err(self.corrupt(format!(
                    "another SQLite database (application_id {other}, {tables} tables)"
                )))
            }
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| {
                conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "NORMAL" })
            })
            .and_then(|()| conn.execute_batch(SCHEMA))
            .map_err(|e| self.io_err(e))?;
        self.totals = self.count()?;
        Ok(())
    }

    fn count(&self) -> Result<Totals, SpoolError> {
        self.conn
            .query_row(
                "SELECT count(*), coalesce(sum(records), 0), coalesce(sum(bytes), 0) FROM chest_spool",
                [],
                |r| {
                    Ok(Totals {
                        batches: r.get::<_, i64>(0)?.unsigned_abs(),
                        records: r.get::<_, i64>(1)?.unsigned_abs(),
                        bytes: r.get::<_, i64>(2)?.unsigned_abs(),
                    })
                },
            )
            .map_err(|e| self.io_err(e))
    }

    /// The spool file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn totals(&self) -> Totals {
        self.totals
    }

    /// The order key after the highest one in the spool, so new batches sort after old ones.
    pub(crate) fn next_seq(&self) -> Result<u64, SpoolError> {
        let max: Option<i64> = self
            .conn
            .query_row("SELECT max(seq) FROM chest_spool", [], |r| r.get(0))
            .map_err(|e| self.io_err(e))?;
        Ok(max.map_or(0, |m| m.unsigned_abs() + 1))
    }

    /// What the spool holds.
    pub fn inspect(&self) -> Result<SpoolSummary, SpoolError> {
        let (oldest, newest): (Option<i64>, Option<i64>) = self
            .conn
            .query_row(
                "SELECT min(first_us), max(last_us) FROM chest_spool",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| self.io_err(e))?;
        let totals = self.count()?;
        Ok(SpoolSummary {
            path: self.path.display().to_string(),
            batches: totals.batches,
            records: totals.records,
            bytes: totals.bytes,
            oldest: oldest.map(format_utc_micros),
            newest: newest.map(format_utc_micros),
        })
    }

    /// Writes every batch to `chest`, oldest first, removing each once written. Stops at the
    /// first failed write (that batch and the later ones stay in the spool). Batches that cannot
    /// be decoded are removed and counted in [`DrainReport::undecodable`].
    ///
    /// The spool file is read and written between the chest's writes, on the calling thread.
    pub async fn drain_into(&mut self, chest: &dyn Chest) -> Result<DrainReport, SpoolError> {
        let mut report = DrainReport::default();
        loop {
            let loaded = self.load(1, u64::MAX)?;
            report.undecodable += loaded.undecodable;
            if loaded.ids.is_empty() {
                return Ok(report);
            }
            chest.write(&loaded.records).await?;
            self.settle(&loaded.ids, &[])?;
            report.batches += loaded.ids.len() as u64;
            report.records += loaded.records.len() as u64;
        }
    }

    /// Appends batches (each with its order key) in one transaction, if they fit under
    /// `max_bytes`; with `evict`, the oldest batches (except `keep`) are deleted to make room.
    /// Returns the records evicted and whether the batches were appended (`false`: full).
    pub(crate) fn append_bounded(
        &mut self,
        batches: &[(u64, &[Record])],
        max_bytes: u64,
        evict: bool,
        keep: &[i64],
    ) -> Result<(u64, bool), SpoolError> {
        let encoded: Vec<(u64, &[Record], String)> = batches
            .iter()
            .map(|(seq, records)| (*seq, *records, encode(records)))
            .collect();
        let needed: u64 = encoded.iter().map(|(_, _, p)| p.len() as u64).sum();
        if needed > max_bytes {
            return Ok((0, false));
        }
        let evicted = if evict {
            self.evict_oldest(needed, max_bytes, keep)?
        } else {
            0
        };
        if self.totals.bytes + needed > max_bytes {
            return Ok((evicted, false));
        }
        self.insert(&encoded)?;
        Ok((evicted, true))
    }

    fn insert(&mut self, batches: &[(u64, &[Record], String)]) -> Result<(), SpoolError> {
        let now = unix_micros(SystemTime::now());
        let mut added = Totals::default();
        let result = (|| {
            let tx = self.conn.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO chest_spool (seq, records, bytes, first_us, last_us, created_us, payload)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for (seq, records, payload) in batches {
                    let (first, last) = time_span(records);
                    insert.execute(params![
                        i64::try_from(*seq).unwrap_or(i64::MAX),
                        records.len() as i64,
                        payload.len() as i64,
                        first,
                        last,
                        now,
                        payload
                    ])?;
                    added.batches += 1;
                    added.records += records.len() as u64;
                    added.bytes += payload.len() as u64;
                }
            }
            tx.commit()
        })();
        result.map_err(|e| self.io_err(e))?;
        self.totals.batches += added.batches;
        self.totals.records += added.records;
        self.totals.bytes += added.bytes;
        Ok(())
    }

    /// Deletes the oldest batches, except `keep`, until `needed` more bytes fit under `max`.
    /// Returns the records deleted; fewer bytes than needed may have been freed.
    pub(crate) fn evict_oldest(
        &mut self,
        needed: u64,
        max: u64,
        keep: &[i64],
    ) -> Result<u64, SpoolError> {
        let mut evicted = 0;
        while self.totals.bytes + needed > max {
            let oldest: Option<(i64, i64, i64)> = self
                .conn
                .prepare_cached(
                    "SELECT id, records, bytes FROM chest_spool ORDER BY seq, id LIMIT ?1",
                )
                .and_then(|mut stmt| {
                    let rows = stmt.query_map([keep.len() as i64 + 1], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?;
                    let rows: Vec<(i64, i64, i64)> = rows.collect::<Result<_, _>>()?;
                    Ok(rows.into_iter().find(|(id, _, _)| !keep.contains(id)))
                })
                .map_err(|e| self.io_err(e))?;
            let Some((id, records, bytes)) = oldest else {
                break;
            };
            delete_rows(&self.conn, &[id]).map_err(|e| self.io_err(e))?;
            self.totals.batches -= 1;
            self.totals.records -= records.unsigned_abs();
            self.totals.bytes -= bytes.unsigned_abs();
            evicted += records.unsigned_abs();
        }
        Ok(evicted)
    }

    /// Reads the oldest batches, up to `max_records` records and `max_bytes` encoded bytes (at
    /// least one batch). Batches that cannot be decoded are deleted and counted.
    pub(crate) fn load(
        &mut self,
        max_records: usize,
        max_bytes: u64,
    ) -> Result<Loaded, SpoolError> {
        let mut loaded = Loaded {
            ids: Vec::new(),
            seq: 0,
            records: Vec::new(),
            undecodable: 0,
        };
        let mut bad = Vec::new();
        let result = (|| {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, seq, records, bytes, payload FROM chest_spool ORDER BY seq, id",
            )?;
            let mut rows = stmt.query([])?;
            let mut bytes = 0;
            while let Some(row) = rows.next()? {
                let (id, seq, count, size): (i64, i64, i64, i64) =
                    (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
                let fits = loaded.records.len() + count.unsigned_abs() as usize <= max_records
                    && bytes + size.unsigned_abs() <= max_bytes;
                if !loaded.ids.is_empty() && !fits {
                    break;
                }
                let payload: String = row.get(4)?;
                match decode(&payload) {
                    Ok(records) => {
                        if loaded.ids.is_empty() {
                            loaded.seq = seq.unsigned_abs();
                        }
                        loaded.ids.push(id);
                        loaded.records.extend(records);
                        bytes += size.unsigned_abs();
                    }
                    Err(reason) => {
                        tracing::error!(target: "chest", spool = %self.path.display(), batch = id,
                            records = count, %reason, "spool batch cannot be decoded; removed");
                        bad.push(id);
                        loaded.undecodable += count.unsigned_abs();
                    }
                }
            }
            Ok(())
        })();
        result.map_err(|e| self.io_err(e))?;
        if !bad.is_empty() {
            self.settle(&bad, &[])?;
        }
        Ok(loaded)
    }

    /// Finishes loaded batches: `remaining` (the records still to write, in order) replaces the
    /// first batch's records and the other batches are deleted; with nothing remaining, all are.
    pub(crate) fn settle(&mut self, ids: &[i64], remaining: &[Record]) -> Result<(), SpoolError> {
        let (keep, delete) = match ids.split_first() {
            Some((first, rest)) if !remaining.is_empty() => (Some(*first), rest),
            _ => (None, ids),
        };
        let result = (|| {
            let tx = self.conn.transaction()?;
            if let Some(id) = keep {
                let payload = encode(remaining);
                let (first, last) = time_span(remaining);
                tx.execute(
                    "UPDATE chest_spool SET records = ?1, bytes = ?2, first_us = ?3, last_us = ?4, payload = ?5
                     WHERE id = ?6",
                    params![remaining.len() as i64, payload.len() as i64, first, last, payload, id],
                )?;
            }
            delete_rows(&tx, delete)?;
            tx.commit()
        })();
        result.map_err(|e| self.io_err(e))?;
        self.totals = self.count()?;
        Ok(())
    }
}

fn delete_rows(conn: &Connection, ids: &[i64]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached("DELETE FROM chest_spool WHERE id = ?1")?;
    ids.iter().try_for_each(|id| stmt.execute([id]).map(drop))
}

/// Whether an open error is another process holding the file (not a bad file).
fn is_busy(source: &BoxError) -> bool {
    source.downcast_ref::<rusqlite::Error>().is_some_and(|e| {
        matches!(
            e.sqlite_error_code(),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        )
    })
}

/// Renames a bad spool (and its `-wal` and `-shm` files) to `<name>.corrupt-<unix ms>`.
fn set_aside(path: &Path) -> std::io::Result<PathBuf> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let with_suffix = |p: &Path, suffix: &str| {
        let mut name = p.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let aside = with_suffix(path, &format!(".corrupt-{stamp}"));
    std::fs::rename(path, &aside)?;
    for side in ["-wal", "-shm"] {
        let from = with_suffix(path, side);
        if from.exists() {
            std::fs::rename(&from, with_suffix(&aside, side))?;
        }
    }
    Ok(aside)
}

impl SpoolError {
    /// Sets the file aside when the error says it is corrupt; used by the worker while running.
    pub(crate) fn set_aside_if_corrupt(&self, path: &Path) -> Option<std::io::Result<PathBuf>> {
        self.is_corruption().then(|| set_aside(path))
    }
}

fn unix_micros(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_micros()).map_or(i64::MIN, |v| -v),
    }
}

fn time_span(records: &[Record]) -> (i64, i64) {
    records
        .iter()
        .map(Record::unix_micros)
        .fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)))
}

/// One record as stored: request id, name, value text, value type, method, route, time (µs).
type Stored<S> = (S, S, S, S, S, Option<S>, i64);

/// Encodes records as a JSON array of [`Stored`] tuples.
pub(crate) fn encode(records: &[Record]) -> String {
    let rows: Vec<Stored<std::borrow::Cow<'_, str>>> = records
        .iter()
        .map(|r| {
            let value = match &r.value {
                Value::Text(t) => std::borrow::Cow::Borrowed(t.as_str()),
                other => std::borrow::Cow::Owned(other.to_string()),
            };
            (
                std::borrow::Cow::Borrowed(&*r.request_id),
                std::borrow::Cow::Borrowed(&*r.name),
                value,
                std::borrow::Cow::Borrowed(r.value.type_name()),
                std::borrow::Cow::Borrowed(&*r.method),
                r.route.as_deref().map(std::borrow::Cow::Borrowed),
                r.unix_micros(),
            )
        })
        .collect();
    serde_json::to_string(&rows).unwrap_or_else(|_| "[]".to_owned())
}

/// Decodes what [`encode`] wrote.
pub(crate) fn decode(payload: &str) -> Result<Vec<Record>, String> {
    let rows: Vec<Stored<String>> = serde_json::from_str(payload).map_err(|e| e.to_string())?;
    Ok(rows
        .into_iter()
        .map(
            |(request_id, name, value, type_name, method, route, micros)| Record {
                request_id: Arc::from(request_id),
                name: Arc::from(name),
                value: Value::from_stored(&value, &type_name),
                method: Arc::from(method),
                route: route.map(Arc::from),
                time: time_from_micros(micros),
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_values_and_types() {
        let time = UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456);
        let records: Vec<Record> = [
            Value::Int(-3),
            Value::Float(0.1),
            Value::Float(f64::INFINITY),
            Value::Bool(true),
            Value::Text("inf".into()),
            Value::Json(serde_json::json!({"a": [1, "x"]})),
        ]
        .into_iter()
        .map(|v| Record::new("req", "n", v, "GET", Some("/a/{id}")).at(time))
        .chain([Record::new("req2", "m", "t", "POST", None).at(time)])
        .collect();
        assert_eq!(decode(&encode(&records)).unwrap(), records);
        assert!(decode("[1,2]").is_err());
    }

    #[test]
    fn append_load_settle_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path().join("s.db")).unwrap();
        let r = |id: &str| Record::new(id, "n", 1, "GET", None);
        let batches = [(5, &[r("b")][..]), (2, &[r("a"), r("a2")][..])];
        assert_eq!(
            spool
                .append_bounded(&batches, u64::MAX, false, &[])
                .unwrap(),
            (0, true)
        );
        let bound = spool.totals().bytes;
        assert_eq!(
            spool.append_bounded(&batches, bound, false, &[]).unwrap(),
            (0, false)
        );
        assert_eq!(spool.totals().records, 3);
        assert_eq!(spool.next_seq().unwrap(), 6);
        let loaded = spool.load(2, u64::MAX).unwrap();
        assert_eq!(loaded.seq, 2);
        assert_eq!(loaded.records.len(), 2);
        assert_eq!(&*loaded.records[0].request_id, "a");
        spool.settle(&loaded.ids, &loaded.records[1..]).unwrap();
        assert_eq!(spool.totals().records, 2);
        let loaded = spool.load(10, u64::MAX).unwrap();
        let ids: Vec<&str> = loaded.records.iter().map(|r| &*r.request_id).collect();
        assert_eq!(ids, ["a2", "b"]);
        assert_eq!(
            spool.evict_oldest(u64::MAX / 2, u64::MAX / 2, &[]).unwrap(),
            2
        );
        assert_eq!(spool.totals(), Totals::default());
    }
}
