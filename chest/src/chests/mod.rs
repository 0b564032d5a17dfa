//! The chests (backends), one module each, each behind a cargo feature.

#[cfg(feature = "http")]
pub mod http;
#[cfg(any(feature = "influxdb", feature = "http", feature = "prometheus"))]
pub(crate) mod http_client;
#[cfg(feature = "influxdb")]
pub mod influxdb;
pub mod memory;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "prometheus")]
pub mod prometheus;
#[cfg(any(feature = "sqlite", feature = "mysql", feature = "postgres"))]
pub(crate) mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(any(feature = "mysql", feature = "postgres"))]
pub(crate) mod sqlx_common;
