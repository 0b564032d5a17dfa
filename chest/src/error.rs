//! Errors of building and configuring chests.

use crate::chest::BoxError;

/// Why a chest could not be built or opened. Write failures are [`ChestError`](crate::ChestError)s.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A table (or other SQL identifier) name that is not a plain identifier.
    #[error("invalid table name {name:?}: {reason}; use letters, digits and _ (at most 64, not starting with a digit)")]
    InvalidTableName {
        /// The refused name (its first 80 characters).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An existing table lacks columns chest writes.
    #[error("table `{table}` exists but lacks the columns {missing:?}; drop it, migrate it, or choose another table name")]
    MissingColumns {
        /// The table.
        table: String,
        /// The columns it lacks.
        missing: Vec<String>,
    },
    /// A chest URL that cannot be used; `part` says which part is wrong.
    #[error("invalid chest URL `{url}`: {part}: {reason}")]
    InvalidUrl {
        /// The URL, without its password or query values.
        url: String,
        /// The part at fault: `scheme`, `host`, `path`, `query`, ...
        part: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A setting has a value that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The backend could not be opened or prepared.
    #[error("{chest}: {source}")]
    Backend {
        /// The chest's name (never a secret).
        chest: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
}

impl Error {
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))] // Other chests build their own.
    pub(crate) fn backend(chest: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            chest: chest.into(),
            source: source.into(),
        }
    }
}

/// An error and its causes on one line, joined with `: `, each said once (many errors already
/// print their cause's text in their own): for logs and command-line messages.
///
/// ```
/// let cause = std::io::Error::other("connection refused");
/// let error = chest::ChestError::retryable("mysql://app@db:3306/metrics", cause);
/// let line = chest::error_chain(&error);
/// assert!(line.contains("mysql://app@db:3306/metrics"), "{line}");
/// assert_eq!(line.matches("connection refused").count(), 1, "{line}");
/// ```
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
