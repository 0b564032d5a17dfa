//! Chests from URLs: `chest::open("sqlite://chest.db?table=t")`.
//!
//! | URL | chest | feature |
//! |---|---|---|
//! | `sqlite://PATH[?table=T]` (`sqlite:///abs/path.db` for an absolute path) | [`SqliteChest`](crate::chests::sqlite::SqliteChest) | `sqlite` |
//! | `memory://[NAME]` | [`MemoryChest`](crate::MemoryChest) | always |
//!
//! Secrets never go in a URL's query: chests that need a token or password take the *name of an
//! environment variable* that holds it (`token_env=VAR`, `password_env=VAR`). Errors name the part
//! of the URL that is wrong and never repeat a password.

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
    fn parse(url: &'a str) -> Result<Self, Error> {
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

/// Opens the chest a URL describes. See the [module docs](self) for the schemes.
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
fn sqlite_builder_of(
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
