//! InfluxDB through its HTTP write API: v2 (`/api/v2/write`, org, bucket, token; also what
//! VictoriaMetrics and InfluxDB 1.8+ accept) and v1 (`/write`, database, retention policy,
//! user and password).
//!
//! Every parameter of Flask-Chest's `FlaskChestInfluxDB`, and what it became:
//!
//! | Flask-Chest | chest |
//! |---|---|
//! | `url`, `org`, `bucket` | [`InfluxDbChest::v2`] (or [`InfluxDbChest::v1`] with a database) |
//! | `token` | [`token`](InfluxDbChestBuilder::token) (`Authorization: Token …`; never in `Debug`, errors or logs) |
//! | `custom_tags` | [`custom_tag`](InfluxDbChestBuilder::custom_tag), [`custom_tags`](InfluxDbChestBuilder::custom_tags) |
//! | `logger` | `tracing` debug events under the target `chest::chests::influxdb` (points written, records refused, batches halved), each with a `chest` field (the chest's [name](InfluxDbChestBuilder::name)); failures are returned, and logged by the `Recorder` or `Batched` |
//!
//! Plus: [`username_password`](InfluxDbChestBuilder::username_password) and
//! [`retention_policy`](InfluxDbChestBuilder::retention_policy) for v1, gzip request bodies (on by
//! default), a request [`timeout`](InfluxDbChestBuilder::timeout) (10 s), TLS verification (on;
//! [`verify`](InfluxDbChestBuilder::verify)), [proxies](InfluxDbChestBuilder::proxy), and one HTTP
//! client reused for every write (Flask-Chest built one per write).
//!
//! ## Points
//! Measurement: the variable's name. Tags: the custom tags, `method`, and `route` (the route
//! template). Field `value`, typed: `42i`, `2.5`, `true`, `"text"` (JSON values as their text).
//! The request id is a string field `request_id` by default: as a tag it makes one series per
//! request, InfluxDB's best-known cardinality problem. [`request_id_as_tag`](InfluxDbChestBuilder::request_id_as_tag)
//! restores Flask-Chest's shape. Timestamp: the record's time in nanoseconds. See [`LineEncoder`]
//! for the exact format, the escaping, and the records that cannot be written (NaN, ±Inf, control
//! characters in names and tags): such a record is refused and the rest of the batch written.
//!
//! Two records of the same name, method, route and custom tags stamped in the same nanosecond are
//! one point to InfluxDB (the second overwrites the first) unless the request id is a tag. So the
//! [`Recorder`](crate::Recorder) gives each request a stamp of its own, to the microsecond (what
//! the spool keeps), and `chest export` adds each row's `unique_id` modulo 1000 as nanoseconds:
//! concurrent requests stay distinct points, live, replayed from a spool or exported. Records you
//! stamp yourself with [`Record::at`](crate::Record::at) keep the time you give. The same rule
//! makes retries idempotent: writing a batch again rewrites the same points.
//!
//! ## Errors
//! - 2xx: written.
//! - 400 (bad or partial write) and 422: permanent, with InfluxDB's message. Under `Batched`, a
//!   failing batch is halved until the bad points are found.
//! - 401, 403, 404: permanent, saying which credential, permission or org/bucket/database to
//!   check.
//! - 413 (body too large): the chest halves the batch and sends each half, down to single points.
//! - 429 and 503: retryable, after the server's `Retry-After` when it gives one.
//! - Other 5xx, timeouts, connection failures: retryable.
//! - Refused records (see above): the others are written, then the write returns a permanent
//!   error naming each refused record, so a `Batched` wrapper dead-letters only them.
//!
//! ```no_run
//! use chest::chests::influxdb::InfluxDbChest;
//!
//! # fn main() -> Result<(), chest::Error> {
//! let token = std::env::var("INFLUX_TOKEN").unwrap_or_default();
//! let chest = InfluxDbChest::v2("http://127.0.0.1:8086", "my-org", "my-bucket")
//!     .token(token)
//!     .custom_tag("service", "checkout")
//!     .build()?;
//!
//! // InfluxDB 1.x:
//! let v1 = InfluxDbChest::v1("http://127.0.0.1:8086", "metrics")
//!     .username_password("writer", "secret")
//!     .build()?;
//! # Ok(()) }
//! ```

mod line;
pub(crate) mod url;

pub use line::{LineEncoder, LineError, Refusal};

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use reqwest::Url;

use super::http_client::{
    client_setters, display_url, response_message, sensitive_header, shown_url, ClientSettings,
    HttpError, Secret,
};
use crate::{BoxFuture, Chest, ChestError, Error, Record};

/// Which write API, and where in it.
#[derive(Debug, Clone)]
enum Api {
    V2 { org: String, bucket: String },
    V1 { database: String },
}

/// How the chest authenticates.
#[derive(Clone)]
enum Credentials {
    None,
    Token(Secret),
    UsernamePassword { username: String, password: Secret },
}

/// The credentials as they are sent.
#[derive(Clone)]
enum Auth {
    None,
    /// `Authorization: Token …`, marked sensitive.
    Header(HeaderValue),
    Basic {
        username: String,
        password: Secret,
    },
}

/// A chest that writes points to InfluxDB (or anything speaking its write API, such as
/// VictoriaMetrics). Build it with [`InfluxDbChest::v2`] or [`InfluxDbChest::v1`]; see the
/// [module docs](self) for the point shape and error handling. Clones share the HTTP client.
#[derive(Clone)]
pub struct InfluxDbChest {
    name: Arc<str>,
    client: reqwest::Client,
    write_url: Url,
    auth: Auth,
    encoder: Arc<LineEncoder>,
    gzip: bool,
    timeout: Duration,
    /// Names the write target in status hints: `org `o`, bucket `b`` or `database `d``.
    target: Arc<str>,
}

/// Settings of an [`InfluxDbChest`].
#[derive(Clone)]
pub struct InfluxDbChestBuilder {
    url: String,
    api: Api,
    retention_policy: Option<String>,
    credentials: Credentials,
    custom_tags: BTreeMap<String, String>,
    request_id_as_tag: bool,
    gzip: bool,
    name: Option<String>,
    client: ClientSettings,
}

impl InfluxDbChest {
    /// Settings for the v2 write API (`/api/v2/write`) of the server at `url` (e.g.
    /// `http://127.0.0.1:8086`, or with a path prefix behind a reverse proxy), writing to `bucket`
    /// of `org`. Add a [`token`](InfluxDbChestBuilder::token) unless the server needs none.
    pub fn v2(
        url: impl Into<String>,
        org: impl Into<String>,
        bucket: impl Into<String>,
    ) -> InfluxDbChestBuilder {
        InfluxDbChestBuilder::new(
            url.into(),
            Api::V2 {
                org: org.into(),
                bucket: bucket.into(),
            },
        )
    }

    /// Settings for the v1 write API (`/write`) of the server at `url`, writing to `database` (with
    /// its default retention policy unless [`retention_policy`](InfluxDbChestBuilder::retention_policy)
    /// is set).
    pub fn v1(url: impl Into<String>, database: impl Into<String>) -> InfluxDbChestBuilder {
        InfluxDbChestBuilder::new(
            url.into(),
            Api::V1 {
                database: database.into(),
            },
        )
    }

    /// The encoder that turns records into this chest's lines.
    pub fn encoder(&self) -> &LineEncoder {
        &self.encoder
    }
}

impl InfluxDbChestBuilder {
    fn new(url: String, api: Api) -> Self {
        InfluxDbChestBuilder {
            url,
            api,
            retention_policy: None,
            credentials: Credentials::None,
            custom_tags: BTreeMap::new(),
            request_id_as_tag: false,
            gzip: true,
            name: None,
            client: ClientSettings::default(),
        }
    }

    /// Authenticates with `Authorization: Token <token>` (InfluxDB 2 tokens; InfluxDB 1.8+ also
    /// takes `user:password`). An empty token sends no header. Replaces
    /// [`username_password`](Self::username_password).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.credentials = if token.is_empty() {
            Credentials::None
        } else {
            Credentials::Token(Secret::new(token))
        };
        self
    }

    /// Authenticates with HTTP Basic authentication (InfluxDB 1.x users). Replaces
    /// [`token`](Self::token).
    pub fn username_password(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.credentials = Credentials::UsernamePassword {
            username: username.into(),
            password: Secret::new(password),
        };
        self
    }

    /// The v1 retention policy to write to (the database's default when unset). Only for
    /// [`InfluxDbChest::v1`]: building a v2 chest with it fails.
    pub fn retention_policy(mut self, retention_policy: impl Into<String>) -> Self {
        self.retention_policy = Some(retention_policy.into());
        self
    }

    /// Adds a tag to every point (Flask-Chest's `custom_tags`). Keys chest writes itself
    /// (`method`, `route`, `request_id`, `value`), `time` and keys starting with `_` are refused
    /// by [`build`](Self::build), so a custom tag never silently overwrites one.
    pub fn custom_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.custom_tags.insert(key.into(), value.into());
        self
    }

    /// Adds tags to every point; see [`custom_tag`](Self::custom_tag).
    pub fn custom_tags<K: Into<String>, V: Into<String>>(
        mut self,
        tags: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.custom_tags
            .extend(tags.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Writes the request id as a tag, Flask-Chest's shape (default `false`: a string field).
    /// As a tag, every request makes a new series, which InfluxDB indexes in memory.
    pub fn request_id_as_tag(mut self, as_tag: bool) -> Self {
        self.request_id_as_tag = as_tag;
        self
    }

    /// Compresses request bodies with gzip (`Content-Encoding: gzip`, fastest level; default
    /// `true`). Line protocol shrinks about tenfold; turn it off for a server on the same host.
    pub fn gzip(mut self, gzip: bool) -> Self {
        self.gzip = gzip;
        self
    }

    /// The chest's name in logs and errors. The default names the API version, org and bucket
    /// (or database) and the URL without credentials, e.g.
    /// `influxdb:my-org/my-bucket@http://127.0.0.1:8086/`. Never put a secret in it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    client_setters!("write request");

    /// Checks the settings and builds the chest (and its HTTP client). Nothing is sent yet.
    pub fn build(self) -> Result<InfluxDbChest, Error> {
        let base = Url::parse(&self.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| {
                Error::Config(format!(
                    "influxdb: the URL {:?} is not an http:// or https:// URL",
                    shown_url(&self.url)
                ))
            })?;
        if !base.username().is_empty() || base.password().is_some() {
            return Err(Error::Config(
                "influxdb: give credentials with token() or username_password(), not in the URL"
                    .into(),
            ));
        }
        if base.query().is_some() {
            return Err(Error::Config(format!(
                "influxdb: the URL {} must not have a query: org, bucket, database and retention \
                 policy are settings",
                display_url(&base)
            )));
        }
        let (path, query, default_name, target) =
            match &self.api {
                Api::V2 { .. } if self.retention_policy.is_some() => return Err(Error::Config(
                    "influxdb: a retention policy is a v1 setting; the v2 API writes to a bucket"
                        .into(),
                )),
                Api::V2 { org, bucket } => {
                    require_nonempty("org", org)?;
                    require_nonempty("bucket", bucket)?;
                    (
                        "api/v2/write",
                        vec![("org", org.as_str()), ("bucket", bucket.as_str())],
                        format!("influxdb:{org}/{bucket}@{}", display_url(&base)),
                        format!("org `{org}`, bucket `{bucket}`"),
                    )
                }
                Api::V1 { database } => {
                    require_nonempty("database", database)?;
                    let mut query = vec![("db", database.as_str())];
                    let mut place = database.clone();
                    if let Some(rp) = &self.retention_policy {
                        require_nonempty("retention policy", rp)?;
                        query.push(("rp", rp.as_str()));
                        place = format!("{database}.{rp}");
                    }
                    (
                        "write",
                        query,
                        format!("influxdb1:{place}@{}", display_url(&base)),
                        format!("database `{place}`"),
                    )
                }
            };
        let name = self.name.unwrap_or(default_name);
        let mut write_url = base;
        if !write_url.path().ends_with('/') {
            let dir = format!("{}/", write_url.path());
            write_url.set_path(&dir);
        }
        let mut write_url = write_url
            .join(path)
            .map_err(|e| Error::Config(format!("{name}: {e}")))?;
        write_url
            .query_pairs_mut()
            .extend_pairs(query)
            .append_pair("precision", "ns");
        let encoder = LineEncoder::new(self.custom_tags, self.request_id_as_tag)
            .map_err(|e| Error::Config(format!("{name}: {e}")))?;
        let auth = match self.credentials {
            Credentials::None => Auth::None,
            Credentials::Token(token) => Auth::Header(
                sensitive_header(&format!("Token {}", token.expose())).map_err(|_| {
                    Error::Config(format!(
                        "{name}: the token holds characters not allowed in an HTTP header"
                    ))
                })?,
            ),
            Credentials::UsernamePassword { username, password } => {
                Auth::Basic { username, password }
            }
        };
        let client = self.client.build(&name, &write_url)?;
        Ok(InfluxDbChest {
            name: Arc::from(name),
            client,
            write_url,
            auth,
            encoder: Arc::new(encoder),
            gzip: self.gzip,
            timeout: self.client.timeout,
            target: Arc::from(target),
        })
    }
}

fn require_nonempty(what: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::Config(format!("influxdb: the {what} is empty")));
    }
    Ok(())
}

impl InfluxDbChest {
    async fn write_records(&self, records: &[Record]) -> Result<(), ChestError> {
        let mut body = Vec::with_capacity(records.len() * 160);
        let mut line_ends = Vec::with_capacity(records.len());
        let mut refused = Vec::new();
        for (index, record) in records.iter().enumerate() {
            match self.encoder.encode_record(record, &mut body) {
                Ok(()) => line_ends.push(body.len()),
                Err(error) => refused.push(RefusedRecord::new(index, record, error)),
            }
        }
        let refused = (!refused.is_empty()).then_some(RefusedRecords {
            total: records.len(),
            refused,
        });
        if let Some(refused) = &refused {
            tracing::debug!(chest = %self.name, error = %refused, "records refused");
        }
        self.send_lines(&body, &line_ends)
            .await
            .map_err(|e| e.into_chest_error(&self.name))?;
        tracing::debug!(chest = %self.name, points = line_ends.len(), "wrote points");
        match refused {
            None => Ok(()),
            Some(refused) => Err(ChestError::permanent(&*self.name, refused)),
        }
    }

    /// Sends the lines in order, in as few requests as the server accepts: a request answered
    /// with 413 is halved and each half sent, down to single lines. `line_ends[i]` is where line
    /// `i` ends in `body`.
    async fn send_lines(&self, body: &[u8], line_ends: &[usize]) -> Result<(), HttpError> {
        // Ranges of line indexes still to send, the next one last.
        let mut pending = vec![(0, line_ends.len())];
        while let Some((first, end)) = pending.pop() {
            if first == end {
                continue;
            }
            let start = first.checked_sub(1).map_or(0, |i| line_ends[i]);
            match self.post(&body[start..line_ends[end - 1]]).await {
                Err(HttpError::Status { status, .. })
                    if status == StatusCode::PAYLOAD_TOO_LARGE && end - first > 1 =>
                {
                    let middle = first + (end - first) / 2;
                    tracing::debug!(chest = %self.name, lines = end - first, "body too large: halving it");
                    pending.push((middle, end));
                    pending.push((first, middle));
                }
                other => other?,
            }
        }
        Ok(())
    }

    async fn post(&self, lines: &[u8]) -> Result<(), HttpError> {
        let mut request = self
            .client
            .post(self.write_url.clone())
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(ACCEPT, "application/json");
        request = if self.gzip {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(lines.len() / 4 + 64),
                flate2::Compression::fast(),
            );
            let compressed = encoder
                .write_all(lines)
                .and_then(|()| encoder.finish())
                .map_err(|e| HttpError::Request(format!("gzip: {e}")))?;
            request.header(CONTENT_ENCODING, "gzip").body(compressed)
        } else {
            request.body(lines.to_vec())
        };
        request = match &self.auth {
            Auth::None => request,
            Auth::Header(value) => request.header(AUTHORIZATION, value.clone()),
            Auth::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose()))
            }
        };
        let response = request
            .send()
            .await
            .map_err(|e| HttpError::from_reqwest(e, self.timeout))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let headers = response.headers().clone();
        let said = response_message(response, influx_message).await;
        Err(HttpError::status(
            status,
            &headers,
            self.explain(status, said),
        ))
    }

    /// InfluxDB's message for `status`, with what to check.
    fn explain(&self, status: StatusCode, said: String) -> String {
        let target = &self.target;
        match status.as_u16() {
            400 | 422 => format!("InfluxDB refused the points: {said}"),
            401 => format!("unauthorized: the server refused the token or credentials ({said})"),
            403 => format!("forbidden: the credentials may not write to {target} ({said})"),
            404 => {
                format!("not found: {target} does not exist, or the URL is not InfluxDB's ({said})")
            }
            413 => format!("a single point is larger than the server accepts ({said})"),
            _ => said,
        }
    }
}

/// The message of an InfluxDB error body: v2's `{"message": …}` or v1's `{"error": …}`.
fn influx_message(body: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    ["message", "error"]
        .iter()
        .find_map(|key| json.get(key)?.as_str().map(str::to_owned))
}

impl Chest for InfluxDbChest {
    fn name(&self) -> &str {
        &self.name
    }

    fn write<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), ChestError>> {
        Box::pin(async move {
            if records.is_empty() {
                return Ok(());
            }
            self.write_records(records).await
        })
    }
}

/// A record the encoder refused, named for the error.
#[derive(Debug)]
struct RefusedRecord {
    index: usize,
    name: Arc<str>,
    request_id: Arc<str>,
    error: LineError,
}

impl RefusedRecord {
    fn new(index: usize, record: &Record, error: LineError) -> Self {
        RefusedRecord {
            index,
            name: record.name.clone(),
            request_id: record.request_id.clone(),
            error,
        }
    }
}

/// The records of a write that could not be encoded (the others were written).
#[derive(Debug, thiserror::Error)]
struct RefusedRecords {
    total: usize,
    refused: Vec<RefusedRecord>,
}

/// The most refused records an error names one by one.
const NAMED_REFUSALS: usize = 5;

impl fmt::Display for RefusedRecords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refused {} of {} records (the other {} were written)",
            self.refused.len(),
            self.total,
            self.total - self.refused.len()
        )?;
        for r in self.refused.iter().take(NAMED_REFUSALS) {
            write!(
                f,
                "; record {} ({:?} of request {:?}): {}",
                r.index, r.name, r.request_id, r.error
            )?;
        }
        if self.refused.len() > NAMED_REFUSALS {
            write!(f, "; and {} more", self.refused.len() - NAMED_REFUSALS)?;
        }
        Ok(())
    }
}

impl fmt::Debug for InfluxDbChest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfluxDbChest")
            .field("name", &self.name)
            .field("write_url", &display_url(&self.write_url))
            .field("auth", &self.auth)
            .field("gzip", &self.gzip)
            .field("timeout", &self.timeout)
            .field("encoder", &self.encoder)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for InfluxDbChestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfluxDbChestBuilder")
            .field("url", &shown_url(&self.url))
            .field("api", &self.api)
            .field("retention_policy", &self.retention_policy)
            .field("credentials", &self.credentials)
            .field("custom_tags", &self.custom_tags)
            .field("request_id_as_tag", &self.request_id_as_tag)
            .field("gzip", &self.gzip)
            .field("name", &self.name)
            .field("client", &self.client)
            .finish()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
            Credentials::UsernamePassword { username, .. } => {
                write!(f, "UsernamePassword({username:?}, <redacted>)")
            }
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Header(_) => f.write_str("Token(<redacted>)"),
            Auth::Basic { username, .. } => write!(f, "Basic({username:?}, <redacted>)"),
        }
    }
}
