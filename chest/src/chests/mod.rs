//! The chests (backends), one module each, each behind a cargo feature, and the table of URL
//! schemes that [`chest::open`](crate::open()) and [`Reader::open`](crate::read::Reader::open)
//! look up.
//!
//! Each backend owns its URL grammar: its module parses its own schemes' URLs and makes the
//! `Scheme` row listed in `SCHEMES`. Nothing else in the crate knows a backend's URL, and a
//! backend knows only the row's type (in `scheme.rs`), not this table.

use crate::url::ChestUrl;
use crate::Error;
use scheme::Scheme;

#[cfg(feature = "http")]
pub mod http;
#[cfg(any(feature = "influxdb", feature = "http", feature = "prometheus"))]
pub(crate) mod http_client;
#[cfg(feature = "influxdb")]
pub mod influxdb;
pub mod memory;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "prometheus")]
pub mod prometheus;
pub(crate) mod scheme;
#[cfg(any(feature = "sqlite", feature = "mysql", feature = "postgres"))]
pub(crate) mod sql;

#[cfg(feature = "mysql")]
pub use sql::mysql;
#[cfg(feature = "postgres")]
pub use sql::postgres;
#[cfg(feature = "sqlite")]
pub use sql::sqlite;

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
    influxdb::url::SCHEME,
    #[cfg(feature = "http")]
    http::SCHEME,
    #[cfg(feature = "nats")]
    nats::SCHEME,
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
