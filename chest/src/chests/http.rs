//! The custom HTTP writer: POSTs each write's records to a URL, as JSON or any payload you make.
//!
//! Every parameter of Flask-Chest's `FlaskChestCustomWriter`, and what it became:
//!
//! | Flask-Chest | chest |
//! |---|---|
//! | `url` | [`HttpChest::builder`] |
//! | `payload_generator` | [`payload_generator`](HttpChestBuilder::payload_generator): a closure from the records to a JSON value or a [`Payload`]; by default a JSON array of the records |
//! | `name` | [`name`](HttpChestBuilder::name) (default: the URL without credentials, query or fragment) |
//! | `headers` | [`header`](HttpChestBuilder::header), [`secret_header`](HttpChestBuilder::secret_header) |
//! | `params` | [`param`](HttpChestBuilder::param), [`params`](HttpChestBuilder::params) |
//! | `proxies` | [`proxy`](HttpChestBuilder::proxy) |
//! | `verify` (default **off**) | [`verify`](HttpChestBuilder::verify) (default **on**) |
//! | `success_status_codes` | [`success_status_codes`](HttpChestBuilder::success_status_codes) (default `[200]`) |
//! | `logger` | `tracing` debug events under the target `chest::chests::http`, each with a `chest` field; failures are returned, and logged by the `Recorder` or `Batched` |
//!
//! Where Flask-Chest was careless, this chest is deliberate:
//! - TLS certificates are verified by default. Flask-Chest passed `verify=False` unless told
//!   otherwise, so anyone on the path could read and change what it sent. Trust a private CA with
//!   [`root_certificate_pem`](HttpChestBuilder::root_certificate_pem); turn verification off
//!   with `verify(false)` only for tests.
//! - A request [`timeout`](HttpChestBuilder::timeout) (10 s by default): Flask-Chest had none, and
//!   a hung sink held its requests.
//! - A payload generator that panics or fails is this chest's (permanent) error only: the service
//!   keeps serving and the other chests are written. (The panic still goes through the process's
//!   panic hook, which by default prints it; with `panic = "abort"` nothing can catch it.)
//! - Redirects are not followed; a redirect answer is a permanent error naming its status.
//!
//! Statuses outside the success codes: 429 and 503 are retryable (after `Retry-After` when the
//! server gives one), so are 408, other 5xx, timeouts and connection failures; everything else is
//! permanent (including a 2xx you did not list: the server took the request, sending it again
//! could duplicate it).
//!
//! ## `Idempotency-Key`: storing each batch once
//!
//! A batch that [`Batched`](crate::batch::Batched) (or `chest export`) sends carries its
//! [`BatchId`] as an `Idempotency-Key` header ([`IDEMPOTENCY_KEY`], the IETF httpapi draft's
//! header): 32 lowercase hexadecimal digits, the same on every retry of that batch, after a
//! restart too. A request whose answer is lost (a timeout, a cut connection) is sent again with
//! the same key and the same body. A receiver that must not store a batch twice keeps the keys it
//! stored (in the same transaction as the records, for at least a day; the keys sort by time, so
//! old ones are cheap to drop) and answers a repeated key with a success status without storing
//! it again. Writes made outside a batch (an inline chest of the layer) carry no key.
//!
//! ```no_run
//! use chest::chests::http::{HttpChest, Payload};
//! use serde_json::json;
//!
//! # fn main() -> Result<(), chest::Error> {
//! // The default payload: a JSON array of the records.
//! let plain = HttpChest::builder("https://collector.example.com/ingest").build()?;
//!
//! // Flask-Chest's shape: a list of (name, value, request_id).
//! let custom = HttpChest::builder("https://collector.example.com/ingest")
//!     .payload_generator(|records| {
//!         json!(records
//!             .iter()
//!             .map(|r| json!([&*r.name, &r.value, &*r.request_id]))
//!             .collect::<Vec<_>>())
//!     })
//!     .secret_header("Authorization", "Bearer s3cr3t")
//!     .param("source", "checkout")
//!     .success_status_codes([200, 201, 202])
//!     .build()?;
//!
//! // Any bytes, with their content type.
//! let csv = HttpChest::builder("https://collector.example.com/csv")
//!     .payload_generator(|records| {
//!         let text: String = records.iter().map(|r| format!("{},{}\n", r.name, r.value)).collect();
//!         Payload::raw("text/csv", text)
//!     })
//!     .build()?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use reqwest::Url;

use super::http_client::{
    client_setters, display_url, response_message, sensitive_header, shown_url, ClientSettings,
    HttpError, Secret,
};
use super::scheme::{Opening, Scheme};
use crate::url::ChestUrl;
use crate::{BatchId, BoxError, BoxFuture, Chest, ChestError, Error, Record, Written};

/// The header that carries a batch's id (the IETF httpapi draft's `Idempotency-Key`).
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The scheme table's row: an `http://` or `https://` URL is the endpoint itself (its query
/// included), written with the default payload (a JSON array of records).
pub(crate) const SCHEME: Scheme = Scheme {
    names: &["http", "https"],
    open: open_url,
    read: None,
};

fn open_url(url: &ChestUrl<'_>) -> Result<Opening<Arc<dyn Chest>>, Error> {
    let chest: Arc<dyn Chest> = Arc::new(HttpChest::builder(url.url).build()?);
    Ok(Box::pin(async move { Ok(chest) }))
}

/// The body of a request: JSON, or bytes with their content type.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Payload {
    /// Sent serialised, as `application/json`.
    Json(serde_json::Value),
    /// Sent as it is.
    Raw {
        /// The `Content-Type` header.
        content_type: String,
        /// The body.
        body: Vec<u8>,
    },
}

impl Payload {
    /// A JSON payload.
    pub fn json(value: impl Into<serde_json::Value>) -> Self {
        Payload::Json(value.into())
    }

    /// Raw bytes with their content type, e.g. `Payload::raw("text/csv", text)`.
    pub fn raw(content_type: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Payload::Raw {
            content_type: content_type.into(),
            body: body.into(),
        }
    }
}

/// What a payload generator may return: a [`Payload`], a `serde_json::Value`, or a `Result` of
/// either whose error becomes the chest's (permanent) error.
pub trait IntoPayload {
    /// The payload, or why there is none.
    fn into_payload(self) -> Result<Payload, BoxError>;
}

impl IntoPayload for Payload {
    fn into_payload(self) -> Result<Payload, BoxError> {
        Ok(self)
    }
}

impl IntoPayload for serde_json::Value {
    fn into_payload(self) -> Result<Payload, BoxError> {
        Ok(Payload::Json(self))
    }
}

impl<T: IntoPayload, E: Into<BoxError>> IntoPayload for Result<T, E> {
    fn into_payload(self) -> Result<Payload, BoxError> {
        self.map_err(Into::into)?.into_payload()
    }
}

type MakePayload = dyn Fn(&[Record]) -> Result<Payload, BoxError> + Send + Sync;

/// A chest that POSTs records to a URL (Flask-Chest's `FlaskChestCustomWriter`). Build it with
/// [`HttpChest::builder`]; see the [module docs](self). Clones share the HTTP client.
#[derive(Clone)]
pub struct HttpChest {
    name: Arc<str>,
    client: reqwest::Client,
    url: Url,
    headers: HeaderMap,
    make_payload: Arc<MakePayload>,
    success_status_codes: Arc<[u16]>,
    timeout: Duration,
}

/// Settings of an [`HttpChest`].
#[derive(Clone)]
pub struct HttpChestBuilder {
    url: String,
    name: Option<String>,
    headers: Vec<(String, Secret, bool)>,
    params: Vec<(String, Secret)>,
    make_payload: Option<Arc<MakePayload>>,
    success_status_codes: Vec<u16>,
    client: ClientSettings,
}

/// Header names whose values are treated as secrets even when given with
/// [`HttpChestBuilder::header`].
const SECRET_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "api-key",
];

impl HttpChest {
    /// Settings for POSTing to `url`: the default JSON payload, success on 200, a 10 s timeout,
    /// TLS verification on.
    pub fn builder(url: impl Into<String>) -> HttpChestBuilder {
        HttpChestBuilder {
            url: url.into(),
            name: None,
            headers: Vec::new(),
            params: Vec::new(),
            make_payload: None,
            success_status_codes: vec![200],
            client: ClientSettings::default(),
        }
    }
}

impl HttpChestBuilder {
    /// Makes each request's body from the records of the write (Flask-Chest's
    /// `payload_generator`). Each [`Record`] holds the seed's `(name, value, request_id)` plus
    /// `method`, `route` and `time`. Return a `serde_json::Value`, a [`Payload`], or a `Result`
    /// of either. An error or a panic fails this chest's write (permanently) and nothing else.
    ///
    /// The default sends a JSON array of the records, each
    /// `{"request_id", "name", "value", "value_type", "method", "route", "recorded_at"}`.
    pub fn payload_generator<F, P>(mut self, generator: F) -> Self
    where
        F: Fn(&[Record]) -> P + Send + Sync + 'static,
        P: IntoPayload,
    {
        self.make_payload = Some(Arc::new(move |records: &[Record]| {
            generator(records).into_payload()
        }));
        self
    }

    /// The chest's name in logs and errors (default: the URL without credentials, query or
    /// fragment). Never put a secret in it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Adds a header to every request. The values of `Authorization`, `Proxy-Authorization`,
    /// `Cookie`, `X-Api-Key` and `Api-Key` are kept secret like [`secret_header`](Self::secret_header)'s.
    /// A `Content-Type` given here replaces the payload's.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), Secret::new(value), false));
        self
    }

    /// Adds a header whose value is a secret: it never appears in `Debug`, errors or logs.
    pub fn secret_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), Secret::new(value), true));
        self
    }

    /// Adds a query parameter to the URL (Flask-Chest's `params`). Values are not shown in
    /// `Debug`, names or errors: they may be API keys.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), Secret::new(value)));
        self
    }

    /// Adds query parameters; see [`param`](Self::param).
    pub fn params<K: Into<String>, V: Into<String>>(
        mut self,
        params: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.params
            .extend(params.into_iter().map(|(k, v)| (k.into(), Secret::new(v))));
        self
    }

    /// The statuses that mean success (default `[200]`).
    pub fn success_status_codes(mut self, codes: impl IntoIterator<Item = u16>) -> Self {
        self.success_status_codes = codes.into_iter().collect();
        self
    }

    client_setters!("request");

    /// Checks the settings and builds the chest (and its HTTP client). Nothing is sent yet.
    pub fn build(self) -> Result<HttpChest, Error> {
        let mut url = Url::parse(&self.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| {
                Error::Config(format!(
                    "http chest: the URL {:?} is not an http:// or https:// URL",
                    shown_url(&self.url)
                ))
            })?;
        let name = self.name.unwrap_or_else(|| display_url(&url));
        if !self.params.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(self.params.iter().map(|(k, v)| (k, v.expose())));
        }
        let mut headers = HeaderMap::new();
        for (header, value, secret) in &self.headers {
            let header_name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                Error::Config(format!("{name}: {header:?} is not a valid header name"))
            })?;
            let secret = *secret || SECRET_HEADERS.contains(&header_name.as_str());
            let invalid = |_| {
                Error::Config(format!(
                    "{name}: the value of header `{header_name}` holds characters not allowed \
                     in a header"
                ))
            };
            let header_value = if secret {
                sensitive_header(value.expose()).map_err(invalid)?
            } else {
                HeaderValue::from_str(value.expose()).map_err(invalid)?
            };
            headers.append(header_name, header_value);
        }
        if self.success_status_codes.is_empty() {
            return Err(Error::Config(format!(
                "{name}: success_status_codes is empty, so every write would fail"
            )));
        }
        if let Some(bad) = self
            .success_status_codes
            .iter()
            .find(|&&c| !(100..=599).contains(&c))
        {
            return Err(Error::Config(format!(
                "{name}: {bad} is not an HTTP status code"
            )));
        }
        let client = self.client.build(&name, &url)?;
        Ok(HttpChest {
            name: Arc::from(name),
            client,
            url,
            headers,
            make_payload: self
                .make_payload
                .unwrap_or_else(|| Arc::new(records_as_json)),
            success_status_codes: Arc::from(self.success_status_codes),
            timeout: self.client.timeout,
        })
    }
}

/// The default payload: a JSON array of the records.
fn records_as_json(records: &[Record]) -> Result<Payload, BoxError> {
    Ok(Payload::raw(
        "application/json",
        serde_json::to_vec(records)?,
    ))
}

/// Why the payload could not be made.
#[derive(Debug, thiserror::Error)]
enum PayloadError {
    #[error("the payload generator failed: {0}")]
    Failed(#[source] BoxError),
    #[error("the payload generator panicked: {0}")]
    Panicked(String),
    #[error("the payload could not be serialised: {0}")]
    Serialize(#[source] serde_json::Error),
    #[error("the payload's content type {0:?} is not a valid header value")]
    ContentType(String),
}

impl HttpChest {
    /// Runs the payload generator, catching its panics.
    fn payload(&self, records: &[Record]) -> Result<(HeaderValue, Vec<u8>), PayloadError> {
        let payload = catch_unwind(AssertUnwindSafe(|| (self.make_payload)(records)))
            .map_err(|panic| {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-text panic payload".to_owned());
                PayloadError::Panicked(message)
            })?
            .map_err(PayloadError::Failed)?;
        match payload {
            Payload::Json(json) => Ok((
                HeaderValue::from_static("application/json"),
                serde_json::to_vec(&json).map_err(PayloadError::Serialize)?,
            )),
            Payload::Raw { content_type, body } => Ok((
                HeaderValue::from_str(&content_type)
                    .map_err(|_| PayloadError::ContentType(content_type))?,
                body,
            )),
        }
    }

    async fn post(
        &self,
        content_type: HeaderValue,
        body: Vec<u8>,
        batch: Option<BatchId>,
    ) -> Result<StatusCode, HttpError> {
        let mut request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .body(body);
        if let Some(id) = batch {
            request = request.header(IDEMPOTENCY_KEY, id.to_string());
        }
        if !self.headers.contains_key(CONTENT_TYPE) {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let response = request
            .send()
            .await
            .map_err(|e| HttpError::from_reqwest(e, self.timeout))?;
        let status = response.status();
        if self.success_status_codes.contains(&status.as_u16()) {
            return Ok(status);
        }
        let headers = response.headers().clone();
        let said = response_message(response, |_| None).await;
        let message = format!(
            "not a success status {:?}; the server said: {said}",
            self.success_status_codes
        );
        Err(HttpError::status(status, &headers, message))
    }
}

impl Chest for HttpChest {
    fn name(&self) -> &str {
        &self.name
    }

    fn write<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), ChestError>> {
        Box::pin(async move { self.send(records, None).await.map(|_| ()) })
    }

    /// Sends the batch's id as the `Idempotency-Key` header: the same on every retry of the
    /// batch, so the receiver can store each batch once (see the [module docs](self)).
    fn write_batch<'a>(
        &'a self,
        id: BatchId,
        records: &'a [Record],
    ) -> BoxFuture<'a, Result<Written, ChestError>> {
        Box::pin(self.send(records, Some(id)))
    }
}

impl HttpChest {
    async fn send(
        &self,
        records: &[Record],
        batch: Option<BatchId>,
    ) -> Result<Written, ChestError> {
        if records.is_empty() {
            return Ok(Written::Stored);
        }
        let (content_type, body) = self
            .payload(records)
            .map_err(|e| ChestError::permanent(&*self.name, e))?;
        let status = self
            .post(content_type, body, batch)
            .await
            .map_err(|e| e.into_chest_error(&self.name))?;
        tracing::debug!(chest = %self.name, records = records.len(), status = status.as_u16(), "posted records");
        Ok(Written::Stored)
    }
}

impl fmt::Debug for HttpChest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpChest")
            .field("name", &self.name)
            .field("url", &display_url(&self.url))
            .field(
                "params",
                &self.url.query_pairs().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            // Sensitive header values print as `Sensitive`.
            .field("headers", &self.headers)
            .field("success_status_codes", &self.success_status_codes)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for HttpChestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpChestBuilder")
            .field("url", &shown_url(&self.url))
            .field("name", &self.name)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _, _)| n).collect::<Vec<_>>(),
            )
            .field(
                "params",
                &self.params.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("custom_payload", &self.make_payload.is_some())
            .field("success_status_codes", &self.success_status_codes)
            .field("client", &self.client)
            .finish()
    }
}
