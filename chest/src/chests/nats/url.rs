//! The NATS chest's URLs: `nats://HOST:PORT[,HOST:PORT…]/STREAM?subject=…` (`tls://` for TLS).

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::stream::RetentionPolicy;

use crate::url::ChestUrl;
use crate::Error;

/// Which side of the stream a URL is for: the chest publishes, the source consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Chest,
    Source,
}

/// How the client proves who it is. The secrets were read from the environment variables the
/// URL named; `Debug` never shows them.
#[derive(Clone, Default)]
pub(crate) enum Auth {
    #[default]
    None,
    Token(String),
    UserPassword(String, String),
    /// The path of a `.creds` file (JWT and nkey seed).
    Creds(PathBuf),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "None",
            Auth::Token(_) => "Token(…)",
            Auth::UserPassword(..) => "UserPassword(…)",
            Auth::Creds(_) => "Creds(…)",
        })
    }
}

/// What to create when the stream is missing and `create=true`.
#[derive(Debug, Clone)]
pub(crate) struct Create {
    pub replicas: usize,
    pub retention: RetentionPolicy,
    pub max_age: Option<Duration>,
    pub duplicate_window: Option<Duration>,
}

/// Everything a NATS URL says, checked before any I/O.
#[derive(Debug, Clone)]
pub(crate) struct NatsSettings {
    /// `nats://h1:4222,h2:4222/STREAM`: the chest's name (no secret in it).
    pub name: String,
    /// `nats://host:port` of each server, for the client.
    pub servers: Vec<String>,
    pub stream: String,
    pub subject: String,
    pub auth: Auth,
    pub tls: bool,
    pub ca: Option<PathBuf>,
    /// Connect, publish-ack and request timeout.
    pub timeout: Duration,
    /// `Some` when `create=true`.
    pub create: Option<Create>,
    /// The durable consumer (source side only).
    pub consumer: Option<String>,
    /// How long the server waits for an ack before it delivers a message again (source only).
    pub ack_wait: Duration,
}

impl NatsSettings {
    pub(crate) fn parse(url: &ChestUrl<'_>, side: Side) -> Result<Self, Error> {
        url.refuse_secrets(&["token", "password", "creds"])?;
        let (user, hosts, path) = url.user_hosts_path()?;
        let servers: Vec<String> = hosts
            .split(',')
            .map(|host| host_port(url, host))
            .collect::<Result<_, _>>()?;
        let stream = path.trim_end_matches('/');
        if stream.is_empty() {
            return Err(url.invalid("path", "no stream given: nats://host:4222/STREAM".into()));
        }
        if !valid_name(stream) {
            return Err(url.invalid(
                "path",
                format!("`{stream}` is not a stream name: use letters, digits, - and _"),
            ));
        }
        let subject = url.param("subject").unwrap_or("chest.records").to_owned();
        if subject.is_empty()
            || subject.contains(char::is_whitespace)
            || subject.contains(['*', '>'])
        {
            return Err(url.invalid(
                "query",
                format!("subject `{subject}`: a plain subject like chest.records (no spaces, no wildcards)"),
            ));
        }
        let auth = auth(url, user)?;
        let tls = url.scheme == "tls" || url.flag("tls")?.unwrap_or(false);
        if url.flag("verify")? == Some(false) {
            return Err(url.invalid(
                "query",
                "TLS verification stays on: give the server's CA with `ca=PATH`".into(),
            ));
        }
        let ca = url.param("ca").map(PathBuf::from);
        let timeout = url.duration("timeout")?.unwrap_or(Duration::from_secs(5));
        let create = match url.flag("create")?.unwrap_or(false) {
            false => None,
            true => Some(Create {
                replicas: number(url, "replicas", 1, 1..=5)?,
                retention: retention(url)?,
                max_age: url.duration("max_age")?,
                duplicate_window: url.duration("duplicate_window")?,
            }),
        };
        let consumer = match side {
            Side::Chest => None,
            Side::Source => {
                let name = url.param("consumer").ok_or_else(|| {
                    url.invalid(
                        "query",
                        "`consumer=NAME` is required to read a stream".into(),
                    )
                })?;
                if !valid_name(name) {
                    return Err(url.invalid(
                        "query",
                        format!("consumer `{name}`: use letters, digits, - and _"),
                    ));
                }
                Some(name.to_owned())
            }
        };
        let ack_wait = match side {
            Side::Chest => Duration::from_secs(30),
            Side::Source => url.duration("ack_wait")?.unwrap_or(Duration::from_secs(30)),
        };
        url.check_all_used()?;
        let shown = match user {
            Some(user) => format!("{}://{user}@{hosts}/{stream}", url.scheme),
            None => format!("{}://{hosts}/{stream}", url.scheme),
        };
        Ok(NatsSettings {
            name: shown,
            servers,
            stream: stream.to_owned(),
            subject,
            auth,
            tls,
            ca,
            timeout,
            create,
            consumer,
            ack_wait,
        })
    }
}

/// `HOST[:PORT]` as `nats://HOST:PORT` (port 4222 when not given).
fn host_port(url: &ChestUrl<'_>, host: &str) -> Result<String, Error> {
    if host.is_empty() {
        return Err(url.invalid("host", "no host given".into()));
    }
    let port_given = match host.rsplit_once(':') {
        Some((_, port)) if !host.ends_with(']') => {
            port.parse::<u16>()
                .map_err(|_| url.invalid("host", format!("`{port}` is not a port")))?;
            true
        }
        _ => false,
    };
    Ok(match port_given {
        true => format!("nats://{host}"),
        false => format!("nats://{host}:4222"),
    })
}

fn auth(url: &ChestUrl<'_>, user: Option<&str>) -> Result<Auth, Error> {
    let token = url.secret_from_env("token_env")?;
    let password = url.secret_from_env("password_env")?;
    let creds = url.secret_from_env("creds_env")?;
    let given = [token.is_some(), password.is_some(), creds.is_some()];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(url.invalid(
            "query",
            "give one of `token_env`, `password_env` (with a user) or `creds_env`".into(),
        ));
    }
    Ok(match (user, token, password, creds) {
        (None, Some(token), _, _) => Auth::Token(token),
        (Some(user), None, Some(password), None) => Auth::UserPassword(user.to_owned(), password),
        (None, None, None, Some(path)) => Auth::Creds(PathBuf::from(path)),
        (None, None, None, None) => Auth::None,
        (Some(_), _, None, _) => {
            return Err(url.invalid("query", "a user needs `password_env=VAR`".into()))
        }
        (None, None, Some(_), None) => {
            return Err(url.invalid(
                "userinfo",
                "`password_env` needs a user: nats://USER@host:4222/STREAM".into(),
            ))
        }
        _ => return Err(url.invalid("userinfo", "a user goes with `password_env` only".into())),
    })
}

fn number(
    url: &ChestUrl<'_>,
    key: &'static str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, Error> {
    let Some(text) = url.param(key) else {
        return Ok(default);
    };
    text.parse()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            url.invalid(
                "query",
                format!(
                    "`{key}` must be a number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )
        })
}

fn retention(url: &ChestUrl<'_>) -> Result<RetentionPolicy, Error> {
    match url.param("retention").unwrap_or("limits") {
        "limits" => Ok(RetentionPolicy::Limits),
        "interest" => Ok(RetentionPolicy::Interest),
        "workqueue" => Ok(RetentionPolicy::WorkQueue),
        other => Err(url.invalid(
            "query",
            format!("retention `{other}`: use limits, interest or workqueue"),
        )),
    }
}

/// A stream or consumer name: 1–64 letters, digits, `-` and `_`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str, side: Side) -> Result<NatsSettings, Error> {
        NatsSettings::parse(&ChestUrl::parse(url)?, side)
    }

    #[test]
    fn a_full_url() {
        let s = parse(
            "nats://a:4231,b/CHEST?subject=app.rec&create=true&replicas=3&retention=workqueue&timeout=2s",
            Side::Chest,
        )
        .unwrap();
        assert_eq!(s.servers, ["nats://a:4231", "nats://b:4222"]);
        assert_eq!(
            (s.stream.as_str(), s.subject.as_str()),
            ("CHEST", "app.rec")
        );
        assert_eq!(s.name, "nats://a:4231,b/CHEST");
        let create = s.create.unwrap();
        assert_eq!(create.replicas, 3);
        assert_eq!(create.retention, RetentionPolicy::WorkQueue);
        assert_eq!(s.timeout, Duration::from_secs(2));
    }

    #[test]
    fn bad_urls_say_which_part() {
        let cases = [
            ("nats://h:4222", "no stream"),
            ("nats://h:4222/a.b", "not a stream name"),
            ("nats://h:x/S", "not a port"),
            ("nats://h/S?subject=a.*", "wildcards"),
            ("nats://h/S?token=abc", "token_env"),
            ("nats://u:pw@h/S", "userinfo"),
            ("nats://h/S?create=true&replicas=9", "replicas"),
            ("nats://h/S?create=true&retention=forever", "retention"),
            ("nats://h/S?verify=false", "CA"),
            ("nats://h/S?subjet=x", "unknown parameter `subjet`"),
            (
                "nats://h/S?token_env=CHEST_NO_SUCH_VAR_N",
                "CHEST_NO_SUCH_VAR_N",
            ),
        ];
        for (url, wanted) in cases {
            let err = parse(url, Side::Chest).unwrap_err().to_string();
            assert!(err.contains(wanted), "{url}: {err}");
            assert!(!err.contains("abc") && !err.contains("pw@"), "{err}");
        }
        let err = parse("nats://h/S", Side::Source).unwrap_err().to_string();
        assert!(err.contains("consumer=NAME"), "{err}");
        let err = parse("nats://h/S?consumer=x", Side::Chest)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown parameter `consumer`"), "{err}");
    }

    #[test]
    fn secrets_come_from_the_environment_and_stay_hidden() {
        std::env::set_var("CHEST_NATS_URL_TEST_PW", "hunter2");
        let s = parse(
            "nats://app@h/S?password_env=CHEST_NATS_URL_TEST_PW",
            Side::Chest,
        )
        .unwrap();
        assert!(matches!(&s.auth, Auth::UserPassword(u, p) if u == "app" && p == "hunter2"));
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(s.name, "nats://app@h/S");
    }
}
