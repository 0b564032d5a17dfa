//! The chests (backends), one module each, each behind a cargo feature, and the table of URL
//! schemes that [`chest::open`](crate::open()) and [`Reader::open`](crate::read::Reader::open)
//! look up.
//!
//! Each backend owns its URL grammar: its module parses its own schemes' URLs and makes the
//! [`Scheme`] row listed in [`SCHEMES`]. Nothing else in the crate knows a backend's URL.

use std::sync::Arc;

use crate::stored::ReadBack;
use crate::url::ChestUrl;
use crate::{BoxFuture, Chest, Error};

#[cfg(feature = "http")]
pub mod http;
#[cfg(any(feature = "influxdb", feature = "http", feature = "prometheus"))]
pub(crate) mod http_client;
#[cfg(feature = "influxdb")]
pub mod influxdb;
pub mod memory;
#[cfg(feature = "prometheus")]
pub mod prometheus;
#[cfg(any(feature = "sqlite", feature = "mysql", feature = "postgres"))]
pub(crate) mod sql;

#[cfg(feature = "mysql")]
pub use sql::mysql;
#[cfg(feature = "postgres")]
pub use sql::postgres;
#[cfg(feature = "sqlite")]
pub use sql::sqlite;

/// What an opener returns once the URL is understood: the connection (or preparation) still to
/// await. The URL is parsed before any I/O, so a bad URL fails at once.
pub(crate) type Opening<T> = BoxFuture<'static, Result<T, Error>>;

/// Opens what a URL describes, or says at once why the URL cannot be used.
pub(crate) type Opener<T> = fn(&ChestUrl<'_>) -> Result<Opening<T>, Error>;

/// One backend's row in the scheme table.
pub(crate) struct Scheme {
    /// The URL schemes it answers to (`postgres` and `postgresql`, say).
    pub names: &'static [&'static str],
    /// Opens a chest from a URL of one of those schemes.
    pub open: Opener<Arc<dyn Chest>>,
    /// Opens a reader of what the chest stored, for backends that can read back.
    pub read: Option<Opener<Box<dyn ReadBack>>>,
}

/// Every backend compiled in: one row each.
pub(crate) const SCHEMES: &[Scheme] = &[
    memory::SCHEME,
    #[cfg(feature = "sqlite")]
    sqlite::SCHEME,
    #[cfg(feature = "mysql")]
    mysql::SCHEME,
    #[cfg(feature = "postgres")]
    postgres::SCHEME,
    #[cfg(feature = "influxdb")]
    influxdb::SCHEME,
    #[cfg(feature = "http")]
    http::SCHEME,
];

/// The row of `url`'s scheme, or an error saying that no compiled-in backend has it.
pub(crate) fn scheme(url: &ChestUrl<'_>) -> Result<&'static Scheme, Error> {
    SCHEMES
        .iter()
        .find(|s| s.names.contains(&url.scheme))
        .ok_or_else(|| {
            url.invalid(
                "scheme",
                format!(
                    "unknown or disabled scheme `{}` (is its cargo feature on?)",
                    url.scheme
                ),
            )
        })
}
