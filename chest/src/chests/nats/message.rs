//! The message format: one batch of records per JetStream message, as JSON, versioned.
//!
//! ```json
//! {"format":1,"batch":"0191c4…(32 hex digits)","records":[
//!   {"request_id":"6f1c…","name":"latency_ms","type":"int","value":12,
//!    "method":"GET","route":"/items/{id}","time_ns":1764000000123456000}]}
//! ```
//!
//! - `format`: 1. A reader refuses a format it does not know ([`MessageError::Format`]).
//! - `batch`: the [`BatchId`], also the message's `Nats-Msg-Id` header.
//! - `type`: `int`, `float`, `bool`, `text` or `json` ([`Value::type_name`]). `value` is a JSON
//!   number, boolean, string or any JSON document accordingly; NaN and ±Inf floats are the strings
//!   `"NaN"`, `"inf"`, `"-inf"`.
//! - `route` is absent when the request matched no route; `time_ns`: nanoseconds since the Unix
//!   epoch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{BatchId, Record, Value};

/// The format version this crate writes and reads.
pub const FORMAT: u32 = 1;

/// Why a message is not a batch of records.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Not JSON of the expected shape.
    #[error("not a chest message: {0}")]
    Json(#[from] serde_json::Error),
    /// A format version this crate does not read.
    #[error("message format {0} is not known to this chest version (it reads format {FORMAT})")]
    Format(u32),
    /// The batch id is not 32 hexadecimal digits.
    #[error("bad batch id: {0}")]
    BatchId(#[from] crate::ParseBatchIdError),
    /// A value that does not match its type.
    #[error("record {index}: value is not of type `{type_name}`")]
    Value {
        /// The record's position in the message.
        index: usize,
        /// The type it claims.
        type_name: String,
    },
}

#[derive(Serialize)]
struct Out<'a> {
    format: u32,
    batch: String,
    records: Vec<OutRecord<'a>>,
}

#[derive(Serialize)]
struct OutRecord<'a> {
    request_id: &'a str,
    name: &'a str,
    #[serde(rename = "type")]
    type_name: &'static str,
    value: serde_json::Value,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    time_ns: i64,
}

#[derive(Deserialize)]
struct In {
    format: u32,
    batch: String,
    #[serde(default)]
    records: Vec<InRecord>,
}

#[derive(Deserialize)]
struct InRecord {
    request_id: String,
    name: String,
    #[serde(rename = "type")]
    type_name: String,
    value: serde_json::Value,
    method: String,
    route: Option<String>,
    time_ns: i64,
}

/// Encodes one batch as a message body.
///
/// ```
/// use chest::chests::nats::message::{decode, encode};
/// use chest::{BatchId, Record};
///
/// let id = BatchId::new();
/// let records = vec![Record::new("r1", "n", 2.5, "POST", Some("/x"))];
/// let (got_id, got) = decode(&encode(id, &records))?;
/// assert_eq!((got_id, got), (id, records));
/// # Ok::<(), chest::chests::nats::message::MessageError>(())
/// ```
pub fn encode(id: BatchId, records: &[Record]) -> Vec<u8> {
    let out = Out {
        format: FORMAT,
        batch: id.to_string(),
        records: records
            .iter()
            .map(|r| OutRecord {
                request_id: &r.request_id,
                name: &r.name,
                type_name: r.value.type_name(),
                value: json_value(&r.value),
                method: &r.method,
                route: r.route.as_deref(),
                time_ns: r.unix_nanos(),
            })
            .collect(),
    };
    serde_json::to_vec(&out).expect("records serialise to JSON")
}

/// Decodes a message body into its batch id and records (see the [module docs](self)).
pub fn decode(body: &[u8]) -> Result<(BatchId, Vec<Record>), MessageError> {
    let message: In = serde_json::from_slice(body)?;
    if message.format != FORMAT {
        return Err(MessageError::Format(message.format));
    }
    let id: BatchId = message.batch.parse()?;
    let records = message
        .records
        .into_iter()
        .enumerate()
        .map(|(index, r)| {
            let value = typed_value(&r.type_name, r.value).ok_or(MessageError::Value {
                index,
                type_name: r.type_name.chars().take(20).collect(),
            })?;
            Ok(Record {
                request_id: r.request_id.into(),
                name: r.name.into(),
                value,
                method: r.method.into(),
                route: r.route.map(Into::into),
                time: time_from_nanos(r.time_ns),
            })
        })
        .collect::<Result<_, MessageError>>()?;
    Ok((id, records))
}

fn json_value(value: &Value) -> serde_json::Value {
    match value {
        Value::Int(i) => (*i).into(),
        Value::Float(f) if f.is_finite() => (*f).into(),
        Value::Float(f) => value_text(*f).into(),
        Value::Bool(b) => (*b).into(),
        Value::Text(s) => s.as_str().into(),
        Value::Json(j) => j.clone(),
    }
}

fn value_text(f: f64) -> String {
    Value::Float(f).to_string()
}

fn typed_value(type_name: &str, value: serde_json::Value) -> Option<Value> {
    use serde_json::Value as J;
    Some(match (type_name, value) {
        ("int", J::Number(n)) => Value::Int(n.as_i64()?),
        ("float", J::Number(n)) => Value::Float(n.as_f64()?),
        ("float", J::String(s)) => match Value::from_stored(&s, "float") {
            v @ Value::Float(_) => v,
            _ => return None,
        },
        ("bool", J::Bool(b)) => Value::Bool(b),
        ("text", J::String(s)) => Value::Text(s),
        ("json", j) => Value::Json(j),
        _ => return None,
    })
}

fn time_from_nanos(nanos: i64) -> SystemTime {
    let magnitude = Duration::from_nanos(nanos.unsigned_abs());
    if nanos >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips() {
        let id = BatchId::new();
        let at = UNIX_EPOCH + Duration::from_nanos(1_764_000_000_123_456_789);
        let values = [
            Value::Int(i64::MIN),
            Value::Float(0.1),
            Value::Float(f64::INFINITY),
            Value::Float(f64::NEG_INFINITY),
            Value::Bool(false),
            Value::Text("🦀 \"quoted\"\0".into()),
            Value::Json(serde_json::json!({"a": [1, null]})),
        ];
        let records: Vec<Record> = values
            .iter()
            .map(|v| Record::new("r", "n", v.clone(), "GET", None).at(at))
            .collect();
        let (got_id, got) = decode(&encode(id, &records)).unwrap();
        assert_eq!(got_id, id);
        assert_eq!(got, records);
        let nan = [Record::new("r", "n", f64::NAN, "GET", Some("/"))];
        let (_, got) = decode(&encode(id, &nan)).unwrap();
        assert!(matches!(got[0].value, Value::Float(f) if f.is_nan()));
    }

    #[test]
    fn foreign_messages_are_refused() {
        assert!(matches!(decode(b"hello"), Err(MessageError::Json(_))));
        let v2 = br#"{"format":2,"batch":"00","records":[]}"#;
        assert!(matches!(decode(v2), Err(MessageError::Format(2))));
        let bad = format!(
            r#"{{"format":1,"batch":"{}","records":[{{"request_id":"r","name":"n","type":"int","value":"x","method":"GET","time_ns":0}}]}}"#,
            BatchId::new()
        );
        let err = decode(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("record 0") && err.contains("int"), "{err}");
    }
}
