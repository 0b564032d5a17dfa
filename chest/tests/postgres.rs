//! The PostgreSQL chest against a real server (`CHEST_TEST_POSTGRES_URL`, from
//! `eval "$(scripts/services start)"`).
#![cfg(feature = "postgres")]

mod common;
mod sql_servers;

use std::time::Duration;

use chest::chests::postgres::{escape_text, unescape_text, PostgresChest, ESCAPED_TEXT_TYPE};
use chest::{Chest, Error, Record, Value};
use sql_servers::{sqlx_target_methods, Admin, Target, SECRET};

struct Postgres;

impl Target for Postgres {
    sqlx_target_methods!(PostgresChest, postgres);

    /// Text with NUL is stored escaped and flagged (PostgreSQL text cannot hold NUL).
    fn stored(value: &Value) -> (String, &'static str) {
        match value {
            Value::Text(text) if text.contains('\0') => (escape_text(text), ESCAPED_TEXT_TYPE),
            other => (other.to_string(), other.type_name()),
        }
    }

    fn unstore(text: &str, type_name: &str) -> Value {
        if type_name == ESCAPED_TEXT_TYPE {
            Value::Text(unescape_text(text))
        } else {
            Value::from_stored(text, type_name)
        }
    }
}

fn url() -> Option<String> {
    common::service_url("CHEST_TEST_POSTGRES_URL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_round_trip() {
    let Some(url) = url() else { return };
    sql_servers::axum_round_trip::<Postgres>(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_table_names_are_refused() {
    let Some(url) = url() else { return };
    sql_servers::hostile_table_names::<Postgres>(&url, 63).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_values_are_stored_exactly() {
    let Some(url) = url() else { return };
    sql_servers::awkward_values_stored_exactly::<Postgres>(&url).await;
}

/// Current-thread, so the log capture sees every event of the chest and its pool.
#[tokio::test]
async fn errors_are_typed_and_redacted() {
    let Some(url) = url() else { return };
    // The test server trusts every login from 127.0.0.1, so a wrong password would pass: an
    // unknown role is the login it refuses.
    let bad_login =
        sql_servers::url_with(&url, Some("chest_no_such_role"), Some(SECRET), None, None);
    sql_servers::errors_are_typed_and_redacted::<Postgres>(
        &url,
        &bad_login,
        "role \"chest_no_such_role\" does not exist",
        "database \"chest_no_such_db\" does not exist",
    )
    .await;
}

/// The reader: exact round trips, filters, summaries, typed errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_reads_back_filters_and_summarises() {
    let Some(url) = url() else { return };
    sql_servers::reading::scenarios::<Postgres>(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_tables_are_checked() {
    let Some(url) = url() else { return };
    let table = sql_servers::unique_table("partial");
    let create = format!(
        "CREATE TABLE \"{table}\" (unique_id BIGSERIAL PRIMARY KEY, request_id TEXT, \
         name TEXT, value TEXT)"
    );
    sql_servers::existing_tables::<Postgres>(&url, create, &table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connection_fails_retryably_then_reconnects() {
    let Some(url) = url() else { return };
    sql_servers::killed_connection::<Postgres>(&url).await;
}

/// NUL where PostgreSQL cannot store it escaped (request id, name, method, route) refuses the
/// write with a permanent error naming the record; nothing of the write is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_outside_values_is_refused() {
    let Some(url) = url() else { return };
    let table = sql_servers::unique_table("nul");
    let chest = Postgres::build(&url, &table, 1).await.unwrap();
    let admin = Admin::postgres(&url).await;
    for (index, bad) in [
        Record::new("id\0", "n", 1, "GET", None),
        Record::new("id", "n\0", 1, "GET", None),
        Record::new("id", "n", 1, "GE\0T", None),
        Record::new("id", "n", 1, "GET", Some("/\0")),
    ]
    .into_iter()
    .enumerate()
    {
        let records = [
            Record::new("ok", "fine", "text\0with nul", "GET", None),
            bad,
        ];
        let error = chest.write(&records).await.unwrap_err();
        assert!(!error.is_retryable(), "{error}");
        let text = error.to_string();
        assert!(
            text.contains("record 1") && text.contains("NUL"),
            "case {index}: {text}"
        );
    }
    assert_eq!(admin.counts(&table).await.0, 0);
    admin.drop_table(&table).await;
}

/// 64 concurrent clients × 2,000 requests each through a batched chest: every row, once.
#[cfg(feature = "batch")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_through_batched() {
    let Some(url) = url() else { return };
    sql_servers::load_through_batched::<Postgres>(&url, 64, 2_000).await;
}

/// Connections killed in the middle of a load through a batched chest: nothing lost.
#[cfg(feature = "batch")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_under_batched_load_lose_nothing() {
    let Some(url) = url() else { return };
    sql_servers::killed_connections_under_load::<Postgres>(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_stored_once() {
    let Some(url) = url() else { return };
    sql_servers::batches_are_stored_once::<Postgres>(&url, '"').await;
}
