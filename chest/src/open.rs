//! Chests from URLs: `chest::open("sqlite://chest.db?table=t")`, a lookup in the scheme table of
//! [`chests`](crate::chests).

use std::sync::Arc;

use crate::url::ChestUrl;
use crate::{Chest, Error};

/// Opens the chest a URL describes.
///
/// | URL | chest | feature |
/// |---|---|---|
/// | `sqlite://PATH[?table=T]` (`sqlite:///abs/path.db` for an absolute path) | [`SqliteChest`](crate::chests::sqlite::SqliteChest) | `sqlite` |
/// | `memory://[NAME][?keep=N]` | [`MemoryChest`](crate::MemoryChest) (only the newest N records held; `keep=0`: none) | always |
/// | `mysql://USER[:PASSWORD]@HOST[:PORT]/DB[?table=T&…]` | `MySqlChest` (other parameters go to sqlx) | `mysql` |
/// | `postgres://…` or `postgresql://…` (same shape) | `PostgresChest` | `postgres` |
/// | `influxdb://HOST:PORT?org=O&bucket=B&token_env=VAR` (`influxdbs://` for HTTPS) | `InfluxDbChest`, v2 API | `influxdb` |
/// | `influxdb1://[USER@]HOST:PORT/DB?rp=RP&password_env=VAR` (`influxdb1s://`) | `InfluxDbChest`, v1 API | `influxdb` |
/// | `http://…`, `https://…` | `HttpChest` with the default payload (a JSON array of records) | `http` |
/// | `nats://HOST:PORT[,HOST:PORT…]/STREAM[?subject=S&create=true&replicas=3&token_env=VAR]` (`tls://`) | `NatsChest`, a JetStream stream (see `chests::nats`) | `nats` |
///
/// InfluxDB URLs also take `tag.NAME=VALUE` (custom tags), `request_id_as_tag=true`,
/// `gzip=false`, `timeout=5s` and `verify=false`.
///
/// Secrets never go in a URL's query: chests that need a token or password take the *name of an
/// environment variable* that holds it (`token_env=VAR`, `password_env=VAR`). Errors name the part
/// of the URL that is wrong and never repeat a password.
///
/// ```
/// # async fn demo() -> Result<(), chest::Error> {
/// let chest = chest::open("memory://tests").await?;
/// assert_eq!(chest.name(), "tests");
/// let err = chest::open("nosuch://x").await.unwrap_err();
/// assert!(err.to_string().contains("scheme"));
/// # Ok(()) }
/// ```
pub async fn open(url: &str) -> Result<Arc<dyn Chest>, Error> {
    let opening = {
        let parsed = ChestUrl::parse(url)?;
        (crate::chests::scheme(&parsed)?.open)(&parsed)?
    };
    opening.await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_name_the_bad_part() {
        let err = open("sqlite://never-created.db?tabel=t")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown parameter `tabel`"), "{err}");
        assert!(!std::path::Path::new("never-created.db").exists());
        let err = open("sqlite://").await.unwrap_err().to_string();
        assert!(err.contains("path"), "{err}");
        let err = open("chest.db").await.unwrap_err().to_string();
        assert!(err.contains("scheme"), "{err}");
        let err = open("sqlite://x.db?table=a;b")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid table name"), "{err}");
    }

    #[cfg(feature = "influxdb")]
    #[tokio::test]
    async fn influxdb_urls() {
        let err = open("influxdb://127.0.0.1:8086?org=o&bucket=b&token=abc")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("token_env"), "{err}");
        assert!(!err.to_string().contains("abc"), "{err}");
        let err = open("influxdb://127.0.0.1:8086?org=o")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("`bucket` is required"), "{err}");
        let err = open("influxdb://h:1?org=o&bucket=b&token_env=CHEST_NO_SUCH_VAR_X")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("CHEST_NO_SUCH_VAR_X"), "{err}");
        let err = open("influxdb1://u:pw@h:1/db")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("userinfo") && !err.contains("pw"), "{err}");
        let chest = open("influxdb1://127.0.0.1:8086/db?rp=autogen&tag.host=a&gzip=false")
            .await
            .unwrap();
        assert!(chest.name().contains("db"), "{}", chest.name());
        let chest = open("influxdbs://127.0.0.1:8086?org=o&bucket=b")
            .await
            .unwrap();
        assert!(chest.name().contains("https://"), "{}", chest.name());
    }

    #[tokio::test]
    async fn opens_sqlite_with_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.db");
        let chest = open(&format!("sqlite://{}?table=flask_chest", path.display()))
            .await
            .unwrap();
        chest
            .write(&[crate::Record::new("r", "n", 1, "GET", None)])
            .await
            .unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM flask_chest", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }
}
