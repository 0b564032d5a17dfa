//! HTTP plumbing shared by the chests that write over HTTP (InfluxDB, the custom writer, the
//! Prometheus Pushgateway).
//!
//! - [`ClientSettings`] builds one reqwest client per chest, reused for every write. TLS is rustls
//!   with the `ring` provider handed to the client directly: no process-wide crypto provider is
//!   installed or needed, so chests stay independent owned values. Certificates are verified
//!   against the system's roots (plus any given ones) unless verification is turned off.
//!   Redirects are not followed: a write that is redirected fails with a clear error instead of
//!   being replayed (perhaps as a GET, perhaps with credentials) somewhere else.
//! - [`HttpError`] says what went wrong in words that never contain the request's URL (it may hold
//!   credentials in its query) and maps to a [`ChestError`] of the right kind:
//!   429 and 503 with a `Retry-After` are throttled, 408, 429, 5xx and transport failures
//!   retryable, every other status permanent.
//!
//! Settings are checked when the chest is built, so a bad proxy URL or certificate is a build
//! [`Error`], never a write failure.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, StatusCode};
use reqwest::Url;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::{ChestError, Error, ErrorKind};

/// The default request timeout of the HTTP chests.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most bytes of an error response kept for the error message.
const MAX_ERROR_BODY: usize = 1024;

/// How a chest's HTTP client is built: timeout, TLS verification, extra roots, proxies.
#[derive(Clone)]
pub(crate) struct ClientSettings {
    /// The whole request (connect, send, answer) must finish within this time.
    pub(crate) timeout: Duration,
    /// Verify the server's certificate (the default); `false` accepts any certificate.
    pub(crate) verify: bool,
    /// PEM texts of extra trusted root certificates.
    pub(crate) root_certificates_pem: Vec<Vec<u8>>,
    /// Proxies by target scheme, like Python requests' `proxies` dict.
    pub(crate) proxies: Vec<ProxySetting>,
}

/// One proxy: which requests it serves and its URL (which may hold credentials).
#[derive(Clone)]
pub(crate) struct ProxySetting {
    /// `http`, `https` or `all`: the scheme of the target URLs this proxy serves.
    pub(crate) scheme: String,
    /// The proxy's URL.
    pub(crate) url: Secret,
}

/// The HTTP client setters every HTTP builder shares (`timeout`, `verify`,
/// `root_certificate_pem`, `proxy`), for a builder whose `client` field holds its
/// [`ClientSettings`]. `$request` names one request in the docs, e.g. `"write request"`.
macro_rules! client_setters {
    ($request:literal) => {
        #[doc = concat!("How long one ", $request, " may take, from connecting to the end of the")]
        /// answer (default 10 s). A timeout is a retryable error.
        pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
            self.client.timeout = timeout;
            self
        }

        /// Whether to verify the server's TLS certificate (default `true`, against the system's
        /// root certificates and any added with [`root_certificate_pem`](Self::root_certificate_pem)).
        /// Flask-Chest's default was `false`; here `false` is for tests only: it accepts any
        /// certificate.
        pub fn verify(mut self, verify: bool) -> Self {
            self.client.verify = verify;
            self
        }

        /// Also trusts the root certificate(s) in this PEM text (e.g. a private CA or a
        /// self-signed server certificate), keeping verification on.
        pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
            self.client.root_certificates_pem.push(pem.into());
            self
        }

        /// Sends requests whose URL has the scheme `scheme` (`"http"`, `"https"` or `"all"`, the
        /// keys of Flask-Chest's and Python requests' `proxies`) through the proxy at `proxy_url`
        /// (which may hold credentials: it is never shown). Without proxies, the `HTTP_PROXY`,
        /// `HTTPS_PROXY` and `NO_PROXY` environment variables apply, as they did for Flask-Chest.
        pub fn proxy(mut self, scheme: impl Into<String>, proxy_url: impl Into<String>) -> Self {
            self.client
                .proxies
                .push($crate::chests::http_client::ProxySetting {
                    scheme: scheme.into(),
                    url: $crate::chests::http_client::Secret::new(proxy_url),
                });
            self
        }
    };
}
pub(crate) use client_setters;

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            timeout: DEFAULT_TIMEOUT,
            verify: true,
            root_certificates_pem: Vec::new(),
            proxies: Vec::new(),
        }
    }
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSettings")
            .field("timeout", &self.timeout)
            .field("verify", &self.verify)
            .field("root_certificates", &self.root_certificates_pem.len())
            .field(
                "proxies",
                &self
                    .proxies
                    .iter()
                    .map(|p| format!("{} -> {}", p.scheme, shown_url(p.url.expose())))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ClientSettings {
    /// Builds the client of the chest `chest` that sends to `target`. The certificate verifier
    /// needs the system's root certificates (or extra ones) only when a TLS connection can happen:
    /// `target` or a proxy is `https`.
    pub(crate) fn build(&self, chest: &str, target: &Url) -> Result<reqwest::Client, Error> {
        if self.timeout.is_zero() {
            return Err(config(chest, "the timeout must be longer than zero"));
        }
        let proxies = self
            .proxies
            .iter()
            .map(|p| p.to_reqwest(chest))
            .collect::<Result<Vec<_>, _>>()?;
        let tls_needed = target.scheme() == "https"
            || self
                .proxies
                .iter()
                .any(|p| p.url.expose().starts_with("https:"));
        let tls = self.tls_config(chest, tls_needed)?;
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("chest/", env!("CARGO_PKG_VERSION")));
        for proxy in proxies {
            builder = builder.proxy(proxy);
        }
        builder.build().map_err(|e| Error::backend(chest, e))
    }

    fn tls_config(&self, chest: &str, tls_needed: bool) -> Result<rustls::ClientConfig, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = if self.verify {
            let roots = self.root_certificates(chest)?;
            match rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider.clone())
            {
                Ok(verifier) => Arc::new(verifier),
                Err(e) if tls_needed => {
                    return Err(config(
                        chest,
                        format!(
                            "cannot verify TLS certificates: {e}; install the system's CA \
                             certificates, add a root certificate, or turn verification off"
                        ),
                    ))
                }
                // Plain HTTP and no redirects: no handshake can happen, so a verifier that
                // refuses every certificate is never consulted, and says why if it ever is.
                Err(e) => Arc::new(FixedVerdict::refuse(&provider, e.to_string())),
            }
        } else {
            Arc::new(FixedVerdict::accept(&provider))
        };
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::backend(chest, e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // The client speaks HTTP/1.1 only (reqwest is built without HTTP/2).
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tls)
    }

    fn root_certificates(&self, chest: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
        let mut roots = Vec::new();
        for pem in &self.root_certificates_pem {
            let before = roots.len();
            for cert in CertificateDer::pem_slice_iter(pem) {
                roots.push(
                    cert.map_err(|e| config(chest, format!("invalid root certificate PEM: {e}")))?,
                );
            }
            if roots.len() == before {
                return Err(config(
                    chest,
                    "a root certificate PEM holds no CERTIFICATE section",
                ));
            }
        }
        Ok(roots)
    }
}

impl ProxySetting {
    fn to_reqwest(&self, chest: &str) -> Result<reqwest::Proxy, Error> {
        let url = self.url.expose();
        let proxy = match self.scheme.as_str() {
            "http" => reqwest::Proxy::http(url),
            "https" => reqwest::Proxy::https(url),
            "all" => reqwest::Proxy::all(url),
            other => {
                return Err(config(
                    chest,
                    format!("unknown proxy scheme {other:?}: use \"http\", \"https\" or \"all\""),
                ))
            }
        };
        // The URL is not repeated: it may hold the proxy's password.
        proxy.map_err(|_| {
            config(
                chest,
                format!("the {} proxy URL is not a valid URL", self.scheme),
            )
        })
    }
}

fn config(chest: &str, message: impl fmt::Display) -> Error {
    Error::Config(format!("{chest}: {message}"))
}

/// A certificate verifier with a fixed verdict on the certificate itself. Handshake signatures
/// are still checked, so an accepted connection is at least encrypted to the certificate's key.
#[derive(Debug)]
struct FixedVerdict {
    /// `None` accepts every certificate; `Some(reason)` refuses every one.
    refusal: Option<String>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl FixedVerdict {
    fn accept(provider: &CryptoProvider) -> Self {
        FixedVerdict {
            refusal: None,
            algorithms: provider.signature_verification_algorithms,
        }
    }

    fn refuse(provider: &CryptoProvider, reason: String) -> Self {
        FixedVerdict {
            refusal: Some(reason),
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for FixedVerdict {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.refusal {
            None => Ok(ServerCertVerified::assertion()),
            Some(reason) => Err(rustls::Error::General(reason.clone())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A secret text (token, password, proxy URL with credentials): `Debug` shows `<redacted>`.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(text: impl Into<String>) -> Self {
        Secret(text.into())
    }

    /// The secret itself, for the one place that sends it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A header value that `Debug` and reqwest's logs show as `Sensitive`.
#[cfg(any(feature = "influxdb", feature = "http"))]
pub(crate) fn sensitive_header(
    value: &str,
) -> Result<http::HeaderValue, http::header::InvalidHeaderValue> {
    let mut value = http::HeaderValue::from_str(value)?;
    value.set_sensitive(true);
    Ok(value)
}

/// `url` without user info, query or fragment: fit for names, logs and errors.
pub(crate) fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    // Both only fail for URLs that cannot have user info (`data:`), which then have none.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.into()
}

/// A URL given as text, fit to show: [`display_url`] when it parses, else the text after its
/// last `@` (user info cannot hold one unescaped, so no password is left).
pub(crate) fn shown_url(text: &str) -> String {
    Url::parse(text).map_or_else(
        |_| text.rsplit('@').next().unwrap_or_default().to_owned(),
        |u| display_url(&u),
    )
}

/// Why an HTTP write failed. The text never holds the request's URL or headers.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// The server answered with a status the chest does not accept.
    #[error("HTTP {status}: {message}")]
    Status {
        /// The status.
        status: StatusCode,
        /// What the server (and the chest) said about it.
        message: String,
        /// The server's `Retry-After`, for 429 and 503.
        retry_after: Option<Duration>,
    },
    /// No complete answer within the timeout.
    #[error("no answer within {0:?} (the request timeout)")]
    Timeout(Duration),
    /// Connecting, sending or receiving failed.
    #[error("request failed: {0}")]
    Transport(String),
    /// The request could not be built.
    #[error("invalid request: {0}")]
    Request(String),
}

impl HttpError {
    /// An unaccepted status; `message` is what the server said (see [`response_message`]),
    /// perhaps with the chest's hint.
    pub(crate) fn status(status: StatusCode, headers: &HeaderMap, message: String) -> Self {
        let retry_after = match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                retry_after(headers, SystemTime::now())
            }
            _ => None,
        };
        HttpError::Status {
            status,
            message,
            retry_after,
        }
    }

    /// A failure reported by reqwest; `timeout` is the client's, for the message.
    pub(crate) fn from_reqwest(error: reqwest::Error, timeout: Duration) -> Self {
        if error.is_timeout() {
            return HttpError::Timeout(timeout);
        }
        let builder = error.is_builder();
        let text = crate::error_chain(&error.without_url());
        if builder {
            HttpError::Request(text)
        } else {
            HttpError::Transport(text)
        }
    }

    /// Whether, and when, retrying can help.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            HttpError::Status {
                retry_after: Some(retry_after),
                ..
            } => ErrorKind::Throttled {
                retry_after: *retry_after,
            },
            HttpError::Status { status, .. } if retryable_status(*status) => ErrorKind::Retryable,
            HttpError::Status { .. } | HttpError::Request(_) => ErrorKind::Permanent,
            HttpError::Timeout(_) | HttpError::Transport(_) => ErrorKind::Retryable,
        }
    }

    /// The [`ChestError`] of the chest named `chest`.
    pub(crate) fn into_chest_error(self, chest: &str) -> ChestError {
        ChestError::new(chest, self.kind(), self)
    }
}

/// 408, 429 and 5xx: the server may accept the same request later.
fn retryable_status(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// What the server said in an error response: its body (at most 1 KiB, lossy UTF-8, trimmed),
/// or the status's reason when the body is empty or unreadable. `extract` may pick the message
/// out of a structured body (it gets the whole kept text).
pub(crate) async fn response_message(
    mut response: reqwest::Response,
    extract: impl FnOnce(&str) -> Option<String>,
) -> String {
    let status = response.status();
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    if text.is_empty() {
        return status.canonical_reason().unwrap_or("no message").to_owned();
    }
    extract(text).unwrap_or_else(|| text.to_owned())
}

/// The delay a `Retry-After` header asks for: delay-seconds or an HTTP date (IMF-fixdate; a date
/// in the past means no delay). `None` when absent or unreadable.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = UNIX_EPOCH + Duration::from_secs(parse_imf_fixdate(value)?);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Seconds since the Unix epoch of an IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`, the
/// only HTTP date format senders may generate (RFC 9110, 5.6.7).
fn parse_imf_fixdate(text: &str) -> Option<u64> {
    let (_weekday, rest) = text.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: u64 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let year: u64 = parts.next()?.parse().ok()?;
    let time = parts.next()?;
    if parts.next()? != "GMT" || parts.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let mut hms = time.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || !(1..=31).contains(&day) || year < 1970 || h > 23 || m > 59 || s > 60
    {
        return None;
    }
    let days = crate::record::days_from_civil(year as i64, month as i64, day as i64);
    Some(u64::try_from(days).ok()? * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(retry_after: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from_str(retry_after).unwrap(),
        );
        h
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            retry_after(&headers("120"), now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:51:37 GMT"), now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after(&headers("Sat, 05 Nov 1994 08:49:37 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_imf_fixdate("Thu, 29 Feb 2024 23:59:59 GMT"),
            Some(1_709_251_199)
        );
        for bad in [
            "soon",
            "-1",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 32 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(retry_after(&headers(bad), now), None, "{bad}");
        }
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn statuses_map_to_kinds() {
        let kind = |status: u16, h: &HeaderMap| {
            HttpError::status(StatusCode::from_u16(status).unwrap(), h, String::new()).kind()
        };
        let none = HeaderMap::new();
        assert_eq!(kind(400, &none), ErrorKind::Permanent);
        assert_eq!(kind(401, &none), ErrorKind::Permanent);
        assert_eq!(kind(302, &none), ErrorKind::Permanent);
        assert_eq!(kind(408, &none), ErrorKind::Retryable);
        assert_eq!(kind(429, &none), ErrorKind::Retryable);
        assert_eq!(kind(500, &none), ErrorKind::Retryable);
        assert_eq!(
            kind(503, &headers("7")),
            ErrorKind::Throttled {
                retry_after: Duration::from_secs(7)
            }
        );
        // Retry-After only counts where it means "throttled".
        assert_eq!(kind(500, &headers("7")), ErrorKind::Retryable);
    }

    #[test]
    fn urls_lose_credentials_and_query() {
        let url = Url::parse("https://user:pw@example.com:8443/p/write?token=t#f").unwrap();
        assert_eq!(display_url(&url), "https://example.com:8443/p/write");
        assert_eq!(
            shown_url("http://u:secret@127.0.0.1:3128"),
            "http://127.0.0.1:3128/"
        );
        assert_eq!(shown_url("http://u:secret@[bad"), "[bad");
        assert_eq!(format!("{:?}", Secret::new("s3cr3t")), "<redacted>");
    }

    #[test]
    fn builds_without_a_process_wide_crypto_provider() {
        // No provider is installed in the library's unit tests: building (and verifying with the
        // platform roots, or refusing plain HTTP's unneeded verifier) must work without one.
        let target = Url::parse("http://127.0.0.1:9/").unwrap();
        ClientSettings::default().build("test", &target).unwrap();
        let settings = ClientSettings {
            verify: false,
            ..ClientSettings::default()
        };
        settings.build("test", &target).unwrap();
    }

    #[test]
    fn bad_settings_are_build_errors() {
        let target = Url::parse("https://127.0.0.1:9/").unwrap();
        let bad_proxy = ClientSettings {
            proxies: vec![ProxySetting {
                scheme: "http".into(),
                url: Secret::new("http://user:hunter2@[bad"),
            }],
            ..ClientSettings::default()
        };
        let e = bad_proxy.build("test", &target).unwrap_err().to_string();
        assert!(e.contains("proxy URL is not a valid URL"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let bad_scheme = ClientSettings {
            proxies: vec![ProxySetting {
                scheme: "ftp".into(),
                url: Secret::new("http://127.0.0.1:3128"),
            }],
            ..ClientSettings::default()
        };
        assert!(bad_scheme.build("test", &target).is_err());
        let bad_pem = ClientSettings {
            root_certificates_pem: vec![b"not a certificate".to_vec()],
            ..ClientSettings::default()
        };
        let e = bad_pem.build("test", &target).unwrap_err().to_string();
        assert!(e.contains("root certificate"), "{e}");
        let zero = ClientSettings {
            timeout: Duration::ZERO,
            ..ClientSettings::default()
        };
        assert!(zero.build("test", &target).is_err());
    }
}
