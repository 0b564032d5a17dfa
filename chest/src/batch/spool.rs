//! The durable spool: a SQLite file (WAL) with one row per batch.
//!
//! A row holds the batch's records encoded as JSON, each with its value's text form and type name
//! so that [`Value::from_stored`] gives back the same value, plus the batch's order key (`seq`),
//! its record count and size, the times of its oldest and newest record, a checksum of the
//! payload, and its batch id. Rows are replayed in `(seq, id)` order.
//!
//! A row's `batch_id` is its identity towards the chest ([`crate::Chest::write_batch`]). Rows
//! spooled before any attempt to write them have none; when they are loaded to be replayed, the
//! rows of one replay get one new id, written into them before the first attempt. Rows that carry
//! an id (given up after an attempt, or loaded before) are replayed alone under that id, so a
//! write that reached the chest without its answer is recognised, whatever happened in between
//! (a restart included).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, ErrorCode};
use serde::Serialize;

use crate::record::{format_utc_micros, time_from_micros};
use crate::{BatchId, BoxError, Chest, ChestError, Record, Value};

/// `PRAGMA application_id` of a spool file: "chst".
const APPLICATION_ID: i64 = 0x6368_7374;
/// `PRAGMA user_version`: the row format. Version 1 had no `batch_id` and `checksum` (its files
/// are upgraded in place when opened).
const FORMAT_VERSION: i64 = 2;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS chest_spool (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        seq INTEGER NOT NULL,
        records INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        first_us INTEGER NOT NULL,
        last_us INTEGER NOT NULL,
        created_us INTEGER NOT NULL,
        payload TEXT NOT NULL,
        checksum INTEGER,
        batch_id TEXT
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
    /// The `(seq, id)` of the last row: where the next load starts when this batch is still in
    /// the spool.
    pub last: (i64, i64),
    /// The batch's id: the rows' own, or the new one given to them.
    pub batch_id: BatchId,
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
                match version {
                    FORMAT_VERSION => {}
                    1 => conn
                        .execute_batch(
                            "BEGIN;
                             ALTER TABLE chest_spool ADD COLUMN checksum INTEGER;
                             ALTER TABLE chest_spool ADD COLUMN batch_id TEXT;
                             PRAGMA user_version = 2;
                             COMMIT;",
                        )
                        .map_err(|e| self.io_err(e))?,
                    _ => return Err(self.corrupt(format!("unknown spool format {version}"))),
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
            let loaded = self.load(1, u64::MAX, None)?;
            report.undecodable += loaded.undecodable;
            if loaded.ids.is_empty() {
                return Ok(report);
            }
            chest.write_batch(loaded.batch_id, &loaded.records).await?;
            self.settle(&loaded.ids, Vec::new())?;
            report.batches += loaded.ids.len() as u64;
            report.records += loaded.records.len() as u64;
        }
    }

    /// Appends batches (each with its order key, and its id if it has been written under one)
    /// in one transaction, if they fit under `max_bytes`; with `evict`, the oldest batches
    /// (except `keep`) are deleted to make room. Returns the records evicted and whether the
    /// batches were appended (`false`: full).
    pub(crate) fn append_bounded(
        &mut self,
        batches: &[(u64, Option<BatchId>, &[Record])],
        max_bytes: u64,
        evict: bool,
        keep: &[i64],
    ) -> Result<(u64, bool), SpoolError> {
        let encoded: Vec<Encoded<'_>> = batches
            .iter()
            .map(|(seq, id, records)| (*seq, *id, *records, encode(records)))
            .collect();
        let needed: u64 = encoded.iter().map(|(_, _, _, p)| p.len() as u64).sum();
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

    fn insert(&mut self, batches: &[Encoded<'_>]) -> Result<(), SpoolError> {
        let mut added = Totals::default();
        let result = (|| {
            let tx = self.conn.transaction()?;
            added = insert_rows(&tx, batches)?;
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

    /// Reads the oldest batch to replay: the rows of the oldest row's batch id, or, if the
    /// oldest row has none, the oldest rows without one, up to `max_records` records and
    /// `max_bytes` encoded bytes (at least one row), which get one new id before this returns.
    /// Rows that cannot be decoded, or whose checksum does not match, are deleted and counted.
    ///
    /// With `after`, only rows past that `(seq, id)` are read: the worker reads the next batch
    /// ahead while the current one is delivered. A read ahead stops at a bad row and leaves it
    /// to the load that replays it, so counts change in one place only.
    pub(crate) fn load(
        &mut self,
        max_records: usize,
        max_bytes: u64,
        after: Option<(i64, i64)>,
    ) -> Result<Loaded, SpoolError> {
        let mut loaded = Loaded {
            ids: Vec::new(),
            seq: 0,
            last: (0, 0),
            batch_id: BatchId::new(),
            records: Vec::new(),
            undecodable: 0,
        };
        let mut bad = Vec::new();
        let mut named = false;
        let result = (|| {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, seq, records, bytes, payload, checksum, batch_id FROM chest_spool \
                 WHERE (seq, id) > (?1, ?2) ORDER BY seq, id",
            )?;
            let (seq, id) = after.unwrap_or((i64::MIN, i64::MIN));
            let mut rows = stmt.query([seq, id])?;
            let mut bytes = 0;
            while let Some(row) = rows.next()? {
                let (id, seq, count, size): (i64, i64, i64, i64) =
                    (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
                let batch_id: Option<String> = row.get(6)?;
                let batch_id = batch_id.map(|text| text.parse::<BatchId>());
                if !loaded.ids.is_empty() {
                    let fits = loaded.records.len() + count.unsigned_abs() as usize <= max_records
                        && bytes + size.unsigned_abs() <= max_bytes;
                    // A batch with an id is replayed whole and alone; rows without one are
                    // gathered up to the limits.
                    let same = match &batch_id {
                        Some(Ok(other)) => named && *other == loaded.batch_id,
                        _ => !named && fits,
                    };
                    // A batch's rows are consecutive: named together when loaded, or one row.
                    if !same {
                        break;
                    }
                }
                let payload: String = row.get(4)?;
                let checksum: Option<i64> = row.get(5)?;
                let decoded = match (&batch_id, checksum) {
                    (Some(Err(e)), _) => Err(e.to_string()),
                    (_, Some(sum)) if sum != payload_checksum(&payload) => {
                        Err("its checksum does not match its payload".to_owned())
                    }
                    _ => decode(&payload),
                };
                match decoded {
                    Ok(records) => {
                        if loaded.ids.is_empty() {
                            loaded.seq = seq.unsigned_abs();
                            if let Some(Ok(id)) = batch_id {
                                loaded.batch_id = id;
                                named = true;
                            }
                        }
                        loaded.ids.push(id);
                        loaded.last = (seq, id);
                        loaded.records.extend(records);
                        bytes += size.unsigned_abs();
                    }
                    // A read ahead leaves bad rows to the load that replays them, so that only
                    // that one changes the spool's counts.
                    Err(_) if after.is_some() => break,
                    Err(reason) => {
                        tracing::error!(target: "chest", spool = %self.path.display(), batch = id,
                            records = count, %reason, "spool batch cannot be read; removed");
                        bad.push(id);
                        loaded.undecodable += count.unsigned_abs();
                    }
                }
            }
            Ok(())
        })();
        result.map_err(|e| self.io_err(e))?;
        if !bad.is_empty() {
            self.settle(&bad, Vec::new())?;
        }
        if !named && !loaded.ids.is_empty() {
            // The id is kept before the first attempt: a replay after a crash uses it again.
            let id = loaded.batch_id.to_string();
            let result = (|| {
                let tx = self.conn.transaction()?;
                {
                    let mut name =
                        tx.prepare_cached("UPDATE chest_spool SET batch_id = ?1 WHERE id = ?2")?;
                    for row in &loaded.ids {
                        name.execute(params![id, row])?;
                    }
                }
                tx.commit()
            })();
            result.map_err(|e| self.io_err(e))?;
        }
        Ok(loaded)
    }

    /// Finishes a loaded batch: its rows are deleted and `remaining` (the parts still to write,
    /// each with its id, in order) takes their place, in one transaction.
    pub(crate) fn settle(
        &mut self,
        ids: &[i64],
        remaining: Vec<(u64, BatchId, Vec<Record>)>,
    ) -> Result<(), SpoolError> {
        let encoded: Vec<Encoded<'_>> = remaining
            .iter()
            .map(|(seq, id, records)| (*seq, Some(*id), &records[..], encode(records)))
            .collect();
        let result = (|| {
            let tx = self.conn.transaction()?;
            delete_rows(&tx, ids)?;
            insert_rows(&tx, &encoded)?;
            tx.commit()
        })();
        result.map_err(|e| self.io_err(e))?;
        self.totals = self.count()?;
        Ok(())
    }
}

/// A batch to append: order key, id (if written under one), records and their encoding.
type Encoded<'a> = (u64, Option<BatchId>, &'a [Record], String);

/// Inserts rows; what they add to the totals.
fn insert_rows(conn: &Connection, batches: &[Encoded<'_>]) -> rusqlite::Result<Totals> {
    let now = unix_micros(SystemTime::now());
    let mut added = Totals::default();
    let mut insert = conn.prepare_cached(
        "INSERT INTO chest_spool (seq, records, bytes, first_us, last_us, created_us, payload, \
         checksum, batch_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for (seq, id, records, payload) in batches {
        let (first, last) = time_span(records);
        insert.execute(params![
            i64::try_from(*seq).unwrap_or(i64::MAX),
            records.len() as i64,
            payload.len() as i64,
            first,
            last,
            now,
            payload,
            payload_checksum(payload),
            id.map(|id| id.to_string()),
        ])?;
        added.batches += 1;
        added.records += records.len() as u64;
        added.bytes += payload.len() as u64;
    }
    Ok(added)
}

/// FNV-1a (64 bits) of a payload, as SQLite's signed integer: catches a row whose payload was
/// damaged (SQLite checks its pages' structure, not their content).
fn payload_checksum(payload: &str) -> i64 {
    let hash = payload.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    hash as i64
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
    let rows: Vec<Stored<Cow<'_, str>>> = records
        .iter()
        .map(|r| {
            let value = match &r.value {
                Value::Text(t) => Cow::Borrowed(t.as_str()),
                other => Cow::Owned(other.to_string()),
            };
            (
                Cow::Borrowed(&*r.request_id),
                Cow::Borrowed(&*r.name),
                value,
                Cow::Borrowed(r.value.type_name()),
                Cow::Borrowed(&*r.method),
                r.route.as_deref().map(Cow::Borrowed),
                r.unix_micros(),
            )
        })
        .collect();
    serde_json::to_string(&rows).unwrap_or_else(|_| "[]".to_owned())
}

/// Decodes what [`encode`] wrote. Strings are read in place where they have no escapes, and
/// equal ones are shared, as they were in the records that were spooled: a replay then costs
/// little more than live delivery (see `benches/replay.rs`).
pub(crate) fn decode(payload: &str) -> Result<Vec<Record>, String> {
    let rows: Vec<Stored<Text<'_>>> = serde_json::from_str(payload).map_err(|e| e.to_string())?;
    let mut shared = Shared::default();
    let mut request: Option<Arc<str>> = None;
    Ok(rows
        .into_iter()
        .map(
            |(request_id, name, value, type_name, method, route, micros)| Record {
                // A request's records are spooled one after the other.
                request_id: match &request {
                    Some(id) if **id == *request_id.0 => id.clone(),
                    _ => request.insert(Arc::from(&*request_id.0)).clone(),
                },
                name: shared.get(&name.0),
                value: Value::from_stored(&value.0, &type_name.0),
                method: shared.get(&method.0),
                route: route.map(|route| shared.get(&route.0)),
                time: time_from_micros(micros),
            },
        )
        .collect())
}

/// A string of a payload, borrowed from it unless it had escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// The names, methods and routes of a batch, each allocated once (a batch has few).
#[derive(Default)]
struct Shared(Vec<Arc<str>>);

impl Shared {
    /// At most this many are kept; past it the oldest is forgotten (and allocated again).
    const MAX: usize = 64;

    fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(found) = self.0.iter().rev().find(|known| ***known == *text) {
            return found.clone();
        }
        if self.0.len() == Self::MAX {
            self.0.remove(0);
        }
        let new: Arc<str> = Arc::from(text);
        self.0.push(new.clone());
        new
    }
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
        // Escaped strings (read into new strings) and shared ones decode alike.
        let escaped: Vec<Record> = ["a\"b\\", "a\"b\\", "\u{1f600}\n"]
            .into_iter()
            .map(|text| Record::new(text, text, text, "GET", Some(text)).at(time))
            .collect();
        let decoded = decode(&encode(&escaped)).unwrap();
        assert_eq!(decoded, escaped);
        assert!(Arc::ptr_eq(&decoded[0].request_id, &decoded[1].request_id));
        assert!(Arc::ptr_eq(
            &decoded[0].name,
            &decoded[1].route.clone().unwrap()
        ));
        assert!(decode("[1,2]").is_err());
    }

    #[test]
    fn append_load_settle_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path().join("s.db")).unwrap();
        let r = |id: &str| Record::new(id, "n", 1, "GET", None);
        let batches = [(5, None, &[r("b")][..]), (2, None, &[r("a"), r("a2")][..])];
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
        let loaded = spool.load(2, u64::MAX, None).unwrap();
        assert_eq!(loaded.seq, 2);
        assert_eq!(loaded.records.len(), 2);
        assert_eq!(&*loaded.records[0].request_id, "a");
        let part = loaded.batch_id.part(1, 2);
        spool
            .settle(&loaded.ids, vec![(2, part, loaded.records[1..].to_vec())])
            .unwrap();
        assert_eq!(spool.totals().records, 2);
        // The part keeps its id and is replayed alone, not with the fresh row after it.
        let loaded = spool.load(10, u64::MAX, None).unwrap();
        let ids: Vec<&str> = loaded.records.iter().map(|r| &*r.request_id).collect();
        assert_eq!((ids, loaded.batch_id), (vec!["a2"], part));
        spool.settle(&loaded.ids, Vec::new()).unwrap();
        let loaded = spool.load(10, u64::MAX, None).unwrap();
        assert_eq!(&*loaded.records[0].request_id, "b");
        assert_eq!(
            spool.evict_oldest(u64::MAX / 2, u64::MAX / 2, &[]).unwrap(),
            1
        );
        assert_eq!(spool.totals(), Totals::default());
    }

    /// Rows loaded for a replay keep the id they were given: after a crash (the file opened
    /// again) the same rows are replayed under the same id, even with new rows behind them.
    #[test]
    fn a_replay_keeps_its_id_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let r = |id: &str| Record::new(id, "n", 1, "GET", None);
        let mut spool = Spool::open(&path).unwrap();
        let fresh = [(1, None, &[r("a")][..]), (2, None, &[r("b")][..])];
        spool.append_bounded(&fresh, u64::MAX, false, &[]).unwrap();
        let first = spool.load(10, u64::MAX, None).unwrap();
        assert_eq!(first.records.len(), 2);
        drop(spool);
        let mut spool = Spool::open(&path).unwrap();
        spool
            .append_bounded(&[(3, None, &[r("c")][..])], u64::MAX, false, &[])
            .unwrap();
        let again = spool.load(10, u64::MAX, None).unwrap();
        assert_eq!(again.batch_id, first.batch_id);
        assert_eq!(again.ids, first.ids);
        assert_eq!(again.records, first.records);
    }

    /// A row whose payload no longer matches its checksum is removed and counted, never
    /// replayed; the other rows are.
    #[test]
    fn damaged_rows_are_set_apart_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let r = |id: &str| Record::new(id, "n", 1, "GET", None);
        let mut spool = Spool::open(&path).unwrap();
        let rows = [(1, None, &[r("a")][..]), (2, None, &[r("b"), r("b2")][..])];
        spool.append_bounded(&rows, u64::MAX, false, &[]).unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE chest_spool SET payload = replace(payload, '\"a\"', '\"x\"') WHERE seq = 1",
            [],
        )
        .unwrap();
        let loaded = spool.load(10, u64::MAX, None).unwrap();
        assert_eq!(loaded.undecodable, 1);
        let ids: Vec<&str> = loaded.records.iter().map(|r| &*r.request_id).collect();
        assert_eq!(ids, ["b", "b2"]);
    }

    /// A read ahead starts past the batch being replayed and leaves a bad row where it is.
    #[test]
    fn read_ahead_starts_after_and_leaves_bad_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let r = |id: &str| Record::new(id, "n", 1, "GET", None);
        let mut spool = Spool::open(&path).unwrap();
        let rows = [
            (1, None, &[r("a")][..]),
            (2, None, &[r("b")][..]),
            (3, None, &[r("c")][..]),
        ];
        spool.append_bounded(&rows, u64::MAX, false, &[]).unwrap();
        let first = spool.load(1, u64::MAX, None).unwrap();
        let ahead = spool.load(1, u64::MAX, Some(first.last)).unwrap();
        assert_eq!(&*ahead.records[0].request_id, "b");
        assert_eq!(ahead.seq, 2);
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE chest_spool SET payload = replace(payload, '\"c\"', '\"x\"') WHERE seq = 3",
            [],
        )
        .unwrap();
        let past_bad = spool.load(10, u64::MAX, Some(ahead.last)).unwrap();
        assert_eq!((past_bad.ids.len(), past_bad.undecodable), (0, 0));
        assert_eq!(spool.totals().records, 3);
        spool.settle(&first.ids, Vec::new()).unwrap();
        spool.settle(&ahead.ids, Vec::new()).unwrap();
        let replayed = spool.load(10, u64::MAX, None).unwrap();
        assert_eq!((replayed.ids.len(), replayed.undecodable), (0, 1));
        assert_eq!(spool.totals().records, 0);
    }

    /// A spool of the first format (no batch ids, no checksums) is upgraded and replayed.
    #[test]
    fn first_format_spools_are_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        let conn = Connection::open(&path).unwrap();
        let v1 = SCHEMA.replace(",\n        checksum INTEGER,\n        batch_id TEXT", "");
        assert!(!v1.contains("batch_id"), "{v1}");
        conn.execute_batch(&v1).unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        let payload = encode(&[Record::new("old", "n", 1, "GET", None)]);
        conn.execute(
            "INSERT INTO chest_spool (seq, records, bytes, first_us, last_us, created_us, payload)
             VALUES (1, 1, ?1, 0, 0, 0, ?2)",
            params![payload.len() as i64, payload],
        )
        .unwrap();
        drop(conn);
        let mut spool = Spool::open(&path).unwrap();
        let loaded = spool.load(10, u64::MAX, None).unwrap();
        assert_eq!(&*loaded.records[0].request_id, "old");
        let version: i64 = Connection::open(&path)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, 2);
    }
}
