//! The automatic request facts' cases: real servers, SQLite read back with SQL.

use std::collections::HashMap;
use std::time::Duration;

use chest::facts::{
    BODY_COMPLETE, REQUEST_BYTES, RESPONSE_BYTES, STATUS, TIME_TO_HEADERS, TIME_TO_LAST_BYTE,
};
use chest::{ErrorKind, MemoryChest, Recorder, Tracked, Vars};

use crate::harness::{Framework, Placement, Reply, Req, Row, TempDb};

/// Name → (value, value_num, value type) of one request's rows.
fn facts_of(rows: &[Row], request_id: &str) -> HashMap<String, (String, Option<f64>, String)> {
    rows.iter()
        .filter(|r| r.request_id == request_id)
        .map(|r| {
            let row = (r.value.clone(), r.value_num, r.value_type.clone());
            (r.name.clone(), row)
        })
        .collect()
}

fn int(value: u64) -> (String, Option<f64>, String) {
    (value.to_string(), Some(value as f64), "int".to_owned())
}

/// Seconds of a Float fact.
fn seconds(facts: &HashMap<String, (String, Option<f64>, String)>, name: &str) -> f64 {
    let (_, num, value_type) = &facts[name];
    assert_eq!(value_type, "float", "{name}");
    num.expect("a finite number of seconds")
}

/// Answers with the status the path names and a body of `status NNN`; sets one variable.
fn status_from_path(vars: &Vars, req: &Req) -> Reply {
    let status: u16 = req.last_segment().parse().unwrap();
    vars.set("handler_ran", true).unwrap();
    Reply::with_status(status, format!("status {status}"))
}

fn facts_recorder(db: &TempDb) -> Recorder {
    Recorder::new().chest(db.chest()).request_facts(true)
}

/// Every variable plus the six facts.
const ROWS_WITH_FACTS: usize = 7;

pub async fn facts_give_the_status_and_sizes_of_404_and_500<F: Framework>() {
    let db = TempDb::new();
    let server = F::serve(facts_recorder(&db), status_from_path, Placement::Route);
    let mut expected_rows = 0;
    for status in [404_u64, 500] {
        let answer = server.get(&format!("/items/{status}")).await;
        assert_eq!(u64::from(answer.status), status);
        expected_rows += ROWS_WITH_FACTS - 1; // a GET without a body declares no length
        let rows = db.rows_eventually(expected_rows).await;
        let facts = facts_of(&rows, &answer.request_id());
        assert_eq!(facts[STATUS], int(status));
        assert_eq!(facts[RESPONSE_BYTES], int(10), "`status NNN`");
        assert_eq!(facts[BODY_COMPLETE].0, "true");
        assert!(!facts.contains_key(REQUEST_BYTES), "{facts:?}");
        assert!(seconds(&facts, TIME_TO_HEADERS) <= seconds(&facts, TIME_TO_LAST_BYTE));
        let route = rows.iter().find(|r| r.name == TIME_TO_LAST_BYTE).unwrap();
        assert_eq!(
            route.route.as_deref(),
            Some("/items/{id}"),
            "body facts too"
        );
    }

    let answer = server.send_body("POST", "/items/201", "twelve bytes").await;
    let rows = db.rows_eventually(expected_rows + ROWS_WITH_FACTS).await;
    let facts = facts_of(&rows, &answer.request_id());
    assert_eq!(facts[REQUEST_BYTES], int(12));
    assert_eq!(facts[STATUS], int(201));
}

/// Three chunks of 1,000 bytes, each after 150 ms.
fn slow_stream(vars: &Vars, _: &Req) -> Reply {
    vars.set("streamed", true).unwrap();
    Reply::streamed(vec!["x".repeat(1_000); 3], Duration::from_millis(150))
}

pub async fn facts_time_and_count_a_slow_streamed_body<F: Framework>() {
    let db = TempDb::new();
    let server = F::serve(facts_recorder(&db), slow_stream, Placement::Route);
    let answer = server.get("/items/1").await;
    assert_eq!(answer.body.len(), 3_000);
    let rows = db.rows_eventually(ROWS_WITH_FACTS - 1).await;
    let facts = facts_of(&rows, &answer.request_id());
    assert_eq!(facts[RESPONSE_BYTES], int(3_000));
    assert_eq!(facts[BODY_COMPLETE].0, "true");
    let headers = seconds(&facts, TIME_TO_HEADERS);
    let last_byte = seconds(&facts, TIME_TO_LAST_BYTE);
    assert!(last_byte >= 0.45, "three 150 ms delays: {last_byte}");
    assert!(headers < 0.45, "the headers go before the body: {headers}");
}

/// 16 chunks of 1 MiB, each after 50 ms: more than the sockets' buffers hold, so a server
/// notices a client that left (actix-web writes into them until a write fails).
fn long_stream(vars: &Vars, _: &Req) -> Reply {
    vars.set("streamed", true).unwrap();
    Reply::streamed(vec!["x".repeat(1 << 20); 16], Duration::from_millis(50))
}

pub async fn facts_of_a_body_the_client_left_say_so<F: Framework>() {
    let db = TempDb::new();
    let server = F::serve(facts_recorder(&db), long_stream, Placement::Route);
    let request_id = server.get_and_leave_early("/items/1").await;
    let rows = db.rows_eventually(ROWS_WITH_FACTS - 1).await;
    let facts = facts_of(&rows, &request_id);
    assert_eq!(facts[BODY_COMPLETE].0, "false", "{facts:?}");
    let (_, sent, _) = &facts[RESPONSE_BYTES];
    let sent = sent.expect("a number");
    assert!(sent > 0.0 && sent < f64::from(16 << 20), "{sent} of 16 MiB");
}

pub async fn facts_go_through_the_selection<F: Framework>() {
    let db = TempDb::new();
    let tracked = Tracked::methods().method("GET", [STATUS, TIME_TO_LAST_BYTE]);
    let server = F::serve(
        facts_recorder(&db).tracked_vars(tracked),
        status_from_path,
        Placement::Route,
    );
    let answer = server.get("/items/404").await;
    let rows = db.rows_eventually(2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let names: Vec<_> = db.rows().into_iter().map(|r| r.name).collect();
    assert_eq!(names, [STATUS, TIME_TO_LAST_BYTE], "{rows:#?}");
    assert_eq!(rows[0].request_id, answer.request_id());
}

pub async fn failed_write_keeps_header_facts_and_sends_no_body_facts<F: Framework>() {
    let broken = MemoryChest::named("broken-chest");
    broken.fail_with(Some(ErrorKind::Permanent));
    let db = TempDb::new();
    let recorder = Recorder::new()
        .chest(broken)
        .chest(db.chest())
        .request_facts(true);
    let server = F::serve(recorder, status_from_path, Placement::Route);
    let answer = server.get("/items/200").await;
    assert_eq!(answer.status, 500, "raise_exceptions: the bare 500");
    let rows = db.rows_eventually(3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let facts = facts_of(&db.rows(), &answer.request_id());
    assert_eq!(facts[STATUS], int(200), "the handler's status");
    assert!(facts.contains_key(TIME_TO_HEADERS));
    assert!(!facts.contains_key(TIME_TO_LAST_BYTE), "{rows:#?}");
    assert_eq!(facts.len(), 3, "handler_ran and two facts: {facts:?}");
}
