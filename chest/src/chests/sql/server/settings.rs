//! The settings both SQL server chests share, how their URLs become them, and the redaction of
//! passwords from everything they say.

use std::fmt;
use std::time::Duration;

use crate::chests::sql;
use crate::url::ChestUrl;
use crate::Error;

/// The settings both SQL server chests share; their builders fill it.
#[derive(Clone)]
pub(crate) struct Settings {
    pub url: String,
    pub table: String,
    pub max_connections: u32,
    pub connect_timeout: Duration,
}

impl Settings {
    pub fn new(url: &str) -> Self {
        Settings {
            url: url.to_owned(),
            table: sql::DEFAULT_TABLE.to_owned(),
            max_connections: 8,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// The settings of a `mysql://` or `postgres://` URL: chest's own `table` parameter, and the
    /// rest of the URL for sqlx, which judges its own options.
    pub fn from_url(url: &ChestUrl<'_>) -> Result<Self, Error> {
        let table = url.param("table").map(str::to_owned);
        let others = url.all_except(&["table"]);
        url.check_all_used()?;
        let mut sqlx_url = format!("{}://{}", url.scheme, url.rest);
        if !others.is_empty() {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(others)
                .finish();
            sqlx_url.push('?');
            sqlx_url.push_str(&query);
        }
        let mut settings = Settings::new(&sqlx_url);
        if let Some(table) = table {
            settings.table = table;
        }
        Ok(settings)
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("url", &Secrets::of_url(&self.url).redact(&self.url))
            .field("table", &self.table)
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// The password of a connection URL, as written and percent-decoded, to scrub from messages.
#[derive(Clone, Default)]
pub(crate) struct Secrets(Vec<String>);

impl Secrets {
    /// The password in `url`'s user info and any `password=` query parameter.
    pub fn of_url(url: &str) -> Self {
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let (authority, query) = match rest.split_once('?') {
            Some((before, query)) => (before, query),
            None => (rest, ""),
        };
        let authority = authority.split('/').next().unwrap_or("");
        let mut found = Vec::new();
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            found.extend(userinfo.split_once(':').map(|(_, password)| password));
        }
        found.extend(
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .filter(|(key, _)| key.eq_ignore_ascii_case("password"))
                .map(|(_, value)| value),
        );
        let mut secrets: Vec<String> = Vec::new();
        for raw in found.into_iter().filter(|p| !p.is_empty()) {
            secrets.push(raw.to_owned());
            secrets.push(percent_decode(raw));
        }
        // Longest first, so a password that contains another is scrubbed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Secrets(secrets)
    }

    /// `text` with every occurrence of a secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        self.0
            .iter()
            .fold(text.to_owned(), |text, secret| text.replace(secret, "***"))
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_found_and_scrubbed() {
        let url = "mysql://root:p%40ss@127.0.0.1:3306/db?password=other&ssl-mode=disabled";
        let secrets = Secrets::of_url(url);
        let text = format!("{url} p@ss other");
        let redacted = secrets.redact(&text);
        for secret in ["p%40ss", "p@ss", "other"] {
            assert!(!redacted.contains(secret), "{redacted}");
        }
        assert!(
            redacted.starts_with("mysql://root:***@127.0.0.1:3306/db"),
            "{redacted}"
        );
        assert_eq!(Secrets::of_url("postgres://u@h/db").redact("u@h"), "u@h");
        // An `@` in the password (unescaped) still counts as part of it.
        let odd = Secrets::of_url("postgres://u:a@b@h:5432/db");
        assert_eq!(odd.redact("x a@b y"), "x *** y");
    }

    #[test]
    fn settings_debug_hides_the_password() {
        let settings = Settings::new("postgres://chest:hunter2@127.0.0.1/db");
        let debug = format!("{settings:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("chest:***@127.0.0.1"), "{debug}");
    }
}
