//! The MySQL / MariaDB chest against a real server (`CHEST_TEST_MYSQL_URL`, from
//! `eval "$(scripts/services start)"`).
#![cfg(feature = "mysql")]

mod common;
mod sql_servers;

use std::time::Duration;

use chest::chests::mysql::MySqlChest;
use chest::{Chest, Error, Record};
use sql_servers::{sqlx_target_methods, Admin, Target, SECRET};

struct MySql;

impl Target for MySql {
    sqlx_target_methods!(MySqlChest, mysql);
}

fn url() -> Option<String> {
    common::service_url("CHEST_TEST_MYSQL_URL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_round_trip() {
    let Some(url) = url() else { return };
    sql_servers::axum_round_trip::<MySql>(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_table_names_are_refused() {
    let Some(url) = url() else { return };
    sql_servers::hostile_table_names::<MySql>(&url, 64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_values_are_stored_exactly() {
    let Some(url) = url() else { return };
    sql_servers::awkward_values_stored_exactly::<MySql>(&url).await;
}

/// Current-thread, so the log capture sees every event of the chest and its pool.
#[tokio::test]
async fn errors_are_typed_and_redacted() {
    let Some(url) = url() else { return };
    let bad_password = sql_servers::url_with(&url, None, Some(SECRET), None, None);
    sql_servers::errors_are_typed_and_redacted::<MySql>(
        &url,
        &bad_password,
        "1045 (28000): access denied",
        "1049 (42000): unknown database 'chest_no_such_db'",
    )
    .await;
}

/// The reader: exact round trips, filters, summaries, typed errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_reads_back_filters_and_summarises() {
    let Some(url) = url() else { return };
    sql_servers::reading::scenarios::<MySql>(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_tables_are_checked() {
    let Some(url) = url() else { return };
    let table = sql_servers::unique_table("partial");
    let create = format!(
        "CREATE TABLE `{table}` (unique_id BIGINT AUTO_INCREMENT PRIMARY KEY, \
         request_id VARCHAR(255), name VARCHAR(255), value LONGTEXT)"
    );
    sql_servers::existing_tables::<MySql>(&url, create, &table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connection_fails_retryably_then_reconnects() {
    let Some(url) = url() else { return };
    sql_servers::killed_connection::<MySql>(&url).await;
}

/// A record larger than the server's `max_allowed_packet` is refused before it is sent, with a
/// permanent error naming it; the other records of the write are not written either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_larger_than_a_packet_are_refused() {
    let Some(url) = url() else { return };
    let admin = Admin::mysql(&url).await;
    let pool = sqlx::MySqlPool::connect(&url).await.unwrap();
    let (packet,): (i64,) = sqlx::query_as("SELECT CAST(@@max_allowed_packet AS SIGNED)")
        .fetch_one(&pool)
        .await
        .unwrap();
    let table = sql_servers::unique_table("packet");
    let chest = MySql::build(&url, &table, 1).await.unwrap();
    let huge = "x".repeat(usize::try_from(packet).unwrap());
    let records = [
        Record::new("r", "small", 1, "GET", None),
        Record::new("r", "huge", huge, "GET", None),
    ];
    let error = chest.write(&records).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("record 1 (`huge`)") && text.contains("packet"),
        "{text}"
    );
    assert_eq!(admin.counts(&table).await.0, 0);
    admin.drop_table(&table).await;
}

/// 64 concurrent clients × 2,000 requests each through a batched chest: every row, once.
#[cfg(feature = "batch")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_through_batched() {
    let Some(url) = url() else { return };
    sql_servers::load_through_batched::<MySql>(&url, 64, 2_000).await;
}

/// Connections killed in the middle of a load through a batched chest: nothing lost.
#[cfg(feature = "batch")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_under_batched_load_lose_nothing() {
    let Some(url) = url() else { return };
    sql_servers::killed_connections_under_load::<MySql>(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_stored_once() {
    let Some(url) = url() else { return };
    sql_servers::batches_are_stored_once::<MySql>(&url, '`').await;
}
