//! Pushing the metrics to a Prometheus Pushgateway, for jobs that end before Prometheus could
//! scrape them.
//!
//! A push is `PUT <url>/metrics/job/<job>{/<label>/<value>}` with the Prometheus text format: it
//! replaces every metric of that group. Label values that hold a `/` (or are empty) are sent
//! base64url-encoded (`<label>@base64/<value>`), as the Pushgateway asks.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use reqwest::Url;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::chest::PrometheusChest;
use super::exposition::Format;
use super::names;
use crate::chests::http_client::{
    client_setters, display_url, response_message, ClientSettings, HttpError, Secret,
};
use crate::{Chest, ChestError, Error, RetryPolicy};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
const DEFAULT_RETRIES: u32 = 3;
/// The first retry waits up to this long; each next one up to twice as long as the one before.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// No retry waits longer, whatever a `Retry-After` asks.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The default retries of a push: [`DEFAULT_RETRIES`], no time budget (the interval is the
/// pushes' pace; each attempt has its timeout).
fn default_retry() -> RetryPolicy {
    let mut retry = RetryPolicy::new(FIRST_BACKOFF, MAX_BACKOFF);
    retry.max_attempts = Some(DEFAULT_RETRIES + 1);
    retry.max_retry_after = Some(MAX_BACKOFF);
    retry
}

/// Settings of a [`Pushgateway`], from [`PrometheusChest::pushgateway`].
#[derive(Clone)]
pub struct PushgatewayBuilder {
    chest: PrometheusChest,
    url: String,
    job: String,
    grouping: Vec<(String, String)>,
    interval: Duration,
    retry: RetryPolicy,
    basic_auth: Option<(String, Secret)>,
    client: ClientSettings,
}

/// Pushes a [`PrometheusChest`]'s metrics to a Pushgateway: once with [`push`](Self::push), or
/// every interval and once more at the end with [`start`](Self::start). Clones share the client.
///
/// Each push replaces the group's metrics; failed attempts are retried (transient failures
/// only, with exponential backoff and jitter, honouring `Retry-After`) and counted in
/// `chest_prometheus_push_failures_total`; successful pushes in `chest_prometheus_pushes_total`.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use chest::chests::prometheus::PrometheusChest;
///
/// let chest = PrometheusChest::new();
/// let pushing = chest
///     .pushgateway("http://127.0.0.1:9091", "nightly_import")
///     .grouping_label("instance", "db-host-1")
///     .build()?
///     .start();
/// // ... the job's work, recording through the chest ...
/// pushing.shutdown().await?; // the last push
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pushgateway {
    inner: Arc<Inner>,
}

struct Inner {
    chest: PrometheusChest,
    /// The group's URL, pushed to.
    url: Url,
    /// The base URL as given (it has no user info), for `Debug`.
    shown: String,
    name: String,
    interval: Duration,
    retry: RetryPolicy,
    basic_auth: Option<(String, Secret)>,
    client: reqwest::Client,
    timeout: Duration,
}

impl PrometheusChest {
    /// Settings to push this chest's metrics to the Pushgateway at `url` (e.g.
    /// `http://127.0.0.1:9091`, or with a path prefix) under the job name `job`.
    pub fn pushgateway(
        &self,
        url: impl Into<String>,
        job: impl Into<String>,
    ) -> PushgatewayBuilder {
        PushgatewayBuilder {
            chest: self.clone(),
            url: url.into(),
            job: job.into(),
            grouping: Vec::new(),
            interval: DEFAULT_INTERVAL,
            retry: default_retry(),
            basic_auth: None,
            client: ClientSettings::default(),
        }
    }
}

impl PushgatewayBuilder {
    /// Adds a grouping label (e.g. `instance`): the group is the job and these labels, and a push
    /// replaces only that group's metrics. Values may hold any text.
    pub fn grouping_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.grouping.push((name.into(), value.into()));
        self
    }

    /// How often [`Pushgateway::start`] pushes (default 15 s).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How many times a push that failed with a transient error is retried (default 3). It sets
    /// the [`retry_policy`](Self::retry_policy)'s `max_attempts` to `retries + 1`.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retry.max_attempts = Some(retries.saturating_add(1));
        self
    }

    /// How a failed push is retried (transient failures only). The default waits up to 250 ms
    /// before the first retry, doubling up to 10 s, obeys a `Retry-After` up to 10 s, makes at
    /// most 4 attempts and has no time budget.
    ///
    /// ```
    /// use std::time::Duration;
    /// use chest::{chests::prometheus::PrometheusChest, RetryPolicy};
    ///
    /// let mut policy = RetryPolicy::new(Duration::from_millis(100), Duration::from_secs(2));
    /// policy.budget = Some(Duration::from_secs(10));
    /// let pushgateway = PrometheusChest::new()
    ///     .pushgateway("http://127.0.0.1:9091", "nightly_import")
    ///     .retry_policy(policy)
    ///     .build()?;
    /// # Ok::<(), chest::Error>(())
    /// ```
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Authenticates with HTTP Basic authentication (a Pushgateway behind a proxy, or with
    /// `--web.config.file`). The password never appears in logs, errors or `Debug` output.
    pub fn basic_auth(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.basic_auth = Some((username.into(), Secret::new(password)));
        self
    }

    client_setters!("push request");

    /// Checks the settings and builds the HTTP client. Nothing is pushed yet.
    pub fn build(self) -> Result<Pushgateway, Error> {
        let base = http_url(&self.url).ok_or_else(|| {
            Error::Config("pushgateway: the URL is not an http:// or https:// URL".into())
        })?;
        let shown = display_url(&base);
        let config_error = |what: String| Error::Config(format!("pushgateway {shown}: {what}"));
        if !base.username().is_empty() || base.password().is_some() {
            return Err(config_error(
                "give credentials with basic_auth(), not in the URL".into(),
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(config_error(
                "the URL must not have a query or fragment".into(),
            ));
        }
        if self.job.is_empty() {
            return Err(config_error("the job name must not be empty".into()));
        }
        let constant = &self.chest.shared.constant_labels;
        for (i, (label, _)) in self.grouping.iter().enumerate() {
            names::check_label_name(label)
                .map_err(|e| config_error(format!("invalid grouping label name {label:?}: {e}")))?;
            if label == "job" || self.grouping[..i].iter().any(|(l, _)| l == label) {
                return Err(config_error(format!(
                    "grouping label {label:?} is given twice"
                )));
            }
            if constant.iter().any(|(l, _)| l == label) {
                return Err(config_error(format!(
                    "grouping label {label:?} is also a constant label of the chest"
                )));
            }
        }
        if self.interval.is_zero() {
            return Err(config_error("the interval must be longer than zero".into()));
        }
        let name = format!("{} (pushgateway {shown})", self.chest.name());
        let client = self.client.build(&name, &base)?;
        let url = group_url(base, &self.job, &self.grouping);
        Ok(Pushgateway {
            inner: Arc::new(Inner {
                chest: self.chest,
                url,
                shown,
                name,
                interval: self.interval,
                retry: self.retry,
                basic_auth: self.basic_auth,
                client,
                timeout: self.client.timeout,
            }),
        })
    }
}

/// `text` as an http(s) URL with a host. Any other text is never shown: what looks like a scheme
/// may be a user name and the rest a password (`user:secret@host`).
fn http_url(text: &str) -> Option<Url> {
    Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
}

/// `base` + `/metrics/job/<job>{/<label>/<value>}`, each value URL-escaped, or base64url-encoded
/// when it holds a `/` or is empty (the Pushgateway cannot take `%2F`, nor an empty segment).
fn group_url(mut base: Url, job: &str, grouping: &[(String, String)]) -> Url {
    let labels =
        std::iter::once(("job", job)).chain(grouping.iter().map(|(l, v)| (l.as_str(), v.as_str())));
    if let Ok(mut segments) = base.path_segments_mut() {
        segments.pop_if_empty().push("metrics");
        for (label, value) in labels {
            if value.is_empty() || value.contains('/') {
                segments
                    .push(&format!("{label}@base64"))
                    .push(&base64url(value.as_bytes()));
            } else {
                segments.push(label).push(value);
            }
        }
    }
    base
}

/// RFC 4648 base64url with padding; the Pushgateway writes an empty value as `=`.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    if bytes.is_empty() {
        return "=".to_owned();
    }
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                text.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

impl Pushgateway {
    /// Pushes the current metrics once, retrying transient failures. The error is the last
    /// attempt's; it never holds the URL's credentials.
    pub async fn push(&self) -> Result<(), ChestError> {
        let inner = &*self.inner;
        let shared = &inner.chest.shared;
        let body = Bytes::from(inner.chest.encode(Format::PrometheusText));
        let pushed = inner
            .retry
            .retry(
                || inner.send(body.clone()),
                |error: &HttpError| {
                    shared.push_failures.fetch_add(1, Ordering::Relaxed);
                    error.kind()
                },
                |error, retry, delay| {
                    tracing::warn!(target: "chest", chest = %inner.name, error = %error, retry, ?delay,
                        "prometheus chest: push to the Pushgateway failed; retrying");
                },
            )
            .await;
        match pushed {
            Ok(()) => {
                shared.pushes.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => Err(error.into_chest_error(&inner.name)),
        }
    }

    /// Pushes every interval in a background task (the first push one interval from now), and
    /// once more when the returned handle is shut down. A failed push is logged and counted, and
    /// the next interval tries again. Needs a running tokio runtime.
    pub fn start(&self) -> PushTask {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let pushgateway = self.clone();
        let interval = self.inner.interval;
        let task = tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {
                        if let Err(error) = pushgateway.push().await {
                            tracing::error!(target: "chest", chest = %pushgateway.inner.name, error = %error,
                                "prometheus chest: push to the Pushgateway failed; trying again at the next interval");
                        }
                    }
                    // `shutdown`, or the handle was dropped: push once more and end.
                    _ = &mut stopped => break,
                }
            }
            pushgateway.push().await
        });
        PushTask {
            name: self.inner.name.clone(),
            stop: Some(stop),
            task,
        }
    }
}

impl Inner {
    /// One attempt.
    async fn send(&self, body: Bytes) -> Result<(), HttpError> {
        let mut request = self
            .client
            .put(self.url.clone())
            .header(CONTENT_TYPE, Format::PrometheusText.content_type())
            .body(body);
        if let Some((username, password)) = &self.basic_auth {
            request = request.basic_auth(username, Some(password.expose()));
        }
        let response = request
            .send()
            .await
            .map_err(|e| HttpError::from_reqwest(e, self.timeout))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let headers = response.headers().clone();
        let said = response_message(response, |_| None).await;
        Err(HttpError::status(
            status,
            &headers,
            format!("the Pushgateway refused the push: {said}"),
        ))
    }
}

impl fmt::Debug for Pushgateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("Pushgateway")
            .field("url", &inner.shown)
            .field("chest", &inner.chest.name())
            .field("interval", &inner.interval)
            .field("retry", &inner.retry)
            .field("basic_auth", &inner.basic_auth)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for PushgatewayBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushgatewayBuilder")
            .field("url", &http_url(&self.url).map(|u| display_url(&u)))
            .field("job", &self.job)
            .field("grouping", &self.grouping)
            .field("interval", &self.interval)
            .field("retry", &self.retry)
            .field("basic_auth", &self.basic_auth)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// The background pushes started by [`Pushgateway::start`]. Dropping it stops them after one
/// last push, in the background; [`shutdown`](Self::shutdown) waits for that push.
#[derive(Debug)]
pub struct PushTask {
    name: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ChestError>>,
}

impl PushTask {
    /// Stops the interval pushes, pushes once more and returns that push's result.
    pub async fn shutdown(mut self) -> Result<(), ChestError> {
        if let Some(stop) = self.stop.take() {
            // The task only ends after a stop, so it is there to receive it.
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(pushed) => pushed,
            Err(join) => Err(ChestError::permanent(self.name.clone(), join)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_base64url() {
        for (plain, encoded) in [
            ("", "="),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("/a/b", "L2EvYg=="),
            ("\u{ff}\u{fe}?", "w7_Dvj8="),
        ] {
            assert_eq!(base64url(plain.as_bytes()), encoded, "{plain:?}");
        }
    }

    #[test]
    fn builds_group_urls() {
        let base = Url::parse("http://127.0.0.1:9091/prefix/").unwrap();
        let grouping = [
            ("instance".to_owned(), "host 1".to_owned()),
            ("path".to_owned(), "/a/b".to_owned()),
            ("empty".to_owned(), String::new()),
        ];
        assert_eq!(
            group_url(base, "my job", &grouping).as_str(),
            "http://127.0.0.1:9091/prefix/metrics/job/my%20job/instance/host%201/path@base64/L2EvYg==/empty@base64/="
        );
    }

    #[test]
    fn backoff_stays_under_its_cap() {
        let retry = default_retry();
        assert!(retry.delay(0, None) <= FIRST_BACKOFF);
        assert!(retry.delay(3, None) <= FIRST_BACKOFF * 8);
        assert!(retry.delay(40, None) <= MAX_BACKOFF);
        assert_eq!(retry.delay(0, Some(MAX_BACKOFF * 3)), MAX_BACKOFF);
    }
}
