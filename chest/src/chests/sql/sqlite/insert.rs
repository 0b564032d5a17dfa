//! The writer thread's insert statements, bound without copies.
//!
//! rusqlite binds every text with `SQLITE_TRANSIENT`, so SQLite copies each of a row's seven
//! texts before it runs the statement (~1,200 of the writer thread's ~9,100 instructions a row,
//! `bench/instructions.sh`). The texts of a write already sit in one buffer ([`Rows`]) that
//! outlives the statement's run, so here they are bound `SQLITE_STATIC` through `rusqlite::ffi`:
//! SQLite reads them where they are. This file is the only place that does; every binding is
//! cleared before the rows' buffer can go.

use std::ffi::{c_int, CStr};
use std::ptr::NonNull;

use rusqlite::{ffi, Connection};

use super::rows::{Columns, Rows};
use crate::chests::sql::INSERT_COLUMNS;

/// The prepared inserts of one connection, by row count, made when first needed.
///
/// Must be dropped before the connection it was prepared on: SQLite refuses to close a
/// connection that still has statements.
pub(super) struct Inserts {
    /// `sql[n]`: the insert statement for `n` rows.
    sql: Vec<String>,
    /// `prepared[n]`: `sql[n]` prepared.
    prepared: Vec<Option<Statement>>,
}

/// A prepared statement, finalized on drop.
struct Statement(NonNull<ffi::sqlite3_stmt>);

// SAFETY: a statement is used only by the thread that owns the `Inserts` (the writer thread,
// which also owns its connection); it is moved there once, with the connection.
unsafe impl Send for Statement {}

impl Drop for Statement {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `sqlite3_prepare_v3` and is finalized once, here.
        unsafe { ffi::sqlite3_finalize(self.0.as_ptr()) };
    }
}

impl Inserts {
    /// Inserts into a table whose statement for `n` rows is `sql[n]`.
    pub(super) fn new(sql: Vec<String>) -> Self {
        let prepared = sql.iter().map(|_| None).collect();
        Inserts { sql, prepared }
    }

    /// The most rows one statement takes.
    pub(super) fn max_rows(&self) -> usize {
        self.sql.len() - 1
    }

    /// Inserts every row of `jobs`, in statements of at most [`max_rows`](Self::max_rows) rows,
    /// on `conn` (inside the caller's transaction).
    pub(super) fn insert(&mut self, conn: &Connection, jobs: &[&Rows]) -> rusqlite::Result<()> {
        // SAFETY: the handle is `conn`'s, open for the whole call; it is used only to prepare,
        // and to read the message of the error it just returned.
        let db = unsafe { conn.handle() };
        let mut left: usize = jobs.iter().map(|rows| rows.len()).sum();
        let mut columns = jobs.iter().flat_map(|rows| rows.columns());
        while left > 0 {
            let chunk = left.min(self.max_rows());
            let stmt = self.statement(db, chunk)?;
            let ran = bind_all(stmt, columns.by_ref().take(chunk))
                .and_then(|()| step(stmt))
                .map_err(|rc| error(db, rc));
            // SAFETY: `stmt` is prepared and not running. Clearing the bindings drops every
            // pointer into `jobs` before they can be freed; reset's code repeats step's.
            unsafe {
                ffi::sqlite3_reset(stmt);
                ffi::sqlite3_clear_bindings(stmt);
            }
            ran?;
            left -= chunk;
        }
        Ok(())
    }

    /// The prepared insert of `rows` rows.
    fn statement(
        &mut self,
        db: *mut ffi::sqlite3,
        rows: usize,
    ) -> rusqlite::Result<*mut ffi::sqlite3_stmt> {
        if let Some(stmt) = &self.prepared[rows] {
            return Ok(stmt.0.as_ptr());
        }
        let sql = &self.sql[rows];
        let len = c_int::try_from(sql.len()).map_err(|_| error(db, ffi::SQLITE_TOOBIG))?;
        let mut stmt = std::ptr::null_mut();
        // SAFETY: `db` is open; `sql` is valid for `len` bytes (no terminator needed when the
        // length is given); `stmt` receives the statement or null.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                db,
                sql.as_ptr().cast(),
                len,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                std::ptr::null_mut(),
            )
        };
        let stmt = match NonNull::new(stmt) {
            Some(stmt) if rc == ffi::SQLITE_OK => Statement(stmt),
            Some(stmt) => {
                drop(Statement(stmt));
                return Err(error(db, rc));
            }
            None => {
                return Err(error(
                    db,
                    if rc == ffi::SQLITE_OK {
                        ffi::SQLITE_MISUSE
                    } else {
                        rc
                    },
                ))
            }
        };
        Ok(self.prepared[rows].insert(stmt).0.as_ptr())
    }
}

/// Binds `rows` to `stmt`'s parameters, in order: an error's result code if one fails.
fn bind_all<'a>(
    stmt: *mut ffi::sqlite3_stmt,
    rows: impl Iterator<Item = Columns<'a>>,
) -> Result<(), c_int> {
    let mut at: c_int = 1;
    for row in rows {
        check(text(stmt, at, row.request_id))?;
        check(text(stmt, at + 1, row.name))?;
        check(text(stmt, at + 2, row.value))?;
        // SAFETY (these three): `stmt` is prepared and not running; `at` is within its
        // parameters, as the statement was made for these rows.
        check(match row.value_num {
            Some(number) => unsafe { ffi::sqlite3_bind_double(stmt, at + 3, number) },
            None => unsafe { ffi::sqlite3_bind_null(stmt, at + 3) },
        })?;
        check(text(stmt, at + 4, row.value_type))?;
        check(text(stmt, at + 5, row.method))?;
        check(match row.route {
            Some(route) => text(stmt, at + 6, route),
            None => unsafe { ffi::sqlite3_bind_null(stmt, at + 6) },
        })?;
        check(text(stmt, at + 7, row.recorded_at))?;
        at += INSERT_COLUMNS.len() as c_int;
    }
    Ok(())
}

/// Binds `value` to parameter `at` of `stmt` without a copy: SQLite reads it until the binding
/// is cleared, so `value` must live and stay unchanged until then ([`Inserts::insert`] clears
/// every binding before it returns).
fn text(stmt: *mut ffi::sqlite3_stmt, at: c_int, value: &str) -> c_int {
    let Ok(len) = c_int::try_from(value.len()) else {
        return ffi::SQLITE_TOOBIG;
    };
    // SAFETY: `stmt` is prepared and not running; `value` is valid UTF-8 for `len` bytes and
    // outlives the binding (above).
    unsafe { ffi::sqlite3_bind_text(stmt, at, value.as_ptr().cast(), len, ffi::SQLITE_STATIC()) }
}

fn check(rc: c_int) -> Result<(), c_int> {
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(rc)
    }
}

/// Runs `stmt` (an insert: it returns no row).
fn step(stmt: *mut ffi::sqlite3_stmt) -> Result<(), c_int> {
    // SAFETY: `stmt` is prepared and every parameter is bound.
    match unsafe { ffi::sqlite3_step(stmt) } {
        ffi::SQLITE_DONE => Ok(()),
        rc => Err(rc),
    }
}

/// The error of result code `rc`, with the connection's message when it is about `rc` (a code
/// found here, such as a text too long to bind, has SQLite's text for the code).
fn error(db: *mut ffi::sqlite3, rc: c_int) -> rusqlite::Error {
    // SAFETY: `db` is open; both messages are SQLite's, valid until the next call on `db`, and
    // copied at once.
    let message = unsafe {
        let message = if ffi::sqlite3_extended_errcode(db) == rc {
            ffi::sqlite3_errmsg(db)
        } else {
            ffi::sqlite3_errstr(rc)
        };
        (!message.is_null()).then(|| CStr::from_ptr(message).to_string_lossy().into_owned())
    };
    rusqlite::Error::SqliteFailure(ffi::Error::new(rc), message)
}
