//! Records as InfluxDB line protocol: see [`LineEncoder`].

use std::io::{self, Write};

use crate::{Error, Record, Value};

/// The tag keys chest writes itself, and keys InfluxDB reserves: custom tags may not use them.
const RESERVED_TAG_KEYS: [&str; 5] = ["method", "route", "request_id", "value", "time"];

/// Why a record cannot be written as line protocol.
///
/// ```
/// use chest::chests::influxdb::{LineEncoder, LineError};
/// use chest::Record;
///
/// let encoder = LineEncoder::new([("host", "a")], false).unwrap();
/// let mut out = Vec::new();
/// let nan = Record::new("r1", "latency", f64::NAN, "GET", None);
/// assert!(matches!(encoder.encode_record(&nan, &mut out), Err(LineError::NonFinite(_))));
/// assert!(out.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// NaN or ±Inf.
    #[error("the value {0} cannot be written: line protocol has no NaN or infinity")]
    NonFinite(f64),
    /// A measurement or tag that would be empty.
    #[error("{0} is empty, which line protocol cannot carry")]
    Empty(String),
    /// A measurement or tag with an ASCII control character.
    #[error("{0} holds a control character (newline, tab, ...), which line protocol cannot carry in names and tags")]
    ControlCharacter(String),
    /// A measurement or tag with a backslash that InfluxDB versions read differently.
    #[error("{0} has a backslash before a backslash, comma, space or (in a tag) equals sign, or at its end, which InfluxDB 1.x/2.x and InfluxDB 3 read back differently")]
    AmbiguousBackslash(String),
    /// A measurement starting with `#`.
    #[error("{0} starts with `#`, which would turn the line into a comment")]
    Comment(String),
}

/// Where a string goes in a line: each place escapes a different set of characters.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    Measurement,
    Tag,
}

/// What to do with each byte in a measurement or tag.
#[derive(Clone, Copy, PartialEq)]
enum Class {
    Plain,
    Escape,
    Backslash,
    Control,
}

const fn classes(place: Place) -> [Class; 256] {
    let mut table = [Class::Plain; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = Class::Control;
        b += 1;
    }
    table[0x7f] = Class::Control;
    table[b'\\' as usize] = Class::Backslash;
    table[b',' as usize] = Class::Escape;
    table[b' ' as usize] = Class::Escape;
    if let Place::Tag = place {
        table[b'=' as usize] = Class::Escape;
    }
    table
}

const MEASUREMENT: [Class; 256] = classes(Place::Measurement);
const TAG: [Class; 256] = classes(Place::Tag);

/// Appends `text` escaped for `place`, or says why it cannot be; `what` names the text for the
/// error (only called on failure).
fn write_escaped(
    out: &mut Vec<u8>,
    text: &str,
    place: Place,
    what: impl FnOnce() -> String,
) -> Result<(), LineError> {
    let table = match place {
        Place::Measurement => &MEASUREMENT,
        Place::Tag => &TAG,
    };
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Err(LineError::Empty(what()));
    }
    // Most names and tags need nothing: copy them in one go. The check is a fold of compares
    // without early exit, which the compiler vectorises; it flags exactly the bytes the tables
    // do not class as plain (the property tests cover both paths).
    let tag = place == Place::Tag;
    let plain = !bytes.iter().fold(false, |care, &b| {
        care | (b < 0x20)
            | (b == 0x7f)
            | (b == b'\\')
            | (b == b',')
            | (b == b' ')
            | (tag & (b == b'='))
    });
    if plain {
        out.extend_from_slice(bytes);
        return Ok(());
    }
    for (i, &b) in bytes.iter().enumerate() {
        match table[usize::from(b)] {
            Class::Plain => out.push(b),
            Class::Escape => out.extend_from_slice(&[b'\\', b]),
            Class::Control => return Err(LineError::ControlCharacter(what())),
            Class::Backslash => match bytes.get(i + 1) {
                Some(&next)
                    if !matches!(table[usize::from(next)], Class::Escape | Class::Backslash) =>
                {
                    out.push(b)
                }
                _ => return Err(LineError::AmbiguousBackslash(what())),
            },
        }
    }
    Ok(())
}

/// Writes into a string field: escapes double quotes and backslashes as they pass.
struct StringField<'a>(&'a mut Vec<u8>);

impl Write for StringField<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The common case, nothing to escape, checked without early exit (vectorised).
        if !buf
            .iter()
            .fold(false, |care, &b| care | (b == b'"') | (b == b'\\'))
        {
            self.0.extend_from_slice(buf);
            return Ok(buf.len());
        }
        let mut rest = buf;
        while let Some(i) = rest.iter().position(|&b| b == b'"' || b == b'\\') {
            self.0.extend_from_slice(&rest[..i]);
            self.0.extend_from_slice(&[b'\\', rest[i]]);
            rest = &rest[i + 1..];
        }
        self.0.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn write_string_field(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    // Writing into a Vec cannot fail.
    let _ = StringField(out).write_all(text.as_bytes());
    out.push(b'"');
}

/// `00`, `01`, ... `99`: integers are written two digits at a time (every line has a 19-digit
/// timestamp).
const DIGIT_PAIRS: [u8; 200] = {
    let mut pairs = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        pairs[2 * i] = b'0' + (i / 10) as u8;
        pairs[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    pairs
};

/// Appends the decimal digits of `n`.
fn write_int(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    while rest >= 100 {
        let pair = (rest % 100) as usize * 2;
        rest /= 100;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if rest >= 10 {
        let pair = rest as usize * 2;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        digits[at] = b'0' + rest as u8;
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends a finite float in its shortest round-trip form, as JSON writes it (`2.5`, `5.0`,
/// `1e+300`): serde_json's formatter is several times faster than `Display`, which would also
/// spell 1e300 with 301 digits.
fn write_float(out: &mut Vec<u8>, x: f64) -> Result<(), LineError> {
    if !x.is_finite() {
        return Err(LineError::NonFinite(x));
    }
    // A finite float always serialises, and writing into a Vec cannot fail.
    let _ = serde_json::to_writer(out, &x);
    Ok(())
}

fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<(), LineError> {
    match value {
        Value::Int(i) => {
            write_int(out, *i);
            out.push(b'i');
        }
        Value::Float(x) => write_float(out, *x)?,
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Text(text) => write_string_field(out, text),
        Value::Json(json) => {
            out.push(b'"');
            // Serialising a JSON value into a Vec cannot fail.
            let _ = serde_json::to_writer(StringField(out), json);
            out.push(b'"');
        }
    }
    Ok(())
}

/// One tag of every line, in sorted key order.
#[derive(Debug, Clone)]
enum TagSlot {
    /// A custom tag, already escaped: `,key=value`.
    Custom(Box<[u8]>),
    Method,
    Route,
    RequestId,
}

/// Encodes records as line protocol: the point shape and escaping of the
/// [InfluxDB chest](super::InfluxDbChest), usable on its own (to write files, or to benchmark).
///
/// One record is one line:
///
/// ```text
/// <name>[,<custom tags>][,method=<method>][,request_id=<id>][,route=<route>] value=<value>[,request_id="<id>"] <ns>
/// ```
///
/// Tags are written sorted by key (what InfluxDB prefers); `method`, `route` and `request_id` are
/// left out when empty or absent (line protocol has no empty tag values). The `value` field keeps
/// the record's type: `42i` integers, floats (shortest round-trip form, exponent notation for very
/// large or small magnitudes), `true`/`false`, and strings (text, and JSON serialised) in double
/// quotes.
///
/// ## Escaping, and what is refused
/// - Measurement: commas and spaces are escaped; tag keys and values: commas, spaces and equals
///   signs; string fields: double quotes and backslashes. Newlines inside string fields (text,
///   JSON, the request id field) are written as they are, which InfluxDB and influxdata's parsers
///   keep; VictoriaMetrics, which stores no strings, splits the line there and drops that point.
/// - Line protocol cannot carry a newline or tab in a measurement or a tag, so a record whose
///   name, method, route (or request id, as a tag) holds an ASCII control character is refused
///   rather than rewritten: chest does not silently change names.
/// - A backslash in a measurement or tag is written as is, which every InfluxDB reads back as a
///   backslash, except right before a backslash, comma or space (in tags also an equals sign)
///   or at the very end: there InfluxDB 1.x/2.x keep both backslashes of `\\` while InfluxDB 3
///   and influxdata's Rust parser read one, so no spelling is read back the same by all. Such
///   records are refused.
/// - A name starting with `#` would turn the line into a comment: refused.
/// - NaN and ±Inf have no line-protocol form: refused.
///
/// A refused record is reported with a [`LineError`]; the other records of a batch are encoded.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use chest::chests::influxdb::LineEncoder;
/// use chest::Record;
///
/// let encoder = LineEncoder::new([("host", "web 1")], false).unwrap();
/// let record = Record::new("req-7", "latency_ms", 12, "GET", Some("/items/{id}"))
///     .at(UNIX_EPOCH + Duration::from_nanos(1_500));
/// let mut out = Vec::new();
/// let refused = encoder.encode(&[record], &mut out);
/// assert!(refused.is_empty());
/// assert_eq!(
///     String::from_utf8(out).unwrap(),
///     "latency_ms,host=web\\ 1,method=GET,route=/items/{id} value=12i,request_id=\"req-7\" 1500\n"
/// );
/// ```
#[derive(Debug, Clone)]
pub struct LineEncoder {
    tags: Vec<TagSlot>,
    request_id_as_tag: bool,
}

/// A record [`LineEncoder::encode`] left out, and why.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Refusal {
    /// The record's position in the slice given to `encode`.
    pub index: usize,
    /// Why it cannot be written.
    pub error: LineError,
}

impl LineEncoder {
    /// An encoder adding `custom_tags` to every point (Flask-Chest's `custom_tags`), with the
    /// request id as a tag when `request_id_as_tag` (Flask-Chest's shape; every request then
    /// makes a new series) or else as a string field.
    ///
    /// Fails when a custom tag is not writable (see [`LineEncoder`]), when its key is one
    /// chest writes itself (`method`, `route`, `request_id`, `value`) or `time`, or when it starts
    /// with `_` (InfluxDB 2 reserves those). A key given twice keeps the last value.
    pub fn new<K, V>(
        custom_tags: impl IntoIterator<Item = (K, V)>,
        request_id_as_tag: bool,
    ) -> Result<Self, Error>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let custom: std::collections::BTreeMap<String, String> = custom_tags
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let mut keyed: Vec<(String, TagSlot)> = Vec::with_capacity(custom.len() + 3);
        for (key, value) in custom {
            if RESERVED_TAG_KEYS.contains(&key.as_str()) || key.starts_with('_') {
                return Err(Error::Config(format!(
                    "custom tag `{key}` is reserved: chest writes `method`, `route`, `request_id` \
                     and the field `value` itself, InfluxDB reserves `time` and keys starting \
                     with `_`; choose another key"
                )));
            }
            let mut escaped = vec![b','];
            let invalid = |e: LineError| Error::Config(format!("invalid custom tag: {e}"));
            write_escaped(&mut escaped, &key, Place::Tag, || {
                format!("the custom tag key {key:?}")
            })
            .map_err(invalid)?;
            escaped.push(b'=');
            write_escaped(&mut escaped, &value, Place::Tag, || {
                format!("the value {value:?} of custom tag `{key}`")
            })
            .map_err(invalid)?;
            keyed.push((key, TagSlot::Custom(escaped.into_boxed_slice())));
        }
        keyed.push(("method".into(), TagSlot::Method));
        keyed.push(("route".into(), TagSlot::Route));
        if request_id_as_tag {
            keyed.push(("request_id".into(), TagSlot::RequestId));
        }
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(LineEncoder {
            tags: keyed.into_iter().map(|(_, slot)| slot).collect(),
            request_id_as_tag,
        })
    }

    /// Whether the request id is written as a tag (else as a field).
    pub fn request_id_as_tag(&self) -> bool {
        self.request_id_as_tag
    }

    /// Appends one line per record to `out`, in order, and returns the records it refused (their
    /// lines are left out; the others are written).
    pub fn encode(&self, records: &[Record], out: &mut Vec<u8>) -> Vec<Refusal> {
        let mut refused = Vec::new();
        for (index, record) in records.iter().enumerate() {
            if let Err(error) = self.encode_record(record, out) {
                refused.push(Refusal { index, error });
            }
        }
        refused
    }

    /// Appends the record's line (with its final newline) to `out`, or leaves `out` as it was and
    /// says why the record cannot be written.
    pub fn encode_record(&self, record: &Record, out: &mut Vec<u8>) -> Result<(), LineError> {
        let start = out.len();
        let result = self.write_line(record, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn write_line(&self, record: &Record, out: &mut Vec<u8>) -> Result<(), LineError> {
        let name = &*record.name;
        if name.starts_with('#') {
            return Err(LineError::Comment(format!("the variable name {name:?}")));
        }
        write_escaped(out, name, Place::Measurement, || {
            format!("the variable name {name:?}")
        })?;
        for slot in &self.tags {
            match slot {
                TagSlot::Custom(escaped) => out.extend_from_slice(escaped),
                TagSlot::Method => write_tag(out, "method", &record.method)?,
                TagSlot::Route => write_tag(out, "route", record.route.as_deref().unwrap_or(""))?,
                TagSlot::RequestId => write_tag(out, "request_id", &record.request_id)?,
            }
        }
        out.extend_from_slice(b" value=");
        write_value(out, &record.value)?;
        if !self.request_id_as_tag {
            out.extend_from_slice(b",request_id=");
            write_string_field(out, &record.request_id);
        }
        out.push(b' ');
        write_int(out, record.unix_nanos());
        out.push(b'\n');
        Ok(())
    }
}

/// Appends `,key=value`, or nothing when `value` is empty.
fn write_tag(out: &mut Vec<u8>, key: &str, value: &str) -> Result<(), LineError> {
    if value.is_empty() {
        return Ok(());
    }
    out.push(b',');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    write_escaped(out, value, Place::Tag, || format!("the {key} {value:?}"))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn line(encoder: &LineEncoder, record: &Record) -> Result<String, LineError> {
        let mut out = Vec::new();
        encoder.encode_record(record, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn record(name: &str, value: impl Into<Value>) -> Record {
        Record::new("r-1", name, value, "GET", Some("/a")).at(UNIX_EPOCH + Duration::from_nanos(42))
    }

    #[test]
    fn every_value_type() {
        let e = LineEncoder::new(Vec::<(String, String)>::new(), false).unwrap();
        let cases: [(Value, &str); 14] = [
            (Value::Int(-3), "-3i"),
            (Value::Int(i64::MIN), "-9223372036854775808i"),
            (Value::Int(0), "0i"),
            (Value::Int(7), "7i"),
            (Value::Int(10), "10i"),
            (Value::Int(100), "100i"),
            (Value::Int(i64::MAX), "9223372036854775807i"),
            (Value::Float(2.5), "2.5"),
            (Value::Float(-0.0), "-0.0"),
            (Value::Float(1e300), "1e+300"),
            (Value::Float(1.5e-7), "1.5e-7"),
            (Value::Bool(true), "true"),
            (
                Value::Text("say \"hi\" \\o/".into()),
                r#""say \"hi\" \\o/""#,
            ),
            (
                Value::Json(serde_json::json!({"k": "v\"w"})),
                r#""{\"k\":\"v\\\"w\"}""#,
            ),
        ];
        for (value, field) in cases {
            assert_eq!(
                line(&e, &record("m", value)).unwrap(),
                format!("m,method=GET,route=/a value={field},request_id=\"r-1\" 42\n")
            );
        }
    }

    #[test]
    fn tags_are_sorted_and_request_id_can_be_a_tag() {
        let e = LineEncoder::new([("zone", "z"), ("app", "a b"), ("region", "r")], true).unwrap();
        assert_eq!(
            line(&e, &record("m", 1)).unwrap(),
            "m,app=a\\ b,method=GET,region=r,request_id=r-1,route=/a,zone=z value=1i 42\n"
        );
        let no_route = Record::new("", "m", 1, "POST", None).at(UNIX_EPOCH);
        assert_eq!(
            line(&e, &no_route).unwrap(),
            "m,app=a\\ b,method=POST,region=r,zone=z value=1i 0\n"
        );
    }

    #[test]
    fn escapes_names_and_tags() {
        let e = LineEncoder::new([("k,e y=", "v,a l=")], false).unwrap();
        let r = Record::new("a b,c=d", "m, x=y", 1, "GET", Some("/p a,t=h")).at(UNIX_EPOCH);
        assert_eq!(
            line(&e, &r).unwrap(),
            "m\\,\\ x=y,k\\,e\\ y\\==v\\,a\\ l\\=,method=GET,route=/p\\ a\\,t\\=h value=1i,request_id=\"a b,c=d\" 0\n"
        );
        // A lone backslash before an ordinary character is written as it is.
        assert!(line(&e, &record("C:\\temp", 1))
            .unwrap()
            .starts_with("C:\\temp,"));
    }

    #[test]
    fn refuses_what_line_protocol_cannot_carry() {
        let e = LineEncoder::new([("host", "h")], true).unwrap();
        let refused = |r: Record| line(&e, &r).unwrap_err();
        assert!(matches!(
            refused(record("m", f64::NAN)),
            LineError::NonFinite(_)
        ));
        assert!(matches!(
            refused(record("m", f64::NEG_INFINITY)),
            LineError::NonFinite(_)
        ));
        assert!(matches!(
            refused(record("a\nb", 1)),
            LineError::ControlCharacter(_)
        ));
        assert!(matches!(refused(record("#m", 1)), LineError::Comment(_)));
        assert!(matches!(refused(record("", 1)), LineError::Empty(_)));
        for name in ["m\\", "a\\\\b", "a\\,b", "a\\ b"] {
            assert!(
                matches!(refused(record(name, 1)), LineError::AmbiguousBackslash(_)),
                "{name}"
            );
        }
        // `=` is not special in a measurement, so `\=` there is an ordinary backslash.
        assert!(line(&e, &record("a\\=b", 1)).is_ok());
        let tab_id = Record::new("id\t1", "m", 1, "GET", None);
        let err = refused(tab_id);
        assert!(err.to_string().contains("request_id"), "{err}");
        let route = Record::new("r", "m", 1, "GET", Some("/a\\=b"));
        assert!(matches!(refused(route), LineError::AmbiguousBackslash(_)));
    }

    #[test]
    fn refused_records_leave_nothing_behind() {
        let e = LineEncoder::new(Vec::<(String, String)>::new(), false).unwrap();
        let records = [record("a", 1), record("b", f64::NAN), record("c", 3)];
        let mut out = b"prefix\n".to_vec();
        let refused = e.encode(&records, &mut out);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].index, 1);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(!text.contains("\nb,"));
    }

    #[test]
    fn custom_tags_are_checked() {
        for key in ["request_id", "method", "route", "value", "time", "_field"] {
            let err = LineEncoder::new([(key, "x")], false)
                .unwrap_err()
                .to_string();
            assert!(err.contains("reserved"), "{err}");
        }
        for (key, value) in [("k", ""), ("", "v"), ("k", "a\nb"), ("k", "a\\")] {
            assert!(
                LineEncoder::new([(key, value)], false).is_err(),
                "{key:?}={value:?}"
            );
        }
    }
}
