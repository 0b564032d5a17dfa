//! What the cases need from a framework, and the client side: a real server on a loopback port,
//! a real HTTP client, the SQLite file read back with SQL, and the captured logs.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chest::chests::sqlite::SqliteChest;
use chest::{Recorder, Vars};

/// What the shared handler sees of the request, whatever the framework.
pub struct Req {
    pub method: String,
    pub path: String,
}

impl Req {
    /// The last path segment: `7` for `/items/7`.
    pub fn last_segment(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or_default()
    }
}

/// What the shared handler answers; each framework turns it into its own response.
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// When not empty, the body is streamed instead: these chunks, each after `delay`.
    pub chunks: Vec<String>,
    pub delay: Duration,
}

impl Reply {
    pub fn ok(body: impl Into<String>) -> Self {
        Self::with_status(200, body)
    }

    pub fn with_status(status: u16, body: impl Into<String>) -> Self {
        Reply {
            status,
            body: body.into(),
            chunks: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// A 200 whose body is streamed: `chunks`, each sent after `delay`, with no length known.
    pub fn streamed(chunks: Vec<String>, delay: Duration) -> Self {
        Reply {
            chunks,
            delay,
            ..Self::ok("")
        }
    }

    /// The streamed body's chunks, each after the delay (for `Body::from_stream` and
    /// `HttpResponseBuilder::streaming`).
    pub fn stream(
        chunks: Vec<String>,
        delay: Duration,
    ) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
        futures_util::stream::unfold(chunks.into_iter(), move |mut rest| async move {
            let chunk = rest.next()?;
            tokio::time::sleep(delay).await;
            Some((Ok(bytes::Bytes::from(chunk)), rest))
        })
    }
}

/// A handler body, written once for every framework: it gets the request's `Vars` from the
/// framework's extractor.
pub type Handler = fn(&Vars, &Req) -> Reply;

/// Where the middleware sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Around each recorded route, like Flask-Chest's decorator (axum: the route's
    /// `MethodRouter::layer`; actix-web: `Resource::wrap`).
    Route,
    /// axum only: `Router::route_layer`, every route of the router but not its fallback.
    RouterRoutes,
    /// Around the whole app, before routing, the fallback included (axum: `Router::layer`;
    /// actix-web: `App::wrap`).
    App,
}

impl Placement {
    /// Whether requests that match no route go through the middleware.
    pub fn covers_fallback(self) -> bool {
        self == Placement::App
    }
}

/// A web framework under test. Every app has the same routes, all served by the glue around the
/// shared `Handler`:
/// - `/items/{id}` and `/shop/orders/{order}` (nested), any method, recorded;
/// - `/bare/{id}`, never wrapped by the middleware (only mounted with [`Placement::Route`]);
/// - a fallback for every other path.
pub trait Framework {
    /// The name of the middleware type, which the extractor's rejection must mention.
    const MIDDLEWARE: &'static str;
    /// The placements the framework supports.
    const PLACEMENTS: &'static [Placement];
    /// Starts a real server on a free loopback port.
    fn serve(recorder: Recorder, handler: Handler, placement: Placement) -> TestServer;
    /// Serves `/items/{id}` recorded, inside a request span made *outside* the middleware, with
    /// the fields `method` (set) and `user_id` (empty): axum with tower-http's `TraceLayer`,
    /// actix-web with an outer middleware that instruments the rest of the request.
    #[cfg(feature = "tracing")]
    fn serve_in_outer_span(recorder: Recorder, handler: Handler) -> TestServer;
    /// Serves `/items/{id}` with the middleware around an inner service that runs `handler`,
    /// then fails instead of answering; the framework turns that error into
    /// [`INNER_ERROR_STATUS`] with the body [`INNER_ERROR_BODY`].
    fn serve_failing_inner(recorder: Recorder, handler: Handler) -> TestServer;
}

/// The status of the inner service's error (see [`Framework::serve_failing_inner`]).
pub const INNER_ERROR_STATUS: u16 = 403;
/// The body of the inner service's error.
pub const INNER_ERROR_BODY: &str = "refused after the handler";

/// A free loopback port, bound.
pub fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind a loopback port")
}

/// A running server and a client for it. Dropping it stops the server.
pub struct TestServer {
    base: String,
    client: reqwest::Client,
    _running: Box<dyn Send + Sync>,
}

impl TestServer {
    /// `running` stops the server when dropped.
    pub fn new(addr: SocketAddr, running: impl Send + Sync + 'static) -> Self {
        capture_logs();
        TestServer {
            base: format!("http://{addr}"),
            client: client(),
            _running: Box::new(running),
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, &[]).await
    }

    pub async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send_with(&self.client, method, path, headers).await
    }

    /// GETs `path`, reads the body's first chunk and goes away: the request id.
    pub async fn get_and_leave_early(&self, path: &str) -> String {
        let client = client(); // its own connection, closed when dropped
        let mut response = client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("the server answers");
        let answer_id = response.headers()["x-request-id"]
            .to_str()
            .expect("an ASCII id")
            .to_owned();
        response.chunk().await.expect("a first chunk");
        answer_id
    }

    /// Sends `body` (with its `Content-Length`).
    pub async fn send_body(&self, method: &str, path: &str, body: &'static str) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
        let request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .body(body);
        Answer::read(request.send().await.expect("the server answers")).await
    }

    /// Sends with another client (one per concurrent user).
    pub async fn send_with(
        &self,
        client: &reqwest::Client,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
        let mut request = client.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Answer::read(request.send().await.expect("the server answers")).await
    }
}

/// A client with generous timeouts: the machine is shared and loaded.
pub fn client() -> reqwest::Client {
    crate::common::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("HTTP client")
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    async fn read(response: reqwest::Response) -> Self {
        Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await.expect("a text body"),
        }
    }

    /// A header's value as text (request ids may hold any UTF-8, which `to_str` refuses).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8(v.as_bytes().to_vec()).expect("a UTF-8 header value"))
    }

    /// The `x-request-id` response header, which must be there.
    pub fn request_id(&self) -> String {
        self.header("x-request-id")
            .unwrap_or_else(|| panic!("no x-request-id header in {self:?}"))
    }
}

/// A fresh SQLite file in a temporary folder.
pub struct TempDb {
    dir: tempfile::TempDir,
}

/// One row of the chest table, as SQL reads it back.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub request_id: String,
    pub name: String,
    pub value: String,
    pub value_num: Option<f64>,
    pub value_type: String,
    pub method: String,
    pub route: Option<String>,
}

impl TempDb {
    pub fn new() -> Self {
        TempDb {
            dir: tempfile::tempdir().expect("temporary folder"),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("chest.db")
    }

    pub fn chest(&self) -> SqliteChest {
        SqliteChest::open(self.path()).expect("open the SQLite chest")
    }

    /// The rows once there are at least `count` (writes made after the response, such as body
    /// facts, land a little later); fails after 30 s.
    pub async fn rows_eventually(&self, count: usize) -> Vec<Row> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let rows = self.rows();
            if rows.len() >= count || std::time::Instant::now() > deadline {
                assert!(rows.len() >= count, "{count} rows expected: {rows:#?}");
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every row, in insertion order.
    pub fn rows(&self) -> Vec<Row> {
        let conn = rusqlite::Connection::open(self.path()).expect("open the database");
        let mut stmt = conn
            .prepare(
                "SELECT request_id, name, value, value_num, value_type, method, route \
                 FROM chest ORDER BY unique_id",
            )
            .expect("prepare");
        stmt.query_map([], |r| {
            Ok(Row {
                request_id: r.get(0)?,
                name: r.get(1)?,
                value: r.get(2)?,
                value_num: r.get(3)?,
                value_type: r.get(4)?,
                method: r.get(5)?,
                route: r.get(6)?,
            })
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("read rows")
    }
}

type LogBuffer = Arc<Mutex<Vec<u8>>>;

static LOGS: OnceLock<LogBuffer> = OnceLock::new();

/// Installs, once per test binary, a global subscriber that keeps every log line: the servers'
/// threads log there too. Cases search it for their own request ids.
fn capture_logs() -> &'static LogBuffer {
    LOGS.get_or_init(|| {
        use tracing_subscriber::prelude::*;
        let buffer = LogBuffer::default();
        let sink = buffer.clone();
        let logs = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()));
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::INFO)
            .with(logs);
        // With the tracing feature every server of the suite runs with the bridge, as an
        // application would: the cases that use no tracing show it records nothing of its own.
        #[cfg(feature = "tracing")]
        let subscriber = subscriber.with(bridge().clone());
        subscriber.try_init().expect("the only global subscriber");
        buffer
    })
}

/// The bridge of the global subscriber.
#[cfg(feature = "tracing")]
pub fn bridge() -> &'static chest::bridge::TracingBridge {
    static BRIDGE: OnceLock<chest::bridge::TracingBridge> = OnceLock::new();
    BRIDGE.get_or_init(chest::bridge::TracingBridge::new)
}

struct LogWriter(LogBuffer);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The captured log lines that contain `needle`.
pub fn log_lines_with(needle: &str) -> Vec<String> {
    let logs = capture_logs().lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&logs)
        .lines()
        .filter(|line| line.contains(needle))
        .map(str::to_owned)
        .collect()
}
