//! The [`Chest`] trait every backend implements, and its error.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::{BatchId, Record, Written};

/// A boxed, `Send` future: what [`Chest::write`] returns, so the trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Any error, boxed: the cause inside a [`ChestError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A storage backend that records are written to.
///
/// The trait is object-safe: a layer holds its chests as `Arc<dyn Chest>`. A write either stores
/// every record it was given or returns an error; chests that cannot be all-or-nothing say so in
/// their docs.
///
/// ```
/// use chest::{BoxFuture, Chest, ChestError, Record};
///
/// /// A chest that only counts what it is given.
/// #[derive(Default)]
/// struct Counting(std::sync::atomic::AtomicUsize);
///
/// impl Chest for Counting {
///     fn name(&self) -> &str {
///         "counting"
///     }
///     fn write<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), ChestError>> {
///         Box::pin(async move {
///             self.0.fetch_add(records.len(), std::sync::atomic::Ordering::Relaxed);
///             Ok(())
///         })
///     }
/// }
/// ```
pub trait Chest: Send + Sync + 'static {
    /// A name for logs and errors. Never a secret: no password or token may appear in it.
    fn name(&self) -> &str;

    /// Writes the records. The records of one call belong together (one request, or one batch).
    fn write<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), ChestError>>;

    /// Writes records the caller is done with; the layers hand a request's records over this way
    /// when there is one chest. The default lends them to [`write`](Chest::write). A chest that
    /// keeps records, like the batched chest's queue, takes them here without copying.
    fn write_owned(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), ChestError>> {
        Box::pin(async move { self.write(&records).await })
    }

    /// Writes one batch under its identity; [`Batched`](crate::batch::Batched) and `chest
    /// export` write this way, and give a retried batch the same `id`.
    ///
    /// A chest that remembers the ids it stored (the SQL chests, in the same transaction as the
    /// rows) answers [`Written::AlreadyStored`] for an id it has, and stores nothing: a write whose
    /// acknowledgement was lost is then not stored twice when it is retried. Others pass the id
    /// on (the HTTP chest as an `Idempotency-Key` header) or ignore it. The default lends the
    /// records to [`write`](Chest::write) and answers [`Written::Stored`].
    fn write_batch<'a>(
        &'a self,
        id: BatchId,
        records: &'a [Record],
    ) -> BoxFuture<'a, Result<Written, ChestError>> {
        let _ = id;
        Box::pin(async move { self.write(records).await.map(|()| Written::Stored) })
    }
}

impl std::fmt::Debug for dyn Chest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Chest").field(&self.name()).finish()
    }
}

/// `Chest` for a smart pointer to a chest: every method forwarded.
macro_rules! forward_chest {
    ($($pointer:ident),*) => {$(
        impl<C: Chest + ?Sized> Chest for $pointer<C> {
            fn name(&self) -> &str {
                (**self).name()
            }
            fn write<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), ChestError>> {
                (**self).write(records)
            }
            fn write_owned(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), ChestError>> {
                (**self).write_owned(records)
            }
            fn write_batch<'a>(
                &'a self,
                id: BatchId,
                records: &'a [Record],
            ) -> BoxFuture<'a, Result<Written, ChestError>> {
                (**self).write_batch(id, records)
            }
        }
    )*};
}

forward_chest!(Arc, Box);

/// Whether retrying a failed write can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A transient failure (connection refused, timeout, lock): retrying later may succeed.
    Retryable,
    /// The backend asked to slow down; retry after the given delay.
    Throttled {
        /// How long the backend asked to wait.
        retry_after: Duration,
    },
    /// Retrying the same records will fail again (bad data, bad credentials, bad schema).
    Permanent,
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorKind::Retryable => f.write_str("retryable"),
            ErrorKind::Throttled { retry_after } => {
                write!(f, "throttled, retry after {retry_after:?}")
            }
            ErrorKind::Permanent => f.write_str("permanent"),
        }
    }
}

/// A failed write: which chest, why, and whether a retry can help.
///
/// The message never contains secrets: chests build it from their name (which has no password or
/// token) and from the backend's answer.
///
/// ```
/// use chest::{ChestError, ErrorKind};
///
/// let e = ChestError::retryable("sqlite:chest.db", "database is locked");
/// assert_eq!(e.chest(), "sqlite:chest.db");
/// assert!(e.is_retryable());
/// assert_eq!(e.to_string(), "chest `sqlite:chest.db` failed (retryable): database is locked");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("chest `{chest}` failed ({kind}): {source}")]
pub struct ChestError {
    chest: String,
    kind: ErrorKind,
    #[source]
    source: BoxError,
}

impl ChestError {
    /// An error of the given kind.
    pub fn new(chest: impl Into<String>, kind: ErrorKind, cause: impl Into<BoxError>) -> Self {
        ChestError {
            chest: chest.into(),
            kind,
            source: cause.into(),
        }
    }

    /// A transient error: a retry may succeed.
    pub fn retryable(chest: impl Into<String>, cause: impl Into<BoxError>) -> Self {
        Self::new(chest, ErrorKind::Retryable, cause)
    }

    /// A permanent error: the same records will fail again.
    pub fn permanent(chest: impl Into<String>, cause: impl Into<BoxError>) -> Self {
        Self::new(chest, ErrorKind::Permanent, cause)
    }

    /// The backend asked to wait `retry_after` before the next attempt.
    pub fn throttled(
        chest: impl Into<String>,
        retry_after: Duration,
        cause: impl Into<BoxError>,
    ) -> Self {
        Self::new(chest, ErrorKind::Throttled { retry_after }, cause)
    }

    /// The name of the chest that failed.
    pub fn chest(&self) -> &str {
        &self.chest
    }

    /// Whether a retry can help, and when.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// True unless the error is [`ErrorKind::Permanent`].
    pub fn is_retryable(&self) -> bool {
        !matches!(self.kind, ErrorKind::Permanent)
    }

    /// The delay the backend asked for, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            ErrorKind::Throttled { retry_after } => Some(retry_after),
            _ => None,
        }
    }
}
