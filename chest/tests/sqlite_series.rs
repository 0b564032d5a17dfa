//! [`Reader::series`](chest::read::Reader::series) and its kin on a SQLite chest, the same
//! scenario as the servers', and the `recorded_at` index it reads by.
#![cfg(feature = "sqlite")]

#[path = "sql_servers/series.rs"]
mod series;

use chest::chests::sqlite::{SqliteChest, SqliteReader};
use chest::read::Reader;
use chest::Chest;

#[tokio::test]
async fn sqlite_series_spans_and_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("series.db");
    let chest = SqliteChest::builder(&path).build().unwrap();
    let reader = Reader::from(SqliteReader::open(&path, "chest").unwrap());
    assert_eq!(
        reader.time_span().await.unwrap(),
        None,
        "an empty table has no span"
    );
    let records = series::timed_records();
    chest.write(&records).await.unwrap();
    series::assert_series(&reader, &records).await;

    let conn = rusqlite::Connection::open(&path).unwrap();
    let plan: Vec<String> = conn
        .prepare("EXPLAIN QUERY PLAN SELECT name FROM chest WHERE recorded_at >= '2023'")
        .unwrap()
        .query_map([], |row| row.get(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        plan.iter()
            .any(|step| step.contains("INDEX chest_recorded_at")),
        "a time range reads the recorded_at index: {plan:?}"
    );
}
