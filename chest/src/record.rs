//! The unit every chest writes.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Value;

/// One tracked variable of one request: Flask-Chest's `(name, value, request_id)` tuple plus the
/// request's method, route template and the time it was recorded.
///
/// The strings are `Arc<str>` so that all records of a request share one request id, one method and
/// one route, and cloning a record (into a queue, a batch, a retry) copies no text but the value's.
///
/// ```
/// use chest::{Record, Value};
///
/// let r = Record::new("req-1", "latency_ms", 12, "GET", Some("/items/{id}"));
/// assert_eq!(&*r.request_id, "req-1");
/// assert_eq!(r.value, Value::Int(12));
/// assert!(r.recorded_at().ends_with('Z'));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Record {
    /// The id of the request that recorded the variable.
    pub request_id: Arc<str>,
    /// The variable's name (1–255 bytes, no control characters).
    pub name: Arc<str>,
    /// The variable's value.
    pub value: Value,
    /// The HTTP method, e.g. `GET`.
    pub method: Arc<str>,
    /// The route template that matched (`/items/{id}`), never the raw path; `None` when the
    /// request matched no route.
    pub route: Option<Arc<str>>,
    /// When the handler's response was ready.
    pub time: SystemTime,
}

impl Record {
    /// A record stamped with the current time.
    pub fn new(
        request_id: impl Into<Arc<str>>,
        name: impl Into<Arc<str>>,
        value: impl Into<Value>,
        method: impl Into<Arc<str>>,
        route: Option<&str>,
    ) -> Self {
        Record {
            request_id: request_id.into(),
            name: name.into(),
            value: value.into(),
            method: method.into(),
            route: route.map(Arc::from),
            time: SystemTime::now(),
        }
    }

    /// Returns the record with its time replaced.
    pub fn at(mut self, time: SystemTime) -> Self {
        self.time = time;
        self
    }

    /// Microseconds since the Unix epoch (negative before it).
    pub fn unix_micros(&self) -> i64 {
        signed_since_epoch(self.time, |d| d.as_micros())
    }

    /// Nanoseconds since the Unix epoch (negative before it), InfluxDB's default precision.
    pub fn unix_nanos(&self) -> i64 {
        signed_since_epoch(self.time, |d| d.as_nanos())
    }

    /// The time as UTC RFC 3339 with microseconds, e.g. `2026-11-29T21:06:26.123456Z`: the text
    /// SQL chests store in `recorded_at`. It sorts as text in time order.
    pub fn recorded_at(&self) -> String {
        format_utc_micros(self.unix_micros())
    }

    /// A rough size in bytes, for batch byte budgets.
    pub fn approx_size(&self) -> usize {
        // The shared strings are counted once per record on purpose: each chest writes them again.
        48 + self.request_id.len()
            + self.name.len()
            + self.method.len()
            + self.route.as_deref().map_or(0, str::len)
            + self.value.approx_len()
    }
}

fn signed_since_epoch(time: SystemTime, unit: impl Fn(Duration) -> u128) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(unit(d)).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(unit(e.duration())).map_or(i64::MIN, |v| -v),
    }
}

/// Formats microseconds since the Unix epoch as UTC RFC 3339 (`YYYY-MM-DDTHH:MM:SS.ffffffZ`).
pub(crate) fn format_utc_micros(micros: i64) -> String {
    let mut text = String::with_capacity(UTC_MICROS_LEN);
    push_utc_micros(&mut text, micros);
    text
}

/// The length of [`format_utc_micros`]'s text for the years 0 to 9999.
const UTC_MICROS_LEN: usize = "YYYY-MM-DDTHH:MM:SS.ffffffZ".len();

/// Appends [`format_utc_micros`]'s text to `out`. The digits are placed by hand: the SQLite
/// writer formats a time per request, and `format!` took a fifth of its instructions.
pub(crate) fn push_utc_micros(out: &mut String, micros: i64) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let Ok(year @ 0..=9999) = u32::try_from(y) else {
        // Outside four digits (never a clock's reading): the general formatter.
        let _ = write!(
            out,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        );
        return;
    };
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let fields = [
        (0..4, year),
        (5..7, m),
        (8..10, d),
        (11..13, (rem / 3600) as u32),
        (14..16, (rem % 3600 / 60) as u32),
        (17..19, (rem % 60) as u32),
        (20..26, frac as u32),
    ];
    for (at, mut value) in fields {
        for digit in text[at].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    // Only ASCII digits and separators were written.
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

/// Parses the text [`format_utc_micros`] writes (also without fraction, with fewer fraction digits
/// and with a space instead of `T`) back to microseconds since the Unix epoch.
pub(crate) fn parse_utc_micros(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = text.split_once(['T', ' '])?;
    let mut ymd = date.splitn(3, '-').map(str::parse::<i64>);
    let (y, m, d) = (ymd.next()?.ok()?, ymd.next()?.ok()?, ymd.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut parts = hms.splitn(3, ':').map(str::parse::<i64>);
    let (hh, mm, ss) = (
        parts.next()?.ok()?,
        parts.next()?.ok()?,
        parts.next()?.ok()?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let micros = format!("{frac:0<6}").parse::<i64>().ok()?;
    let secs = days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(secs * 1_000_000 + micros)
}

/// A proleptic Gregorian date to days since 1970-01-01: the inverse of [`civil_from_days`].
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The time stamps of one [`Recorder`](crate::Recorder)'s requests: the wall clock, but strictly
/// increasing in microseconds, so that no two requests share a stamp. Stores keyed by time
/// (InfluxDB: measurement, tags and time) would otherwise keep one point of two requests that set
/// a variable in the same microsecond, and microseconds are what the SQL chests and the spool keep.
/// A stamp runs ahead of the clock only while more than a million requests a second arrive.
#[derive(Debug, Default)]
pub(crate) struct RequestClock {
    last_micros: AtomicI64,
}

impl RequestClock {
    /// A stamp later than every stamp given before.
    pub(crate) fn stamp(&self) -> SystemTime {
        let now = signed_since_epoch(SystemTime::now(), |d| d.as_micros());
        let mut next = now;
        // `fetch_update` retries only when another thread stamped in between.
        let _ = self
            .last_micros
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                next = now.max(last.saturating_add(1));
                Some(next)
            });
        time_from_micros(next)
    }
}

/// Microseconds since the Unix epoch as a `SystemTime`.
pub(crate) fn time_from_micros(micros: i64) -> SystemTime {
    let magnitude = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day): Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl serde::Serialize for Record {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Record", 7)?;
        st.serialize_field("request_id", &*self.request_id)?;
        st.serialize_field("name", &*self.name)?;
        st.serialize_field("value", &self.value)?;
        st.serialize_field("value_type", self.value.type_name())?;
        st.serialize_field("method", &*self.method)?;
        st.serialize_field("route", &self.route.as_deref())?;
        st.serialize_field("recorded_at", &self.recorded_at())?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc() {
        assert_eq!(format_utc_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_utc_micros(1_709_251_199_999_999),
            "2024-02-29T23:59:59.999999Z"
        );
        assert_eq!(format_utc_micros(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(
            format_utc_micros(951_782_400_000_000),
            "2000-02-29T00:00:00.000000Z"
        );
        // Past four-digit years, the general formatter's text (as before the digits by hand).
        assert_eq!(
            format_utc_micros(253_402_300_800_000_000),
            "10000-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            format_utc_micros(-62_167_219_200_000_001),
            "-001-12-31T23:59:59.999999Z"
        );
        let mut text = String::from("at ");
        push_utc_micros(&mut text, 1_000_001);
        assert_eq!(text, "at 1970-01-01T00:00:01.000001Z");
    }

    #[test]
    fn parses_what_it_formats() {
        for micros in [
            0,
            1,
            -1,
            1_709_251_199_999_999,
            951_782_400_000_000,
            -86_400_000_001,
        ] {
            assert_eq!(parse_utc_micros(&format_utc_micros(micros)), Some(micros));
        }
        assert_eq!(parse_utc_micros("1970-01-01 00:00:01.5"), Some(1_500_000));
        assert_eq!(parse_utc_micros("1970-01-01T00:00:01"), Some(1_000_000));
        for bad in [
            "",
            "1970-13-01T00:00:00Z",
            "x",
            "1970-01-01T00:00:00.1234567Z",
        ] {
            assert_eq!(parse_utc_micros(bad), None, "{bad}");
        }
        let t = time_from_micros(-5);
        assert_eq!(
            Record::new("r", "n", 1, "GET", None).at(t).unix_micros(),
            -5
        );
    }

    #[test]
    fn times_since_epoch() {
        let r = Record::new("r", "n", 1, "GET", None).at(UNIX_EPOCH + Duration::from_nanos(1_500));
        assert_eq!(r.unix_nanos(), 1_500);
        assert_eq!(r.unix_micros(), 1);
        let before = r.at(UNIX_EPOCH - Duration::from_micros(3));
        assert_eq!(before.unix_micros(), -3);
    }

    #[test]
    fn serializes_with_type() {
        let r = Record::new("r", "n", 2.5, "POST", Some("/x")).at(UNIX_EPOCH);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"request_id": "r", "name": "n", "value": 2.5, "value_type": "float",
                "method": "POST", "route": "/x", "recorded_at": "1970-01-01T00:00:00.000000Z"})
        );
    }

    /// Threads stamping at once never share a microsecond, and each sees its stamps rise.
    #[test]
    fn request_stamps_are_distinct_microseconds() {
        let clock = std::sync::Arc::new(RequestClock::default());
        let before = signed_since_epoch(SystemTime::now(), |d| d.as_micros());
        let per_thread: Vec<Vec<i64>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let clock = clock.clone();
                    s.spawn(move || {
                        (0..20_000)
                            .map(|_| signed_since_epoch(clock.stamp(), |d| d.as_micros()))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for stamps in &per_thread {
            assert!(stamps.windows(2).all(|w| w[0] < w[1]));
            assert!(stamps[0] >= before);
        }
        let mut all: Vec<i64> = per_thread.concat();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 80_000);
    }
}
