//! The chests (backends), one module each, each behind a cargo feature.

pub mod memory;
#[cfg(feature = "sqlite")]
pub(crate) mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;
