//! A real HTTP server on loopback (axum) that records every request it gets and answers as the
//! test tells it: the far end of the HTTP chests' tests. Included with `mod sink;`.
#![allow(dead_code)] // Each test binary uses a different part.

use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;

/// One request the sink got.
#[derive(Debug, Clone)]
pub struct Received {
    /// `POST`, ...
    pub method: String,
    /// The request target as the client sent it (origin form: path and query).
    pub target: String,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body, as sent (not decompressed).
    pub body: Vec<u8>,
}

impl Received {
    /// A header's value as text, or "" when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The value of query parameter `name`.
    pub fn query(&self, name: &str) -> Option<String> {
        let url = reqwest::Url::parse(&format!("http://x{}", self.target)).ok()?;
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// How the sink answers a request.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    hang: bool,
}

impl Reply {
    /// An empty answer with this status.
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
            hang: false,
        }
    }

    /// Never answers.
    pub fn hang() -> Self {
        Reply {
            hang: true,
            ..Reply::status(200)
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }
}

type Answer = dyn Fn(&Received) -> Reply + Send + Sync;

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    answer: Arc<Answer>,
}

/// A running sink. It stops when the test's runtime ends.
pub struct Sink {
    /// `http://127.0.0.1:<port>` (or what the test's listener serves).
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Sink {
    /// Serves plain HTTP on 127.0.0.1 (a free port), answering each request with `answer`.
    pub async fn start(answer: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        Sink::serve(listener, url, answer)
    }

    /// Serves on `listener`, which the test reaches at `url`.
    pub fn serve<L>(
        listener: L,
        url: String,
        answer: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> Sink
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
    {
        let shared = Shared {
            received: Arc::default(),
            answer: Arc::new(answer),
        };
        let received = shared.received.clone();
        let app = Router::new().fallback(record).with_state(shared);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Sink { url, received }
    }

    /// The requests received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn record(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let received = Received {
        method: parts.method.to_string(),
        target: parts
            .uri
            .path_and_query()
            .map_or_else(String::new, ToString::to_string),
        headers: parts.headers,
        body: body.to_vec(),
    };
    let reply = (shared.answer)(&received);
    shared.received.lock().unwrap().push(received);
    if reply.hang {
        std::future::pending::<()>().await;
    }
    let mut response = Response::builder().status(reply.status);
    for (name, value) in reply.headers {
        response = response.header(name, value);
    }
    response.body(Body::from(reply.body)).unwrap()
}

/// A reqwest client for the tests' own requests (reading back from servers, forwarding in the
/// test proxy). The chests never need a process-wide crypto provider; the tests' plain
/// `reqwest::Client` does (reqwest is built without one), so the test installs ring's.
pub fn test_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}
