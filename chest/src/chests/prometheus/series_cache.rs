//! A per-thread cache of the series a thread observed last, by the identity of a record's
//! strings. The layers give a thread's records the same `Arc`s for a name, a method and a route
//! (`shared_strings`), so a request's observation is found by comparing three pointers instead
//! of two read locks and three hashed lookups of texts.
//!
//! An entry holds clones of the `Arc`s it is keyed by, so no key's address can be reused by
//! another string while the entry is there, and the chest's number, so two chests never share
//! an entry. Series are never removed from a chest, so an entry never goes stale. An entry of a
//! chest that was dropped keeps its series' memory until another series takes its slot (at most
//! [`SLOTS`] entries a thread).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::family::Metric;
use crate::Record;

/// Entries per thread (direct-mapped).
const SLOTS: usize = 64;

/// Numbers chests for their entries: the first chest gets 0, the next 1, and so on.
static NEXT_CHEST: AtomicU64 = AtomicU64::new(0);

/// A number no other chest of this process has.
pub(super) fn chest_number() -> u64 {
    NEXT_CHEST.fetch_add(1, Ordering::Relaxed)
}

/// A series a record of `chest` with these strings was observed in.
struct Entry {
    chest: u64,
    name: Arc<str>,
    method: Arc<str>,
    route: Option<Arc<str>>,
    metric: Arc<Metric>,
    /// Whether the series is a counter's (which refuses negative values).
    counter: bool,
}

thread_local! {
    static ENTRIES: RefCell<[Option<Entry>; SLOTS]> = const { RefCell::new([const { None }; SLOTS]) };
}

fn slot(chest: u64, record: &Record) -> usize {
    let address = |s: &Arc<str>| Arc::as_ptr(s) as *const u8 as usize >> 4;
    let route = record.route.as_ref().map_or(0, address);
    (address(&record.name) ^ address(&record.method).rotate_left(7) ^ route.rotate_left(13))
        .wrapping_add(chest as usize)
        % SLOTS
}

/// Runs `observe` with the series `record` of `chest` was last observed in on this thread, and
/// whether it is a counter's; `None` when this thread has no such entry.
pub(super) fn with_series<R>(
    chest: u64,
    record: &Record,
    observe: impl FnOnce(&Metric, bool) -> R,
) -> Option<R> {
    let same = |a: &Arc<str>, b: &Arc<str>| Arc::ptr_eq(a, b);
    ENTRIES
        .try_with(|entries| {
            let entries = entries.borrow();
            let entry = entries[slot(chest, record)].as_ref()?;
            let hit = entry.chest == chest
                && same(&entry.name, &record.name)
                && same(&entry.method, &record.method)
                && match (&entry.route, &record.route) {
                    (Some(a), Some(b)) => same(a, b),
                    (None, None) => true,
                    _ => false,
                };
            hit.then(|| observe(&entry.metric, entry.counter))
        })
        .ok()
        .flatten()
}

/// Remembers that `record` of `chest` was observed in `metric`.
pub(super) fn keep(chest: u64, record: &Record, metric: Arc<Metric>, counter: bool) {
    let entry = Entry {
        chest,
        name: Arc::clone(&record.name),
        method: Arc::clone(&record.method),
        route: record.route.clone(),
        metric,
        counter,
    };
    // Without a table (the thread is being torn down), nothing is kept.
    let _ = ENTRIES.try_with(|entries| entries.borrow_mut()[slot(chest, record)] = Some(entry));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge() -> Arc<Metric> {
        Arc::new(Metric::Gauge(Default::default()))
    }

    /// Two chests whose entries for the same strings share a slot never see each other's; other
    /// strings with the same text are a miss, and a route must match too.
    #[test]
    fn an_entry_is_found_by_its_chest_and_the_identity_of_its_strings() {
        let record = Record::new("r", "n", 1, "GET", Some("/a"));
        let (first, second) = (1000, 1000 + SLOTS as u64);
        assert_eq!(slot(first, &record), slot(second, &record));
        keep(first, &record, gauge(), true);
        assert_eq!(
            with_series(first, &record, |_, counter| counter),
            Some(true)
        );
        assert_eq!(with_series(second, &record, |_, _| ()), None);
        // The same texts in other `Arc`s: not the same strings.
        let lookalike = Record::new("r", "n", 1, "GET", Some("/a"));
        assert_eq!(with_series(first, &lookalike, |_, _| ()), None);
        let mut no_route = record.clone();
        no_route.route = None;
        assert_eq!(with_series(first, &no_route, |_, _| ()), None);
        // The second chest takes the slot: the first no longer finds its entry there.
        keep(second, &record, gauge(), false);
        assert_eq!(
            with_series(second, &record, |_, counter| counter),
            Some(false)
        );
        assert_eq!(with_series(first, &record, |_, _| ()), None);
    }
}
