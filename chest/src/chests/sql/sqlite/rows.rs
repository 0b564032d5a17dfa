//! A write's rows as the writer thread binds them, encoded by the caller: every text of every
//! row in one buffer, and per row the ranges of its columns. Handing the writer thread records
//! would clone each (four reference counts and a value) and have it drop them on its core; this
//! copies bytes once, formats times and values off the writer thread, and leaves it two buffers
//! to free.

use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use crate::record::push_utc_micros;
use crate::Record;

/// The rows of one write.
pub(super) struct Rows {
    text: String,
    rows: Vec<Row>,
}

/// One row: its texts as ranges of [`Rows::text`].
struct Row {
    request_id: Range<usize>,
    name: Range<usize>,
    value: Range<usize>,
    value_num: Option<f64>,
    value_type: &'static str,
    method: Range<usize>,
    route: Option<Range<usize>>,
    recorded_at: Range<usize>,
}

/// A row's columns, in [`INSERT_COLUMNS`](crate::chests::sql::INSERT_COLUMNS) order.
pub(super) struct Columns<'a> {
    pub request_id: &'a str,
    pub name: &'a str,
    pub value: &'a str,
    pub value_num: Option<f64>,
    pub value_type: &'static str,
    pub method: &'a str,
    pub route: Option<&'a str>,
    pub recorded_at: &'a str,
}

/// What the records of one request share (the same `Arc`s and time), written once.
struct Shared<'r> {
    request_id: (&'r Arc<str>, Range<usize>),
    method: (&'r Arc<str>, Range<usize>),
    route: Option<(&'r Arc<str>, Range<usize>)>,
    time: (SystemTime, Range<usize>),
}

impl Rows {
    /// Encodes `records`.
    pub(super) fn new(records: &[Record]) -> Self {
        let mut text = String::with_capacity(records.len() * 64);
        let mut rows = Vec::with_capacity(records.len());
        let mut shared: Option<Shared<'_>> = None;
        for record in records {
            let same =
                |(arc, _): &(&Arc<str>, Range<usize>), other: &Arc<str>| Arc::ptr_eq(arc, other);
            let request_id = match &shared {
                Some(s) if same(&s.request_id, &record.request_id) => s.request_id.1.clone(),
                _ => push(&mut text, |t| t.push_str(&record.request_id)),
            };
            let method = match &shared {
                Some(s) if same(&s.method, &record.method) => s.method.1.clone(),
                _ => push(&mut text, |t| t.push_str(&record.method)),
            };
            let route = match (&shared, &record.route) {
                (_, None) => None,
                (Some(Shared { route: Some(r), .. }), Some(route)) if same(r, route) => {
                    Some(r.1.clone())
                }
                (_, Some(route)) => Some(push(&mut text, |t| t.push_str(route))),
            };
            let recorded_at = match &shared {
                Some(s) if s.time.0 == record.time => s.time.1.clone(),
                _ => push(&mut text, |t| push_utc_micros(t, record.unix_micros())),
            };
            let name = push(&mut text, |t| t.push_str(&record.name));
            let value = push(&mut text, |t| record.value.push_text(t));
            rows.push(Row {
                request_id: request_id.clone(),
                name,
                value,
                value_num: record.value.as_f64(),
                value_type: record.value.type_name(),
                method: method.clone(),
                route: route.clone(),
                recorded_at: recorded_at.clone(),
            });
            shared = Some(Shared {
                request_id: (&record.request_id, request_id),
                method: (&record.method, method),
                route: record.route.as_ref().zip(route),
                time: (record.time, recorded_at),
            });
        }
        Rows { text, rows }
    }

    /// How many rows there are.
    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }

    /// The columns of every row, in order.
    pub(super) fn columns(&self) -> impl Iterator<Item = Columns<'_>> {
        let text = |r: &Range<usize>| &self.text[r.clone()];
        self.rows.iter().map(move |row| Columns {
            request_id: text(&row.request_id),
            name: text(&row.name),
            value: text(&row.value),
            value_num: row.value_num,
            value_type: row.value_type,
            method: text(&row.method),
            route: row.route.as_ref().map(text),
            recorded_at: text(&row.recorded_at),
        })
    }
}

/// Appends what `write` writes to `text`; its range.
fn push(text: &mut String, write: impl FnOnce(&mut String)) -> Range<usize> {
    let start = text.len();
    write(text);
    start..text.len()
}

/// A record's columns but `recorded_at` as the tests expect them back: request id, name, value,
/// `value_num`, `value_type`, method, route.
#[cfg(test)]
pub(super) type ExpectedColumns = (
    String,
    String,
    String,
    Option<f64>,
    String,
    String,
    Option<String>,
);

#[cfg(test)]
pub(super) fn expected_columns(r: &Record) -> ExpectedColumns {
    (
        r.request_id.to_string(),
        r.name.to_string(),
        r.value.to_string(),
        r.value.as_f64(),
        r.value.type_name().to_owned(),
        r.method.to_string(),
        r.route.as_deref().map(str::to_owned),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;

    /// Every column of every record comes back, also when records of one request share their
    /// strings and time and when the next request's differ in one of them only.
    #[test]
    fn rows_give_back_every_column() {
        let id: Arc<str> = Arc::from("req-1");
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456);
        let first = Record::new(id.clone(), "n", 7, "GET", Some("/a/{id}")).at(at);
        let records = vec![
            first.clone(),
            Record {
                name: Arc::from("t"),
                value: Value::from("ü text"),
                ..first.clone()
            },
            Record::new("req-2", "f", f64::NAN, "POST", None).at(at),
            Record::new("req-2", "b", true, "POST", Some("/b"))
                .at(at + std::time::Duration::from_micros(1)),
        ];
        let rows = Rows::new(&records);
        assert_eq!(rows.len(), 4);
        let got: Vec<_> = rows
            .columns()
            .map(|c| {
                let columns = (
                    c.request_id.to_owned(),
                    c.name.to_owned(),
                    c.value.to_owned(),
                    c.value_num,
                    c.value_type.to_owned(),
                    c.method.to_owned(),
                    c.route.map(str::to_owned),
                );
                (columns, c.recorded_at.to_owned())
            })
            .collect();
        let expected: Vec<_> = records
            .iter()
            .map(|r| {
                let at = crate::record::format_utc_micros(r.unix_micros());
                (expected_columns(r), at)
            })
            .collect();
        // Compared as text: NaN is not equal to itself.
        assert_eq!(format!("{got:?}"), format!("{expected:?}"));
        assert_eq!(got[0].1, "2023-11-14T22:13:20.123456Z");
        assert_eq!(got[3].1, "2023-11-14T22:13:20.123457Z");
    }
}
