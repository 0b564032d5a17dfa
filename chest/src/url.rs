//! Chest URLs taken apart, and what every scheme's grammar shares: query parameters that must all
//! be used, secrets named by `…_env` parameters, redaction, durations. A leaf: it knows no backend.

use std::cell::RefCell;
use std::time::Duration;

use crate::Error;

/// A chest URL taken apart: scheme, the part before `?`, and the query parameters.
///
/// Each backend reads the parameters it knows with [`param`](Self::param) and then calls
/// [`check_all_used`](Self::check_all_used), so that a misspelt parameter is an error rather
/// than silently ignored.
pub(crate) struct ChestUrl<'a> {
    /// The whole URL, for error messages (redacted there).
    pub url: &'a str,
    /// What comes before `://`.
    pub scheme: &'a str,
    /// What comes between `://` and `?`.
    pub rest: &'a str,
    params: Vec<(String, String)>,
    used: RefCell<Vec<String>>,
}

impl<'a> ChestUrl<'a> {
    /// Splits `url`; fails only when it has no `scheme://`.
    pub(crate) fn parse(url: &'a str) -> Result<Self, Error> {
        let (scheme, after) = url
            .split_once("://")
            .ok_or_else(|| invalid(url, "scheme", "expected `scheme://...`".into()))?;
        let (rest, query) = after.split_once('?').unwrap_or((after, ""));
        let params = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Ok(ChestUrl {
            url,
            scheme,
            rest,
            params,
            used: Default::default(),
        })
    }

    /// The value of query parameter `key`, if given (and marks it used).
    pub fn param(&self, key: &str) -> Option<&str> {
        self.used.borrow_mut().push(key.to_owned());
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every parameter whose key starts with `prefix`, the prefix removed (and marks them used).
    #[cfg(feature = "influxdb")]
    pub fn prefixed(&self, prefix: &str) -> Vec<(String, String)> {
        let found: Vec<(String, String)> = self
            .params
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_owned(), v.clone())))
            .collect();
        self.used
            .borrow_mut()
            .extend(found.iter().map(|(k, _)| format!("{prefix}{k}")));
        found
    }

    /// Every parameter but those in `except`, in order (and marks them used): for a driver that
    /// judges its own options.
    #[cfg(any(feature = "mysql", feature = "postgres"))]
    pub fn all_except(&self, except: &[&str]) -> Vec<(String, String)> {
        let others: Vec<(String, String)> = self
            .params
            .iter()
            .filter(|(k, _)| !except.contains(&k.as_str()))
            .cloned()
            .collect();
        self.used
            .borrow_mut()
            .extend(others.iter().map(|(k, _)| k.clone()));
        others
    }

    /// Whether parameter `key` is present (without marking it used).
    #[cfg(any(feature = "influxdb", feature = "nats"))]
    pub fn has(&self, key: &str) -> bool {
        self.params.iter().any(|(k, _)| k == key)
    }

    /// Refuses parameters no one read: a typo must not be silently ignored. Each scheme calls it
    /// after reading its parameters and before connecting.
    pub fn check_all_used(&self) -> Result<(), Error> {
        let used = self.used.borrow();
        match self.params.iter().find(|(k, _)| !used.contains(k)) {
            Some((k, _)) => Err(self.invalid(
                "query",
                format!("unknown parameter `{k}` for {}://", self.scheme),
            )),
            None => Ok(()),
        }
    }

    /// An [`Error::InvalidUrl`] for this URL (redacted), naming `part`.
    pub fn invalid(&self, part: &'static str, reason: String) -> Error {
        invalid(self.url, part, reason)
    }

    /// A secret named by a `…_env` parameter (`token_env=VAR`): read from that environment
    /// variable. Secrets never go in a URL itself.
    #[cfg(any(feature = "influxdb", feature = "nats"))]
    pub fn secret_from_env(&self, key: &'static str) -> Result<Option<String>, Error> {
        let Some(var) = self.param(key) else {
            return Ok(None);
        };
        std::env::var(var).map(Some).map_err(|_| {
            self.invalid(
                "query",
                format!("{key}: environment variable `{var}` is not set"),
            )
        })
    }

    /// Refuses a secret given in the query itself (`token=…`): secrets are named by `KEY_env`.
    #[cfg(any(feature = "influxdb", feature = "nats"))]
    pub fn refuse_secrets(&self, keys: &[&str]) -> Result<(), Error> {
        match keys.iter().find(|key| self.has(key)) {
            Some(secret) => Err(self.invalid(
                "query",
                format!("a {secret} never goes in a URL: put it in an environment variable and pass `{secret}_env=VAR`"),
            )),
            None => Ok(()),
        }
    }

    /// `[USER@]HOSTS/PATH` taken apart: the user (a password there is refused), the hosts and the
    /// path after the first `/`.
    #[cfg(any(feature = "influxdb", feature = "nats"))]
    pub fn user_hosts_path(&self) -> Result<(Option<&'a str>, &'a str, &'a str), Error> {
        let (authority, path) = self.rest.split_once('/').unwrap_or((self.rest, ""));
        match authority.rsplit_once('@') {
            Some((user, _)) if user.contains(':') => Err(self.invalid(
                "userinfo",
                "a password never goes in a URL: use `password_env=VAR`".into(),
            )),
            Some((user, hosts)) => Ok((Some(user), hosts, path)),
            None => Ok((None, authority, path)),
        }
    }

    /// Parameter `key` as `true` or `false`, if given.
    #[cfg(any(feature = "influxdb", feature = "nats"))]
    pub fn flag(&self, key: &'static str) -> Result<Option<bool>, Error> {
        self.param(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| self.invalid("query", format!("`{key}` must be true or false")))
            })
            .transpose()
    }

    /// Parameter `key` as a duration ([`parse_duration`]), if given.
    #[cfg(any(feature = "influxdb", feature = "nats"))]
    pub fn duration(&self, key: &'static str) -> Result<Option<Duration>, Error> {
        self.param(key)
            .map(|v| parse_duration(v).map_err(|e| self.invalid("query", format!("{key}: {e}"))))
            .transpose()
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

/// Parses a duration written `250ms`, `5s` or `2m` (a bare number is seconds).
///
/// ```
/// use std::time::Duration;
/// assert_eq!(chest::config::parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert!(chest::config::parse_duration("5h").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 500ms, 5s or 1m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(format!("unknown unit `{unit}` in `{text}`: use ms, s or m")),
    }
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

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("ms").is_err());
    }

    #[test]
    fn unread_parameters_are_refused() {
        let url = ChestUrl::parse("x://y?a=1&b=2").unwrap();
        assert_eq!(url.param("a"), Some("1"));
        let err = url.check_all_used().unwrap_err().to_string();
        assert!(err.contains("unknown parameter `b` for x://"), "{err}");
        assert_eq!(url.param("b"), Some("2"));
        assert!(url.check_all_used().is_ok());
    }
}
