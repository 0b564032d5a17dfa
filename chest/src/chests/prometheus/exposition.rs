//! Serving the metrics: the two text formats, content negotiation, the axum handler and a
//! standalone listener.

use std::io;
use std::net::SocketAddr;

use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::routing::{get, MethodRouter};
use axum::Router;
use prometheus_client::encoding::{prometheus_text, text};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::chest::PrometheusChest;
use crate::{Chest, Error};

/// A text exposition format: what [`PrometheusChest::encode`] writes.
///
/// ```
/// use chest::chests::prometheus::Format;
///
/// // What Prometheus sends: it prefers OpenMetrics.
/// let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
///                   version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
/// assert_eq!(Format::from_accept(Some(prometheus)), Format::OpenMetrics);
/// assert_eq!(Format::from_accept(Some("*/*")), Format::PrometheusText);
/// assert_eq!(Format::from_accept(None), Format::PrometheusText);
/// assert_eq!(
///     Format::OpenMetrics.content_type(),
///     "application/openmetrics-text; version=1.0.0; charset=utf-8"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// OpenMetrics 1.0 text (counters end in `_total`, the text ends with `# EOF`): what
    /// Prometheus asks for.
    OpenMetrics,
    /// The Prometheus text format 0.0.4: what the Pushgateway, older tools and browsers read.
    PrometheusText,
}

impl Format {
    /// The `Content-Type` of the format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::PrometheusText => prometheus_text::CONTENT_TYPE,
        }
    }

    /// The format to answer a request with this `Accept` header: OpenMetrics when the client
    /// accepts `application/openmetrics-text` at least as much as `text/plain`, else the
    /// Prometheus text format.
    pub fn from_accept(accept: Option<&str>) -> Format {
        let (mut openmetrics, mut plain) = (0.0_f32, 0.0_f32);
        for range in accept.unwrap_or_default().split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim();
            let quality = parts
                .filter_map(|param| param.split_once('='))
                .find(|(key, _)| key.trim().eq_ignore_ascii_case("q"))
                .map_or(1.0, |(_, q)| q.trim().parse().unwrap_or(0.0));
            if media.eq_ignore_ascii_case("application/openmetrics-text") {
                openmetrics = openmetrics.max(quality);
            } else if media.eq_ignore_ascii_case("text/plain") {
                plain = plain.max(quality);
            }
        }
        if openmetrics > 0.0 && openmetrics >= plain {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }
}

impl PrometheusChest {
    /// The current metrics as text in `format`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use chest::chests::prometheus::{Format, PrometheusChest};
    /// use chest::{Chest, Record};
    ///
    /// let chest = PrometheusChest::builder().gauge("depth").build().unwrap();
    /// chest.write(&[Record::new("r1", "depth", 7, "GET", Some("/q"))]).await.unwrap();
    /// let text = chest.encode(Format::PrometheusText);
    /// assert!(text.contains("chest_depth{method=\"GET\",route=\"/q\"} 7"));
    /// # }
    /// ```
    pub fn encode(&self, format: Format) -> String {
        let mut body = String::new();
        let encoded = match format {
            Format::OpenMetrics => text::encode(&mut body, &self.registry),
            Format::PrometheusText => prometheus_text::encode(&mut body, &self.registry),
        };
        // Writing to a `String` cannot fail, and neither can chest's collector by itself.
        if encoded.is_err() {
            tracing::error!(target: "chest", chest = self.name(), "prometheus chest: encoding the metrics failed");
        }
        body
    }

    /// A `GET` handler serving the metrics, in the format the client's `Accept` header asks
    /// for, to mount at a path of your choice. It works in a router of any state.
    ///
    /// ```
    /// use axum::Router;
    /// use chest::chests::prometheus::PrometheusChest;
    ///
    /// let chest = PrometheusChest::new();
    /// let app: Router = Router::new().route("/internal/metrics", chest.handler());
    /// ```
    pub fn handler<S: Clone + Send + Sync + 'static>(&self) -> MethodRouter<S> {
        let chest = self.clone();
        get(move |headers: HeaderMap| {
            let format = Format::from_accept(headers.get(ACCEPT).and_then(|v| v.to_str().ok()));
            let body = chest.encode(format);
            std::future::ready(([(CONTENT_TYPE, format.content_type())], body))
        })
    }

    /// A router serving [`handler`](Self::handler) at `GET /metrics`, to `merge` into your app.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new().route("/metrics", self.handler())
    }

    /// Serves `GET /metrics` on its own listener at `addr` (port 0 picks a free port), until the
    /// returned handle is shut down or dropped. Needs a running tokio runtime.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), chest::Error> {
    /// use chest::chests::prometheus::PrometheusChest;
    ///
    /// let chest = PrometheusChest::new();
    /// let server = chest.serve("127.0.0.1:9464".parse().unwrap()).await?;
    /// println!("metrics on http://{}/metrics", server.local_addr());
    /// server.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub async fn serve(&self, addr: SocketAddr) -> Result<MetricsServer, Error> {
        let listener_error = |e: io::Error| {
            Error::backend(format!("{} (metrics listener on {addr})", self.name()), e)
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(listener_error)?;
        let local_addr = listener.local_addr().map_err(listener_error)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = axum::serve(listener, self.router::<()>()).with_graceful_shutdown(async {
            // Fires on `shutdown` and when the handle is dropped.
            let _ = stopped.await;
        });
        let task = tokio::spawn(async move { server.await });
        Ok(MetricsServer {
            name: format!("{} (metrics listener on {local_addr})", self.name()),
            local_addr,
            stop: Some(stop),
            task,
        })
    }
}

/// The standalone metrics listener started by [`PrometheusChest::serve`]. Dropping it stops the
/// listener (requests in flight are finished).
#[derive(Debug)]
pub struct MetricsServer {
    name: String,
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl MetricsServer {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections and waits until the requests in flight are answered.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        if let Some(stop) = self.stop.take() {
            // The server may already have ended on its own; its result is below.
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(served) => served.map_err(|e| Error::backend(self.name.clone(), e)),
            Err(join) => Err(Error::backend(self.name.clone(), join)),
        }
    }
}
