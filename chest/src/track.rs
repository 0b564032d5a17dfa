//! Which variables are written for which HTTP method: Flask-Chest's `tracked_vars`.

use std::sync::Arc;

use crate::vars::Entry;

/// The selection of variables to write, per HTTP method.
///
/// [`Tracked::all`] (the default, Flask-Chest's `tracked_vars=None`) writes every variable the
/// handler set, in the order it set them. Otherwise each method lists its names; the records go out
/// in that order, names the handler did not set are skipped, and a method that is not listed writes
/// nothing (no chest is called).
///
/// Methods are compared exactly after upper-casing the configured ones: `HEAD` is **not** `GET`
/// (axum answers HEAD with the GET handler; list `HEAD` too if you want those requests written).
///
/// ```
/// use chest::Tracked;
///
/// let tracked = Tracked::methods()
///     .method("GET", ["transaction"])
///     .method("post", ["transaction", "response_time"]);
/// assert_eq!(tracked.names_for("POST").unwrap().len(), 2);
/// assert!(tracked.names_for("HEAD").unwrap().is_empty());
/// assert!(Tracked::all().names_for("GET").is_none());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Tracked {
    /// `None`: every variable. `Some`: (method, names) pairs.
    per_method: Option<Vec<(String, Vec<Arc<str>>)>>,
}

impl Tracked {
    /// Every variable the handler set, whatever the method.
    pub fn all() -> Self {
        Tracked { per_method: None }
    }

    /// An empty per-method selection; add methods with [`Tracked::method`].
    pub fn methods() -> Self {
        Tracked {
            per_method: Some(Vec::new()),
        }
    }

    /// Adds (or replaces) the names written for `method`. Turns an [`all`](Tracked::all)
    /// selection into a per-method one.
    pub fn method<I, N>(mut self, method: &str, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        let method = method.to_ascii_uppercase();
        let mut list: Vec<Arc<str>> = Vec::new();
        for name in names {
            if !list.iter().any(|n| &**n == name.as_ref()) {
                list.push(Arc::from(name.as_ref()));
            }
        }
        let per_method = self.per_method.get_or_insert_with(Vec::new);
        per_method.retain(|(m, _)| *m != method);
        per_method.push((method, list));
        self
    }

    /// The names listed for `method`: `None` when every variable is tracked, an empty slice when
    /// the method is not listed.
    pub fn names_for(&self, method: &str) -> Option<&[Arc<str>]> {
        let per_method = self.per_method.as_ref()?;
        Some(
            per_method
                .iter()
                .find(|(m, _)| m == method)
                .map_or(&[][..], |(_, names)| names),
        )
    }

    /// Picks the variables to write for `method` out of what the handler set.
    pub fn select(&self, method: &str, mut set: Vec<Entry>) -> Vec<Entry> {
        let Some(names) = self.names_for(method) else {
            return set;
        };
        // In place, no new vector: each selected entry is swapped to the front, in the
        // selection's order (names are unique on both sides).
        let mut kept = 0;
        for name in names {
            if let Some(at) = set[kept..].iter().position(|(n, _)| n == name) {
                set.swap(kept, kept + at);
                kept += 1;
            }
        }
        set.truncate(kept);
        set
    }
}

impl<M, I, N> FromIterator<(M, I)> for Tracked
where
    M: AsRef<str>,
    I: IntoIterator<Item = N>,
    N: AsRef<str>,
{
    /// Builds a per-method selection from a map such as Flask-Chest's
    /// `{"GET": ["transaction"], "POST": ["transaction", "response_time"]}`.
    fn from_iter<T: IntoIterator<Item = (M, I)>>(iter: T) -> Self {
        iter.into_iter().fold(Tracked::methods(), |t, (m, names)| {
            t.method(m.as_ref(), names)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;

    fn set(names: &[&str]) -> Vec<Entry> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (Arc::from(*n), Value::Int(i as i64)))
            .collect()
    }

    fn names(selected: &[Entry]) -> Vec<&str> {
        selected.iter().map(|(n, _)| &**n).collect()
    }

    #[test]
    fn all_keeps_set_order() {
        let got = Tracked::all().select("GET", set(&["b", "a"]));
        assert_eq!(names(&got), ["b", "a"]);
    }

    #[test]
    fn per_method_order_and_skips() {
        let t: Tracked = [("GET", vec!["c", "missing", "a"]), ("POST", vec!["b"])]
            .into_iter()
            .collect();
        let got = t.select("GET", set(&["a", "b", "c"]));
        assert_eq!(names(&got), ["c", "a"]);
        assert_eq!(got[0].1, Value::Int(2));
        assert!(t.select("HEAD", set(&["a"])).is_empty());
        assert!(t.select("get", set(&["a"])).is_empty());
    }

    #[test]
    fn method_replaces_and_dedups() {
        let t = Tracked::all()
            .method("get", ["a", "a"])
            .method("GET", ["b"]);
        assert_eq!(t.names_for("GET").unwrap().len(), 1);
        assert_eq!(&*t.names_for("GET").unwrap()[0], "b");
    }
}
