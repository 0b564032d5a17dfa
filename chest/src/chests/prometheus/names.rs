//! Metric and label names: turning variable names into valid Prometheus metric names, and checking
//! the names a user configures.
//!
//! Prometheus' (classic) metric names are `[a-zA-Z_:][a-zA-Z0-9_:]*` and label names
//! `[a-zA-Z_][a-zA-Z0-9_]*`; names starting with `__` are reserved for Prometheus itself. Colons
//! are meant for recording rules, so chest never produces them.

use std::fmt;

/// Metric names chest uses for its own metrics. A variable whose metric name starts with one of
/// these is refused, so a handler cannot shadow or corrupt them.
pub(crate) const RESERVED_PREFIXES: [&str; 2] = ["chest_prometheus_", "chest_pipeline_"];

/// Label names chest sets itself, on variables' metrics (`method`, `route`), on histograms (`le`)
/// or on its own metrics (`reason`, `metric`, `chest`). A constant label cannot use them.
pub(crate) const RESERVED_LABELS: [&str; 7] = [
    "method", "route", "le", "quantile", "reason", "metric", "chest",
];

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameError {
    /// Nothing of the name survives sanitising (it has no ASCII letter, digit or `_`).
    NothingLeft,
    /// The name would start with a digit (only possible with an empty prefix).
    StartsWithDigit,
    /// The name would start with `__`, which Prometheus reserves.
    DoubleUnderscore,
    /// The name falls in the namespace of chest's own metrics.
    Reserved,
    /// A configured name (prefix, label name) has a character that is not allowed.
    BadCharacter,
    /// A label name chest sets itself.
    ReservedLabel,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::NothingLeft => {
                "it has no ASCII letter, digit or `_`, so no metric name can be made from it"
            }
            NameError::StartsWithDigit => {
                "the metric name would start with a digit; set a prefix"
            }
            NameError::DoubleUnderscore => "names starting with `__` are reserved by Prometheus",
            NameError::Reserved => {
                "names starting with `chest_prometheus_` or `chest_pipeline_` are chest's own metrics"
            }
            NameError::BadCharacter => "use only ASCII letters, digits and `_`, not starting with a digit",
            NameError::ReservedLabel => {
                "`method`, `route`, `le`, `quantile`, `reason`, `metric` and `chest` are set by chest"
            }
        })
    }
}

/// True for the characters of a (colon-free) Prometheus name.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// True when `name` is `[a-zA-Z_][a-zA-Z0-9_]*` (the empty string is not).
fn is_plain_identifier(name: &str) -> bool {
    name.chars().all(is_name_char) && name.chars().next().is_some_and(|c| !c.is_ascii_digit())
}

/// Checks a metric name prefix: empty, or letters, digits and `_` not starting with a digit or
/// `__`.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), NameError> {
    if prefix.is_empty() {
        Ok(())
    } else if !is_plain_identifier(prefix) {
        Err(NameError::BadCharacter)
    } else if prefix.starts_with("__") {
        Err(NameError::DoubleUnderscore)
    } else {
        Ok(())
    }
}

/// Checks the name of a constant label.
pub(crate) fn check_label_name(name: &str) -> Result<(), NameError> {
    if !is_plain_identifier(name) {
        Err(NameError::BadCharacter)
    } else if name.starts_with("__") {
        Err(NameError::DoubleUnderscore)
    } else if RESERVED_LABELS.contains(&name) {
        Err(NameError::ReservedLabel)
    } else {
        Ok(())
    }
}

/// The metric name of a variable: `prefix` (already checked with [`check_prefix`]) followed by
/// the variable name with every run of characters other than ASCII letters, digits and `_`
/// turned into one `_`, runs of `_` collapsed and `_` trimmed at both ends. For a counter a
/// trailing `_total` is dropped, because the exposition adds it.
///
/// `latency (ms)` becomes `chest_latency_ms`; `db.queries` becomes `chest_db_queries`.
pub(crate) fn metric_name(
    prefix: &str,
    variable: &str,
    counter: bool,
) -> Result<String, NameError> {
    let mut body = String::with_capacity(variable.len());
    for c in variable.chars() {
        let c = if is_name_char(c) { c } else { '_' };
        if c == '_' && (body.is_empty() || body.ends_with('_')) {
            continue;
        }
        body.push(c);
    }
    while body.ends_with('_') {
        body.pop();
    }
    if counter {
        if let Some(stem) = body.strip_suffix("_total").filter(|s| !s.is_empty()) {
            body.truncate(stem.len());
        }
    }
    if body.is_empty() {
        return Err(NameError::NothingLeft);
    }
    let name = format!("{prefix}{body}");
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        Err(NameError::StartsWithDigit)
    } else if name.starts_with("__") {
        Err(NameError::DoubleUnderscore)
    } else if RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        Err(NameError::Reserved)
    } else {
        Ok(name)
    }
}

/// The help text of a variable's metric. The text encoders do not all escape help text, and
/// OpenMetrics does not allow a raw `\` or `"` in it, so those are replaced by `_` (control
/// characters cannot occur in variable names).
pub(crate) fn help_text(variable: &str, kind: &str) -> String {
    let shown = clean_help(variable);
    format!("Tracked variable {shown} ({kind}), recorded by chest")
}

/// Text the encoders can take as help as it is: `\`, `"` and control characters become `_`.
pub(crate) fn clean_help(text: &str) -> String {
    text.chars()
        .map(|c| {
            if matches!(c, '\\' | '"') || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// Whether `name` can be a metric or label name as it is: `[a-zA-Z_][a-zA-Z0-9_]*`, not
/// starting with `__`.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && check_prefix(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitises_variable_names() {
        let cases = [
            ("latency_ms", "chest_latency_ms"),
            ("latency (ms)", "chest_latency_ms"),
            ("db.queries", "chest_db_queries"),
            ("--a--b--", "chest_a_b"),
            ("Größe", "chest_Gr_e"),
            ("5xx", "chest_5xx"),
            ("a:b", "chest_a_b"),
        ];
        for (variable, expected) in cases {
            assert_eq!(
                metric_name("chest_", variable, false).as_deref(),
                Ok(expected)
            );
        }
        assert_eq!(metric_name("", "x", false).as_deref(), Ok("x"));
        assert_eq!(metric_name("app", "x", false).as_deref(), Ok("appx"));
    }

    #[test]
    fn counters_lose_a_total_suffix() {
        assert_eq!(
            metric_name("chest_", "bytes_total", true).as_deref(),
            Ok("chest_bytes")
        );
        assert_eq!(
            metric_name("chest_", "bytes_total", false).as_deref(),
            Ok("chest_bytes_total")
        );
        assert_eq!(metric_name("", "_total", true).as_deref(), Ok("total"));
    }

    #[test]
    fn refuses_names_that_cannot_be_made_valid() {
        assert_eq!(
            metric_name("chest_", "---", false),
            Err(NameError::NothingLeft)
        );
        assert_eq!(
            metric_name("chest_", "çé", false),
            Err(NameError::NothingLeft)
        );
        assert_eq!(
            metric_name("", "5xx", false),
            Err(NameError::StartsWithDigit)
        );
        assert_eq!(
            metric_name("chest_", "prometheus_skipped", false),
            Err(NameError::Reserved)
        );
        assert_eq!(metric_name("_", "_x", false).as_deref(), Ok("_x"));
    }

    #[test]
    fn checks_prefixes_and_label_names() {
        assert!(check_prefix("").is_ok());
        assert!(check_prefix("app_").is_ok());
        assert_eq!(check_prefix("1app"), Err(NameError::BadCharacter));
        assert_eq!(check_prefix("my-app"), Err(NameError::BadCharacter));
        assert_eq!(check_prefix("__x"), Err(NameError::DoubleUnderscore));
        assert!(check_label_name("env").is_ok());
        assert_eq!(check_label_name("route"), Err(NameError::ReservedLabel));
        assert_eq!(
            check_label_name("__name__"),
            Err(NameError::DoubleUnderscore)
        );
        assert_eq!(check_label_name("a-b"), Err(NameError::BadCharacter));
        assert_eq!(check_label_name(""), Err(NameError::BadCharacter));
    }

    #[test]
    fn help_text_needs_no_escaping() {
        assert_eq!(
            help_text(r#"a"b\c"#, "gauge"),
            "Tracked variable a_b_c (gauge), recorded by chest"
        );
    }
}
