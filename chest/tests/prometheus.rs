//! The Prometheus chest: names, kinds, the series cap, skipped values, concurrency and the
//! exposition (parsed back), then against a real Prometheus (PromQL over its HTTP API) and a real
//! Pushgateway.
#![cfg(feature = "prometheus")]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Query;
use axum::routing::get;
use axum::Router;
use chest::chests::prometheus::{Format, PrometheusChest};
use chest::layer::ChestLayer;
use chest::{Chest, ErrorKind, Record, Recorder, Value, Vars};
use futures_util::FutureExt;
use tower::ServiceExt;

/// A small parser of both text formats, strict enough to catch what Prometheus would refuse.
mod exposition {
    use std::collections::BTreeMap;

    #[derive(Debug, Clone, PartialEq)]
    pub struct Sample {
        pub name: String,
        pub labels: BTreeMap<String, String>,
        pub value: f64,
    }

    #[derive(Debug, Clone)]
    pub struct Family {
        pub name: String,
        pub kind: String,
        pub help: String,
        pub samples: Vec<Sample>,
    }

    #[derive(Debug)]
    pub struct Exposition(pub Vec<Family>);

    fn is_metric_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    fn is_label_name(name: &str) -> bool {
        is_metric_name(name) && !name.contains(':')
    }

    fn parse_value(text: &str) -> Result<f64, String> {
        match text {
            "+Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            "NaN" => Ok(f64::NAN),
            _ => text.parse().map_err(|e| format!("bad value {text:?}: {e}")),
        }
    }

    /// Parses `{k="v",...}` (after the name); returns the labels and the rest of the line.
    fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
        let mut labels = BTreeMap::new();
        let Some(mut rest) = text.strip_prefix('{') else {
            return Ok((labels, text));
        };
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                return Ok((labels, after));
            }
            let (name, after) = rest.split_once("=\"").ok_or("label without =\"")?;
            if !is_label_name(name) {
                return Err(format!("bad label name {name:?}"));
            }
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().ok_or("unterminated label value")? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                        'n' => value.push('\n'),
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        other => return Err(format!("bad escape \\{other}")),
                    },
                    (_, '\n') => return Err("raw newline in a label value".into()),
                    (_, c) => value.push(c),
                }
            };
            if labels.insert(name.to_owned(), value).is_some() {
                return Err(format!("label {name} twice"));
            }
            rest = &after[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }

    /// The suffixes a sample of a family of `kind` may add to the family's name.
    fn suffixes(kind: &str, openmetrics: bool) -> &'static [&'static str] {
        match (kind, openmetrics) {
            ("counter", true) => &["_total", "_created"],
            ("histogram", _) => &["_bucket", "_sum", "_count", "_created"],
            ("summary", _) => &["", "_sum", "_count", "_created"],
            _ => &[""],
        }
    }

    /// Parses an exposition; OpenMetrics must end with `# EOF`.
    pub fn parse(text: &str, openmetrics: bool) -> Result<Exposition, String> {
        let body = if openmetrics {
            text.strip_suffix("# EOF\n")
                .ok_or("OpenMetrics text must end with # EOF")?
        } else {
            text
        };
        if !body.is_empty() && !body.ends_with('\n') {
            return Err("the text must end with a newline".into());
        }
        let mut families: Vec<Family> = Vec::new();
        for line in body.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').ok_or("HELP without text")?;
                if !is_metric_name(name) || families.iter().any(|f| f.name == name) {
                    return Err(format!("bad or repeated family {name:?}"));
                }
                families.push(Family {
                    name: name.to_owned(),
                    kind: String::new(),
                    help: help.to_owned(),
                    samples: Vec::new(),
                });
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').ok_or("TYPE without type")?;
                let after_help = families
                    .last()
                    .is_some_and(|f| f.name == name && f.kind.is_empty());
                if after_help {
                    families.last_mut().unwrap().kind = kind.to_owned();
                } else if !is_metric_name(name) || families.iter().any(|f| f.name == name) {
                    return Err(format!("bad or repeated family {name:?}"));
                } else {
                    // A family without HELP (both formats allow it).
                    families.push(Family {
                        name: name.to_owned(),
                        kind: kind.to_owned(),
                        help: String::new(),
                        samples: Vec::new(),
                    });
                }
            } else if line.starts_with('#') {
                return Err(format!("unexpected comment {line:?}"));
            } else {
                let name_end = line.find(['{', ' ']).ok_or("sample without value")?;
                let name = &line[..name_end];
                let (mut labels, rest) = parse_labels(&line[name_end..])?;
                // `le` in one spelling: OpenMetrics writes `1.0`, the text format `1`.
                if let Some(le) = labels.get_mut("le") {
                    let bound = parse_value(le)?;
                    *le = if bound == f64::INFINITY {
                        "+Inf".into()
                    } else {
                        bound.to_string()
                    };
                }
                let value = parse_value(rest.strip_prefix(' ').ok_or("no space before value")?)?;
                let family = families.last_mut().ok_or("sample before any family")?;
                let suffix = name.strip_prefix(family.name.as_str());
                if !suffix.is_some_and(|s| suffixes(&family.kind, openmetrics).contains(&s)) {
                    return Err(format!(
                        "sample {name} does not belong to {} ({})",
                        family.name, family.kind
                    ));
                }
                family.samples.push(Sample {
                    name: name.to_owned(),
                    labels,
                    value,
                });
            }
        }
        Ok(Exposition(families))
    }

    impl Exposition {
        pub fn family(&self, name: &str) -> Option<&Family> {
            self.0.iter().find(|f| f.name == name)
        }

        /// The value of the sample `name` whose labels are exactly `labels`.
        pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
            let wanted: BTreeMap<String, String> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            self.0
                .iter()
                .flat_map(|f| &f.samples)
                .find(|s| s.name == name && s.labels == wanted)
                .map(|s| s.value)
        }

        /// The samples named `name` that have all of `labels` (and perhaps more).
        pub fn samples_with(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
            self.0
                .iter()
                .flat_map(|f| &f.samples)
                .filter(|s| {
                    s.name == name
                        && labels
                            .iter()
                            .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
                })
                .collect()
        }
    }
}

use exposition::Exposition;

/// Writes records synchronously: the chest's write is ready at once.
fn write(chest: &PrometheusChest, records: &[Record]) -> Result<(), chest::ChestError> {
    chest
        .write(records)
        .now_or_never()
        .expect("the Prometheus chest writes synchronously")
}

fn record(name: &str, value: impl Into<Value>, method: &str, route: Option<&str>) -> Record {
    Record::new("req-1", name, value, method, route)
}

/// Both encodings, parsed; asserts they hold the same families and values.
fn scrape(chest: &PrometheusChest) -> Exposition {
    let openmetrics = exposition::parse(&chest.encode(Format::OpenMetrics), true)
        .unwrap_or_else(|e| panic!("OpenMetrics does not parse: {e}"));
    let text = exposition::parse(&chest.encode(Format::PrometheusText), false)
        .unwrap_or_else(|e| panic!("text format does not parse: {e}"));
    // The same samples in both (the text format names counter families with `_total`, and
    // orders a histogram's samples differently).
    let samples = |e: &Exposition| -> Vec<exposition::Sample> {
        let mut all: Vec<_> = e.0.iter().flat_map(|f| f.samples.clone()).collect();
        all.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        all
    };
    assert_eq!(samples(&openmetrics), samples(&text));
    for family in &openmetrics.0 {
        let in_text = if family.kind == "counter" {
            format!("{}_total", family.name)
        } else {
            family.name.clone()
        };
        let twin = text
            .family(&in_text)
            .unwrap_or_else(|| panic!("{in_text} missing"));
        assert_eq!(twin.kind, family.kind);
    }
    openmetrics
}

fn skipped(exposition: &Exposition, reason: &str) -> f64 {
    exposition
        .value("chest_prometheus_skipped_total", &[("reason", reason)])
        .unwrap_or_else(|| panic!("no skipped counter for {reason}"))
}

#[test]
fn builder_refuses_settings_that_cannot_work() {
    let refused = |builder: chest::chests::prometheus::PrometheusChestBuilder, needle: &str| {
        let error = builder.name("metrics").build().unwrap_err().to_string();
        assert!(error.contains("prometheus chest `metrics`"), "{error}");
        assert!(error.contains(needle), "{needle:?} not in {error}");
    };
    refused(PrometheusChest::builder().gauge("---"), "\"---\"");
    refused(PrometheusChest::builder().gauge("ü"), "no ASCII letter");
    refused(
        PrometheusChest::builder().prefix("").counter("5xx"),
        "digit",
    );
    refused(
        PrometheusChest::builder().prefix("my-app"),
        "invalid prefix",
    );
    refused(
        PrometheusChest::builder().gauge("prometheus_skipped"),
        "chest's own metrics",
    );
    refused(
        PrometheusChest::builder().constant_label("method", "x"),
        "set by chest",
    );
    refused(
        PrometheusChest::builder().constant_label("a b", "x"),
        "invalid constant label",
    );
    refused(
        PrometheusChest::builder()
            .constant_label("env", "a")
            .constant_label("env", "b"),
        "twice",
    );
    refused(
        PrometheusChest::builder().histogram("t", []),
        "at least one",
    );
    refused(
        PrometheusChest::builder().histogram("t", [1.0, f64::NAN]),
        "finite",
    );
    refused(
        PrometheusChest::builder().histogram("t", [1.0, 1.0]),
        "increasing",
    );
    refused(
        PrometheusChest::builder().default_buckets([2.0, 1.0]),
        "increasing",
    );
    refused(
        PrometheusChest::builder().gauge("a-b").counter("a_b"),
        "another kind",
    );
    refused(
        PrometheusChest::builder().gauge("x").counter("x"),
        "configured twice",
    );
    refused(PrometheusChest::builder().series_cap(0), "at least 1");
    refused(
        PrometheusChest::builder()
            .max_metrics(1)
            .gauge("a")
            .gauge("b"),
        "max_metrics",
    );

    // Variables that sanitise alike with the same kind share one family.
    let shared = PrometheusChest::builder()
        .gauge("a-b")
        .gauge("a b")
        .build()
        .unwrap();
    write(
        &shared,
        &[record("a-b", 1, "GET", None), record("a b", 2, "GET", None)],
    )
    .unwrap();
    let metrics = scrape(&shared);
    assert_eq!(
        metrics.value("chest_a_b", &[("method", "GET"), ("route", "unmatched")]),
        Some(2.0)
    );
}

#[test]
fn variable_names_are_sanitised_with_the_prefix() {
    let chest = PrometheusChest::new();
    let names = [
        "latency (ms)",
        "db.queries",
        "Größe",
        "--x--",
        "%%",
        "prometheus_x",
    ];
    let records: Vec<Record> = names
        .iter()
        .map(|n| record(n, 1, "GET", Some("/")))
        .collect();
    write(&chest, &records).unwrap();
    let metrics = scrape(&chest);
    let mut families: Vec<&str> = metrics
        .0
        .iter()
        .map(|f| f.name.as_str())
        .filter(|n| !n.starts_with("chest_prometheus_"))
        .collect();
    families.sort_unstable();
    assert_eq!(
        families,
        [
            "chest_Gr_e",
            "chest_db_queries",
            "chest_latency_ms",
            "chest_x"
        ]
    );
    assert_eq!(skipped(&metrics, "invalid_name"), 2.0);
    assert_eq!(
        metrics.family("chest_latency_ms").unwrap().help,
        "Tracked variable latency (ms) (histogram), recorded by chest"
    );
    assert_eq!(
        chest.metric_name("db.queries").as_deref(),
        Some("chest_db_queries")
    );

    let custom = PrometheusChest::builder().prefix("shop_").build().unwrap();
    write(&custom, &[record("cart items", 1, "GET", None)]).unwrap();
    assert!(scrape(&custom).family("shop_cart_items").is_some());
    let bare = PrometheusChest::builder().prefix("").build().unwrap();
    write(&bare, &[record("7up", 1, "GET", None)]).unwrap();
    assert_eq!(skipped(&scrape(&bare), "invalid_name"), 1.0);
}

#[test]
fn histograms_gauges_and_counters_per_method_and_route() {
    let chest = PrometheusChest::builder()
        .constant_label("service", "shop")
        .histogram("latency", [1.0, 5.0, 10.0])
        .gauge("depth")
        .counter("bytes_total")
        .build()
        .unwrap();
    let records = [
        record("latency", 0.5, "GET", Some("/items/{id}")),
        record("latency", 3, "GET", Some("/items/{id}")),
        record("latency", 7.5, "GET", Some("/items/{id}")),
        record("latency", 50, "GET", Some("/items/{id}")),
        record("latency", 2, "POST", None),
        record("depth", 4, "GET", Some("/q")),
        record("depth", true, "GET", Some("/q")),
        record("bytes_total", 100, "GET", Some("/q")),
        record("bytes_total", 20.5, "GET", Some("/q")),
        record("bytes_total", false, "GET", Some("/q")),
        // Unconfigured: a histogram with the default buckets.
        record("other", 0.2, "GET", Some("/q")),
    ];
    write(&chest, &records).unwrap();
    let m = scrape(&chest);
    let items = [
        ("service", "shop"),
        ("method", "GET"),
        ("route", "/items/{id}"),
    ];
    assert_eq!(m.family("chest_latency").unwrap().kind, "histogram");
    assert_eq!(m.value("chest_latency_count", &items), Some(4.0));
    assert_eq!(m.value("chest_latency_sum", &items), Some(61.0));
    for (le, cumulative) in [("1", 1.0), ("5", 2.0), ("10", 3.0), ("+Inf", 4.0)] {
        let mut labels = items.to_vec();
        labels.push(("le", le));
        assert_eq!(
            m.value("chest_latency_bucket", &labels),
            Some(cumulative),
            "le={le}"
        );
    }
    let unmatched = [
        ("service", "shop"),
        ("method", "POST"),
        ("route", "unmatched"),
    ];
    assert_eq!(m.value("chest_latency_count", &unmatched), Some(1.0));
    let q = [("service", "shop"), ("method", "GET"), ("route", "/q")];
    assert_eq!(m.family("chest_depth").unwrap().kind, "gauge");
    assert_eq!(
        m.value("chest_depth", &q),
        Some(1.0),
        "the last value, true as 1"
    );
    assert_eq!(m.family("chest_bytes").unwrap().kind, "counter");
    assert_eq!(m.value("chest_bytes_total", &q), Some(120.5));
    assert_eq!(m.value("chest_other_count", &q), Some(1.0));
    let mut le = q.to_vec();
    le.push(("le", "0.25"));
    assert_eq!(
        m.value("chest_other_bucket", &le),
        Some(1.0),
        "default buckets"
    );
    // Every series carries the constant label, and no request id.
    for sample in m.0.iter().flat_map(|f| &f.samples) {
        assert_eq!(
            sample.labels.get("service").map(String::as_str),
            Some("shop")
        );
        assert!(!sample.labels.values().any(|v| v == "req-1"));
    }
}

#[test]
fn negative_counter_values_are_refused_and_the_others_observed() {
    let chest = PrometheusChest::builder()
        .counter("sold")
        .gauge("stock")
        .build()
        .unwrap();
    let error = write(
        &chest,
        &[
            record("sold", 2, "POST", Some("/buy")),
            record("sold", -3, "POST", Some("/buy")),
            record("stock", 9, "POST", Some("/buy")),
            record("sold", -1.5, "POST", Some("/buy")),
        ],
    )
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Permanent);
    assert_eq!(error.chest(), "prometheus");
    let text = error.to_string();
    assert!(text.contains("2 record(s) refused"), "{text}");
    assert!(
        text.contains("counter chest_sold (variable \"sold\") cannot decrease, value -3 refused"),
        "{text}"
    );
    let m = scrape(&chest);
    let labels = [("method", "POST"), ("route", "/buy")];
    assert_eq!(m.value("chest_sold_total", &labels), Some(2.0));
    assert_eq!(m.value("chest_stock", &labels), Some(9.0));
    assert_eq!(skipped(&m, "negative_counter"), 2.0);
}

/// Records sharing their strings, as the layers make them, take the per-thread series cache:
/// every observation still counts once, in its own chest and series; a negative counter value
/// and a text value met there are refused and skipped as without it.
#[test]
fn records_with_shared_strings_count_once_per_chest_and_series() {
    let build = || PrometheusChest::builder().counter("sold").build().unwrap();
    let (first, second) = (build(), build());
    let (name, latency): (Arc<str>, Arc<str>) = (Arc::from("sold"), Arc::from("latency_ms"));
    let (post, get): (Arc<str>, Arc<str>) = (Arc::from("POST"), Arc::from("GET"));
    let route: Arc<str> = Arc::from("/buy");
    let shared = |name: &Arc<str>, value: Value, method: &Arc<str>, route: Option<&Arc<str>>| {
        let mut record = Record::new("req-1", "x", value, "GET", None);
        record.name = Arc::clone(name);
        record.method = Arc::clone(method);
        record.route = route.cloned();
        record
    };
    for _ in 0..100 {
        write(
            &first,
            &[shared(&name, Value::from(2), &post, Some(&route))],
        )
        .unwrap();
        write(
            &second,
            &[shared(&name, Value::from(1), &post, Some(&route))],
        )
        .unwrap();
        write(
            &first,
            &[shared(&latency, Value::from(5.0), &get, Some(&route))],
        )
        .unwrap();
        write(&first, &[shared(&latency, Value::from(7.0), &get, None)]).unwrap();
    }
    let refused = write(
        &first,
        &[shared(&name, Value::from(-1), &post, Some(&route))],
    );
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::Permanent);
    write(
        &first,
        &[shared(&name, Value::from("text"), &post, Some(&route))],
    )
    .unwrap();

    let m = scrape(&first);
    let buy = |method| [("method", method), ("route", "/buy")];
    assert_eq!(m.value("chest_sold_total", &buy("POST")), Some(200.0));
    assert_eq!(m.value("chest_latency_ms_count", &buy("GET")), Some(100.0));
    assert_eq!(m.value("chest_latency_ms_sum", &buy("GET")), Some(500.0));
    let unmatched = [("method", "GET"), ("route", "unmatched")];
    assert_eq!(m.value("chest_latency_ms_sum", &unmatched), Some(700.0));
    assert_eq!(skipped(&m, "negative_counter"), 1.0);
    assert_eq!(skipped(&m, "text"), 1.0);
    assert_eq!(
        scrape(&second).value("chest_sold_total", &buy("POST")),
        Some(100.0)
    );
}

/// A tracing writer that keeps what is logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn text_json_nan_and_infinite_values_are_skipped_counted_and_logged_once() {
    let chest = PrometheusChest::new();
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        for request in 0..10 {
            write(
                &chest,
                &[
                    record("agent", "curl/8", "GET", Some("/")),
                    record(
                        "payload",
                        serde_json::json!({"a": request}),
                        "GET",
                        Some("/"),
                    ),
                    record("ratio", f64::NAN, "GET", Some("/")),
                    record("ratio", f64::INFINITY, "GET", Some("/")),
                    record("ratio", 0.5, "GET", Some("/")),
                ],
            )
            .unwrap();
        }
    });
    let m = scrape(&chest);
    for (reason, count) in [
        ("text", 10.0),
        ("json", 10.0),
        ("nan", 10.0),
        ("infinite", 10.0),
    ] {
        assert_eq!(skipped(&m, reason), count, "{reason}");
    }
    assert_eq!(
        m.value("chest_ratio_count", &[("method", "GET"), ("route", "/")]),
        Some(10.0)
    );
    assert!(
        m.family("chest_agent").is_none(),
        "a text-only variable has no samples"
    );
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    for (variable, reason) in [
        ("agent", "text"),
        ("payload", "json"),
        ("ratio", "nan"),
        ("ratio", "infinite"),
    ] {
        let lines = logs
            .lines()
            .filter(|l| {
                l.contains(&format!("variable=\"{variable}\""))
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .count();
        assert_eq!(
            lines, 1,
            "{variable}/{reason} logged {lines} times:\n{logs}"
        );
    }
}

#[test]
fn the_series_cap_sends_new_label_sets_to_the_overflow_series() {
    let chest = PrometheusChest::builder()
        .series_cap(3)
        .counter("hits")
        .build()
        .unwrap();
    for route in ["/a", "/b", "/c", "/d", "/e", "/a", "/d"] {
        write(&chest, &[record("hits", 1, "GET", Some(route))]).unwrap();
    }
    write(&chest, &[record("hits", 1, "DELETE", Some("/a"))]).unwrap();
    let m = scrape(&chest);
    let series = m.samples_with("chest_hits_total", &[]);
    let routes: Vec<(&str, &str, f64)> = series
        .iter()
        .map(|s| {
            (
                s.labels["method"].as_str(),
                s.labels["route"].as_str(),
                s.value,
            )
        })
        .collect();
    assert_eq!(
        routes,
        [
            ("GET", "/a", 2.0),
            ("GET", "/b", 1.0),
            ("GET", "/c", 1.0),
            ("__overflow__", "__overflow__", 4.0)
        ]
    );
    assert_eq!(
        m.value(
            "chest_prometheus_overflow_total",
            &[("metric", "chest_hits")]
        ),
        Some(4.0)
    );
    assert_eq!(
        m.value("chest_prometheus_series", &[("metric", "chest_hits")]),
        Some(3.0)
    );

    // The number of families is capped too.
    let few = PrometheusChest::builder().max_metrics(2).build().unwrap();
    let records: Vec<Record> = (0..5)
        .map(|i| record(&format!("v{i}"), 1, "GET", None))
        .collect();
    write(&few, &records).unwrap();
    let m = scrape(&few);
    assert_eq!(
        m.0.iter().filter(|f| f.name.starts_with("chest_v")).count(),
        2
    );
    assert_eq!(skipped(&m, "too_many_metrics"), 3.0);
}

async fn observed(vars: Vars, Query(query): Query<HashMap<String, String>>) -> &'static str {
    let value: f64 = query.get("v").and_then(|v| v.parse().ok()).unwrap_or(0.0);
    vars.set("latency_ms", value).unwrap();
    vars.set("items", 2).unwrap();
    "ok"
}

/// An app recording into `chest` on `/a` and `/b/{id}` (GET and POST), with `/metrics`.
fn app(chest: &PrometheusChest) -> Router {
    Router::new()
        .route("/a", get(observed).post(observed))
        .route("/b/{id}", get(observed).post(observed))
        .route_layer(ChestLayer::new(Recorder::new().chest(chest.clone())))
        .merge(chest.router())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_clients_lose_no_observation() {
    const CLIENTS: usize = 64;
    const REQUESTS: usize = 50;
    let chest = PrometheusChest::builder().counter("items").build().unwrap();
    let app = app(&chest);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let app = app.clone();
            tokio::spawn(async move {
                for i in 0..REQUESTS {
                    let (method, path) = match (client + i) % 4 {
                        0 => ("GET", format!("/a?v={i}")),
                        1 => ("POST", format!("/a?v={i}")),
                        2 => ("GET", format!("/b/{client}?v={i}")),
                        _ => ("POST", format!("/b/{i}?v={i}")),
                    };
                    let request = http::Request::builder()
                        .method(method)
                        .uri(path)
                        .body(Body::empty())
                        .unwrap();
                    let response = app.clone().oneshot(request).await.unwrap();
                    assert_eq!(response.status(), 200);
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let m = scrape(&chest);
    let count: f64 = m
        .samples_with("chest_latency_ms_count", &[])
        .iter()
        .map(|s| s.value)
        .sum();
    let sum: f64 = m
        .samples_with("chest_latency_ms_sum", &[])
        .iter()
        .map(|s| s.value)
        .sum();
    let items: f64 = m
        .samples_with("chest_items_total", &[])
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(count, (CLIENTS * REQUESTS) as f64);
    assert_eq!(sum, (CLIENTS * (0..REQUESTS).sum::<usize>()) as f64);
    assert_eq!(items, (2 * CLIENTS * REQUESTS) as f64);
    assert_eq!(
        m.samples_with("chest_latency_ms_count", &[]).len(),
        4,
        "2 methods × 2 routes"
    );
    assert_eq!(
        m.value(
            "chest_latency_ms_count",
            &[("method", "POST"), ("route", "/b/{id}")]
        ),
        Some((CLIENTS * REQUESTS / 4) as f64)
    );
}

#[test]
fn the_exposition_round_trips_names_labels_and_values() {
    let tricky = "a \"quoted\" \\ value\nwith a newline";
    let chest = PrometheusChest::builder()
        .constant_label("note", tricky)
        .histogram("t", [0.1, 1.0])
        .gauge("g")
        .counter("c")
        .build()
        .unwrap();
    let route = "/files/{*path}\"x\"";
    write(
        &chest,
        &[
            record("t", 0.05, "GET", Some(route)),
            record("t", 0.5, "GET", Some(route)),
            record("g", -2.25, "PATCH", Some(route)),
            record("c", 1e-3, "GET", None),
            record("c", 12345678, "GET", None),
        ],
    )
    .unwrap();
    let om_text = chest.encode(Format::OpenMetrics);
    assert!(om_text.ends_with("# EOF\n"));
    assert!(
        om_text.contains(r#"note="a \"quoted\" \\ value\nwith a newline""#),
        "{om_text}"
    );
    let m = scrape(&chest);
    let labels = |method: &'static str, route: &'static str| {
        vec![("note", tricky), ("method", method), ("route", route)]
    };
    assert_eq!(m.value("chest_t_sum", &labels("GET", route)), Some(0.55));
    assert_eq!(m.value("chest_t_count", &labels("GET", route)), Some(2.0));
    let mut first = labels("GET", route);
    first.push(("le", "0.1"));
    assert_eq!(m.value("chest_t_bucket", &first), Some(1.0));
    assert_eq!(m.value("chest_g", &labels("PATCH", route)), Some(-2.25));
    assert_eq!(
        m.value("chest_c_total", &labels("GET", "unmatched")),
        Some(12345678.001)
    );
    let kinds: BTreeMap<&str, &str> =
        m.0.iter()
            .map(|f| (f.name.as_str(), f.kind.as_str()))
            .collect();
    assert_eq!(kinds["chest_t"], "histogram");
    assert_eq!(kinds["chest_g"], "gauge");
    assert_eq!(kinds["chest_c"], "counter");
    assert_eq!(kinds["chest_prometheus_skipped"], "counter");
    assert_eq!(kinds["chest_prometheus_series"], "gauge");
}

#[test]
fn register_into_adds_the_metrics_to_a_users_registry() {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::registry::Registry;

    let chest = PrometheusChest::builder().gauge("depth").build().unwrap();
    write(&chest, &[record("depth", 3, "GET", Some("/q"))]).unwrap();
    let mut registry = Registry::with_prefix("app");
    let own: Counter = Counter::default();
    own.inc();
    registry.register("own", "The user's own counter", own);
    chest.register_into(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let m = exposition::parse(&text, true).unwrap();
    assert_eq!(m.value("app_own_total", &[]), Some(1.0));
    assert_eq!(
        m.value("app_chest_depth", &[("method", "GET"), ("route", "/q")]),
        Some(3.0)
    );
}

#[tokio::test]
async fn the_standalone_listener_negotiates_the_format() {
    let chest = PrometheusChest::builder().counter("n").build().unwrap();
    write(&chest, &[record("n", 5, "GET", Some("/x"))]).unwrap();
    let server = chest.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = format!("http://{}/metrics", server.local_addr());
    let client = common::http_client();

    let om = client
        .get(&url)
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(om.status(), 200);
    assert_eq!(
        om.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let body = om.text().await.unwrap();
    let m = exposition::parse(&body, true).unwrap();
    assert_eq!(
        m.value("chest_n_total", &[("method", "GET"), ("route", "/x")]),
        Some(5.0)
    );

    let plain = client.get(&url).send().await.unwrap();
    assert_eq!(
        plain.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = plain.text().await.unwrap();
    assert!(!body.contains("# EOF"));
    exposition::parse(&body, false).unwrap();

    server.shutdown().await.unwrap();
    assert!(
        client.get(&url).send().await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn pushgateway_secrets_stay_hidden_and_failures_are_retried_and_counted() {
    let chest = PrometheusChest::new();
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let builder = chest
        .pushgateway(format!("http://{closed}"), "job")
        .basic_auth("pusher", "hunter2")
        .retries(2)
        .timeout(Duration::from_secs(5));
    assert!(!format!("{builder:?}").contains("hunter2"), "{builder:?}");
    let pushgateway = builder.build().unwrap();
    assert!(
        !format!("{pushgateway:?}").contains("hunter2"),
        "{pushgateway:?}"
    );
    let error = pushgateway.push().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Retryable);
    let text = format!("{error} {error:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("pushgateway"), "{text}");
    let m = scrape(&chest);
    assert_eq!(
        m.value("chest_prometheus_push_failures_total", &[]),
        Some(3.0),
        "1 attempt + 2 retries"
    );
    assert_eq!(m.value("chest_prometheus_pushes_total", &[]), Some(0.0));

    let in_url = chest
        .pushgateway("http://pusher:hunter2@127.0.0.1:9/", "job")
        .build()
        .unwrap_err();
    let text = in_url.to_string();
    assert!(text.contains("basic_auth"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let not_url = chest
        .pushgateway("pusher:hunter2@nowhere", "job")
        .build()
        .unwrap_err();
    assert!(!not_url.to_string().contains("hunter2"), "{not_url}");
    assert!(chest.pushgateway("http://127.0.0.1:9", "").build().is_err());
    assert!(chest
        .pushgateway("http://127.0.0.1:9", "j")
        .grouping_label("job", "x")
        .build()
        .is_err());
    assert!(chest
        .pushgateway("http://127.0.0.1:9", "j")
        .grouping_label("a-b", "x")
        .build()
        .is_err());
}

/// Prometheus' `histogram_quantile` of classic buckets (`bounds` end with +Inf, `cumulative`
/// counts), as Prometheus computes it.
fn bucket_quantile(q: f64, bounds: &[f64], cumulative: &[u64]) -> f64 {
    let total = *cumulative.last().unwrap() as f64;
    let rank = q * total;
    let b = cumulative[..cumulative.len() - 1]
        .iter()
        .position(|&c| c as f64 >= rank)
        .unwrap_or(cumulative.len() - 1);
    if b == bounds.len() - 1 {
        return bounds[bounds.len() - 2];
    }
    let (start, below) = if b == 0 {
        (0.0, 0.0)
    } else {
        (bounds[b - 1], cumulative[b - 1] as f64)
    };
    start + (bounds[b] - start) * ((rank - below) / (cumulative[b] as f64 - below))
}

/// One instant-vector PromQL query: each result's labels and value.
async fn promql(
    client: &reqwest::Client,
    prometheus: &str,
    query: &str,
) -> Vec<(BTreeMap<String, String>, f64)> {
    let url =
        reqwest::Url::parse_with_params(&format!("{prometheus}/api/v1/query"), [("query", query)])
            .unwrap();
    let response: serde_json::Value = client.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(response["status"], "success", "{query}: {response}");
    response["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let labels = serde_json::from_value(r["metric"].clone()).unwrap();
            let value = r["value"][1].as_str().unwrap().parse().unwrap();
            (labels, value)
        })
        .collect()
}

/// Per (method, route): what PromQL should return.
#[derive(Debug, Default, Clone, PartialEq)]
struct Expected {
    count: f64,
    sum: f64,
    items: f64,
    p50: f64,
    p90: f64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_counts_sums_and_quantiles_per_route_and_method() {
    let (Some(prometheus), Some(scrape_addr)) = (
        common::service_url("CHEST_TEST_PROMETHEUS_URL"),
        common::service_url("CHEST_TEST_SCRAPE_ADDR"),
    ) else {
        return;
    };
    const BOUNDS: [f64; 4] = [10.0, 25.0, 50.0, 100.0];
    const PER_SERIES: usize = 40;
    let run = uuid::Uuid::new_v4().to_string();
    let chest = PrometheusChest::builder()
        .constant_label("run", &run)
        .histogram("latency_ms", BOUNDS)
        .counter("items")
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind(&scrape_addr)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on {scrape_addr} (CHEST_TEST_SCRAPE_ADDR): {e}"));
    let server = tokio::spawn(axum::serve(listener, app(&chest)).into_future());

    let client = common::http_client();
    let combos = [
        ("GET", "/a", "/a"),
        ("POST", "/a", "/a"),
        ("GET", "/b/7", "/b/{id}"),
        ("POST", "/b/8", "/b/{id}"),
    ];
    let mut expected: BTreeMap<(String, String), Expected> = BTreeMap::new();
    for (k, (method, path, route)) in combos.iter().enumerate() {
        let mut values = Vec::new();
        for i in 0..PER_SERIES {
            let value = ((i * 37 + k * 11) % 97) as f64 + 0.5;
            values.push(value);
            let url = format!("http://{scrape_addr}{path}?v={value}");
            let request = client.request(method.parse().unwrap(), url);
            assert_eq!(request.send().await.unwrap().status(), 200);
        }
        let mut cumulative: Vec<u64> = BOUNDS
            .iter()
            .map(|b| values.iter().filter(|v| *v <= b).count() as u64)
            .collect();
        cumulative.push(values.len() as u64);
        let bounds: Vec<f64> = BOUNDS.iter().copied().chain([f64::INFINITY]).collect();
        expected.insert(
            (method.to_string(), route.to_string()),
            Expected {
                count: PER_SERIES as f64,
                sum: values.iter().sum(),
                items: 2.0 * PER_SERIES as f64,
                p50: bucket_quantile(0.5, &bounds, &cumulative),
                p90: bucket_quantile(0.9, &bounds, &cumulative),
            },
        );
    }

    let selector = format!("{{run=\"{run}\"}}");
    let by_series =
        |rows: Vec<(BTreeMap<String, String>, f64)>| -> BTreeMap<(String, String), f64> {
            rows.into_iter()
                .map(|(l, v)| ((l["method"].clone(), l["route"].clone()), v))
                .collect()
        };
    let mut seen = BTreeMap::new();
    for _ in 0..120 {
        let count = by_series(
            promql(
                &client,
                &prometheus,
                &format!("chest_latency_ms_count{selector}"),
            )
            .await,
        );
        let sum = by_series(
            promql(
                &client,
                &prometheus,
                &format!("chest_latency_ms_sum{selector}"),
            )
            .await,
        );
        let items = by_series(
            promql(
                &client,
                &prometheus,
                &format!("chest_items_total{selector}"),
            )
            .await,
        );
        let quantile = |q: f64| {
            format!("histogram_quantile({q}, sum by (method, route, le) (chest_latency_ms_bucket{selector}))")
        };
        let p50 = by_series(promql(&client, &prometheus, &quantile(0.5)).await);
        let p90 = by_series(promql(&client, &prometheus, &quantile(0.9)).await);
        seen = count
            .keys()
            .map(|key| {
                let get =
                    |m: &BTreeMap<(String, String), f64>| m.get(key).copied().unwrap_or(f64::NAN);
                let e = Expected {
                    count: get(&count),
                    sum: get(&sum),
                    items: get(&items),
                    p50: get(&p50),
                    p90: get(&p90),
                };
                (key.clone(), e)
            })
            .collect::<BTreeMap<_, _>>();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        let all_there = seen.len() == expected.len()
            && expected.iter().all(|(key, e)| {
                seen.get(key).is_some_and(|s| {
                    s.count == e.count
                        && close(s.sum, e.sum)
                        && s.items == e.items
                        && close(s.p50, e.p50)
                        && close(s.p90, e.p90)
                })
            });
        if all_there {
            server.abort();
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    server.abort();
    panic!("Prometheus did not return the expected values within 60 s.\nexpected: {expected:#?}\nlast seen: {seen:#?}");
}

#[tokio::test]
async fn pushgateway_stores_what_is_pushed_at_intervals_and_at_shutdown() {
    let Some(url) = common::service_url("CHEST_TEST_PUSHGATEWAY_URL") else {
        return;
    };
    let run = uuid::Uuid::new_v4().to_string();
    let chest = PrometheusChest::builder()
        .prefix("chest_push_")
        .histogram("latency", [1.0, 10.0])
        .gauge("depth")
        .counter("done")
        .build()
        .unwrap();
    let path = "/nightly import/étape 2";
    let pushgateway = chest
        .pushgateway(&url, "chest_test")
        .grouping_label("instance", &run)
        .grouping_label("path", path)
        .interval(Duration::from_millis(300))
        .build()
        .unwrap();
    let client = common::http_client();
    let group = [
        ("job", "chest_test"),
        ("instance", run.as_str()),
        ("path", path),
    ];
    let read_back = || async {
        let text = client
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        exposition::parse(&text, false)
            .unwrap_or_else(|e| panic!("the Pushgateway's /metrics does not parse: {e}"))
    };
    let series = |extra: &[(&'static str, &'static str)]| {
        let mut labels = group.to_vec();
        labels.extend_from_slice(&[("method", "GET"), ("route", "/import")]);
        labels.extend_from_slice(extra);
        labels
    };

    write(
        &chest,
        &[
            record("latency", 0.5, "GET", Some("/import")),
            record("latency", 4, "GET", Some("/import")),
            record("depth", 3, "GET", Some("/import")),
            record("done", 2, "GET", Some("/import")),
        ],
    )
    .unwrap();
    pushgateway.push().await.unwrap();
    let m = read_back().await;
    assert_eq!(m.value("chest_push_latency_count", &series(&[])), Some(2.0));
    assert_eq!(m.value("chest_push_latency_sum", &series(&[])), Some(4.5));
    assert_eq!(
        m.value("chest_push_latency_bucket", &series(&[("le", "1")])),
        Some(1.0)
    );
    assert_eq!(m.value("chest_push_depth", &series(&[])), Some(3.0));
    assert_eq!(m.value("chest_push_done_total", &series(&[])), Some(2.0));
    let pushed_at = m
        .value("push_time_seconds", &group)
        .expect("push_time_seconds of the group");
    assert!(pushed_at > 0.0);

    // Interval pushes pick up new observations.
    let pushing = pushgateway.start();
    write(&chest, &[record("done", 5, "GET", Some("/import"))]).unwrap();
    let mut updated = None;
    for _ in 0..100 {
        updated = read_back()
            .await
            .value("chest_push_done_total", &series(&[]));
        if updated == Some(7.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(updated, Some(7.0), "no interval push within 10 s");

    // Shutdown pushes once more: nothing to wait for afterwards.
    write(
        &chest,
        &[
            record("depth", 11, "GET", Some("/import")),
            record("latency", 20, "GET", Some("/import")),
        ],
    )
    .unwrap();
    pushing.shutdown().await.unwrap();
    let m = read_back().await;
    assert_eq!(m.value("chest_push_depth", &series(&[])), Some(11.0));
    assert_eq!(m.value("chest_push_latency_count", &series(&[])), Some(3.0));
    assert_eq!(
        m.value("chest_push_latency_bucket", &series(&[("le", "+Inf")])),
        Some(3.0)
    );
    assert_eq!(
        m.value("chest_push_latency_bucket", &series(&[("le", "10")])),
        Some(2.0)
    );
    assert!(m.value("chest_prometheus_pushes_total", &group).unwrap() >= 2.0);
    assert_eq!(m.value("push_failure_time_seconds", &group), Some(0.0));

    // Leave the Pushgateway as it was.
    let delete = client
        .delete(format!(
            "{url}/metrics/job/chest_test/instance/{run}/path@base64/{}",
            base64url(path)
        ))
        .send()
        .await
        .unwrap();
    assert!(delete.status().is_success());
    assert!(
        read_back()
            .await
            .value("push_time_seconds", &group)
            .is_none(),
        "the group is deleted"
    );
}

/// base64url, for the test's own DELETE (independent of the chest's encoder).
fn base64url(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits: String = text.bytes().map(|b| format!("{b:08b}")).collect();
    let mut out: String = bits
        .as_bytes()
        .chunks(6)
        .map(|c| {
            let chunk = format!("{:0<6}", std::str::from_utf8(c).unwrap());
            ALPHABET[usize::from_str_radix(&chunk, 2).unwrap()] as char
        })
        .collect();
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

#[cfg(feature = "batch")]
#[tokio::test]
async fn batched_pipeline_stats_are_metrics_read_at_each_scrape() {
    use chest::batch::Batched;
    use chest::MemoryChest;

    let chest = PrometheusChest::builder()
        .constant_label("service", "shop")
        .build()
        .unwrap();
    let memory = MemoryChest::named("archive");
    let batched = Batched::builder(memory.clone())
        .linger(Duration::from_millis(10))
        .build()
        .unwrap();
    chest.register_batched(&batched).unwrap();
    let again = chest.register_batched(&batched).unwrap_err().to_string();
    assert!(again.contains("`archive` is registered already"), "{again}");

    let labels = [("service", "shop"), ("chest", "archive")];
    assert_eq!(
        scrape(&chest).value("chest_pipeline_enqueued_total", &labels),
        Some(0.0)
    );
    let records: Vec<Record> = (0..5).map(|i| record("n", i, "GET", None)).collect();
    batched.write(&records).await.unwrap();
    batched.shutdown(Duration::from_secs(10)).await;
    // Written after shutdown: dropped, and counted as such.
    batched.write(&records[..2]).await.ok();
    assert_eq!(memory.len(), 5);

    let m = scrape(&chest);
    assert_eq!(m.value("chest_pipeline_enqueued_total", &labels), Some(7.0));
    assert_eq!(m.value("chest_pipeline_written_total", &labels), Some(5.0));
    assert_eq!(m.value("chest_pipeline_spooled_total", &labels), Some(0.0));
    assert_eq!(m.value("chest_pipeline_queue_depth", &labels), Some(0.0));
    assert_eq!(m.value("chest_pipeline_in_flight", &labels), Some(0.0));
    let mut shutdown = labels.to_vec();
    shutdown.push(("reason", "shutdown"));
    assert_eq!(
        m.value("chest_pipeline_dropped_total", &shutdown),
        Some(2.0)
    );
    assert_eq!(
        m.family("chest_pipeline_queue_depth").unwrap().kind,
        "gauge"
    );
    assert_eq!(m.family("chest_pipeline_dropped").unwrap().kind, "counter");
}
