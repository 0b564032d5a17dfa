//! The cases, each generic over the framework, with the handler bodies they mount.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use chest::{ErrorKind, MemoryChest, Record, Recorder, Tracked, Value, VarError, Vars};
use http::HeaderName;

use crate::harness::{
    client, Framework, Handler, Placement, Reply, Req, TempDb, TestServer, INNER_ERROR_BODY,
    INNER_ERROR_STATUS,
};

const ITEMS_ROUTE: &str = "/items/{id}";

/// Serves `handler` on the routed paths, with the middleware around each route.
fn serve<F: Framework>(recorder: Recorder, handler: Handler) -> TestServer {
    F::serve(recorder, handler, Placement::Route)
}

/// A recorder writing to a fresh memory chest, and that chest.
fn memory_recorder() -> (MemoryChest, Recorder) {
    let memory = MemoryChest::new();
    let recorder = Recorder::new().chest(memory.clone());
    (memory, recorder)
}

/// The records `memory` holds for one request.
fn records_of(memory: &MemoryChest, request_id: &str) -> Vec<Record> {
    memory
        .records()
        .into_iter()
        .filter(|r| &*r.request_id == request_id)
        .collect()
}

/// Names and values, in the order written.
fn named_values(records: &[Record]) -> Vec<(String, Value)> {
    records
        .iter()
        .map(|r| (r.name.to_string(), r.value.clone()))
        .collect()
}

fn named(pairs: &[(&str, Value)]) -> Vec<(String, Value)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.clone()))
        .collect()
}

/// Sets `a`, `b` and `c`, unless the path ends in `none`; answers with the request id it sees.
fn sets_abc(vars: &Vars, req: &Req) -> Reply {
    if req.last_segment() != "none" {
        vars.set("a", 1).unwrap();
        vars.set("b", "two").unwrap();
        vars.set("c", 3.5).unwrap();
    }
    Reply::ok(vars.request_id())
}

fn abc() -> Vec<(String, Value)> {
    named(&[
        ("a", Value::Int(1)),
        ("b", Value::Text("two".into())),
        ("c", Value::Float(3.5)),
    ])
}

/// Every value type, plus what the handler saw of the request.
fn typed_values(vars: &Vars, req: &Req) -> Reply {
    let item: i64 = req.last_segment().parse().unwrap();
    vars.set("item", item).unwrap();
    vars.set("ratio", 0.25).unwrap();
    vars.set("ok", true).unwrap();
    vars.set("label", "crème brûlée 🦀").unwrap();
    vars.set("doc", serde_json::json!({"tags": ["a", "b"]}))
        .unwrap();
    vars.set("method_seen", req.method.as_str()).unwrap();
    Reply::ok(vars.request_id())
}

pub async fn get_and_post_write_typed_rows_to_sqlite<F: Framework>() {
    let db = TempDb::new();
    let server = serve::<F>(Recorder::new().chest(db.chest()), typed_values);
    let get = server.get("/items/7").await;
    let post = server.send("POST", "/items/8", &[]).await;

    let rows = db.rows();
    assert_eq!(rows.len(), 12, "{rows:#?}");
    let ids: HashSet<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids.len(), 2, "one request id per request: {ids:?}");
    for (answer, method, item) in [(get, "GET", 7.0), (post, "POST", 8.0)] {
        assert_eq!(answer.status, 200);
        let request_id = answer.request_id();
        assert_eq!(answer.body, request_id, "the handler sees the header's id");
        let mine: Vec<_> = rows.iter().filter(|r| r.request_id == request_id).collect();
        let got: Vec<_> = mine
            .iter()
            .map(|r| {
                (
                    r.name.as_str(),
                    r.value.as_str(),
                    r.value_num,
                    r.value_type.as_str(),
                )
            })
            .collect();
        let item_text = item.to_string();
        assert_eq!(
            got,
            [
                ("item", item_text.as_str(), Some(item), "int"),
                ("ratio", "0.25", Some(0.25), "float"),
                ("ok", "true", Some(1.0), "bool"),
                ("label", "crème brûlée 🦀", None, "text"),
                ("doc", r#"{"tags":["a","b"]}"#, None, "json"),
                ("method_seen", method, None, "text"),
            ]
        );
        for row in mine {
            assert_eq!(row.method, method);
            assert_eq!(row.route.as_deref(), Some(ITEMS_ROUTE));
        }
    }
}

/// Records the request's number and its square.
fn numbered(vars: &Vars, req: &Req) -> Reply {
    let n: i64 = req.last_segment().parse().unwrap();
    vars.set("n", n).unwrap();
    vars.set("square", n * n).unwrap();
    Reply::ok("counted")
}

pub async fn concurrent_clients_lose_and_duplicate_nothing<F: Framework>() {
    let db = TempDb::new();
    let answers = concurrent_clients::<F>(Recorder::new().chest(db.chest())).await;
    check_concurrent_rows(&db, &answers);
}

/// The same through a `Batched` SQLite chest, the recorder's only chest (the records are handed
/// over to its queue, not copied): after shutdown, exactly the same rows.
pub async fn concurrent_clients_through_batched_lose_and_duplicate_nothing<F: Framework>() {
    let db = TempDb::new();
    let batched = chest::Batched::builder(db.chest())
        .build()
        .expect("batched");
    let recorder = Recorder::new().chest(batched.clone());
    let answers = concurrent_clients::<F>(recorder).await;
    let stats = batched.shutdown(std::time::Duration::from_secs(30)).await;
    assert_eq!(stats.written, (REQUESTS * VARS) as u64, "{stats:?}");
    check_concurrent_rows(&db, &answers);
}

const CLIENTS: usize = 64;
const REQUESTS: usize = 2_000;
const VARS: usize = 2;

/// 64 clients send 2,000 numbered requests (GET and POST), all answered 200: the (number,
/// status, request id) of each.
async fn concurrent_clients<F: Framework>(recorder: Recorder) -> Vec<(usize, u16, String)> {
    concurrent_clients_of::<F>(recorder, numbered, REQUESTS).await
}

/// 64 clients send `requests` requests to `/items/{n}` (GET and POST by turns) served by
/// `handler`, all answered 200: the (n, status, request id) of each.
pub async fn concurrent_clients_of<F: Framework>(
    recorder: Recorder,
    handler: Handler,
    requests: usize,
) -> Vec<(usize, u16, String)> {
    let server = Arc::new(serve::<F>(recorder, handler));
    let next = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (server, next) = (server.clone(), next.clone());
            tokio::spawn(async move {
                let client = client();
                let mut answers = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= requests {
                        return answers;
                    }
                    let method = if n % 2 == 0 { "GET" } else { "POST" };
                    let path = format!("/items/{n}");
                    let answer = server.send_with(&client, method, &path, &[]).await;
                    answers.push((n, answer.status, answer.request_id()));
                }
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(REQUESTS);
    for client in clients {
        answers.extend(client.await.expect("client task"));
    }
    assert_eq!(answers.len(), requests);
    let failed: Vec<_> = answers.iter().filter(|(_, s, _)| *s != 200).collect();
    assert!(failed.is_empty(), "non-200 answers: {failed:?}");
    answers
}

/// Exactly one row per variable of each answered request, with its values.
fn check_concurrent_rows(db: &TempDb, answers: &[(usize, u16, String)]) {
    let rows = db.rows();
    assert_eq!(rows.len(), REQUESTS * VARS, "exactly one row per variable");
    let by_key: HashMap<(&str, &str), &str> = rows
        .iter()
        .map(|r| ((r.request_id.as_str(), r.name.as_str()), r.value.as_str()))
        .collect();
    assert_eq!(
        by_key.len(),
        rows.len(),
        "duplicate (request id, name) rows"
    );
    let ids: HashSet<&str> = answers.iter().map(|(_, _, id)| id.as_str()).collect();
    assert_eq!(ids.len(), REQUESTS, "request ids are unique");
    for (n, _, id) in answers {
        let n = *n as i64;
        assert_eq!(by_key.get(&(id.as_str(), "n")), Some(&&*n.to_string()));
        assert_eq!(
            by_key.get(&(id.as_str(), "square")),
            Some(&&*(n * n).to_string())
        );
    }
}

pub async fn no_tracked_vars_writes_every_variable<F: Framework>() {
    let (memory, recorder) = memory_recorder();
    let server = serve::<F>(recorder, sets_abc);
    for method in ["GET", "POST", "DELETE"] {
        let answer = server.send(method, "/items/1", &[]).await;
        let records = records_of(&memory, &answer.request_id());
        assert_eq!(named_values(&records), abc(), "{method}");
        assert!(records.iter().all(|r| &*r.method == method));
    }
}

pub async fn tracked_vars_select_per_method<F: Framework>() {
    let (memory, recorder) = memory_recorder();
    let tracked = Tracked::methods()
        .method("GET", ["a"])
        .method("POST", ["c", "a"]);
    let server = serve::<F>(recorder.tracked_vars(tracked), sets_abc);

    let get = server.get("/items/1").await;
    let written = named_values(&records_of(&memory, &get.request_id()));
    assert_eq!(written, named(&[("a", Value::Int(1))]));

    let post = server.send("POST", "/items/1", &[]).await;
    let written = named_values(&records_of(&memory, &post.request_id()));
    assert_eq!(
        written,
        named(&[("c", Value::Float(3.5)), ("a", Value::Int(1))]),
        "the configured order"
    );

    // HEAD is not GET, and an unlisted method writes nothing.
    for method in ["HEAD", "PUT"] {
        let answer = server.send(method, "/items/1", &[]).await;
        assert_eq!(answer.status, 200, "{method}");
        assert!(
            records_of(&memory, &answer.request_id()).is_empty(),
            "{method}"
        );
    }
    assert_eq!(memory.writes(), 2, "no chest call for HEAD and PUT");
}

pub async fn unset_names_are_skipped<F: Framework>() {
    let (memory, recorder) = memory_recorder();
    let tracked = Tracked::methods().method("GET", ["a", "never_set", "c"]);
    let server = serve::<F>(recorder.tracked_vars(tracked), sets_abc);
    let answer = server.get("/items/1").await;
    let written = named_values(&records_of(&memory, &answer.request_id()));
    assert_eq!(
        written,
        named(&[("a", Value::Int(1)), ("c", Value::Float(3.5))])
    );
}

pub async fn nothing_selected_calls_no_chest<F: Framework>() {
    // Every variable tracked, but the handler set none.
    let (memory, recorder) = memory_recorder();
    let server = serve::<F>(recorder, sets_abc);
    assert_eq!(server.get("/items/none").await.status, 200);
    assert_eq!(memory.writes(), 0);
    server.get("/items/1").await;
    assert_eq!(memory.writes(), 1, "the same server does write what is set");

    // Only names the handler did not set are tracked for the method.
    let (memory, recorder) = memory_recorder();
    let tracked = Tracked::methods()
        .method("GET", ["x"])
        .method("POST", ["a"]);
    let server = serve::<F>(recorder.tracked_vars(tracked), sets_abc);
    assert_eq!(server.get("/items/1").await.status, 200);
    assert_eq!(memory.writes(), 0);
    server.send("POST", "/items/1", &[]).await;
    assert_eq!(memory.writes(), 1);
}

pub async fn custom_request_id_generator<F: Framework>() {
    let (memory, recorder) = memory_recorder();
    let counter = AtomicU64::new(0);
    let recorder = recorder
        .request_id_generator(move || format!("order-{}", counter.fetch_add(1, Ordering::SeqCst)));
    let server = serve::<F>(recorder, sets_abc);
    for expected in ["order-0", "order-1"] {
        let answer = server.get("/items/1").await;
        assert_eq!(answer.request_id(), expected);
        assert_eq!(answer.body, expected, "the handler's id");
        assert_eq!(records_of(&memory, expected).len(), 3);
    }
    assert_eq!(memory.len(), 6);
}

pub async fn long_request_id_is_cut_on_a_char_boundary<F: Framework>() {
    let (memory, recorder) = memory_recorder();
    // 400 bytes of 2-byte characters: byte 255 falls inside one, so 254 bytes remain.
    let server = serve::<F>(recorder.request_id_generator(|| "é".repeat(200)), sets_abc);
    let answer = server.get("/items/1").await;
    let expected = "é".repeat(127);
    assert_eq!(answer.request_id(), expected);
    assert_eq!(answer.body, expected);
    let records = memory.records();
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| *r.request_id == *expected));
}

pub async fn response_header_custom_name_and_off<F: Framework>() {
    let (memory, recorder) = memory_recorder();
    let recorder = recorder.request_id_header(Some(HeaderName::from_static("x-trace-id")));
    let server = serve::<F>(recorder, sets_abc);
    let answer = server.get("/items/1").await;
    assert_eq!(answer.header("x-request-id"), None);
    let id = answer.header("x-trace-id").expect("x-trace-id header");
    assert_eq!(records_of(&memory, &id).len(), 3);

    let (memory, recorder) = memory_recorder();
    let server = serve::<F>(recorder.request_id_header(None), sets_abc);
    let answer = server.get("/items/1").await;
    assert_eq!(answer.header("x-request-id"), None);
    assert_eq!(answer.header("x-trace-id"), None);
    let id = &memory.records()[0].request_id;
    assert_eq!(**id, answer.body, "the id is still made and recorded");
    assert_eq!(
        uuid::Uuid::parse_str(id).unwrap().get_version_num(),
        7,
        "the default: time-ordered UUIDs"
    );
}

pub async fn incoming_request_id_only_when_opted_in<F: Framework>() {
    let chosen = [("x-request-id", "client-chosen")];

    let (memory, recorder) = memory_recorder();
    let server = serve::<F>(recorder, sets_abc);
    let answer = server.send("GET", "/items/1", &chosen).await;
    assert_ne!(answer.request_id(), "client-chosen", "ignored by default");
    assert!(records_of(&memory, "client-chosen").is_empty());
    assert_eq!(records_of(&memory, &answer.request_id()).len(), 3);

    let (memory, recorder) = memory_recorder();
    let server = serve::<F>(recorder.trust_incoming_request_id(true), sets_abc);
    let answer = server.send("GET", "/items/1", &chosen).await;
    assert_eq!(answer.request_id(), "client-chosen");
    assert_eq!(answer.body, "client-chosen");
    assert_eq!(records_of(&memory, "client-chosen").len(), 3);
    let long = "x".repeat(300);
    let answer = server
        .send("GET", "/items/1", &[("x-request-id", &long)])
        .await;
    assert_eq!(
        answer.request_id(),
        "x".repeat(255),
        "cut like generated ids"
    );
    let answer = server.get("/items/1").await;
    assert!(
        uuid::Uuid::parse_str(&answer.request_id()).is_ok(),
        "none sent: one is made"
    );

    // The configured header is the one read.
    let (memory, recorder) = memory_recorder();
    let recorder = recorder
        .trust_incoming_request_id(true)
        .request_id_header(Some(HeaderName::from_static("x-trace-id")));
    let server = serve::<F>(recorder, sets_abc);
    let answer = server
        .send(
            "GET",
            "/items/1",
            &[("x-request-id", "wrong-header"), ("x-trace-id", "trace-7")],
        )
        .await;
    assert_eq!(answer.header("x-trace-id").as_deref(), Some("trace-7"));
    assert_eq!(records_of(&memory, "trace-7").len(), 3);
}

const HANDLER_BODY: &str = "the handler's own body";

fn sets_abc_with_own_body(vars: &Vars, req: &Req) -> Reply {
    sets_abc(vars, req);
    Reply::ok(HANDLER_BODY)
}

/// A failing chest (first) and a working one, behind `raise_exceptions(raise)`.
fn failing_and_working<F: Framework>(raise: bool) -> (MemoryChest, TestServer) {
    let broken = MemoryChest::named("broken-chest");
    broken.fail_with(Some(ErrorKind::Permanent));
    let working = MemoryChest::new();
    let recorder = Recorder::new()
        .chest(broken)
        .chest(working.clone())
        .raise_exceptions(raise);
    (working, serve::<F>(recorder, sets_abc_with_own_body))
}

/// The failure is logged with its request id, chest and cause.
fn assert_failure_logged(request_id: &str) {
    let lines = crate::harness::log_lines_with(request_id);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("broken-chest") && l.contains("failure injected by fail_with")),
        "no log line with the cause for {request_id}: {lines:?}"
    );
}

pub async fn raise_exceptions_turns_a_failed_write_into_a_bare_500<F: Framework>() {
    let (working, server) = failing_and_working::<F>(true);
    let answer = server.get("/items/1").await;
    assert_eq!(answer.status, 500);
    assert_eq!(answer.body, "Internal Server Error");
    for leak in ["broken", "injected", "chest", HANDLER_BODY] {
        assert!(!answer.body.contains(leak), "the body leaks {leak:?}");
    }
    assert_eq!(
        answer.header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    let request_id = answer.request_id();
    let records = records_of(&working, &request_id);
    assert_eq!(
        named_values(&records),
        abc(),
        "the other chest got its records"
    );
    assert_failure_logged(&request_id);
}

pub async fn raise_exceptions_off_keeps_the_handler_response<F: Framework>() {
    let (working, server) = failing_and_working::<F>(false);
    let answer = server.get("/items/1").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, HANDLER_BODY);
    let request_id = answer.request_id();
    assert_eq!(named_values(&records_of(&working, &request_id)), abc());
    assert_failure_logged(&request_id);
}

/// Tries bad names through the handle and the free function, then sets a good one.
fn bad_names(vars: &Vars, _: &Req) -> Reply {
    let too_long = "x".repeat(256);
    let refused = ["", "line\nbreak", "tab\there", &too_long]
        .into_iter()
        .filter(|name| matches!(vars.set(name, 1), Err(VarError::InvalidName { .. })))
        .count();
    let free_refused = matches!(
        chest::vars::set("bell\u{7}", 1),
        Err(VarError::InvalidName { .. })
    );
    vars.set("good", 1).unwrap();
    Reply::ok(format!(
        "refused {refused}, free function refused {free_refused}"
    ))
}

pub async fn bad_variable_names_are_refused_at_set<F: Framework>() {
    let (memory, recorder) = memory_recorder();
    let server = serve::<F>(recorder, bad_names);
    let answer = server.get("/items/1").await;
    assert_eq!(answer.body, "refused 4, free function refused true");
    assert_eq!(
        named_values(&memory.records()),
        named(&[("good", Value::Int(1))])
    );
}

fn non_finite(vars: &Vars, _: &Req) -> Reply {
    vars.set("nan", f64::NAN).unwrap();
    vars.set("inf", f64::INFINITY).unwrap();
    vars.set("neg_inf", f64::NEG_INFINITY).unwrap();
    vars.set("finite", 1.5).unwrap();
    Reply::ok("")
}

pub async fn non_finite_floats_are_stored_as_text<F: Framework>() {
    let db = TempDb::new();
    let server = serve::<F>(Recorder::new().chest(db.chest()), non_finite);
    assert_eq!(server.get("/items/1").await.status, 200);
    let got: Vec<_> = db
        .rows()
        .into_iter()
        .map(|r| (r.name, r.value, r.value_num, r.value_type))
        .collect();
    let row = |n: &str, v: &str, num| (n.to_owned(), v.to_owned(), num, "float".to_owned());
    assert_eq!(
        got,
        [
            row("nan", "NaN", None),
            row("inf", "inf", None),
            row("neg_inf", "-inf", None),
            row("finite", "1.5", Some(1.5)),
        ]
    );
}

/// Exactly 1 MiB of text with multi-byte characters and quotes: 8 bytes × 131,072.
fn one_megabyte() -> String {
    "'é🦀\"".repeat(131_072)
}

fn big_text(vars: &Vars, _: &Req) -> Reply {
    vars.set("big", one_megabyte()).unwrap();
    Reply::ok("")
}

pub async fn one_megabyte_text_value_is_stored_exactly<F: Framework>() {
    let db = TempDb::new();
    let server = serve::<F>(Recorder::new().chest(db.chest()), big_text);
    assert_eq!(server.get("/items/1").await.status, 200);
    let rows = db.rows();
    assert_eq!(rows.len(), 1);
    let expected = one_megabyte();
    assert_eq!(expected.len(), 1 << 20);
    assert!(rows[0].value == expected, "the stored text differs");
    assert_eq!(
        (rows[0].value_num, rows[0].value_type.as_str()),
        (None, "text")
    );
}

/// Answers with the status the path names, after recording it.
fn status_from_path(vars: &Vars, req: &Req) -> Reply {
    let status: u16 = req.last_segment().parse().unwrap();
    vars.set("status", status).unwrap();
    Reply::with_status(status, format!("status {status}"))
}

pub async fn written_whatever_the_handler_status<F: Framework>() {
    let (memory, recorder) = memory_recorder();
    let server = serve::<F>(recorder, status_from_path);
    for status in [404u16, 500, 418, 201] {
        let answer = server.get(&format!("/items/{status}")).await;
        assert_eq!(answer.status, status);
        assert_eq!(answer.body, format!("status {status}"));
        let records = records_of(&memory, &answer.request_id());
        assert_eq!(
            named_values(&records),
            named(&[("status", Value::Int(i64::from(status)))])
        );
        assert_eq!(records[0].route.as_deref(), Some(ITEMS_ROUTE));
    }
}

/// Code deep in the call stack, with no handle passed in.
fn record_deep_in_the_call_stack() {
    let id = chest::vars::request_id().expect("inside a request");
    chest::vars::set("seen_request_id", &*id).unwrap();
    chest::vars::set("depth", 3).unwrap();
    let depth = chest::vars::get("depth").unwrap();
    chest::vars::set("read_back", depth == Some(Value::Int(3))).unwrap();
}

fn nested(vars: &Vars, _: &Req) -> Reply {
    record_deep_in_the_call_stack();
    Reply::ok(format!("{:?}", vars.get("depth")))
}

pub async fn free_functions_work_from_nested_code<F: Framework>() {
    let (memory, recorder) = memory_recorder();
    let server = serve::<F>(recorder, nested);
    let answer = server.get("/items/1").await;
    assert_eq!(
        answer.body, "Some(Int(3))",
        "the handler's handle sees them"
    );
    let request_id = answer.request_id();
    assert_eq!(
        named_values(&records_of(&memory, &request_id)),
        named(&[
            ("seen_request_id", Value::Text(request_id.clone())),
            ("depth", Value::Int(3)),
            ("read_back", Value::Bool(true)),
        ])
    );
}

pub async fn extractor_without_the_middleware_is_a_500_naming_it<F: Framework>() {
    let (memory, recorder) = memory_recorder();
    let server = serve::<F>(recorder, sets_abc);
    let answer = server.get("/bare/1").await;
    assert_eq!(answer.status, 500);
    assert!(answer.body.contains("chest::Vars"), "{}", answer.body);
    assert!(answer.body.contains(F::MIDDLEWARE), "{}", answer.body);
    assert_eq!(answer.header("x-request-id"), None);
    assert_eq!(memory.writes(), 0);
}

pub async fn route_template_under_every_placement<F: Framework>() {
    for &placement in F::PLACEMENTS {
        let (memory, recorder) = memory_recorder();
        let server = F::serve(recorder, sets_abc, placement);
        for (path, template) in [
            ("/items/7", ITEMS_ROUTE),
            ("/shop/orders/42", "/shop/orders/{order}"),
        ] {
            let answer = server.send("POST", path, &[]).await;
            let records = records_of(&memory, &answer.request_id());
            assert_eq!(named_values(&records), abc(), "{placement:?} {path}");
            for record in &records {
                assert_eq!(record.route.as_deref(), Some(template), "{placement:?}");
                assert_eq!(&*record.method, "POST");
            }
        }
        let unrouted = server.get("/no/such/path").await;
        if placement.covers_fallback() {
            let records = records_of(&memory, &unrouted.request_id());
            assert_eq!(named_values(&records), abc(), "{placement:?}");
            assert!(records.iter().all(|r| r.route.is_none()), "{placement:?}");
        } else {
            assert_eq!(
                unrouted.status, 500,
                "{placement:?}: the fallback has no middleware"
            );
            assert_eq!(memory.writes(), 2, "{placement:?}");
        }
    }
}

/// The names, values and methods of `rows`, and the one request id they share.
fn one_request(rows: &[crate::harness::Row]) -> (String, Vec<(&str, &str, &str)>) {
    let ids: HashSet<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids.len(), 1, "one request: {rows:#?}");
    let got = rows
        .iter()
        .map(|r| (r.name.as_str(), r.value.as_str(), r.method.as_str()))
        .collect();
    (rows[0].request_id.clone(), got)
}

pub async fn inner_service_error_still_writes<F: Framework>() {
    let db = TempDb::new();
    let server = F::serve_failing_inner(Recorder::new().chest(db.chest()), sets_abc);
    let answer = server.get("/items/1").await;
    assert_eq!(
        answer.status, INNER_ERROR_STATUS,
        "the error goes out unchanged"
    );
    assert_eq!(answer.body, INNER_ERROR_BODY);
    assert_eq!(
        answer.header("x-request-id"),
        None,
        "an error carries no headers"
    );
    let rows = db.rows();
    let (_, got) = one_request(&rows);
    assert_eq!(
        got,
        [("a", "1", "GET"), ("b", "two", "GET"), ("c", "3.5", "GET")],
        "what the handler set before the error"
    );

    // raise_exceptions on and a failed write: the bare 500 wins over the error.
    let broken = MemoryChest::named("broken-chest");
    broken.fail_with(Some(ErrorKind::Permanent));
    let db = TempDb::new();
    let recorder = Recorder::new().chest(broken).chest(db.chest());
    let server = F::serve_failing_inner(recorder, sets_abc);
    let answer = server.send("POST", "/items/1", &[]).await;
    assert_eq!(answer.status, 500);
    assert_eq!(answer.body, "Internal Server Error");
    let rows = db.rows();
    let (request_id, got) = one_request(&rows);
    assert_eq!(got.len(), 3, "the working chest got its records");
    assert!(got.iter().all(|(_, _, method)| *method == "POST"));
    assert_failure_logged(&request_id);
}
