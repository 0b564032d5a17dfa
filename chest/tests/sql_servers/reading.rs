//! [`Reader`] against the real servers: what a chest wrote comes back exactly, filtered and
//! summarised.

use std::time::{Duration, UNIX_EPOCH};

use chest::read::{Filter, Reader, StoredRecord, VarSummary};
use chest::{Chest, Error, Record, Value};

use super::{awkward_values, expected_name, unique_table, url_with, Target, SECRET};

/// Every scenario below, at once.
pub async fn scenarios<T: Target>(url: &str) {
    tokio::join!(
        reads_back_exactly::<T>(url),
        filters_and_summaries::<T>(url),
        open_errors::<T>(url),
        series_and_spans::<T>(url),
    );
}

/// `url` with `table=table` added to its query.
pub fn with_table(url: &str, table: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}table={table}")
}

/// The reader of `table` on the server at `url`.
async fn reader(url: &str, table: &str) -> Reader {
    Reader::open(&with_table(url, table))
        .await
        .expect("open the reader")
}

/// Every row of `table`.
async fn all_rows(reader: &Reader) -> Vec<StoredRecord> {
    reader.query(&Filter::default()).await.unwrap()
}

/// Asserts that `got` is `want`, field by field (a NaN equals a NaN).
fn assert_same(got: &Record, want: &Record) {
    let what = &*want.name;
    assert_eq!(got.request_id, want.request_id, "{what}: request id");
    assert_eq!(got.name, want.name);
    assert_eq!(got.method, want.method, "{what}: method");
    assert_eq!(got.route, want.route, "{what}: route");
    assert_eq!(got.time, want.time, "{what}: time");
    assert_eq!(got.recorded_at(), want.recorded_at(), "{what}: time");
    match (&got.value, &want.value) {
        (Value::Float(a), Value::Float(b)) if b.is_nan() => assert!(a.is_nan(), "{what}: {a}"),
        (a, b) => assert!(a == b, "{what}: read back as {} {a:?}", a.type_name()),
    }
}

/// Values of every type, the awkward ones included, come back exactly (value and type), with
/// their request id, method, route and time to the microsecond, in insert order.
pub async fn reads_back_exactly<T: Target>(url: &str) {
    let table = unique_table("read");
    let chest = T::build(url, &table, 2).await.unwrap();
    let start = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
    let first: Vec<Record> = awkward_values()
        .into_iter()
        .chain([
            ("text_number", Value::from("42")),
            ("text_bool", Value::from("true")),
            ("text_json", Value::from("{\"a\":1}")),
            ("empty", Value::from("")),
            ("escaped_looking", Value::from("\\0 is not NUL")),
            ("negative_zero", Value::Float(-0.0)),
            ("tiny", Value::Float(f64::MIN_POSITIVE)),
            ("huge", Value::Float(1e300)),
            ("third", Value::Float(1.0 / 3.0)),
            ("no", Value::Bool(false)),
            ("zero", Value::Int(0)),
            ("json_null", Value::Json(serde_json::Value::Null)),
            (
                "json_list",
                Value::from(serde_json::json!([1, 2.5, "x\\y", null])),
            ),
        ])
        .enumerate()
        .map(|(i, (name, value))| {
            Record::new("req-A", name, value, "GET", Some("/items/{id}"))
                .at(start + Duration::from_micros(i as u64 * 1_001))
        })
        .collect();
    let second = vec![
        Record::new("req-B", "latency", 7, "POST", None).at(start + Duration::from_secs(86_400)),
        Record::new("req-B", "user", "o'brien \"bob\"", "POST", None)
            .at(UNIX_EPOCH - Duration::from_micros(1)),
    ];
    chest.write(&first).await.unwrap();
    chest.write(&second).await.unwrap();
    let written: Vec<Record> = first.into_iter().chain(second).collect();

    let reader = reader(url, &table).await;
    let rows = all_rows(&reader).await;
    assert_eq!(rows.len(), written.len());
    for (row, record) in rows.iter().zip(&written) {
        assert_same(&row.record, record);
    }
    assert!(rows.windows(2).all(|w| w[0].unique_id < w[1].unique_id));
    // The escaped storage of NUL on PostgreSQL does not show.
    let nul = rows.iter().find(|r| &*r.record.name == "nul").unwrap();
    assert_eq!(nul.record.value, Value::from("before\0after\0"));
    assert_eq!(nul.record.value.type_name(), "text");
    assert_eq!(
        rows.last().unwrap().record.recorded_at(),
        "1969-12-31T23:59:59.999999Z"
    );
    reader.close().await;
    T::admin(url).await.drop_table(&table).await;
}

/// The summary of `name` in `summaries`.
fn summary<'a>(summaries: &'a [VarSummary], name: &str) -> &'a VarSummary {
    summaries
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no summary of {name}: {summaries:?}"))
}

/// Filters by request id, name, `after_id` and `limit` (alone and together) select exactly the
/// rows they say, with text compared byte for byte; summaries count and rank by variable.
pub async fn filters_and_summaries<T: Target>(url: &str) {
    let table = unique_table("filter");
    let chest = T::build(url, &table, 2).await.unwrap();
    let record = |id: &str, name: &str, value: Value| Record::new(id, name, value, "GET", None);
    let latencies = [
        Value::Int(1),
        Value::Float(2.0),
        Value::Int(3),
        Value::Float(4.5),
        Value::from("n/a"),
    ];
    let mut written = Vec::new();
    for (n, latency) in latencies.iter().enumerate() {
        let id = format!("r{}", n + 1);
        written.push(record(&id, "latency", latency.clone()));
        written.push(record(&id, "ok", Value::Bool(n != 1)));
        written.push(record(&id, "user", Value::from(format!("user {n}"))));
    }
    // Names and ids that a case- or space-insensitive comparison would confuse.
    written.push(record("R1", "latency", Value::Int(1000)));
    written.push(record("r1 ", "latency", Value::Int(2000)));
    written.push(record("r6", "Latency", Value::Int(100)));
    written.push(record("r6", "latency ", Value::Int(200)));
    chest.write(&written).await.unwrap();

    let reader = reader(url, &table).await;
    let all = all_rows(&reader).await;
    assert_eq!(all.len(), written.len());
    let query = |filter: Filter| {
        let reader = &reader;
        async move { reader.query(&filter).await.unwrap() }
    };
    let ids = |rows: &[StoredRecord]| rows.iter().map(|r| r.unique_id).collect::<Vec<_>>();

    let r1 = query(Filter {
        request_id: Some("r1".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&r1), ids(&all[..3]));
    assert!(r1.iter().all(|r| &*r.record.request_id == "r1"));

    let latency = query(Filter {
        name: Some("latency".into()),
        ..Default::default()
    })
    .await;
    let values: Vec<Value> = latency.iter().map(|r| r.record.value.clone()).collect();
    assert_eq!(
        values,
        latencies
            .iter()
            .cloned()
            .chain([Value::Int(1000), Value::Int(2000)])
            .collect::<Vec<_>>()
    );

    let after = query(Filter {
        after_id: Some(all[4].unique_id),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&after), ids(&all[5..]));
    let page = query(Filter {
        after_id: Some(all[4].unique_id),
        limit: Some(2),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&page), ids(&all[5..7]));
    let first = query(Filter {
        limit: Some(1),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&first), ids(&all[..1]));
    let together = query(Filter {
        request_id: Some("r3".into()),
        name: Some("ok".into()),
        after_id: Some(all[0].unique_id),
        until_id: Some(all[7].unique_id),
        limit: Some(5),
        newest_first: false,
    })
    .await;
    assert_eq!(ids(&together), [all[7].unique_id]);
    let between = query(Filter {
        after_id: Some(all[1].unique_id),
        until_id: Some(all[4].unique_id),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&between), ids(&all[2..5]));
    for filter in [
        Filter {
            limit: Some(0),
            ..Default::default()
        },
        Filter {
            request_id: Some("no such request".into()),
            ..Default::default()
        },
        Filter {
            after_id: Some(all.last().unwrap().unique_id),
            ..Default::default()
        },
    ] {
        assert!(query(filter.clone()).await.is_empty(), "{filter:?}");
    }

    let summaries = reader.summaries(None).await.unwrap();
    let names: Vec<&str> = summaries.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Latency", "latency", "latency ", "ok", "user"]);
    let s = summary(&summaries, "latency");
    assert_eq!((s.count, s.numeric), (7, 6));
    assert_eq!((s.min, s.max), (Some(1.0), Some(2000.0)));
    // 1, 2, 3, 4.5, 1000, 2000: the median by nearest rank is the third.
    assert_eq!(s.p50, Some(3.0));
    assert_eq!(s.mean, Some(3010.5 / 6.0));
    let ok = summary(&summaries, "ok");
    assert_eq!((ok.count, ok.numeric), (5, 5));
    assert_eq!((ok.min, ok.p50, ok.max), (Some(0.0), Some(1.0), Some(1.0)));
    let user = summary(&summaries, "user");
    assert_eq!((user.count, user.numeric), (5, 0));
    assert_eq!(
        (user.min, user.p50, user.max, user.mean),
        (None, None, None, None)
    );
    assert_eq!(summary(&summaries, "Latency").count, 1);

    let only = reader.summaries(Some("latency")).await.unwrap();
    assert_eq!(only, std::slice::from_ref(s));
    assert!(reader.summaries(Some("LATENCY")).await.unwrap().is_empty());
    assert!(reader.summaries(Some("nothing")).await.unwrap().is_empty());
    reader.close().await;
    T::admin(url).await.drop_table(&table).await;
}

/// A missing table, a bad table name and a server that refuses the login are typed errors that
/// name the server and never show a password; nothing is created.
pub async fn open_errors<T: Target>(url: &str) {
    let table = unique_table("noread");
    match Reader::open(&with_table(url, &table)).await {
        Err(Error::Backend { chest, source }) => {
            assert_eq!(chest, expected_name(url));
            assert_eq!(source.to_string(), format!("no table `{table}`"));
        }
        other => panic!("a missing table was accepted: {other:?}"),
    }
    match Reader::open(&with_table(url, "a%3Bb")).await {
        Err(Error::InvalidTableName { name, .. }) => assert_eq!(name, "a;b"),
        other => panic!("a bad table name was accepted: {other:?}"),
    }
    let bad_login = url_with(url, Some("chest_no_such_user"), Some(SECRET), None, None);
    let error = Reader::open(&with_table(&bad_login, &table))
        .await
        .expect_err("an unknown user must be refused");
    let text = format!("{error} {error:?}");
    assert!(!text.contains(SECRET), "{text}");
    assert!(text.contains("chest_no_such_user"), "{text}");
    assert!(
        matches!(&error, Error::Backend { chest, .. } if *chest == expected_name(&bad_login)),
        "{text}"
    );
    assert!(!T::admin(url).await.table_exists(&table).await);
}

/// The scenario on a server: write the records, read them back as series.
pub async fn series_and_spans<T: Target>(url: &str) {
    let table = unique_table("series");
    let chest = T::build(url, &table, 2).await.unwrap();
    let records = super::series::timed_records();
    chest.write(&records).await.unwrap();
    let reader = Reader::open(&with_table(url, &table)).await.unwrap();
    let empty = unique_table("series_empty");
    let _made = T::build(url, &empty, 1).await.unwrap();
    let none = Reader::open(&with_table(url, &empty)).await.unwrap();
    assert_eq!(
        none.time_span().await.unwrap(),
        None,
        "an empty table has no span"
    );
    super::series::assert_series(&reader, &records).await;
    reader.close().await;
    none.close().await;
}
