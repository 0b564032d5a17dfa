//! Typed values that handlers record.

use std::fmt;

/// A value recorded by a handler.
///
/// Every usual Rust scalar converts into a `Value` with `From`, so `vars.set("n", 3)` and
/// `vars.set("ok", true)` just work. Chests keep the type: SQL chests store the text form in the
/// Flask-Chest compatible `value` column, the number in `value_num` and the type's name in
/// `value_type`; InfluxDB writes a typed field.
///
/// ```
/// use chest::Value;
///
/// assert_eq!(Value::from(3u8), Value::Int(3));
/// assert_eq!(Value::from(0.25).as_f64(), Some(0.25));
/// assert_eq!(Value::from("GET").to_string(), "GET");
/// assert_eq!(Value::from(true).type_name(), "bool");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// A signed integer.
    Int(i64),
    /// A floating point number. NaN and ±Inf are allowed here; each chest documents what it does
    /// with them (SQL chests store them as text with a NULL `value_num`).
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Text.
    Text(String),
    /// Any JSON document.
    Json(serde_json::Value),
}

impl Value {
    /// The short type name chests store next to the value: `int`, `float`, `bool`, `text` or `json`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Bool(_) => "bool",
            Value::Text(_) => "text",
            Value::Json(_) => "json",
        }
    }

    /// Appends the text SQL chests store in `value` to `out`: a text as itself, anything else in
    /// its [`Display`](fmt::Display) form. Integers skip the formatting machinery: the SQLite
    /// chest does this per row.
    #[cfg(any(feature = "sqlite", test))]
    pub(crate) fn push_text(&self, out: &mut String) {
        match self {
            Value::Text(t) => out.push_str(t),
            Value::Bool(true) => out.push_str("true"),
            Value::Bool(false) => out.push_str("false"),
            Value::Int(i) => out.push_str(itoa::Buffer::new().format(*i)),
            other => {
                let _ = fmt::Write::write_fmt(out, format_args!("{other}"));
            }
        }
    }

    /// The value as a finite number, for aggregation: integers and finite floats as themselves,
    /// booleans as 1 or 0. Text, JSON, NaN and ±Inf give `None`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) if f.is_finite() => Some(f),
            Value::Bool(b) => Some(if b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }

    /// The length in bytes of the value's text form, without formatting numbers: what batching
    /// counts against its byte budget.
    pub fn approx_len(&self) -> usize {
        match self {
            Value::Text(s) => s.len(),
            Value::Json(_) => 64,
            _ => 8,
        }
    }

    /// Parses a value back from the text and type name a chest stored (the inverse of
    /// the `Display` text and [`Value::type_name`]). Unknown type names give text.
    pub fn from_stored(text: &str, type_name: &str) -> Value {
        let parsed = match type_name {
            "int" => text.parse().ok().map(Value::Int),
            "float" => parse_float(text).map(Value::Float),
            "bool" => text.parse().ok().map(Value::Bool),
            "json" => serde_json::from_str(text).ok().map(Value::Json),
            _ => None,
        };
        parsed.unwrap_or_else(|| Value::Text(text.to_owned()))
    }
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

/// The text form stored in the `value` column: integers and floats as Rust prints them (shortest
/// round-trip form; NaN, `inf`, `-inf`), `true`/`false`, text as is, JSON serialised.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Text(s) => f.write_str(s),
            Value::Json(j) => write!(f, "{j}"),
        }
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self { Value::Int(i64::from(v)) }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

/// Integers wider than `i64` that do not fit are stored as text, so no digit is lost.
macro_rules! from_wide_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                i64::try_from(v).map_or_else(|_| Value::Text(v.to_string()), Value::Int)
            }
        }
    )*};
}
from_wide_int!(u64, i128, u128, isize, usize);

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::Float(f64::from(v))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<std::borrow::Cow<'_, str>> for Value {
    fn from(v: std::borrow::Cow<'_, str>) -> Self {
        Value::Text(v.into_owned())
    }
}

impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Self {
        Value::Json(v)
    }
}

/// A duration is recorded as seconds, a float, like Flask-Chest's `response_time`.
impl From<std::time::Duration> for Value {
    fn from(v: std::time::Duration) -> Self {
        Value::Float(v.as_secs_f64())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    /// `None` is recorded as JSON `null`.
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Json(serde_json::Value::Null), Into::into)
    }
}

impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Int(i) => s.serialize_i64(*i),
            // JSON has no NaN or infinity: those go out as their text form.
            Value::Float(f) if !f.is_finite() => s.serialize_str(&f.to_string()),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Text(t) => s.serialize_str(t),
            Value::Json(j) => j.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_text_is_the_display_form() {
        let mut scratch = String::from("left over");
        for value in [
            Value::Int(i64::MIN),
            Value::Int(-7),
            Value::Int(0),
            Value::Int(i64::MAX),
            Value::Float(0.1 + 0.2),
            Value::Float(1e21),
            Value::Float(f64::NAN),
            Value::Bool(true),
            Value::Bool(false),
            Value::from("plain"),
            Value::Json(serde_json::json!({"a": [1, 2]})),
        ] {
            scratch.truncate(1);
            value.push_text(&mut scratch);
            assert_eq!(scratch[1..], value.to_string(), "{value:?}");
        }
    }

    #[test]
    fn conversions_keep_types() {
        assert_eq!(Value::from(-7i32), Value::Int(-7));
        assert_eq!(Value::from(u64::MAX), Value::Text(u64::MAX.to_string()));
        assert_eq!(Value::from(5usize), Value::Int(5));
        assert_eq!(Value::from(1.5f32), Value::Float(1.5));
        assert_eq!(
            Value::from(None::<i32>),
            Value::Json(serde_json::Value::Null)
        );
        assert_eq!(
            Value::from(std::time::Duration::from_millis(250)),
            Value::Float(0.25)
        );
    }

    #[test]
    fn stored_form_round_trips() {
        for v in [
            Value::Int(i64::MIN),
            Value::Float(0.1),
            Value::Float(f64::NEG_INFINITY),
            Value::Bool(false),
            Value::Text("a \"b\"".into()),
            Value::Json(serde_json::json!({"k": [1, 2]})),
        ] {
            assert_eq!(Value::from_stored(&v.to_string(), v.type_name()), v);
        }
        let nan = Value::from_stored("NaN", "float");
        assert!(matches!(nan, Value::Float(f) if f.is_nan()));
    }

    #[test]
    fn numbers_for_aggregation() {
        assert_eq!(Value::Bool(true).as_f64(), Some(1.0));
        assert_eq!(Value::Float(f64::NAN).as_f64(), None);
        assert_eq!(Value::Text("1".into()).as_f64(), None);
    }

    #[test]
    fn serializes_non_finite_as_text() {
        let json = serde_json::to_string(&[Value::Float(f64::INFINITY), Value::Int(2)]).unwrap();
        assert_eq!(json, r#"["inf",2]"#);
    }
}
