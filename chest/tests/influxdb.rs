//! The InfluxDB chest: its line protocol against influxdata's own parser (property tests), its
//! requests and status handling against an HTTP server started here, and its points read back
//! from VictoriaMetrics and InfluxDB 1.6 (`CHEST_TEST_VM_URL`, `CHEST_TEST_INFLUXDB1_URL` and
//! `CHEST_TEST_INFLUXDB1_DB`, from `eval "$(scripts/services start)"`).
#![cfg(feature = "influxdb")]

mod common;
mod sink;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chest::chests::influxdb::{InfluxDbChest, LineEncoder};
use chest::{Chest, ChestError, ErrorKind, Record, Value};
use influxdb_line_protocol::{parse_lines, FieldValue};
use proptest::prelude::*;
use serde_json::json;
use sink::{test_client, Reply, Sink};

/// A name no other test (or earlier run) uses.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{nanos}_{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A record stamped at a whole millisecond (VictoriaMetrics keeps milliseconds).
fn record(request_id: &str, name: &str, value: impl Into<Value>, ms: u64) -> Record {
    Record::new(request_id, name, value, "GET", Some("/items/{id}"))
        .at(UNIX_EPOCH + Duration::from_millis(ms))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn gunzip(body: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(body)
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// Runs `f` with a tracing subscriber that records every event (TRACE and up) of this thread,
/// and returns what it logged.
async fn logged<F: std::future::Future>(f: F) -> (F::Output, String) {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let output = f.await;
    drop(guard);
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    (output, text)
}

// ---------------------------------------------------------------------------------------------
// The encoder against influxdata's parser.

/// Strings rich in the characters line protocol treats specially.
fn tricky_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-zA-Z0-9_/{}.-]{1,4}",
        1 => Just(",".to_owned()),
        1 => Just(" ".to_owned()),
        1 => Just("=".to_owned()),
        1 => Just("\"".to_owned()),
        1 => Just("\\".to_owned()),
        1 => Just("#".to_owned()),
        1 => Just("\n".to_owned()),
        1 => Just("\t".to_owned()),
        1 => Just("é🦀".to_owned()),
        1 => any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Int),
        any::<f64>().prop_map(Value::Float),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-0.0),
            Just(1e-310)
        ]
        .prop_map(Value::Float),
        any::<bool>().prop_map(Value::Bool),
        tricky_text().prop_map(Value::Text),
        (tricky_text(), any::<i32>())
            .prop_map(|(k, n)| Value::Json(json!({ k: [n, null, "a\"b\\c\n"] }))),
    ]
}

/// What the module docs promise to refuse, written independently of the encoder.
fn unwritable(text: &str, specials: &[char]) -> bool {
    let chars: Vec<char> = text.chars().collect();
    chars.iter().any(|&c| c < ' ' || c == '\x7f')
        || chars.iter().enumerate().any(|(i, &c)| {
            c == '\\'
                && chars
                    .get(i + 1)
                    .is_none_or(|next| *next == '\\' || specials.contains(next))
        })
}

fn expect_refused(record: &Record, request_id_as_tag: bool) -> bool {
    const MEASUREMENT: &[char] = &[',', ' '];
    const TAG: &[char] = &[',', ' ', '='];
    let tag_refused = |t: &str| !t.is_empty() && unwritable(t, TAG);
    record.name.is_empty()
        || record.name.starts_with('#')
        || unwritable(&record.name, MEASUREMENT)
        || tag_refused(&record.method)
        || tag_refused(record.route.as_deref().unwrap_or(""))
        || (request_id_as_tag && tag_refused(&record.request_id))
        || matches!(record.value, Value::Float(x) if !x.is_finite())
}

fn string_of(value: &FieldValue<'_>) -> String {
    match value {
        FieldValue::String(s) => s.to_string(),
        other => panic!("expected a string field, got {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn lines_round_trip_through_influxdatas_parser(
        name in tricky_text(),
        method in prop_oneof![Just("GET".to_owned()), tricky_text()],
        route in proptest::option::of(tricky_text()),
        request_id in tricky_text(),
        value in any_value(),
        nanos in any::<i64>(),
        tags in proptest::collection::btree_map("[a-z]{1,3}[ ,=]?[a-z]{0,2}", "[a-z]{1,3}[ ,=\\\\]?[a-z]{1,2}", 0..3),
        request_id_as_tag in any::<bool>(),
    ) {
        let time = if nanos >= 0 {
            UNIX_EPOCH + Duration::from_nanos(nanos as u64)
        } else {
            UNIX_EPOCH - Duration::from_nanos(nanos.unsigned_abs())
        };
        let record = Record::new(request_id.as_str(), name.as_str(), value.clone(), method.as_str(), route.as_deref()).at(time);
        let tags_ok = tags.iter().all(|(k, v)| {
            !["method", "route", "request_id", "value", "time"].contains(&k.as_str())
                && !unwritable(k, &[',', ' ', '='])
                && !unwritable(v, &[',', ' ', '='])
        });
        let encoder = match LineEncoder::new(tags.clone(), request_id_as_tag) {
            Ok(encoder) => { prop_assert!(tags_ok, "tags {tags:?} should be refused"); encoder }
            Err(e) => { prop_assert!(!tags_ok, "tags {tags:?} refused: {e}"); return Ok(()); }
        };

        let mut out = Vec::new();
        let encoded = encoder.encode_record(&record, &mut out);
        prop_assert_eq!(encoded.is_err(), expect_refused(&record, request_id_as_tag), "{:?} -> {:?}", record, encoded);
        if encoded.is_err() {
            prop_assert!(out.is_empty());
            return Ok(());
        }
        let text = String::from_utf8(out).unwrap();
        prop_assert!(text.ends_with('\n'));
        let lines: Vec<_> = parse_lines(&text).collect();
        prop_assert_eq!(lines.len(), 1, "{}", text);
        let line = lines.into_iter().next().unwrap().map_err(|e| TestCaseError::fail(format!("{e} in {text:?}")))?;

        prop_assert_eq!(line.series.measurement.to_string(), name);
        let mut expected_tags: BTreeMap<String, String> = tags.clone();
        let mut put = |k: &str, v: &str| { if !v.is_empty() { expected_tags.insert(k.to_owned(), v.to_owned()); } };
        put("method", &method);
        put("route", route.as_deref().unwrap_or(""));
        if request_id_as_tag { put("request_id", &request_id); }
        let got_tags: BTreeMap<String, String> = line.series.tag_set.iter().flatten()
            .map(|(k, v)| (k.to_string(), v.to_string())).collect();
        prop_assert_eq!(got_tags, expected_tags);

        let fields: BTreeMap<String, &FieldValue<'_>> = line.field_set.iter().map(|(k, v)| (k.to_string(), v)).collect();
        let got = fields["value"];
        match &value {
            Value::Int(i) => prop_assert_eq!(got, &FieldValue::I64(*i)),
            Value::Float(x) => prop_assert!(matches!(got, FieldValue::F64(y) if y.to_bits() == x.to_bits() || (*y == 0.0 && *x == 0.0 && y.is_sign_negative() == x.is_sign_negative())), "{got:?} != {x}"),
            Value::Bool(b) => prop_assert_eq!(got, &FieldValue::Boolean(*b)),
            Value::Text(t) => prop_assert_eq!(&string_of(got), t),
            Value::Json(j) => prop_assert_eq!(&serde_json::from_str::<serde_json::Value>(&string_of(got)).unwrap(), j),
            other => prop_assert!(false, "unexpected value {other:?}"),
        }
        if request_id_as_tag {
            prop_assert!(!fields.contains_key("request_id"));
        } else {
            prop_assert_eq!(string_of(fields["request_id"]), request_id);
        }
        prop_assert_eq!(line.timestamp, Some(nanos));
    }
}

#[test]
fn a_batch_keeps_good_records_and_names_the_refused() {
    let encoder = LineEncoder::new([("host", "h1")], false).unwrap();
    let records = [
        record("r1", "a", 1, 1),
        record("r2", "b", f64::NAN, 2),
        record("r3", "c", 2.5, 3),
        record("r4", "d", f64::INFINITY, 4),
    ];
    let mut out = Vec::new();
    let refused = encoder.encode(&records, &mut out);
    assert_eq!(refused.iter().map(|r| r.index).collect::<Vec<_>>(), [1, 3]);
    let text = String::from_utf8(out).unwrap();
    let names: Vec<String> = parse_lines(&text)
        .map(|l| l.unwrap().series.measurement.to_string())
        .collect();
    assert_eq!(names, ["a", "c"]);
}

// ---------------------------------------------------------------------------------------------
// Requests and answers, against a server started here.

#[tokio::test]
async fn v2_requests_carry_token_org_bucket_and_gzip() {
    let sink = Sink::start(|_| Reply::status(204)).await;
    let chest = InfluxDbChest::v2(format!("{}/influx", sink.url), "my org", "my-bucket")
        .token("tok-123")
        .custom_tag("service", "shop")
        .build()
        .unwrap();
    let records = [
        record("req-1", "latency", 12, 1_000),
        record("req-1", "ok", true, 1_000),
    ];
    chest.write(&records).await.unwrap();

    let got = sink.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.method, "POST");
    assert!(
        r.target.starts_with("/influx/api/v2/write?"),
        "{}",
        r.target
    );
    assert_eq!(r.query("org").as_deref(), Some("my org"));
    assert_eq!(r.query("bucket").as_deref(), Some("my-bucket"));
    assert_eq!(r.query("precision").as_deref(), Some("ns"));
    assert_eq!(r.header("authorization"), "Token tok-123");
    assert_eq!(r.header("content-encoding"), "gzip");
    assert_eq!(
        gunzip(&r.body),
        "latency,method=GET,route=/items/{id},service=shop value=12i,request_id=\"req-1\" 1000000000\n\
         ok,method=GET,route=/items/{id},service=shop value=true,request_id=\"req-1\" 1000000000\n"
    );
}

#[tokio::test]
async fn v1_requests_carry_database_policy_and_basic_auth() {
    let sink = Sink::start(|_| Reply::status(204)).await;
    let chest = InfluxDbChest::v1(&sink.url, "metrics")
        .retention_policy("week")
        .username_password("writer", "pa:ss")
        .gzip(false)
        .request_id_as_tag(true)
        .build()
        .unwrap();
    chest.write(&[record("req-9", "n", -4, 2)]).await.unwrap();
    let r = &sink.received()[0];
    assert!(r.target.starts_with("/write?"), "{}", r.target);
    assert_eq!(r.query("db").as_deref(), Some("metrics"));
    assert_eq!(r.query("rp").as_deref(), Some("week"));
    assert_eq!(r.query("precision").as_deref(), Some("ns"));
    // base64("writer:pa:ss")
    assert_eq!(r.header("authorization"), "Basic d3JpdGVyOnBhOnNz");
    assert_eq!(r.header("content-encoding"), "");
    assert_eq!(
        String::from_utf8(r.body.clone()).unwrap(),
        "n,method=GET,request_id=req-9,route=/items/{id} value=-4i 2000000\n"
    );
}

/// The error of one write to a server that answers every request with `reply`.
async fn error_for(reply: Reply) -> ChestError {
    let sink = Sink::start(move |_| reply.clone()).await;
    let chest = InfluxDbChest::v2(&sink.url, "o", "b")
        .token("SECRET-TOKEN-42")
        .build()
        .unwrap();
    let error = chest.write(&[record("r", "m", 1, 1)]).await.unwrap_err();
    assert_eq!(error.chest(), chest.name());
    assert!(!error.to_string().contains("SECRET-TOKEN-42"), "{error}");
    error
}

#[tokio::test]
async fn statuses_map_to_the_right_errors() {
    let bad = error_for(
        Reply::status(400)
            .body(r#"{"code":"invalid","message":"partial write: field type conflict"}"#),
    )
    .await;
    assert_eq!(bad.kind(), ErrorKind::Permanent);
    assert!(
        bad.to_string()
            .contains("partial write: field type conflict"),
        "{bad}"
    );

    let unauthorized =
        error_for(Reply::status(401).body(r#"{"error":"authorization failed"}"#)).await;
    assert_eq!(unauthorized.kind(), ErrorKind::Permanent);
    assert!(
        unauthorized.to_string().contains("token or credentials"),
        "{unauthorized}"
    );
    assert!(
        unauthorized.to_string().contains("authorization failed"),
        "{unauthorized}"
    );

    let forbidden = error_for(Reply::status(403)).await;
    assert_eq!(forbidden.kind(), ErrorKind::Permanent);
    assert!(
        forbidden
            .to_string()
            .contains("may not write to org `o`, bucket `b`"),
        "{forbidden}"
    );

    let missing =
        error_for(Reply::status(404).body(r#"{"message":"bucket \"b\" not found"}"#)).await;
    assert_eq!(missing.kind(), ErrorKind::Permanent);
    assert!(
        missing.to_string().contains("bucket \"b\" not found"),
        "{missing}"
    );

    let throttled = error_for(Reply::status(429).header("retry-after", "7")).await;
    assert_eq!(throttled.retry_after(), Some(Duration::from_secs(7)));
    let unavailable = error_for(Reply::status(503).header("retry-after", "3")).await;
    assert_eq!(unavailable.retry_after(), Some(Duration::from_secs(3)));
    let busy = error_for(Reply::status(503)).await;
    assert_eq!(busy.kind(), ErrorKind::Retryable);
    let broken = error_for(Reply::status(500).body("oops")).await;
    assert_eq!(broken.kind(), ErrorKind::Retryable);
    assert!(broken.to_string().contains("oops"), "{broken}");
}

#[tokio::test]
async fn unreachable_and_hanging_servers_are_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let chest = InfluxDbChest::v2(closed, "o", "b").build().unwrap();
    let refused = chest.write(&[record("r", "m", 1, 1)]).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Retryable, "{refused}");

    let sink = Sink::start(|_| Reply::hang()).await;
    let chest = InfluxDbChest::v2(&sink.url, "o", "b")
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let records = [record("r", "m", 1, 1)];
    let write = chest.write(&records);
    let timed_out = tokio::time::timeout(Duration::from_secs(60), write)
        .await
        .expect("the chest's own timeout ends the write")
        .unwrap_err();
    assert_eq!(timed_out.kind(), ErrorKind::Retryable);
    assert!(
        timed_out.to_string().contains("no answer within"),
        "{timed_out}"
    );
}

#[tokio::test]
async fn too_large_bodies_are_halved_until_they_fit() {
    // Accepts at most 3 lines a request.
    let sink = Sink::start(|r| {
        if String::from_utf8_lossy(&r.body).lines().count() > 3 {
            Reply::status(413).body(r#"{"error":"Request Entity Too Large"}"#)
        } else {
            Reply::status(204)
        }
    })
    .await;
    let chest = InfluxDbChest::v1(&sink.url, "db")
        .gzip(false)
        .build()
        .unwrap();
    let records: Vec<Record> = (0..10)
        .map(|i| record("r", &format!("m{i}"), i, 5))
        .collect();
    chest.write(&records).await.unwrap();
    let accepted: Vec<String> = sink
        .received()
        .iter()
        .map(|r| String::from_utf8(r.body.clone()).unwrap())
        .filter(|body| body.lines().count() <= 3)
        .flat_map(|body| {
            body.lines()
                .map(|l| l.split(',').next().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let expected: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(accepted, expected, "every line once, in order");

    // A single line that is still too large is a permanent error.
    let sink = Sink::start(|_| Reply::status(413)).await;
    let chest = InfluxDbChest::v1(&sink.url, "db").build().unwrap();
    let e = chest.write(&records[..2]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permanent);
    assert!(e.to_string().contains("single point is larger"), "{e}");
    assert_eq!(
        sink.received().len(),
        2,
        "2 lines, then the first alone, which fails"
    );
}

#[tokio::test]
async fn refused_records_fail_the_write_after_the_others_are_sent() {
    let sink = Sink::start(|_| Reply::status(204)).await;
    let chest = InfluxDbChest::v2(&sink.url, "o", "b")
        .gzip(false)
        .build()
        .unwrap();
    let records = [
        record("req-a", "good", 1, 1),
        record("req-b", "bad_float", f64::NAN, 1),
        record("req-c", "also_good", 2, 1),
    ];
    let e = chest.write(&records).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permanent);
    let text = e.to_string();
    assert!(text.contains("refused 1 of 3 records"), "{text}");
    assert!(
        text.contains("\"bad_float\" of request \"req-b\""),
        "{text}"
    );
    assert!(text.contains("NaN"), "{text}");
    let body = String::from_utf8(sink.received()[0].body.clone()).unwrap();
    assert!(
        body.starts_with("good,") && body.contains("\nalso_good,"),
        "{body}"
    );
    assert_eq!(body.lines().count(), 2);

    // Nothing writable: no request, the same error.
    let only_bad = chest.write(&records[1..2]).await.unwrap_err();
    assert!(
        only_bad.to_string().contains("refused 1 of 1"),
        "{only_bad}"
    );
    assert_eq!(sink.received().len(), 1);
}

#[tokio::test]
async fn secrets_stay_out_of_debug_errors_and_logs() {
    let sink = Sink::start(|_| Reply::status(401).body("bad token")).await;
    let token = "tok-SUPERSECRET-1";
    let password = "pw-SUPERSECRET-2";
    let builder = InfluxDbChest::v2(&sink.url, "o", "b")
        .token(token)
        .proxy("https", "http://proxyuser:pw-SUPERSECRET-3@127.0.0.1:9");
    let builder_debug = format!("{builder:?}");
    let chest = builder.build().unwrap();
    let v1 = InfluxDbChest::v1(&sink.url, "db")
        .username_password("user", password)
        .build()
        .unwrap();
    let ((e2, e1), logs) = logged(async {
        let e2 = chest.write(&[record("r", "m", 1, 1)]).await.unwrap_err();
        let e1 = v1
            .write(&[record("r", "m", f64::NAN, 1), record("r", "n", 1, 1)])
            .await
            .unwrap_err();
        (e2, e1)
    })
    .await;
    assert!(
        logs.contains("records refused"),
        "the test captures the chest's logs: {logs}"
    );
    let received = sink.received();
    assert_eq!(
        received[0].header("authorization"),
        format!("Token {token}")
    );
    for text in [
        builder_debug,
        format!("{chest:?}"),
        format!("{v1:?}"),
        chest.name().to_owned(),
        e2.to_string(),
        format!("{e2:?}"),
        e1.to_string(),
        logs,
    ] {
        assert!(!text.contains("SUPERSECRET"), "a secret leaked: {text}");
    }
}

#[test]
fn bad_settings_are_refused_when_building() {
    let refused =
        |b: chest::chests::influxdb::InfluxDbChestBuilder| b.build().unwrap_err().to_string();
    for key in ["request_id", "method", "route"] {
        let e = refused(InfluxDbChest::v2("http://127.0.0.1:1", "o", "b").custom_tag(key, "x"));
        assert!(e.contains(&format!("`{key}` is reserved")), "{e}");
    }
    let e = refused(InfluxDbChest::v2("http://127.0.0.1:1", "o", "b").custom_tag("k", "a\nb"));
    assert!(e.contains("control character"), "{e}");
    let e = refused(InfluxDbChest::v2("ftp://127.0.0.1:1", "o", "b"));
    assert!(e.contains("not an http"), "{e}");
    let e = refused(InfluxDbChest::v2("http://u:hunter2@127.0.0.1:1", "o", "b"));
    assert!(
        e.contains("not in the URL") && !e.contains("hunter2"),
        "{e}"
    );
    let e = refused(InfluxDbChest::v2("http://u:hunter2@[bad", "o", "b"));
    assert!(!e.contains("hunter2"), "{e}");
    let e = refused(InfluxDbChest::v2("http://127.0.0.1:1", "o", "b").retention_policy("rp"));
    assert!(e.contains("v1 setting"), "{e}");
    let e = refused(InfluxDbChest::v2("http://127.0.0.1:1", "o", ""));
    assert!(e.contains("bucket is empty"), "{e}");
    let e = refused(InfluxDbChest::v1("http://127.0.0.1:1/?db=x", "db"));
    assert!(e.contains("must not have a query"), "{e}");
    let e = refused(InfluxDbChest::v1("http://127.0.0.1:1", "db").timeout(Duration::ZERO));
    assert!(e.contains("timeout"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Real servers.

/// Polls `url` with GET until `done` accepts the body (30 s at most), returning it.
async fn poll_get(url: &str, query: &[(&str, &str)], done: impl Fn(&str) -> bool) -> String {
    let client = test_client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let body = client
            .get(reqwest::Url::parse_with_params(url, query).unwrap())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if done(&body) || tokio::time::Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// VictoriaMetrics' export of the series whose name matches the regex `names`, flushed first.
async fn vm_export(vm: &str, names: &str, series: usize) -> Vec<serde_json::Value> {
    let client = test_client();
    let selector = format!("{{__name__=~\"{names}\"}}");
    let flush = format!("{vm}/internal/force_flush");
    let body = {
        let export = format!("{vm}/api/v1/export");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            client.get(&flush).send().await.unwrap();
            let body = poll_get(&export, &[("match[]", &selector)], |_| true).await;
            if body.lines().count() >= series || tokio::time::Instant::now() > deadline {
                break body;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let mut rows: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    rows.sort_by_key(|r| r["metric"]["__name__"].as_str().unwrap_or("").to_owned());
    rows
}

#[tokio::test]
async fn victoria_metrics_stores_the_numbers() {
    let Some(vm) = common::service_url("CHEST_TEST_VM_URL") else {
        return;
    };
    let prefix = unique("chest_vm");
    let ms = now_ms();
    let chest = InfluxDbChest::v2(&vm, "org", "bucket")
        .token("unused-by-vm")
        .custom_tag("service", "shop")
        .build()
        .unwrap();
    let records = [
        record("req-vm-1", &format!("{prefix}_int"), 42, ms),
        record("req-vm-1", &format!("{prefix}_float"), 2.5, ms),
        record("req-vm-1", &format!("{prefix}_bool"), true, ms),
        record("req-vm-1", &format!("{prefix}_text"), "hello", ms),
        record("req-vm-1", &format!("{prefix}_json"), json!({"a": 1}), ms),
    ];
    chest.write(&records).await.unwrap();

    // Each field is a series `<measurement>_<field>`: 5 values and 5 request ids.
    let rows = vm_export(&vm, &format!("{prefix}_.*"), 10).await;
    assert_eq!(rows.len(), 10, "{rows:#?}");
    let value_of = |suffix: &str| {
        let row = rows
            .iter()
            .find(|r| r["metric"]["__name__"] == format!("{prefix}_{suffix}_value"))
            .unwrap_or_else(|| panic!("no {suffix} series in {rows:#?}"));
        assert_eq!(row["metric"]["method"], "GET");
        assert_eq!(row["metric"]["route"], "/items/{id}");
        assert_eq!(row["metric"]["service"], "shop");
        assert_eq!(row["timestamps"], json!([ms]));
        row["values"][0].as_f64().unwrap()
    };
    assert_eq!(value_of("int"), 42.0);
    assert_eq!(value_of("float"), 2.5);
    assert_eq!(value_of("bool"), 1.0);
    // VictoriaMetrics keeps no strings: text and JSON become 0.
    assert_eq!(value_of("text"), 0.0);
    assert_eq!(value_of("json"), 0.0);
}

#[tokio::test]
async fn victoria_metrics_request_id_as_tag() {
    let Some(vm) = common::service_url("CHEST_TEST_VM_URL") else {
        return;
    };
    let name = unique("chest_vm_tagged");
    let request_id = unique("req");
    let ms = now_ms();
    let chest = InfluxDbChest::v2(&vm, "org", "bucket")
        .request_id_as_tag(true)
        .build()
        .unwrap();
    chest
        .write(&[record(&request_id, &name, 7, ms)])
        .await
        .unwrap();
    let rows = vm_export(&vm, &format!("{name}_.*"), 1).await;
    assert_eq!(rows.len(), 1, "only the value series: {rows:#?}");
    assert_eq!(rows[0]["metric"]["request_id"], request_id);
    assert_eq!(rows[0]["values"], json!([7]));
}

/// The rows of an InfluxQL query against the test database, times in ns.
async fn influxql(url: &str, db: &str, query: &str, rows: usize) -> serde_json::Value {
    let body = poll_get(
        &format!("{url}/query"),
        &[("db", db), ("epoch", "ns"), ("q", query)],
        |body| {
            serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|j| {
                    j["results"][0]["series"][0]["values"]
                        .as_array()
                        .map(Vec::len)
                })
                .is_some_and(|n| n >= rows)
        },
    )
    .await;
    serde_json::from_str(&body).unwrap()
}

/// The series of an InfluxQL answer as maps column -> value.
fn influx_rows(answer: &serde_json::Value) -> Vec<BTreeMap<String, serde_json::Value>> {
    let series = &answer["results"][0]["series"][0];
    let columns: Vec<String> = series["columns"]
        .as_array()
        .unwrap_or_else(|| panic!("no series in {answer}"))
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    series["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            columns
                .iter()
                .cloned()
                .zip(row.as_array().unwrap().iter().cloned())
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn influxdb1_keeps_every_type_and_escape() {
    let Some(url) = common::service_url("CHEST_TEST_INFLUXDB1_URL") else {
        return;
    };
    let db = std::env::var("CHEST_TEST_INFLUXDB1_DB").expect("CHEST_TEST_INFLUXDB1_DB");
    for gzip in [true, false] {
        // A measurement with every character that needs escaping (and a harmless backslash).
        let name = format!("{} a,b=c\"d\\e", unique("chest_influx"));
        let chest = InfluxDbChest::v1(&url, &db)
            .gzip(gzip)
            .custom_tag("env", "test, with=spaces")
            .build()
            .unwrap();
        let base = 1_700_000_000_000_000_000u64;
        let at = |i: u64| UNIX_EPOCH + Duration::from_nanos(base + i);
        let mut records = Vec::new();
        let values: [Value; 6] = [
            Value::Int(-42),
            Value::Float(0.1),
            Value::Bool(false),
            Value::Text("quote \" backslash \\ comma, newline\nend".into()),
            Value::Json(json!({"k": ["v", 1]})),
            Value::Float(1e300),
        ];
        // One series per value type (InfluxDB fixes a field's type per shard): one measurement each.
        for (i, value) in values.iter().enumerate() {
            records.push(
                Record::new(
                    format!("req {i}, \"x\""),
                    format!("{name}{i}"),
                    value.clone(),
                    "POST",
                    Some("/a b/{id}"),
                )
                .at(at(i as u64)),
            );
        }
        chest.write(&records).await.unwrap();

        for (i, value) in values.iter().enumerate() {
            let measurement = format!("{name}{i}")
                .replace('\\', "\\\\")
                .replace('"', "\\\"");
            let answer = influxql(&url, &db, &format!("SELECT * FROM \"{measurement}\""), 1).await;
            let rows = influx_rows(&answer);
            assert_eq!(rows.len(), 1, "{answer}");
            let row = &rows[0];
            assert_eq!(row["time"], json!(base + i as u64));
            assert_eq!(row["method"], "POST");
            assert_eq!(row["route"], "/a b/{id}");
            assert_eq!(row["env"], "test, with=spaces");
            assert_eq!(row["request_id"], format!("req {i}, \"x\""));
            let expected = match value {
                Value::Int(n) => json!(n),
                Value::Float(x) => json!(x),
                Value::Bool(b) => json!(b),
                Value::Text(t) => json!(t),
                Value::Json(j) => json!(j.to_string()),
                other => panic!("{other:?}"),
            };
            assert_eq!(row["value"], expected, "gzip {gzip}, {value:?}");

            // The stored type, not just the JSON rendering.
            let keys = influxql(
                &url,
                &db,
                &format!("SHOW FIELD KEYS FROM \"{measurement}\""),
                2,
            )
            .await;
            let types: BTreeMap<String, String> = keys["results"][0]["series"][0]["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|kv| {
                    (
                        kv[0].as_str().unwrap().to_owned(),
                        kv[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            let expected_type = match value {
                Value::Int(_) => "integer",
                Value::Float(_) => "float",
                Value::Bool(_) => "boolean",
                _ => "string",
            };
            assert_eq!(types["value"], expected_type);
            assert_eq!(types["request_id"], "string");
        }
    }
}

#[tokio::test]
async fn influxdb1_refusals_and_errors() {
    let Some(url) = common::service_url("CHEST_TEST_INFLUXDB1_URL") else {
        return;
    };
    let db = std::env::var("CHEST_TEST_INFLUXDB1_DB").expect("CHEST_TEST_INFLUXDB1_DB");
    let name = unique("chest_influx_nan");
    let chest = InfluxDbChest::v1(&url, &db)
        .request_id_as_tag(true)
        .build()
        .unwrap();
    let records = [
        record("r1", &name, 1.5, 1),
        record("r2", &name, f64::NAN, 2),
        record("r3", &name, -2.0, 3),
    ];
    let e = chest.write(&records).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permanent);
    assert!(e.to_string().contains("of request \"r2\""), "{e}");
    let answer = influxql(
        &url,
        &db,
        &format!("SELECT value, request_id FROM \"{name}\""),
        2,
    )
    .await;
    let rows = influx_rows(&answer);
    let got: Vec<(String, f64)> = rows
        .iter()
        .map(|r| {
            (
                r["request_id"].as_str().unwrap().to_owned(),
                r["value"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [("r1".to_owned(), 1.5), ("r3".to_owned(), -2.0)]);

    // A field's type is fixed: a string after a float is InfluxDB's 400, permanent, with its words.
    let e = chest
        .write(&[record("r4", &name, "text", 4)])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permanent);
    assert!(e.to_string().contains("field type conflict"), "{e}");

    let missing = InfluxDbChest::v1(&url, unique("no_such_db"))
        .build()
        .unwrap();
    let e = missing.write(&[record("r", "m", 1, 1)]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permanent);
    assert!(e.to_string().contains("database not found"), "{e}");
}
