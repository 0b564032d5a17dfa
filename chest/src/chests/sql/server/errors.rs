//! Whether retrying can help after a sqlx error, and its text.

use std::fmt::Write as _;
use std::time::Duration;

use sqlx::{ConnectOptions, Connection};

use super::{Backend, SqlxChest};
use crate::{ChestError, Error, ErrorKind};

/// How long the diagnosis of a pool timeout may try a connection of its own.
const DIAGNOSE_TIMEOUT: Duration = Duration::from_secs(3);

impl<B: Backend> SqlxChest<B> {
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

    /// A `ChestError` for `error`: see [`failure`](Self::failure).
    pub(super) async fn error(&self, error: sqlx::Error) -> ChestError {
        let (kind, message) = self.failure(error).await;
        ChestError::new(&*self.name, kind, message)
    }

    /// An [`Error::Backend`] for `error`: see [`failure`](Self::failure).
    pub(super) async fn backend_error(&self, error: sqlx::Error) -> Error {
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

/// The error's text, with the server's code when the text lacks it.
pub(super) fn describe(error: &sqlx::Error) -> String {
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
pub(super) fn classify<B: Backend>(error: &sqlx::Error) -> ErrorKind {
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
