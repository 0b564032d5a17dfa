//! Chests from URLs: `chest::open("sqlite://chest.db?table=t")`.

use std::sync::Arc;

use crate::{Chest, Error};

/// A chest URL taken apart: scheme, the part before `?`, and the query parameters.
pub(crate) struct ChestUrl<'a> {
    pub scheme: &'a str,
    pub rest: &'a str,
    params: Vec<(String, String)>,
    used: std::cell::RefCell<Vec<String>>,
}

impl<'a> ChestUrl<'a> {
    pub(crate) fn parse(url: &'a str) -> Result<Self, Error> {
        let (scheme, after) = url
            .split_once("://")
            .ok_or_else(|| invalid(url, "scheme", "expected `scheme://...`".into()))?;
        let (rest, query) = after.split_once('?').unwrap_or((after, ""));
        let params = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Ok(ChestUrl {
            scheme,
            rest,
            params,
            used: Default::default(),
        })
    }

    /// The value of query parameter `key`, if given.
    #[cfg_attr(
        not(any(feature = "sqlite", feature = "mysql", feature = "postgres", feature = "influxdb")),
        allow(dead_code) // Only `memory://` is left, and it takes no parameter.
    )]
    pub fn param(&self, key: &str) -> Option<&str> {
        self.used.borrow_mut().push(key.to_owned());
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Refuses parameters no chest read: a typo must not be silently ignored. Each scheme calls it
    /// after reading its parameters and before connecting.
    pub fn check_all_used(&self, url: &str) -> Result<(), Error> {
        let used = self.used.borrow();
        match self.params.iter().find(|(k, _)| !used.contains(k)) {
            Some((k, _)) => Err(invalid(
                url,
                "query",
                format!("unknown parameter `{k}` for {}://", self.scheme),
            )),
            None => Ok(()),
        }
    }
}

/// An [`Error::InvalidUrl`] for `url` (its password removed).
pub(crate) fn invalid(url: &str, part: &'static str, reason: String) -> Error {
    Error::InvalidUrl {
        url: redact(url),
        part,
        reason,
    }
}

/// The URL without the password of its userinfo and without query values.
pub(crate) fn redact(url: &str) -> String {
    let (head, query) = url.split_once('?').unwrap_or((url, ""));
    let head = match head.split_once("://") {
        Some((scheme, after)) => {
            let (authority, path) = after.split_at(after.find('/').unwrap_or(after.len()));
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    let user = userinfo.split(':').next().unwrap_or("");
                    format!("{user}@{host}")
                }
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => head.to_owned(),
    };
    if query.is_empty() {
        head
    } else {
        let keys: Vec<String> = form_urlencoded::parse(query.as_bytes())
            .map(|(k, _)| format!("{k}=…"))
            .collect();
        format!("{head}?{}", keys.join("&"))
    }
}

/// Opens the chest a URL describes.
///
/// | URL | chest | feature |
/// |---|---|---|
/// | `sqlite://PATH[?table=T]` (`sqlite:///abs/path.db` for an absolute path) | [`SqliteChest`](crate::chests::sqlite::SqliteChest) | `sqlite` |
/// | `memory://[NAME]` | [`MemoryChest`](crate::MemoryChest) | always |
/// | `mysql://USER[:PASSWORD]@HOST[:PORT]/DB[?table=T&…]` | `MySqlChest` (other parameters go to sqlx) | `mysql` |
/// | `postgres://…` or `postgresql://…` (same shape) | `PostgresChest` | `postgres` |
/// | `influxdb://HOST:PORT?org=O&bucket=B&token_env=VAR` (`influxdbs://` for HTTPS) | `InfluxDbChest`, v2 API | `influxdb` |
/// | `influxdb1://[USER@]HOST:PORT/DB?rp=RP&password_env=VAR` (`influxdb1s://`) | `InfluxDbChest`, v1 API | `influxdb` |
/// | `http://…`, `https://…` | `HttpChest` with the default payload (a JSON array of records) | `http` |
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
    let parsed = ChestUrl::parse(url)?;
    let chest: Arc<dyn Chest> = match parsed.scheme {
        "memory" => {
            parsed.check_all_used(url)?;
            let name = Some(parsed.rest).filter(|n| !n.is_empty());
            Arc::new(crate::MemoryChest::named(name.unwrap_or("memory")))
        }
        #[cfg(feature = "sqlite")]
        "sqlite" => Arc::new(open_sqlite(url, &parsed)?),
        #[cfg(feature = "mysql")]
        "mysql" => {
            let (sqlx_url, table) = sql_server_url(url, &parsed)?;
            let builder = crate::chests::mysql::MySqlChest::builder(&sqlx_url);
            Arc::new(
                table
                    .map_or(builder.clone(), |t| builder.table(t))
                    .build()
                    .await?,
            )
        }
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => {
            let (sqlx_url, table) = sql_server_url(url, &parsed)?;
            let builder = crate::chests::postgres::PostgresChest::builder(&sqlx_url);
            Arc::new(
                table
                    .map_or(builder.clone(), |t| builder.table(t))
                    .build()
                    .await?,
            )
        }
        #[cfg(feature = "influxdb")]
        "influxdb" | "influxdbs" | "influxdb1" | "influxdb1s" => {
            Arc::new(open_influxdb(url, &parsed)?)
        }
        #[cfg(feature = "http")]
        "http" | "https" => Arc::new(crate::chests::http::HttpChest::builder(url).build()?),
        other => {
            return Err(invalid(
                url,
                "scheme",
                format!("unknown or disabled scheme `{other}` (is its cargo feature on?)"),
            ))
        }
    };
    Ok(chest)
}

#[cfg(feature = "sqlite")]
fn open_sqlite(
    url: &str,
    parsed: &ChestUrl<'_>,
) -> Result<crate::chests::sqlite::SqliteChest, Error> {
    sqlite_builder_of(url, parsed)?.build()
}

/// The settings a `sqlite://PATH[?table=T]` URL describes.
#[cfg(feature = "sqlite")]
pub(crate) fn sqlite_builder(
    url: &str,
) -> Result<crate::chests::sqlite::SqliteChestBuilder, Error> {
    let parsed = ChestUrl::parse(url)?;
    if parsed.scheme != "sqlite" {
        return Err(invalid(url, "scheme", "expected `sqlite://`".into()));
    }
    sqlite_builder_of(url, &parsed)
}

#[cfg(feature = "sqlite")]
pub(crate) fn sqlite_builder_of(
    url: &str,
    parsed: &ChestUrl<'_>,
) -> Result<crate::chests::sqlite::SqliteChestBuilder, Error> {
    if parsed.rest.is_empty() {
        return Err(invalid(url, "path", "no database file given".into()));
    }
    let mut builder = crate::chests::sqlite::SqliteChest::builder(parsed.rest);
    if let Some(table) = parsed.param("table") {
        builder = builder.table(table);
    }
    parsed.check_all_used(url)?;
    Ok(builder)
}

/// The URL sqlx gets (without chest's own `table` parameter) and the table, if given.
#[cfg(any(feature = "mysql", feature = "postgres"))]
pub(crate) fn sql_server_url(
    url: &str,
    parsed: &ChestUrl<'_>,
) -> Result<(String, Option<String>), Error> {
    let table = parsed.param("table").map(str::to_owned);
    let others: Vec<(String, String)> = parsed
        .params
        .iter()
        .filter(|(k, _)| k != "table")
        .cloned()
        .collect();
    for (key, _) in &others {
        parsed.param(key); // sqlx judges its own options.
    }
    parsed.check_all_used(url)?;
    let mut sqlx_url = format!("{}://{}", parsed.scheme, parsed.rest);
    if !others.is_empty() {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(others)
            .finish();
        sqlx_url.push('?');
        sqlx_url.push_str(&query);
    }
    Ok((sqlx_url, table))
}

/// A secret named by a `…_env` parameter: read from that environment variable.
#[cfg(feature = "influxdb")]
fn secret_from_env(
    url: &str,
    parsed: &ChestUrl<'_>,
    key: &'static str,
) -> Result<Option<String>, Error> {
    let Some(var) = parsed.param(key) else {
        return Ok(None);
    };
    std::env::var(var).map(Some).map_err(|_| {
        invalid(
            url,
            "query",
            format!("{key}: environment variable `{var}` is not set"),
        )
    })
}

#[cfg(feature = "influxdb")]
fn open_influxdb(
    url: &str,
    parsed: &ChestUrl<'_>,
) -> Result<crate::chests::influxdb::InfluxDbChest, Error> {
    use crate::chests::influxdb::InfluxDbChest;
    for secret in ["token", "password"] {
        if parsed.params.iter().any(|(k, _)| k == secret) {
            return Err(invalid(
                url,
                "query",
                format!("a {secret} never goes in a URL: put it in an environment variable and pass `{secret}_env=VAR`"),
            ));
        }
    }
    let http = if parsed.scheme.ends_with('s') {
        "https"
    } else {
        "http"
    };
    let (authority, path) = parsed.rest.split_once('/').unwrap_or((parsed.rest, ""));
    let (user, host) = match authority.rsplit_once('@') {
        Some((user, _)) if user.contains(':') => {
            return Err(invalid(
                url,
                "userinfo",
                "a password never goes in a URL: use `password_env=VAR`".into(),
            ))
        }
        Some((user, host)) => (Some(user), host),
        None => (None, authority),
    };
    if host.is_empty() {
        return Err(invalid(url, "host", "no host given".into()));
    }
    let base = format!("{http}://{host}");
    let mut builder = if parsed.scheme.starts_with("influxdb1") {
        let database = path.trim_end_matches('/');
        if database.is_empty() {
            return Err(invalid(
                url,
                "path",
                "no database given: influxdb1://host:8086/DB".into(),
            ));
        }
        let mut b = InfluxDbChest::v1(base, database);
        if let Some(rp) = parsed.param("rp") {
            b = b.retention_policy(rp);
        }
        if let Some(password) = secret_from_env(url, parsed, "password_env")? {
            b = b.username_password(user.unwrap_or(""), password);
        } else if user.is_some() {
            return Err(invalid(
                url,
                "query",
                "a user needs `password_env=VAR`".into(),
            ));
        }
        b
    } else {
        if user.is_some() || !path.is_empty() {
            return Err(invalid(
                url,
                "path",
                "influxdb:// takes HOST:PORT and org/bucket parameters only".into(),
            ));
        }
        let required = |key: &'static str| {
            parsed
                .param(key)
                .ok_or_else(|| invalid(url, "query", format!("`{key}` is required")))
        };
        let (org, bucket) = (required("org")?, required("bucket")?);
        let mut b = InfluxDbChest::v2(base, org, bucket);
        if let Some(token) = secret_from_env(url, parsed, "token_env")? {
            b = b.token(token);
        }
        b
    };
    let flag = |key: &'static str| -> Result<Option<bool>, Error> {
        parsed
            .param(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| invalid(url, "query", format!("`{key}` must be true or false")))
            })
            .transpose()
    };
    if let Some(as_tag) = flag("request_id_as_tag")? {
        builder = builder.request_id_as_tag(as_tag);
    }
    if let Some(gzip) = flag("gzip")? {
        builder = builder.gzip(gzip);
    }
    if let Some(verify) = flag("verify")? {
        builder = builder.verify(verify);
    }
    if let Some(timeout) = parsed.param("timeout") {
        let timeout = crate::config::parse_duration(timeout)
            .map_err(|e| invalid(url, "query", format!("timeout: {e}")))?;
        builder = builder.timeout(timeout);
    }
    let tags: Vec<(String, String)> = parsed
        .params
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("tag.")?.to_owned(), v.clone())))
        .collect();
    for (key, value) in tags {
        parsed.param(&format!("tag.{key}"));
        builder = builder.custom_tag(key, value);
    }
    parsed.check_all_used(url)?;
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_and_query_values() {
        assert_eq!(
            redact("mysql://root:s3cret@127.0.0.1:3306/db?ssl=x"),
            "mysql://root@127.0.0.1:3306/db?ssl=…"
        );
        assert_eq!(redact("sqlite://a.db"), "sqlite://a.db");
    }

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
