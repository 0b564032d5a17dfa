//! The tracing bridge's cases (feature `tracing`): handlers that record only through `tracing`,
//! served by real servers with the bridge in the global subscriber, SQLite read back with SQL.

use std::collections::HashMap;

use chest::{Recorder, Tracked, Vars};
use tracing::field::Empty;
use tracing::{info, info_span, Span};

use crate::harness::{Framework, Handler, Placement, Reply, Req, Row, TempDb, TestServer};

/// Serves `handler` on the routed paths, writing to `db`'s SQLite chest.
fn serve_sqlite<F: Framework>(db: &TempDb, handler: Handler) -> TestServer {
    F::serve(Recorder::new().chest(db.chest()), handler, Placement::Route)
}

/// Name → (value as text, value type) of one request's rows, which must have unique names.
fn by_name(rows: &[Row], request_id: &str) -> HashMap<String, (String, String)> {
    let mine: Vec<_> = rows.iter().filter(|r| r.request_id == request_id).collect();
    let map: HashMap<_, _> = mine
        .iter()
        .map(|r| (r.name.clone(), (r.value.clone(), r.value_type.clone())))
        .collect();
    assert_eq!(map.len(), mine.len(), "one row per name: {mine:#?}");
    map
}

fn typed(value: &str, value_type: &str) -> (String, String) {
    (value.to_owned(), value_type.to_owned())
}

struct Label;

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("displayed")
    }
}

/// Records only through tracing: span fields at creation and later, event fields of every type,
/// a nested span and its event.
#[tracing::instrument(skip_all, fields(user_id = Empty, region = "eu", depth = 1))]
fn traced_everything(vars: &Vars, req: &Req) -> Reply {
    let user_id: i64 = req.last_segment().parse().unwrap();
    Span::current().record("user_id", user_id);
    info!(
        cart_total = 12.5,
        paid = true,
        huge = u64::MAX,
        wide = -5_i128,
        label = %Label,
        tags = ?["a", "b"],
        "checkout"
    );
    info_span!("inner", depth = 2).in_scope(|| info!(inner_seen = "yes", "nested"));
    Reply::ok(vars.request_id())
}

pub async fn span_and_event_fields_become_typed_rows<F: Framework>() {
    let db = TempDb::new();
    let server = serve_sqlite::<F>(&db, traced_everything);
    let answer = server.get("/items/7").await;
    assert_eq!(answer.status, 200);
    let request_id = answer.request_id();
    let rows = db.rows();
    let got = by_name(&rows, &request_id);
    let expected: HashMap<String, (String, String)> = [
        ("region", typed("eu", "text")),
        ("user_id", typed("7", "int")),
        ("cart_total", typed("12.5", "float")),
        ("paid", typed("true", "bool")),
        ("huge", typed("18446744073709551615", "text")),
        ("wide", typed("-5", "int")),
        ("label", typed("displayed", "text")),
        ("tags", typed(r#"["a", "b"]"#, "text")),
        // The nested span's field replaces the outer one's: the last recorded wins.
        ("depth", typed("2", "int")),
        ("inner_seen", typed("yes", "text")),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v))
    .collect();
    assert_eq!(got, expected, "no `message`, nothing else");
    let mine: Vec<_> = rows.iter().filter(|r| r.request_id == request_id).collect();
    assert!(mine
        .iter()
        .all(|r| r.route.as_deref() == Some("/items/{id}")));
    assert_eq!(mine.len(), rows.len(), "no other request's rows");
}

/// Records on the current span, which is the request span made outside the middleware.
fn records_on_the_outer_span(vars: &Vars, req: &Req) -> Reply {
    let user_id: i64 = req.last_segment().parse().unwrap();
    Span::current().record("user_id", user_id);
    Reply::ok(vars.request_id())
}

pub async fn outer_request_span_gives_its_later_fields<F: Framework>() {
    let db = TempDb::new();
    let server =
        F::serve_in_outer_span(Recorder::new().chest(db.chest()), records_on_the_outer_span);
    let answer = server.get("/items/41").await;
    assert_eq!(answer.status, 200);
    let got = by_name(&db.rows(), &answer.request_id());
    // `method` was set when the span was made, before the scope: not taken.
    assert_eq!(
        got,
        HashMap::from([("user_id".to_owned(), typed("41", "int"))])
    );
}

/// `explicit` is set through `vars.set` first, `late` after an event gave it; the events also
/// give `cart_total` twice, and `noise`, which the selection leaves out.
fn precedence(vars: &Vars, _: &Req) -> Reply {
    vars.set("explicit", "from vars.set").unwrap();
    info!(explicit = "from a field", late = "from a field", "first");
    vars.set("late", "from vars.set").unwrap();
    info!(
        late = "from a later field",
        cart_total = 1.0,
        noise = 1,
        "second"
    );
    info!(cart_total = 2.5, "third");
    Reply::ok(vars.request_id())
}

pub async fn vars_set_wins_and_selection_applies<F: Framework>() {
    let db = TempDb::new();
    let tracked = Tracked::methods().method("GET", ["explicit", "late", "cart_total"]);
    let recorder = Recorder::new().chest(db.chest()).tracked_vars(tracked);
    let server = F::serve(recorder, precedence, Placement::Route);
    let answer = server.get("/items/1").await;
    let got = by_name(&db.rows(), &answer.request_id());
    assert_eq!(
        got,
        HashMap::from([
            ("explicit".to_owned(), typed("from vars.set", "text")),
            ("late".to_owned(), typed("from vars.set", "text")),
            ("cart_total".to_owned(), typed("2.5", "float")),
        ])
    );
    // A POST tracks nothing: nothing is written at all.
    server.send("POST", "/items/1", &[]).await;
    assert_eq!(db.rows().len(), 3);
}

/// Fields whose names are no variable names, beside a good one.
fn invalid_names(vars: &Vars, _: &Req) -> Reply {
    info!("tab\tname" = 1, "chest.status" = 5, good = 1, "bad names");
    info!(
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" = 1,
        "256 bytes"
    );
    Reply::ok(vars.request_id())
}

pub async fn invalid_field_names_are_skipped_and_counted<F: Framework>() {
    let db = TempDb::new();
    let server = serve_sqlite::<F>(&db, invalid_names);
    let stats = crate::harness::bridge().stats();
    let before = stats.invalid_names();
    let answer = server.get("/items/1").await;
    assert_eq!(answer.status, 200, "no panic");
    assert_eq!(
        by_name(&db.rows(), &answer.request_id()),
        HashMap::from([("good".to_owned(), typed("1", "int"))])
    );
    // The other framework's run of this case may count at the same time: at least ours.
    assert!(stats.invalid_names() >= before + 3, "{stats:?}");
}

/// The request's number as a span field, its square as an event field, recorded later too.
#[tracing::instrument(skip_all, fields(n = req.last_segment().parse::<i64>().unwrap(), square = Empty))]
fn numbered_by_tracing(vars: &Vars, req: &Req) -> Reply {
    let n: i64 = req.last_segment().parse().unwrap();
    std::thread::yield_now(); // let other requests interleave
    Span::current().record("square", n * n);
    info!(seen_id = vars.request_id(), "numbered");
    Reply::ok(vars.request_id())
}

const REQUESTS: usize = 1_000;

pub async fn concurrent_requests_never_mix_fields<F: Framework>() {
    let db = TempDb::new();
    let recorder = Recorder::new().chest(db.chest());
    let answers =
        crate::cases::concurrent_clients_of::<F>(recorder, numbered_by_tracing, REQUESTS).await;
    let rows = db.rows();
    assert_eq!(rows.len(), REQUESTS * 3, "three rows per request");
    let mut by_request: HashMap<&str, Vec<&Row>> = HashMap::new();
    for row in &rows {
        by_request.entry(&row.request_id).or_default().push(row);
    }
    for (n, _, request_id) in &answers {
        let n = *n as i64;
        let got: HashMap<&str, &str> = by_request[request_id.as_str()]
            .iter()
            .map(|r| (r.name.as_str(), r.value.as_str()))
            .collect();
        let expected = HashMap::from([
            ("n", n.to_string()),
            ("square", (n * n).to_string()),
            ("seen_id", request_id.clone()),
        ]);
        let expected: HashMap<&str, &str> =
            expected.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(got, expected, "request {n}");
        assert!(by_request[request_id.as_str()]
            .iter()
            .all(|r| r.route.is_some()));
    }
}

/// Emits fields outside the request's scope (another thread) and inside it.
fn outside_and_inside(vars: &Vars, _: &Req) -> Reply {
    std::thread::spawn(|| {
        info!(leaked = 1, "another thread: no scope");
        info_span!("elsewhere", leaked_span = 1).in_scope(|| {});
    })
    .join()
    .unwrap();
    info!(inside = 1, "in the scope");
    Reply::ok(vars.request_id())
}

pub async fn nothing_is_recorded_outside_a_scope<F: Framework>() {
    let db = TempDb::new();
    let server = serve_sqlite::<F>(&db, outside_and_inside);
    // The test's own task has no scope either.
    info!(test_side = 1, "outside any request");
    let answer = server.get("/items/1").await;
    info!(test_side = 2, "outside any request");
    let rows = db.rows();
    assert_eq!(
        by_name(&rows, &answer.request_id()),
        HashMap::from([("inside".to_owned(), typed("1", "int"))])
    );
    assert_eq!(rows.len(), 1);
}
