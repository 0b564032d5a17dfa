//! The custom HTTP writer against real HTTP servers started here (axum on loopback): bodies,
//! headers, query parameters, statuses, a hanging sink, TLS with a self-signed certificate, an
//! HTTP proxy, and a failing payload generator behind the axum layer.
#![cfg(feature = "http")]

mod sink;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chest::chests::http::{HttpChest, Payload};
use chest::{Chest, ChestError, ErrorKind, MemoryChest, Record, Recorder, Vars};
use serde_json::json;
use sink::{test_client, Received, Reply, Sink};
use tower::ServiceExt;

fn records() -> Vec<Record> {
    let at = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
    vec![
        Record::new("req-1", "latency", 0.25, "GET", Some("/items/{id}")).at(at),
        Record::new("req-1", "user", "alice", "GET", Some("/items/{id}")).at(at),
    ]
}

#[tokio::test]
async fn default_payload_is_a_json_array_of_the_records() {
    let sink = Sink::start(|_| Reply::status(200)).await;
    let chest = HttpChest::builder(format!("{}/ingest?fixed=1", sink.url))
        .header("X-Source", "shop")
        .secret_header("X-Signature", "sig")
        .param("key", "a b&c")
        .params([("env", "test")])
        .build()
        .unwrap();
    chest.write(&records()).await.unwrap();

    let got = sink.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.method, "POST");
    assert!(r.target.starts_with("/ingest?"), "{}", r.target);
    assert_eq!(r.query("fixed").as_deref(), Some("1"));
    assert_eq!(r.query("key").as_deref(), Some("a b&c"));
    assert_eq!(r.query("env").as_deref(), Some("test"));
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("x-source"), "shop");
    assert_eq!(r.header("x-signature"), "sig");
    assert!(r.header("user-agent").starts_with("chest/"));
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body,
        json!([
            {"request_id": "req-1", "name": "latency", "value": 0.25, "value_type": "float",
             "method": "GET", "route": "/items/{id}", "recorded_at": "2023-11-14T22:13:20.123456Z"},
            {"request_id": "req-1", "name": "user", "value": "alice", "value_type": "text",
             "method": "GET", "route": "/items/{id}", "recorded_at": "2023-11-14T22:13:20.123456Z"},
        ])
    );
    // The default name is the URL without its query.
    assert_eq!(chest.name(), format!("{}/ingest", sink.url));
}

#[tokio::test]
async fn custom_payloads_json_and_raw() {
    let sink = Sink::start(|_| Reply::status(200)).await;
    // Flask-Chest's shape: the (name, value, request_id) tuples.
    let tuples = HttpChest::builder(&sink.url)
        .payload_generator(|records| {
            json!(records
                .iter()
                .map(|r| json!([&*r.name, &r.value, &*r.request_id]))
                .collect::<Vec<_>>())
        })
        .build()
        .unwrap();
    tuples.write(&records()).await.unwrap();
    let csv = HttpChest::builder(&sink.url)
        .payload_generator(|records| {
            let text: String = records
                .iter()
                .map(|r| format!("{},{}\n", r.name, r.value))
                .collect();
            Payload::raw("text/csv; charset=utf-8", text)
        })
        .build()
        .unwrap();
    csv.write(&records()).await.unwrap();
    // A Content-Type header given by the user wins over the payload's.
    let overridden = HttpChest::builder(&sink.url)
        .header("Content-Type", "application/x-ndjson")
        .build()
        .unwrap();
    overridden.write(&records()[..1]).await.unwrap();

    let got = sink.received();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].header("content-type"), "application/json");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&got[0].body).unwrap(),
        json!([["latency", 0.25, "req-1"], ["user", "alice", "req-1"]])
    );
    assert_eq!(got[1].header("content-type"), "text/csv; charset=utf-8");
    assert_eq!(got[1].body, b"latency,0.25\nuser,alice\n");
    assert_eq!(got[2].header("content-type"), "application/x-ndjson");
}

/// The outcome of one write to a server that answers with `reply`, with these success codes.
async fn outcome(reply: Reply, success: &[u16]) -> Result<(), ChestError> {
    let sink = Sink::start(move |_| reply.clone()).await;
    let chest = HttpChest::builder(&sink.url)
        .success_status_codes(success.iter().copied())
        .build()
        .unwrap();
    let result = chest.write(&records()).await;
    assert_eq!(
        sink.received().len(),
        1,
        "one request, no retries inside the chest"
    );
    result
}

#[tokio::test]
async fn status_codes_decide_success_and_retries() {
    outcome(Reply::status(200), &[200]).await.unwrap();
    outcome(Reply::status(201), &[200, 201]).await.unwrap();
    outcome(Reply::status(500), &[200, 500]).await.unwrap();

    let accepted_elsewhere = outcome(Reply::status(202), &[200]).await.unwrap_err();
    assert_eq!(accepted_elsewhere.kind(), ErrorKind::Permanent);
    assert!(
        accepted_elsewhere.to_string().contains("HTTP 202"),
        "{accepted_elsewhere}"
    );

    let bad = outcome(Reply::status(422).body("field `x` missing"), &[200])
        .await
        .unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::Permanent);
    assert!(bad.to_string().contains("field `x` missing"), "{bad}");

    let redirect = outcome(Reply::status(307).header("location", "/elsewhere"), &[200])
        .await
        .unwrap_err();
    assert_eq!(
        redirect.kind(),
        ErrorKind::Permanent,
        "redirects are not followed"
    );

    let broken = outcome(Reply::status(502), &[200]).await.unwrap_err();
    assert_eq!(broken.kind(), ErrorKind::Retryable);
    let throttled = outcome(Reply::status(429).header("retry-after", "3"), &[200])
        .await
        .unwrap_err();
    assert_eq!(throttled.retry_after(), Some(Duration::from_secs(3)));
    let unavailable = outcome(Reply::status(503), &[200]).await.unwrap_err();
    assert_eq!(unavailable.kind(), ErrorKind::Retryable);
}

#[tokio::test]
async fn a_hanging_sink_times_out() {
    let sink = Sink::start(|_| Reply::hang()).await;
    let chest = HttpChest::builder(&sink.url)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(60), chest.write(&records()))
        .await
        .expect("the chest's own timeout ends the write")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Retryable);
    assert!(e.to_string().contains("no answer within 300ms"), "{e}");
    assert_eq!(sink.received().len(), 1, "the request reached the sink");
}

#[tokio::test]
async fn failing_payload_generators_fail_only_the_write() {
    let sink = Sink::start(|_| Reply::status(200)).await;
    let erring = HttpChest::builder(&sink.url)
        .payload_generator(|_| Err::<serde_json::Value, _>("no payload today"))
        .build()
        .unwrap();
    let e = erring.write(&records()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permanent);
    assert!(e.to_string().contains("no payload today"), "{e}");

    let panicking = HttpChest::builder(&sink.url)
        .payload_generator(|records| -> serde_json::Value {
            panic!("boom with {} records", records.len())
        })
        .build()
        .unwrap();
    let e = panicking.write(&records()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permanent);
    assert!(
        e.to_string().contains("panicked: boom with 2 records"),
        "{e}"
    );
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn a_panicking_payload_generator_does_not_stop_the_service() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let panicking = HttpChest::builder("http://127.0.0.1:9/never")
        .payload_generator(move |_| -> serde_json::Value {
            counted.fetch_add(1, Ordering::SeqCst);
            panic!("payload generator bug")
        })
        .build()
        .unwrap();
    let memory = MemoryChest::new();
    let recorder = Recorder::new()
        .chest(panicking)
        .chest(memory.clone())
        .raise_exceptions(false);
    let app = Router::new()
        .route(
            "/work",
            get(|vars: Vars| async move {
                vars.set("items", 3).unwrap();
                "done"
            }),
        )
        .route_layer(chest::layer::ChestLayer::new(recorder));
    for _ in 0..2 {
        let response = app
            .clone()
            .oneshot(Request::get("/work").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        assert_eq!(&body[..], b"done");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the generator ran (and panicked) twice"
    );
    let written = memory.records();
    assert_eq!(written.len(), 2);
    assert!(written
        .iter()
        .all(|r| &*r.name == "items" && r.value == 3.into()));
    assert_ne!(written[0].request_id, written[1].request_id);
}

// ---------------------------------------------------------------------------------------------
// TLS with a self-signed certificate on loopback.

/// Accepts TCP connections and completes a TLS handshake on each; failed handshakes are skipped.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A sink serving HTTPS with a fresh self-signed certificate for `localhost`; returns it and the
/// certificate's PEM.
async fn tls_sink() -> (Sink, String) {
    use tokio_rustls::rustls;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = certified.cert.pem();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://localhost:{}", tcp.local_addr().unwrap().port());
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    };
    (Sink::serve(listener, url, |_| Reply::status(200)), cert_pem)
}

#[tokio::test]
async fn tls_verification_is_on_by_default() {
    let (sink, cert_pem) = tls_sink().await;

    let verifying = HttpChest::builder(&sink.url).build().unwrap();
    let e = verifying.write(&records()).await.unwrap_err();
    assert!(e.to_string().contains("certificate"), "{e}");
    assert!(
        sink.received().is_empty(),
        "nothing is sent to an unverified server"
    );

    let trusting = HttpChest::builder(&sink.url)
        .root_certificate_pem(cert_pem)
        .build()
        .unwrap();
    trusting.write(&records()).await.unwrap();
    assert_eq!(sink.received().len(), 1, "verified against the added root");

    let unverified = HttpChest::builder(&sink.url).verify(false).build().unwrap();
    unverified.write(&records()).await.unwrap();
    assert_eq!(sink.received().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// An HTTP proxy on loopback.

#[derive(Clone, Default)]
struct ProxyState {
    /// The request targets the proxy was asked for (absolute form).
    seen: Arc<Mutex<Vec<String>>>,
}

/// A forwarding proxy: takes absolute-form requests (`POST http://host/path`), records them,
/// forwards them and relays the answer.
async fn forward(State(state): State<ProxyState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    state.seen.lock().unwrap().push(parts.uri.to_string());
    if parts.uri.scheme().is_none() {
        return Response::builder()
            .status(400)
            .body(Body::from("not a proxy request"))
            .unwrap();
    }
    let body = to_bytes(body, usize::MAX).await.unwrap();
    let mut headers = parts.headers;
    headers.remove(http::header::HOST);
    let answer = test_client()
        .request(parts.method, parts.uri.to_string())
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let body = answer.bytes().await.unwrap();
    Response::builder()
        .status(status)
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn writes_go_through_the_proxy() {
    let sink = Sink::start(|_| Reply::status(200)).await;
    let proxy = ProxyState::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().fallback(forward).with_state(proxy.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let chest = HttpChest::builder(format!("{}/ingest", sink.url))
        .proxy("http", &proxy_url)
        .param("k", "v")
        .build()
        .unwrap();
    chest.write(&records()).await.unwrap();
    chest.write(&records()).await.unwrap();
    let seen = proxy.seen.lock().unwrap().clone();
    assert_eq!(seen, vec![format!("{}/ingest?k=v", sink.url); 2]);
    let got: Vec<Received> = sink.received();
    assert_eq!(got.len(), 2, "the proxy forwarded both");
    assert_eq!(got[0].target, "/ingest?k=v");

    // A proxy for https only leaves plain http alone.
    let direct = HttpChest::builder(&sink.url)
        .proxy("https", &proxy_url)
        .build()
        .unwrap();
    direct.write(&records()).await.unwrap();
    assert_eq!(proxy.seen.lock().unwrap().len(), 2);
    assert_eq!(sink.received().len(), 3);
}

// ---------------------------------------------------------------------------------------------
// Secrets and settings.

#[tokio::test]
async fn secrets_stay_out_of_debug_names_and_errors() {
    let sink = Sink::start(|_| Reply::status(401).body("who are you?")).await;
    let url = sink.url.replace("http://", "http://user:SECRET-userinfo@");
    let builder = HttpChest::builder(format!("{url}/ingest?api_key=SECRET-query"))
        .header("Authorization", "Bearer SECRET-bearer")
        .secret_header("X-Token", "SECRET-token")
        .param("sig", "SECRET-param")
        .proxy("https", "http://u:SECRET-proxy@127.0.0.1:9");
    let builder_debug = format!("{builder:?}");
    let chest = builder.build().unwrap();
    let e = chest.write(&records()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permanent);
    let got = &sink.received()[0];
    assert_eq!(got.header("authorization"), "Bearer SECRET-bearer");
    assert_eq!(got.header("x-token"), "SECRET-token");
    assert_eq!(got.query("sig").as_deref(), Some("SECRET-param"));
    for text in [
        builder_debug,
        format!("{chest:?}"),
        chest.name().to_owned(),
        e.to_string(),
        format!("{e:?}"),
    ] {
        assert!(!text.contains("SECRET"), "a secret leaked: {text}");
    }
}

#[test]
fn bad_settings_are_refused_when_building() {
    let refused = |b: chest::chests::http::HttpChestBuilder| b.build().unwrap_err().to_string();
    let e = refused(HttpChest::builder("not a url"));
    assert!(e.contains("not an http"), "{e}");
    let e = refused(HttpChest::builder("http://127.0.0.1:9").header("bad header", "v"));
    assert!(e.contains("not a valid header name"), "{e}");
    let e =
        refused(HttpChest::builder("http://127.0.0.1:9").secret_header("X-Key", "SECRET\nline"));
    assert!(e.contains("x-key") && !e.contains("SECRET"), "{e}");
    let e = refused(HttpChest::builder("http://127.0.0.1:9").success_status_codes([]));
    assert!(e.contains("success_status_codes is empty"), "{e}");
    let e = refused(HttpChest::builder("http://127.0.0.1:9").success_status_codes([200, 1000]));
    assert!(e.contains("1000"), "{e}");
    let e = refused(HttpChest::builder("http://127.0.0.1:9").proxy("socks", "http://127.0.0.1:1"));
    assert!(e.contains("unknown proxy scheme"), "{e}");
}

/// A batch carries its id as `Idempotency-Key`, the same (with the same body) on every attempt;
/// a plain write carries none.
#[tokio::test]
async fn batches_carry_an_idempotency_key() {
    let sink = Sink::start(|_| Reply::status(200)).await;
    let chest = HttpChest::builder(format!("{}/ingest", sink.url))
        .build()
        .unwrap();
    let id = chest::BatchId::new();
    for _ in 0..2 {
        let written = chest.write_batch(id, &records()).await.unwrap();
        assert_eq!(written, chest::Written::Stored);
    }
    chest.write(&records()).await.unwrap();
    let got = sink.received();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].header("idempotency-key"), id.to_string());
    assert_eq!(got[1].header("idempotency-key"), id.to_string());
    assert_eq!(got[0].body, got[1].body);
    assert!(got[2].headers.get("idempotency-key").is_none());
}

/// What a test receiver read: (`Idempotency-Key`, body) per request.
type Requests = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A receiver that reads each request whole and, the first time it sees an `Idempotency-Key`,
/// closes the connection without answering (as if the answer were lost); later requests with
/// that key get a 200. Returns its URL and what it read: (key, body) per request.
async fn forgetful_receiver() -> (String, Requests) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
    let seen: Requests = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0; 8192];
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
                    let header = |name: &str| {
                        head.lines()
                            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
                    };
                    let length: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
                    if buffer.len() < end + 4 + length {
                        continue;
                    }
                    let key = header("idempotency-key").unwrap_or_default();
                    let body = buffer[end + 4..end + 4 + length].to_vec();
                    buffer.drain(..end + 4 + length);
                    let first = {
                        let mut log = log.lock().unwrap();
                        let first = !log.iter().any(|(k, _)| *k == key);
                        log.push((key, body));
                        first
                    };
                    if first {
                        return; // The body was read; the answer is "lost".
                    }
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

/// Through `Batched`, every batch's first answer lost: each batch is sent again with the same
/// key and the same body, so a receiver that keeps keys stores each batch once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_batches_repeat_their_key_and_body() {
    use chest::batch::Batched;
    use chest::RetryPolicy;

    let (url, seen) = forgetful_receiver().await;
    let chest = HttpChest::builder(url).build().unwrap();
    let batched = Batched::builder(chest)
        .max_batch_records(10)
        .linger(Duration::from_millis(5))
        .retry_policy(RetryPolicy::new(
            Duration::from_millis(5),
            Duration::from_millis(50),
        ))
        .build()
        .unwrap();
    for n in 0..100 {
        let id = format!("req-{n}");
        batched
            .write(&[Record::new(id.as_str(), "n", n, "GET", None)])
            .await
            .unwrap();
    }
    let stats = batched.shutdown(Duration::from_secs(30)).await;
    assert_eq!((stats.written, stats.enqueued), (100, 100), "{stats:?}");
    assert!(stats.is_balanced(), "{stats:?}");
    let seen = seen.lock().unwrap().clone();
    let mut by_key: std::collections::BTreeMap<String, Vec<Vec<u8>>> = Default::default();
    for (key, body) in seen {
        assert_eq!(key.len(), 32, "no idempotency key: {key:?}");
        by_key.entry(key).or_default().push(body);
    }
    let mut records = 0;
    for (key, bodies) in &by_key {
        assert!(
            bodies.len() >= 2,
            "{key}: its first answer was lost, yet it was sent once"
        );
        assert!(
            bodies.iter().all(|b| b == &bodies[0]),
            "{key}: the retry changed the body"
        );
        records += serde_json::from_slice::<serde_json::Value>(&bodies[0])
            .unwrap()
            .as_array()
            .unwrap()
            .len();
    }
    assert_eq!(
        records, 100,
        "the batches under distinct keys do not hold each record once"
    );
}
